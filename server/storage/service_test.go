package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"fff/internal/capability"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv/memkv"
	"fff/server/meta"
	"fff/server/storage"
	"fff/server/storage/chunkengine"
)

const (
	token     = "admin-token"
	userToken = "user-token"
	userUID   = 1000
	nodeID    = 1
	chunkSize = 256 << 10
)

// fakeRouting is a hand-made routing info; Refresh installs next (if set).
type fakeRouting struct {
	mu        sync.Mutex
	cur, next *proto.RoutingInfo
	refreshes int
}

func (f *fakeRouting) Get() *proto.RoutingInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur
}

func (f *fakeRouting) Refresh(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refreshes++
	if f.next != nil {
		f.cur, f.next = f.next, nil
	}
	return nil
}

// update edits a copy of the routing info and installs it.
func (f *fakeRouting) update(edit func(ri *proto.RoutingInfo)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ri := f.cur.Clone()
	edit(ri)
	ri.Version++
	f.cur = ri
}

type env struct {
	key     *capability.Key
	ctx     context.Context
	routing *fakeRouting
	svc     *storage.Service
	conn    *rpc.Conn
	user    *rpc.Conn // a user's, on TCP
	local   *rpc.Conn // the user's on the node's Unix socket
	dirs    map[uint32]string
}

// Targets 10 and 11 on this node, in chains 1 and 2 (one target each, at
// version 1); target 20 of node 2 heads chain 3 = [20, 12], with 12 local.
func newEnv(t *testing.T, edit ...func(*storage.Options)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	ri := &proto.RoutingInfo{
		Version: 1,
		Nodes:   []proto.Node{{ID: nodeID, Roles: proto.RolesAll}, {ID: 2, Roles: proto.RolesAll}},
		Targets: []proto.Target{
			{ID: 10, NodeID: nodeID, State: proto.TargetServing, ChainID: 1},
			{ID: 11, NodeID: nodeID, State: proto.TargetServing, ChainID: 2},
			{ID: 12, NodeID: nodeID, State: proto.TargetServing, ChainID: 3},
			{ID: 20, NodeID: 2, State: proto.TargetServing, ChainID: 3},
		},
		Chains: []proto.Chain{
			{ID: 1, Version: 1, Targets: []uint32{10}},
			{ID: 2, Version: 1, Targets: []uint32{11}},
			{ID: 3, Version: 1, Targets: []uint32{20, 12}},
		},
		ChainTables: []proto.ChainTable{{ID: 1, Version: 1, Chains: []uint32{1, 2}}},
	}
	e := &env{ctx: ctx, routing: &fakeRouting{cur: ri}, dirs: map[uint32]string{}}
	var tcs []storage.TargetConfig
	for _, id := range []uint32{10, 11, 12} {
		d := filepath.Join(t.TempDir(), "t")
		e.dirs[id] = d
		tcs = append(tcs, storage.TargetConfig{ID: id, Path: d})
	}
	secret, err := capability.Generate()
	if err != nil {
		t.Fatal(err)
	}
	if e.key, err = capability.New(secret); err != nil {
		t.Fatal(err)
	}
	opts := storage.Options{
		NodeID: nodeID, Targets: tcs, Routing: e.routing,
		Engine:       chunkengine.Options{MaxChunkSize: chunkSize},
		Capabilities: e.key,
	}
	for _, f := range edit {
		f(&opts)
	}
	svc, err := storage.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	e.svc = svc
	// The node serves a Unix socket too, where locates are answered; the
	// user's connection e.local moves there, the others stay on TCP.
	sock := filepath.Join(t.TempDir(), "fffd.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(rpc.ServerOptions{Auth: rpc.NewStaticTokens(map[string]rpc.Identity{
		token:     {UID: 0, Admin: true, Name: "admin"},
		userToken: {UID: userUID, GIDs: []uint32{userUID}, Name: "user"},
	}), LocalSocket: sock})
	svc.RegisterHandlers(srv)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	go srv.Serve(uln)
	t.Cleanup(func() { srv.Close() })
	for _, p := range []struct {
		c     **rpc.Conn
		tok   string
		local bool
	}{{&e.conn, token, false}, {&e.user, userToken, false}, {&e.local, userToken, true}} {
		c, err := rpc.Dial(ctx, ln.Addr().String(), p.tok, rpc.ClientOptions{TCPOnly: !p.local})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		*p.c = c
	}
	return e
}

