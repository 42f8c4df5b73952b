package storage_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/storage"
	"fff/server/storage/chunkengine"
)

// forwarder is a Forwarder to node 2 that a test scripts: each call goes to
// fn, and is recorded.
type forwarder struct {
	mu    sync.Mutex
	fn    func(req *proto.StorageForwardReq, payload []byte) (uint64, error)
	calls []proto.StorageForwardReq
	data  [][]byte
}

func (f *forwarder) Forward(ctx context.Context, addr string, req *proto.StorageForwardReq, payload []byte) (uint64, error) {
	f.mu.Lock()
	f.calls = append(f.calls, *req)
	f.data = append(f.data, bytes.Clone(payload))
	fn := f.fn
	f.mu.Unlock()
	return fn(req, payload)
}

// set makes fn answer the forwards from now on. Under the lock: the race
// detector does not see the order the RPC socket gives between the test
// and the server's handler goroutines.
func (f *forwarder) set(fn func(req *proto.StorageForwardReq, payload []byte) (uint64, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn = fn
}

func (f *forwarder) Dump(context.Context, string, proto.StorageDumpReq) (proto.StorageDumpResp, error) {
	return proto.StorageDumpResp{}, proto.Errorf(proto.Unavailable, "test: no dumps")
}

func (f *forwarder) Fetch(context.Context, string, proto.ChunkRef) (uint64, []byte, error) {
	return 0, nil, proto.Errorf(proto.Unavailable, "the test's forwarder fetches nothing")
}

func (f *forwarder) Repair(context.Context, string, proto.StorageRepairReq) (uint64, error) {
	return 0, proto.Errorf(proto.Unavailable, "the test's forwarder repairs nothing")
}

func (f *forwarder) recorded() ([]proto.StorageForwardReq, [][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]proto.StorageForwardReq(nil), f.calls...), append([][]byte(nil), f.data...)
}

// addChain installs chain id over targets (in that order) at version 1.
func (e *env) addChain(id uint32, targets ...uint32) {
	e.routing.update(func(ri *proto.RoutingInfo) {
		ri.Chains = append(ri.Chains, proto.Chain{ID: id, Version: 1, Targets: targets})
		ri.Node(2).Addr = "node2.invalid:1"
	})
}

// setState sets target tid's state and chain id's order, bumping its version.
func (e *env) setState(chain uint32, tid uint32, st proto.TargetState, order ...uint32) {
	e.routing.update(func(ri *proto.RoutingInfo) {
		ri.Target(tid).State = st
		c := ri.Chain(chain)
		c.Targets = order
		c.Version++
	})
}

// refOn names chunk (ino, idx) of chain on target tid at the chain's version.
func (e *env) refOn(chain, tid uint32, ino uint64, idx uint32) proto.ChunkRef {
	c := e.routing.Get().Chain(chain)
	return proto.ChunkRef{Ino: ino, Index: idx, ChainID: chain, ChainVersion: c.Version, TargetID: tid}
}

// replicas returns chunk (ino, idx)'s state on each local target of tids
// (Exists false where missing) and its bytes.
func (e *env) replicas(t *testing.T, ino uint64, idx uint32, tids ...uint32) ([]chunkengine.ChunkInfo, [][]byte) {
	t.Helper()
	var infos []chunkengine.ChunkInfo
	var datas [][]byte
	for _, tid := range tids {
		eng := e.svc.Engine(tid)
		id := chunkengine.ChunkID{Ino: ino, Index: idx}
		ci, err := eng.Stat(e.ctx, id)
		if proto.CodeOf(err) == proto.ENOENT {
			infos, datas = append(infos, chunkengine.ChunkInfo{}), append(datas, nil)
			continue
		}
		if err != nil {
			t.Fatalf("target %d: %v", tid, err)
		}
		buf := make([]byte, ci.Length)
		if n, _, err := eng.Read(e.ctx, id, 0, buf); err != nil || int64(n) != ci.Length {
			t.Fatalf("target %d: read %d of %d: %v", tid, n, ci.Length, err)
		}
		infos, datas = append(infos, ci), append(datas, buf)
	}
	return infos, datas
}

