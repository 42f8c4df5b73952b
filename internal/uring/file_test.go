package uring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// fileCase is one way of opening a file: filesystem and IO mode.
type fileCase struct {
	name       string
	dir        func(t *testing.T) string
	opts       Options
	wantDirect bool
	force4K    bool // use 4096 alignment instead of what statx reports
}

func fileCases() []fileCase {
	shm := func(t *testing.T) string {
		if st, err := os.Stat("/dev/shm"); err != nil || !st.IsDir() {
			t.Skip("/dev/shm absent")
		}
		d, err := os.MkdirTemp("/dev/shm", "uring-test-")
		if err != nil {
			t.Skip(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		return d
	}
	tmp := func(t *testing.T) string { return t.TempDir() }
	return []fileCase{
		{name: "disk-direct", dir: tmp, wantDirect: true},
		{name: "disk-direct-4k", dir: tmp, wantDirect: true, force4K: true},
		{name: "disk-buffered", dir: tmp, opts: Options{NoDirect: true}},
		{name: "tmpfs", dir: shm},
	}
}

func openCase(t *testing.T, c fileCase, r *Ring, path string) *File {
	t.Helper()
	f, err := Open(path, r, c.opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if f.Direct() != c.wantDirect {
		if c.wantDirect {
			t.Skipf("%s: filesystem refused O_DIRECT", path)
		}
		t.Fatalf("Direct() = true on %s, want buffered", path)
	}
	if c.force4K && f.direct {
		f.memAlign, f.offAlign = Align, Align
	}
	return f
}

// TestReadAtMatchesOS compares ReadAt byte-for-byte with os.File.ReadAt
// over offsets, lengths and buffer misalignments around block and EOF
// boundaries, and checks nothing outside p is written.
func TestReadAtMatchesOS(t *testing.T) {
	sizes := []int{0, 1, 4096, 3*4096 + 1234}
	lens := []int{0, 1, 511, 512, 4095, 4096, 4097, 8192, 12345, 20000}
	for _, c := range fileCases() {
		t.Run(c.name, func(t *testing.T) {
			r := newRing(t, 16)
			dir := c.dir(t)
			for _, size := range sizes {
				data := randBytes(uint64(size), size)
				path := writeTemp(t, dir, data)
				f := openCase(t, c, r, path)
				if f.Size() != int64(size) || f.Name() != path {
					t.Fatalf("Size/Name = %d %q", f.Size(), f.Name())
				}
				ref, err := os.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer ref.Close()
				offs := []int64{0, 1, 511, 512, 4095, 4096, 4097, int64(size) - 1, int64(size),
					int64(size) + 1, int64(size) + 5000, int64(size) - 100, 1 << 40}
				for _, off := range offs {
					if off < 0 {
						continue
					}
					for _, n := range lens {
						for _, mis := range []int{0, 1, 512, 4095} {
							checkReadAt(t, f, ref, off, n, mis)
						}
					}
				}
			}
		})
	}
}

const guard = 0xA5

func checkReadAt(t *testing.T, f *File, ref *os.File, off int64, n, mis int) {
	t.Helper()
	backing := AlignedBuffer(n + mis + 4096)
	for i := range backing {
		backing[i] = guard
	}
	p := backing[mis : mis+n]
	got, err := f.ReadAt(p, off)
	want := make([]byte, n)
	wn, werr := ref.ReadAt(want, off)
	desc := fmt.Sprintf("off=%d n=%d mis=%d", off, n, mis)
	if got != wn || (err == nil) != (werr == nil) || (werr == io.EOF) != (err == io.EOF) {
		t.Fatalf("%s: ReadAt = %d, %v; os = %d, %v", desc, got, err, wn, werr)
	}
	if !bytes.Equal(p[:got], want[:wn]) {
		t.Fatalf("%s: data mismatch", desc)
	}
	// p[got:] may be scratch (io.ReaderAt allows it; O_DIRECT DMAs whole
	// blocks), but nothing outside p may change.
	for i, b := range backing {
		if (i < mis || i >= mis+n) && b != guard {
			t.Fatalf("%s: byte %d outside p was written", desc, i-mis)
		}
	}
}

// TestReadBatch reads random batches, larger than the ring, and checks
// per-request N and the io.ReadFull error semantics.
func TestReadBatch(t *testing.T) {
	for _, c := range fileCases() {
		t.Run(c.name, func(t *testing.T) {
			r := newRing(t, 8)
			size := 300_001
			data := randBytes(7, size)
			f := openCase(t, c, r, writeTemp(t, c.dir(t), data))
			rng := rand.New(rand.NewPCG(1, 2))
			for round := range 20 {
				reqs := make([]ReadReq, 1+rng.IntN(100))
				for i := range reqs {
					off := rng.Int64N(int64(size) + 10_000)
					if rng.IntN(3) == 0 {
						off &^= 4095
					}
					n := rng.IntN(20_000)
					if rng.IntN(3) == 0 {
						n = (n + 4095) &^ 4095
					}
					buf := AlignedBuffer(n + 1)
					if rng.IntN(2) == 0 {
						buf = buf[1:]
					}
					reqs[i] = ReadReq{Off: off, Buf: buf[:n], N: -1, Err: io.ErrNoProgress}
				}
				if err := f.ReadBatch(context.Background(), reqs); err != nil {
					t.Fatal(err)
				}
				for i, q := range reqs {
					lo, hi := min(int(q.Off), size), min(int(q.Off)+len(q.Buf), size)
					want := data[lo:hi]
					var wantErr error
					switch {
					case len(want) == len(q.Buf):
					case len(want) == 0:
						wantErr = io.EOF
					default:
						wantErr = io.ErrUnexpectedEOF
					}
					if q.N != len(want) || q.Err != wantErr || !bytes.Equal(q.Buf[:q.N], want) {
						t.Fatalf("round %d req %d off=%d len=%d: N=%d err=%v, want %d %v",
							round, i, q.Off, len(q.Buf), q.N, q.Err, len(want), wantErr)
					}
				}
			}
		})
	}
}

// TestPlanAvoidsBounce checks which parts of a direct read use bounce
// buffers.
func TestPlanAvoidsBounce(t *testing.T) {
	r := newRing(t, 8)
	f := openCase(t, fileCase{wantDirect: true}, r, writeTemp(t, t.TempDir(), randBytes(9, 1<<16)))
	f.memAlign, f.offAlign = Align, Align
	buf := AlignedBuffer(5 * Align)
	tests := []struct {
		name      string
		off       int64
		buf       []byte
		wantOps   int
		wantBytes int // bytes read through bounce buffers
	}{
		{"aligned", 4096, buf[:2*Align], 1, 0},
		{"unaligned-off-aligned-middle", 4096 - 100, buf[Align-100 : 3*Align+50], 3, 2 * Align},
		{"tail-only", 0, buf[:Align+1], 2, Align},
		{"misaligned-buffer", 4096, buf[1 : 2*Align+1], 1, 2 * Align},
		{"small", 10, buf[:20], 1, Align},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := f.plan([]ReadReq{{Off: tt.off, Buf: tt.buf}})
			bounced := 0
			for _, p := range b.pieces {
				if p.bounce != nil {
					bounced += len(b.ops[p.op].Buf)
				}
			}
			if len(b.ops) != tt.wantOps || bounced != tt.wantBytes {
				t.Fatalf("ops=%d bounced=%d, want %d %d", len(b.ops), bounced, tt.wantOps, tt.wantBytes)
			}
		})
	}
}

// TestConcurrentFiles mixes ReadAt and ReadBatch from many goroutines on
// one ring and several files.
func TestConcurrentFiles(t *testing.T) {
	r := newRing(t, 16)
	dir := t.TempDir()
	type tf struct {
		f    *File
		data []byte
	}
	var files []tf
	for i, c := range fileCases()[:3] {
		data := randBytes(uint64(100+i), 1<<20+777)
		files = append(files, tf{openCase(t, c, r, writeTemp(t, dir, data)), data})
	}
	var wg sync.WaitGroup
	for g := range 24 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 3))
			for it := range 150 {
				x := files[rng.IntN(len(files))]
				size := len(x.data)
				if it%2 == 0 {
					off := rng.IntN(size + 100)
					p := make([]byte, rng.IntN(10_000))
					n, err := x.f.ReadAt(p, int64(off))
					want := x.data[min(off, size):min(off+len(p), size)]
					if n != len(want) || !bytes.Equal(p[:n], want) || (n < len(p)) != (err == io.EOF) {
						t.Errorf("ReadAt off=%d len=%d: %d %v", off, len(p), n, err)
						return
					}
					continue
				}
				reqs := make([]ReadReq, 1+rng.IntN(40))
				for i := range reqs {
					reqs[i] = ReadReq{Off: int64(rng.IntN(size)), Buf: AlignedBuffer(rng.IntN(3) * Align)}
				}
				if err := x.f.ReadBatch(context.Background(), reqs); err != nil {
					t.Error(err)
					return
				}
				for _, q := range reqs {
					want := x.data[q.Off:min(int(q.Off)+len(q.Buf), size)]
					if q.N != len(want) || !bytes.Equal(q.Buf[:q.N], want) {
						t.Errorf("batch off=%d len=%d: %d %v", q.Off, len(q.Buf), q.N, q.Err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestReadBatchCancel(t *testing.T) {
	r := newRing(t, 4)
	data := randBytes(11, 1<<20)
	f := openCase(t, fileCase{wantDirect: true}, r, writeTemp(t, t.TempDir(), data))
	reqs := make([]ReadReq, 2000)
	for i := range reqs {
		reqs[i] = ReadReq{Off: int64(i%256) * Align, Buf: make([]byte, 4000)}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(time.Millisecond); cancel() }()
	err := f.ReadBatch(ctx, reqs)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	for i, q := range reqs {
		if q.Err == nil {
			if q.N != 4000 || !bytes.Equal(q.Buf, data[q.Off:q.Off+4000]) {
				t.Fatalf("req %d: bad data", i)
			}
		} else if err == nil || !errors.Is(q.Err, context.Canceled) {
			t.Fatalf("req %d: %v (batch err %v)", i, q.Err, err)
		}
	}
	t.Logf("batch error %v", err)
}

func TestFileWriteFsyncDirect(t *testing.T) {
	for _, c := range fileCases()[:3] {
		t.Run(c.name, func(t *testing.T) {
			r := newRing(t, 8)
			c.opts.Write, c.opts.Create = true, true
			path := filepath.Join(c.dir(t), "chunk.dat")
			f := openCase(t, c, r, path)
			data := AlignedBuffer(8 * Align)
			copy(data, randBytes(12, len(data)))
			ops := []Op{
				{Kind: OpWrite, Fd: f.Fd(), Off: 0, Buf: data[:4*Align]},
				{Kind: OpWrite, Fd: f.Fd(), Off: 4 * Align, Buf: data[4*Align:]},
			}
			if err := r.Do(context.Background(), ops); err != nil || ops[0].Err != nil || ops[1].Err != nil {
				t.Fatalf("write: %v %v %v", err, ops[0].Err, ops[1].Err)
			}
			ops = []Op{{Kind: OpFdatasync, Fd: f.Fd()}}
			if err := r.Do(context.Background(), ops); err != nil || ops[0].Err != nil {
				t.Fatalf("fdatasync: %v %v", err, ops[0].Err)
			}
			got := make([]byte, len(data)+10)
			n, err := f.ReadAt(got, 0)
			if n != len(data) || err != io.EOF || !bytes.Equal(got[:n], data) {
				t.Fatalf("read back: %d %v", n, err)
			}
			onDisk, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(onDisk, data) {
				t.Fatalf("os.ReadFile: %v", err)
			}
		})
	}
}

func TestFileErrors(t *testing.T) {
	r := newRing(t, 4)
	if _, err := Open(filepath.Join(t.TempDir(), "missing"), r, Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open missing = %v", err)
	}
	if _, err := Open(t.TempDir(), r, Options{}); err == nil {
		t.Fatal("Open dir succeeded")
	}
	f, err := Open(writeTemp(t, t.TempDir(), []byte("abc")), r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 1), -1); err == nil {
		t.Fatal("negative offset accepted")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("ReadAt after Close = %v", err)
	}
}

// BenchmarkReadBatch4K reads batches of 64 random aligned 4 KiB blocks.
func BenchmarkReadBatch4K(b *testing.B) {
	for _, c := range []struct {
		name string
		opts Options
	}{{"direct", Options{}}, {"buffered", Options{NoDirect: true}}} {
		b.Run(c.name, func(b *testing.B) {
			r, err := NewRing(256)
			if err != nil {
				b.Skip(err)
			}
			defer r.Close()
			const size = 64 << 20
			path := filepath.Join(b.TempDir(), "bench.dat")
			if err := os.WriteFile(path, randBytes(1, size), 0o644); err != nil {
				b.Fatal(err)
			}
			f, err := Open(path, r, c.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			rng := rand.New(rand.NewPCG(1, 1))
			reqs := make([]ReadReq, 64)
			for i := range reqs {
				reqs[i].Buf = AlignedBuffer(4096)
			}
			b.SetBytes(int64(len(reqs)) * 4096)
			b.ResetTimer()
			for b.Loop() {
				for i := range reqs {
					reqs[i].Off = rng.Int64N(size/4096) * 4096
				}
				if err := f.ReadBatch(context.Background(), reqs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(reqs))/b.Elapsed().Seconds(), "IOPS")
		})
	}
}