// cap is a read and write capability of the user's for inode ino.
func (e *env) cap(ino uint64) *proto.Capability {
	c := e.key.Issue(ino, proto.CapRead|proto.CapWrite, userUID, time.Now().Add(time.Hour).UnixNano())
	return &c
}

// caps are the capabilities of the user's for the inodes of ios.
func (e *env) caps(ios []proto.ReadIO) []proto.Capability {
	var out []proto.Capability
	for _, io := range ios {
		if !slices.ContainsFunc(out, func(c proto.Capability) bool { return c.Ino == io.Chunk.Ino }) {
			out = append(out, *e.cap(io.Chunk.Ino))
		}
	}
	return out
}

// ref names chunk (ino, idx) on target tid with the current chain version.
func (e *env) ref(tid uint32, ino uint64, idx uint32) proto.ChunkRef {
	ri := e.routing.Get()
	c := ri.Chain(ri.Target(tid).ChainID)
	return proto.ChunkRef{Ino: ino, Index: idx, ChainID: c.ID, ChainVersion: c.Version, TargetID: tid}
}

func (e *env) write(t *testing.T, ref proto.ChunkRef, off uint32, data []byte) (uint64, error) {
	t.Helper()
	var resp proto.StorageWriteResp
	_, err := e.user.Call(e.ctx, proto.MethodStorageWrite, proto.StorageWriteReq{Cap: e.cap(ref.Ino), Chunk: ref, Off: off, ChunkSize: chunkSize},
		&resp, rpc.WithPayload(data))
	return resp.Version, err
}

func (e *env) mustWrite(t *testing.T, ref proto.ChunkRef, off uint32, data []byte) uint64 {
	t.Helper()
	v, err := e.write(t, ref, off, data)
	if err != nil {
		t.Fatalf("write %+v: %v", ref, err)
	}
	return v
}

// read reads one range and returns its result and bytes.
func (e *env) read(t *testing.T, ref proto.ChunkRef, off, n uint32) (proto.ReadResult, []byte) {
	t.Helper()
	dst := bytes.Repeat([]byte{0xEE}, int(n))
	var resp proto.StorageReadResp
	got, err := e.user.Call(e.ctx, proto.MethodStorageRead,
		proto.StorageReadReq{IOs: []proto.ReadIO{{Chunk: ref, Off: off, Len: n}}, Caps: []proto.Capability{*e.cap(ref.Ino)}}, &resp, rpc.IntoBuffer(dst))
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != int(n) || len(resp.Results) != 1 {
		t.Fatalf("read: payload %d (want %d), %d results", got, n, len(resp.Results))
	}
	return resp.Results[0], dst
}

func (e *env) stat(t *testing.T, ref proto.ChunkRef) proto.StorageStatResp {
	t.Helper()
	var resp proto.StorageStatResp
	if _, err := e.user.Call(e.ctx, proto.MethodStorageStat, proto.StorageStatReq{Cap: e.cap(ref.Ino), Chunk: ref}, &resp); err != nil {
		t.Fatalf("stat: %v", err)
	}
	return resp
}

