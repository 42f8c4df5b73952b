package libfff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fff/ffrecord"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/testcluster"
	"fff/server/mgmtd"
)

// The data path of the client against an in-memory fake of the storage
// service (server/storage has its own tests; tests/ runs the real one):
// it holds chunks in a map, checks chunk references against the routing
// info, and can be told to fail requests.

type fakeChunk struct {
	ino   uint64
	index uint32
}

type fakeStorage struct {
	mg *mgmtd.Service

	mu     sync.Mutex
	chunks map[fakeChunk][]byte

	reads, readIOs, writes atomic.Int64
	// writeDelay slows writes down; maxWrites is the most seen at once.
	writeDelay           atomic.Int64 // ns
	curWrites, maxWrites atomic.Int64
	// failNext makes the next n requests (reads and writes) fail with code.
	failNext atomic.Int64
	failCode proto.Code
}

func (s *fakeStorage) fail() error {
	if s.failNext.Load() > 0 && s.failNext.Add(-1) >= 0 {
		return proto.Errorf(s.failCode, "fake storage: injected failure")
	}
	return nil
}

func (s *fakeStorage) check(ctx context.Context, ref proto.ChunkRef) error {
	ri, err := s.mg.GetRouting(ctx, 0)
	if err != nil {
		return err
	}
	ch := ri.Chain(ref.ChainID)
	if ch == nil || ch.Version != ref.ChainVersion {
		return proto.Errorf(proto.ChainVersionMismatch, "chain %d", ref.ChainID)
	}
	return nil
}

func (s *fakeStorage) register(srv *rpc.Server) {
	srv.Handle(proto.MethodStorageRead, rpc.AccessUser, func(ctx context.Context, r *rpc.Request) (*rpc.Response, error) {
		var req proto.StorageReadReq
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		s.reads.Add(1)
		s.readIOs.Add(int64(len(req.IOs)))
		if err := s.fail(); err != nil {
			return nil, err
		}
		total := 0
		for _, io := range req.IOs {
			total += int(io.Len)
		}
		payload := make([]byte, total)
		resp := proto.StorageReadResp{Results: make([]proto.ReadResult, len(req.IOs))}
		pos := 0
		s.mu.Lock()
		for k, io := range req.IOs {
			if err := s.check(ctx, io.Chunk); err != nil {
				resp.Results[k] = proto.ReadResult{Code: proto.CodeOf(err), Msg: err.Error()}
			} else if data := s.chunks[fakeChunk{io.Chunk.Ino, io.Chunk.Index}]; int(io.Off) < len(data) {
				resp.Results[k].N = uint32(copy(payload[pos:pos+int(io.Len)], data[io.Off:]))
			}
			pos += int(io.Len)
		}
		s.mu.Unlock()
		return &rpc.Response{Body: &resp, Payload: [][]byte{payload}}, nil
	})
	srv.Handle(proto.MethodStorageWrite, rpc.AccessUser, func(ctx context.Context, r *rpc.Request) (*rpc.Response, error) {
		var req proto.StorageWriteReq
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		s.writes.Add(1)
		cur := s.curWrites.Add(1)
		defer s.curWrites.Add(-1)
		for m := s.maxWrites.Load(); cur > m && !s.maxWrites.CompareAndSwap(m, cur); m = s.maxWrites.Load() {
		}
		time.Sleep(time.Duration(s.writeDelay.Load()))
		if err := s.fail(); err != nil {
			return nil, err
		}
		if err := s.check(ctx, req.Chunk); err != nil {
			return nil, err
		}
		end := int(req.Off) + len(r.Payload)
		if end > int(req.ChunkSize) {
			return nil, proto.Errorf(proto.EINVAL, "write past the chunk")
		}
		k := fakeChunk{req.Chunk.Ino, req.Chunk.Index}
		s.mu.Lock()
		data := s.chunks[k]
		if len(data) < end {
			data = append(data, make([]byte, end-len(data))...)
		}
		copy(data[req.Off:], r.Payload)
		s.chunks[k] = data
		s.mu.Unlock()
		return &rpc.Response{Body: &proto.StorageWriteResp{Version: 1}}, nil
	})
	srv.Handle(proto.MethodStorageTruncate, rpc.AccessUser, func(ctx context.Context, r *rpc.Request) (*rpc.Response, error) {
		var req proto.StorageTruncateReq
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		k := fakeChunk{req.Chunk.Ino, req.Chunk.Index}
		s.mu.Lock()
		data := s.chunks[k]
		if len(data) < int(req.Length) {
			data = append(data, make([]byte, int(req.Length)-len(data))...)
		}
		s.chunks[k] = data[:req.Length]
		s.mu.Unlock()
		return &rpc.Response{Body: &proto.StorageTruncateResp{Version: 1}}, nil
	})
	srv.Handle(proto.MethodStorageRemove, rpc.AccessUser, func(ctx context.Context, r *rpc.Request) (*rpc.Response, error) {
		var req proto.StorageRemoveReq
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		s.mu.Lock()
		delete(s.chunks, fakeChunk{req.Chunk.Ino, req.Chunk.Index})
		s.mu.Unlock()
		return &rpc.Response{}, nil
	})
}

