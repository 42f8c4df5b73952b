package storage

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"fff/internal/proto"
	"fff/server/meta"
)

// GCQueue is meta's GC queue (server/meta/gc.go): records of deleted and
// truncated files whose chunks storage removes.
type GCQueue interface {
	// GCList lists up to limit records in queue order, after the record
	// after (nil: from the head).
	GCList(ctx context.Context, after *proto.GCID, limit int) ([]proto.GCRecord, error)
	GCDone(ctx context.Context, ids []proto.GCID) error
}

// MetaGC is the GC queue of an in-process meta service (`fffd local`).
func MetaGC(ms *meta.Service) GCQueue { return metaGC{ms} }

type metaGC struct{ ms *meta.Service }

func (m metaGC) GCList(ctx context.Context, after *proto.GCID, limit int) ([]proto.GCRecord, error) {
	return m.ms.GCList(ctx, meta.Root, after, limit)
}

func (m metaGC) GCDone(ctx context.Context, ids []proto.GCID) error {
	return m.ms.GCDone(ctx, meta.Root, ids)
}

// GCPeers reaches the targets of other storage nodes, for the GC records
// this node applies (see GCOnce). NewRPCPeers (gc_rpc.go) implements it.
type GCPeers interface {
	// RemoveInode removes the chunks of ino with index >= from on target
	// of the node at addr (proto.MethodStorageRemoveInode, admin only).
	RemoveInode(ctx context.Context, addr string, target uint32, ino uint64, from uint32) error
	// CutChunk shortens chunk ref, on the node at addr (the head of the
	// chunk's chain), to length if it is longer; a missing chunk is no
	// error.
	CutChunk(ctx context.Context, addr string, ref proto.ChunkRef, length uint32) error
}

// WithPeers returns q with peers to reach other nodes' targets: GCOnce
// uses them when its queue implements GCPeers.
func WithPeers(q GCQueue, p GCPeers) GCQueue {
	return withPeers{q, p}
}

type withPeers struct {
	GCQueue
	GCPeers
}

// gcBatch is how many records one GC pass takes at most.
const gcBatch = 1000

// DefaultGCInterval is RunGC's pause when the queue is empty.
const DefaultGCInterval = 5 * time.Second

