package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"fff/ffrecord"
	"fff/internal/proto"
	"fff/libfff"
)

// The data path end to end: libfff's File and ReadBatch against the
// storage service of a real `fffd local`.

func randData(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// dataCluster starts fffd local and connects as admin; it skips the test
// when the server does not serve storage.
func dataCluster(t *testing.T) *libfff.Client {
	t.Helper()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)
	f, err := c.Create(ctx, "/.probe")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.Write([]byte{1})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, proto.ErrUnknownMethod) {
		t.Skip("this fffd does not serve storage")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "/.probe"); err != nil {
		t.Fatal(err)
	}
	return c
}

func put(t *testing.T, c *libfff.Client, name string, data []byte) {
	t.Helper()
	f, err := c.Create(ctxFor(t), name)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.Write(data); n != len(data) || err != nil {
		t.Fatalf("write %s: %d, %v", name, n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close %s: %v", name, err)
	}
}

func get(t *testing.T, c *libfff.Client, name string) []byte {
	t.Helper()
	f, err := c.OpenFile(ctxFor(t), name)
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

func TestDataPutGet(t *testing.T) {
	t.Parallel()
	c := dataCluster(t)
	ctx := ctxFor(t)
	const chunk = 64 << 10
	if err := c.Mkdir(ctx, "/small", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDirLayout(ctx, "/small", proto.DirLayout{ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{0, 1, 4095, 4096, chunk - 1, chunk, chunk + 1, 5*chunk + 123, 3<<20 + 7} {
		name := fmt.Sprintf("/small/f%d", n)
		data := randData(r, n)
		put(t, c, name, data)
		if got := get(t, c, name); !bytes.Equal(got, data) {
			t.Fatalf("%s: got %d bytes back, not the %d written", name, len(got), n)
		}
		if fi, err := c.Stat(ctx, name); err != nil || fi.Size() != int64(n) {
			t.Fatalf("stat %s: %v, %v", name, fi, err)
		}
	}
	// The default layout's chunk size, across its boundaries.
	fi, err := c.CreateFile(ctx, "/layout", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cs := int(fi.Inode.Layout.ChunkSize)
	for _, n := range []int{cs - 1, cs, cs + 1, 2*cs + 4097} {
		name := fmt.Sprintf("/big%d", n)
		data := randData(r, n)
		put(t, c, name, data)
		if got := get(t, c, name); !bytes.Equal(got, data) {
			t.Fatalf("%s: got %d bytes back, not the %d written", name, len(got), n)
		}
	}
}

func TestDataModify(t *testing.T) {
	t.Parallel()
	c := dataCluster(t)
	ctx := ctxFor(t)
	const chunk = 64 << 10
	if err := c.SetDirLayout(ctx, "/", proto.DirLayout{ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(2, 2))
	want := randData(r, 4*chunk+100)
	put(t, c, "/m", want)
	f, err := c.Open(ctx, "/m", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Overwrite in the middle, across a chunk boundary.
	patch := randData(r, 10000)
	if _, err := f.WriteAt(patch, 2*chunk-5000); err != nil {
		t.Fatal(err)
	}
	copy(want[2*chunk-5000:], patch)
	// Append.
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		t.Fatal(err)
	}
	tail := randData(r, chunk+1)
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	want = append(want, tail...)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "/m"); !bytes.Equal(got, want) {
		t.Fatal("after overwrite and append: data differs")
	}
	// Truncate down, then up: the dropped bytes come back as zeros.
	if err := f.Truncate(chunk + 7); err != nil {
		t.Fatal(err)
	}
	want = want[:chunk+7]
	if got := get(t, c, "/m"); !bytes.Equal(got, want) {
		t.Fatalf("after truncate down: %d bytes, want %d", len(got), len(want))
	}
	if err := f.Truncate(3 * chunk); err != nil {
		t.Fatal(err)
	}
	want = append(want, make([]byte, 3*chunk-len(want))...)
	if _, err := f.WriteAt([]byte("tail"), 3*chunk); err != nil {
		t.Fatal(err)
	}
	want = append(want, "tail"...)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "/m"); !bytes.Equal(got, want) {
		t.Fatalf("after truncate up and a write: %d bytes, want %d", len(got), len(want))
	}
	// Client.Truncate (by path) cuts storage as well.
	if err := c.Truncate(ctx, "/m", 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate(ctx, "/m", 2*chunk); err != nil {
		t.Fatal(err)
	}
	want = append(want[:10], make([]byte, 2*chunk-10)...)
	if got := get(t, c, "/m"); !bytes.Equal(got, want) {
		t.Fatal("after truncates by path: data differs")
	}
}

func TestDataReadBatch(t *testing.T) {
	t.Parallel()
	c := dataCluster(t)
	ctx := ctxFor(t)
	const chunk = 64 << 10
	if err := c.SetDirLayout(ctx, "/", proto.DirLayout{ChunkSize: chunk}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 3))
	var files []*libfff.File
	var contents [][]byte
	for i := range 4 {
		data := randData(r, 10*chunk+i*1000)
		name := fmt.Sprintf("/b%d", i)
		put(t, c, name, data)
		f, err := c.OpenFile(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files, contents = append(files, f), append(contents, data)
	}
	ops := make([]libfff.ReadOp, 5000)
	for k := range ops {
		i := r.IntN(len(files))
		n := r.IntN(200 << 10)
		if k%3 == 0 {
			n = r.IntN(8 << 10)
		}
		ops[k] = libfff.ReadOp{File: files[i], Off: r.Int64N(int64(len(contents[i])) + 1000), Dst: make([]byte, n)}
	}
	for k := 0; k+1 < len(ops); k += 7 { // adjacent pairs
		ops[k+1].File, ops[k+1].Off = ops[k].File, ops[k].Off+int64(len(ops[k].Dst))
	}
	if err := c.ReadBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for k, op := range ops {
		one := make([]byte, len(op.Dst))
		n, err := op.File.ReadAt(one, op.Off)
		if n != op.N || err != op.Err || !bytes.Equal(one[:n], op.Dst[:op.N]) {
			t.Fatalf("op %d (off %d, %d bytes): batch read %d, %v; alone %d, %v", k, op.Off, len(op.Dst), op.N, op.Err, n, err)
		}
	}
}

func TestDataConcurrent(t *testing.T) {
	t.Parallel()
	c := dataCluster(t)
	ctx := ctxFor(t)
	if err := c.SetDirLayout(ctx, "/", proto.DirLayout{ChunkSize: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	const workers = 24
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				r := rand.New(rand.NewPCG(uint64(i), 4))
				name := fmt.Sprintf("/c%d", i)
				for round := range 3 {
					data := randData(r, r.IntN(600<<10))
					f, err := c.Create(ctx, name)
					if err != nil {
						return err
					}
					for off := 0; off < len(data); {
						n := min(len(data)-off, 1+r.IntN(100<<10))
						if _, err := f.Write(data[off : off+n]); err != nil {
							return err
						}
						off += n
					}
					if err := f.Close(); err != nil {
						return err
					}
					g, err := c.OpenFile(ctx, name)
					if err != nil {
						return err
					}
					got, err := io.ReadAll(g)
					g.Close()
					if err != nil {
						return err
					}
					if !bytes.Equal(got, data) {
						return fmt.Errorf("%s round %d: %d bytes back, %d written, differing", name, round, len(got), len(data))
					}
				}
				return nil
			}()
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

// TestDataFFRecord: FFRecord v1 and v2 datasets in fff read back exactly
// through the client's batched reads, and a sample whose bytes changed
// after it was written fails its checksum and only it. The samples run up
// to 60 KiB so that most are read locally (libfff/localread.go), where a
// v2 sample's checksum comes from the chunk's block checksums instead of a
// second pass (ReadOp.Sum): that path must catch the damage too.
func TestDataFFRecord(t *testing.T) {
	t.Parallel()
	c := dataCluster(t)
	ctx := ctxFor(t)
	r := rand.New(rand.NewPCG(5, 5))
	for _, format := range []ffrecord.Version{ffrecord.V1, ffrecord.V2} {
		var samples [][]byte
		for range 500 {
			samples = append(samples, randData(r, r.IntN(60<<10)))
		}
		name := fmt.Sprintf("/set-v%d.ffr", format)
		f, err := c.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ffrecord.NewWriter(f, ffrecord.WriterOptions{Format: format, Count: int64(len(samples))})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
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
		open := func() *ffrecord.Reader {
			g, err := c.OpenFile(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { g.Close() })
			rd, err := ffrecord.Open(ctx, []ffrecord.Source{{Name: name, R: g, Size: g.Size()}}, ffrecord.ReaderOptions{Batcher: c.Batcher()})
			if err != nil {
				t.Fatal(err)
			}
			return rd
		}
		rd := open()
		if rd.Len() != int64(len(samples)) {
			t.Fatalf("%s: %d samples, want %d", name, rd.Len(), len(samples))
		}
		idx := r.Perm(len(samples))
		indices := make([]int64, len(idx))
		dsts := make([][]byte, len(idx))
		for k, i := range idx {
			indices[k] = int64(i)
			dsts[k] = make([]byte, len(samples[i]))
		}
		local := c.Stats().LocalBytes
		if err := rd.ReadBatch(ctx, indices, dsts); err != nil {
			t.Fatal(err)
		}
		for k, i := range idx {
			if !bytes.Equal(dsts[k], samples[i]) {
				t.Fatalf("%s: sample %d differs", name, i)
			}
		}
		if c.Stats().LocalBytes == local {
			t.Fatalf("%s: no sample was read locally; the test needs local reads", name)
		}

		// Damage the largest sample in place, through the file system (its
		// blocks' checksums are written anew, so only the sample's own
		// checksum can tell).
		bad := int64(0)
		for i := range samples {
			if len(samples[i]) > len(samples[bad]) {
				bad = int64(i)
			}
		}
		loc, err := rd.Locate(bad)
		if err != nil {
			t.Fatal(err)
		}
		wf, err := c.Open(ctx, name, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		at := loc.Offset + loc.Length/2
		if _, err := wf.WriteAt([]byte{samples[bad][loc.Length/2] ^ 0x08}, at); err != nil {
			t.Fatal(err)
		}
		if err := wf.Close(); err != nil {
			t.Fatal(err)
		}
		rd = open()
		local = c.Stats().LocalBytes
		err = rd.ReadBatch(ctx, indices, dsts)
		if !errors.Is(err, ffrecord.ErrChecksum) {
			t.Fatalf("%s: reading a damaged sample: %v, want ErrChecksum", name, err)
		}
		var se *ffrecord.Error
		joined, _ := err.(interface{ Unwrap() []error })
		if !errors.As(err, &se) || se.Index != bad || joined == nil || len(joined.Unwrap()) != 1 {
			t.Fatalf("%s: error %v, want one for sample %d only", name, err, bad)
		}
		for k, i := range idx {
			if int64(i) != bad && !bytes.Equal(dsts[k], samples[i]) {
				t.Fatalf("%s: intact sample %d differs after sample %d was damaged", name, i, bad)
			}
		}
		if c.Stats().LocalBytes == local {
			t.Fatalf("%s: no sample was read locally", name)
		}
	}
}
