package rpc

import (
	"encoding/binary"
	"io"

	"fff/internal/proto"
)

// TestFrames builds raw frames for the black-box tests.
var TestFrames testFrames

type testFrames struct{}

// Hello is a hello frame for token, with a fixed client nonce.
func (testFrames) Hello(token string) []byte { return helloFrame(ProtocolVersion, token) }

// Proof is the proof frame of token answering ch, a whole challenge frame,
// after a Hello of the same token (no TLS).
func (testFrames) Proof(token string, ch []byte) []byte {
	var c challenge
	if len(ch) < headerSize || decodeBody(ch[headerSize:], &c) != nil {
		panic("rpc: not a challenge frame")
	}
	return proofFrame(token, c.Nonce)
}

// Challenge is a challenge frame with nonce.
func (testFrames) Challenge(nonce []byte) []byte {
	return handshakeFrame(kindChallenge, challenge{Nonce: nonce})
}

// Welcome is a successful welcome frame with server proof p.
func (testFrames) Welcome(p []byte) []byte {
	return handshakeFrame(kindWelcome, welcome{Version: ProtocolVersion, MaxBody: 1 << 20, MaxPayload: 1 << 20, Proof: p})
}

// Read reads one whole frame (header, body, payload) from r.
func (testFrames) Read(r io.Reader) ([]byte, error) {
	b := make([]byte, headerSize)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	h, err := decodeHeader(b)
	if err != nil {
		return nil, err
	}
	b = append(b, make([]byte, int(h.bodyLen)+int(h.payloadLen))...)
	_, err = io.ReadFull(r, b[headerSize:])
	return b, err
}

// Kind returns the kind of the frame at the start of b.
func (testFrames) Kind(b []byte) uint8 { return b[2] }

// Request is a request frame with a msgpack body (no deadline).
func (testFrames) Request(id uint64, method uint16, body any) []byte {
	return requestFrame(id, method, 0, body, nil)
}

// Header is a bare header.
func (testFrames) Header(k uint8, id uint64, method uint16, timeout uint64, bodyLen, payloadLen uint32) []byte {
	b := make([]byte, headerSize)
	encodeHeader(b, header{kind: kind(k), id: id, method: method, timeout: timeout, bodyLen: bodyLen, payloadLen: payloadLen})
	return b
}

// Status returns the status of the frame at the start of b.
func (testFrames) Status(b []byte) proto.Code {
	if len(b) < headerSize {
		return 0xffff
	}
	return proto.Code(binary.LittleEndian.Uint16(b[6:]))
}

// HeldBytes returns the request bytes the server holds (MaxTotalBytes).
func HeldBytes(s *Server) int {
	s.total.mu.Lock()
	defer s.total.mu.Unlock()
	return s.total.bytes
}

// BudgetWaits returns how often a request waited for the server's total
// budget.
func BudgetWaits(s *Server) int {
	s.total.mu.Lock()
	defer s.total.mu.Unlock()
	return s.total.waits
}

// GoingAway reports whether the server has sent c a goaway.
func (c *Conn) GoingAway() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.away
}
