package libfff

import (
	"errors"
	"math"
	"math/big"
	"testing"

	"fff/internal/proto"
)

// FuzzPlacement checks the chunk math over any (offset, length, chunk
// size, stripe): the limit check accepts exactly the ranges inside
// [0, MaxFileSize] (computed here in big integers, so overflow cannot
// hide), and an accepted range splits into pieces that cover exactly
// [off, off+n), stay inside their chunks, and route to a chunk index that
// the wire carries unchanged. A rejected range gives no pieces.
func FuzzPlacement(f *testing.F) {
	seeds := []struct {
		off, n int64
		shift  uint8
		stripe uint8
	}{
		{0, 1, 12, 1},
		{4095, 2, 12, 3},
		{proto.MaxFileSize - 1, 1, 12, 1},
		{proto.MaxFileSize, 1, 12, 1},
		{proto.MaxFileSize - 4096, 8192, 12, 2},
		{1 << 32 * 4096, 10, 12, 5},
		{math.MaxInt64, 1, 22, 4},
		{math.MaxInt64 - 10, 20, 26, 7},
		{-1, 10, 20, 1},
		{10, -1, 20, 1},
		{1 << 62, 1 << 62, 22, 1},
	}
	for _, s := range seeds {
		f.Add(s.off, s.n, s.shift, s.stripe)
	}
	ri := testRouting()
	f.Fuzz(func(t *testing.T, off, n int64, shift, stripe uint8) {
		cs := uint32(1) << (12 + shift%15) // 4 KiB .. 64 MiB, as meta allows
		sum := new(big.Int).Add(big.NewInt(off), big.NewInt(n))
		inside := off >= 0 && n >= 0 && sum.Cmp(big.NewInt(proto.MaxFileSize)) <= 0
		err := proto.CheckFileRange(off, n)
		if (err == nil) != inside {
			t.Fatalf("CheckFileRange(%d, %d) = %v, inside = %v", off, n, err, inside)
		}
		if err != nil {
			want := proto.ErrFileTooLarge
			if off < 0 || n < 0 {
				want = proto.ErrInvalid
			}
			if !errors.Is(err, want) {
				t.Fatalf("CheckFileRange(%d, %d) = %v, want %v", off, n, err, want)
			}
			// splitRange takes an int length: on 64-bit, any int64.
			if ps := splitRange(cs, off, int(n)); ps != nil {
				t.Fatalf("splitRange(%d, %d, %d) of a rejected range = %v", cs, off, n, ps)
			}
			return
		}
		// Split at most a few thousand pieces; the offset, not the
		// length, is what could wrap.
		n = min(n, 64*int64(cs))
		ps := splitRange(cs, off, int(n))
		l := &proto.Layout{ChunkSize: cs, Stripe: uint32(stripe%8) + 1}
		for range l.Stripe {
			l.Chains = append(l.Chains, 1)
		}
		pos := int64(0)
		for _, p := range ps {
			if int64(p.pos) != pos || p.n == 0 || uint64(p.off)+uint64(p.n) > uint64(cs) {
				t.Fatalf("piece %+v at pos %d (chunk size %d)", p, pos, cs)
			}
			if got := p.index*uint64(cs) + uint64(p.off); got != uint64(off+pos) {
				t.Fatalf("piece %+v starts at file offset %d, want %d", p, got, off+pos)
			}
			r, err := writeRoute(ri, l, 7, p.index)
			if err != nil || uint64(r.ref.Index) != p.index {
				t.Fatalf("route of chunk %d: %v, %v", p.index, r.ref, err)
			}
			pos += int64(p.n)
		}
		if pos != n {
			t.Fatalf("pieces cover %d bytes of [%d, %d+%d)", pos, off, off, n)
		}
	})
}

// TestRouteRefusesWideIndex: an index that does not fit the wire's uint32
// is refused, not truncated onto chunk index mod 2^32.
func TestRouteRefusesWideIndex(t *testing.T) {
	ri := testRouting()
	l := &proto.Layout{ChunkSize: 4096, Stripe: 1, Chains: []uint32{1}}
	for _, index := range []uint64{1 << 32, 1<<32 + 1, math.MaxUint64} {
		if _, err := writeRoute(ri, l, 7, index); !errors.Is(err, proto.ErrFileTooLarge) {
			t.Errorf("writeRoute(index %d) = %v, want EFBIG", index, err)
		}
		if _, err := readRoute(ri, l, 7, index, 0, nil); !errors.Is(err, proto.ErrFileTooLarge) {
			t.Errorf("readRoute(index %d) = %v, want EFBIG", index, err)
		}
	}
}
