package ffrecord

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// written is one file produced by writeFile, with what went into it.
type written struct {
	name    string
	opts    WriterOptions
	samples [][]byte
	keys    []string // nil: written without keys
	file    []byte
}

func (w *written) source() Source {
	return Source{Name: w.name, R: bytes.NewReader(w.file), Size: int64(len(w.file))}
}

// wantKey is what Reader.Key must return for sample i of w.
func (w *written) wantKey(i int) string {
	if w.keys == nil || w.opts.Format == V1 {
		return ""
	}
	return w.keys[i]
}

// writeFile writes samples (with keys when keys != nil) into memory and checks
// the writer's own bookkeeping on the way.
func writeFile(t testing.TB, name string, opts WriterOptions, samples [][]byte, keys []string) *written {
	t.Helper()
	var m memFile
	opts.Name = name
	if opts.Format == V1 {
		opts.Count = int64(len(samples))
	}
	w, err := NewWriter(&m, opts)
	if err != nil {
		t.Fatalf("NewWriter(%+v): %v", opts, err)
	}
	for i, s := range samples {
		key := ""
		if keys != nil {
			key = keys[i]
		}
		if err := w.WriteKeyed(key, s); err != nil {
			t.Fatalf("%s: write sample %d: %v", name, i, err)
		}
		if w.Count() != int64(i+1) {
			t.Fatalf("%s: Count = %d after %d samples", name, w.Count(), i+1)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("%s: close: %v", name, err)
	}
	if w.Offset() != int64(len(m.b)) {
		t.Fatalf("%s: Offset() = %d after Close, file has %d bytes", name, w.Offset(), len(m.b))
	}
	if opts.Format == 0 {
		opts.Format = V2
	}
	return &written{name: name, opts: opts, samples: samples, keys: keys, file: m.b}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := i; j < min(i+8, n); j++ {
			b[j] = byte(v)
			v >>= 8
		}
	}
	return b
}

// Sample-set shapes for the property tests.
const (
	setNone  = "none"  // 0 samples
	setEmpty = "empty" // many empty samples
	setMixed = "mixed" // a mix of empty, small and medium samples
	setLarge = "large" // a few samples bigger than the writer's 4 MiB buffer
)

func randSamples(rng *rand.Rand, shape string) [][]byte {
	var out [][]byte
	switch shape {
	case setNone:
	case setEmpty:
		out = make([][]byte, 1+rng.IntN(300))
		for i := range out {
			out[i] = []byte{}
		}
	case setMixed:
		out = make([][]byte, 1+rng.IntN(150))
		for i := range out {
			switch p := rng.IntN(10); {
			case p < 3:
				out[i] = nil
			case p < 8:
				out[i] = randBytes(rng, 1+rng.IntN(300))
			default:
				out[i] = randBytes(rng, 300+rng.IntN(20000))
			}
		}
	case setLarge:
		out = [][]byte{
			randBytes(rng, 5<<20+rng.IntN(1<<20)),
			{},
			randBytes(rng, 1+rng.IntN(100)),
			randBytes(rng, 4<<20+1),
			randBytes(rng, 4<<20-1-rng.IntN(10)),
		}
	default:
		panic(shape)
	}
	return out
}

func randKeys(rng *rand.Rand, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		switch rng.IntN(5) {
		case 0: // no key for this sample
		case 1:
			keys[i] = fmt.Sprintf("dir%d/ünïcode-%d.bin", rng.IntN(5), i)
		default:
			keys[i] = fmt.Sprintf("class%d/img_%06d.jpg", rng.IntN(10), i)
		}
	}
	return keys
}

// fileConfig is one writer configuration of the property tests.
type fileConfig struct {
	name string
	opts WriterOptions
	keys bool
}

var fileConfigs = []fileConfig{
	{"v1", WriterOptions{Format: V1}, false},
	{"v1-keys-dropped", WriterOptions{Format: V1}, true},
	{"v2", WriterOptions{}, false},
	{"v2-keys", WriterOptions{Format: V2}, true},
	{"v2-align4096", WriterOptions{Alignment: 4096}, false},
	{"v2-align4096-keys", WriterOptions{Alignment: 4096}, true},
	{"v2-align512", WriterOptions{Alignment: 512}, false},
	{"v2-align512-keys", WriterOptions{Alignment: 512}, true},
}

