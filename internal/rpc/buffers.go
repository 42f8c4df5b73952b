package rpc

import (
	"math/bits"
	"sync"
)

const (
	minBufClass = 12 // 4 KiB
	maxBufClass = 26 // 64 MiB
)

// bufPool recycles byte buffers in power-of-two size classes from 4 KiB to
// 64 MiB. Larger requests are allocated and left to the garbage collector.
// Each Server and Conn owns one; nothing is shared between them.
type bufPool struct {
	classes [maxBufClass - minBufClass + 1]sync.Pool
}

// get returns a buffer of length n. Put it back with put when done.
func (p *bufPool) get(n int) *[]byte {
	c := minBufClass
	if n > 1<<minBufClass {
		c = bits.Len(uint(n - 1))
	}
	if c > maxBufClass {
		b := make([]byte, n)
		return &b
	}
	if v := p.classes[c-minBufClass].Get(); v != nil {
		b := v.(*[]byte)
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, 1<<c)
	return &b
}

// put returns b to the pool; b must not be used afterwards.
func (p *bufPool) put(b *[]byte) {
	if b == nil {
		return
	}
	c := bits.Len(uint(cap(*b))) - 1 // floor(log2(cap)): every buffer of that class fits
	if c < minBufClass {
		return
	}
	if c > maxBufClass {
		c = maxBufClass
		if cap(*b) > 2<<maxBufClass {
			return // do not pin huge one-off buffers
		}
	}
	*b = (*b)[:0]
	p.classes[c-minBufClass].Put(b)
}
