package libfff

import (
	"bytes"
	"slices"
	"testing"

	"fff/internal/crc32c"
	"fff/internal/proto"
)

// TestPlanLocal: a location is used only when it describes exactly the
// blocks the IO needs; the read covers whole blocks from the IO's first.
func TestPlanLocal(t *testing.T) {
	crcs := func(n int) []uint32 { return make([]uint32, n) }
	for _, tc := range []struct {
		name    string
		io      proto.ReadIO
		loc     proto.ChunkLocation
		ok      bool
		lo, end int64
		need    int
	}{
		{"aligned", proto.ReadIO{Off: 4096, Len: 8192}, proto.ChunkLocation{Length: 1 << 20, BlockSize: 4096, FirstBlock: 1, CRCs: crcs(2)}, true, 4096, 12288, 8192},
		{"misaligned", proto.ReadIO{Off: 5000, Len: 100}, proto.ChunkLocation{Length: 1 << 20, BlockSize: 4096, FirstBlock: 1, CRCs: crcs(1)}, true, 4096, 5100, 4096},
		{"ends in the last block", proto.ReadIO{Off: 0, Len: 8192}, proto.ChunkLocation{Length: 5000, BlockSize: 4096, CRCs: crcs(2)}, true, 0, 5000, 5000},
		{"wrong first block", proto.ReadIO{Off: 4096, Len: 10}, proto.ChunkLocation{Length: 1 << 20, BlockSize: 4096, FirstBlock: 0, CRCs: crcs(1)}, false, 0, 0, 0},
		{"too few checksums", proto.ReadIO{Off: 0, Len: 8192}, proto.ChunkLocation{Length: 1 << 20, BlockSize: 4096, CRCs: crcs(1)}, false, 0, 0, 0},
		{"block smaller than the O_DIRECT alignment", proto.ReadIO{Off: 0, Len: 512}, proto.ChunkLocation{Length: 1 << 20, BlockSize: 512, CRCs: crcs(1)}, false, 0, 0, 0},
		{"block not a power of two", proto.ReadIO{Off: 0, Len: 100}, proto.ChunkLocation{Length: 1 << 20, BlockSize: 3 * 4096, CRCs: crcs(1)}, false, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			end := min(int64(tc.io.Off)+int64(tc.io.Len), int64(tc.loc.Length))
			j, ok := planLocal(tc.io, &tc.loc, end)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if ok && (j.lo != tc.lo || j.end != tc.end || j.need != tc.need) {
				t.Fatalf("lo, end, need = %d, %d, %d; want %d, %d, %d", j.lo, j.end, j.need, tc.lo, tc.end, tc.need)
			}
		})
	}
}

// TestSumRanges: each seg is summed over its bytes in the read buffer,
// up to the first that reaches past the committed length (its zeros are not
// in the buffer).
func TestSumRanges(t *testing.T) {
	for _, tc := range []struct {
		name     string
		off, end int64
		sizes    []int
		want     []crc32c.Range
	}{
		{"one seg", 904, 5000, []int{100}, []crc32c.Range{{Off: 904, Len: 100}}},
		{"back to back", 10, 1 << 20, []int{5, 7, 0, 9}, []crc32c.Range{{Off: 10, Len: 5}, {Off: 15, Len: 7}, {Off: 22, Len: 0}, {Off: 22, Len: 9}}},
		{"up to the length", 0, 12, []int{5, 7}, []crc32c.Range{{Off: 0, Len: 5}, {Off: 5, Len: 7}}},
		{"past the length", 0, 11, []int{5, 7, 3}, []crc32c.Range{{Off: 0, Len: 5}}},
		{"all past", 100, 50, []int{5}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var segs []*seg
			for _, n := range tc.sizes {
				segs = append(segs, &seg{dst: make([]byte, n)})
			}
			if got := sumRanges(nil, segs, tc.off, tc.end); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDeliver: segs get the data in order, and zeros from the end on.
func TestDeliver(t *testing.T) {
	buf := []byte("xxABCDEFGHIJ") // chunk bytes 100..111
	for _, tc := range []struct {
		name      string
		off, end  int64
		sizes     []int
		want      string
		dataBytes int
	}{
		{"two segs", 102, 112, []int{4, 6}, "ABCDEFGHIJ", 10},
		{"ends inside the second", 102, 108, []int{4, 6}, "ABCDEF\x00\x00\x00\x00", 6},
		{"ends before the second", 102, 104, []int{4, 3}, "AB\x00\x00\x00\x00\x00", 2},
		{"a hole", 0, 0, []int{3}, "\x00\x00\x00", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var segs []*seg
			for _, n := range tc.sizes {
				segs = append(segs, &seg{dst: bytes.Repeat([]byte{0xEE}, n)})
			}
			deliver(segs, tc.off, tc.end, buf, 100)
			var got []byte
			for _, s := range segs {
				got = append(got, s.dst...)
			}
			if string(got) != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
