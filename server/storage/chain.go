package storage

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"fff/internal/proto"
	"fff/server/storage/chunkengine"
)

// Chain replication (CRAQ, DESIGN §7; docs/replication.md has the whole
// protocol). The head of a chain orders the updates of each chunk: it holds
// the chunk's lock from its local apply until its successor acknowledges,
// so one update per chunk is in flight down a chain at a time. Every hop
// holds the chunk's lock while it applies and forwards, applies an update
// only on the committed version the update was built on (else
// ChunkVersionMismatch, and the predecessor sends the whole chunk), and
// marks the chunk pending until the acknowledgement comes back from the
// tail. The write tail (the chain's last member that is not offline)
// commits on apply.
//
// The head applies before it forwards, so a write some replica got is on
// the head too and every later replace (which copies the head's chunk down
// the chain) keeps it. The other hops forward while they apply: a large
// write moves down the chain while each disk writes it (pipelined). A hop
// checks the update's base version before it forwards anything.

// Forwarder reaches targets on other nodes (RPCPeers): chain updates, and
// the dumps resync compares.
type Forwarder interface {
	// Forward sends req (with payload: a write's data, a replace's chunk)
	// to the node at addr and returns the successor's new version.
	Forward(ctx context.Context, addr string, req *proto.StorageForwardReq, payload []byte) (uint64, error)
	// Dump lists a page of a target's chunks on the node at addr.
	Dump(ctx context.Context, addr string, req proto.StorageDumpReq) (proto.StorageDumpResp, error)
	// Fetch returns chunk ref whole (version 0: none), checksums verified
	// by its node: a good copy for a damaged head (repair.go).
	Fetch(ctx context.Context, addr string, ref proto.ChunkRef) (uint64, []byte, error)
	// Repair asks the head of a chunk's chain, on the node at addr, to
	// repair the chunk's replicas.
	Repair(ctx context.Context, addr string, req proto.StorageRepairReq) (uint64, error)
}

// DefaultForwardTimeout bounds how long a hop keeps trying to hand an
// update to its successor: through the successor's death, mgmtd's
// heartbeat timeout and the chain's new routing.
const DefaultForwardTimeout = time.Minute

// chunkLocks are the per-chunk locks of one target. A map, not stripes:
// two chunks never share a lock, so hops that lock their chunk in chain
// order cannot deadlock across chains that list the same nodes in other
// orders.
type chunkLocks struct {
	mu sync.Mutex
	m  map[chunkengine.ChunkID]*chunkLock
}

type chunkLock struct {
	mu   sync.Mutex
	refs int
}

// lock locks chunk id and returns the unlock function.
func (l *chunkLocks) lock(id chunkengine.ChunkID) func() {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[chunkengine.ChunkID]*chunkLock{}
	}
	c := l.m[id]
	if c == nil {
		c = &chunkLock{}
		l.m[id] = c
	}
	c.refs++
	l.mu.Unlock()
	c.mu.Lock()
	return func() {
		c.mu.Unlock()
		l.mu.Lock()
		if c.refs--; c.refs == 0 {
			delete(l.m, id)
		}
		l.mu.Unlock()
	}
}

// pendingSet remembers, per chunk with an update not yet acknowledged by
// the rest of the chain, the committed version it had before (its clean
// version). A read that finds a newer version than that may be reading
// bytes the chain has not committed. The set lives in memory only: a
// restarted node's targets come back syncing and are resynced whole.
type pendingSet struct {
	n  atomic.Int64 // len(m): reads skip the lock while nothing is pending
	mu sync.Mutex
	m  map[chunkengine.ChunkID]uint64
}

// mark records that chunk id, committed at version clean, is about to
// change. An older mark (a failed update) keeps its lower version.
func (p *pendingSet) mark(id chunkengine.ChunkID, clean uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[chunkengine.ChunkID]uint64{}
	}
	if old, ok := p.m[id]; ok && old <= clean {
		return
	}
	if _, ok := p.m[id]; !ok {
		p.n.Add(1)
	}
	p.m[id] = clean
}

// clear forgets chunk id: the chain acknowledged its update.
func (p *pendingSet) clear(id chunkengine.ChunkID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[id]; ok {
		delete(p.m, id)
		p.n.Add(-1)
	}
}

// uncommitted reports whether version v of chunk id, as a read found it,
// may not be committed by the chain yet.
func (p *pendingSet) uncommitted(id chunkengine.ChunkID, v uint64) bool {
	if p.n.Load() == 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	clean, ok := p.m[id]
	return ok && v > clean
}

