package chunkengine

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"

	"fff/internal/uring"
)

// benchEngine fills 32 chunks of 4 MiB (128 MiB) once per benchmark.
func benchEngine(b *testing.B, opts Options) (*Engine, []ChunkID) {
	b.Helper()
	opts.MaxChunkSize = DefaultMaxChunkSize
	e := openEngine(b, b.TempDir(), opts)
	ids := make([]ChunkID, 32)
	data := pattern(1, DefaultMaxChunkSize)
	for i := range ids {
		ids[i] = ChunkID{Ino: 1, Index: uint32(i)}
		mustWrite(b, e, ids[i], 0, data)
	}
	return e, ids
}

func benchRandomReads(b *testing.B, size int, opts Options) {
	e, ids := benchEngine(b, opts)
	ctx := context.Background()
	var seed atomic.Uint64
	b.SetBytes(int64(size))
	b.SetParallelism(16) // many reads in flight on the ring
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 0))
		dst := uring.AlignedBuffer(size)
		for pb.Next() {
			id := ids[rng.IntN(len(ids))]
			off := rng.Int64N(DefaultMaxChunkSize/int64(size)) * int64(size)
			if n, _, err := e.Read(ctx, id, off, dst); err != nil || n != size {
				b.Fatalf("read: %d %v", n, err)
			}
		}
	})
}

// BenchmarkRead4KRandom: random aligned 4 KiB reads, O_DIRECT, 32 goroutines.
func BenchmarkRead4KRandom(b *testing.B) { benchRandomReads(b, 4096, Options{}) }

// BenchmarkRead1MRandom: random aligned 1 MiB reads, O_DIRECT, 32 goroutines.
func BenchmarkRead1MRandom(b *testing.B) { benchRandomReads(b, 1<<20, Options{}) }

// BenchmarkReadBatch4K: 64 random 4 KiB reads per ReadBatch, one goroutine.
func BenchmarkReadBatch4K(b *testing.B) {
	e, ids := benchEngine(b, Options{})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	reqs := make([]ReadReq, 64)
	for i := range reqs {
		reqs[i].Dst = uring.AlignedBuffer(4096)
	}
	b.SetBytes(64 * 4096)
	b.ResetTimer()
	for b.Loop() {
		for i := range reqs {
			reqs[i].ID = ids[rng.IntN(len(ids))]
			reqs[i].Off = rng.Int64N(DefaultMaxChunkSize/4096) * 4096
		}
		if err := e.ReadBatch(ctx, reqs); err != nil {
			b.Fatal(err)
		}
		for i := range reqs {
			if reqs[i].Err != nil || reqs[i].N != 4096 {
				b.Fatal(reqs[i].Err)
			}
		}
	}
}

// BenchmarkAppend1M: durable 1 MiB appends, four per 4 MiB chunk, from one
// goroutine (every append waits for its fdatasync and KV commit).
func BenchmarkAppend1M(b *testing.B) { benchAppends(b, 1) }

// BenchmarkAppend1MParallel: the same from 8 goroutines on different
// chunks, so data syncs overlap and KV commits share fsyncs.
func BenchmarkAppend1MParallel(b *testing.B) { benchAppends(b, 8) }

func benchAppends(b *testing.B, par int) {
	e := openEngine(b, b.TempDir(), Options{MaxChunkSize: DefaultMaxChunkSize})
	ctx := context.Background()
	data := pattern(3, 1<<20)
	var next atomic.Uint64
	b.SetBytes(1 << 20)
	b.SetParallelism(max(1, par/2))
	if par == 1 {
		for i := 0; b.Loop(); i++ {
			id := ChunkID{Ino: 2, Index: uint32(i / 4)}
			if _, err := e.Write(ctx, id, int64(i%4)<<20, data); err != nil {
				b.Fatal(err)
			}
		}
		return
	}
	b.RunParallel(func(pb *testing.PB) {
		ino := 100 + next.Add(1)
		for i := 0; pb.Next(); i++ {
			id := ChunkID{Ino: ino, Index: uint32(i / 4)}
			if _, err := e.Write(ctx, id, int64(i%4)<<20, data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReplace4M: whole-chunk replaces of 4 MiB (resync's and
// repair's write), 1, 4 and 16 at once.
func BenchmarkReplace4M(b *testing.B) {
	for _, par := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("par%d", par), func(b *testing.B) {
			e := openEngine(b, b.TempDir(), Options{MaxChunkSize: DefaultMaxChunkSize})
			ctx := context.Background()
			data := pattern(4, DefaultMaxChunkSize)
			var next atomic.Uint32
			b.SetBytes(DefaultMaxChunkSize)
			b.SetParallelism(max(1, par/runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := ChunkID{Ino: 5, Index: next.Add(1)}
					if err := e.Replace(ctx, id, 1, data); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
