package chunkengine

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentIndependent: many goroutines, each writing and reading its
// own chunks.
func TestConcurrentIndependent(t *testing.T) {
	ctx := context.Background()
	e := openEngine(t, t.TempDir(), Options{MaxChunkSize: 128 << 10, MaxOpenFiles: 16, CacheBytes: 4096})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			ids := []ChunkID{{Ino: uint64(100 + w), Index: 0}, {Ino: uint64(100 + w), Index: 1}}
			models := make([][]byte, len(ids))
			for step := range 60 {
				i := rng.IntN(len(ids))
				id := ids[i]
				L := int64(len(models[i]))
				switch rng.IntN(4) {
				case 0, 1:
					off := L
					if L > 0 && rng.IntN(2) == 0 {
						off = rng.Int64N(L)
					}
					data := pattern(uint64(w*1000+step), 1+rng.IntN(10000))
					if off+int64(len(data)) > 128<<10 {
						off = 0
					}
					if _, err := e.Write(ctx, id, off, data); err != nil {
						t.Errorf("write: %v", err)
						return
					}
					models[i] = applyWrite(models[i], off, data)
				case 2:
					if L == 0 {
						continue
					}
					n := rng.Int64N(L)
					if _, err := e.Truncate(ctx, id, n); err != nil {
						t.Errorf("truncate: %v", err)
						return
					}
					models[i] = applyTruncate(models[i], n)
				case 3:
					dst := misaligned(int(L) + 10)
					n, _, err := e.Read(ctx, id, 0, dst)
					if L > 0 && (err != nil || !bytes.Equal(dst[:n], models[i])) {
						t.Errorf("read %v: n=%d err=%v, want %d bytes", id, n, err, L)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestConcurrentSameChunk: readers race writers on the same chunks. Every
// read must return exactly the bytes of the version it reports. Writers of
// one chunk are serialized: their versions are consecutive, and replaying
// the writes in version order gives the final content.
func TestConcurrentSameChunk(t *testing.T) {
	ctx := context.Background()
	const limit = 128 << 10
	e := openEngine(t, t.TempDir(), Options{MaxChunkSize: limit, MaxOpenFiles: 8, CacheBytes: 8192})

	type chunk struct {
		id       ChunkID
		mu       sync.Mutex
		versions sync.Map // version -> []byte content
	}
	chunks := make([]*chunk, 3)
	for i := range chunks {
		c := &chunk{id: ChunkID{Ino: 9, Index: uint32(i)}}
		c.versions.Store(uint64(1), pattern(uint64(i), 5000))
		mustWrite(t, e, c.id, 0, pattern(uint64(i), 5000))
		chunks[i] = c
	}
	var writersDone atomic.Bool
	var reads atomic.Int64
	var readers, writers sync.WaitGroup

	// One model-keeping writer per chunk: it publishes a version's content
	// before committing it, so a reader can always look the version up.
	for ci, c := range chunks {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(ci), 2))
			model := pattern(uint64(ci), 5000)
			ver := uint64(1)
			for step := range 120 {
				L := int64(len(model))
				var next []byte
				var op func() (uint64, error)
				switch k := rng.IntN(10); {
				case k < 4: // append
					data := pattern(uint64(ci*10000+step), 1+rng.IntN(3*BlockSize))
					if L+int64(len(data)) > limit {
						continue
					}
					next = applyWrite(bytes.Clone(model), L, data)
					op = func() (uint64, error) { return e.Write(ctx, c.id, L, data) }
				case k < 7: // overwrite (copy-on-write)
					if L == 0 {
						continue
					}
					off := rng.Int64N(L)
					data := pattern(uint64(ci*10000+step), 1+rng.IntN(2*BlockSize))
					if off+int64(len(data)) > limit {
						continue
					}
					next = applyWrite(bytes.Clone(model), off, data)
					op = func() (uint64, error) { return e.Write(ctx, c.id, off, data) }
				case k < 9: // shrink
					n := rng.Int64N(L + 1)
					next = applyTruncate(bytes.Clone(model), n)
					op = func() (uint64, error) { return e.Truncate(ctx, c.id, n) }
				default: // grow
					n := min(limit, L+rng.Int64N(2*BlockSize))
					next = applyTruncate(bytes.Clone(model), n)
					op = func() (uint64, error) { return e.Truncate(ctx, c.id, n) }
				}
				c.versions.Store(ver+1, next)
				v, err := op()
				if err != nil || v != ver+1 {
					t.Errorf("chunk %v step %d: version %d, %v; want %d", c.id, step, v, err, ver+1)
					return
				}
				ver, model = v, next
			}
		})
	}
	for r := range 6 {
		readers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 3))
			for !writersDone.Load() {
				c := chunks[rng.IntN(len(chunks))]
				off := rng.Int64N(limit / 2)
				if rng.IntN(3) == 0 {
					off = 0
				}
				n := 1 + rng.IntN(6*BlockSize)
				dst := misaligned(n)
				if rng.IntN(2) == 0 {
					dst = make([]byte, n)
				}
				got, v, err := e.Read(ctx, c.id, off, dst)
				if err != nil {
					t.Errorf("read %v: %v", c.id, err)
					return
				}
				x, ok := c.versions.Load(v)
				if !ok {
					t.Errorf("read %v returned unknown version %d", c.id, v)
					return
				}
				want := x.([]byte)
				want = want[min(off, int64(len(want))):min(off+int64(n), int64(len(want)))]
				if !bytes.Equal(dst[:got], want) {
					t.Errorf("read %v [%d,+%d) version %d: %d bytes, want %d; differ at %d",
						c.id, off, n, v, got, len(want), firstDiff(dst[:got], want))
					return
				}
				reads.Add(1)
			}
		})
	}
	// Several writers on one chunk at once: serialized, consecutive versions.
	shared := ChunkID{Ino: 10}
	type done struct {
		v   uint64
		off int64
		d   []byte
	}
	var dmu sync.Mutex
	var log []done
	var sw sync.WaitGroup
	for w := range 4 {
		sw.Go(func() {
			for i := range 25 {
				off := int64((w*25+i)%20) * 3000
				d := pattern(uint64(w*100+i), 5000)
				v, err := e.Write(ctx, shared, off, d)
				if err != nil {
					t.Errorf("shared write: %v", err)
					return
				}
				dmu.Lock()
				log = append(log, done{v, off, d})
				dmu.Unlock()
			}
		})
	}
	sw.Wait()
	writers.Wait()
	writersDone.Store(true)
	readers.Wait()

	sort.Slice(log, func(i, j int) bool { return log[i].v < log[j].v })
	var model []byte
	for i, d := range log {
		if d.v != uint64(i+1) {
			t.Fatalf("shared chunk versions not consecutive: %d at %d", d.v, i)
		}
		model = applyWrite(model, d.off, d.d)
	}
	checkChunk(t, e, shared, model, uint64(len(log)))
	t.Logf("%d verified concurrent reads, %d re-planned after a concurrent commit", reads.Load(), e.Stats().ReadRetries)
}
