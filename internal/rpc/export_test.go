package rpc

import (
	"encoding/binary"

	"fff/internal/proto"
)

// TestFrames builds raw frames for the black-box tests.
var TestFrames testFrames

type testFrames struct{}

// Hello is a hello frame with token.
func (testFrames) Hello(token string) []byte { return helloFrame(ProtocolVersion, token) }

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