// sameReplicas fails unless chunk (ino, idx) is want (nil: absent) at the
// same version on every target of tids.
func (e *env) sameReplicas(t *testing.T, what string, ino uint64, idx uint32, want []byte, tids ...uint32) {
	t.Helper()
	infos, datas := e.replicas(t, ino, idx, tids...)
	for i, tid := range tids {
		if want == nil {
			if infos[i].Version != 0 {
				t.Fatalf("%s: target %d has the chunk (%+v), want none", what, tid, infos[i])
			}
			continue
		}
		if !bytes.Equal(datas[i], want) {
			t.Fatalf("%s: target %d holds %d bytes that differ from the %d written", what, tid, len(datas[i]), len(want))
		}
		if infos[i].Version != infos[0].Version || infos[i].Checksum != infos[0].Checksum {
			t.Fatalf("%s: target %d is at %+v, target %d at %+v", what, tid, infos[i], tids[0], infos[0])
		}
	}
}

// TestChainUpdates: writes, truncates and removals sent to a chain's head
// reach every member before they are acknowledged, in the head's order,
// at the head's versions; afterwards every member serves reads.
func TestChainUpdates(t *testing.T) {
	e := newEnv(t)
	e.addChain(4, 10, 11, 12)
	ref := e.refOn(4, 10, 9, 0)
	var model []byte
	steps := []struct {
		name string
		do   func() error
		edit func([]byte) []byte
	}{
		{"create", func() error { _, err := e.write(t, ref, 0, pattern(1, 10000)); return err }, func([]byte) []byte { return pattern(1, 10000) }},
		{"append", func() error { _, err := e.write(t, ref, 10000, pattern(2, 5000)); return err }, func(m []byte) []byte { return append(m, pattern(2, 5000)...) }},
		{"overwrite", func() error { _, err := e.write(t, ref, 100, pattern(3, 300)); return err }, func(m []byte) []byte { copy(m[100:], pattern(3, 300)); return m }},
		{"write past the end", func() error { _, err := e.write(t, ref, 20000, []byte("x")); return err }, func(m []byte) []byte { return append(append(m, make([]byte, 5000)...), 'x') }},
		{"shrink", func() error { return e.truncate(ref, 7000) }, func(m []byte) []byte { return m[:7000] }},
		{"grow", func() error { return e.truncate(ref, 9000) }, func(m []byte) []byte { return append(m, make([]byte, 2000)...) }},
		{"remove", func() error { return e.remove(ref) }, func([]byte) []byte { return nil }},
		{"truncate creates", func() error { return e.truncate(ref, 4096) }, func([]byte) []byte { return make([]byte, 4096) }},
	}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		model = st.edit(model)
		e.sameReplicas(t, st.name, 9, 0, model, 10, 11, 12)
		for _, tid := range []uint32{10, 11, 12} {
			n := uint32(len(model))
			res, got := e.read(t, e.refOn(4, tid, 9, 0), 0, max(n, 1))
			if res.Code != proto.OK || !bytes.Equal(got[:res.N], model) {
				t.Fatalf("%s: read on target %d: %+v", st.name, tid, res)
			}
		}
	}
}

func (e *env) truncate(ref proto.ChunkRef, n uint32) error {
	_, err := e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap(ref.Ino), Chunk: ref, Length: n}, nil)
	return err
}

func (e *env) remove(ref proto.ChunkRef) error {
	_, err := e.user.Call(e.ctx, proto.MethodStorageRemove, proto.StorageRemoveReq{Cap: e.cap(ref.Ino), Chunk: ref}, nil)
	return err
}

