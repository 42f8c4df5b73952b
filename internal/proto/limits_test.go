package proto

import (
	"errors"
	"math"
	"syscall"
	"testing"
)

func TestMaxFileSizeFitsChunkIndex(t *testing.T) {
	// The last byte of the largest file must have a chunk index that fits
	// ChunkRef.Index for the smallest chunk size; one more byte must not.
	last := uint64(MaxFileSize-1) / uint64(MinChunkSize)
	if last > math.MaxUint32 {
		t.Fatalf("chunk index %d of the last byte does not fit uint32", last)
	}
	if uint64(MaxFileSize)/uint64(MinChunkSize) <= math.MaxUint32 {
		t.Fatalf("MaxFileSize %d is below what the index allows; update the doc", MaxFileSize)
	}
}

func TestCheckFileRange(t *testing.T) {
	tests := []struct {
		off, n int64
		want   error // nil, ErrInvalid or ErrFileTooLarge
	}{
		{0, 0, nil},
		{0, MaxFileSize, nil},
		{MaxFileSize, 0, nil},
		{MaxFileSize - 1, 1, nil},
		{MaxFileSize, 1, ErrFileTooLarge},
		{MaxFileSize + 1, 0, ErrFileTooLarge},
		{1, MaxFileSize, ErrFileTooLarge},
		{math.MaxInt64, 1, ErrFileTooLarge}, // off+n overflows int64
		{1, math.MaxInt64, ErrFileTooLarge}, // ditto
		{1 << 62, 1 << 62, ErrFileTooLarge}, // 2^63 wraps negative
		{-1, 0, ErrInvalid},
		{0, -1, ErrInvalid},
		{math.MinInt64, 1, ErrInvalid},
	}
	for _, tt := range tests {
		err := CheckFileRange(tt.off, tt.n)
		if (err == nil) != (tt.want == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("CheckFileRange(%d, %d) = %v, want %v", tt.off, tt.n, err, tt.want)
		}
	}
	if err := CheckFileRange(MaxFileSize, 1); !errors.Is(err, syscall.EFBIG) || Errno(err) != syscall.EFBIG {
		t.Errorf("EFBIG error %v does not map to syscall.EFBIG", err)
	}
}

func TestCheckChunkRange(t *testing.T) {
	const cs = 4 << 20
	lastIdx := uint32(MaxFileSize/cs - 1)
	tests := []struct {
		name      string
		index, cs uint32
		off       uint32
		n         int64
		want      error
	}{
		{"first chunk", 0, cs, 0, cs, nil},
		{"last chunk", lastIdx, cs, 0, cs, nil},
		{"past the last chunk", lastIdx + 1, cs, 0, 1, ErrFileTooLarge},
		{"max index", math.MaxUint32, cs, 0, 1, ErrFileTooLarge},
		{"smallest chunks, max index", math.MaxUint32, MinChunkSize, 0, int64(MinChunkSize), nil},
		{"past the chunk", 0, cs, cs - 1, 2, ErrInvalid},
		{"offset wraps uint32", 0, cs, math.MaxUint32, 2, ErrInvalid},
		{"negative length", 0, cs, 0, -1, ErrInvalid},
		{"zero chunk size", 0, 0, 0, 0, ErrInvalid},
		{"not a power of two", 0, cs + 4096, 0, 1, ErrInvalid},
		{"too big", 0, 1 << 31, 0, 1, ErrInvalid},
	}
	for _, tt := range tests {
		err := CheckChunkRange(tt.index, tt.cs, tt.off, tt.n)
		if (err == nil) != (tt.want == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: CheckChunkRange = %v, want %v", tt.name, err, tt.want)
		}
	}
}
