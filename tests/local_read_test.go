package tests

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"fff/internal/crc32c"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/uring"
	"fff/libfff"
)

// TestLocalRead: a client on the node's host reads chunk data files
// itself (libfff/localread.go) and gets exactly what a socket read gets,
// for aligned and misaligned destinations, ranges across blocks and
// chunks, the partial last block, holes, after truncation, overwrite and
// append; reads that a client without local reads serves all come through
// the socket.
func TestLocalRead(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	local := cl.admin(t)
	sock, err := libfff.Connect(ctx, libfff.Options{Address: cl.addr, Token: cl.token, NoLocalRead: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	chunk := smallChunkDir(t, local, "/lr")
	rng := rand.New(rand.NewPCG(3, 4))
	want := randData(rng, 5*chunk+1234)
	put(t, local, "/lr/f", want)

	check := func(what string, want []byte) {
		t.Helper()
		for _, c := range []struct {
			name string
			cl   *libfff.Client
		}{{"local", local}, {"socket", sock}} {
			f, err := c.cl.OpenFile(ctx, "/lr/f")
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []struct{ off, n, shift int }{
				{0, len(want), 0},             // everything, aligned destination
				{0, len(want), 1},             // everything, misaligned destination
				{chunk, chunk, 0},             // one whole chunk
				{4096, 8192 * 3, 0},           // whole blocks
				{1, 10, 0},                    // inside one block (through the socket: small)
				{1, 20000, 5},                 // misaligned at both ends
				{chunk - 20000, 40000, 3},     // across a chunk boundary
				{len(want) - 20000, 20000, 0}, // the partial last block
				{len(want) - 10, 100, 0},      // past the end
				{2*chunk + 4096, 20480, 0},    // after "holes": the chunk's data ends inside it
			} {
				buf := uring.AlignedBuffer(r.n + r.shift)[r.shift:]
				for i := range buf {
					buf[i] = 0xEE // not zeros: a hole must be cleared, not skipped
				}
				n, err := f.ReadAt(buf, int64(r.off))
				exp := want[min(r.off, len(want)):min(r.off+r.n, len(want))]
				if n != len(exp) || (err != nil && n == r.n) || !bytes.Equal(buf[:n], exp) {
					t.Fatalf("%s: %s ReadAt(%d, %d) = %d, %v; want %d bytes equal to the file's", what, c.name, r.off, r.n, n, err, len(exp))
				}
			}
			// Many random ranges in one batch, coalesced where they touch.
			ops := make([]libfff.ReadOp, 300)
			for i := range ops {
				off := rng.IntN(len(want))
				ops[i] = libfff.ReadOp{File: f, Off: int64(off), Dst: make([]byte, min(rng.IntN(12<<10)+(16<<10), len(want)-off))}
			}
			if err := c.cl.ReadBatch(ctx, ops); err != nil {
				t.Fatal(err)
			}
			summed := 0
			for _, op := range ops {
				if op.Err != nil || !bytes.Equal(op.Dst, want[op.Off:op.Off+int64(len(op.Dst))]) {
					t.Fatalf("%s: %s batch read at %d+%d: %v or wrong bytes", what, c.name, op.Off, len(op.Dst), op.Err)
				}
				if op.Summed {
					summed++
					if op.Sum != crc32c.Checksum(op.Dst) {
						t.Fatalf("%s: %s batch read at %d+%d: Sum %08x, the bytes' CRC32C %08x", what, c.name, op.Off, len(op.Dst), op.Sum, crc32c.Checksum(op.Dst))
					}
				}
			}
			// Local reads sum what they deliver (all but the ranges past a
			// chunk's length, or with a piece under localReadMin: most of
			// the file after "holes"); socket reads never do.
			least := len(ops) / 2
			if what == "holes" {
				least = 1
			}
			if c.cl == sock && summed != 0 || c.cl == local && summed < least {
				t.Fatalf("%s: %s client: %d of %d batch reads came with a checksum", what, c.name, summed, len(ops))
			}
			f.Close()
		}
		if st := sock.Stats(); st.LocalBytes != 0 {
			t.Fatalf("%s: a client with NoLocalRead read %d bytes locally", what, st.LocalBytes)
		}
	}
	check("written", want)
	before := local.Stats()
	if before.LocalBytes < int64(len(want)) {
		t.Fatalf("the local client read %d bytes locally, want at least the file's %d", before.LocalBytes, len(want))
	}

	w, err := local.Open(ctx, "/lr/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	mustWriteAt := func(p []byte, off int) {
		t.Helper()
		if _, err := w.WriteAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			t.Fatal(err)
		}
		if end := off + len(p); end > len(want) {
			want = append(want, make([]byte, end-len(want))...)
		}
		copy(want[off:], p)
	}
	truncate := func(size int) {
		t.Helper()
		if err := w.Truncate(int64(size)); err != nil {
			t.Fatal(err)
		}
		if size < len(want) {
			want = want[:size]
		} else {
			want = append(want, make([]byte, size-len(want))...)
		}
	}
	// Overwrite in the middle (the chunk engine copies the chunk on write:
	// a new data file), shrink (the same file, shorter), append after the
	// shrink, and grow over a hole of whole chunks that were never written.
	mustWriteAt(randData(rng, 3000), chunk+500)
	check("overwritten", want)
	truncate(2*chunk + 777)
	check("shrunk", want)
	mustWriteAt(randData(rng, 25000), len(want))
	check("appended", want)
	truncate(2*chunk + 4096 + 20480 - 2000) // the same data file, shorter
	truncate(7 * chunk)
	mustWriteAt(randData(rng, 100), 9*chunk+1)
	// Bytes past a chunk's committed length, as a crash during an append
	// leaves them: no read may deliver them.
	files := chunkFiles(t, cl, inoOf(t, local, "/lr/f"))
	if len(files[2]) != 1 {
		t.Fatalf("chunk 2 has data files %v, want 1", files[2])
	}
	df, err := os.OpenFile(files[2][0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.Write(bytes.Repeat([]byte{0x77}, 3000)); err != nil {
		t.Fatal(err)
	}
	df.Close()
	check("holes", want)
	w.Close()
	if st := local.Stats(); st.LocalFallbacks != 0 {
		t.Errorf("%d local reads fell back to the socket with no change under them", st.LocalFallbacks)
	}

	// Locate is refused on TCP: the caller may be on another host.
	conn, err := rpc.Dial(ctx, cl.addr, cl.token, rpc.ClientOptions{TCPOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var resp proto.StorageLocateResp
	if _, err := conn.Call(ctx, proto.MethodStorageLocate, &proto.StorageLocateReq{}, &resp); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Locate over TCP: %v, want EPERM", err)
	}
}

// TestLocalReadDamage: a flipped byte in a data file fails the local
// read's checksum; the client falls back to the socket, whose read reports
// ChecksumMismatch, and never delivers the damaged bytes.
func TestLocalReadDamage(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	c := cl.admin(t)
	chunk := smallChunkDir(t, c, "/d")
	data := randData(rand.New(rand.NewPCG(5, 6)), 2*chunk)
	put(t, c, "/d/f", data)
	files := chunkFiles(t, cl, inoOf(t, c, "/d/f"))
	df, err := os.OpenFile(files[0][0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := df.WriteAt([]byte{data[9000] ^ 1}, 9000); err != nil {
		t.Fatal(err)
	}
	df.Close()
	f, err := c.OpenFile(ctx, "/d/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := uring.AlignedBuffer(chunk)
	if n, err := f.ReadAt(buf, 0); !errors.Is(err, proto.ErrChecksumMismatch) {
		t.Fatalf("read of the damaged chunk: %d, %v; want ChecksumMismatch", n, err)
	}
	if st := c.Stats(); st.LocalFallbacks == 0 {
		t.Fatalf("no local read fell back: %+v", st)
	}
	if n, err := f.ReadAt(buf, int64(chunk)); err != nil || !bytes.Equal(buf[:n], data[chunk:]) {
		t.Fatalf("read of the intact chunk: %d, %v", n, err)
	}
}

// TestLocalReadConcurrentWrites: while a writer overwrites a chunk again
// and again (each version one repeated byte; overwrites are copy-on-write
// into new data files, shrinks cut the file in place), local reads of that
// chunk return one whole version every time, never a mix.
func TestLocalReadConcurrentWrites(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	c := cl.admin(t)
	chunk := smallChunkDir(t, c, "/cw")
	put(t, c, "/cw/f", bytes.Repeat([]byte{1}, chunk))
	w, err := c.Open(ctx, "/cw/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := c.OpenFile(ctx, "/cw/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	stop := make(chan struct{})
	werr := make(chan error, 1)
	var versions atomic.Int64
	go func() {
		defer close(werr)
		for v := byte(2); ; v++ {
			versions.Add(1)
			select {
			case <-stop:
				return
			default:
			}
			if v == 0 {
				v = 1
			}
			var err error
			if v%7 == 0 { // a shrink, then the rest written back
				if err = w.Truncate(int64(chunk / 2)); err == nil {
					_, err = w.WriteAt(bytes.Repeat([]byte{v}, chunk), 0)
				}
			} else {
				_, err = w.WriteAt(bytes.Repeat([]byte{v}, chunk), 0)
			}
			if err == nil {
				err = w.Sync()
			}
			if err != nil {
				werr <- err
				return
			}
		}
	}()
	before := c.Stats()
	buf := uring.AlignedBuffer(chunk)
	seen := map[byte]bool{}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; versions.Load() < 100 && time.Now().Before(deadline); i++ {
		n, err := r.ReadAt(buf, 0)
		if err != nil && err != io.EOF {
			close(stop)
			t.Fatalf("read %d: %d bytes, %v", i, n, err)
		}
		first := buf[0]
		seen[first] = true
		for k, b := range buf[:n] {
			if b != first && !(b == 0 && first != 0) {
				close(stop)
				t.Fatalf("read %d: byte %d is %d, byte 0 is %d: a mix of versions", i, k, b, first)
			}
		}
	}
	close(stop)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.LocalBytes == before.LocalBytes {
		t.Fatal("no read went local")
	}
	if len(seen) < 3 {
		t.Fatalf("the reads saw only versions %v: the test did not race reads with writes", seen)
	}
}
