package storage

import (
	"context"
	"fmt"
	"math"
	"slices"

	"fff/internal/proto"
	"fff/server/storage/chunkengine"
)

// Repair and scrub (docs/replication.md). A replica whose chunk fails its
// checksums is rewritten from a good copy by the chain's head, under the
// chunk's lock (no update is in flight down the chain then, so every
// serving replica holds the committed version): the head checks its own
// copy, takes another serving member's if its own is damaged, and sends
// the good copy whole down the chain, as a forward does. A read that finds
// a damaged replica asks the head for this and fails over to another
// replica meanwhile; scrub verifies every chunk of a target and, on the
// head, compares the replicas' metadata.

// scrubPage is the most chunks one scrub call verifies.
const scrubPage = 64

// Repair makes every replica of chunk r.Chunk equal to a good copy
// (proto.MethodStorageRepair); r.Chunk.TargetID is the chain's head, a
// target of this node. It returns the chunk's version afterwards (0: the
// chain holds no such chunk).
func (s *Service) Repair(ctx context.Context, r proto.StorageRepairReq) (uint64, error) {
	t, ri, c, err := s.headOf(ctx, r.Chunk)
	if err != nil {
		return 0, err
	}
	id := chunkID(r.Chunk)
	unlock := t.locks.lock(id)
	defer unlock()
	return s.repairLocked(ctx, t, ri, c, id)
}

// headOf checks that ref names the serving head of its chain on this node.
func (s *Service) headOf(ctx context.Context, ref proto.ChunkRef) (*target, *proto.RoutingInfo, *proto.Chain, error) {
	t, err := s.check(ctx, ref, opWrite, new(bool))
	if err != nil {
		return nil, nil, nil, err
	}
	ri := s.routing.Get()
	c := ri.Chain(ref.ChainID)
	if c == nil {
		return nil, nil, nil, proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d is gone", ref.ChainID)
	}
	return t, ri, c, nil
}

// repairLocked is Repair with head t's lock of chunk id held.
func (s *Service) repairLocked(ctx context.Context, t *target, ri *proto.RoutingInfo, c *proto.Chain, id chunkengine.ChunkID) (uint64, error) {
	v, err := s.verify(ctx, t, id)
	if proto.CodeOf(err) == proto.ChecksumMismatch {
		s.log.Warn().Err(err).Stringer("chunk", id).Uint32("target", t.id).Msg("storage: head's replica damaged; taking another replica's")
		v, err = s.takeGood(ctx, t, ri, c, id)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: repair of chunk %v (chain %d): %w", id, c.ID, err)
	}
	ref := proto.ChunkRef{Ino: id.Ino, Index: id.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: t.id}
	// A replace of the head's chunk (a removal if it has none) goes down
	// the whole chain, as after a successor's version mismatch.
	if err := s.forward(context.WithoutCancel(ctx), t, ref, update{kind: proto.ForwardReplace}, 0, v, nil); err != nil {
		return 0, fmt.Errorf("storage: repair of chunk %v (chain %d): %w", id, c.ID, err)
	}
	t.pend.clear(id) // every writer holds v: a stale mark is settled
	return v, nil
}

// verify reads chunk id of t whole, checking every block's checksum, and
// returns its version (0: t has no such chunk).
func (s *Service) verify(ctx context.Context, t *target, id chunkengine.ChunkID) (uint64, error) {
	v, _, release, err := s.readWhole(ctx, t, id)
	if err != nil {
		return 0, err
	}
	release()
	return v, nil
}

// takeGood replaces head t's damaged chunk id with the copy of another
// serving member of c, the chain's last serving one first (its versions
// are all committed), and returns the version taken.
func (s *Service) takeGood(ctx context.Context, t *target, ri *proto.RoutingInfo, c *proto.Chain, id chunkengine.ChunkID) (uint64, error) {
	var errs []error
	for _, tid := range slices.Backward(c.Targets) {
		if tg := ri.Target(tid); tid == t.id || tg == nil || tg.State != proto.TargetServing {
			continue
		}
		ref := proto.ChunkRef{Ino: id.Ino, Index: id.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: tid}
		v, data, release, err := s.fetch(ctx, ri, ref)
		if err != nil {
			errs = append(errs, fmt.Errorf("target %d: %w", tid, err))
			continue
		}
		if v == 0 {
			err = t.eng.Remove(ctx, id)
			if isNotFound(err) {
				err = nil
			}
		} else {
			err = t.eng.Replace(ctx, id, v, data)
		}
		release()
		return v, err
	}
	return 0, proto.Errorf(proto.ChecksumMismatch, "storage: no good replica of chunk %v in chain %d: %v", id, c.ID, errs)
}

