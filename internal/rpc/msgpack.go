package rpc

import (
	"encoding/binary"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
)

// maxMsgpackDepth bounds the nesting of arrays and maps in a body. Deeper
// input is refused before it reaches the decoder, whose recursion would
// otherwise follow it.
const maxMsgpackDepth = 64

// checkMsgpack verifies that b holds exactly one well-formed msgpack value
// that nests at most maxMsgpackDepth deep and whose every length prefix fits
// the bytes that remain. The decoder preallocates from length prefixes (and
// msgpack/v5 does so without a cap for typed slices), so a 5-byte body
// claiming 2^32 elements would otherwise allocate gigabytes; after this check
// every allocation is bounded by a small multiple of len(b).
func checkMsgpack(b []byte) error {
	// pending[d] = values still expected at depth d; depth 0 holds the root.
	var pending [maxMsgpackDepth + 1]uint64
	depth := 0
	pending[0] = 1
	i := 0
	for {
		for depth > 0 && pending[depth] == 0 {
			depth--
		}
		if pending[depth] == 0 {
			break
		}
		pending[depth]--
		if i >= len(b) {
			return fmt.Errorf("msgpack: truncated at byte %d", i)
		}
		c := b[i]
		i++
		var skip, n uint64 // bytes of data to skip; elements the container holds
		container := false
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f: // fixmap
			n, container = 2*uint64(c&0x0f), true
		case c <= 0x9f: // fixarray
			n, container = uint64(c&0x0f), true
		case c <= 0xbf: // fixstr
			skip = uint64(c & 0x1f)
		default:
			var ln, w int // width of a length prefix, width of a fixed value
			switch c {
			case 0xc0, 0xc2, 0xc3: // nil, false, true
			case 0xc4, 0xd9: // bin8, str8
				ln = 1
			case 0xc5, 0xda: // bin16, str16
				ln = 2
			case 0xc6, 0xdb: // bin32, str32
				ln = 4
			case 0xc7: // ext8
				ln, w = 1, 1
			case 0xc8: // ext16
				ln, w = 2, 1
			case 0xc9: // ext32
				ln, w = 4, 1
			case 0xca: // float32
				w = 4
			case 0xcb: // float64
				w = 8
			case 0xcc, 0xd0:
				w = 1
			case 0xcd, 0xd1:
				w = 2
			case 0xce, 0xd2:
				w = 4
			case 0xcf, 0xd3:
				w = 8
			case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8: // fixext 1, 2, 4, 8, 16
				w = 1 + 1<<(c-0xd4)
			case 0xdc: // array16
				ln, container = 2, true
			case 0xdd: // array32
				ln, container = 4, true
			case 0xde: // map16
				ln, container = 2, true
			case 0xdf: // map32
				ln, container = 4, true
			default: // 0xc1 is never used
				return fmt.Errorf("msgpack: invalid code 0x%02x at byte %d", c, i-1)
			}
			if len(b)-i < ln {
				return fmt.Errorf("msgpack: truncated length at byte %d", i)
			}
			var l uint64
			switch ln {
			case 1:
				l = uint64(b[i])
			case 2:
				l = uint64(binary.BigEndian.Uint16(b[i:]))
			case 4:
				l = uint64(binary.BigEndian.Uint32(b[i:]))
			}
			i += ln
			switch {
			case container && c >= 0xde:
				n = 2 * l
			case container:
				n = l
			default:
				skip = l + uint64(w)
			}
		}
		if skip > uint64(len(b)-i) {
			return fmt.Errorf("msgpack: value at byte %d runs past the end", i)
		}
		i += int(skip)
		if container && n > 0 {
			if n > uint64(len(b)-i) {
				return fmt.Errorf("msgpack: container at byte %d claims %d elements in %d bytes", i, n, len(b)-i)
			}
			if depth == maxMsgpackDepth {
				return fmt.Errorf("msgpack: nested deeper than %d", maxMsgpackDepth)
			}
			depth++
			pending[depth] = n
		}
	}
	if i != len(b) {
		return fmt.Errorf("msgpack: %d trailing bytes", len(b)-i)
	}
	return nil
}

// decodeBody decodes a msgpack body into v. An empty body leaves v untouched.
func decodeBody(b []byte, v any) error {
	if len(b) == 0 || v == nil {
		return nil
	}
	if err := checkMsgpack(b); err != nil {
		return proto.Errorf(proto.BadRequest, "rpc: decode body: %v", err)
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return proto.Errorf(proto.BadRequest, "rpc: decode body into %T: %v", v, err)
	}
	return nil
}

// byteBuf is an append-only buffer the msgpack encoder writes into.
type byteBuf struct{ b []byte }

func (w *byteBuf) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *byteBuf) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }
func (w *byteBuf) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}

// appendBody appends the msgpack encoding of v to b (nothing for nil).
func appendBody(b []byte, v any) ([]byte, error) {
	if v == nil {
		return b, nil
	}
	w := byteBuf{b: b}
	enc := msgpack.GetEncoder()
	enc.Reset(&w)
	err := enc.Encode(v)
	msgpack.PutEncoder(enc)
	return w.b, err
}
