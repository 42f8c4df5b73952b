package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
)

// testNonce is the client nonce of the raw test frames: a fixed nonce,
// for frames built ahead of the conversation (fuzz seeds).
var testNonce = bytes.Repeat([]byte{7}, nonceSize)

// helloFrame is a hello for token with the fixed test nonce.
func helloFrame(version uint16, token string) []byte {
	id := KeyOf(token).LookupID()
	return handshakeFrame(kindHello, hello{Version: version, ID: id[:], Nonce: testNonce, MaxBody: 1 << 20, MaxPayload: 1 << 20})
}

// proofFrame is the proof of token after helloFrame and a challenge with
// server nonce snonce, on a connection without TLS.
func proofFrame(token string, snonce []byte) []byte {
	p, _ := clientProof(token, transcript(ProtocolVersion, KeyOf(token).LookupID(), testNonce, snonce, nil))
	return handshakeFrame(kindProof, proof{Proof: p})
}

func handshakeFrame(k kind, v any) []byte {
	var b bytes.Buffer
	if err := writeHandshakeFrame(&b, k, proto.OK, v); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// fixedNonce makes s's challenges use the all-zero nonce, so that a whole
// authenticated conversation can be written ahead (the fuzz seeds): a
// replay, which only tests may allow.
func fixedNonce(s *Server) { s.nonce = func() []byte { return make([]byte, nonceSize) } }

// authFrames is hello and proof of token for a server with fixedNonce.
func authFrames(token string) []byte {
	return append(helloFrame(ProtocolVersion, token), proofFrame(token, make([]byte, nonceSize))...)
}

func requestFrame(id uint64, method uint16, timeout uint64, body any, payload []byte) []byte {
	b, err := appendBody(make([]byte, headerSize), body)
	if err != nil {
		panic(err)
	}
	encodeHeader(b, header{kind: kindRequest, id: id, method: method, timeout: timeout,
		bodyLen: uint32(len(b) - headerSize), payloadLen: uint32(len(payload))})
	return append(b, payload...)
}

func cancelFrame(id uint64) []byte {
	b := make([]byte, headerSize)
	encodeHeader(b, header{kind: kindCancel, id: id})
	return b
}

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{kind: kindHello, bodyLen: 100},
		{kind: kindWelcome, status: proto.Unauthenticated, bodyLen: 20},
		{kind: kindRequest, method: 7, id: 1<<64 - 1, bodyLen: 1 << 24, payloadLen: 1<<32 - 1, timeout: 1<<64 - 1},
		{kind: kindResponse, method: 9, status: proto.ENOENT, id: 3, bodyLen: 10},
		{kind: kindResponse, id: 3, payloadLen: 1 << 20},
		{kind: kindCancel, id: 42},
		{kind: kindChallenge, bodyLen: 40},
		{kind: kindProof, bodyLen: 50},
	} {
		b := make([]byte, headerSize)
		encodeHeader(b, h)
		got, err := decodeHeader(b)
		if err != nil || got != h {
			t.Fatalf("%+v: got %+v, %v", h, got, err)
		}
	}
}

func TestDecodeHeaderRejects(t *testing.T) {
	valid := func() []byte {
		b := make([]byte, headerSize)
		encodeHeader(b, header{kind: kindRequest, id: 1, method: 1, bodyLen: 1})
		return b
	}
	tests := []struct {
		name string
		mut  func(b []byte) []byte
		code proto.Code
	}{
		{"short", func(b []byte) []byte { return b[:headerSize-1] }, proto.BadRequest},
		{"magic", func(b []byte) []byte { b[0] = 'G'; return b }, proto.BadRequest},
		{"version", func(b []byte) []byte { b[1] = 2; return b }, proto.ProtocolVersion},
		{"kind 0", func(b []byte) []byte { b[2] = 0; return b }, proto.BadRequest},
		{"kind 8", func(b []byte) []byte { b[2] = 8; return b }, proto.BadRequest},
		{"flags", func(b []byte) []byte { b[3] = 1; return b }, proto.BadRequest},
		{"request with status", func(b []byte) []byte { b[6] = 1; return b }, proto.BadRequest},
		{"request id 0", func(b []byte) []byte { clear(b[8:16]); return b }, proto.BadRequest},
		{"hello with id", func(b []byte) []byte { b[2] = byte(kindHello); b[4] = 0; return b }, proto.BadRequest},
		{"hello body too big", func(b []byte) []byte {
			encodeHeader(b, header{kind: kindHello, bodyLen: maxHandshakeBody + 1})
			return b
		}, proto.BadRequest},
		{"hello with payload", func(b []byte) []byte {
			encodeHeader(b, header{kind: kindHello, bodyLen: 10, payloadLen: 1})
			return b
		}, proto.BadRequest},
		{"error response with payload", func(b []byte) []byte {
			encodeHeader(b, header{kind: kindResponse, id: 1, status: proto.EIO, payloadLen: 1})
			return b
		}, proto.BadRequest},
		{"cancel with body", func(b []byte) []byte {
			encodeHeader(b, header{kind: kindCancel, id: 1, bodyLen: 1})
			return b
		}, proto.BadRequest},
	}
	if _, err := decodeHeader(valid()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		_, err := decodeHeader(tc.mut(valid()))
		if proto.CodeOf(err) != tc.code {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.code)
		}
	}
	h := header{kind: kindRequest, id: 1, bodyLen: 11, payloadLen: 21}
	if h.checkLimits(10, 100) == nil || h.checkLimits(100, 20) == nil || h.checkLimits(11, 21) != nil {
		t.Fatal("checkLimits")
	}
}