// fetch returns the whole chunk ref (version 0: none) from its target,
// here or on another node, checksums verified, and the buffer's release.
func (s *Service) fetch(ctx context.Context, ri *proto.RoutingInfo, ref proto.ChunkRef) (uint64, []byte, func(), error) {
	if o := s.targets[ref.TargetID]; o != nil {
		return s.readWhole(ctx, o, chunkID(ref))
	}
	addr, err := s.peerAddr(ri, ref.TargetID)
	if err != nil {
		return 0, nil, nil, err
	}
	v, data, err := s.fwd.Fetch(ctx, addr, ref)
	return v, data, func() {}, err
}

// damaged asks, once at a time per chunk, the head of chunk ref's chain to
// repair it: a read found its replica on this node damaged.
func (s *Service) damaged(ref proto.ChunkRef) {
	id := chunkID(ref)
	s.rp.mu.Lock()
	if s.rp.busy == nil {
		s.rp.busy = map[chunkengine.ChunkID]bool{}
	}
	if s.rp.busy[id] || s.bg.Err() != nil {
		s.rp.mu.Unlock()
		return
	}
	s.rp.busy[id] = true
	s.rp.mu.Unlock()
	s.rp.wg.Go(func() {
		defer func() {
			s.rp.mu.Lock()
			delete(s.rp.busy, id)
			s.rp.mu.Unlock()
		}()
		v, err := s.repairVia(s.bg, ref)
		if err != nil {
			s.log.Warn().Err(err).Stringer("chunk", id).Uint32("target", ref.TargetID).Msg("storage: damaged replica not repaired")
			return
		}
		s.log.Info().Stringer("chunk", id).Uint32("target", ref.TargetID).Uint64("version", v).Msg("storage: damaged replica repaired from a good one")
	})
}

// repairVia has the head of chunk ref's chain repair it.
func (s *Service) repairVia(ctx context.Context, ref proto.ChunkRef) (uint64, error) {
	ri := s.routing.Get()
	c := ri.Chain(ref.ChainID)
	if c == nil || len(c.Targets) == 0 {
		return 0, proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d is gone", ref.ChainID)
	}
	req := proto.StorageRepairReq{Chunk: proto.ChunkRef{Ino: ref.Ino, Index: ref.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: c.Targets[0]}}
	if s.targets[req.Chunk.TargetID] != nil {
		return s.Repair(ctx, req)
	}
	addr, err := s.peerAddr(ri, req.Chunk.TargetID)
	if err != nil {
		return 0, err
	}
	return s.fwd.Repair(ctx, addr, req)
}

// Scrub verifies a page of target r.TargetID's chunks (proto.MethodStorageScrub):
// every byte against its checksums and, if the target heads its chain,
// the other serving replicas' versions, lengths and checksums against its
// own; with r.Repair, what fails is repaired through the chain's head.
func (s *Service) Scrub(ctx context.Context, r proto.StorageScrubReq) (proto.StorageScrubResp, error) {
	var resp proto.StorageScrubResp
	if err := s.fenced(); err != nil {
		return resp, err
	}
	t, page, more, err := s.page(ctx, r.TargetID, r.After, r.Limit, scrubPage)
	if err != nil {
		return resp, err
	}
	var after *chunkengine.ChunkID
	if r.After != nil {
		after = &chunkengine.ChunkID{Ino: r.After.Ino, Index: r.After.Index}
	}
	resp.More = more
	if len(page) > 0 {
		last := page[len(page)-1]
		resp.Last = &proto.ChunkState{Ino: last.ID.Ino, Index: last.ID.Index}
	}
	ri := s.routing.Get()
	var c *proto.Chain
	if tg := ri.Target(t.id); tg != nil {
		c = ri.Chain(tg.ChainID)
	}
	fix := func(id chunkengine.ChunkID) {
		if !r.Repair {
			return
		}
		if c == nil {
			resp.Errors = append(resp.Errors, fmt.Sprintf("chunk %v: target %d is in no chain", id, t.id))
			return
		}
		ref := proto.ChunkRef{Ino: id.Ino, Index: id.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: t.id}
		if _, err := s.repairVia(ctx, ref); err != nil {
			resp.Errors = append(resp.Errors, err.Error())
			return
		}
		resp.Repaired++
	}
	for _, ci := range page {
		resp.Chunks++
		resp.Bytes += ci.Length
		if _, err := s.verify(ctx, t, ci.ID); proto.CodeOf(err) == proto.ChecksumMismatch {
			// A replace may have swapped the files under the read:
			// only a failure under the chunk's lock counts.
			unlock := t.locks.lock(ci.ID)
			_, err = s.verify(ctx, t, ci.ID)
			unlock()
			if proto.CodeOf(err) == proto.ChecksumMismatch {
				resp.Damaged = append(resp.Damaged, chunkState(ci))
				fix(ci.ID)
			}
		} else if err != nil && !isNotFound(err) {
			return resp, err
		}
	}
	if c != nil && c.Targets[0] == t.id && ri.Target(t.id).State == proto.TargetServing {
		if err := s.compareReplicas(ctx, t, ri, c, after, page, !more, r.Repair, &resp); err != nil {
			return resp, err
		}
	}
	return resp, nil
}