// update is one chunk change, as the head received it or a hop got it
// forwarded.
type update struct {
	kind      proto.ForwardKind
	off       int64  // write
	data      []byte // write, replace
	length    int64  // truncate
	chunkSize uint32 // write
	version   uint64 // replace
}

// successor returns the member after target tid in chain c that takes
// writes (serving or syncing: offline members sit at the end), or 0 when
// tid is the chain's write tail. ok is false when tid itself is offline or
// not in the chain: it must not take writes (it is fenced).
func successor(ri *proto.RoutingInfo, c *proto.Chain, tid uint32) (next uint32, ok bool) {
	for i, id := range c.Targets {
		if id != tid {
			continue
		}
		if t := ri.Target(id); t == nil || t.State == proto.TargetOffline {
			return 0, false
		}
		if i+1 < len(c.Targets) {
			if t := ri.Target(c.Targets[i+1]); t != nil && t.State != proto.TargetOffline {
				return t.ID, true
			}
		}
		return 0, true
	}
	return 0, false
}

// readTail reports whether target tid is the last serving member of chain
// c: its versions are the committed ones (every write reached it before
// any read elsewhere could miss it), so it serves pending chunks as they
// are.
func readTail(ri *proto.RoutingInfo, c *proto.Chain, tid uint32) bool {
	for i := len(c.Targets) - 1; i >= 0; i-- {
		if t := ri.Target(c.Targets[i]); t != nil && t.State == proto.TargetServing {
			return t.ID == tid
		}
	}
	return false
}

// version returns chunk id's committed version on t (0: absent).
func (t *target) version(ctx context.Context, id chunkengine.ChunkID) (uint64, error) {
	ci, err := t.eng.Stat(ctx, id)
	if isNotFound(err) {
		return 0, nil
	}
	return ci.Version, err
}

// headUpdate applies u to chunk ref on head t and hands it down the chain;
// it returns the chunk's new version once the whole chain has it.
func (s *Service) headUpdate(ctx context.Context, t *target, ref proto.ChunkRef, u update) (uint64, error) {
	id := chunkID(ref)
	unlock := t.locks.lock(id)
	defer unlock()
	base, err := t.version(ctx, id)
	if err != nil {
		return 0, err
	}
	ri := s.routing.Get()
	if c := ri.Chain(ref.ChainID); c != nil {
		if next, _ := successor(ri, c, t.id); next != 0 {
			t.pend.mark(id, base)
		}
	}
	v, err := s.apply(ctx, t, id, u)
	if err != nil {
		return 0, err
	}
	// The head has it: the update is now the chain's to finish, whether
	// or not the client waits for it.
	if err := s.forward(context.WithoutCancel(ctx), t, ref, u, base, v, nil); err != nil {
		return 0, err
	}
	t.pend.clear(id)
	return v, nil
}

// apply performs u on t's engine and returns the chunk's version after it
// (0 after a removal or a truncate to 0 of a missing chunk).
func (s *Service) apply(ctx context.Context, t *target, id chunkengine.ChunkID, u update) (uint64, error) {
	switch u.kind {
	case proto.ForwardWrite:
		return t.eng.Write(ctx, id, u.off, u.data)
	case proto.ForwardTruncate:
		v, err := t.eng.Truncate(ctx, id, u.length)
		if !isNotFound(err) {
			return v, err
		}
		if u.length == 0 {
			return 0, nil
		}
		if _, err := t.eng.Write(ctx, id, 0, nil); err != nil {
			return 0, err
		}
		return t.eng.Truncate(ctx, id, u.length)
	case proto.ForwardRemove:
		if err := t.eng.Remove(ctx, id); err != nil && !isNotFound(err) {
			return 0, err
		}
		return 0, nil
	case proto.ForwardReplace:
		return u.version, t.eng.Replace(ctx, id, u.version, u.data)
	}
	return 0, proto.Errorf(proto.EINVAL, "storage: unknown update kind %v", u.kind)
}

