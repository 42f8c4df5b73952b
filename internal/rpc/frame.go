package rpc

import (
	"encoding/binary"
	"fmt"

	"fff/internal/proto"
)

// Frame layout (all integers little-endian), see docs/wire.md:
//
//	off size field
//	 0   1   magic        0xF3
//	 1   1   frame format version (frameVersion)
//	 2   1   kind         hello, welcome, request, response, cancel,
//	                      challenge, proof, goaway
//	 3   1   flags        reserved, must be 0
//	 4   2   method       requests and responses; 0 otherwise
//	 6   2   status       proto.Code; responses and welcome only
//	 8   8   request id   0 in the handshake, non-zero otherwise
//	16   4   body length  bytes of msgpack body following the header
//	20   4   payload len  bytes of raw payload following the body
//	24   8   timeout      requests only: nanoseconds the caller still waits
//	                      when it sends; 0 = no deadline
//
// A frame is the header, then the body, then the payload.
const (
	headerSize   = 32
	frameMagic   = 0xF3
	frameVersion = 1

	// maxHandshakeBody bounds the bodies of handshake frames, which are read
	// before the peer is authenticated.
	maxHandshakeBody = 4096
)

type kind uint8

const (
	kindHello     kind = 1 // client → server, first frame: version, key id, nonce
	kindWelcome   kind = 2 // server → client: handshake answer (status OK or an error)
	kindRequest   kind = 3 // client → server
	kindResponse  kind = 4 // server → client, same id as the request
	kindCancel    kind = 5 // client → server: the caller gave up on request id
	kindChallenge kind = 6 // server → client, after the hello: the server's nonce
	kindProof     kind = 7 // client → server, after the challenge: the token's proof
	kindGoaway    kind = 8 // server → client: this idle connection closes; send nothing more on it
)

func (k kind) String() string {
	switch k {
	case kindHello:
		return "hello"
	case kindWelcome:
		return "welcome"
	case kindRequest:
		return "request"
	case kindResponse:
		return "response"
	case kindCancel:
		return "cancel"
	case kindChallenge:
		return "challenge"
	case kindProof:
		return "proof"
	case kindGoaway:
		return "goaway"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

type header struct {
	kind       kind
	flags      uint8
	method     uint16
	status     proto.Code
	id         uint64
	bodyLen    uint32
	payloadLen uint32
	timeout    uint64
}

// errFrame builds the error for a malformed frame. Such an error always ends
// the connection.
func errFrame(format string, args ...any) error {
	return proto.Errorf(proto.BadRequest, "rpc: bad frame: "+format, args...)
}

// encodeHeader writes h into b[:headerSize].
func encodeHeader(b []byte, h header) {
	_ = b[headerSize-1]
	b[0] = frameMagic
	b[1] = frameVersion
	b[2] = byte(h.kind)
	b[3] = h.flags
	binary.LittleEndian.PutUint16(b[4:], h.method)
	binary.LittleEndian.PutUint16(b[6:], uint16(h.status))
	binary.LittleEndian.PutUint64(b[8:], h.id)
	binary.LittleEndian.PutUint32(b[16:], h.bodyLen)
	binary.LittleEndian.PutUint32(b[20:], h.payloadLen)
	binary.LittleEndian.PutUint64(b[24:], h.timeout)
}

// decodeHeader parses and validates the header in b[:headerSize]. It checks
// everything that does not depend on configuration: magic, version, kind,
// reserved bits and which fields each kind may use. Size limits are checked
// by header.checkLimits. It never allocates on success and never panics.
func decodeHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, errFrame("short header: %d bytes", len(b))
	}
	if b[0] != frameMagic {
		return header{}, errFrame("bad magic 0x%02x", b[0])
	}
	if b[1] != frameVersion {
		return header{}, proto.Errorf(proto.ProtocolVersion, "rpc: frame version %d, want %d", b[1], frameVersion)
	}
	h := header{
		kind:       kind(b[2]),
		flags:      b[3],
		method:     binary.LittleEndian.Uint16(b[4:]),
		status:     proto.Code(binary.LittleEndian.Uint16(b[6:])),
		id:         binary.LittleEndian.Uint64(b[8:]),
		bodyLen:    binary.LittleEndian.Uint32(b[16:]),
		payloadLen: binary.LittleEndian.Uint32(b[20:]),
		timeout:    binary.LittleEndian.Uint64(b[24:]),
	}
	if h.flags != 0 {
		return header{}, errFrame("reserved flags 0x%02x set", h.flags)
	}
	switch h.kind {
	case kindHello, kindWelcome, kindChallenge, kindProof:
		if h.id != 0 || h.method != 0 || h.timeout != 0 || h.payloadLen != 0 {
			return header{}, errFrame("%v with id, method, timeout or payload", h.kind)
		}
		if h.bodyLen > maxHandshakeBody {
			return header{}, errFrame("%v body of %d bytes", h.kind, h.bodyLen)
		}
		if h.kind != kindWelcome && h.status != proto.OK {
			return header{}, errFrame("%v with status", h.kind)
		}
	case kindRequest:
		if h.id == 0 || h.status != proto.OK {
			return header{}, errFrame("request with id 0 or a status")
		}
	case kindResponse:
		if h.id == 0 || h.timeout != 0 {
			return header{}, errFrame("response with id 0 or a timeout")
		}
		if h.status != proto.OK && h.payloadLen != 0 {
			return header{}, errFrame("error response with a payload")
		}
	case kindCancel:
		if h.id == 0 || h.method != 0 || h.status != proto.OK || h.bodyLen != 0 || h.payloadLen != 0 || h.timeout != 0 {
			return header{}, errFrame("cancel with fields other than id")
		}
	case kindGoaway:
		if h.id != 0 || h.method != 0 || h.status != proto.OK || h.bodyLen != 0 || h.payloadLen != 0 || h.timeout != 0 {
			return header{}, errFrame("goaway with fields")
		}
	default:
		return header{}, errFrame("unknown kind %d", uint8(h.kind))
	}
	return h, nil
}

// checkLimits reports whether h's body and payload fit the given limits.
func (h header) checkLimits(maxBody, maxPayload int) error {
	if int64(h.bodyLen) > int64(maxBody) {
		return proto.Errorf(proto.TooLarge, "rpc: %v body of %d bytes exceeds the limit of %d", h.kind, h.bodyLen, maxBody)
	}
	if int64(h.payloadLen) > int64(maxPayload) {
		return proto.Errorf(proto.TooLarge, "rpc: %v payload of %d bytes exceeds the limit of %d", h.kind, h.payloadLen, maxPayload)
	}
	return nil
}