// startDataCluster is startCluster with the fake storage service.
func startDataCluster(t *testing.T) (testCluster, *fakeStorage) {
	t.Helper()
	var fs *fakeStorage
	c := testcluster.Start(t, testcluster.Options{Targets: 3, Register: func(srv *rpc.Server, mg *mgmtd.Service) {
		fs = &fakeStorage{mg: mg, chunks: map[fakeChunk][]byte{}}
		fs.register(srv)
	}})
	return testCluster{addr: c.Addr, adminToken: c.AdminToken}, fs
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func putFile(t *testing.T, c *Client, name string, data []byte) {
	t.Helper()
	ctx := context.Background()
	f, err := c.Create(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Write(data); err != nil || n != len(data) {
		t.Fatalf("write %s: %d, %v", name, n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
}

func getFile(t *testing.T, c *Client, name string) []byte {
	t.Helper()
	f, err := c.OpenFile(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return b
}

const testChunk = 4096

func dataClient(t *testing.T) (*Client, *fakeStorage) {
	tc, fs := startDataCluster(t)
	c := connect(t, tc.addr, tc.adminToken)
	smallChunkDir(t, c)
	return c, fs
}

// smallChunkDir makes /d, whose new files have testChunk-byte chunks.
func smallChunkDir(t *testing.T, c *Client) {
	t.Helper()
	ctx := context.Background()
	if err := c.Mkdir(ctx, "/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDirLayout(ctx, "/d", proto.DirLayout{ChunkSize: testChunk}); err != nil {
		t.Fatal(err)
	}
}

func TestFilePutGet(t *testing.T) {
	t.Parallel()
	c, _ := dataClient(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 4095, 4096, 4097, 3*testChunk + 5, 40 * testChunk} {
		name := fmt.Sprintf("/d/f%d", n)
		data := randBytes(r, n)
		putFile(t, c, name, data)
		if got := getFile(t, c, name); !bytes.Equal(got, data) {
			t.Fatalf("%s: read %d bytes back, differing from the %d written", name, len(got), n)
		}
		fi, err := c.Stat(context.Background(), name)
		if err != nil || fi.Size() != int64(n) {
			t.Fatalf("stat %s: %v, %v", name, fi, err)
		}
	}
	// Writes in small pieces go through the write-behind buffer.
	data := randBytes(r, 10*testChunk+17)
	f, err := c.Create(context.Background(), "/d/small")
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); off += 100 {
		if _, err := f.Write(data[off:min(off+100, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	// A read through the same File sees the buffered writes.
	back := make([]byte, len(data))
	if n, err := f.ReadAt(back, 0); n != len(data) || err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back through the writer: %d, %v", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := getFile(t, c, "/d/small"); !bytes.Equal(got, data) {
		t.Fatal("small writes: the data differs")
	}
}

func TestFileSemantics(t *testing.T) {
	t.Parallel()
	c, _ := dataClient(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	want := randBytes(r, 5*testChunk)
	putFile(t, c, "/d/f", want)

	f, err := c.Open(ctx, "/d/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite across a chunk boundary.
	patch := randBytes(r, 3000)
	if _, err := f.WriteAt(patch, testChunk-1000); err != nil {
		t.Fatal(err)
	}
	copy(want[testChunk-1000:], patch)
	// Read past the end: short with io.EOF.
	buf := make([]byte, 100)
	if n, err := f.ReadAt(buf, int64(len(want))-10); n != 10 || err != io.EOF || !bytes.Equal(buf[:10], want[len(want)-10:]) {
		t.Fatalf("ReadAt at the end: %d, %v", n, err)
	}
	if n, err := f.ReadAt(buf, int64(len(want))+10); n != 0 || err != io.EOF {
		t.Fatalf("ReadAt past the end: %d, %v", n, err)
	}
	// Append through Seek + Write, with a hole.
	if pos, err := f.Seek(100, io.SeekEnd); err != nil || pos != int64(len(want))+100 {
		t.Fatalf("seek: %d, %v", pos, err)
	}
	tail := randBytes(r, 50)
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	want = append(append(want, make([]byte, 100)...), tail...)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "/d/f"); err != nil || fi.Size() != int64(len(want)) {
		t.Fatalf("size after sync: %v, %v (want %d)", fi.Size(), err, len(want))
	}
	// Truncate down, then up: the cut bytes read as zeros.
	if err := f.Truncate(testChunk + 10); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3 * testChunk); err != nil {
		t.Fatal(err)
	}
	want = append(want[:testChunk+10], make([]byte, 3*testChunk-testChunk-10)...)
	// And write after the truncate: the length report counts.
	if _, err := f.WriteAt([]byte("end"), 3*testChunk); err != nil {
		t.Fatal(err)
	}
	want = append(want, "end"...)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := getFile(t, c, "/d/f"); !bytes.Equal(got, want) {
		t.Fatalf("after overwrite, append, truncates: %d bytes, want %d (equal %v)", len(got), len(want), bytes.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
	}
	if err := f.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	// O_APPEND, O_EXCL, O_TRUNC, read-only handles.
	a, err := c.Open(ctx, "/d/f", os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte("++")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("WriteAt on an O_APPEND file succeeded")
	}
	if _, err := a.Read(buf); !errors.Is(err, proto.ErrBadHandle) {
		t.Fatalf("read of a write-only file: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, "++"...)
	if got := getFile(t, c, "/d/f"); !bytes.Equal(got, want) {
		t.Fatal("O_APPEND: data differs")
	}
	if _, err := c.Open(ctx, "/d/f", os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("O_EXCL of an existing file: %v", err)
	}
	ro, err := c.OpenFile(ctx, "/d/f")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Write([]byte("x")); !errors.Is(err, proto.ErrBadHandle) {
		t.Fatalf("write to a read-only file: %v", err)
	}
	tr, err := c.Open(ctx, "/d/f", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if got := getFile(t, c, "/d/f"); len(got) != 0 {
		t.Fatalf("O_TRUNC left %d bytes", len(got))
	}
	if err := c.Truncate(ctx, "/d/f", 10); err != nil {
		t.Fatal(err)
	}
	if got := getFile(t, c, "/d/f"); !bytes.Equal(got, make([]byte, 10)) {
		t.Fatalf("after O_TRUNC and an extension: %q", got)
	}
	// The read-only handle learns the new length from Stat (it asks by
	// itself only when a read goes past the length it knows).
	if fi, err := ro.Stat(); err != nil || fi.Size() != 10 {
		t.Fatalf("stat through the handle: %v, %v", fi, err)
	}
	if n, err := ro.ReadAt(buf, 0); n != 10 || err != io.EOF {
		t.Fatalf("read-only handle after truncate: %d, %v", n, err)
	}
	ro.Close()
	if _, err := c.OpenFile(ctx, "/d/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
}

func TestReadBatch(t *testing.T) {
	t.Parallel()
	c, st := dataClient(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(5, 6))
	var files []*File
	var contents [][]byte
	for i := range 3 {
		data := randBytes(r, 20*testChunk+i*777)
		name := fmt.Sprintf("/d/b%d", i)
		putFile(t, c, name, data)
		f, err := c.OpenFile(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files = append(files, f)
		contents = append(contents, data)
	}
	ops := make([]ReadOp, 3000)
	for k := range ops {
		i := r.IntN(len(files))
		off := r.Int64N(int64(len(contents[i])) + 100)
		ops[k] = ReadOp{File: files[i], Off: off, Dst: make([]byte, r.IntN(3*testChunk))}
	}
	// Some adjacent ranges, which coalesce.
	for k := 0; k+1 < len(ops); k += 10 {
		ops[k+1].File, ops[k+1].Off = ops[k].File, ops[k].Off+int64(len(ops[k].Dst))
	}
	before := st.reads.Load()
	if err := c.ReadBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if n := st.reads.Load() - before; n > 20 {
		t.Errorf("a batch of %d reads took %d storage requests", len(ops), n)
	}
	for k, op := range ops {
		one := make([]byte, len(op.Dst))
		n, err := op.File.ReadAt(one, op.Off)
		if n != op.N || err != op.Err || !bytes.Equal(one[:n], op.Dst[:op.N]) {
			t.Fatalf("op %d (off %d len %d): batch %d, %v; alone %d, %v", k, op.Off, len(op.Dst), op.N, op.Err, n, err)
		}
		i := 0
		for files[i] != op.File {
			i++
		}
		end := min(op.Off+int64(len(op.Dst)), int64(len(contents[i])))
		if op.Off < end && !bytes.Equal(op.Dst[:op.N], contents[i][op.Off:end]) {
			t.Fatalf("op %d: wrong bytes", k)
		}
	}
	// Per-op errors: a bad op fails alone.
	bad := []ReadOp{{File: files[0], Off: -1, Dst: make([]byte, 1)}, {File: files[0], Off: 0, Dst: make([]byte, 5)}, {File: nil, Dst: make([]byte, 1)}}
	if err := c.ReadBatch(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if bad[0].Err == nil || bad[2].Err == nil || bad[1].Err != nil || bad[1].N != 5 || !bytes.Equal(bad[1].Dst, contents[0][:5]) {
		t.Fatalf("per-op results: %+v", bad)
	}
}

func TestRetryAndErrors(t *testing.T) {
	t.Parallel()
	c, st := dataClient(t)
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(7, 8)), 3*testChunk)
	st.failCode = proto.ChainVersionMismatch
	st.failNext.Store(1)
	putFile(t, c, "/d/r", data)
	st.failNext.Store(1)
	if got := getFile(t, c, "/d/r"); !bytes.Equal(got, data) {
		t.Fatal("retried read differs")
	}
	// A lasting failure surfaces: on reads as the op's error, on
	// write-behind at the next call.
	st.failCode = proto.EIO
	st.failNext.Store(1)
	f, err := c.OpenFile(ctx, "/d/r")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 10), 0); !errors.Is(err, proto.ErrIO) {
		t.Fatalf("read with a failing storage: %v", err)
	}
	f.Close()
	w, err := c.Create(ctx, "/d/w")
	if err != nil {
		t.Fatal(err)
	}
	st.failNext.Store(1000)
	var werr error
	for range 10 {
		if _, werr = w.Write(make([]byte, testChunk)); werr != nil {
			break
		}
	}
	if cerr := w.Close(); werr == nil && cerr == nil {
		t.Fatal("a failing write-behind was never reported")
	}
	st.failNext.Store(0)
}

func TestConcurrentFiles(t *testing.T) {
	t.Parallel()
	c, _ := dataClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 9))
			data := randBytes(r, r.IntN(8*testChunk))
			name := fmt.Sprintf("/d/c%d", i)
			ctx := context.Background()
			f, err := c.Create(ctx, name)
			if err == nil {
				_, err = f.Write(data)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err == nil {
				var g *File
				if g, err = c.OpenFile(ctx, name); err == nil {
					var got []byte
					got, err = io.ReadAll(g)
					g.Close()
					if err == nil && !bytes.Equal(got, data) {
						err = fmt.Errorf("%s: data differs", name)
					}
				}
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestFFRecordInFFF(t *testing.T) {
	t.Parallel()
	c, st := dataClient(t)
	ctx := context.Background()
	f, err := c.Create(ctx, "/d/set.ffr")
	if err != nil {
		t.Fatal(err)
	}
	w, err := ffrecord.NewWriter(f, ffrecord.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(10, 11))
	var samples [][]byte
	for range 200 {
		s := randBytes(r, r.IntN(3000))
		samples = append(samples, s)
		if err := w.Write(s); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := c.OpenFile(ctx, "/d/set.ffr")
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	rd, err := ffrecord.Open(ctx, []ffrecord.Source{{Name: g.Name(), R: g, Size: g.Size()}}, ffrecord.ReaderOptions{Batcher: c.Batcher()})
	if err != nil {
		t.Fatal(err)
	}
	if rd.Len() != int64(len(samples)) {
		t.Fatalf("%d samples, want %d", rd.Len(), len(samples))
	}
	idx := make([]int64, 0, len(samples))
	dsts := make([][]byte, 0, len(samples))
	for i := len(samples) - 1; i >= 0; i-- {
		idx = append(idx, int64(i))
		dsts = append(dsts, make([]byte, len(samples[i])))
	}
	before := st.reads.Load()
	if err := rd.ReadBatch(ctx, idx, dsts); err != nil {
		t.Fatal(err)
	}
	if n := st.reads.Load() - before; n > 4 {
		t.Errorf("a batch of %d samples took %d storage requests", len(idx), n)
	}
	for k, i := range idx {
		if !bytes.Equal(dsts[k], samples[i]) {
			t.Fatalf("sample %d differs", i)
		}
	}
}

func TestWriteBehind(t *testing.T) {
	t.Parallel()
	tc, st := startDataCluster(t)
	c, err := Connect(context.Background(), Options{Address: tc.addr, Token: tc.adminToken, WriteBuffer: 4 * testChunk})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Mkdir(ctx, "/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDirLayout(ctx, "/d", proto.DirLayout{ChunkSize: testChunk}); err != nil {
		t.Fatal(err)
	}
	st.writeDelay.Store(int64(20 * time.Millisecond))
	data := randBytes(rand.New(rand.NewPCG(12, 13)), 16*testChunk)
	f, err := c.Create(ctx, "/d/wb")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for off := 0; off < len(data); off += 1000 {
		if _, err := f.Write(data[off:min(off+1000, len(data))]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if m := st.maxWrites.Load(); m < 2 || m > 4 {
		t.Errorf("write-behind had up to %d chunk writes in flight, want 2..4 (a 4-chunk buffer)", m)
	}
	if d := time.Since(start); d > 16*20*time.Millisecond {
		t.Errorf("16 chunk writes of 20ms took %v: not overlapped", d)
	}
	if got := getFile(t, c, "/d/wb"); !bytes.Equal(got, data) {
		t.Fatal("write-behind: data differs")
	}
}

// TestPeriodicLengthReport: a file open for writing has the length of its
// completed writes reported without Sync or Close.
func TestPeriodicLengthReport(t *testing.T) {
	c, _ := dataClient(t)
	c.reportEvery = 20 * time.Millisecond // before any file is opened for writing
	defer c.Close()
	ctx := context.Background()
	f, err := c.Create(ctx, "/d/long")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{testChunk, testChunk, 10} { // the last 10 stay buffered
		if _, err := f.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		fi, err := c.Stat(ctx, "/d/long")
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == 2*testChunk {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("size %d, want the %d bytes of completed writes reported", fi.Size(), 2*testChunk)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := c.Stat(ctx, "/d/long"); fi.Size() != 2*testChunk+10 {
		t.Fatalf("size after close %d", fi.Size())
	}
	c.Close()
}
