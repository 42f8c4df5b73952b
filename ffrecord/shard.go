package ffrecord

import (
	"errors"
	"fff/internal/crc32c"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// Source is one FFRecord file to read: a name for messages, the bytes, and their length.
type Source struct {
	Name string
	R    io.ReaderAt
	Size int64
}

// shard is one parsed FFRecord file: its index held in memory.
type shard struct {
	src       Source
	version   Version
	alignment int64
	metaCRC   bool // false for v1 files written without a metadata checksum
	dataStart int64
	dataEnd   int64 // first byte after the sample area
	offsets   []int64
	lengths   []int64
	crcs      []uint32

	footer    v2Footer // v2 only
	keysOnce  sync.Once
	keyEnds   []int64
	keyBlob   []byte
	keysErr   error
	totalSize int64 // sum of sample lengths
}

func (s *shard) n() int64 { return int64(len(s.offsets)) }

// sampleCRC returns the checksum of b in the shard's algorithm.
func (s *shard) sampleCRC(b []byte) uint32 {
	return updateCRC(s.version, 0, b)
}

// readFull reads exactly len(b) bytes at off, mapping short reads to ErrTruncated.
func readFull(src Source, b []byte, off int64) error {
	n, err := src.R.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fileErr(src.Name, ErrTruncated, "read %d of %d bytes at offset %d", n, len(b), off)
	}
	return &Error{File: src.Name, Sample: -1, Index: -1, Err: err, Detail: fmt.Sprintf("reading %d bytes at offset %d", len(b), off)}
}

// openShard parses and validates a file's header and index. Damage that the
// metadata checksums can see is reported here; sample bytes are checked on read.
func openShard(src Source) (*shard, error) {
	if src.Size < 0 {
		return nil, fileErr(src.Name, ErrCorrupt, "negative size %d", src.Size)
	}
	head := make([]byte, min(src.Size, 8))
	if err := readFull(src, head, 0); err != nil {
		return nil, err
	}
	isV2 := string(head) == v2Magic
	if !isV2 && src.Size >= v2FooterSize {
		// A v2 file whose header magic was damaged still carries its footer magic;
		// say "bad magic" rather than misparse it as v1.
		tail := make([]byte, 8)
		if err := readFull(src, tail, src.Size-8); err != nil {
			return nil, err
		}
		isV2 = string(tail) == v2FooterMagic
		if isV2 {
			// A v1 file whose last sample happens to end in the footer magic
			// is still v1 when its metadata checksum says so.
			if s, err := openV1(src); err == nil && s.metaCRC {
				return s, nil
			}
		}
	}
	if isV2 {
		return openV2(src)
	}
	return openV1(src)
}

// v1MetaChunk bounds the memory used to check a v1 metadata checksum before
// N is trusted, so a corrupt N cannot make the reader allocate the whole file.
const v1MetaChunk = 64 << 20

