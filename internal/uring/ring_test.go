package uring

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func newRing(t testing.TB, entries uint32) *Ring {
	t.Helper()
	r, err := NewRing(entries)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skipf("io_uring unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("ring close: %v", err)
		}
	})
	return r
}

func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func writeTemp(t testing.TB, dir string, data []byte) string {
	t.Helper()
	f, err := os.CreateTemp(dir, "uring-*.dat")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f.Name()) })
	return f.Name()
}

func pipe(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func TestNewRingAndClose(t *testing.T) {
	r, err := NewRing(5)
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	if r.Entries() != 8 {
		t.Errorf("Entries = %d, want 8 (rounded up)", r.Entries())
	}
	// Close while idle, twice, concurrently.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	ops := []Op{{Kind: OpRead, Fd: 0, Buf: make([]byte, 1)}}
	if err := r.Do(context.Background(), ops); !errors.Is(err, ErrClosed) || !errors.Is(ops[0].Err, ErrClosed) {
		t.Fatalf("Do after Close = %v / %v, want ErrClosed", err, ops[0].Err)
	}
	if _, err := NewRing(1 << 20); err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("NewRing(1<<20) = %v, want a plain setup error", err)
	}
}

func TestDoWriteFsyncRead(t *testing.T) {
	r := newRing(t, 4)
	path := filepath.Join(t.TempDir(), "w.dat")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	data := randBytes(1, 100_000)
	// 10 writes on a 4-entry ring: some wait for room.
	var ops []Op
	for off := 0; off < len(data); off += 10_000 {
		ops = append(ops, Op{Kind: OpWrite, Fd: fd, Off: int64(off), Buf: data[off : off+10_000]})
	}
	if err := r.Do(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		if op.Err != nil || op.N != 10_000 {
			t.Fatalf("write %d: N=%d err=%v", i, op.N, op.Err)
		}
	}
	sync := []Op{{Kind: OpFsync, Fd: fd}, {Kind: OpFdatasync, Fd: fd}}
	if err := r.Do(context.Background(), sync); err != nil || sync[0].Err != nil || sync[1].Err != nil {
		t.Fatalf("fsync: %v %v %v", err, sync[0].Err, sync[1].Err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("file content mismatch (err %v)", err)
	}
	// Read it back through the ring; the last read crosses EOF.
	buf := make([]byte, len(data)+500)
	rd := []Op{
		{Kind: OpRead, Fd: fd, Off: 0, Buf: buf[:50_000]},
		{Kind: OpRead, Fd: fd, Off: 50_000, Buf: buf[50_000:]},
		{Kind: OpRead, Fd: fd, Off: 1 << 30, Buf: make([]byte, 10)}, // past EOF
		{Kind: OpRead, Fd: fd, Off: 5, Buf: nil},                    // empty
		{Kind: OpRead, Fd: fd, Off: -1, Buf: make([]byte, 1)},       // invalid
		{Kind: OpKind(99), Fd: fd},                                  // invalid
		{Kind: OpRead, Fd: -1, Buf: make([]byte, 1)},                // EBADF
	}
	if err := r.Do(context.Background(), rd); err != nil {
		t.Fatal(err)
	}
	if rd[0].N != 50_000 || rd[1].N != 50_000 || rd[0].Err != nil || rd[1].Err != nil {
		t.Fatalf("reads: %+v %+v", rd[0], rd[1])
	}
	if !bytes.Equal(buf[:len(data)], data) {
		t.Fatal("read back mismatch")
	}
	if rd[2].N != 0 || rd[2].Err != nil || rd[3].N != 0 || rd[3].Err != nil {
		t.Fatalf("past-EOF/empty reads: %+v %+v", rd[2], rd[3])
	}
	for _, i := range []int{4, 5, 6} {
		if rd[i].Err == nil {
			t.Errorf("op %d: want error", i)
		}
	}
}

// TestDoCancel cancels ops blocked on an empty pipe, in flight and still
// waiting for a slot, and checks the cancelled reads are really gone.
func TestDoCancel(t *testing.T) {
	r := newRing(t, 2)
	pr, pw := pipe(t)
	path := writeTemp(t, t.TempDir(), randBytes(2, 4096))
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()

	ops := []Op{
		{Kind: OpRead, Fd: int(pr.Fd()), Buf: make([]byte, 10)},
		{Kind: OpRead, Fd: int(file.Fd()), Buf: make([]byte, 4096)},
		{Kind: OpRead, Fd: int(pr.Fd()), Buf: make([]byte, 10)},
	}
	for range 20 { // these wait for a slot: the pipe reads hold both
		ops = append(ops, Op{Kind: OpRead, Fd: int(file.Fd()), Buf: make([]byte, 100)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = r.Do(ctx, ops)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	if !errors.Is(ops[0].Err, context.DeadlineExceeded) || !errors.Is(ops[2].Err, context.DeadlineExceeded) {
		t.Fatalf("pipe ops: %v %v", ops[0].Err, ops[2].Err)
	}
	if ops[1].Err != nil || ops[1].N != 4096 {
		t.Fatalf("file op: N=%d err=%v", ops[1].N, ops[1].Err)
	}
	for i, op := range ops[3:] {
		if op.Err == nil && op.N != 100 {
			t.Fatalf("queued op %d: N=%d err=%v", i, op.N, op.Err)
		}
	}
	// Nothing may still be reading the pipe.
	if _, err := pw.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := pr.Read(got); err != nil || string(got) != "hello" {
		t.Fatalf("pipe read after cancel: %q %v", got, err)
	}
	// The ring is still usable; an already-cancelled ctx submits nothing.
	more := []Op{{Kind: OpRead, Fd: int(file.Fd()), Buf: make([]byte, 4096)}}
	if err := r.Do(context.Background(), more); err != nil || more[0].N != 4096 {
		t.Fatalf("Do after cancel: %v %+v", err, more[0])
	}
	if err := r.Do(ctx, more); !errors.Is(err, context.DeadlineExceeded) || more[0].N != 0 {
		t.Fatalf("Do with dead ctx: %v %+v", err, more[0])
	}
}

func TestCloseCancelsInFlight(t *testing.T) {
	r, err := NewRing(4)
	if err != nil {
		t.Skip(err)
	}
	pr, _ := pipe(t)
	ops := []Op{{Kind: OpRead, Fd: int(pr.Fd()), Buf: make([]byte, 10)}}
	for range 10 {
		ops = append(ops, Op{Kind: OpRead, Fd: int(pr.Fd()), Buf: make([]byte, 10)})
	}
	done := make(chan error)
	go func() { done <- r.Do(context.Background(), ops) }()
	time.Sleep(50 * time.Millisecond)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Do = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Do did not return after Close")
	}
	for i, op := range ops {
		if !errors.Is(op.Err, ErrClosed) {
			t.Errorf("op %d: %v", i, op.Err)
		}
	}
}

// TestDoConcurrent has many goroutines share one small ring.
func TestDoConcurrent(t *testing.T) {
	r := newRing(t, 8)
	data := randBytes(3, 1<<20)
	path := writeTemp(t, t.TempDir(), data)
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for range 100 {
				ops := make([]Op, 1+rng.IntN(20))
				for i := range ops {
					off := rng.IntN(len(data))
					ops[i] = Op{Fd: int(file.Fd()), Off: int64(off), Buf: make([]byte, rng.IntN(9000))}
				}
				if err := r.Do(context.Background(), ops); err != nil {
					t.Error(err)
					return
				}
				for _, op := range ops {
					want := data[min(int(op.Off), len(data)):min(int(op.Off)+len(op.Buf), len(data))]
					if op.Err != nil || op.N != len(want) || !bytes.Equal(op.Buf[:op.N], want) {
						t.Errorf("off %d len %d: N=%d err=%v", op.Off, len(op.Buf), op.N, op.Err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	r.mu.Lock()
	enters, sqes := r.enters, r.sqes
	r.mu.Unlock()
	t.Logf("%d SQEs in %d io_uring_enter calls", sqes, enters)
	if enters >= sqes {
		t.Errorf("no batching: %d SQEs in %d enters", sqes, enters)
	}
}

// TestCloseUnderLoad closes the ring while many goroutines submit, some
// with short deadlines and some blocked on a pipe.
func TestCloseUnderLoad(t *testing.T) {
	for range 5 {
		r, err := NewRing(8)
		if err != nil {
			t.Skip(err)
		}
		data := randBytes(4, 1<<18)
		file, err := os.Open(writeTemp(t, t.TempDir(), data))
		if err != nil {
			t.Fatal(err)
		}
		pr, _ := pipe(t)
		var wg sync.WaitGroup
		for g := range 12 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(g), 5))
				for {
					ops := make([]Op, 1+rng.IntN(30))
					for i := range ops {
						ops[i] = Op{Fd: int(file.Fd()), Off: rng.Int64N(1 << 18), Buf: make([]byte, 1+rng.IntN(5000))}
						if g%4 == 0 && i == 0 {
							ops[i].Fd = int(pr.Fd())
						}
					}
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rng.IntN(2000))*time.Microsecond)
					err := r.Do(ctx, ops)
					cancel()
					switch {
					case errors.Is(err, ErrClosed):
						return
					case err != nil && !errors.Is(err, context.DeadlineExceeded):
						t.Errorf("Do: %v", err)
						return
					}
					for _, op := range ops {
						if op.Err == nil && op.Fd == int(file.Fd()) {
							want := data[op.Off:min(int(op.Off)+len(op.Buf), len(data))]
							if !bytes.Equal(op.Buf[:op.N], want) {
								t.Errorf("bad data at %d", op.Off)
								return
							}
						}
					}
				}
			})
		}
		time.Sleep(30 * time.Millisecond)
		done := make(chan struct{})
		go func() { r.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close hung")
		}
		wg.Wait()
		file.Close()
	}
}