func TestCheckMsgpack(t *testing.T) {
	type inner struct {
		A []uint32
		M map[string]any
	}
	valid := []any{
		nil, true, 1, -1, 300, -40000, 1 << 40, 1.5, float32(2.5), "", "abc", strings.Repeat("s", 300),
		strings.Repeat("t", 70000), []byte{1, 2, 3}, make([]byte, 70000), []int{1, 2, 3},
		map[string]int{"a": 1, "b": 2}, time.Unix(1700000000, 5),
		inner{A: []uint32{1, 2, 3}, M: map[string]any{"x": []any{1, "y", nil, map[string]any{}}}},
		make([]int, 70000), hello{Version: 2, ID: make([]byte, 16), Nonce: make([]byte, nonceSize)},
	}
	for _, v := range valid {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkMsgpack(b); err != nil {
			t.Errorf("%T: %v", v, err)
		}
		if len(b) > 1 && checkMsgpack(b[:len(b)-1]) == nil {
			t.Errorf("%T: truncation not detected", v)
		}
		if checkMsgpack(append(b, 0)) == nil {
			t.Errorf("%T: trailing byte not detected", v)
		}
	}
	bombs := map[string][]byte{
		"array32 of 4G":       {0xdd, 0xff, 0xff, 0xff, 0xff},
		"map32 of 4G":         {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0},
		"bin32 of 4G":         {0xc6, 0xff, 0xff, 0xff, 0xff, 0},
		"str32 of 4G":         {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'},
		"ext32 of 4G":         {0xc9, 0xff, 0xff, 0xff, 0xff, 1, 0},
		"array16 short":       {0xdc, 0x00, 0x03, 0xc0, 0xc0},
		"deep nesting":        bytes.Repeat([]byte{0x91}, maxMsgpackDepth+1),
		"unused code":         {0xc1},
		"empty":               {},
		"fixmap missing vals": {0x82, 0xc0, 0xc0, 0xc0},
	}
	for name, b := range bombs {
		if err := checkMsgpack(b); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
	if err := checkMsgpack(append(bytes.Repeat([]byte{0x91}, maxMsgpackDepth), 0xc0)); err != nil {
		t.Errorf("nesting at the limit refused: %v", err)
	}
	// The decoder would preallocate 4G elements here; the check stops it.
	var s []inner
	if err := decodeBody(bombs["array32 of 4G"], &s); !errors.Is(err, proto.ErrBadRequest) {
		t.Fatalf("bomb decoded: %v", err)
	}
}

// rawServer serves the test handlers on a loopback port for raw-frame tests.
func rawServer(t *testing.T, opts ServerOptions) (*Server, string, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	opts.Auth = NewStaticTokens(map[string]Identity{"tok": {UID: 7}})
	s := NewServer(opts)
	s.Handle(1, AccessUser, func(ctx context.Context, req *Request) (*Response, error) {
		calls.Add(1)
		var v any
		if err := req.Decode(&v); err != nil {
			return nil, err
		}
		return &Response{Body: v, Payload: [][]byte{req.Payload}}, nil
	})
	s.Handle(2, AccessUser, func(ctx context.Context, req *Request) (*Response, error) {
		calls.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return s, l.Addr().String(), &calls
}

// readFrame reads one frame from r.
func readFrame(t *testing.T, r io.Reader) (header, []byte) {
	t.Helper()
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		t.Fatal(err)
	}
	h, err := decodeHeader(hb[:])
	if err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, int(h.bodyLen)+int(h.payloadLen))
	if _, err := io.ReadFull(r, rest); err != nil {
		t.Fatal(err)
	}
	return h, rest
}

func TestRawProtocol(t *testing.T) {
	_, addr, calls := rawServer(t, ServerOptions{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := ClientHandshake(context.Background(), nc, "tok"); err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	// A request whose deadline (1 ns) has passed when it is served is
	// answered with Timeout without running the handler.
	nc.Write(requestFrame(1, 1, 1, "x", nil))
	if h, _ := readFrame(t, nc); h.id != 1 || h.status != proto.Timeout {
		t.Fatalf("expired request: %+v", h)
	}
	if calls.Load() != 0 {
		t.Fatal("handler ran for an expired request")
	}
	// A canceled request is not answered; the next one is.
	nc.Write(requestFrame(2, 2, 0, nil, nil))
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	nc.Write(cancelFrame(2))
	nc.Write(requestFrame(3, 1, uint64(time.Minute), "y", []byte("pay")))
	h, rest := readFrame(t, nc)
	if h.id != 3 || h.status != proto.OK || string(rest[h.bodyLen:]) != "pay" {
		t.Fatalf("response %+v %q", h, rest)
	}
	// A duplicate id in flight is a protocol error: the connection is
	// closed (after the first request 4 is answered Canceled).
	nc.Write(requestFrame(4, 2, 0, nil, nil))
	nc.Write(requestFrame(4, 2, 0, nil, nil))
	if h, _ := readFrame(t, nc); h.id != 4 || h.status != proto.Canceled {
		t.Fatalf("duplicate id: %+v", h)
	}
	if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
		t.Fatalf("duplicate id: %q %v", b, err)
	}
}

func TestProtocolVersionRefused(t *testing.T) {
	_, addr, _ := rawServer(t, ServerOptions{})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(helloFrame(ProtocolVersion+1, "tok"))
	h, body := readFrame(t, nc)
	var msg string
	if h.kind != kindWelcome || h.status != proto.ProtocolVersion || decodeBody(body, &msg) != nil || msg == "" {
		t.Fatalf("welcome %+v %q", h, body)
	}
	// A frame of another frame format version gets the same answer.
	nc2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	nc2.SetDeadline(time.Now().Add(5 * time.Second))
	f := helloFrame(ProtocolVersion, "tok")
	f[1] = frameVersion + 1
	nc2.Write(f)
	var hb [headerSize]byte
	if _, err := io.ReadFull(nc2, hb[:]); err != nil || binary.LittleEndian.Uint16(hb[6:]) != uint16(proto.ProtocolVersion) {
		t.Fatalf("frame version: %v %x", err, hb)
	}
}

func TestHandshakeTimeout(t *testing.T) {
	_, addr, _ := rawServer(t, ServerOptions{HandshakeTimeout: 100 * time.Millisecond})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if b, err := io.ReadAll(nc); err != nil || len(b) != 0 || time.Since(start) > 2*time.Second {
		t.Fatalf("silent client not dropped: %q %v after %v", b, err, time.Since(start))
	}
}

func TestBufPool(t *testing.T) {
	var p bufPool
	for _, n := range []int{0, 1, 4096, 4097, 1 << 20, (1 << 20) + 1, 64 << 20, 64<<20 + 1} {
		b := p.get(n)
		if len(*b) != n {
			t.Fatalf("get(%d) len %d", n, len(*b))
		}
		p.put(b)
		b = p.get(n)
		if len(*b) != n {
			t.Fatalf("get(%d) after put: len %d", n, len(*b))
		}
	}
}

// FuzzDecodeHeader checks that decodeHeader never panics and that whatever it
// accepts re-encodes to the same bytes.
func FuzzDecodeHeader(f *testing.F) {
	for _, b := range seedHeaders() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			if proto.CodeOf(err) != proto.BadRequest && proto.CodeOf(err) != proto.ProtocolVersion {
				t.Fatalf("unexpected error code: %v", err)
			}
			return
		}
		out := make([]byte, headerSize)
		encodeHeader(out, h)
		if !bytes.Equal(out, b[:headerSize]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", out, b[:headerSize])
		}
		_ = h.checkLimits(DefaultMaxBody, DefaultMaxPayload)
	})
}

