// Package crc32c is the CRC32C (Castagnoli) checksum every layer of fff uses —
// chunk blocks, FFRecord v2 samples and metadata — plus what hash/crc32 lacks:
// combining the checksums of two byte strings into the checksum of their
// concatenation without touching the bytes, and checking a run of
// fixed-size blocks while summing arbitrary ranges of them in the same pass.
//
// The combine is the GF(2) polynomial arithmetic zlib's crc32_combine uses:
// appending n bytes to a message multiplies its CRC register by x^(8n)
// modulo the CRC polynomial, and the checksum is linear in the message, so
// crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B) (the pre- and post-inversion cancel).
package crc32c

import (
	"hash/crc32"
)

// poly is the reflected Castagnoli polynomial.
const poly = 0x82f63b78

// table is hash/crc32's Castagnoli table (hardware-accelerated where the
// CPU has CRC32 instructions); read-only after initialization.
var table = crc32.MakeTable(crc32.Castagnoli)

// x2n[k] is x^(2^k) modulo poly, for every k xPow8n can reach with a
// non-negative int64 length; read-only after initialization.
var x2n = func() (t [3 + 63]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = multModP(p, p)
	}
	return t
}()

// Checksum returns the CRC32C of b.
func Checksum(b []byte) uint32 { return crc32.Checksum(b, table) }

// Update returns the CRC32C of the bytes crc covers followed by b.
func Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, table, b) }

// Combine returns the CRC32C of A‖B given crcA = Checksum(A), crcB =
// Checksum(B) and lenB = len(B). It costs O(log lenB), not a pass over B.
func Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 || crcA == 0 { // 0·x^n = 0: A's register adds nothing
		return crcA ^ crcB
	}
	return multModP(xPow8n(uint64(lenB)), crcA) ^ crcB
}

// multModP returns a·b modulo poly (bit-reflected: bit 31 is x^0).
func multModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ poly
		} else {
			b >>= 1
		}
	}
	return p
}

// xPow8n returns x^(8n) modulo poly.
func xPow8n(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; n, k = n>>1, k+1 {
		if n&1 != 0 {
			p = multModP(x2n[k], p)
		}
	}
	return p
}

// shifter combines with a fixed length at the cost of four table lookups:
// it multiplies by x^(8n) through a precomputed table per byte of the
// register. Worth it where one length recurs (a block size).
type shifter struct {
	t [4][256]uint32
}

// newShifter returns a shifter for appending n bytes.
func newShifter(n int64) *shifter {
	s := &shifter{}
	op := xPow8n(uint64(n))
	for byteIdx := range 4 {
		for v := range 256 {
			s.t[byteIdx][v] = multModP(op, uint32(v)<<(8*byteIdx))
		}
	}
	return s
}

// combine returns Combine(crcA, crcB, n) for the n the shifter was made for.
func (s *shifter) combine(crcA, crcB uint32) uint32 {
	return s.t[0][crcA&0xff] ^ s.t[1][crcA>>8&0xff] ^ s.t[2][crcA>>16&0xff] ^ s.t[3][crcA>>24] ^ crcB
}

// Range is the byte range [Off, Off+Len).
type Range struct{ Off, Len int }

func (r Range) end() int { return r.Off + r.Len }

// Blocks checks data laid out in blocks of one size against a checksum per
// block.
type Blocks struct {
	size  int
	shift *shifter // appends a whole block
	pow   []uint32 // pow[n] = x^(8n) mod poly, n < size: appends part of one
}

// maxPowTable bounds the block sizes whose partial-block powers are
// tabulated (4 bytes per byte of block).
const maxPowTable = 64 << 10

// NewBlocks returns a checker for blocks of size bytes (> 0). Its tables
// take 4 KiB plus, for blocks up to 64 KiB, 4·size bytes.
func NewBlocks(size int) *Blocks {
	b := &Blocks{size: size, shift: newShifter(int64(size))}
	if size <= maxPowTable {
		b.pow = make([]uint32, size)
		x8 := xPow8n(1)
		b.pow[0] = 1 << 31 // x^0
		for n := 1; n < size; n++ {
			b.pow[n] = multModP(b.pow[n-1], x8)
		}
	}
	return b
}

// combine is Combine for a part of a block: one multiplication.
func (b *Blocks) combine(crcA, crcB uint32, lenB int) uint32 {
	if lenB >= len(b.pow) {
		return Combine(crcA, crcB, int64(lenB))
	}
	return multModP(b.pow[lenB], crcA) ^ crcB
}

// Size is the block size.
func (b *Blocks) Size() int { return b.size }

// Verify reports whether data, cut into blocks of b.Size() bytes (the last
// may be shorter), has the checksums want, one per block; data of another
// number of blocks fails. In the same pass over the bytes it stores in
// sums[i] (len(sums) ≥ len(ranges)) the checksum of data[ranges[i]]:
// ranges must be in order, not overlap and lie within data (else Verify
// fails). The sums are meaningful only when Verify returns true.
//
// So a reader that verifies blocks gets the checksum of each record it
// delivers — an FFRecord sample, say — for a few table lookups per block
// instead of a second pass over its bytes.
func (b *Blocks) Verify(data []byte, want []uint32, ranges []Range, sums []uint32) bool {
	if len(data) > len(want)*b.size {
		return false
	}
	prev := 0
	for i, rg := range ranges {
		if rg.Off < prev || rg.Len < 0 || rg.end() > len(data) {
			return false
		}
		prev = rg.end()
		sums[i] = 0
	}
	bs, r := b.size, 0
	for i, w := range want {
		lo := i * bs
		if lo >= len(data) {
			return false
		}
		hi := min(lo+bs, len(data))
		var blk uint32
		for pos := lo; pos < hi; {
			for r < len(ranges) && ranges[r].end() <= pos {
				r++
			}
			// The piece [pos, cut) ends at the block's end or the next
			// range boundary, so it lies wholly inside or outside range r.
			cut, in := hi, false
			if r < len(ranges) {
				if rg := ranges[r]; rg.Off > pos {
					cut = min(cut, rg.Off)
				} else {
					cut, in = min(cut, rg.end()), true
				}
			}
			n := cut - pos
			c := Checksum(data[pos:cut])
			if pos == lo {
				blk = c
			} else {
				blk = b.combine(blk, c, n)
			}
			if in {
				switch {
				case pos == ranges[r].Off:
					sums[r] = c
				case n == bs:
					sums[r] = b.shift.combine(sums[r], c)
				default:
					sums[r] = b.combine(sums[r], c, n)
				}
			}
			pos = cut
		}
		if blk != w {
			return false
		}
	}
	return true
}