// TestChainRepairsDivergedMember: a member whose chunk is not the version
// an update builds on (it missed updates, lost the chunk, or has one it
// should not) gets its predecessor's whole chunk; a syncing member gets
// writes, an offline one does not.
func TestChainRepairsDivergedMember(t *testing.T) {
	e := newEnv(t)
	e.addChain(4, 10, 11, 12)
	ref := e.refOn(4, 10, 5, 2)
	id := chunkengine.ChunkID{Ino: 5, Index: 2}
	model := pattern(1, 30000)
	e.mustWrite(t, ref, 0, model)

	// The tail changed behind the chain's back (a version more), the
	// middle lost the chunk.
	if _, err := e.svc.Engine(12).Write(e.ctx, id, 0, []byte("stray")); err != nil {
		t.Fatal(err)
	}
	e.mustWrite(t, ref, 50, []byte("fifty"))
	copy(model[50:], "fifty")
	e.sameReplicas(t, "after the tail diverged", 5, 2, model, 10, 11, 12)
	if err := e.svc.Engine(11).Remove(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	e.mustWrite(t, ref, 60, []byte("sixty"))
	copy(model[60:], "sixty")
	e.sameReplicas(t, "after the middle lost the chunk", 5, 2, model, 10, 11, 12)

	// A member with a chunk the chain removed loses it on the next update.
	ref2 := e.refOn(4, 10, 5, 3)
	if _, err := e.svc.Engine(11).Write(e.ctx, chunkengine.ChunkID{Ino: 5, Index: 3}, 0, []byte("ghost")); err != nil {
		t.Fatal(err)
	}
	if err := e.remove(ref2); err != nil {
		t.Fatal(err)
	}
	e.sameReplicas(t, "removal", 5, 3, nil, 10, 11, 12)

	// Syncing: takes writes (its stale chunk is replaced whole).
	if _, err := e.svc.Engine(12).Write(e.ctx, id, 0, []byte("stale")); err != nil {
		t.Fatal(err)
	}
	e.setState(4, 12, proto.TargetSyncing, 10, 11, 12)
	e.mustWrite(t, e.refOn(4, 10, 5, 2), 70, []byte("seventy"))
	copy(model[70:], "seventy")
	e.sameReplicas(t, "with a syncing tail", 5, 2, model, 10, 11, 12)
	if res, _ := e.read(t, e.refOn(4, 12, 5, 2), 0, 10); res.Code != proto.TargetNotServing {
		t.Fatalf("read of the syncing member: %+v", res)
	}

	// Offline: skipped; the chain's serving members still agree.
	e.setState(4, 11, proto.TargetOffline, 10, 12, 11)
	before, _ := e.replicas(t, 5, 2, 11)
	e.mustWrite(t, e.refOn(4, 10, 5, 2), 80, []byte("eighty"))
	copy(model[80:], "eighty")
	e.sameReplicas(t, "with an offline member", 5, 2, model, 10, 12)
	if after, _ := e.replicas(t, 5, 2, 11); after[0] != before[0] {
		t.Fatalf("the offline member changed: %+v → %+v", before[0], after[0])
	}
}

// TestChainPendingReads: while a write is on its way down the chain, a
// replica that has it but is not the chain's last serving member answers
// ChunkPending instead of bytes the chain may not commit; other chunks,
// and the chunk once acknowledged, read normally.
func TestChainPendingReads(t *testing.T) {
	fw := &forwarder{}
	e := newEnv(t, func(o *storage.Options) { o.Forwarder = fw })
	e.addChain(5, 10, 20) // 20 is on node 2: the forwarder
	ref := e.refOn(5, 10, 3, 0)
	fw.set(func(*proto.StorageForwardReq, []byte) (uint64, error) { return 1, nil })
	e.mustWrite(t, e.refOn(5, 10, 3, 1), 0, []byte("other chunk"))

	arrived, release := make(chan struct{}), make(chan struct{})
	fw.set(func(*proto.StorageForwardReq, []byte) (uint64, error) {
		close(arrived)
		<-release
		return 1, nil
	})
	done := make(chan error, 1)
	go func() { _, err := e.write(t, ref, 0, []byte("new bytes")); done <- err }()
	<-arrived
	if res, _ := e.read(t, ref, 0, 9); res.Code != proto.ChunkPending {
		t.Fatalf("read of the head during the write: %+v, want ChunkPending", res)
	}
	_, err := e.user.Call(e.ctx, proto.MethodStorageStat, proto.StorageStatReq{Cap: e.cap(ref.Ino), Chunk: ref}, nil)
	wantCode(t, err, proto.ChunkPending)
	if res, got := e.read(t, e.refOn(5, 10, 3, 1), 0, 11); res.Code != proto.OK || string(got) != "other chunk" {
		t.Fatalf("read of another chunk during the write: %+v %q", res, got)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if res, got := e.read(t, ref, 0, 9); res.Code != proto.OK || string(got) != "new bytes" {
		t.Fatalf("read after the write: %+v %q", res, got)
	}
	calls, data := fw.recorded()
	last := calls[len(calls)-1]
	if last.Kind != proto.ForwardWrite || last.Chunk.TargetID != 20 || last.Base != 0 || last.Version != 1 || string(data[len(data)-1]) != "new bytes" {
		t.Fatalf("forwarded %+v %q", last, data[len(data)-1])
	}
}

// TestChainForwardRecovers: a successor that cannot apply an update gets
// the whole chunk; one that fails is retried under new routing, and a
// head left alone in its chain acknowledges on its own.
func TestChainForwardRecovers(t *testing.T) {
	fw := &forwarder{}
	e := newEnv(t, func(o *storage.Options) { o.Forwarder = fw })
	e.addChain(5, 10, 20)
	ref := e.refOn(5, 10, 4, 0)
	data := pattern(9, 12345)

	// Version mismatch → replace with the head's chunk.
	fw.set(func(req *proto.StorageForwardReq, _ []byte) (uint64, error) {
		if req.Kind != proto.ForwardReplace {
			return 0, proto.Errorf(proto.ChunkVersionMismatch, "test: behind")
		}
		return req.Version, nil
	})
	e.mustWrite(t, ref, 0, data)
	calls, payloads := fw.recorded()
	if len(calls) != 2 || calls[1].Kind != proto.ForwardReplace || calls[1].Version != 1 || int(calls[1].Length) != len(data) || !bytes.Equal(payloads[1], data) {
		t.Fatalf("forwards: %+v", calls)
	}

	// The successor fails; routing then takes it out of the chain, and
	// the head, alone, finishes the write.
	fw.mu.Lock()
	fw.calls, fw.data = nil, nil
	fw.mu.Unlock()
	fw.set(func(*proto.StorageForwardReq, []byte) (uint64, error) {
		return 0, proto.Errorf(proto.Unavailable, "test: node 2 is gone")
	})
	e.routing.mu.Lock()
	next := e.routing.cur.Clone()
	next.Target(20).State = proto.TargetOffline
	next.Chain(5).Version++
	next.Version++
	e.routing.next = next
	e.routing.mu.Unlock()
	e.mustWrite(t, ref, 0, []byte("alone"))
	if calls, _ := fw.recorded(); len(calls) != 1 {
		t.Fatalf("%d forwards, want 1 before the routing took the successor out", len(calls))
	}
	if res, got := e.read(t, e.refOn(5, 10, 4, 0), 0, 5); res.Code != proto.OK || string(got) != "alone" {
		t.Fatalf("read after failover: %+v %q", res, got)
	}
}

// TestForwardedChecks: the successor's side refuses what it must, changing
// nothing: an ordinary user, a stale chain version, an update on another
// base version, malformed updates.
func TestForwardedChecks(t *testing.T) {
	e := newEnv(t)
	e.addChain(4, 10, 11, 12)
	e.mustWrite(t, e.refOn(4, 10, 6, 0), 0, []byte("base"))
	fwd := func(c *rpc.Conn, req proto.StorageForwardReq, payload []byte) error {
		_, err := c.Call(e.ctx, proto.MethodStorageForward, &req, nil, rpc.WithPayload(payload))
		return err
	}
	ok := proto.StorageForwardReq{Chunk: e.refOn(4, 11, 6, 0), Kind: proto.ForwardWrite, ChunkSize: chunkSize, Base: 1, Version: 2}
	stale := ok
	stale.Chunk.ChainVersion = 0
	wrongBase := ok
	wrongBase.Base = 7
	badKind := ok
	badKind.Kind = 99
	badReplace := ok
	badReplace.Kind, badReplace.Length = proto.ForwardReplace, 3
	tooFar := ok
	tooFar.Off = chunkSize
	for _, tc := range []struct {
		name string
		conn *rpc.Conn
		req  proto.StorageForwardReq
		code proto.Code
	}{
		{"a user", e.user, ok, proto.EPERM},
		{"stale chain version", e.conn, stale, proto.ChainVersionMismatch},
		{"another base", e.conn, wrongBase, proto.ChunkVersionMismatch},
		{"unknown kind", e.conn, badKind, proto.EINVAL},
		{"replace of the wrong length", e.conn, badReplace, proto.EINVAL},
		{"past the chunk", e.conn, tooFar, proto.EINVAL},
	} {
		wantCode(t, fwd(tc.conn, tc.req, []byte("XXXX")), tc.code)
		e.sameReplicas(t, tc.name, 6, 0, []byte("base"), 10, 11, 12)
	}
	// The admin's well-formed update applies (and goes on to the tail).
	if err := fwd(e.conn, ok, []byte("BA")); err != nil {
		t.Fatal(err)
	}
	e.sameReplicas(t, "forwarded by hand", 6, 0, []byte("BAse"), 11, 12)
}

// gcPeers are node 2's GC side for TestGCCutFollowsChain: removals are
// accepted (and counted); cuts must not reach it directly.
type gcPeers struct {
	mu      sync.Mutex
	removes int
	cuts    int
}

func (p *gcPeers) RemoveInode(context.Context, string, uint32, uint64, uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.removes++
	return nil
}

func (p *gcPeers) CutChunk(context.Context, string, proto.ChunkRef, uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts++
	return nil
}

// TestGCCutFollowsChain: garbage collection of a truncated file cuts its
// last chunk through the chain's head, here this node's target, so the
// replica on node 2 is cut too (a forwarded truncate), and removes the
// chunks past it on every member.
func TestGCCutFollowsChain(t *testing.T) {
	fw := &forwarder{fn: func(req *proto.StorageForwardReq, _ []byte) (uint64, error) { return req.Version, nil }}
	e := newEnv(t, func(o *storage.Options) { o.Forwarder = fw })
	e.addChain(5, 10, 20)
	for idx := range uint32(2) {
		e.mustWrite(t, e.refOn(5, 10, 77, idx), 0, pattern(uint64(idx), 5000))
	}
	l := proto.Layout{ChunkSize: chunkSize, Stripe: 1, Chains: []uint32{5}}
	q := &fakeQueue{recs: []proto.GCRecord{{ID: proto.GCID{Ino: 77, Seq: 1}, Kind: proto.GCTruncate, Layout: l, From: 1000}}}
	peers := &gcPeers{}
	if n, err := e.svc.GCOnce(e.ctx, storage.WithPeers(q, peers)); err != nil || n != 1 {
		t.Fatalf("GCOnce: %d, %v", n, err)
	}
	calls, _ := fw.recorded()
	last := calls[len(calls)-1]
	if last.Kind != proto.ForwardTruncate || last.Length != 1000 || last.Chunk.TargetID != 20 || last.Chunk.Index != 0 {
		t.Fatalf("last forward %+v, want a truncate of chunk 0 to 1000 for target 20", last)
	}
	peers.mu.Lock()
	cuts, removes := peers.cuts, peers.removes
	peers.mu.Unlock()
	if cuts != 0 || removes != 1 {
		t.Fatalf("node 2 got %d direct cuts and %d removals, want 0 and 1", cuts, removes)
	}
	chunks, err := e.svc.Engine(10).List(e.ctx, 77)
	if err != nil || len(chunks) != 1 || chunks[0].Length != 1000 {
		t.Fatalf("head's chunks after the cut: %+v, %v", chunks, err)
	}
}

// TestFencing: a node whose lease from mgmtd ran out (its heartbeats did
// not get through: stopped, cut off) refuses reads, writes and forwarded
// updates, since mgmtd may have given its chains to others; a renewed
// lease ends it. Leases are set in the past and future, not waited for.
func TestFencing(t *testing.T) {
	e := newEnv(t)
	ref := e.ref(10, 1, 0)
	e.mustWrite(t, ref, 0, []byte("before"))
	e.svc.Lease(time.Now().Add(-time.Second))
	if res, _ := e.read(t, ref, 0, 6); res.Code != proto.TargetNotServing {
		t.Fatalf("read while fenced: %+v, want TargetNotServing", res)
	}
	_, err := e.write(t, ref, 0, []byte("during"))
	wantCode(t, err, proto.TargetNotServing)
	_, err = e.svc.Forwarded(e.ctx, proto.StorageForwardReq{Chunk: e.refOn(1, 10, 1, 0), Kind: proto.ForwardWrite, Base: 1, Version: 2, ChunkSize: chunkSize}, []byte("fwd"))
	wantCode(t, err, proto.TargetNotServing)
	e.svc.Lease(time.Now().Add(time.Hour))
	if res, got := e.read(t, ref, 0, 6); res.Code != proto.OK || string(got) != "before" {
		t.Fatalf("read with a lease: %+v %q", res, got)
	}
	e.mustWrite(t, ref, 0, []byte("after!"))
}
