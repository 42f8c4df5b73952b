package chunkengine

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
)

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		b[0] = 0 // beyond the end: extend
	}
	b[0] ^= 0x5A
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func damageRecord(t *testing.T, e *Engine, id ChunkID) {
	t.Helper()
	key := chunkKey(id)
	err := e.db.Update(context.Background(), func(tx kv.Txn) error {
		v, err := tx.Get(key)
		if err != nil || v == nil {
			return errors.New("no record")
		}
		v[len(v)/2] ^= 1
		return tx.Set(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.meta.drop(id)
}

func TestCorruption(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []struct {
		name string
		opts Options
	}{{"direct", Options{}}, {"buffered", Options{NoDirect: true}}} {
		t.Run(mode.name, func(t *testing.T) {
			e := openEngine(t, t.TempDir(), mode.opts)
			id := ChunkID{Ino: 5, Index: 1}
			const length = 5*BlockSize + 1000
			data := pattern(9, length)
			mustWrite(t, e, id, 0, data)
			path := e.filePath(id, mustRecord(t, e, id).gen)

			flipByte(t, path, 2*BlockSize+17)
			read := func(off int64, n int) (int, error) {
				dst := misaligned(n)
				for i := range dst {
					dst[i] = 0xEE
				}
				got, _, err := e.Read(ctx, id, off, dst)
				if err == nil && !bytes.Equal(dst[:got], data[off:off+int64(got)]) {
					t.Fatalf("Read(%d, %d): wrong bytes without an error", off, n)
				}
				if err != nil && (got != 0 || bytes.ContainsFunc(dst, func(r rune) bool { return r != 0 })) {
					t.Fatalf("Read(%d, %d) failed but delivered %d bytes / left non-zero bytes", off, n, got)
				}
				return got, err
			}
			for _, r := range [][2]int64{{2 * BlockSize, BlockSize}, {2*BlockSize + 100, 10}, {0, length}, {BlockSize + 4000, 200}} {
				_, err := read(r[0], int(r[1]))
				if !errors.Is(err, proto.ErrChecksumMismatch) || !strings.Contains(err.Error(), "block 2 ") ||
					!strings.Contains(err.Error(), id.String()) {
					t.Fatalf("Read(%d, %d) of a damaged block: %v", r[0], r[1], err)
				}
				if proto.CodeOf(err) != proto.ChecksumMismatch {
					t.Fatalf("code %v", proto.CodeOf(err))
				}
			}
			for _, r := range [][2]int64{{0, 2 * BlockSize}, {3 * BlockSize, 3 * BlockSize}, {100, 4000}, {5 * BlockSize, 1000}} {
				if n, err := read(r[0], int(r[1])); err != nil || n != int(min(r[1], length-r[0])) {
					t.Fatalf("Read(%d, %d) of good blocks: %d, %v", r[0], r[1], n, err)
				}
			}

			// A partial overwrite of the damaged block must not launder it.
			if _, err := e.Write(ctx, id, 2*BlockSize+10, []byte("xy")); !errors.Is(err, proto.ErrChecksumMismatch) {
				t.Fatalf("partial overwrite of a damaged block: %v", err)
			}
			// Overwriting the whole block repairs the chunk.
			fix := data[2*BlockSize : 3*BlockSize]
			if _, err := e.Write(ctx, id, 2*BlockSize, fix); err != nil {
				t.Fatalf("whole-block overwrite of a damaged block: %v", err)
			}
			checkChunk(t, e, id, data, 2)

			// Damage beyond the committed length is harmless.
			path = e.filePath(id, mustRecord(t, e, id).gen)
			flipByte(t, path, length+5)
			flipByte(t, path, length+3*BlockSize)
			checkChunk(t, e, id, data, 2)
			// ...also when the chunk is then appended to in place.
			mustWrite(t, e, id, length, []byte("tail"))
			checkChunk(t, e, id, append(bytes.Clone(data), "tail"...), 3)

			// Damage in the last, partial block.
			flipByte(t, path, length-1)
			if _, err := read(5*BlockSize, 10); !errors.Is(err, proto.ErrChecksumMismatch) {
				t.Fatalf("damaged last block: %v", err)
			}
			if _, err := e.Truncate(ctx, id, length-1); !errors.Is(err, proto.ErrChecksumMismatch) {
				t.Fatalf("truncate into a damaged block: %v", err)
			}
			// A missing data file is reported, not silently read as empty.
			os.Remove(path)
			e.retire(id, mustRecord(t, e, id).gen)
			if _, err := read(0, 10); !errors.Is(err, proto.ErrChecksumMismatch) {
				t.Fatalf("read with the data file gone: %v", err)
			}
		})
	}
}