// RunGC drains q until ctx ends. It scans the queue a batch at a time from
// the head to the end, one pass (as GCOnce) per batch, then pauses for
// interval (default DefaultGCInterval) and scans again. Paging through the
// whole queue keeps records that this node cannot apply now (other nodes'
// records, records that keep failing) from hiding the ones behind them,
// however many there are. Failures are logged and retried on the next
// scan.
func (s *Service) RunGC(ctx context.Context, q GCQueue, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultGCInterval
	}
	var sc gcScan
	var seen, acked int // of this scan of the queue
	for {
		n, listed, err := s.gcPass(ctx, q, &sc)
		if ctx.Err() != nil {
			return nil
		}
		s.gc.collected.Add(int64(n))
		seen, acked = seen+listed, acked+n
		if err != nil {
			s.gc.failures.Add(1)
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("storage: garbage collection")
		}
		if n > 0 {
			s.log.Debug().Int("records", n).Msg("storage: garbage collected")
		}
		if listed == gcBatch {
			continue // more of the queue after this batch
		}
		s.gc.backlog.Store(int64(seen - acked))
		seen, acked = 0, 0
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// GCOnce applies up to one batch of GC records and acknowledges those
// applied; it returns the number acknowledged and the first failure.
//
// Records are per file, and a file's chunks are spread over the chains of
// its layout, whose targets may be on several storage nodes; a record may
// be acknowledged (GCDone) only once every one of those targets is
// cleaned. So one node applies each record whole: its owner, the node
// holding the first target (the head) of the first chain of the layout
// that the routing info still has. Every storage node runs the GC loop
// over the same queue and skips the records it does not own, leaving them
// queued for their owner. The owner removes the chunks on its own targets
// directly and on other nodes' targets through q's GCPeers
// (proto.MethodStorageRemoveInode); without peers (a queue that does not
// implement GCPeers) such a record fails. A record whose chains are all
// gone is acknowledged by any node (there is nothing to remove).
//
// Records of one inode share its layout, hence their owner, and are
// applied in queue order; when one fails, the later records of that inode
// wait for the next pass (they may depend on it), while other inodes'
// records go on. A node that is down holds back the records it owns, and
// those with chunks on it, until it returns.
//
// Removing is idempotent, so a record applied twice (two nodes briefly
// disagreeing about a chain's head) does no harm; a truncate record cuts
// a remote chunk by Stat then Truncate, so it could recreate a chunk that
// a concurrent second collector's delete record just removed, a leak of
// one chunk that only such a disagreement can cause.
func (s *Service) GCOnce(ctx context.Context, q GCQueue) (int, error) {
	n, _, err := s.gcPass(ctx, q, &gcScan{})
	return n, err
}

// gcScan is where a scan of the queue is: the last record listed (nil: at
// the head) and the inodes with a record that failed since the scan began,
// whose later records wait for the next scan even when they come in a
// later batch.
type gcScan struct {
	after  *proto.GCID
	failed map[uint64]bool
}

// gcPass applies the batch of records after sc's position, moves sc past
// it (back to the head after the last batch), and returns how many records
// it acknowledged and how many it listed.
func (s *Service) gcPass(ctx context.Context, q GCQueue, sc *gcScan) (acked, listed int, err error) {
	recs, err := q.GCList(ctx, sc.after, gcBatch)
	if err != nil {
		return 0, 0, fmt.Errorf("gc list: %w", err)
	}
	if len(recs) < gcBatch {
		defer func() { *sc = gcScan{} }() // the end: the next pass starts over
	} else {
		last := recs[len(recs)-1].ID
		defer func() { sc.after = &last }()
	}
	if len(recs) == 0 {
		return 0, 0, nil
	}
	ri := s.routing.Get()
	if ri == nil {
		return 0, len(recs), fmt.Errorf("gc: no routing info yet")
	}
	peers, _ := q.(GCPeers)
	var done []proto.GCID
	var firstErr error
	if sc.failed == nil {
		sc.failed = map[uint64]bool{}
	}
	failed := sc.failed
	for i := range recs {
		rec := &recs[i]
		if failed[rec.ID.Ino] {
			continue
		}
		if owner := gcOwner(ri, rec); owner != 0 && owner != s.nodeID {
			continue
		}
		if err := s.applyGC(ctx, ri, peers, rec); err != nil {
			failed[rec.ID.Ino] = true
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		done = append(done, rec.ID)
	}
	if len(done) > 0 {
		if err := q.GCDone(ctx, done); err != nil {
			return 0, len(recs), fmt.Errorf("gc done: %w", err)
		}
	}
	return len(done), len(recs), firstErr
}

// gcOwner is the node that applies rec (see GCOnce): the node of the head
// of the first chain of its layout that ri has, 0 if none.
func gcOwner(ri *proto.RoutingInfo, rec *proto.GCRecord) uint32 {
	if rec.Obsolete {
		return 0 // nothing to do: anyone acknowledges it
	}
	for _, cid := range rec.Layout.Chains {
		c := ri.Chain(cid)
		if c == nil || len(c.Targets) == 0 {
			continue
		}
		if t := ri.Target(c.Targets[0]); t != nil {
			return t.NodeID
		}
	}
	return 0
}

// applyGC removes what rec names from the targets of its chains: this
// node's directly, other nodes' through peers (nil: none reachable).
func (s *Service) applyGC(ctx context.Context, ri *proto.RoutingInfo, peers GCPeers, rec *proto.GCRecord) error {
	if rec.Obsolete {
		return nil
	}
	ino := rec.ID.Ino
	var from uint64 // first chunk index to remove entirely
	var cut uint64  // GCTruncate: chunk cut to cutLen bytes (when cutLen > 0)
	var cutLen uint64
	switch rec.Kind {
	case proto.GCDelete:
	case proto.GCTruncate:
		cs := uint64(rec.Layout.ChunkSize)
		if cs == 0 {
			return fmt.Errorf("gc record %d/%d: layout without chunk size", ino, rec.ID.Seq)
		}
		cut, cutLen = rec.From/cs, rec.From%cs
		from = cut
		if cutLen > 0 {
			from = cut + 1
		}
	default:
		return fmt.Errorf("gc record %d/%d: unknown kind %d", ino, rec.ID.Seq, rec.Kind)
	}
	seen := map[uint32]bool{}
	for _, cid := range rec.Layout.Chains {
		if seen[cid] {
			continue
		}
		seen[cid] = true
		chain := ri.Chain(cid)
		if chain == nil {
			continue // the chain is gone, and its chunks with it
		}
		cutHere := cutLen > 0 && cut <= math.MaxUint32 && rec.Layout.ChainOf(cut) == cid
		for i, tid := range chain.Targets {
			// A chunk is cut through its chain's head, the only member
			// that takes truncates: the other replicas follow the chain.
			if t := s.targets[tid]; t != nil {
				if cutHere && i == 0 {
					ref := proto.ChunkRef{Ino: ino, Index: uint32(cut), ChainID: cid, ChainVersion: chain.Version, TargetID: tid}
					if err := s.cutChunk(ctx, t, ref, int64(cutLen)); err != nil {
						return fmt.Errorf("gc record %d/%d: target %d: %w", ino, rec.ID.Seq, tid, err)
					}
				}
				if from <= math.MaxUint32 {
					if _, err := s.RemoveInode(ctx, tid, ino, uint32(from)); err != nil {
						return fmt.Errorf("gc record %d/%d: target %d: %w", ino, rec.ID.Seq, tid, err)
					}
				}
				continue
			}
			addr := targetAddr(ri, tid)
			if peers == nil || addr == "" {
				return fmt.Errorf("gc record %d/%d: target %d of chain %d is on another node, which this GC loop cannot reach", ino, rec.ID.Seq, tid, cid)
			}
			if cutHere && i == 0 {
				ref := proto.ChunkRef{Ino: ino, Index: uint32(cut), ChainID: cid, ChainVersion: chain.Version, TargetID: tid}
				if err := peers.CutChunk(ctx, addr, ref, uint32(cutLen)); err != nil {
					return fmt.Errorf("gc record %d/%d: target %d at %s: %w", ino, rec.ID.Seq, tid, addr, err)
				}
			}
			if from <= math.MaxUint32 {
				if err := peers.RemoveInode(ctx, addr, tid, ino, uint32(from)); err != nil {
					return fmt.Errorf("gc record %d/%d: target %d at %s: %w", ino, rec.ID.Seq, tid, addr, err)
				}
			}
		}
	}
	return nil
}

// targetAddr is the address of the node holding target tid, "" if unknown.
func targetAddr(ri *proto.RoutingInfo, tid uint32) string {
	t := ri.Target(tid)
	if t == nil {
		return ""
	}
	if n := ri.Node(t.NodeID); n != nil {
		return n.Addr
	}
	return ""
}

// cutChunk shortens chunk ref on head t to length, if it is longer, down
// the whole chain.
func (s *Service) cutChunk(ctx context.Context, t *target, ref proto.ChunkRef, length int64) error {
	ci, err := t.eng.Stat(ctx, chunkID(ref))
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ci.Length <= length {
		return nil
	}
	_, err = s.headUpdate(ctx, t, ref, update{kind: proto.ForwardTruncate, length: length})
	return err
}

// gcCounters are RunGC's figures (Counters).
type gcCounters struct {
	collected atomic.Int64 // records applied and acknowledged
	failures  atomic.Int64 // passes that failed
	backlog   atomic.Int64 // records left in the queue after the last whole scan
}
