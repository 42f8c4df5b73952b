package chunkengine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"fff/internal/proto"
	"fff/internal/uring"
)

func TestOpenDirect(t *testing.T) {
	e := openEngine(t, t.TempDir(), Options{})
	if !e.Direct() {
		t.Fatalf("Direct() = false on %s; the test machine's disk supports O_DIRECT", e.Dir())
	}
	b := openEngine(t, t.TempDir(), Options{NoDirect: true})
	if b.Direct() {
		t.Fatal("Direct() = true with NoDirect")
	}
}

func TestWriteReadSizes(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		opts Options
	}{{"direct", Options{}}, {"buffered", Options{NoDirect: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			e := openEngine(t, t.TempDir(), mode.opts)
			sizes := []int{0, 1, 4095, 4096, 4097, testChunk - 1, testChunk}
			offs := []struct {
				name string
				off  int64
			}{{"0", 0}, {"unaligned", 1234}, {"middle", testChunk / 2}}
			n := 0
			for _, size := range sizes {
				for _, o := range offs {
					if o.off+int64(size) > testChunk {
						continue
					}
					n++
					id := ChunkID{Ino: 7, Index: uint32(n)}
					data := pattern(uint64(n), size)
					t.Run(fmt.Sprintf("size=%d/off=%s", size, o.name), func(t *testing.T) {
						v := mustWrite(t, e, id, o.off, data)
						if v != 1 {
							t.Fatalf("first write: version %d, want 1", v)
						}
						want := applyWrite(nil, o.off, data)
						checkChunk(t, e, id, want, 1)
						// Partial reads at every interesting place, aligned and
						// misaligned destinations.
						for _, r := range [][2]int64{{0, 1}, {o.off, int64(size)}, {o.off + 1, 4096},
							{o.off + int64(size) - 1, 2}, {4095, 2}, {4096, 4096}, {1, 8191}} {
							if r[0] < 0 || r[1] <= 0 {
								continue
							}
							for _, dst := range [][]byte{uring.AlignedBuffer(int(r[1])), misaligned(int(r[1]))} {
								n, ver, err := e.Read(ctx, id, r[0], dst)
								if err != nil || ver != 1 {
									t.Fatalf("Read(%d, %d) = %d, v%d, %v", r[0], r[1], n, ver, err)
								}
								wantN := max(0, min(int64(len(want))-r[0], r[1]))
								if int64(n) != wantN || !bytes.Equal(dst[:n], want[min(r[0], int64(len(want))):][:n]) {
									t.Fatalf("Read(%d, %d) = %d bytes (want %d) or wrong content", r[0], r[1], n, wantN)
								}
							}
						}
					})
				}
			}
		})
	}
}

