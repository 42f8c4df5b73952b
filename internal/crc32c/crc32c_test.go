package crc32c

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

func TestChecksumIsCastagnoli(t *testing.T) {
	// The check value of CRC-32C (RFC 3720 B.4 uses the same polynomial).
	if got := Checksum([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("Checksum(123456789) = %08x, want e3069283", got)
	}
	if got, want := Update(Checksum([]byte("1234")), []byte("56789")), Checksum([]byte("123456789")); got != want {
		t.Fatalf("Update = %08x, want %08x", got, want)
	}
}

func TestCombine(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 3<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for _, tc := range []struct{ a, b int }{
		{0, 0}, {0, 1}, {1, 0}, {1, 1}, {7, 4096}, {4096, 4096}, {4095, 4097},
		{100 << 10, 3}, {1, 1 << 20}, {12345, 2<<20 + 17}, {3<<20 - 1, 1},
	} {
		a, b := buf[:tc.a], buf[tc.a:tc.a+tc.b]
		want := crc32.Checksum(buf[:tc.a+tc.b], crc32.MakeTable(crc32.Castagnoli))
		if got := Combine(Checksum(a), Checksum(b), int64(len(b))); got != want {
			t.Errorf("Combine(len %d, len %d) = %08x, want %08x", tc.a, tc.b, got, want)
		}
		if got := newShifter(int64(len(b))).combine(Checksum(a), Checksum(b)); got != want {
			t.Errorf("shifter(%d).combine(len %d) = %08x, want %08x", tc.b, tc.a, got, want)
		}
	}
}

// TestCombineLongZeros checks the combine for lengths far past any buffer:
// the CRC of n zero bytes appended to A is A's register shifted by n bytes,
// which Combine with crcB = Checksum(zeros) must reproduce; here through
// the identity Combine(Combine(a, z1, n1), z2, n2) = Combine(a, Combine(z1,
// z2, n2), n1+n2) for every split of a long run.
func TestCombineLongZeros(t *testing.T) {
	a := Checksum([]byte("fff"))
	z := make([]byte, 1<<16)
	z64k := Checksum(z)
	// 2^40 zero bytes as 2^24 runs of 64 KiB, folded by doubling.
	run, n := z64k, int64(len(z))
	for n < 1<<40 {
		run, n = Combine(run, run, n), 2*n
	}
	whole := Combine(a, run, n)
	// The same by another association: a‖(half‖half).
	half := z64k
	for m := int64(len(z)); m < n/2; m *= 2 {
		half = Combine(half, half, m)
	}
	if got := Combine(Combine(a, half, n/2), half, n/2); got != whole {
		t.Fatalf("2^40 zeros: %08x by halves, %08x whole", got, whole)
	}
}

func TestVerify(t *testing.T) {
	const bs = 4096
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 10*bs+123)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	want := make([]uint32, 11)
	for i := range want {
		want[i] = Checksum(data[i*bs : min((i+1)*bs, len(data))])
	}
	b := NewBlocks(bs)
	cases := []struct {
		name   string
		ranges []Range
	}{
		{"no ranges", nil},
		{"everything", []Range{{0, len(data)}}},
		{"one block", []Range{{bs, bs}}},
		{"inside a block", []Range{{10, 100}}},
		{"across blocks", []Range{{bs - 1, 2*bs + 2}}},
		{"back to back", []Range{{5, 4000}, {4005, 9000}, {13005, 3}, {13008, 20000}}},
		{"gaps", []Range{{0, 1}, {bs, 1}, {3*bs + 7, 5 * bs}, {len(data) - 1, 1}}},
		{"empty ranges", []Range{{0, 0}, {bs, 0}, {bs, 10}, {bs + 10, 0}, {len(data), 0}}},
		{"tail", []Range{{10 * bs, 123}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sums := make([]uint32, len(tc.ranges))
			for i := range sums {
				sums[i] = 0xdeadbeef
			}
			if !b.Verify(data, want, tc.ranges, sums) {
				t.Fatal("Verify failed on good data")
			}
			for i, rg := range tc.ranges {
				if w := Checksum(data[rg.Off:rg.end()]); sums[i] != w {
					t.Errorf("range %v: sum %08x, want %08x", rg, sums[i], w)
				}
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	const bs = 512
	data := make([]byte, 3*bs+10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := []uint32{Checksum(data[:bs]), Checksum(data[bs : 2*bs]), Checksum(data[2*bs : 3*bs]), Checksum(data[3*bs:])}
	b := NewBlocks(bs)
	sums := make([]uint32, 4)
	for _, tc := range []struct {
		name   string
		data   []byte
		want   []uint32
		ranges []Range
	}{
		{"flipped byte", flip(data, 2*bs+3), want, []Range{{0, len(data)}}},
		{"flipped byte outside ranges", flip(data, 5), want, []Range{{bs, 10}}},
		{"flipped last byte", flip(data, len(data)-1), want, nil},
		{"short data", data[:3*bs], want, nil},
		{"data past the blocks", data, want[:3], nil},
		{"range past data", data, want, []Range{{len(data) - 1, 2}}},
		{"ranges out of order", data, want, []Range{{100, 10}, {50, 10}}},
		{"ranges overlap", data, want, []Range{{100, 10}, {105, 10}}},
		{"negative length", data, want, []Range{{100, -1}}},
	} {
		if b.Verify(tc.data, tc.want, tc.ranges, sums) {
			t.Errorf("%s: Verify passed", tc.name)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x10
	return c
}

func BenchmarkVerify(b *testing.B) {
	data := make([]byte, 26*4096)
	want := make([]uint32, 26)
	for i := range want {
		want[i] = Checksum(data[i*4096 : (i+1)*4096])
	}
	bl := NewBlocks(4096)
	ranges := []Range{{1000, 101 << 10}}
	sums := make([]uint32, 1)
	b.Run("blocks", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			bl.Verify(data, want, nil, sums)
		}
	})
	b.Run("blocks+sample", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			bl.Verify(data, want, ranges, sums)
		}
	})
	b.Run("blocks then sample", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			bl.Verify(data, want, nil, sums)
			Checksum(data[1000 : 1000+101<<10])
		}
	})
	b.Run("combine", func(b *testing.B) {
		for b.Loop() {
			Combine(1, 2, 3000)
		}
	})
}

// TestVerifyBlockSizes: the partial-block powers are tabulated for small
// blocks and computed for large ones; both give the same sums.
func TestVerifyBlockSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, bs := range []int{512, 4096, maxPowTable, 2 * maxPowTable} {
		var want []uint32
		for lo := 0; lo < len(data); lo += bs {
			want = append(want, Checksum(data[lo:min(lo+bs, len(data))]))
		}
		at := 1020 + bs + 5
		ranges := []Range{{3, 1000}, {1003, bs + 17}, {at, 3}, {at + 4, len(data) - at - 11}}
		sums := make([]uint32, len(ranges))
		if !NewBlocks(bs).Verify(data, want, ranges, sums) {
			t.Fatalf("block size %d: Verify failed on good data", bs)
		}
		for i, rg := range ranges {
			if w := Checksum(data[rg.Off:rg.end()]); sums[i] != w {
				t.Errorf("block size %d, range %v: sum %08x, want %08x", bs, rg, sums[i], w)
			}
		}
	}
}
