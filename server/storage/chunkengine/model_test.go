package chunkengine

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"
)

// TestRandomModel runs random writes, truncates, removes and reads on a few
// chunks and compares every chunk with an in-memory model after every step,
// reopening the engine now and then.
func TestRandomModel(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts Options
		ops  int
	}{{"direct", Options{MaxChunkSize: 64 << 10}, 700}, {"buffered", Options{MaxChunkSize: 64 << 10, NoDirect: true}, 300}} {
		t.Run(mode.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			e := openEngine(t, dir, mode.opts)
			limit := mode.opts.MaxChunkSize
			rng := rand.New(rand.NewPCG(42, uint64(len(mode.name))))
			ids := []ChunkID{{1, 0}, {1, 1}, {2, 0}, {3, 7}}
			model := map[ChunkID][]byte{}
			vers := map[ChunkID]uint64{}
			randSize := func() int64 {
				switch rng.IntN(4) {
				case 0:
					return rng.Int64N(16) + 1
				case 1:
					return BlockSize * (rng.Int64N(3) + 1)
				default:
					return rng.Int64N(3*BlockSize) + 1
				}
			}
			for step := range mode.ops {
				id := ids[rng.IntN(len(ids))]
				m, exists := model[id]
				L := int64(len(m))
				switch k := rng.IntN(100); {
				case k < 35: // append (sometimes with a gap)
					off := L
					if rng.IntN(4) == 0 {
						off += rng.Int64N(2 * BlockSize)
					}
					n := min(randSize(), limit-off)
					if n <= 0 {
						continue
					}
					data := pattern(uint64(step), int(n))
					v := mustWrite(t, e, id, off, data)
					model[id] = applyWrite(m, off, data)
					vers[id]++
					if v != vers[id] {
						t.Fatalf("step %d: version %d, want %d", step, v, vers[id])
					}
				case k < 60: // overwrite anywhere
					off := rng.Int64N(limit)
					if L > 0 && rng.IntN(3) > 0 {
						off = rng.Int64N(L)
					}
					n := min(randSize(), limit-off)
					data := pattern(uint64(step), int(n))
					v := mustWrite(t, e, id, off, data)
					model[id] = applyWrite(m, off, data)
					vers[id]++
					if v != vers[id] {
						t.Fatalf("step %d: version %d, want %d", step, v, vers[id])
					}
				case k < 80: // truncate
					if !exists {
						continue
					}
					n := rng.Int64N(limit + 1)
					if rng.IntN(2) == 0 && L > 0 {
						n = rng.Int64N(L + 1)
					}
					v, err := e.Truncate(ctx, id, n)
					if err != nil {
						t.Fatalf("step %d: truncate %v to %d: %v", step, id, n, err)
					}
					model[id] = applyTruncate(m, n)
					vers[id]++
					if v != vers[id] {
						t.Fatalf("step %d: version %d, want %d", step, v, vers[id])
					}
				case k < 84: // remove
					if !exists {
						continue
					}
					if err := e.Remove(ctx, id); err != nil {
						t.Fatalf("step %d: remove: %v", step, err)
					}
					delete(model, id)
					delete(vers, id)
				case k < 86: // reopen
					if err := e.Close(); err != nil {
						t.Fatal(err)
					}
					e = openEngine(t, dir, mode.opts)
				default: // random reads of the chunk
					if !exists {
						continue
					}
					for range 4 {
						off := rng.Int64N(L + BlockSize)
						n := int(rng.Int64N(3 * BlockSize))
						dst := misaligned(n)
						if rng.IntN(2) == 0 {
							dst = make([]byte, n)
						}
						got, v, err := e.Read(ctx, id, off, dst)
						want := m[min(off, L):min(off+int64(n), L)]
						if err != nil || v != vers[id] || !bytes.Equal(dst[:got], want) {
							t.Fatalf("step %d: read %v [%d,+%d): n=%d v=%d err=%v (want %d bytes, v%d)",
								step, id, off, n, got, v, err, len(want), vers[id])
						}
					}
				}
				if m, ok := model[id]; ok {
					checkChunk(t, e, id, m, vers[id])
				}
			}
			for _, id := range ids {
				if m, ok := model[id]; ok {
					checkChunk(t, e, id, m, vers[id])
				}
			}
		})
	}
}
