package chunkengine

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"fff/internal/uring"
)

const testChunk = 1 << 20

func openEngine(t testing.TB, dir string, opts Options) *Engine {
	t.Helper()
	if opts.MaxChunkSize == 0 {
		opts.MaxChunkSize = testChunk
	}
	e, err := Open(context.Background(), dir, opts)
	if err != nil {
		if errors.Is(err, uring.ErrUnavailable) {
			t.Skipf("io_uring unavailable: %v", err)
		}
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// pattern returns n deterministic pseudo-random bytes for seed.
func pattern(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// misaligned returns an n-byte slice whose address is not 4 KiB-aligned.
func misaligned(n int) []byte {
	b := uring.AlignedBuffer(n + 1 + uring.Align)
	return b[1 : 1+n]
}

func mustWrite(t testing.TB, e *Engine, id ChunkID, off int64, data []byte) uint64 {
	t.Helper()
	v, err := e.Write(context.Background(), id, off, data)
	if err != nil {
		t.Fatalf("Write(%v, %d, %d bytes): %v", id, off, len(data), err)
	}
	return v
}

// readAll reads the whole chunk (up to the engine's chunk size limit).
func readAll(t testing.TB, e *Engine, id ChunkID) ([]byte, uint64) {
	t.Helper()
	dst := uring.AlignedBuffer(int(e.MaxChunkSize()) + BlockSize)
	n, v, err := e.Read(context.Background(), id, 0, dst)
	if err != nil {
		t.Fatalf("Read(%v): %v", id, err)
	}
	return dst[:n], v
}

func checkChunk(t testing.TB, e *Engine, id ChunkID, want []byte, wantVersion uint64) {
	t.Helper()
	got, v := readAll(t, e, id)
	if !bytes.Equal(got, want) {
		t.Fatalf("chunk %v: content differs from model: got %d bytes, want %d; first difference at %d",
			id, len(got), len(want), firstDiff(got, want))
	}
	if wantVersion != 0 && v != wantVersion {
		t.Fatalf("chunk %v: version %d, want %d", id, v, wantVersion)
	}
	info, err := e.Stat(context.Background(), id)
	if err != nil || info.Length != int64(len(want)) || (wantVersion != 0 && info.Version != wantVersion) {
		t.Fatalf("Stat(%v) = %+v, %v; want length %d version %d", id, info, err, len(want), wantVersion)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// applyWrite is the model of Write.
func applyWrite(model []byte, off int64, data []byte) []byte {
	if len(data) == 0 {
		return model
	}
	end := int(off) + len(data)
	if end > len(model) {
		model = append(model, make([]byte, end-len(model))...)
	}
	copy(model[off:], data)
	return model
}

// applyTruncate is the model of Truncate.
func applyTruncate(model []byte, length int64) []byte {
	if int(length) <= len(model) {
		return model[:length]
	}
	return append(model, make([]byte, int(length)-len(model))...)
}