func pattern(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func wantCode(t *testing.T, err error, code proto.Code) {
	t.Helper()
	if proto.CodeOf(err) != code {
		t.Fatalf("err = %v, want %v", err, code)
	}
}

func TestChunkOps(t *testing.T) {
	e := newEnv(t)
	ref := e.ref(10, 42, 3)
	data := pattern(1, 10000)

	// A chunk never written: a hole.
	if st := e.stat(t, ref); st.Exists {
		t.Fatalf("stat of a missing chunk: %+v", st)
	}
	res, got := e.read(t, ref, 0, 100)
	if res != (proto.ReadResult{}) || !bytes.Equal(got, make([]byte, 100)) {
		t.Fatalf("read of a missing chunk: %+v", res)
	}

	if v := e.mustWrite(t, ref, 0, data); v != 1 {
		t.Fatalf("version %d", v)
	}
	if v := e.mustWrite(t, ref, 10000, data[:500]); v != 2 {
		t.Fatalf("version %d", v)
	}
	want := append(bytes.Clone(data), data[:500]...)
	res, got = e.read(t, ref, 0, 12000) // past the end: N short, zeros after
	if res.N != 10500 || res.Version != 2 || res.Code != proto.OK {
		t.Fatalf("read: %+v", res)
	}
	if !bytes.Equal(got[:10500], want) || !bytes.Equal(got[10500:], make([]byte, 1500)) {
		t.Fatal("read: wrong bytes")
	}
	res, got = e.read(t, ref, 777, 3000)
	if res.N != 3000 || !bytes.Equal(got, want[777:3777]) {
		t.Fatalf("read at an offset: %+v", res)
	}
	if st := e.stat(t, ref); st != (proto.StorageStatResp{Exists: true, Version: 2, Length: 10500}) {
		t.Fatalf("stat: %+v", st)
	}

	// Writes beyond the file's chunk size are refused.
	_, err := e.write(t, ref, chunkSize-10, make([]byte, 11))
	wantCode(t, err, proto.EINVAL)

	// Truncate: shrink, grow, and a missing chunk.
	var tr proto.StorageTruncateResp
	if _, err := e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap(ref.Ino), Chunk: ref, Length: 5000}, &tr); err != nil || tr.Version != 3 {
		t.Fatalf("truncate: %v %+v", err, tr)
	}
	if _, err := e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap(ref.Ino), Chunk: ref, Length: 6000}, &tr); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	res, got = e.read(t, ref, 0, 6000)
	if res.N != 6000 || !bytes.Equal(got[:5000], data[:5000]) || !bytes.Equal(got[5000:], make([]byte, 1000)) {
		t.Fatalf("after truncates: %+v", res)
	}
	other := e.ref(10, 42, 4)
	if _, err := e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap(other.Ino), Chunk: other, Length: 0}, &tr); err != nil || tr.Version != 0 {
		t.Fatalf("truncate missing to 0: %v %+v", err, tr)
	}
	if st := e.stat(t, other); st.Exists {
		t.Fatalf("truncate to 0 created the chunk: %+v", st)
	}
	if _, err := e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap(other.Ino), Chunk: other, Length: 9000}, &tr); err != nil {
		t.Fatalf("truncate missing: %v", err)
	}
	if st := e.stat(t, other); !st.Exists || st.Length != 9000 {
		t.Fatalf("stat after truncating a missing chunk: %+v", st)
	}

	// Remove, twice (no error when absent).
	for range 2 {
		if _, err := e.user.Call(e.ctx, proto.MethodStorageRemove, proto.StorageRemoveReq{Cap: e.cap(ref.Ino), Chunk: ref}, nil); err != nil {
			t.Fatalf("remove: %v", err)
		}
	}
	if st := e.stat(t, ref); st.Exists {
		t.Fatalf("stat after remove: %+v", st)
	}

	// RemoveInode: admin only.
	req := proto.StorageRemoveInodeReq{TargetID: 10, Ino: 42}
	_, err = e.user.Call(e.ctx, proto.MethodStorageRemoveInode, req, nil)
	wantCode(t, err, proto.EPERM)
	var rr proto.StorageRemoveInodeResp
	if _, err := e.conn.Call(e.ctx, proto.MethodStorageRemoveInode, req, &rr); err != nil || rr.Removed != 1 {
		t.Fatalf("remove inode: %v %+v", err, rr)
	}
}