// forward hands update u of chunk ref (built on version base, making
// version v) to t's successor in the chain, and on until the chain's
// tail has it, retrying through routing changes for at most the forward
// timeout. A successor that cannot apply u on its version gets t's whole
// chunk instead, once applied (nil: it is) says t's own apply is done.
// Without a successor (t is the write tail) it returns nil. The chunk's
// lock is held.
func (s *Service) forward(ctx context.Context, t *target, ref proto.ChunkRef, u update, base, v uint64, applied func() error) error {
	ctx, cancel := context.WithTimeout(ctx, s.fwdTimeout)
	defer cancel()
	id := chunkID(ref)
	whole := u.kind == proto.ForwardReplace
	pause := 5 * time.Millisecond
	for {
		ri := s.routing.Get()
		c := ri.Chain(ref.ChainID)
		if c == nil {
			return proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d is gone", ref.ChainID)
		}
		next, ok := successor(ri, c, t.id)
		if !ok {
			return proto.Errorf(proto.TargetNotServing, "storage: target %d left chain %d's writers (version %d) while it forwarded chunk %v", t.id, c.ID, c.Version, id)
		}
		if next == 0 {
			return nil
		}
		req := &proto.StorageForwardReq{
			Chunk: proto.ChunkRef{Ino: ref.Ino, Index: ref.Index, ChainID: c.ID, ChainVersion: c.Version, TargetID: next},
			Kind:  u.kind, Off: uint32(u.off), Length: uint32(u.length), ChunkSize: u.chunkSize,
			Base: base, Version: v,
		}
		payload := u.data
		var release func()
		if whole {
			if applied != nil {
				if err := applied(); err != nil {
					return err // nothing to copy: the caller reports its own failure
				}
			}
			var err error
			if payload, release, err = s.wholeChunk(ctx, t, id, req); err != nil {
				return err
			}
		}
		_, err := s.send(ctx, ri, req, payload)
		if release != nil {
			release()
		}
		switch {
		case err == nil:
			return nil
		case proto.CodeOf(err) == proto.ChunkVersionMismatch && !whole:
			whole = true // the successor missed updates: send the chunk
			continue
		case ctx.Err() != nil:
			return fmt.Errorf("storage: forwarding %v of chunk %v to target %d: %w (last error: %v)", u.kind, id, next, ctx.Err(), err)
		}
		s.log.Debug().Err(err).Stringer("chunk", id).Uint32("successor", next).Msg("storage: forward failed; retrying")
		if proto.CodeOf(err) != proto.ChainVersionMismatch {
			select {
			case <-time.After(pause):
			case <-ctx.Done():
			}
			pause = min(2*pause, 500*time.Millisecond)
		}
		if rerr := s.routing.Refresh(ctx); rerr != nil {
			s.log.Debug().Err(rerr).Msg("storage: routing refresh while forwarding")
		}
	}
}

// wholeChunk turns req into a replace carrying t's chunk id (a removal if
// t has none) and returns the payload and its release.
func (s *Service) wholeChunk(ctx context.Context, t *target, id chunkengine.ChunkID, req *proto.StorageForwardReq) ([]byte, func(), error) {
	req.Off, req.Length, req.ChunkSize, req.Base = 0, 0, 0, 0
	v, data, release, err := s.readWhole(ctx, t, id)
	if err != nil {
		return nil, nil, err
	}
	if v == 0 {
		req.Kind, req.Version = proto.ForwardRemove, 0
		return nil, nil, nil
	}
	req.Kind, req.Version, req.Length = proto.ForwardReplace, v, uint32(len(data))
	return data, release, nil
}

// readWhole reads t's chunk id whole into a pooled buffer, every block's
// checksum checked, and returns its version and bytes (version 0: t has no
// such chunk) and the buffer's release (nil on error).
func (s *Service) readWhole(ctx context.Context, t *target, id chunkengine.ChunkID) (uint64, []byte, func(), error) {
	ci, err := t.eng.Stat(ctx, id)
	if isNotFound(err) {
		return 0, nil, func() {}, nil
	}
	if err != nil {
		return 0, nil, nil, err
	}
	buf := s.bufs.get(int(ci.Length))
	data := (*buf)[:ci.Length]
	n := 0
	if ci.Length > 0 {
		n, _, err = t.eng.Read(ctx, id, 0, data)
	}
	if err == nil && int64(n) != ci.Length {
		err = proto.Errorf(proto.ChecksumMismatch, "read %d of its %d bytes", n, ci.Length)
	}
	if err != nil {
		s.bufs.put(buf)
		return 0, nil, nil, fmt.Errorf("storage: reading chunk %v of target %d whole: %w", id, t.id, err)
	}
	return ci.Version, data, func() { s.bufs.put(buf) }, nil
}

