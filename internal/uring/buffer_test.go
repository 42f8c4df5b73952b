package uring

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

func TestAlignedBuffer(t *testing.T) {
	var arena Arena
	for name, alloc := range map[string]func(int) []byte{"AlignedBuffer": AlignedBuffer, "Arena.Alloc": arena.Alloc} {
		t.Run(name, func(t *testing.T) { testAlloc(t, alloc) })
	}
}

func testAlloc(t *testing.T, alloc func(int) []byte) {
	sizes := []int{0, 1, 100, Align, Align + 1, 2 * Align, 128 << 10, 1 << 20, slabMax, slabMax + 1, 3 << 20}
	var bufs [][]byte
	for range 3 {
		for _, n := range sizes {
			b := alloc(n)
			if len(b) != n || (n > 0 && cap(b) != n) {
				t.Fatalf("AlignedBuffer(%d): len %d cap %d", n, len(b), cap(b))
			}
			if !isAligned(b, Align) {
				t.Fatalf("AlignedBuffer(%d) at %p: not %d-aligned", n, &b[0], Align)
			}
			for i, c := range b {
				if c != 0 {
					t.Fatalf("AlignedBuffer(%d)[%d] = %d, want 0", n, i, c)
				}
			}
			for i := range b {
				b[i] = byte(len(bufs))
			}
			bufs = append(bufs, b)
		}
	}
	for k, b := range bufs { // no buffer overlaps another
		for i, c := range b {
			if c != byte(k) {
				t.Fatalf("buffer %d (len %d) byte %d = %d: overwritten", k, len(b), i, c)
			}
		}
	}
}

// TestAlignedBufferHugePageHint checks that multi-page buffers get the
// MADV_HUGEPAGE hint (VmFlags "hg"); whether the kernel then finds free huge
// pages depends on the machine.
func TestAlignedBufferHugePageHint(t *testing.T) {
	if thp, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil ||
		strings.Contains(string(thp), "[never]") {
		t.Skip("transparent huge pages unavailable")
	}
	var arena Arena
	for _, n := range []int{128 << 10, 1 << 20, 3 << 20} {
		b := arena.Alloc(n)
		addr := uint64(uintptr(unsafe.Pointer(&b[0])))
		flags, ok := vmFlags(t, addr)
		if !ok {
			t.Fatalf("Alloc(%d) at %#x: no mapping in /proc/self/smaps", n, addr)
		}
		if !strings.Contains(" "+flags+" ", " hg ") {
			t.Errorf("Alloc(%d) at %#x: VmFlags %q lack hg (MADV_HUGEPAGE)", n, addr, flags)
		}
	}
}

func vmFlags(t *testing.T, addr uint64) (string, bool) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		l := sc.Text()
		if r, _, ok := strings.Cut(l, " "); ok && strings.Contains(r, "-") && !strings.HasSuffix(r, ":") {
			lo, hi, _ := strings.Cut(r, "-")
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && a <= addr && addr < b
			continue
		}
		if v, ok := strings.CutPrefix(l, "VmFlags:"); ok && in {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