// compareReplicas checks, for head t, the chunks of page (those after
// after; with final, every chunk after it) against every other serving
// member of chain c: any chunk whose version, length or checksum differs,
// or that only one side has, is compared again under the chunk's lock (no
// update in flight then) and, if still different, reported and with
// repair replaced down the chain.
func (s *Service) compareReplicas(ctx context.Context, t *target, ri *proto.RoutingInfo, c *proto.Chain, after *chunkengine.ChunkID, page []chunkengine.ChunkInfo, final, repair bool, resp *proto.StorageScrubResp) error {
	last := chunkengine.ChunkID{Ino: math.MaxUint64, Index: math.MaxUint32}
	if !final && len(page) > 0 {
		last = page[len(page)-1].ID
	}
	mine := make(map[chunkengine.ChunkID]proto.ChunkState, len(page))
	for _, ci := range page {
		mine[ci.ID] = chunkState(ci)
	}
	suspects := map[chunkengine.ChunkID]bool{}
	var members []uint32
	for _, tid := range c.Targets[1:] {
		if tg := ri.Target(tid); tg == nil || tg.State != proto.TargetServing {
			continue
		}
		members = append(members, tid)
		theirs, err := s.dumpRange(ctx, tid, after, last)
		if err != nil {
			return err
		}
		for id, st := range mine {
			if theirs[id] != st {
				suspects[id] = true
			}
		}
		for id := range theirs {
			if _, ok := mine[id]; !ok {
				suspects[id] = true
			}
		}
	}
	ids := make([]chunkengine.ChunkID, 0, len(suspects))
	for id := range suspects {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, chunkengine.ChunkID.Compare)
	for _, id := range ids {
		diverged, err := s.recheck(ctx, t, ri, c, members, id, repair)
		if err != nil {
			resp.Errors = append(resp.Errors, err.Error())
			continue
		}
		if diverged {
			resp.Diverged = append(resp.Diverged, proto.ChunkState{Ino: id.Ino, Index: id.Index})
			if repair {
				resp.Repaired++
			}
		}
	}
	return nil
}

// recheck compares chunk id of head t with members under the chunk's lock
// and, if they differ and repair is set, repairs it under the same lock.
func (s *Service) recheck(ctx context.Context, t *target, ri *proto.RoutingInfo, c *proto.Chain, members []uint32, id chunkengine.ChunkID, repair bool) (bool, error) {
	unlock := t.locks.lock(id)
	defer unlock()
	mine, err := s.stateOf(ctx, t.id, id)
	if err != nil {
		return false, err
	}
	diverged := false
	for _, tid := range members {
		theirs, err := s.stateOf(ctx, tid, id)
		if err != nil {
			return false, err
		}
		diverged = diverged || theirs != mine
	}
	if diverged && repair {
		if _, err := s.repairLocked(ctx, t, ri, c, id); err != nil {
			return true, err
		}
	}
	return diverged, nil
}

// stateOf returns chunk id's state on target tid (zero: none).
func (s *Service) stateOf(ctx context.Context, tid uint32, id chunkengine.ChunkID) (proto.ChunkState, error) {
	var before *chunkengine.ChunkID
	if p, ok := id.Prev(); ok {
		before = &p
	}
	m, err := s.dumpRange(ctx, tid, before, id)
	return m[id], err
}

// dumpRange lists target tid's chunks after after (nil: from the first)
// up to and including last.
func (s *Service) dumpRange(ctx context.Context, tid uint32, after *chunkengine.ChunkID, last chunkengine.ChunkID) (map[chunkengine.ChunkID]proto.ChunkState, error) {
	out := map[chunkengine.ChunkID]proto.ChunkState{}
	req := proto.StorageDumpReq{TargetID: tid}
	if after != nil {
		req.After = &proto.ChunkState{Ino: after.Ino, Index: after.Index}
	}
	for {
		var resp proto.StorageDumpResp
		var err error
		if s.targets[tid] != nil {
			resp, err = s.Dump(ctx, req)
		} else {
			resp, err = s.remoteDump(ctx, tid, req)
		}
		if err != nil {
			return nil, fmt.Errorf("storage: dump of target %d: %w", tid, err)
		}
		for _, cs := range resp.Chunks {
			id := chunkengine.ChunkID{Ino: cs.Ino, Index: cs.Index}
			if id.Compare(last) > 0 {
				return out, nil
			}
			out[id] = cs
		}
		if !resp.More || len(resp.Chunks) == 0 {
			return out, nil
		}
		l := resp.Chunks[len(resp.Chunks)-1]
		req.After = &l
	}
}

func chunkState(ci chunkengine.ChunkInfo) proto.ChunkState {
	return proto.ChunkState{Ino: ci.ID.Ino, Index: ci.ID.Index, Version: ci.Version, Length: uint32(ci.Length), Checksum: ci.Checksum}
}
