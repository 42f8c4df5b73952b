package storage

import (
	"math/bits"
	"sync"

	"fff/internal/uring"
)

// Response buffers of batched reads are pooled in power-of-two classes of
// Align-aligned memory, from 4 KiB up to 64 MiB (the RPC payload limit);
// larger ones are allocated per request.
const (
	minBufClass = 12 // 4 KiB
	maxBufClass = 26 // 64 MiB
)

var bufPools [maxBufClass - minBufClass + 1]sync.Pool // of *[]byte

func bufClass(n int) int {
	if n <= 1<<minBufClass {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufClass
}

// getBuf returns an aligned buffer of n bytes (contents undefined).
func getBuf(n int) *[]byte {
	c := bufClass(n)
	if c >= len(bufPools) {
		b := uring.AlignedBuffer(n)
		return &b
	}
	if p, _ := bufPools[c].Get().(*[]byte); p != nil {
		*p = (*p)[:n]
		return p
	}
	b := uring.AlignedBuffer(1 << (c + minBufClass))[:n]
	return &b
}

func putBuf(p *[]byte) {
	c := bufClass(cap(*p))
	if c >= len(bufPools) || cap(*p) != 1<<(c+minBufClass) {
		return
	}
	bufPools[c].Put(p)
}