// TestBatchedRead reads many ranges of chunks on two targets in one call,
// straight into the destination buffers.
func TestBatchedRead(t *testing.T) {
	e := newEnv(t)
	const ino = 7
	chunks := map[proto.ChunkRef][]byte{}
	var refs []proto.ChunkRef
	for idx := range uint32(6) {
		tid := uint32(10 + idx%2)
		ref := e.ref(tid, ino, idx)
		data := pattern(uint64(idx), 20000+int(idx)*7000)
		if idx != 5 { // chunk 5 is a hole
			e.mustWrite(t, ref, 0, data)
		} else {
			data = nil
		}
		chunks[ref] = data
		refs = append(refs, ref)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var ios []proto.ReadIO
	var dsts [][]byte
	for range 200 {
		ref := refs[r.IntN(len(refs))]
		off := uint32(r.IntN(60000))
		n := uint32(r.IntN(9000))
		if r.IntN(20) == 0 {
			n = 0
		}
		ios = append(ios, proto.ReadIO{Chunk: ref, Off: off, Len: n})
		dsts = append(dsts, bytes.Repeat([]byte{0xEE}, int(n)))
	}
	var resp proto.StorageReadResp
	n, err := e.user.Call(e.ctx, proto.MethodStorageRead, proto.StorageReadReq{IOs: ios, Caps: e.caps(ios)}, &resp, rpc.IntoBuffers(dsts...))
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, io := range ios {
		total += int(io.Len)
	}
	if n != total || len(resp.Results) != len(ios) {
		t.Fatalf("payload %d, want %d; %d results", n, total, len(resp.Results))
	}
	for k, io := range ios {
		data := chunks[io.Chunk]
		want := make([]byte, io.Len)
		if int(io.Off) < len(data) {
			copy(want, data[io.Off:])
		}
		wantN := max(0, min(int(io.Len), len(data)-int(io.Off)))
		res := resp.Results[k]
		if res.Code != proto.OK || int(res.N) != wantN {
			t.Fatalf("io %d %+v: result %+v, want N=%d", k, io, res, wantN)
		}
		if !bytes.Equal(dsts[k], want) {
			t.Fatalf("io %d %+v: wrong bytes", k, io)
		}
	}
}

func TestRoutingChecks(t *testing.T) {
	e := newEnv(t)
	ref := e.ref(10, 1, 0)
	e.mustWrite(t, ref, 0, []byte("hello"))

	// A stale chain version, for writes and (per IO) reads.
	e.routing.update(func(ri *proto.RoutingInfo) { ri.Chain(1).Version = 2 })
	_, err := e.write(t, ref, 0, []byte("x"))
	wantCode(t, err, proto.ChainVersionMismatch)
	if !errors.Is(err, proto.ErrChainVersionMismatch) {
		t.Fatalf("errors.Is: %v", err)
	}
	good := e.ref(11, 1, 1)
	e.mustWrite(t, good, 0, []byte("world"))
	dsts := [][]byte{make([]byte, 5), make([]byte, 5)}
	var resp proto.StorageReadResp
	if _, err := e.user.Call(e.ctx, proto.MethodStorageRead, proto.StorageReadReq{IOs: []proto.ReadIO{
		{Chunk: ref, Len: 5}, {Chunk: good, Len: 5},
	}, Caps: []proto.Capability{*e.cap(ref.Ino)}}, &resp, rpc.IntoBuffers(dsts...)); err != nil {
		t.Fatal(err)
	}
	if resp.Results[0].Code != proto.ChainVersionMismatch || resp.Results[1].Code != proto.OK ||
		string(dsts[1]) != "world" || !bytes.Equal(dsts[0], make([]byte, 5)) {
		t.Fatalf("results %+v, %q", resp.Results, dsts)
	}

	// A newer version than the node knows: it refreshes once, then accepts.
	ref = e.ref(10, 1, 0)
	e.routing.mu.Lock()
	next := e.routing.cur.Clone()
	next.Chain(1).Version = 3
	next.Version++
	e.routing.next = next
	before := e.routing.refreshes
	e.routing.mu.Unlock()
	ref.ChainVersion = 3
	e.mustWrite(t, ref, 0, []byte("j"))
	e.routing.mu.Lock()
	refreshes := e.routing.refreshes - before
	e.routing.mu.Unlock()
	if refreshes != 1 {
		t.Fatalf("%d refreshes", refreshes)
	}
	ref.ChainVersion = 4 // newer than even the refreshed routing
	_, err = e.write(t, ref, 0, []byte("x"))
	wantCode(t, err, proto.ChainVersionMismatch)

	// Unknown chain, a target of another node, a target not in the chain.
	bad := e.ref(10, 1, 0)
	bad.ChainID = 99
	_, err = e.write(t, bad, 0, []byte("x"))
	wantCode(t, err, proto.ChainVersionMismatch)
	_, err = e.write(t, e.ref(20, 1, 0), 0, []byte("x"))
	wantCode(t, err, proto.EINVAL)
	bad = e.ref(10, 1, 0)
	bad.TargetID = 11
	_, err = e.write(t, bad, 0, []byte("x"))
	wantCode(t, err, proto.EINVAL)

	// Not the head: target 12 is second in chain 3.
	_, err = e.write(t, e.ref(12, 1, 0), 0, []byte("x"))
	wantCode(t, err, proto.NotHead)
	_, err = e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap((e.ref(12, 1, 0)).Ino), Chunk: e.ref(12, 1, 0), Length: 1}, nil)
	wantCode(t, err, proto.NotHead)
	// Reads go to any serving replica.
	if _, err := e.svc.Engine(12).Write(e.ctx, chunkengine.ChunkID{Ino: 1, Index: 0}, 0, []byte("abcd")); err != nil {
		t.Fatal(err)
	}
	if res, got := e.read(t, e.ref(12, 1, 0), 0, 4); res.Code != proto.OK || string(got) != "abcd" {
		t.Fatalf("read of a non-head: %+v %q", res, got)
	}

	// A target that is not serving serves no reads (and no stats).
	e.routing.update(func(ri *proto.RoutingInfo) { ri.Target(11).State = proto.TargetSyncing })
	if res, _ := e.read(t, e.ref(11, 1, 1), 0, 5); res.Code != proto.TargetNotServing {
		t.Fatalf("read of a syncing target: %+v", res)
	}
	_, err = e.user.Call(e.ctx, proto.MethodStorageStat, proto.StorageStatReq{Cap: e.cap((e.ref(11, 1, 1)).Ino), Chunk: e.ref(11, 1, 1)}, nil)
	wantCode(t, err, proto.TargetNotServing)
	// Nor writes: a head that is not serving heads a chain with no
	// serving member.
	_, err = e.write(t, e.ref(11, 1, 1), 0, []byte("W"))
	wantCode(t, err, proto.TargetNotServing)
}