func openV1(src Source) (*shard, error) {
	name := src.Name
	if src.Size < v1HeaderSize {
		return nil, fileErr(name, ErrTruncated, "v1 header needs %d bytes, file has %d", v1HeaderSize, src.Size)
	}
	hdr := make([]byte, v1HeaderSize)
	if err := readFull(src, hdr, 0); err != nil {
		return nil, err
	}
	storedCRC := le.Uint32(hdr[0:])
	n := int64(le.Uint64(hdr[4:]))
	if n < 0 || n > v1MaxSamples {
		return nil, fileErr(name, ErrNotFFRecord, "no v2 magic, and read as v1 its header claims %d samples in %d bytes", le.Uint64(hdr[4:]), src.Size)
	}
	if n > (src.Size-v1HeaderSize)/12 {
		return nil, fileErr(name, ErrTruncated, "v1 header says %d samples, which do not fit in %d bytes", n, src.Size)
	}
	metaEnd := v1HeaderSize + 12*n
	if storedCRC != 0 && 12*n > v1MetaChunk {
		// Stream the checksum first: only a verified N may size allocations.
		crc := crc32.ChecksumIEEE(hdr[4:])
		buf := make([]byte, v1MetaChunk)
		for off := int64(v1HeaderSize); off < metaEnd; {
			c := buf[:min(int64(len(buf)), metaEnd-off)]
			if err := readFull(src, c, off); err != nil {
				return nil, err
			}
			crc = crc32.Update(crc, crc32.IEEETable, c)
			off += int64(len(c))
		}
		if crc != storedCRC {
			return nil, fileErr(name, ErrMetaChecksum, "v1 meta crc32 %08x, stored %08x", crc, storedCRC)
		}
		storedCRC = 0 // verified
	}
	meta := make([]byte, 12*n)
	if err := readFull(src, meta, v1HeaderSize); err != nil {
		return nil, err
	}
	crcOK := storedCRC == 0 // streamed above, or none stored
	if storedCRC != 0 {
		crcOK = crc32.Update(crc32.ChecksumIEEE(hdr[4:]), crc32.IEEETable, meta) == storedCRC
	}
	if !crcOK || le.Uint32(hdr[0:]) == 0 {
		// No checksum vouches for the header: tell another kind of file from
		// a damaged FFRecord file before reporting damage.
		if err := v1Implausible(name, meta, n, src.Size); err != nil {
			return nil, err
		}
	}
	if !crcOK {
		crc := crc32.Update(crc32.ChecksumIEEE(hdr[4:]), crc32.IEEETable, meta)
		return nil, fileErr(name, ErrMetaChecksum, "v1 meta crc32 %08x, stored %08x", crc, storedCRC)
	}
	s := &shard{
		src:       src,
		version:   V1,
		alignment: 1,
		metaCRC:   le.Uint32(hdr[0:]) != 0,
		dataStart: metaEnd,
		dataEnd:   src.Size,
		offsets:   make([]int64, n),
		lengths:   make([]int64, n),
		crcs:      make([]uint32, n),
	}
	for i := range n {
		s.crcs[i] = le.Uint32(meta[4*i:])
		s.offsets[i] = int64(le.Uint64(meta[4*n+8*i:]))
	}
	for i := range n {
		off := s.offsets[i]
		end := src.Size
		if i+1 < n {
			end = s.offsets[i+1]
		}
		if off < metaEnd || off > end || end > src.Size {
			return nil, sampleErr(name, i, -1, ErrBadOffsets, "offset %d, next %d, data area [%d, %d)", off, end, metaEnd, src.Size)
		}
		s.lengths[i] = end - off
		s.totalSize += end - off
	}
	return s, nil
}

// v1MaxSamples bounds a plausible v1 sample count: its index alone would
// take 12 TiB. Eight bytes of text read as a count exceed 2^56.
const v1MaxSamples = 1 << 40

// v1Implausible returns ErrNotFFRecord when an unverified v1 header and
// index look like no FFRecord file: samples the header does not count, or
// most offsets outside the file. One damaged byte cannot do either (it
// moves at most one of two or more offsets), so damage is still reported
// as damage.
func v1Implausible(name string, meta []byte, n, size int64) error {
	metaEnd := v1HeaderSize + 12*n
	if n == 0 && size > metaEnd {
		return fileErr(name, ErrNotFFRecord, "no v2 magic, and read as v1 it holds no samples but %d more bytes", size-metaEnd)
	}
	if n < 2 {
		return nil
	}
	out := int64(0)
	for i := range n {
		if off := int64(le.Uint64(meta[4*n+8*i:])); off < metaEnd || off > size {
			out++
		}
	}
	if 2*out > n {
		return fileErr(name, ErrNotFFRecord, "no v2 magic, and read as v1 %d of its %d sample offsets are outside the file", out, n)
	}
	return nil
}

