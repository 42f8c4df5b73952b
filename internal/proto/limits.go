package proto

// Chunk sizes a layout may have: a power of two in [MinChunkSize,
// MaxChunkSize].
const (
	MinChunkSize uint32 = 4 << 10
	MaxChunkSize uint32 = 64 << 20
)

// MaxFileSize is the largest file fff stores: 16 TiB. Every offset and
// length on the data path is checked against it before any chunk math, and
// an operation that would reach past it fails with EFBIG (EINVAL for a
// negative offset), the way POSIX systems treat their own s_maxbytes.
//
// Why 2^44: the chunk index travels as a uint32 (ChunkRef.Index) and the
// smallest chunk is MinChunkSize (2^12), so 2^32 × 2^12 is the first
// offset whose chunk index no longer fits for every layout. A larger limit
// would let the index wrap silently onto chunk 0 (a write at 16 TiB landing
// on the file's first bytes). It also keeps offset+length far from int64
// and uint64 overflow: both are at most 2^44 + 2^63-1 < 2^64 in uint64
// math, and the caller's int length is checked first.
const MaxFileSize int64 = int64(MinChunkSize) << 32

// CheckFileRange reports whether the file range [off, off+n) is one fff can
// store: EINVAL for a negative offset or length, EFBIG when it reaches past
// MaxFileSize (overflow included).
func CheckFileRange(off, n int64) error {
	switch {
	case off < 0 || n < 0:
		return Errorf(EINVAL, "offset %d, length %d: negative", off, n)
	case off > MaxFileSize || n > MaxFileSize-off:
		return Errorf(EFBIG, "offset %d + length %d is beyond the largest file size %d (16 TiB)", off, n, MaxFileSize)
	}
	return nil
}

// CheckChunkRange reports whether bytes [off, off+n) of chunk index of a
// file with chunk size chunkSize lie inside the chunk and inside
// MaxFileSize: a server checks every chunk IO with it rather than trust the
// client's arithmetic.
func CheckChunkRange(index uint32, chunkSize uint32, off uint32, n int64) error {
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize || chunkSize&(chunkSize-1) != 0 {
		return Errorf(EINVAL, "chunk size %d: want a power of two in [%d, %d]", chunkSize, MinChunkSize, MaxChunkSize)
	}
	if n < 0 || uint64(off)+uint64(n) > uint64(chunkSize) {
		return Errorf(EINVAL, "chunk range %d+%d: outside the chunk size %d", off, n, chunkSize)
	}
	// index×chunkSize < 2^32 × 2^26: no uint64 overflow.
	if end := uint64(index)*uint64(chunkSize) + uint64(off) + uint64(n); end > uint64(MaxFileSize) {
		return Errorf(EFBIG, "chunk %d range %d+%d ends at file offset %d, beyond the largest file size %d", index, off, n, end, MaxFileSize)
	}
	return nil
}
