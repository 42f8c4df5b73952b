package meta

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"

	"fff/internal/proto"
	"fff/server/kv/bboltkv"
)

// The benchmarks run 64 concurrent clients (the target setting)
// over a durable bbolt file (fsync on every commit, group commit batching
// the concurrent ones).

func benchService(b *testing.B) *Service {
	db, err := bboltkv.Open(filepath.Join(b.TempDir(), "meta.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	return newService(b, db, Options{})
}

// clients sets the parallelism so that RunParallel uses 64 goroutines.
func clients(b *testing.B) {
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
}

func BenchmarkStatParallel(b *testing.B) {
	s := benchService(b)
	benchStat(b, s, mkdir(b, s, Root, proto.RootIno, "d", 0o755).Ino)
}

// benchStat measures Stat by inode, as a non-root caller, of 1,000 files
// in directory d.
func benchStat(b *testing.B, s *Service, d uint64) {
	inos := make([]uint64, 1000)
	for i := range inos {
		inos[i] = create(b, s, Root, d, fmt.Sprint("f", i), 0o644).Ino
	}
	clients(b)
	var seq atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(7919)
		for pb.Next() {
			i++
			if _, err := s.Stat(ctx, alice, inos[i%uint64(len(inos))]); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkLookupParallel(b *testing.B) {
	s := benchService(b)
	d := mkdir(b, s, Root, proto.RootIno, "d", 0o755)
	for i := range 1000 {
		create(b, s, Root, d.Ino, fmt.Sprint("f", i), 0o644)
	}
	clients(b)
	var seq atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seq.Add(7919)
		for pb.Next() {
			i++
			if _, err := s.Lookup(ctx, alice, d.Ino, fmt.Sprint("f", i%1000)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkCreateParallel(b *testing.B) {
	s := benchService(b)
	benchCreate(b, s, mkdir(b, s, Root, proto.RootIno, "d", 0o777).Ino)
}

// benchCreate measures Create, as a non-root caller, in directory d.
func benchCreate(b *testing.B, s *Service, d uint64) {
	clients(b)
	var seq atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprint("f", seq.Add(1))
			if _, err := s.Create(ctx, alice, d, name, 0o644, proto.OpenExcl); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkCreateWriteCloseParallel is the meta cost of writing a new file:
// Create with a write session, then Close reporting its length (two
// transactions).
func BenchmarkCreateWriteCloseParallel(b *testing.B) {
	s := benchService(b)
	d := mkdir(b, s, Root, proto.RootIno, "d", 0o777)
	clients(b)
	var seq atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			name := fmt.Sprint("f", seq.Add(1))
			o, err := s.Create(ctx, alice, d.Ino, name, 0o644, proto.OpenExcl|proto.OpenWrite)
			if err == nil {
				_, err = s.Close(ctx, alice, o.Session, 4096, true)
			}
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "files/s")
}

// deepDir makes a chain of depth directories (0755, root's) below the root
// and returns the deepest: inode-level calls of a non-root caller check
// search permission on every one of them.
func deepDir(b *testing.B, s *Service, depth int, mode uint32) uint64 {
	d := uint64(proto.RootIno)
	for i := range depth {
		m := uint32(0o755)
		if i == depth-1 {
			m = mode
		}
		d = mkdir(b, s, Root, d, fmt.Sprint("d", i), m).Ino
	}
	return d
}

// BenchmarkStatDeepParallel is Stat by inode, as a non-root caller, of
// files eight directories below the root.
func BenchmarkStatDeepParallel(b *testing.B) {
	s := benchService(b)
	benchStat(b, s, deepDir(b, s, 8, 0o755))
}

// BenchmarkCreateDeepParallel is Create, as a non-root caller, in a
// directory eight levels below the root.
func BenchmarkCreateDeepParallel(b *testing.B) {
	s := benchService(b)
	benchCreate(b, s, deepDir(b, s, 8, 0o777))
}
