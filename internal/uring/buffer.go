package uring

import (
	"math/bits"
	"sync"
	"unsafe"
)

// Align is an address, offset and length alignment that satisfies O_DIRECT
// on every filesystem we target. Reads whose buffer, offset and length are
// multiples of it never go through a bounce buffer.
const Align = 4096

// AlignedBuffer returns a zeroed n-byte slice whose first byte is
// Align-aligned, so O_DIRECT reads can land in it without a bounce copy.
// It is ordinary garbage-collected memory.
func AlignedBuffer(n int) []byte { return alignedAlloc(n, Align) }

func alignedAlloc(n, align int) []byte {
	if n <= 0 {
		return []byte{}
	}
	// Size classes and large spans that are multiples of a page are usually
	// aligned already; only pad when they are not.
	if b := make([]byte, n); isAligned(b, align) {
		return b
	}
	b := make([]byte, n+align-1)
	off := (align - int(uintptr(unsafe.Pointer(&b[0]))&uintptr(align-1))) & (align - 1)
	return b[off : off+n : off+n]
}

func isAligned(b []byte, align int) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))&uintptr(align-1) == 0
}

// Bounce buffers are pooled in power-of-two classes from Align up to
// Align<<maxClass; bigger ones are allocated per use.
const maxClass = 8 // 1 MiB

type bounce struct{ b []byte }

type bouncePool struct {
	classes [maxClass + 1]sync.Pool
}

func bounceClass(n int) int {
	if n <= Align {
		return 0
	}
	return bits.Len(uint((n - 1) / Align))
}

// get returns an Align-aligned buffer of at least n bytes.
func (p *bouncePool) get(n int) *bounce {
	c := bounceClass(n)
	if c > maxClass {
		return &bounce{b: alignedAlloc(n, Align)}
	}
	if x, _ := p.classes[c].Get().(*bounce); x != nil {
		return x
	}
	return &bounce{b: alignedAlloc(Align<<c, Align)}
}

func (p *bouncePool) put(x *bounce) {
	if c := bounceClass(len(x.b)); c <= maxClass && len(x.b) == Align<<c {
		p.classes[c].Put(x)
	}
}