func TestAppendOverwriteTruncate(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		opts Options
	}{{"direct", Options{}}, {"buffered", Options{NoDirect: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			e := openEngine(t, t.TempDir(), mode.opts)
			id := ChunkID{Ino: 1, Index: 0}
			var model []byte
			ver := uint64(0)
			step := func(what string, f func() (uint64, error), apply func()) {
				t.Helper()
				v, err := f()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				ver++
				if v != ver {
					t.Fatalf("%s: version %d, want %d", what, v, ver)
				}
				apply()
				checkChunk(t, e, id, model, ver)
			}
			write := func(off int64, data []byte) {
				step(fmt.Sprintf("write %d+%d", off, len(data)), func() (uint64, error) { return e.Write(ctx, id, off, data) },
					func() { model = applyWrite(model, off, data) })
			}
			trunc := func(n int64) {
				step(fmt.Sprintf("truncate %d", n), func() (uint64, error) { return e.Truncate(ctx, id, n) },
					func() { model = applyTruncate(model, n) })
			}
			// Appends of odd sizes.
			for i, n := range []int{1, 100, 3995, 4096, 5000, 12345, 1} {
				write(int64(len(model)), pattern(uint64(100+i), n))
			}
			write(int64(len(model))+10000, pattern(200, 300)) // hole: zeros between
			write(5, pattern(201, 10))                        // overwrite inside block 0
			write(4090, pattern(202, 20))                     // overwrite across a block boundary
			write(int64(len(model))-100, pattern(203, 5000))  // overwrite the end and extend
			write(8192, pattern(204, 8192))                   // aligned overwrite of whole blocks
			trunc(int64(len(model)) - 1)
			trunc(10000)                                // down, unaligned
			trunc(8192)                                 // down, aligned
			trunc(8192)                                 // same length: new version, same bytes
			trunc(20000)                                // up: zeros
			write(int64(len(model)), pattern(205, 777)) // append after shrink+grow
			trunc(0)
			write(0, pattern(206, 4096))
			write(100, nil) // empty write: new version, nothing changes
			trunc(testChunk)
			write(testChunk-1, []byte{0xAB})

			// Reopen: everything is durable and the same.
			dir := e.Dir()
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			e = openEngine(t, dir, mode.opts)
			checkChunk(t, e, id, model, ver)
		})
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	e := openEngine(t, t.TempDir(), Options{})
	id := ChunkID{Ino: 3, Index: 9}
	if _, _, err := e.Read(ctx, id, 0, make([]byte, 10)); !errors.Is(err, proto.ErrNotFound) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Read missing: %v", err)
	}
	if _, err := e.Stat(ctx, id); !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("Stat missing: %v", err)
	}
	if _, err := e.Truncate(ctx, id, 0); !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("Truncate missing: %v", err)
	}
	if err := e.Remove(ctx, id); !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("Remove missing: %v", err)
	}
	for _, c := range []struct {
		off int64
		n   int
	}{{-1, 1}, {testChunk, 1}, {testChunk - 1, 2}, {1 << 40, 0}} {
		if _, err := e.Write(ctx, id, c.off, make([]byte, c.n)); !errors.Is(err, proto.ErrInvalid) {
			t.Fatalf("Write(%d, %d): %v, want EINVAL", c.off, c.n, err)
		}
	}
	mustWrite(t, e, id, 0, pattern(1, 5000))
	if _, err := e.Truncate(ctx, id, testChunk+1); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("Truncate beyond limit: %v", err)
	}
	if _, _, err := e.Read(ctx, id, -5, make([]byte, 10)); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("Read negative: %v", err)
	}
	// Reads at and past the end: short counts, no error.
	for _, c := range []struct {
		off   int64
		n, ok int
	}{{4990, 100, 10}, {5000, 10, 0}, {9000, 10, 0}, {1 << 40, 10, 0}, {0, 0, 0}} {
		n, v, err := e.Read(ctx, id, c.off, make([]byte, c.n))
		if err != nil || n != c.ok || v != 1 {
			t.Fatalf("Read(%d, %d) = %d, v%d, %v; want %d", c.off, c.n, n, v, err, c.ok)
		}
	}
	// Remove: gone, file too; a new chunk of the same id starts over.
	path := e.filePath(id, mustRecord(t, e, id).gen)
	if err := e.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Read(ctx, id, 0, make([]byte, 10)); !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("Read removed: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("data file of removed chunk: %v", err)
	}
	if v := mustWrite(t, e, id, 0, []byte("x")); v != 1 {
		t.Fatalf("recreated chunk version %d", v)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.Read(ctx, id, 0, make([]byte, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := e.Write(ctx, id, 0, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func mustRecord(t testing.TB, e *Engine, id ChunkID) *record {
	t.Helper()
	rec, err := e.current(context.Background(), id)
	if err != nil || rec == nil {
		t.Fatalf("record of %v: %v %v", id, rec, err)
	}
	return rec
}

func TestReadBatchListUsage(t *testing.T) {
	ctx := context.Background()
	e := openEngine(t, t.TempDir(), Options{})
	models := map[ChunkID][]byte{}
	for i := range 20 {
		id := ChunkID{Ino: uint64(10 + i%2), Index: uint32(i)}
		models[id] = pattern(uint64(i), 3000+i*1000)
		mustWrite(t, e, id, 0, models[id])
	}
	var reqs []ReadReq
	for id, m := range models {
		for _, off := range []int64{0, 1, 4096, int64(len(m)) - 10} {
			reqs = append(reqs, ReadReq{ID: id, Off: off, Dst: misaligned(5000)})
		}
	}
	reqs = append(reqs, ReadReq{ID: ChunkID{Ino: 99}, Dst: make([]byte, 10)}, ReadReq{ID: ChunkID{Ino: 10}, Off: -1, Dst: make([]byte, 1)})
	if err := e.ReadBatch(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	for _, q := range reqs[:len(reqs)-2] {
		m := models[q.ID]
		want := m[min(q.Off, int64(len(m))):min(int64(len(m)), q.Off+int64(len(q.Dst)))]
		if q.Err != nil || q.Version != 1 || !bytes.Equal(q.Dst[:q.N], want) {
			t.Fatalf("batch read %v@%d: n=%d v=%d err=%v", q.ID, q.Off, q.N, q.Version, q.Err)
		}
	}
	if q := reqs[len(reqs)-2]; !errors.Is(q.Err, proto.ErrNotFound) {
		t.Fatalf("batch read of a missing chunk: %v", q.Err)
	}
	if q := reqs[len(reqs)-1]; !errors.Is(q.Err, proto.ErrInvalid) {
		t.Fatalf("batch read at a negative offset: %v", q.Err)
	}

	list, err := e.List(ctx, 11)
	if err != nil || len(list) != 10 {
		t.Fatalf("List(11) = %d chunks, %v", len(list), err)
	}
	for i, c := range list {
		if c.ID.Ino != 11 || c.ID.Index != uint32(2*i+1) || c.Length != int64(len(models[c.ID])) || c.Version != 1 {
			t.Fatalf("List(11)[%d] = %+v", i, c)
		}
	}
	// Equal content, equal checksum; different content, different checksum.
	a, b := ChunkID{Ino: 50}, ChunkID{Ino: 51}
	mustWrite(t, e, a, 0, pattern(5, 10000))
	mustWrite(t, e, b, 0, pattern(5, 10000))
	ia, _ := e.Stat(ctx, a)
	ib, _ := e.Stat(ctx, b)
	if ia.Checksum != ib.Checksum {
		t.Fatal("equal chunks, different Checksum")
	}
	mustWrite(t, e, b, 9999, []byte{0})
	if ib, _ = e.Stat(ctx, b); ia.Checksum == ib.Checksum {
		t.Fatal("different chunks, equal Checksum")
	}

	u, err := e.Usage()
	if err != nil || u.Capacity == 0 || u.Used > u.Capacity || u.Available > u.Capacity {
		t.Fatalf("Usage() = %+v, %v", u, err)
	}
}

// TestOrphansRemoved: files no record names (a crashed copy-on-write) are
// removed at Open; files a record names stay.
func TestOrphansRemoved(t *testing.T) {
	dir := t.TempDir()
	e := openEngine(t, dir, Options{})
	id := ChunkID{Ino: 1, Index: 2}
	mustWrite(t, e, id, 0, pattern(1, 9000))
	rec := mustRecord(t, e, id)
	live := e.filePath(id, rec.gen)
	orphans := []string{
		e.filePath(id, rec.gen+1000),              // crashed COW of a live chunk
		e.filePath(ChunkID{Ino: 77}, 5),           // chunk never committed
		e.filePath(ChunkID{Ino: 78, Index: 1}, 6), // another one
	}
	e.Close()
	for _, p := range orphans {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("junk"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	foreign := filepath.Join(dir, dataDirName, "README")
	os.WriteFile(foreign, []byte("not ours"), 0o644)
	e = openEngine(t, dir, Options{})
	for _, p := range orphans {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("orphan %s survived Open: %v", p, err)
		}
	}
	for _, p := range []string{live, foreign} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	checkChunk(t, e, id, pattern(1, 9000), 1)
}

// TestCOWReplacesFile: an overwrite moves the chunk to a new file and
// removes the old; appends stay in place.
func TestCOWReplacesFile(t *testing.T) {
	e := openEngine(t, t.TempDir(), Options{})
	id := ChunkID{Ino: 4}
	mustWrite(t, e, id, 0, pattern(1, 5000))
	g1 := mustRecord(t, e, id).gen
	mustWrite(t, e, id, 5000, pattern(2, 5000))
	if g := mustRecord(t, e, id).gen; g != g1 {
		t.Fatalf("append moved the chunk to generation %d from %d", g, g1)
	}
	mustWrite(t, e, id, 10, pattern(3, 10))
	g2 := mustRecord(t, e, id).gen
	if g2 == g1 {
		t.Fatal("overwrite did not copy on write")
	}
	if _, err := os.Stat(e.filePath(id, g1)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("old generation file: %v", err)
	}
	// After a shrink, an append must not write in place (a reader of the
	// longer version could still read those bytes).
	if _, err := e.Truncate(context.Background(), id, 100); err != nil {
		t.Fatal(err)
	}
	if r := mustRecord(t, e, id); r.gen != g2 || r.high != 10000 {
		t.Fatalf("after shrink: gen %d high %d", r.gen, r.high)
	}
	mustWrite(t, e, id, 100, pattern(4, 100))
	if r := mustRecord(t, e, id); r.gen == g2 || r.high != 200 {
		t.Fatalf("append after shrink: gen %d (was %d) high %d", r.gen, g2, r.high)
	}
}

// TestDamagedRecord: a record that fails its checks is a ChecksumMismatch
// for every access, and Remove clears it so the chunk can be rewritten.
func TestDamagedRecord(t *testing.T) {
	ctx := context.Background()
	e := openEngine(t, t.TempDir(), Options{})
	id := ChunkID{Ino: 8, Index: 8}
	mustWrite(t, e, id, 0, pattern(1, 10000))
	gen := mustRecord(t, e, id).gen
	damageRecord(t, e, id)
	if _, _, err := e.Read(ctx, id, 0, make([]byte, 10)); !errors.Is(err, proto.ErrChecksumMismatch) {
		t.Fatalf("Read of damaged record: %v", err)
	}
	if _, err := e.Write(ctx, id, 0, []byte("x")); !errors.Is(err, proto.ErrChecksumMismatch) {
		t.Fatalf("Write over damaged record: %v", err)
	}
	if _, err := e.List(ctx, 8); !errors.Is(err, proto.ErrChecksumMismatch) {
		t.Fatalf("List with damaged record: %v", err)
	}
	if err := e.Remove(ctx, id); err != nil {
		t.Fatalf("Remove of damaged record: %v", err)
	}
	if _, err := os.Stat(e.filePath(id, gen)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("data file after Remove of damaged record: %v", err)
	}
	mustWrite(t, e, id, 0, pattern(2, 100))
	checkChunk(t, e, id, pattern(2, 100), 1)
}
