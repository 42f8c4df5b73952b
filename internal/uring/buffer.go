package uring

import (
	"math/bits"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Align is an address, offset and length alignment that satisfies O_DIRECT
// on every filesystem we target. Reads whose buffer, offset and length are
// multiples of it never go through a bounce buffer.
const Align = 4096

// AlignedBuffer returns a zeroed n-byte slice whose first byte is
// Align-aligned, so O_DIRECT reads can land in it without a bounce copy.
// It is ordinary garbage-collected memory.
//
// Buffers bigger than slabMax are placed in transparent huge pages where the
// kernel allows: an O_DIRECT read gives the device one scatter-gather
// segment per physically contiguous run of its buffer, and on virtual disks
// every segment costs; a 1 MiB read into scattered 4 KiB pages also exceeds
// the usual 254-segment limit and is split in two. Smaller buffers that
// should be huge-page backed come from an Arena.
func AlignedBuffer(n int) []byte {
	if n <= slabMax {
		return alignedAlloc(n, Align)
	}
	return hugeRegion(int(alignUp(int64(n), hugePage)))[:n:n]
}

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

// Transparent huge pages are 2 MiB on the platforms we target (x86-64, and
// arm64 with 4 KiB pages); elsewhere the hint is harmless.
const hugePage = 2 << 20

// An Arena carves buffers of up to slabMax bytes from slabs of slabSize.
const (
	slabSize = 4 * hugePage
	slabMax  = hugePage
)

// Arena hands out Align-aligned, zeroed buffers backed by transparent huge
// pages (physically contiguous in 2 MiB runs), for callers that keep many
// read buffers of up to 2 MiB, such as a data loader's batch buffers. One
// live buffer keeps its whole slab (8 MiB) allocated, so an Arena suits
// buffers that live and die together. The zero Arena is ready to use and
// safe for concurrent use.
type Arena struct {
	mu   sync.Mutex
	free []byte // unused tail of the current slab
}

// Alloc returns a zeroed n-byte Align-aligned buffer.
func (a *Arena) Alloc(n int) []byte {
	if n <= Align {
		return alignedAlloc(n, Align)
	}
	if n > slabMax {
		return AlignedBuffer(n)
	}
	sz := int(alignUp(int64(n), Align))
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.free) < sz {
		a.free = hugeRegion(slabSize)
	}
	b := a.free[:n:n]
	a.free = a.free[sz:]
	return b
}

// hugeRegion allocates size bytes (a multiple of hugePage) starting on a
// huge page boundary inside one Go allocation, asks the kernel to back them
// with huge pages and faults them in. The madvise calls touch only memory of
// that allocation. Go zeroes reused memory before handing it out, which may
// have faulted it in as 4 KiB pages; MADV_DONTNEED drops those (the range
// reads as zeros again) so the next touch maps a huge page. When THP is
// disabled the hint is ignored and the buffer is ordinary memory.
func hugeRegion(size int) []byte {
	b := make([]byte, size+hugePage)
	off := (hugePage - int(uintptr(unsafe.Pointer(&b[0]))&(hugePage-1))) & (hugePage - 1)
	r := b[off : off+size : off+size]
	if unix.Madvise(r, unix.MADV_HUGEPAGE) == nil && unix.Madvise(r, unix.MADV_DONTNEED) == nil {
		for i := 0; i < size; i += hugePage {
			r[i] = 0
		}
	}
	return r
}

func isAligned(b []byte, align int) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(&b[0]))&uintptr(align-1) == 0
}

// Bounce buffers are pooled in power-of-two classes from Align up to
// Align<<maxClass; bigger ones are allocated per use.
const maxClass = 8 // 1 MiB

type bounce struct{ b []byte }

type bouncePool struct {
	arena   Arena
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
		return &bounce{b: p.arena.Alloc(n)}
	}
	if x, _ := p.classes[c].Get().(*bounce); x != nil {
		return x
	}
	return &bounce{b: p.arena.Alloc(Align << c)}
}

func (p *bouncePool) put(x *bounce) {
	if c := bounceClass(len(x.b)); c <= maxClass && len(x.b) == Align<<c {
		p.classes[c].Put(x)
	}
}

// Buffer is a pooled Align-aligned buffer (Ring.GetBuffer).
type Buffer struct{ x *bounce }

// Bytes returns the buffer's first n bytes; n must not exceed what was
// asked of GetBuffer.
func (b Buffer) Bytes(n int) []byte { return b.x.b[:n:n] }

// GetBuffer returns an Align-aligned buffer of at least n bytes from the
// ring's pool (the one its Files use for bounce reads), for reads through
// Do that cannot land in the caller's memory. Give it back with PutBuffer
// once no op uses it.
func (r *Ring) GetBuffer(n int) Buffer { return Buffer{r.bufs.get(n)} }

// PutBuffer returns b to the pool. The zero Buffer is ignored.
func (r *Ring) PutBuffer(b Buffer) {
	if b.x != nil {
		r.bufs.put(b.x)
	}
}
