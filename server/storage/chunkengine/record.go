package chunkengine

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fff/internal/crc32c"
	"fmt"
	"math"
)

// BlockSize is the checksum block: every 4 KiB of a chunk has its own
// CRC32C, so a read of n bytes costs the disk no more than its 4 KiB-aligned
// cover (DESIGN §7). It is also the O_DIRECT alignment the engine uses.
const BlockSize = 4096

// MaxChunkSizeLimit is the largest MaxChunkSize an engine accepts: a chunk's
// metadata record (4 bytes per block) must fit the KV's value limit with
// room to spare.
const MaxChunkSizeLimit = 64 << 20

// DefaultMaxChunkSize is the chunk size limit when Options leaves it 0.
const DefaultMaxChunkSize = 4 << 20

// ChunkID names a chunk: the inode it belongs to and its index in the file
// (chunk index = file offset / chunk size, DESIGN §7).
type ChunkID struct {
	Ino   uint64
	Index uint32
}

// String renders the id as the data files name it: 16 hex digits of the
// inode, a dash, 8 hex digits of the index.
func (id ChunkID) String() string { return fmt.Sprintf("%016x-%08x", id.Ino, id.Index) }

// Compare orders chunk ids as Scan lists them: by inode, then index.
func (id ChunkID) Compare(o ChunkID) int {
	if c := cmp.Compare(id.Ino, o.Ino); c != 0 {
		return c
	}
	return cmp.Compare(id.Index, o.Index)
}

// Prev returns the id just before id in that order (false for the first
// id): a Scan after it starts at id.
func (id ChunkID) Prev() (ChunkID, bool) {
	switch {
	case id.Index > 0:
		return ChunkID{Ino: id.Ino, Index: id.Index - 1}, true
	case id.Ino > 0:
		return ChunkID{Ino: id.Ino - 1, Index: math.MaxUint32}, true
	}
	return ChunkID{}, false
}

// KV keys. One bbolt file per target holds nothing but this engine's keys:
//
//	"c" ino(8, big-endian) index(4, big-endian)  chunk record (see record)
//	"f"                                           format: magic, version, block size
//	"g"                                           next unreserved file generation (u64 LE)
//
// Big-endian ids make the chunks of one inode one contiguous key range
// (List) in index order.
const (
	keyChunkPrefix = 'c'
	chunkKeyLen    = 13
)

var (
	keyFormat = []byte("f")
	keyGen    = []byte("g")
)

func chunkKey(id ChunkID) []byte {
	k := make([]byte, chunkKeyLen)
	putChunkKey(k, id)
	return k
}

func putChunkKey(k []byte, id ChunkID) {
	k[0] = keyChunkPrefix
	binary.BigEndian.PutUint64(k[1:], id.Ino)
	binary.BigEndian.PutUint32(k[9:], id.Index)
}

func inoPrefix(ino uint64) []byte {
	k := make([]byte, 9)
	k[0] = keyChunkPrefix
	binary.BigEndian.PutUint64(k[1:], ino)
	return k
}

func parseChunkKey(k []byte) (ChunkID, bool) {
	if len(k) != chunkKeyLen || k[0] != keyChunkPrefix {
		return ChunkID{}, false
	}
	return ChunkID{Ino: binary.BigEndian.Uint64(k[1:]), Index: binary.BigEndian.Uint32(k[9:])}, true
}

// record is a chunk's committed state, the value under its "c" key. A
// record is immutable once built: the cache and concurrent readers share it.
//
// Encoding (little-endian), recHeader bytes then the block CRCs then a
// CRC32C of everything before it:
//
//	0  u8   recMagic
//	1  u8   recFormat
//	2  u16  flags, must be 0
//	4  u32  number of blocks n = ceil(length / BlockSize)
//	8  u64  version: 1 for the first commit, +1 per committed write/truncate
//	16 u64  gen: data file generation; 0 = no data file (length 0)
//	24 u32  length: committed bytes
//	28 u32  high: bytes of data file gen that some committed version
//	        referenced (>= length); in-place writes need length == high
//	32 u32  crc[n]: CRC32C of each block; the last block's covers only the
//	        bytes below length
//	.. u32  CRC32C of bytes [0, 32+4n)
type record struct {
	version uint64
	gen     uint64
	length  int64
	high    int64
	crcs    []uint32
}

const (
	recMagic  = 0xC7
	recFormat = 1
	recHeader = 32
)

// errBadRecord is wrapped by decodeRecord's errors.
var errBadRecord = errors.New("damaged chunk metadata record")

func nblocks(length int64) int64 { return (length + BlockSize - 1) / BlockSize }