func seedHeaders() [][]byte {
	var seeds [][]byte
	for _, h := range []header{
		{kind: kindHello, bodyLen: 40},
		{kind: kindWelcome, bodyLen: 30},
		{kind: kindRequest, id: 1, method: 1, bodyLen: 10, payloadLen: 1 << 20, timeout: uint64(time.Second)},
		{kind: kindResponse, id: 1, method: 1, status: proto.ENOENT, bodyLen: 10},
		{kind: kindCancel, id: 9},
		{kind: kindChallenge, bodyLen: 40},
		{kind: kindProof, bodyLen: 50},
	} {
		b := make([]byte, headerSize)
		encodeHeader(b, h)
		seeds = append(seeds, b)
	}
	return append(seeds, []byte{}, []byte("GET / HTTP/1.1\r\n\r\n0123456789abcdef"))
}

// fuzzLimits keep the connection fuzzer's memory use small and bounded.
const (
	fuzzMaxBody    = 64 << 10
	fuzzMaxPayload = 256 << 10
	fuzzInFlight   = 8
)

// FuzzServerConn feeds arbitrary bytes as a whole client stream to a real
// server connection and checks that the server neither panics (a handler
// panic is recovered, but a crash in the reader is not) nor hangs, and that
// its allocations stay bounded by its limits.
func FuzzServerConn(f *testing.F) {
	for _, s := range seedStreams() {
		f.Add(s)
	}
	s := NewServer(ServerOptions{
		Auth:             NewStaticTokens(map[string]Identity{"fuzz-token": {UID: 1}}),
		MaxBody:          fuzzMaxBody,
		MaxPayload:       fuzzMaxPayload,
		MaxInFlight:      fuzzInFlight,
		HandshakeTimeout: 2 * time.Second,
		WriteTimeout:     2 * time.Second,
	})
	fixedNonce(s)
	s.Handle(1, AccessUser, func(ctx context.Context, req *Request) (*Response, error) {
		var v any
		if err := req.Decode(&v); err != nil {
			return nil, err
		}
		return &Response{Body: v, Payload: [][]byte{req.Payload}}, nil
	})
	s.Handle(2, AccessUser, func(ctx context.Context, req *Request) (*Response, error) {
		var m struct {
			A []uint64
			B map[string][]byte
			C []struct{ X, Y string }
		}
		return nil, req.Decode(&m)
	})
	f.Fuzz(func(t *testing.T, stream []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)

		client, server := net.Pipe()
		done := make(chan struct{})
		sc := s.newServerConn(server)
		go func() {
			defer close(done)
			sc.serve()
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, client)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, _ = client.Write(stream)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("server connection did not finish")
		}
		<-drained

		runtime.ReadMemStats(&after)
		// Each request holds at most its body and payload (plus a pooled
		// buffer of at most twice that) and a response of the same size.
		limit := uint64(8*fuzzInFlight*(fuzzMaxBody+fuzzMaxPayload) + len(stream)*64 + 8<<20)
		if d := after.TotalAlloc - before.TotalAlloc; d > limit {
			t.Fatalf("allocated %d bytes for a %d-byte stream (limit %d)", d, len(stream), limit)
		}
	})
}