// send delivers req to its target: through this node's own handler when
// the target is local, else to its node over the Forwarder.
func (s *Service) send(ctx context.Context, ri *proto.RoutingInfo, req *proto.StorageForwardReq, payload []byte) (uint64, error) {
	if s.targets[req.Chunk.TargetID] != nil {
		return s.Forwarded(ctx, *req, payload)
	}
	addr, err := s.peerAddr(ri, req.Chunk.TargetID)
	if err != nil {
		return 0, err
	}
	return s.fwd.Forward(ctx, addr, req, payload)
}

// peerAddr is the address of the node holding target tid, which is not
// this node's, for the Forwarder.
func (s *Service) peerAddr(ri *proto.RoutingInfo, tid uint32) (string, error) {
	tg := ri.Target(tid)
	if tg == nil {
		return "", proto.Errorf(proto.ChainVersionMismatch, "storage: target %d is not in the routing info", tid)
	}
	n := ri.Node(tg.NodeID)
	if n == nil || n.Addr == "" {
		return "", proto.Errorf(proto.Unavailable, "storage: node %d of target %d has no address", tg.NodeID, tid)
	}
	if s.fwd == nil {
		return "", proto.Errorf(proto.Unavailable, "storage: node %d cannot reach other storage nodes (no forwarder)", s.nodeID)
	}
	return n.Addr, nil
}

// Forwarded applies an update forwarded by target req.Chunk.TargetID's
// predecessor (proto.MethodStorageForward) and hands it on down the chain;
// it returns once the chain's tail has it.
func (s *Service) Forwarded(ctx context.Context, req proto.StorageForwardReq, payload []byte) (uint64, error) {
	t := s.targets[req.Chunk.TargetID]
	if t == nil {
		return 0, proto.Errorf(proto.EINVAL, "storage: node %d: target %d: not my target", s.nodeID, req.Chunk.TargetID)
	}
	if err := s.fenced(); err != nil {
		return 0, err
	}
	refreshed := false
	ri, c, err := s.chainAt(ctx, req.Chunk, &refreshed)
	if err != nil {
		return 0, err
	}
	next, ok := successor(ri, c, t.id)
	if !ok {
		return 0, proto.Errorf(proto.TargetNotServing, "storage: target %d takes no writes of chain %d at version %d", t.id, c.ID, c.Version)
	}
	u := update{kind: req.Kind, off: int64(req.Off), length: int64(req.Length), chunkSize: req.ChunkSize, data: payload, version: req.Version}
	switch req.Kind {
	case proto.ForwardWrite:
		if err := proto.CheckChunkRange(req.Chunk.Index, req.ChunkSize, req.Off, int64(len(payload))); err != nil {
			return 0, fmt.Errorf("storage: forwarded write to chunk %d/%d: %w", req.Chunk.Ino, req.Chunk.Index, err)
		}
	case proto.ForwardTruncate:
		if req.Length > proto.MaxChunkSize {
			return 0, proto.Errorf(proto.EINVAL, "storage: forwarded truncate of chunk %d/%d to %d", req.Chunk.Ino, req.Chunk.Index, req.Length)
		}
	case proto.ForwardReplace:
		if int(req.Length) != len(payload) || req.Version == 0 {
			return 0, proto.Errorf(proto.EINVAL, "storage: replace of chunk %d/%d: %d bytes, length %d, version %d", req.Chunk.Ino, req.Chunk.Index, len(payload), req.Length, req.Version)
		}
	case proto.ForwardRemove:
	default:
		return 0, proto.Errorf(proto.EINVAL, "storage: unknown forwarded update kind %v", req.Kind)
	}
	id := chunkID(req.Chunk)
	unlock := t.locks.lock(id)
	defer unlock()
	cur, err := t.version(ctx, id)
	if err != nil && req.Kind != proto.ForwardReplace && req.Kind != proto.ForwardRemove {
		return 0, err // a damaged record: the predecessor replaces it
	}
	if (req.Kind == proto.ForwardWrite || req.Kind == proto.ForwardTruncate) && cur != req.Base {
		return 0, proto.Errorf(proto.ChunkVersionMismatch, "storage: target %d has chunk %v at version %d; the %v builds on %d", t.id, id, cur, req.Kind, req.Base)
	}
	if next != 0 {
		t.pend.mark(id, cur)
	}
	local := func() (uint64, error) {
		v, err := s.apply(ctx, t, id, u)
		if err == nil && req.Kind != proto.ForwardRemove && v != req.Version {
			// Cannot happen to replicas that agree on the base; if it
			// does, the predecessor's whole chunk settles it.
			return v, proto.Errorf(proto.ChunkVersionMismatch, "storage: target %d made version %d of chunk %v, the chain %d", t.id, v, id, req.Version)
		}
		return v, err
	}
	if next == 0 {
		return local()
	}
	// Pipelined: the successor receives the update while this disk
	// writes it. A whole chunk for the successor waits for the write.
	var (
		v       uint64
		lerr    error
		applied = make(chan struct{})
	)
	ferr := make(chan error, 1)
	go func() {
		ferr <- s.forward(context.WithoutCancel(ctx), t, req.Chunk, u, req.Base, req.Version, func() error {
			<-applied
			return lerr
		})
	}()
	v, lerr = local()
	close(applied)
	err = lerr
	if ferr := <-ferr; err == nil {
		err = ferr
	}
	if err != nil {
		return 0, err
	}
	t.pend.clear(id)
	return v, nil
}