var bufferSizes = []int{0, 1, 17, 4096, 1 << 16}

func randFile(rng *rand.Rand, t testing.TB, name string, cfg fileConfig, shape string) *written {
	samples := randSamples(rng, shape)
	var keys []string
	if cfg.keys {
		keys = randKeys(rng, len(samples))
	}
	opts := cfg.opts
	if shape != setLarge {
		opts.BufferSize = bufferSizes[rng.IntN(len(bufferSizes))]
	}
	return writeFile(t, name, opts, samples, keys)
}

func openFiles(t testing.TB, files []*written, opts ReaderOptions) *Reader {
	t.Helper()
	srcs := make([]Source, len(files))
	for k, f := range files {
		srcs[k] = f.source()
	}
	r, err := Open(context.Background(), srcs, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return r
}

// checkDataset checks every accessor of r against the files it was opened on.
func checkDataset(t *testing.T, rng *rand.Rand, r *Reader, files []*written) {
	t.Helper()
	ctx := context.Background()
	type ref struct {
		f      *written
		k, j   int
		sample []byte
	}
	var all []ref
	for k, f := range files {
		for j, s := range f.samples {
			all = append(all, ref{f, k, j, s})
		}
	}
	if r.Len() != int64(len(all)) {
		t.Fatalf("Len = %d, want %d", r.Len(), len(all))
	}
	sizes := r.Sizes()
	if len(sizes) != len(all) {
		t.Fatalf("Sizes has %d entries, want %d", len(sizes), len(all))
	}
	var wantProgress int64
	infos := r.Shards()
	if len(infos) != len(files) {
		t.Fatalf("Shards has %d entries, want %d", len(infos), len(files))
	}
	first := int64(0)
	for k, f := range files {
		info := infos[k]
		var data int64
		hasKeys := false
		for j, s := range f.samples {
			data += int64(len(s))
			hasKeys = hasKeys || f.wantKey(j) != ""
		}
		align := f.opts.Alignment
		if align == 0 || f.opts.Format == V1 {
			align = 1
		}
		want := ShardInfo{Name: f.name, Version: f.opts.Format, Len: int64(len(f.samples)), Size: int64(len(f.file)),
			DataBytes: data, Alignment: align, HasKeys: hasKeys, MetaCRC: true, FirstIndex: first}
		if info != want {
			t.Fatalf("Shards()[%d] = %+v, want %+v", k, info, want)
		}
		first += int64(len(f.samples))
		s := r.shards[k]
		wantProgress += s.dataEnd - s.dataStart
	}
	for i, a := range all {
		i := int64(i)
		if sizes[i] != int64(len(a.sample)) {
			t.Fatalf("Sizes()[%d] = %d, want %d", i, sizes[i], len(a.sample))
		}
		if n, err := r.Size(i); err != nil || n != int64(len(a.sample)) {
			t.Fatalf("Size(%d) = %d, %v; want %d", i, n, err, len(a.sample))
		}
		if key, err := r.Key(i); err != nil || key != a.f.wantKey(a.j) {
			t.Fatalf("Key(%d) = %q, %v; want %q", i, key, err, a.f.wantKey(a.j))
		}
		loc, err := r.Locate(i)
		if err != nil {
			t.Fatalf("Locate(%d): %v", i, err)
		}
		if loc.File != a.f.name || loc.Sample != int64(a.j) || loc.Length != int64(len(a.sample)) {
			t.Fatalf("Locate(%d) = %+v, want file %s sample %d length %d", i, loc, a.f.name, a.j, len(a.sample))
		}
		if !bytes.Equal(a.f.file[loc.Offset:loc.Offset+loc.Length], a.sample) {
			t.Fatalf("Locate(%d) = %+v does not point at the sample's bytes", i, loc)
		}
		if loc.Length > 0 && loc.Offset%infos[a.k].Alignment != 0 {
			t.Fatalf("Locate(%d): offset %d not aligned to %d", i, loc.Offset, infos[a.k].Alignment)
		}
		// Exact and oversized destinations.
		dst := make([]byte, len(a.sample)+rng.IntN(3))
		n, err := r.ReadSample(ctx, i, dst)
		if err != nil || n != len(a.sample) || !bytes.Equal(dst[:n], a.sample) {
			t.Fatalf("ReadSample(%d) = %d, %v; want the %d-byte sample", i, n, err, len(a.sample))
		}
	}
	// Everything in order, in one batch.
	got, err := readAll(t, r)
	if err != nil {
		t.Fatalf("ReadBatch of all: %v", err)
	}
	for i, a := range all {
		if !bytes.Equal(got[i], a.sample) {
			t.Fatalf("ReadBatch: sample %d differs", i)
		}
	}
	// Random batches: repeated, unordered indices, oversized buffers.
	if len(all) > 0 {
		for range 5 {
			checkRandomBatch(t, rng, r, func(i int64) []byte { return all[i].sample })
		}
	}
	var progress atomic.Int64
	if err := r.Verify(ctx, VerifyOptions{Progress: func(n int64) { progress.Add(n) }}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if progress.Load() != wantProgress {
		t.Fatalf("Verify progress reported %d bytes, data areas hold %d", progress.Load(), wantProgress)
	}
}

func checkRandomBatch(t testing.TB, rng *rand.Rand, r *Reader, want func(int64) []byte) {
	n := 1 + rng.IntN(2*int(r.Len())+1)
	idx := make([]int64, n)
	dsts := make([][]byte, n)
	for k := range idx {
		idx[k] = rng.Int64N(r.Len())
		if k > 0 && rng.IntN(4) == 0 {
			idx[k] = idx[rng.IntN(k)] // a repeat
		}
		dsts[k] = make([]byte, len(want(idx[k]))+rng.IntN(2))
	}
	if err := r.ReadBatch(context.Background(), idx, dsts); err != nil {
		t.Errorf("ReadBatch(%v): %v", idx, err)
		return
	}
	for k, i := range idx {
		w := want(i)
		if !bytes.Equal(dsts[k][:len(w)], w) {
			t.Errorf("ReadBatch: position %d (sample %d) differs", k, i)
			return
		}
	}
}

func TestRoundTripProperty(t *testing.T) {
	shapes := []string{setNone, setEmpty, setMixed}
	for _, cfg := range fileConfigs {
		for _, shape := range shapes {
			t.Run(cfg.name+"/"+shape, func(t *testing.T) {
				iterations := 1
				if shape == setMixed {
					iterations = 8
				}
				for seed := range uint64(iterations) {
					rng := rand.New(rand.NewPCG(seed, 42))
					f := randFile(rng, t, "one.ffr", cfg, shape)
					checkDataset(t, rng, openFiles(t, []*written{f}, ReaderOptions{}), []*written{f})
				}
			})
		}
	}
}

func TestRoundTripLarge(t *testing.T) {
	for _, cfg := range []fileConfig{fileConfigs[0], fileConfigs[3], fileConfigs[4]} {
		t.Run(cfg.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, 7))
			f := randFile(rng, t, "large.ffr", cfg, setLarge)
			checkDataset(t, rng, openFiles(t, []*written{f}, ReaderOptions{}), []*written{f})
		})
	}
}

