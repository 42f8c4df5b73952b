package ffrecord

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"runtime"
	"testing"

	"fff/internal/crc32c"
)

// TestHeaderClaimsChecked: a header or footer whose sample count does not
// fit in the file is a typed corrupt error naming the file, found before
// the count sizes any allocation (a v1 header claiming 10^10 samples once
// made the reader allocate 120 GB and abort the process).
func TestHeaderClaimsChecked(t *testing.T) {
	const n = 10_000_000_000
	v1 := func(count uint64, withCRC bool) []byte {
		b := make([]byte, 4096)
		binary.LittleEndian.PutUint64(b[4:], count)
		if withCRC {
			binary.LittleEndian.PutUint32(b[0:], crc32.ChecksumIEEE(b[4:]))
		}
		return b
	}
	v2 := func(count uint64) []byte {
		var mf memFile
		w, err := NewWriter(&mf, WriterOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := w.Write([]byte("sample")); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b := mf.b
		f := b[len(b)-v2FooterSize:]
		binary.LittleEndian.PutUint64(f[0:], count)
		binary.LittleEndian.PutUint32(f[52:], crc32c.Checksum(f[:52])) // a consistent, crafted footer
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"v1 claims 1e10, no meta crc", v1(n, false)},
		{"v1 claims 1e10, meta crc", v1(n, true)},
		{"v1 claims 2^63-1", v1(1<<63-1, false)},
		{"v1 claims 2^64-1 (negative as int64)", v1(1<<64-1, false)},
		{"v2 footer claims 1e10", v2(n)},
		{"v2 footer claims 2^64-1", v2(1<<64 - 1)},
		{"v2 footer claims (2^64)/20+1: n*20 wraps", v2((1<<64-1)/v2EntrySize + 1)},
	} {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Open(context.Background(), []Source{{Name: "crafted.ffr", R: bytes.NewReader(tc.b), Size: int64(len(tc.b))}}, ReaderOptions{})
		runtime.ReadMemStats(&after)
		var fe *Error
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTruncated) {
			t.Errorf("%s: %v, want a corrupt or truncated file error", tc.name, err)
		} else if !errors.As(err, &fe) || fe.File != "crafted.ffr" {
			t.Errorf("%s: %v does not name the file", tc.name, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Errorf("%s: opening allocated %d bytes", tc.name, grew)
		}
	}
}