// chainAt checks ref's chain version against the node's routing and
// returns the routing and the chain. *refreshed says whether the routing
// was already refreshed for this request; chainAt refreshes it (once) when
// the caller knows a newer chain version or a chain the node does not.
func (s *Service) chainAt(ctx context.Context, ref proto.ChunkRef, refreshed *bool) (*proto.RoutingInfo, *proto.Chain, error) {
	ri := s.routing.Get()
	var c *proto.Chain
	if ri != nil {
		c = ri.Chain(ref.ChainID)
	}
	if (c == nil || ref.ChainVersion > c.Version) && !*refreshed {
		*refreshed = true
		if err := s.routing.Refresh(ctx); err != nil {
			s.log.Warn().Err(err).Msg("storage: routing refresh")
		}
		if ri = s.routing.Get(); ri != nil {
			c = ri.Chain(ref.ChainID)
		}
	}
	if c == nil {
		return nil, nil, proto.Errorf(proto.ChainVersionMismatch, "storage: target %d: unknown chain %d", ref.TargetID, ref.ChainID)
	}
	if c.Version != ref.ChainVersion {
		return nil, nil, proto.Errorf(proto.ChainVersionMismatch, "storage: chain %d is at version %d, request has %d", ref.ChainID, c.Version, ref.ChainVersion)
	}
	return ri, c, nil
}

// committedRead reports whether a read of chunk io at version v on t may
// return it: always, unless the chunk has an update in flight that v may
// be, on a replica other than the chain's last serving one.
func (s *Service) committedRead(t *target, io proto.ChunkRef, v uint64) error {
	id := chunkID(io)
	if !t.pend.uncommitted(id, v) {
		return nil
	}
	ri := s.routing.Get()
	if c := ri.Chain(io.ChainID); c != nil && readTail(ri, c, t.id) {
		return nil
	}
	return proto.Errorf(proto.ChunkPending, "storage: target %d: chunk %v has a write in flight down chain %d; read the chain's tail", t.id, id, io.ChainID)
}

// Dump lists a page of target r.TargetID's chunks (proto.MethodStorageDump).
func (s *Service) Dump(ctx context.Context, r proto.StorageDumpReq) (proto.StorageDumpResp, error) {
	_, cis, more, err := s.page(ctx, r.TargetID, r.After, r.Limit, dumpPage)
	if err != nil {
		return proto.StorageDumpResp{}, err
	}
	out := proto.StorageDumpResp{Chunks: make([]proto.ChunkState, len(cis)), More: more}
	for i, ci := range cis {
		out.Chunks[i] = chunkState(ci)
	}
	return out, nil
}

// page scans up to limit (at most, and by default, max) chunks of this
// node's target tid after after (nil: from the first): dumps and scrubs.
func (s *Service) page(ctx context.Context, tid uint32, after *proto.ChunkState, limit, max int) (*target, []chunkengine.ChunkInfo, bool, error) {
	t := s.targets[tid]
	if t == nil {
		return nil, nil, false, proto.Errorf(proto.EINVAL, "storage: node %d: target %d: not my target", s.nodeID, tid)
	}
	if limit <= 0 || limit > max {
		limit = max
	}
	var from *chunkengine.ChunkID
	if after != nil {
		from = &chunkengine.ChunkID{Ino: after.Ino, Index: after.Index}
	}
	cis, more, err := t.eng.Scan(ctx, from, limit)
	return t, cis, more, err
}

// dumpPage is the most chunks a dump answers at once (~30 bytes each).
const dumpPage = 4096