// randDataset writes 2..6 files of random versions and shapes.
func randDataset(t testing.TB, rng *rand.Rand) []*written {
	files := make([]*written, 2+rng.IntN(5))
	shapes := []string{setNone, setEmpty, setMixed, setMixed, setMixed}
	for k := range files {
		cfg := fileConfigs[rng.IntN(len(fileConfigs))]
		files[k] = randFile(rng, t, fmt.Sprintf("part-%03d.ffr", k), cfg, shapes[rng.IntN(len(shapes))])
	}
	return files
}

func TestRoundTripMultiFile(t *testing.T) {
	for seed := range uint64(10) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 1234))
			files := randDataset(t, rng)
			checkDataset(t, rng, openFiles(t, files, ReaderOptions{}), files)
		})
	}
}

func TestOpenNoSources(t *testing.T) {
	r, err := Open(context.Background(), nil, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 0 || len(r.Shards()) != 0 || len(r.Sizes()) != 0 {
		t.Fatalf("empty dataset: Len %d, %d shards", r.Len(), len(r.Shards()))
	}
	if err := r.ReadBatch(context.Background(), nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Size(0); !errors.Is(err, ErrIndexRange) {
		t.Fatalf("Size(0) on empty dataset: %v", err)
	}
	if err := r.Verify(context.Background(), VerifyOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentReadBatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(99, 99))
	files := randDataset(t, rng)
	for len(files) < 3 || countSamples(files) == 0 {
		files = append(files, randFile(rng, t, fmt.Sprintf("extra-%d.ffr", len(files)), fileConfigs[2], setMixed))
	}
	var all [][]byte
	for _, f := range files {
		all = append(all, f.samples...)
	}
	r := openFiles(t, files, ReaderOptions{Concurrency: 4})
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			for range 10 {
				checkRandomBatch(t, rng, r, func(i int64) []byte { return all[i] })
				if rng.IntN(3) == 0 {
					i := rng.Int64N(r.Len())
					if _, err := r.Key(i); err != nil {
						t.Errorf("Key(%d): %v", i, err)
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Verify(context.Background(), VerifyOptions{Parallel: 2}); err != nil {
			t.Errorf("Verify: %v", err)
		}
	}()
	wg.Wait()
}

func countSamples(files []*written) int {
	n := 0
	for _, f := range files {
		n += len(f.samples)
	}
	return n
}

// sampleError unwraps err into the *Error it must be.
func sampleError(t testing.TB, err error, sentinel error) *Error {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v is not %v", err, sentinel)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.File == "" || !strings.Contains(err.Error(), e.File) {
		t.Fatalf("error %q does not name its file (%q)", err, e.File)
	}
	return e
}

func TestIndexRange(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(3, 3))
	one := writeFile(t, "one.ffr", WriterOptions{}, [][]byte{[]byte("a"), []byte("bc")}, nil)
	files := []*written{one, randFile(rng, t, "two.ffr", fileConfigs[0], setMixed)}
	for _, set := range [][]*written{files[:1], files} {
		r := openFiles(t, set, ReaderOptions{})
		for _, i := range []int64{-1, r.Len(), r.Len() + 1000, -1 << 62} {
			check := func(what string, err error) {
				t.Helper()
				e := sampleError(t, err, ErrIndexRange)
				if e.Index != i {
					t.Fatalf("%s(%d): error index %d", what, i, e.Index)
				}
			}
			_, err := r.Size(i)
			check("Size", err)
			_, err = r.Key(i)
			check("Key", err)
			_, err = r.Locate(i)
			check("Locate", err)
			_, err = r.ReadSample(ctx, i, make([]byte, 10))
			check("ReadSample", err)
			check("ReadBatch", r.ReadBatch(ctx, []int64{0, i}, [][]byte{make([]byte, 10), make([]byte, 10)}))
		}
		if err := r.ReadBatch(ctx, []int64{0}, nil); err == nil {
			t.Fatal("ReadBatch with fewer destinations than indices succeeded")
		}
	}
}

func TestBufferTooSmall(t *testing.T) {
	ctx := context.Background()
	a := writeFile(t, "a.ffr", WriterOptions{Format: V1}, [][]byte{[]byte("xyz")}, nil)
	b := writeFile(t, "b.ffr", WriterOptions{}, [][]byte{{}, []byte("hello"), []byte("world!")}, nil)
	r := openFiles(t, []*written{a, b}, ReaderOptions{})
	for _, tc := range []struct {
		index  int64
		buf    int
		file   string
		sample int64
	}{
		{0, 2, "a.ffr", 0},
		{0, 0, "a.ffr", 0},
		{2, 4, "b.ffr", 1},
		{3, 5, "b.ffr", 2},
	} {
		err := r.ReadBatch(ctx, []int64{1, tc.index}, [][]byte{nil, make([]byte, tc.buf)})
		e := sampleError(t, err, ErrBufferTooSmall)
		if e.File != tc.file || e.Sample != tc.sample || e.Index != tc.index {
			t.Fatalf("index %d: error names %s sample %d index %d", tc.index, e.File, e.Sample, e.Index)
		}
		_, err = r.ReadSample(ctx, tc.index, make([]byte, tc.buf))
		sampleError(t, err, ErrBufferTooSmall)
	}
	// An empty sample fits in a nil buffer.
	if n, err := r.ReadSample(ctx, 1, nil); err != nil || n != 0 {
		t.Fatalf("ReadSample of an empty sample: %d, %v", n, err)
	}
}

func TestNoVerify(t *testing.T) {
	ctx := context.Background()
	for _, format := range []Version{V1, V2} {
		t.Run(format.String(), func(t *testing.T) {
			f := writeFile(t, "nv.ffr", WriterOptions{Format: format}, [][]byte{[]byte("first"), []byte("second sample")}, nil)
			loc, err := openFiles(t, []*written{f}, ReaderOptions{}).Locate(1)
			if err != nil {
				t.Fatal(err)
			}
			f.file[loc.Offset+3] ^= 0x20
			bad := append([]byte(nil), f.samples[1]...)
			bad[3] ^= 0x20

			r := openFiles(t, []*written{f}, ReaderOptions{NoVerify: true})
			dst := make([]byte, len(bad))
			if _, err := r.ReadSample(ctx, 1, dst); err != nil || !bytes.Equal(dst, bad) {
				t.Fatalf("NoVerify read: %q, %v", dst, err)
			}
			// Verify checks regardless of NoVerify.
			e := sampleError(t, r.Verify(ctx, VerifyOptions{}), ErrChecksum)
			if e.Sample != 1 || e.Index != 1 {
				t.Fatalf("Verify names sample %d (index %d)", e.Sample, e.Index)
			}

			r = openFiles(t, []*written{f}, ReaderOptions{})
			_, err = r.ReadSample(ctx, 1, dst)
			if e := sampleError(t, err, ErrChecksum); e.Sample != 1 {
				t.Fatalf("read names sample %d", e.Sample)
			}
			if _, err := r.ReadSample(ctx, 0, make([]byte, 5)); err != nil {
				t.Fatalf("intact sample 0: %v", err)
			}
		})
	}
}

// countingBatcher serves reads with ReadAtBatch and counts calls.
type countingBatcher struct{ calls, reads atomic.Int64 }

func (b *countingBatcher) ReadBatch(ctx context.Context, reads []BatchRead) error {
	b.calls.Add(1)
	b.reads.Add(int64(len(reads)))
	return ReadAtBatch(ctx, reads, 3)
}

func TestBatcher(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	files := randDataset(t, rng)
	var all [][]byte
	for _, f := range files {
		all = append(all, f.samples...)
	}
	var b countingBatcher
	r := openFiles(t, files, ReaderOptions{Batcher: &b})
	if r.Len() == 0 {
		t.Skip("seed produced no samples")
	}
	checkRandomBatch(t, rng, r, func(i int64) []byte { return all[i] })
	if b.calls.Load() != 1 {
		t.Fatalf("one ReadBatch made %d Batcher calls", b.calls.Load())
	}
}

// failingReaderAt fails every read that reaches past limit with err.
type failingReaderAt struct {
	r     io.ReaderAt
	limit int64
	err   error
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, f.err
	}
	return f.r.ReadAt(p, off)
}

func TestReadErrors(t *testing.T) {
	ctx := context.Background()
	ioErr := errors.New("disk on fire")
	for _, format := range []Version{V1, V2} {
		t.Run(format.String(), func(t *testing.T) {
			f := writeFile(t, "io.ffr", WriterOptions{Format: format}, [][]byte{[]byte("aaaa"), []byte("bbbbbbbb")}, nil)
			r := openFiles(t, []*written{f}, ReaderOptions{})
			loc, _ := r.Locate(1)
			// Serve the metadata, fail the second sample's bytes.
			bad := failingReaderAt{bytes.NewReader(f.file), loc.Offset, ioErr}
			r.shards[0].src.R = bad
			_, err := r.ReadSample(ctx, 1, make([]byte, 8))
			if !errors.Is(err, ioErr) {
				t.Fatalf("read error %v does not wrap the IO error", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != "io.ffr" || e.Sample != 1 {
				t.Fatalf("read error %v does not name file and sample", err)
			}
			if _, err := r.ReadSample(ctx, 0, make([]byte, 4)); err != nil {
				t.Fatalf("sample 0: %v", err)
			}
			if err := r.Verify(ctx, VerifyOptions{}); !errors.Is(err, ioErr) {
				t.Fatalf("Verify: %v", err)
			}
			// Open itself: the IO error is reported with the file name.
			_, err = Open(ctx, []Source{{Name: "io.ffr", R: failingReaderAt{bytes.NewReader(f.file), 0, ioErr}, Size: int64(len(f.file))}}, ReaderOptions{})
			if !errors.Is(err, ioErr) || !errors.As(err, &e) || e.File != "io.ffr" {
				t.Fatalf("Open: %v", err)
			}
			// A source shorter than its claimed size is truncated.
			_, err = Open(ctx, []Source{{Name: "short.ffr", R: bytes.NewReader(f.file[:len(f.file)-1]), Size: int64(len(f.file))}}, ReaderOptions{})
			if err == nil {
				// v1 reads only the header at open; the last sample is then short.
				r, _ := Open(ctx, []Source{{Name: "short.ffr", R: bytes.NewReader(f.file[:len(f.file)-1]), Size: int64(len(f.file))}}, ReaderOptions{})
				_, err = r.ReadSample(ctx, 1, make([]byte, 8))
			}
			sampleError(t, err, ErrTruncated)
		})
	}
}

func TestContextCanceled(t *testing.T) {
	f := writeFile(t, "c.ffr", WriterOptions{}, [][]byte{[]byte("a"), []byte("b")}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, []Source{f.source()}, ReaderOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Open with canceled context: %v", err)
	}
	r := openFiles(t, []*written{f}, ReaderOptions{})
	if err := r.ReadBatch(ctx, []int64{0, 1}, [][]byte{make([]byte, 1), make([]byte, 1)}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadBatch with canceled context: %v", err)
	}
	if err := r.Verify(ctx, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Verify with canceled context: %v", err)
	}
}

// failingWriterAt accepts limit bytes, then fails.
type failingWriterAt struct {
	memFile
	limit int64
	err   error
}

func (f *failingWriterAt) WriteAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > f.limit {
		return 0, f.err
	}
	return f.memFile.WriteAt(p, off)
}

func TestWriterMisuse(t *testing.T) {
	sample := []byte("sample")
	ioErr := errors.New("no space")
	tests := []struct {
		name   string
		w      io.WriterAt // nil: a memFile
		opts   WriterOptions
		writes int
		// failAt is the step that must fail with want: -1 NewWriter, 0..writes-1 a
		// write, writes Close, writes+1 a write after Close.
		failAt int
		want   error
	}{
		{name: "v1 too many", opts: WriterOptions{Format: V1, Count: 2}, writes: 3, failAt: 2, want: ErrWriter},
		{name: "v1 zero count, one write", opts: WriterOptions{Format: V1}, writes: 1, failAt: 0, want: ErrWriter},
		{name: "v1 too few", opts: WriterOptions{Format: V1, Count: 3}, writes: 2, failAt: 2, want: ErrWriter},
		{name: "v1 negative count", opts: WriterOptions{Format: V1, Count: -1}, failAt: -1, want: ErrWriter},
		{name: "v1 count overflows", opts: WriterOptions{Format: V1, Count: 1 << 61}, failAt: -1, want: ErrWriter},
		{name: "v1 aligned", opts: WriterOptions{Format: V1, Count: 1, Alignment: 4096}, failAt: -1, want: ErrWriter},
		{name: "v2 alignment 3", opts: WriterOptions{Alignment: 3}, failAt: -1, want: ErrWriter},
		{name: "v2 alignment -4096", opts: WriterOptions{Alignment: -4096}, failAt: -1, want: ErrWriter},
		{name: "v2 alignment too big", opts: WriterOptions{Alignment: 2 * MaxAlignment}, failAt: -1, want: ErrWriter},
		{name: "v2 alignment 1<<32", opts: WriterOptions{Alignment: 1 << 32}, failAt: -1, want: ErrWriter},
		{name: "unknown format", opts: WriterOptions{Format: 3}, failAt: -1, want: ErrWriter},
		{name: "v2 write after close", opts: WriterOptions{}, writes: 1, failAt: 2, want: ErrWriter},
		{name: "v1 write after close", opts: WriterOptions{Format: V1, Count: 1}, writes: 1, failAt: 2, want: ErrWriter},
		{name: "v2 max alignment ok", opts: WriterOptions{Alignment: MaxAlignment}, writes: 2, failAt: 3, want: ErrWriter},
		{name: "v2 io error", w: &failingWriterAt{limit: 100, err: ioErr}, opts: WriterOptions{BufferSize: 16}, writes: 30, failAt: 15, want: ioErr},
		{name: "v2 io error at close", w: &failingWriterAt{limit: 100, err: ioErr}, opts: WriterOptions{}, writes: 30, failAt: 30, want: ioErr},
		{name: "v1 io error at close", w: &failingWriterAt{limit: 4, err: ioErr}, opts: WriterOptions{Format: V1, Count: 1}, writes: 1, failAt: 1, want: ioErr},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Name = "misuse.ffr"
			dst := tc.w
			if dst == nil {
				dst = &memFile{}
			}
			// check reports whether the steps go on after step.
			check := func(step int, err error) bool {
				t.Helper()
				if step < tc.failAt {
					if err != nil {
						t.Fatalf("step %d: %v", step, err)
					}
					return true
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("step %d: error %v, want %v", step, err, tc.want)
				}
				var e *Error
				if !errors.As(err, &e) || e.File != "misuse.ffr" || !strings.Contains(err.Error(), "misuse.ffr") {
					t.Fatalf("step %d: error %v does not name the file", step, err)
				}
				return false
			}
			w, err := NewWriter(dst, tc.opts)
			if !check(-1, err) {
				if w != nil {
					t.Fatal("NewWriter returned a writer with its error")
				}
				return
			}
			for step := range tc.writes {
				if !check(step, w.Write(sample)) {
					if tc.want == ioErr { // IO errors are sticky
						if err := w.Close(); !errors.Is(err, ioErr) {
							t.Fatalf("Close after a failed write: %v", err)
						}
					}
					return
				}
			}
			if !check(tc.writes, w.Close()) {
				if err := w.Write(sample); err == nil {
					t.Fatal("write after a failed Close succeeded")
				}
				return
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if m, ok := dst.(*memFile); ok { // the file is intact
				r := openBytes(t, "misuse.ffr", m.b, ReaderOptions{})
				if r.Len() != int64(tc.writes) {
					t.Fatalf("Len = %d, want %d", r.Len(), tc.writes)
				}
				if err := r.Verify(context.Background(), VerifyOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			check(tc.writes+1, w.Write(sample))
		})
	}
}

func TestShardNames(t *testing.T) {
	got := ShardNames([]string{"b.ffr", "dir/a.ffr", "c.txt", "a.ffr", "B.ffr", "x.ffr.tmp"})
	want := []string{"B.ffr", "a.ffr", "b.ffr", "dir/a.ffr"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ShardNames = %v, want %v", got, want)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{File: "d/x.ffr", Sample: 3, Index: 10, Err: ErrChecksum, Detail: "crc 1, stored 2"}
	if got, want := e.Error(), "ffrecord: d/x.ffr: sample 3 (dataset index 10): sample checksum mismatch (crc 1, stored 2)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), ErrChecksum) {
		t.Fatal("errors.Is through a wrapped *Error failed")
	}
}

// A v1 file that ends in the v2 footer magic (its last sample's bytes) is
// still read as v1, while a v2 file with a damaged header magic is still a bad v2 file.
func TestV1EndingInFooterMagic(t *testing.T) {
	last := append(bytes.Repeat([]byte{1}, 100), v2FooterMagic...)
	f := writeFile(t, "tail.ffr", WriterOptions{Format: V1}, [][]byte{[]byte("first"), last}, nil)
	checkDataset(t, rand.New(rand.NewPCG(1, 1)), openFiles(t, []*written{f}, ReaderOptions{}), []*written{f})

	v2 := writeFile(t, "v2.ffr", WriterOptions{}, [][]byte{last}, nil)
	for i := range 8 {
		data := bytes.Clone(v2.file)
		data[i] ^= 0x40
		_, err := Open(context.Background(), []Source{{Name: "v2.ffr", R: bytes.NewReader(data), Size: int64(len(data))}}, ReaderOptions{})
		sampleError(t, err, ErrBadMagic)
	}
}