// TestChecksumMismatch flips a byte of a chunk on disk: the IO reading it
// fails with ChecksumMismatch, the others of the batch succeed.
func TestChecksumMismatch(t *testing.T) {
	e := newEnv(t)
	bad, good := e.ref(10, 5, 0), e.ref(10, 5, 1)
	badData, goodData := pattern(1, 3*4096+100), pattern(2, 8192)
	e.mustWrite(t, bad, 0, badData)
	e.mustWrite(t, good, 0, goodData)

	var path string
	filepath.WalkDir(filepath.Join(e.dirs[10], "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, _ := d.Info(); fi != nil && fi.Size() >= int64(len(badData)) && fi.Size() < 4*4096+1 && path == "" {
				path = p
			}
		}
		return nil
	})
	if path == "" {
		t.Fatal("data file not found")
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 5000)
	b[0] ^= 0xFF
	if _, err := f.WriteAt(b, 5000); err != nil {
		t.Fatal(err)
	}
	f.Sync()
	f.Close()

	ios := []proto.ReadIO{
		{Chunk: good, Off: 0, Len: 4096},
		{Chunk: bad, Off: 4096, Len: 4096}, // the damaged block
		{Chunk: bad, Off: 8192, Len: 1000}, // an intact block of the same chunk
		{Chunk: good, Off: 4096, Len: 4096},
	}
	dsts := [][]byte{make([]byte, 4096), bytes.Repeat([]byte{0xEE}, 4096), make([]byte, 1000), make([]byte, 4096)}
	var resp proto.StorageReadResp
	if _, err := e.user.Call(e.ctx, proto.MethodStorageRead, proto.StorageReadReq{IOs: ios, Caps: e.caps(ios)}, &resp, rpc.IntoBuffers(dsts...)); err != nil {
		t.Fatal(err)
	}
	r := resp.Results
	if r[1].Code != proto.ChecksumMismatch || r[1].N != 0 || !bytes.Equal(dsts[1], make([]byte, 4096)) {
		t.Fatalf("damaged IO: %+v", r[1])
	}
	if r[0].Code != proto.OK || r[2].Code != proto.OK || r[3].Code != proto.OK ||
		!bytes.Equal(dsts[0], goodData[:4096]) || !bytes.Equal(dsts[2], badData[8192:9192]) || !bytes.Equal(dsts[3], goodData[4096:]) {
		t.Fatalf("intact IOs: %+v", r)
	}
}

