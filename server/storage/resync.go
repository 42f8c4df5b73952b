package storage

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"fff/internal/proto"
	"fff/server/storage/chunkengine"
)

// Resync (DESIGN §7, docs/replication.md): a syncing target receives every
// new write of its chain, and its predecessor — the chain's last serving
// member, a target of this node — sends it every chunk whose committed
// version or content differs (full-chunk replace, under the chunk's lock,
// so it orders with the writes flowing down the chain) and removes the
// chunks it has that the predecessor does not. Then the predecessor asks
// mgmtd to make it serving. No admin call is needed.

// TargetStates ends resyncs at mgmtd (in process, or a cluster.Client).
type TargetStates interface {
	// Synced makes syncing target id serving if its chain is still at
	// version cv (ChainVersionMismatch otherwise).
	Synced(ctx context.Context, id uint32, cv uint32) error
}

// A resync is a pipeline: resyncReaders read whole chunks ahead (each
// under its chunk's lock, held until the chunk is sent), at most
// resyncAhead wait read, and resyncParallel are in flight to the syncing
// target. Reading and sending overlap, so the receiver always has
// resyncParallel replaces to work on: each is mostly waiting for its
// fsyncs and KV commit, which concurrent replaces share. More in flight
// only queues on the disk (measured: 16 was slower than 4 here).
const (
	resyncParallel = 4
	resyncReaders  = 2
	resyncAhead    = 2
)

// resyncs tracks the node's running resyncs, one per syncing target.
type resyncs struct {
	mu  sync.Mutex
	run map[uint32]*resyncRun // by syncing target
}

type resyncRun struct {
	chain, from, to             uint32
	chunks, total, sent, nbytes atomic.Int64
}

// Resyncs reports the resyncs this node runs now, by syncing target
// (heartbeats carry them to mgmtd, fff status shows them).
func (s *Service) Resyncs() []proto.ResyncStats {
	s.rs.mu.Lock()
	defer s.rs.mu.Unlock()
	out := make([]proto.ResyncStats, 0, len(s.rs.run))
	for _, r := range s.rs.run {
		out = append(out, proto.ResyncStats{Target: r.to, From: r.from, Chunks: r.chunks.Load(), Total: r.total.Load(),
			Sent: r.sent.Load(), Bytes: r.nbytes.Load()})
	}
	return out
}

