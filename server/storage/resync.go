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

// resyncParallel is how many chunks a resync sends at once.
const resyncParallel = 4

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
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(resyncParallel)
	copyChunk := func(id chunkengine.ChunkID) {
		g.Go(func() error { return s.syncChunk(gctx, t, r, id) })
	}
	err = func() error {
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
				copyChunk(ci.ID)
			}
			if !more || len(page) == 0 {
				break
			}
			after = &page[len(page)-1].ID
		}
		r.total.Add(int64(len(remote)))
		for id := range remote { // only the syncing target has them
			r.chunks.Add(1)
			copyChunk(id)
		}
		return nil
	}()
	if werr := g.Wait(); err == nil {
		err = werr
	}
	if err != nil {
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

// syncChunk sends t's chunk id whole to r.to (a removal if t has none),
// under the chunk's lock.
func (s *Service) syncChunk(ctx context.Context, t *target, r *resyncRun, id chunkengine.ChunkID) error {
	unlock := t.locks.lock(id)
	defer unlock()
	ri := s.routing.Get()
	c := ri.Chain(r.chain)
	if c == nil {
		return proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d is gone", r.chain)
	}
	if next, _ := successor(ri, c, t.id); next != r.to {
		return proto.Errorf(proto.ChainVersionMismatch, "storage: target %d no longer follows %d in chain %d", r.to, t.id, r.chain)
	}
	req := &proto.StorageForwardReq{Chunk: proto.ChunkRef{Ino: id.Ino, Index: id.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: r.to}}
	payload, release, err := s.wholeChunk(ctx, t, id, req)
	if err != nil {
		return err
	}
	if release != nil {
		defer release()
	}
	if _, err := s.send(ctx, ri, req, payload); err != nil {
		return fmt.Errorf("storage: resync of chunk %v to target %d: %w", id, r.to, err)
	}
	// Under the lock no update of the chunk is in flight here: a pending
	// mark is a forward's that failed for good, and the chain holds t's
	// version now.
	t.pend.clear(id)
	r.sent.Add(1)
	r.nbytes.Add(int64(len(payload)))
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