// TestGC deletes a file through meta and collects its chunks.
func TestGC(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx
	ms := meta.New(memkv.New(), meta.Options{ChainTables: meta.StaticChainTables{1: {1, 2}}, ChunkSize: chunkSize})
	if err := ms.Init(ctx); err != nil {
		t.Fatal(err)
	}
	write := func(name string, chunks int) proto.Inode {
		op, err := ms.Create(ctx, meta.Root, proto.RootIno, name, 0o644, proto.OpenWrite)
		if err != nil {
			t.Fatal(err)
		}
		l := op.Inode.Layout
		if l == nil || len(l.Chains) != 2 {
			t.Fatalf("layout %+v", l)
		}
		for idx := range uint32(chunks) {
			chain := l.ChainOf(uint64(idx))
			tid := e.routing.Get().Chain(chain).Targets[0]
			e.mustWrite(t, e.ref(tid, op.Inode.Ino, idx), 0, pattern(uint64(idx), 5000))
		}
		if _, err := ms.Close(ctx, meta.Root, op.Session, uint64(chunks-1)*chunkSize+5000, true); err != nil {
			t.Fatal(err)
		}
		return op.Inode
	}
	gone := write("gone", 5)
	kept := write("kept", 3)
	if err := ms.Unlink(ctx, meta.Root, proto.RootIno, "gone"); err != nil {
		t.Fatal(err)
	}
	n, err := e.svc.GCOnce(ctx, storage.MetaGC(ms))
	if err != nil || n != 1 {
		t.Fatalf("gc: %d records, %v", n, err)
	}
	for _, tid := range []uint32{10, 11} {
		eng := e.svc.Engine(tid)
		if l, err := eng.List(ctx, gone.Ino); err != nil || len(l) != 0 {
			t.Fatalf("target %d: chunks of the deleted file: %v %v", tid, l, err)
		}
		if l, err := eng.List(ctx, kept.Ino); err != nil || len(l) == 0 {
			t.Fatalf("target %d: chunks of the kept file: %v %v", tid, l, err)
		}
	}
	files := 0
	for _, tid := range []uint32{10, 11} {
		filepath.WalkDir(filepath.Join(e.dirs[tid], "data"), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files++
			}
			return nil
		})
	}
	if files != 3 { // the kept file's chunks
		t.Fatalf("%d data files left, want 3", files)
	}
	if n, err := e.svc.GCOnce(ctx, storage.MetaGC(ms)); err != nil || n != 0 {
		t.Fatalf("second pass: %d %v", n, err)
	}

	// Truncating the kept file to 0 removes its chunks.
	op, err := ms.Open(ctx, meta.Root, kept.Ino, proto.OpenWrite|proto.OpenTrunc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Close(ctx, meta.Root, op.Session, 0, false); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.GCOnce(ctx, storage.MetaGC(ms)); err != nil || n != 1 {
		t.Fatalf("gc of a truncate: %d %v", n, err)
	}
	for _, tid := range []uint32{10, 11} {
		if l, _ := e.svc.Engine(tid).List(ctx, kept.Ino); len(l) != 0 {
			t.Fatalf("target %d: chunks left after truncating to 0: %v", tid, l)
		}
	}

	// A truncate record to 1.5 chunks cuts chunk 1 and removes chunk 2.
	l := *kept.Layout
	for idx := range uint32(3) {
		tid := e.routing.Get().Chain(l.ChainOf(uint64(idx))).Targets[0]
		e.mustWrite(t, e.ref(tid, kept.Ino, idx), 0, pattern(uint64(idx), 5000))
	}
	q := &fakeQueue{recs: []proto.GCRecord{{ID: proto.GCID{Ino: kept.Ino, Seq: 9}, Kind: proto.GCTruncate, Layout: l, From: chunkSize + 1000}}}
	if n, err := e.svc.GCOnce(ctx, q); err != nil || n != 1 || len(q.done) != 1 {
		t.Fatalf("gc of a truncate: %d %v %v", n, err, q.done)
	}
	var left []uint32
	for _, tid := range []uint32{10, 11} {
		chunks, _ := e.svc.Engine(tid).List(ctx, kept.Ino)
		for _, c := range chunks {
			left = append(left, c.ID.Index)
			if want := map[uint32]int64{0: 5000, 1: 1000}[c.ID.Index]; c.Length != want {
				t.Fatalf("chunk %d: length %d, want %d", c.ID.Index, c.Length, want)
			}
		}
	}
	if len(left) != 2 {
		t.Fatalf("chunks left: %v, want 0 and 1", left)
	}

	// Stats for heartbeats.
	st := e.svc.Stats()
	if len(st) != 3 || st[0].ID != 10 || st[0].Capacity == 0 {
		t.Fatalf("stats %+v", st)
	}
}