func openV2(src Source) (*shard, error) {
	name := src.Name
	if src.Size < v2HeaderSize+v2FooterSize {
		return nil, fileErr(name, ErrTruncated, "v2 file needs at least %d bytes, has %d", v2HeaderSize+v2FooterSize, src.Size)
	}
	hb := make([]byte, v2HeaderSize)
	if err := readFull(src, hb, 0); err != nil {
		return nil, err
	}
	fb := make([]byte, v2FooterSize)
	if err := readFull(src, fb, src.Size-v2FooterSize); err != nil {
		return nil, err
	}
	if string(fb[56:]) != v2FooterMagic {
		if string(hb[:8]) == v2Magic {
			return nil, fileErr(name, ErrTruncated, "v2 footer missing: the file was cut short or its writer never closed it")
		}
	}
	h, err := decodeV2Header(name, hb)
	if err != nil {
		return nil, err
	}
	f, err := decodeV2Footer(name, fb)
	if err != nil {
		return nil, err
	}
	footerAt := uint64(src.Size - v2FooterSize)
	// The index, the keys and the footer are contiguous; anything else is damage.
	if f.n > footerAt/v2EntrySize || f.indexOffset < v2HeaderSize || f.indexOffset > footerAt {
		return nil, fileErr(name, ErrCorrupt, "footer: %d samples, index at %d, footer at %d", f.n, f.indexOffset, footerAt)
	}
	indexEnd := f.indexOffset + f.n*v2EntrySize
	if f.flags&flagKeys != 0 {
		if f.keysOffset != indexEnd || f.keysLength > footerAt || f.keysOffset+f.keysLength != footerAt || f.keysLength < 8*f.n {
			return nil, fileErr(name, ErrCorrupt, "footer: keys at %d+%d, index ends at %d, footer at %d", f.keysOffset, f.keysLength, indexEnd, footerAt)
		}
	} else if indexEnd != footerAt || f.keysOffset != 0 || f.keysLength != 0 || f.keysCRC != 0 {
		return nil, fileErr(name, ErrCorrupt, "footer: index ends at %d, footer at %d", indexEnd, footerAt)
	}
	n := int64(f.n)
	idx := make([]byte, n*v2EntrySize)
	if err := readFull(src, idx, int64(f.indexOffset)); err != nil {
		return nil, err
	}
	if got := crc32c.Checksum(idx); got != f.indexCRC {
		return nil, fileErr(name, ErrMetaChecksum, "index crc32c %08x, stored %08x", got, f.indexCRC)
	}
	s := &shard{
		src:       src,
		version:   V2,
		alignment: int64(h.alignment),
		metaCRC:   true,
		dataStart: v2HeaderSize,
		dataEnd:   int64(f.indexOffset),
		offsets:   make([]int64, n),
		lengths:   make([]int64, n),
		crcs:      make([]uint32, n),
		footer:    f,
	}
	prevEnd := int64(v2HeaderSize)
	for i := range n {
		e := idx[i*v2EntrySize:]
		off, length := le.Uint64(e[0:]), le.Uint64(e[8:])
		if off < uint64(prevEnd) || off > uint64(s.dataEnd) || length > uint64(s.dataEnd)-off ||
			(length > 0 && int64(off)%s.alignment != 0) {
			return nil, sampleErr(name, i, -1, ErrBadOffsets, "offset %d, length %d, previous end %d, data end %d, alignment %d",
				off, length, prevEnd, s.dataEnd, s.alignment)
		}
		s.offsets[i], s.lengths[i], s.crcs[i] = int64(off), int64(length), le.Uint32(e[16:])
		prevEnd = int64(off + length)
		s.totalSize += int64(length)
	}
	return s, nil
}

// loadKeys reads and checks the v2 keys section once.
func (s *shard) loadKeys() error {
	s.keysOnce.Do(func() {
		f := s.footer
		if s.version != V2 || f.flags&flagKeys == 0 {
			return
		}
		b := make([]byte, f.keysLength)
		if err := readFull(s.src, b, int64(f.keysOffset)); err != nil {
			s.keysErr = err
			return
		}
		if got := crc32c.Checksum(b); got != f.keysCRC {
			s.keysErr = fileErr(s.src.Name, ErrMetaChecksum, "keys crc32c %08x, stored %08x", got, f.keysCRC)
			return
		}
		n := s.n()
		blobLen := int64(f.keysLength) - 8*n
		ends := make([]int64, n)
		prev := int64(0)
		for i := range n {
			e := int64(le.Uint64(b[8*i:]))
			if e < prev || e > blobLen {
				s.keysErr = sampleErr(s.src.Name, i, -1, ErrCorrupt, "key end %d, previous %d, blob %d bytes", e, prev, blobLen)
				return
			}
			ends[i], prev = e, e
		}
		if prev != blobLen {
			s.keysErr = fileErr(s.src.Name, ErrCorrupt, "keys use %d of %d blob bytes", prev, blobLen)
			return
		}
		s.keyEnds, s.keyBlob = ends, b[8*n:]
	})
	return s.keysErr
}

func (s *shard) hasKeys() bool { return s.version == V2 && s.footer.flags&flagKeys != 0 }

func (s *shard) key(i int64) (string, error) {
	if !s.hasKeys() {
		return "", nil
	}
	if err := s.loadKeys(); err != nil {
		return "", err
	}
	start := int64(0)
	if i > 0 {
		start = s.keyEnds[i-1]
	}
	return string(s.keyBlob[start:s.keyEnds[i]]), nil
}