func (r *record) encode() []byte {
	n := len(r.crcs)
	b := make([]byte, recHeader+4*n+4)
	b[0], b[1] = recMagic, recFormat
	binary.LittleEndian.PutUint32(b[4:], uint32(n))
	binary.LittleEndian.PutUint64(b[8:], r.version)
	binary.LittleEndian.PutUint64(b[16:], r.gen)
	binary.LittleEndian.PutUint32(b[24:], uint32(r.length))
	binary.LittleEndian.PutUint32(b[28:], uint32(r.high))
	for i, c := range r.crcs {
		binary.LittleEndian.PutUint32(b[recHeader+4*i:], c)
	}
	end := len(b) - 4
	binary.LittleEndian.PutUint32(b[end:], crc32c.Checksum(b[:end]))
	return b
}

// decodeRecord parses and validates an encoded record. Any damage (wrong
// size, magic, format, flags, checksum, inconsistent fields) is an error
// wrapping errBadRecord; it never panics.
func decodeRecord(b []byte) (*record, error) {
	if len(b) < recHeader+4 {
		return nil, fmt.Errorf("%w: %d bytes", errBadRecord, len(b))
	}
	if b[0] != recMagic || b[1] != recFormat {
		return nil, fmt.Errorf("%w: magic/format %#x/%d", errBadRecord, b[0], b[1])
	}
	if f := binary.LittleEndian.Uint16(b[2:]); f != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", errBadRecord, f)
	}
	n := int64(binary.LittleEndian.Uint32(b[4:]))
	if n > MaxChunkSizeLimit/BlockSize || int64(len(b)) != recHeader+4*n+4 {
		return nil, fmt.Errorf("%w: %d blocks in %d bytes", errBadRecord, n, len(b))
	}
	end := len(b) - 4
	if got, want := crc32c.Checksum(b[:end]), binary.LittleEndian.Uint32(b[end:]); got != want {
		return nil, fmt.Errorf("%w: record crc32c %08x, stored %08x", errBadRecord, got, want)
	}
	r := &record{
		version: binary.LittleEndian.Uint64(b[8:]),
		gen:     binary.LittleEndian.Uint64(b[16:]),
		length:  int64(binary.LittleEndian.Uint32(b[24:])),
		high:    int64(binary.LittleEndian.Uint32(b[28:])),
	}
	switch {
	case r.version == 0:
		return nil, fmt.Errorf("%w: version 0", errBadRecord)
	case r.length > MaxChunkSizeLimit || r.high > MaxChunkSizeLimit || r.high < r.length:
		return nil, fmt.Errorf("%w: length %d, high %d", errBadRecord, r.length, r.high)
	case nblocks(r.length) != n:
		return nil, fmt.Errorf("%w: %d blocks for length %d", errBadRecord, n, r.length)
	case r.gen == 0 && r.high != 0:
		return nil, fmt.Errorf("%w: %d bytes without a data file", errBadRecord, r.high)
	}
	r.crcs = make([]uint32, n)
	for i := range r.crcs {
		r.crcs[i] = binary.LittleEndian.Uint32(b[recHeader+4*i:])
	}
	return r, nil
}

// sizeBytes is what a cached record costs, roughly: the struct, its CRCs,
// and the cache's map entry and list element.
func (r *record) sizeBytes() int64 {
	if r == nil {
		return 96
	}
	return 160 + 4*int64(len(r.crcs))
}

// fingerprint is a CRC32C over the length and the block CRCs: equal for
// chunks with equal content (with overwhelming probability, different
// otherwise), without reading data.
func (r *record) fingerprint() uint32 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(r.length))
	c := crc32c.Update(0, b[:])
	for _, x := range r.crcs {
		binary.LittleEndian.PutUint32(b[:4], x)
		c = crc32c.Update(c, b[:4])
	}
	return c
}

// Format record under keyFormat: identifies the KV file as a chunk engine
// store and pins the block size.
const (
	formatMagic   = "fffchunk"
	formatVersion = 1
)

func encodeFormat() []byte {
	b := make([]byte, len(formatMagic)+8)
	copy(b, formatMagic)
	binary.LittleEndian.PutUint32(b[len(formatMagic):], formatVersion)
	binary.LittleEndian.PutUint32(b[len(formatMagic)+4:], BlockSize)
	return b
}

func checkFormat(b []byte) error {
	if len(b) != len(formatMagic)+8 || string(b[:len(formatMagic)]) != formatMagic {
		return errors.New("not a chunk engine metadata store")
	}
	v := binary.LittleEndian.Uint32(b[len(formatMagic):])
	bs := binary.LittleEndian.Uint32(b[len(formatMagic)+4:])
	if v != formatVersion || bs != BlockSize {
		return fmt.Errorf("format version %d block size %d, this build reads version %d block size %d",
			v, bs, formatVersion, BlockSize)
	}
	return nil
}
