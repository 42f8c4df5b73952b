package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/libfff"
)

// File data through a real `fffd local` process: corruption on disk,
// restarts (graceful and kill -9), garbage collection of deleted files,
// and `fff bench`.

// chunkFiles returns the data files of inode ino's chunks under the
// cluster's targets (DATA/targets/*/data/ab/cd/<ino>-<index>.<gen>, see
// docs/chunkengine.md), by chunk index.
func chunkFiles(t *testing.T, cl *cluster, ino uint64) map[uint32][]string {
	t.Helper()
	out := map[uint32][]string{}
	prefix := fmt.Sprintf("%016x-", ino)
	err := filepath.WalkDir(filepath.Join(cl.data, "targets"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking
				return nil
			}
			return err
		}
		name := d.Name()
		if d.IsDir() || !strings.HasPrefix(name, prefix) || !strings.Contains(p, string(filepath.Separator)+"data"+string(filepath.Separator)) {
			return nil
		}
		var idx uint32
		var gen uint64
		if _, err := fmt.Sscanf(name[len(prefix):], "%08x.%016x", &idx, &gen); err != nil {
			t.Fatalf("unexpected data file name %s: %v", p, err)
		}
		out[idx] = append(out[idx], p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// smallChunkDir creates dir with a 64 KiB chunk layout.
func smallChunkDir(t *testing.T, c *libfff.Client, dir string) int {
	t.Helper()
	const chunk = 64 << 10
	ctx := ctxFor(t)
	if err := c.MkdirAll(ctx, dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDirLayout(ctx, dir, proto.DirLayout{ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	return chunk
}

func inoOf(t *testing.T, c *libfff.Client, name string) uint64 {
	t.Helper()
	fi, err := c.Stat(ctxFor(t), name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Inode.Ino
}

// TestDataChecksumMismatch: a flipped byte in a chunk's data file makes
// reads of that 4 KiB block fail with ChecksumMismatch (replication 1: no
// other replica to fall back to), never return wrong data; the file's
// other blocks still read correctly.
func TestDataChecksumMismatch(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)
	chunk := smallChunkDir(t, c, "/cs")
	data := randData(rand.New(rand.NewPCG(7, 7)), 4*chunk)
	put(t, c, "/cs/f", data)
	ino := inoOf(t, c, "/cs/f")

	files := chunkFiles(t, cl, ino)
	if len(files) != 4 {
		t.Fatalf("found data files of chunks %v, want 4 chunks", files)
	}
	if len(files[1]) != 1 {
		t.Fatalf("chunk 1 has data files %v, want 1", files[1])
	}
	// Flip a byte in the second 4 KiB block of chunk 1.
	const blk = 4096
	const flipAt = blk + 123
	df, err := os.OpenFile(files[1][0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := df.ReadAt(b[:], flipAt); err != nil {
		t.Fatal(err)
	}
	if b[0] != data[chunk+flipAt] {
		t.Fatalf("data file %s holds %#x at %d, the file %#x: not the chunk layout expected", files[1][0], b[0], flipAt, data[chunk+flipAt])
	}
	b[0] ^= 0x40
	if _, err := df.WriteAt(b[:], flipAt); err != nil {
		t.Fatal(err)
	}
	if err := df.Sync(); err != nil {
		t.Fatal(err)
	}
	df.Close()

	f, err := c.OpenFile(ctx, "/cs/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bad := int64(chunk + blk) // the damaged block
	// ReadAt of the damaged block, of a range across it, and of the whole file.
	for _, r := range []struct{ off, n int64 }{{bad, blk}, {bad + 100, 10}, {bad - 1000, 3 * blk}, {0, int64(len(data))}} {
		buf := make([]byte, r.n)
		n, err := f.ReadAt(buf, r.off)
		if !errors.Is(err, proto.ErrChecksumMismatch) {
			t.Fatalf("ReadAt(%d, %d) of the damaged block: n=%d, err=%v; want ChecksumMismatch", r.off, r.n, n, err)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			t.Errorf("ReadAt error %v (%T) is not an *fs.PathError", err, err)
		}
	}
	// The other blocks read correctly: the rest of chunk 1 and the other chunks.
	for _, r := range []struct{ off, n int64 }{{0, int64(chunk)}, {int64(chunk), blk}, {bad + blk, int64(chunk) - 2*blk}, {2 * int64(chunk), 2 * int64(chunk)}} {
		buf := make([]byte, r.n)
		if n, err := f.ReadAt(buf, r.off); err != nil || n != len(buf) {
			t.Fatalf("ReadAt(%d, %d) of intact blocks: %d, %v", r.off, r.n, n, err)
		}
		if !bytes.Equal(buf, data[r.off:r.off+r.n]) {
			t.Fatalf("ReadAt(%d, %d) of intact blocks returned wrong data", r.off, r.n)
		}
	}
	// One ReadBatch with good and bad ops: only the bad one fails.
	ops := []libfff.ReadOp{
		{File: f, Off: 0, Dst: make([]byte, blk)},
		{File: f, Off: bad + 7, Dst: make([]byte, 100)},
		{File: f, Off: 3 * int64(chunk), Dst: make([]byte, chunk)},
		{File: f, Off: int64(chunk), Dst: make([]byte, blk)},
	}
	if err := c.ReadBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		if i == 1 {
			if !errors.Is(op.Err, proto.ErrChecksumMismatch) || op.N != 0 {
				t.Fatalf("batch op of the damaged block: n=%d, err=%v; want ChecksumMismatch", op.N, op.Err)
			}
			continue
		}
		if op.Err != nil || op.N != len(op.Dst) || !bytes.Equal(op.Dst, data[op.Off:op.Off+int64(len(op.Dst))]) {
			t.Fatalf("batch op %d (off %d): n=%d, err=%v, data ok=%v", i, op.Off, op.N, op.Err, bytes.Equal(op.Dst, data[op.Off:op.Off+int64(op.N)]))
		}
	}
	// Overwriting the whole damaged block repairs it.
	w, err := c.Open(ctx, "/cs/f", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(data[bad:bad+blk], bad); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "/cs/f"); !bytes.Equal(got, data) {
		t.Fatal("the file does not read back whole after rewriting the damaged block")
	}
}

// TestDataRestartPersistence: file data survives SIGTERM and a new fffd on
// the same data directory, byte for byte.
func TestDataRestartPersistence(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)
	chunk := smallChunkDir(t, c, "/small")
	r := rand.New(rand.NewPCG(3, 3))
	want := map[string][]byte{}
	for _, n := range []int{0, 1, 4095, 4097, chunk, 3*chunk + 5, 5<<20 + 3} {
		for _, dir := range []string{"/small", "/"} {
			name := filepath.Join(dir, fmt.Sprintf("f%d", n))
			want[name] = randData(r, n)
			put(t, c, name, want[name])
		}
	}
	// A file modified after its first write: overwrite, append, truncate.
	mod := randData(r, 2*chunk+100)
	put(t, c, "/small/mod", mod)
	w, err := c.Open(ctx, "/small/mod", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := randData(r, 5000)
	if _, err := w.WriteAt(patch, int64(chunk)-2000); err != nil {
		t.Fatal(err)
	}
	copy(mod[chunk-2000:], patch)
	tail := randData(r, chunk)
	if _, err := w.WriteAt(tail, int64(len(mod))); err != nil {
		t.Fatal(err)
	}
	mod = append(mod, tail...)
	if err := w.Truncate(int64(len(mod)) - 300); err != nil {
		t.Fatal(err)
	}
	mod = mod[:len(mod)-300]
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want["/small/mod"] = mod
	for name, data := range want {
		if got := get(t, c, name); !bytes.Equal(got, data) {
			t.Fatalf("%s before the restart: %d bytes, want %d", name, len(got), len(data))
		}
	}
	c.Close()

	cl.stop(t)
	cl.start(t)
	c = cl.admin(t)
	for name, data := range want {
		if got := get(t, c, name); !bytes.Equal(got, data) {
			t.Fatalf("%s after the restart: %d bytes differ from the %d written", name, len(got), len(data))
		}
	}
	// Batched reads too.
	f, err := c.OpenFile(ctx, "/small/f"+fmt.Sprint(5<<20+3))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := want["/small/f"+fmt.Sprint(5<<20+3)]
	var ops []libfff.ReadOp
	for i := range 16 {
		off := int64(r.IntN(len(data) - 10000))
		ops = append(ops, libfff.ReadOp{File: f, Off: off, Dst: make([]byte, 1000+i*500)})
	}
	if err := c.ReadBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Err != nil || !bytes.Equal(op.Dst, data[op.Off:op.Off+int64(len(op.Dst))]) {
			t.Fatalf("batch read at %d after the restart: %v", op.Off, op.Err)
		}
	}
}

// TestDataGC: the chunk files of deleted files disappear from the target
// directories (the GC loop of fffd local), those of live files stay.
func TestDataGC(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)
	chunk := smallChunkDir(t, c, "/gc/tree")
	r := rand.New(rand.NewPCG(5, 5))
	names := []string{"/gc/a", "/gc/b", "/gc/tree/c", "/gc/tree/d", "/gc/keep", "/gc/over"}
	inos := map[string]uint64{}
	chunks := map[string]int{}
	for _, name := range names {
		put(t, c, name, randData(r, 3*chunk+17))
		inos[name] = inoOf(t, c, name)
		chunks[name] = len(chunkFiles(t, cl, inos[name]))
		if chunks[name] == 0 {
			t.Fatalf("%s (inode %d): no data files found under %s/targets", name, inos[name], cl.data)
		}
	}
	if chunks["/gc/tree/c"] != 4 {
		t.Fatalf("/gc/tree/c has %d chunk files, want 4 (64 KiB chunks)", chunks["/gc/tree/c"])
	}
	// A hard link keeps the data of a file whose first name is removed.
	if err := c.Link(ctx, "/gc/keep", "/gc/keep2"); err != nil {
		t.Fatal(err)
	}
	keepData := get(t, c, "/gc/keep")
	if err := c.Remove(ctx, "/gc/keep"); err != nil {
		t.Fatal(err)
	}
	// Removed one by one, as a tree, and replaced by a rename.
	for _, p := range []string{"/gc/a", "/gc/b"} {
		if err := c.Remove(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RemoveAll(ctx, "/gc/tree"); err != nil {
		t.Fatal(err)
	}
	put(t, c, "/gc/new", []byte("replacement"))
	if err := c.Rename(ctx, "/gc/new", "/gc/over"); err != nil {
		t.Fatal(err)
	}
	gone := []string{"/gc/a", "/gc/b", "/gc/tree/c", "/gc/tree/d", "/gc/over"}

	deadline := time.Now().Add(30 * time.Second) // GC runs every 5s when idle
	for {
		var left []string
		for _, name := range gone {
			if files := chunkFiles(t, cl, inos[name]); len(files) > 0 {
				left = append(left, fmt.Sprintf("%s (inode %d): %d chunk(s)", name, inos[name], len(files)))
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("data files of deleted files still on disk after 30s:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if files := chunkFiles(t, cl, inos["/gc/keep"]); len(files) != chunks["/gc/keep"] {
		t.Fatalf("the hard-linked file has %d chunk files left, want %d", len(files), chunks["/gc/keep"])
	}
	if got := get(t, c, "/gc/keep2"); !bytes.Equal(got, keepData) {
		t.Fatal("the hard-linked file's data changed")
	}
	if got := get(t, c, "/gc/over"); string(got) != "replacement" {
		t.Fatalf("/gc/over: %q", got)
	}
}

// TestDataKill9: fffd killed with SIGKILL during a write load; after a
// restart every file whose Close succeeded before the kill reads back
// exactly (acknowledged = durable).
func TestDataKill9(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	admin := cl.admin(t)
	ctx := ctxFor(t)
	chunk := smallChunkDir(t, admin, "/load/small")
	if err := admin.Mkdir(ctx, "/load/big", 0o755); err != nil {
		t.Fatal(err)
	}
	admin.Close()

	// No waiting for the dead server: the writers stop at the first error.
	c, err := libfff.Connect(ctx, libfff.Options{Address: cl.addr, Token: cl.token, RetryTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	type acked struct {
		name string
		data []byte
	}
	var (
		mu     sync.Mutex
		done   []acked
		failed int
		stop   = make(chan struct{})
		wg     sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				dir := "/load/small"
				if i%3 == 0 {
					dir = "/load/big"
				}
				name := fmt.Sprintf("%s/w%d-%d", dir, w, i)
				data := randData(r, r.IntN(3*chunk)+r.IntN(2)*(4<<20))
				f, err := c.Create(ctx, name)
				if err == nil {
					// In pieces, so that the kill can land between writes.
					for p := data; len(p) > 0 && err == nil; {
						n := min(len(p), 1+r.IntN(chunk))
						_, err = f.Write(p[:n])
						p = p[n:]
					}
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				mu.Lock()
				if err == nil {
					done = append(done, acked{name, data})
				} else {
					failed++
				}
				mu.Unlock()
				if err != nil {
					return // the server is gone
				}
			}
		})
	}
	// Let the load run until a few files are acknowledged, then kill -9.
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(done)
		mu.Unlock()
		if n >= 12 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
	if err := syscall.Kill(-cl.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-cl.done
	close(stop)
	wg.Wait() // the writers fail: calls to a dead server do not hang
	mu.Lock()
	acks := done
	mu.Unlock()
	c.Close()
	if len(acks) == 0 {
		t.Fatal("no file was written before the kill")
	}
	t.Logf("%d file(s) acknowledged before the kill, %d write(s) cut short", len(acks), failed)

	cl.start(t)
	c2 := cl.admin(t)
	for _, a := range acks {
		f, err := c2.OpenFile(ctx, a.name)
		if err != nil {
			t.Fatalf("%s (acknowledged before the kill): %v", a.name, err)
		}
		got, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s (acknowledged before the kill): read: %v", a.name, err)
		}
		if !bytes.Equal(got, a.data) {
			t.Fatalf("%s (acknowledged before the kill): %d bytes read back, differ from the %d written", a.name, len(got), len(a.data))
		}
	}
	// The cluster takes new writes after the crash.
	put(t, c2, "/load/after", []byte("after"))
	if got := get(t, c2, "/load/after"); string(got) != "after" {
		t.Fatalf("write after the restart: %q", got)
	}
}

// TestCLIBench: a quick `fff bench` run prints its table and cleans up.
func TestCLIBench(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	env := cl.env(cl.token)
	out := mustFFF(t, env, "bench", "--size", "8MiB", "--sample-size", "4KiB,64KiB", "--batch", "4", "--inflight", "2", "--duration", "300ms")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("bench printed %d lines, want a header and 4 rows:\n%s", len(lines), out)
	}
	for _, h := range []string{"TEST", "MiB/s", "SAMPLES/s", "P50", "P90", "P99"} {
		if !strings.Contains(lines[0], h) {
			t.Fatalf("bench header %q lacks %s", lines[0], h)
		}
	}
	for i, want := range []string{"seq write", "seq read", "random", "random"} {
		if !strings.HasPrefix(lines[i+1], want) {
			t.Fatalf("bench row %d: %q, want %s", i+1, lines[i+1], want)
		}
	}
	// The benchmark file is removed, and /bench, which bench made; --keep
	// keeps them (cli_edges_test.go checks an interrupted run).
	if r := fff(t, env, "ls", "/bench"); r.code != 1 || r.stdout != "" {
		t.Fatalf("bench left files behind: ls /bench: %+v", r)
	}
	mustFFF(t, env, "bench", "--size", "64KiB", "--sample-size", "4KiB", "--duration", "50ms", "--keep")
	if ls := mustFFF(t, env, "ls", "/bench"); !strings.Contains(ls, "bench-") {
		t.Fatalf("bench --keep removed its file: %q", ls)
	}
	if r := fff(t, env, "bench", "--batch", "0"); r.code != 2 {
		t.Fatalf("bench --batch 0: exit %d, want 2 (usage)", r.code)
	}
}