// RunResync starts a resync for every syncing target whose predecessor is
// a serving target of this node, checking the routing every interval (a
// second if 0), until ctx ends. Without states (nil) it does nothing: the
// node cannot tell mgmtd that a target caught up.
func (s *Service) RunResync(ctx context.Context, states TargetStates, interval time.Duration) error {
	if states == nil {
		<-ctx.Done()
		return nil
	}
	if interval <= 0 {
		interval = time.Second
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		var chains []proto.Chain
		ri := s.routing.Get()
		if ri != nil {
			chains = ri.Chains
		}
		for _, c := range chains {
			for _, tid := range c.Targets {
				t := s.targets[tid]
				if t == nil {
					continue
				}
				next, _ := successor(ri, &c, tid)
				if next == 0 || ri.Target(tid).State != proto.TargetServing || ri.Target(next).State != proto.TargetSyncing {
					continue
				}
				r := s.startResync(c.ID, tid, next)
				if r == nil {
					continue // already running
				}
				wg.Go(func() {
					defer s.endResync(r)
					start := time.Now()
					if err := s.resync(ctx, t, r, c.Version, states); err != nil {
						switch {
						case ctx.Err() != nil:
						case proto.CodeOf(err) == proto.ChainVersionMismatch:
							s.log.Info().Err(err).Uint32("chain", r.chain).Uint32("target", r.to).Msg("storage: the chain changed during a resync; starting over if the target still syncs")
						default:
							s.log.Warn().Err(err).Uint32("chain", r.chain).Uint32("target", r.to).Msg("storage: resync failed; retrying")
						}
						return
					}
					// The next round must see the target serving, not
					// start a resync again on old routing.
					if err := s.routing.Refresh(ctx); err != nil {
						s.log.Debug().Err(err).Msg("storage: routing refresh after a resync")
					}
					s.log.Info().Uint32("chain", r.chain).Uint32("target", r.to).Uint32("from", r.from).
						Int64("chunks", r.chunks.Load()).Int64("sent", r.sent.Load()).Int64("bytes", r.nbytes.Load()).
						Dur("took", time.Since(start)).Msg("storage: resync done; target serving")
				})
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func (s *Service) startResync(chain, from, to uint32) *resyncRun {
	s.rs.mu.Lock()
	defer s.rs.mu.Unlock()
	if s.rs.run == nil {
		s.rs.run = map[uint32]*resyncRun{}
	}
	if s.rs.run[to] != nil {
		return nil
	}
	r := &resyncRun{chain: chain, from: from, to: to}
	s.rs.run[to] = r
	return r
}

func (s *Service) endResync(r *resyncRun) {
	s.rs.mu.Lock()
	defer s.rs.mu.Unlock()
	delete(s.rs.run, r.to)
}

// resync brings target r.to up to date from t (= r.from) and makes it
// serving, if chain r.chain is still at version cv then: a change of the
// chain meanwhile (r.to went offline and back, say) means starting over.
func (s *Service) resync(ctx context.Context, t *target, r *resyncRun, cv uint32, states TargetStates) error {
	remote, err := s.dumpAll(ctx, r.chain, r.to)
	if err != nil {
		return err
	}
	if err := s.count(ctx, t, r); err != nil {
		return err
	}
	if err := s.syncChunks(ctx, t, r, remote); err != nil {
		return err
	}
	ri := s.routing.Get()
	c := ri.Chain(r.chain)
	if c == nil || c.Version != cv {
		return proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d changed during the resync of target %d", r.chain, r.to)
	}
	return states.Synced(ctx, r.to, cv)
}

// count sets r's total to t's chunk count (metadata only: a pass over the
// engine's index), for fff status to show how far the resync is.
func (s *Service) count(ctx context.Context, t *target, r *resyncRun) error {
	var after *chunkengine.ChunkID
	var n int64
	for {
		page, more, err := t.eng.Scan(ctx, after, dumpPage)
		if err != nil {
			return err
		}
		n += int64(len(page))
		if !more || len(page) == 0 {
			r.total.Store(n)
			return nil
		}
		after = &page[len(page)-1].ID
	}
}

// syncChunks sends r.to every chunk of t that it lacks or holds otherwise
// (remote: its chunks) and removes those that t does not have.
func (s *Service) syncChunks(ctx context.Context, t *target, r *resyncRun, remote map[chunkengine.ChunkID]proto.ChunkState) error {
	g, gctx := errgroup.WithContext(ctx)
	ids := make(chan chunkengine.ChunkID)
	ready := make(chan *outgoing, resyncAhead)
	g.Go(func() error {
		defer close(ids)
		emit := func(id chunkengine.ChunkID) error {
			select {
			case ids <- id:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		var after *chunkengine.ChunkID
		for {
			page, more, err := t.eng.Scan(gctx, after, dumpPage)
			if err != nil {
				return err
			}
			for _, ci := range page {
				r.chunks.Add(1)
				rs, ok := remote[ci.ID]
				delete(remote, ci.ID)
				if ok && rs.Version == ci.Version && int64(rs.Length) == ci.Length && rs.Checksum == ci.Checksum {
					continue
				}
				if err := emit(ci.ID); err != nil {
					return err
				}
			}
			if !more || len(page) == 0 {
				break
			}
			after = &page[len(page)-1].ID
		}
		r.total.Add(int64(len(remote)))
		for id := range remote { // only the syncing target has them
			r.chunks.Add(1)
			if err := emit(id); err != nil {
				return err
			}
		}
		return nil
	})
	var readers sync.WaitGroup
	for range resyncReaders {
		readers.Add(1)
		g.Go(func() error {
			defer readers.Done()
			for id := range ids {
				o, err := s.readForSync(gctx, t, r, id)
				if err != nil {
					return err
				}
				select {
				case ready <- o:
				case <-gctx.Done():
					o.release()
					return gctx.Err()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		readers.Wait()
		close(ready)
		return nil
	})
	for range resyncParallel {
		g.Go(func() error {
			for o := range ready {
				err := s.sendForSync(gctx, t, r, o)
				o.release()
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	err := g.Wait()
	for o := range ready { // left by senders that stopped on an error
		o.release()
	}
	return err
}

// outgoing is a chunk read whole for a resync, its lock held until release.
type outgoing struct {
	id      chunkengine.ChunkID
	ri      *proto.RoutingInfo // as the chunk was read
	req     *proto.StorageForwardReq
	payload []byte
	release func() // of payload's buffer and of the chunk's lock
}

// readForSync locks t's chunk id and reads it whole (a removal if t has
// none) for r.to. The lock stays held until the chunk is sent, so the
// chunk's writes order with it.
func (s *Service) readForSync(ctx context.Context, t *target, r *resyncRun, id chunkengine.ChunkID) (*outgoing, error) {
	unlock := t.locks.lock(id)
	ri := s.routing.Get()
	c := ri.Chain(r.chain)
	if c == nil {
		unlock()
		return nil, proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d is gone", r.chain)
	}
	if next, _ := successor(ri, c, t.id); next != r.to {
		unlock()
		return nil, proto.Errorf(proto.ChainVersionMismatch, "storage: target %d no longer follows %d in chain %d", r.to, t.id, r.chain)
	}
	req := &proto.StorageForwardReq{Chunk: proto.ChunkRef{Ino: id.Ino, Index: id.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: r.to}}
	payload, release, err := s.wholeChunk(ctx, t, id, req)
	if err != nil {
		unlock()
		return nil, err
	}
	return &outgoing{id: id, ri: ri, req: req, payload: payload, release: func() {
		if release != nil {
			release()
		}
		unlock()
	}}, nil
}

// sendForSync sends chunk o to r.to; the caller releases o.
func (s *Service) sendForSync(ctx context.Context, t *target, r *resyncRun, o *outgoing) error {
	if _, err := s.send(ctx, o.ri, o.req, o.payload); err != nil {
		return fmt.Errorf("storage: resync of chunk %v to target %d: %w", o.id, r.to, err)
	}
	// Under the lock no update of the chunk is in flight here: a pending
	// mark is a forward's that failed for good, and the chain holds t's
	// version now.
	t.pend.clear(o.id)
	r.sent.Add(1)
	r.nbytes.Add(int64(len(o.payload)))
	return nil
}

// dumpAll lists every chunk of target tid (on this node or another).
func (s *Service) dumpAll(ctx context.Context, chain, tid uint32) (map[chunkengine.ChunkID]proto.ChunkState, error) {
	m, err := s.dumpRange(ctx, tid, nil, chunkengine.ChunkID{Ino: math.MaxUint64, Index: math.MaxUint32})
	if err != nil {
		return nil, fmt.Errorf("chain %d: %w", chain, err)
	}
	return m, nil
}

func (s *Service) remoteDump(ctx context.Context, tid uint32, req proto.StorageDumpReq) (proto.StorageDumpResp, error) {
	addr, err := s.peerAddr(s.routing.Get(), tid)
	if err != nil {
		return proto.StorageDumpResp{}, err
	}
	return s.fwd.Dump(ctx, addr, req)
}
