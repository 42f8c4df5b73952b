// Package ffrecord reads and writes FFRecord sample containers.
//
// Two on-disk versions exist, both documented byte for byte in docs/ffrecord.md:
//
//   - v1, HFAiLab's original format: a header with N, a zlib CRC-32 per
//     sample and absolute offsets, then the samples back to back. The writer
//     must know N up front. fff reads and writes it byte-compatibly.
//   - v2, fff's format: magic and version, samples streamed first (optionally
//     aligned so O_DIRECT reads need no bounce copy), then an index with
//     64-bit offsets, lengths and CRC32C per sample, optional per-sample keys,
//     and a fixed-size footer.
//
// Readers detect the version; writers default to v2. The package works on any
// io.ReaderAt / io.WriterAt and depends on nothing else in fff: local files,
// files in an fff cluster and in-memory buffers are all read by the same code.
package ffrecord

import (
	"encoding/binary"
	"fff/internal/crc32c"
)

// Version is an FFRecord format version.
type Version int

const (
	V1 Version = 1
	V2 Version = 2
)

func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return "unknown"
}

// v1 layout: u32 metaCRC, i64 N, u32 crc[N], i64 offset[N], samples.
const v1HeaderSize = 12

// v2 layout constants; see docs/ffrecord.md.
const (
	v2Magic       = "FFRECORD"
	v2FooterMagic = "FFRECEND"
	v2HeaderSize  = 32
	v2FooterSize  = 64
	v2EntrySize   = 20 // u64 offset, u64 length, u32 crc32c

	// flagKeys marks a v2 file with a keys section.
	flagKeys = 1 << 0

	// MaxAlignment bounds v2 sample alignment (a power of two up to 1 MiB).
	MaxAlignment = 1 << 20
)

var le = binary.LittleEndian

// v2Header is the fixed 32-byte header at offset 0.
type v2Header struct {
	version   uint32
	alignment uint32
}

func (h v2Header) encode() []byte {
	b := make([]byte, v2HeaderSize)
	copy(b, v2Magic)
	le.PutUint32(b[8:], h.version)
	le.PutUint32(b[12:], h.alignment)
	le.PutUint32(b[28:], crc32c.Checksum(b[:28]))
	return b
}

// decodeV2Header checks magic, checksum, reserved bytes and version.
func decodeV2Header(name string, b []byte) (v2Header, error) {
	if string(b[:8]) != v2Magic {
		return v2Header{}, fileErr(name, ErrBadMagic, "header magic %q", b[:8])
	}
	if got, want := crc32c.Checksum(b[:28]), le.Uint32(b[28:]); got != want {
		return v2Header{}, fileErr(name, ErrMetaChecksum, "header crc32c %08x, stored %08x", got, want)
	}
	h := v2Header{version: le.Uint32(b[8:]), alignment: le.Uint32(b[12:])}
	if h.version != 2 {
		return h, fileErr(name, ErrUnsupportedVersion, "version %d", h.version)
	}
	if !validAlignment(int64(h.alignment)) {
		return h, fileErr(name, ErrCorrupt, "alignment %d", h.alignment)
	}
	for _, c := range b[16:28] {
		if c != 0 {
			return h, fileErr(name, ErrCorrupt, "reserved header bytes are not zero")
		}
	}
	return h, nil
}

// v2Footer is the fixed 64-byte footer at the end of the file.
type v2Footer struct {
	n           uint64
	indexOffset uint64
	keysOffset  uint64
	keysLength  uint64
	indexCRC    uint32
	keysCRC     uint32
	flags       uint32
	version     uint32
}

func (f v2Footer) encode() []byte {
	b := make([]byte, v2FooterSize)
	le.PutUint64(b[0:], f.n)
	le.PutUint64(b[8:], f.indexOffset)
	le.PutUint64(b[16:], f.keysOffset)
	le.PutUint64(b[24:], f.keysLength)
	le.PutUint32(b[32:], f.indexCRC)
	le.PutUint32(b[36:], f.keysCRC)
	le.PutUint32(b[40:], f.flags)
	le.PutUint32(b[48:], f.version)
	le.PutUint32(b[52:], crc32c.Checksum(b[:52]))
	copy(b[56:], v2FooterMagic)
	return b
}

func decodeV2Footer(name string, b []byte) (v2Footer, error) {
	if string(b[56:64]) != v2FooterMagic {
		return v2Footer{}, fileErr(name, ErrBadMagic, "footer magic %q", b[56:64])
	}
	if got, want := crc32c.Checksum(b[:52]), le.Uint32(b[52:]); got != want {
		return v2Footer{}, fileErr(name, ErrMetaChecksum, "footer crc32c %08x, stored %08x", got, want)
	}
	f := v2Footer{
		n:           le.Uint64(b[0:]),
		indexOffset: le.Uint64(b[8:]),
		keysOffset:  le.Uint64(b[16:]),
		keysLength:  le.Uint64(b[24:]),
		indexCRC:    le.Uint32(b[32:]),
		keysCRC:     le.Uint32(b[36:]),
		flags:       le.Uint32(b[40:]),
		version:     le.Uint32(b[48:]),
	}
	if f.version != 2 {
		return f, fileErr(name, ErrUnsupportedVersion, "footer version %d", f.version)
	}
	if f.flags&^flagKeys != 0 || le.Uint32(b[44:]) != 0 {
		return f, fileErr(name, ErrCorrupt, "unknown footer flags %#x", f.flags)
	}
	return f, nil
}

func validAlignment(a int64) bool {
	return a >= 1 && a <= MaxAlignment && a&(a-1) == 0
}

func alignUp(x, a int64) int64 { return (x + a - 1) &^ (a - 1) }