// seedStreams are the checked-in seeds of FuzzServerConn: valid
// conversations (so mutations reach the request path) and broken ones.
func seedStreams() [][]byte {
	hello := authFrames("fuzz-token")
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	type three struct {
		A []uint64
		B map[string][]byte
		C []struct{ X, Y string }
	}
	return [][]byte{
		hello,
		cat(hello, requestFrame(1, 1, 0, map[string]any{"a": 1, "b": "two"}, nil)),
		cat(hello, requestFrame(1, 1, uint64(time.Second), []int{1, 2, 3}, []byte("payload bytes"))),
		cat(hello, requestFrame(1, 2, 0, three{A: []uint64{1}, B: map[string][]byte{"k": {1}}, C: []struct{ X, Y string }{{"x", "y"}}}, nil)),
		cat(hello, requestFrame(1, 1, 0, "a", nil), requestFrame(2, 9, 0, nil, nil), cancelFrame(1), requestFrame(3, 1, 1, nil, make([]byte, 100))),
		cat(hello, requestFrame(1, 1, 0, "dup", nil), requestFrame(1, 1, 0, "dup", nil)),
		authFrames("wrong-token"),
		helloFrame(ProtocolVersion, "fuzz-token"),
		helloFrame(ProtocolVersion+1, "fuzz-token"),
		helloFrame(1, "fuzz-token"),
		requestFrame(1, 1, 0, "no hello", nil),
		cat(hello, []byte{0xF3, 1, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}),
		cat(hello, requestFrame(1, 2, 0, nil, nil)[:headerSize], []byte{0xdd, 0xff, 0xff, 0xff, 0xff}),
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	}
}

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz when
// FFF_WRITE_FUZZ_SEEDS=1; the files are checked in.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("FFF_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set FFF_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzDecodeHeader", seedHeaders())
	write("FuzzServerConn", seedStreams())
}
