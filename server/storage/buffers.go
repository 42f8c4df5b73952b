package storage

import (
	"math/bits"
	"sync"

	"fff/internal/uring"
)

// Response buffers of batched reads are pooled in power-of-two classes of
// Align-aligned memory, from 4 KiB up to 64 MiB (the RPC payload limit);
// larger ones are allocated per request. Buffers come from huge-page slabs
// (uring.Arena): an O_DIRECT read into scattered 4 KiB pages costs a virtual
// disk one segment per page (docs/performance.md).
const (
	minBufClass = 12 // 4 KiB
	maxBufClass = 26 // 64 MiB
)

type bufPool struct {
	arena   uring.Arena
	classes [maxBufClass - minBufClass + 1]sync.Pool // of *[]byte
}

func bufClass(n int) int {
	if n <= 1<<minBufClass {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufClass
}

// get returns an aligned buffer of n bytes (contents undefined).
func (p *bufPool) get(n int) *[]byte {
	c := bufClass(n)
	if c >= len(p.classes) {
		b := uring.AlignedBuffer(n)
		return &b
	}
	if b, _ := p.classes[c].Get().(*[]byte); b != nil {
		*b = (*b)[:n]
		return b
	}
	b := p.arena.Alloc(1 << (c + minBufClass))[:n]
	return &b
}

func (p *bufPool) put(b *[]byte) {
	c := bufClass(cap(*b))
	if c >= len(p.classes) || cap(*b) != 1<<(c+minBufClass) {
		return
	}
	p.classes[c].Put(b)
}
