package chunkengine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fff/internal/crc32c"
	"os"
	"strings"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

func sampleRecords() []*record {
	return []*record{
		{version: 1},
		{version: 7, gen: 3, length: 1, high: 1, crcs: []uint32{0xdeadbeef}},
		{version: 2, gen: 9, length: BlockSize, high: 3 * BlockSize, crcs: []uint32{1}},
		{version: 1 << 40, gen: 1 << 50, length: 3*BlockSize + 5, high: 3*BlockSize + 5, crcs: []uint32{1, 2, 3, 4}},
	}
}

// TestRecordRoundTrip: encode/decode round trip, and every truncation and
// every single-bit flip of a valid record is rejected.
func TestRecordRoundTrip(t *testing.T) {
	for _, r := range sampleRecords() {
		b := r.encode()
		got, err := decodeRecord(b)
		if err != nil || got.version != r.version || got.gen != r.gen || got.length != r.length ||
			got.high != r.high || !slicesEqual(got.crcs, r.crcs) {
			t.Fatalf("round trip of %+v: %+v, %v", r, got, err)
		}
		for n := range len(b) {
			if _, err := decodeRecord(b[:n]); !errors.Is(err, errBadRecord) {
				t.Fatalf("truncated to %d: %v", n, err)
			}
		}
		for i := range len(b) * 8 {
			c := bytes.Clone(b)
			c[i/8] ^= 1 << (i % 8)
			if _, err := decodeRecord(c); !errors.Is(err, errBadRecord) {
				t.Fatalf("bit %d flipped: %v", i, err)
			}
		}
	}
}

func slicesEqual(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzDecodeMeta: the metadata record decoder rejects damaged input with an
// error and never panics; what it accepts re-encodes to the same bytes.
func FuzzDecodeMeta(f *testing.F) {
	for _, r := range sampleRecords() {
		f.Add(r.encode())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(b []byte) {
			r, err := decodeRecord(b)
			if err != nil {
				if !errors.Is(err, errBadRecord) {
					t.Fatalf("error not wrapping errBadRecord: %v", err)
				}
				return
			}
			if !bytes.Equal(r.encode(), b) {
				t.Fatalf("accepted record does not re-encode to its input")
			}
			if int64(len(r.crcs)) != nblocks(r.length) || r.high < r.length || r.version == 0 {
				t.Fatalf("accepted an inconsistent record %+v", r)
			}
		}
		check(b)
		// The same bytes with a correct record checksum, so the fuzzer
		// also explores the field checks behind it.
		if len(b) >= 4 {
			c := bytes.Clone(b)
			end := len(c) - 4
			binary.LittleEndian.PutUint32(c[end:], crc32c.Checksum(c[:end]))
			check(c)
		}
	})
}

// TestBufferedFallback: on tmpfs O_DIRECT is not used; the engine says so,
// warns, and works in buffered mode.
func TestBufferedFallback(t *testing.T) {
	var st unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &st); err != nil || st.Type != unix.TMPFS_MAGIC {
		t.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "chunkengine-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var logs bytes.Buffer
	e := openEngine(t, dir, Options{Logger: zerolog.New(&logs)})
	if e.Direct() {
		t.Fatal("Direct() = true on tmpfs")
	}
	if !strings.Contains(logs.String(), "O_DIRECT") || !strings.Contains(logs.String(), `"level":"warn"`) {
		t.Fatalf("no O_DIRECT warning logged: %q", logs.String())
	}
	ctx := context.Background()
	id := ChunkID{Ino: 1}
	var model []byte
	for i, w := range []struct {
		off int64
		n   int
	}{{0, 5000}, {5000, 3000}, {100, 10}, {20000, 1}} {
		d := pattern(uint64(i), w.n)
		mustWrite(t, e, id, w.off, d)
		model = applyWrite(model, w.off, d)
	}
	if _, err := e.Truncate(ctx, id, 7000); err != nil {
		t.Fatal(err)
	}
	model = applyTruncate(model, 7000)
	checkChunk(t, e, id, model, 5)
	e.Close()
	e = openEngine(t, dir, Options{})
	checkChunk(t, e, id, model, 5)
}