// fakeQueue is a GC queue in memory, as meta keeps it: records in id
// order, listed after a position, removed when done.
type fakeQueue struct {
	mu    sync.Mutex
	recs  []proto.GCRecord // in id order
	done  []proto.GCID
	lists int
}

func gcLess(a, b proto.GCID) bool { return a.Ino < b.Ino || a.Ino == b.Ino && a.Seq < b.Seq }

func (q *fakeQueue) GCList(_ context.Context, after *proto.GCID, limit int) ([]proto.GCRecord, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.lists++
	var out []proto.GCRecord
	for _, r := range q.recs {
		if len(out) == limit {
			break
		}
		if after == nil || gcLess(*after, r.ID) {
			out = append(out, r)
		}
	}
	return out, nil
}

func (q *fakeQueue) GCDone(_ context.Context, ids []proto.GCID) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.done = append(q.done, ids...)
	gone := map[proto.GCID]bool{}
	for _, id := range ids {
		gone[id] = true
	}
	kept := q.recs[:0]
	for _, r := range q.recs {
		if !gone[r.ID] {
			kept = append(kept, r)
		}
	}
	q.recs = kept
	return nil
}

// TestGCScansPastOthersRecords: more than a batch of records that another
// node owns at the head of the queue (that node may be down) must not
// hide this node's records behind them. RunGC pages through the queue.
func TestGCScansPastOthersRecords(t *testing.T) {
	e := newEnv(t)
	others := proto.Layout{ChunkSize: chunkSize, Chains: []uint32{3}} // head target 20, on node 2
	mine := proto.Layout{ChunkSize: chunkSize, Chains: []uint32{1}}   // target 10, on this node
	q := &fakeQueue{}
	for i := range 2500 {
		q.recs = append(q.recs, proto.GCRecord{ID: proto.GCID{Ino: uint64(1000 + i), Seq: 1<<64 - 1}, Kind: proto.GCDelete, Layout: others})
	}
	var want []proto.GCID
	for i := range 10 {
		id := proto.GCID{Ino: uint64(9000 + i), Seq: 1<<64 - 1}
		want = append(want, id)
		q.recs = append(q.recs, proto.GCRecord{ID: id, Kind: proto.GCDelete, Layout: mine})
	}
	// One batch from the head sees only the other node's records.
	if n, err := e.svc.GCOnce(e.ctx, q); err != nil || n != 0 {
		t.Fatalf("GCOnce: %d records, %v; want 0 (the first batch is all node 2's)", n, err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	ran := make(chan error, 1)
	go func() { ran <- e.svc.RunGC(ctx, q, time.Hour) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		q.mu.Lock()
		done := slices.Clone(q.done)
		q.mu.Unlock()
		if len(done) >= len(want) || time.Now().After(deadline) {
			cancel()
			if err := <-ran; err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(done, want) {
				t.Fatalf("RunGC acknowledged %d records (%v...), want this node's %d", len(done), done[:min(len(done), 3)], len(want))
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(q.recs) != 2500 {
		t.Fatalf("%d records left, want node 2's 2500", len(q.recs))
	}
}
