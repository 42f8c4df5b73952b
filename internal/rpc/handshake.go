package rpc

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"fff/internal/proto"
)

// The handshake (docs/wire.md#handshake-and-authentication) is a
// challenge-response in the manner of SCRAM: the token never crosses the
// wire, and a recorded handshake is worthless on another connection.
//
//	client → hello     {version, id, nonce, limits}   id = LookupID(SHA-256(token))
//	server → challenge {nonce}                        fresh random, even for an unknown id
//	client → proof     {proof}                        token XOR pad(key, transcript)
//	server → welcome   {limits, socket, proof}        or a refusal (error status)
//
// The transcript binds the version, the id, both nonces and, under TLS,
// the TLS session (an exporter value), so a proof is good for one
// connection only. The server recovers the token from the proof with the
// stored key and accepts it if its SHA-256 is that key; its own proof shows
// the client that it holds the key too.

const (
	nonceSize = 32
	// MaxTokenLen bounds a token's length: the proof carries as many bytes.
	MaxTokenLen = 1024
	// bindingLabel is the TLS exporter label of the channel binding.
	bindingLabel = "EXPORTER-fff-auth"
)

// hello is the body of the client's first frame.
type hello struct {
	Version    uint16 `msgpack:"version"`
	ID         []byte `msgpack:"id"`          // LookupID of the token's StoredKey
	Nonce      []byte `msgpack:"nonce"`       // the client's nonce
	MaxBody    uint32 `msgpack:"max_body"`    // largest response body the client accepts
	MaxPayload uint32 `msgpack:"max_payload"` // largest response payload it allocates for
}

// challenge is the server's answer to a hello it can continue.
type challenge struct {
	Nonce []byte `msgpack:"nonce"`
}

// proof is the client's answer to the challenge.
type proof struct {
	Proof []byte `msgpack:"proof"`
}

// welcome is the body of the server's successful handshake answer. A refusal
// carries a non-OK status and a msgpack string body instead.
type welcome struct {
	Version    uint16 `msgpack:"version"`
	MaxBody    uint32 `msgpack:"max_body"`    // largest request body the server accepts
	MaxPayload uint32 `msgpack:"max_payload"` // largest request payload it accepts
	// Socket is the server's Unix socket, announced only on loopback TCP
	// connections (ServerOptions.LocalSocket).
	Socket string `msgpack:"socket,omitempty"`
	// Proof is the server's proof that it holds the token's StoredKey.
	Proof []byte `msgpack:"proof"`
}

// transcript is what both proofs are bound to. Every field but the
// binding has a fixed size, so the concatenation is unambiguous.
func transcript(version uint16, id LookupID, cnonce, snonce, binding []byte) []byte {
	b := make([]byte, 0, 64+len(id)+len(cnonce)+len(snonce)+len(binding))
	b = append(b, "fff-auth"...)
	b = binary.LittleEndian.AppendUint16(b, version)
	b = append(b, id[:]...)
	b = append(b, cnonce...)
	b = append(b, snonce...)
	b = append(b, byte(len(binding)))
	return append(b, binding...)
}

// proofKeys derives from key and the transcript the pad of n bytes that
// hides the token in the client's proof, and the server's proof.
func proofKeys(key StoredKey, tr []byte, n int) (pad, server []byte) {
	m := hmac.New(sha256.New, key[:])
	m.Write(tr)
	prk := m.Sum(nil)
	// n ≤ MaxTokenLen and 32 are far below HKDF's limit: no error.
	pad, _ = hkdf.Expand(sha256.New, prk, "fff-auth client pad", n)
	server, _ = hkdf.Expand(sha256.New, prk, "fff-auth server proof", sha256.Size)
	return pad, server
}

// clientProof returns the client's proof of token and the server proof it
// expects.
func clientProof(token string, tr []byte) (p, server []byte) {
	pad, server := proofKeys(KeyOf(token), tr, len(token))
	p = make([]byte, len(token))
	subtle.XORBytes(p, []byte(token), pad)
	return p, server
}

// checkProof recovers the token from p with key and reports whether it is
// key's token, in time that does not depend on how much of it is right; it
// also returns the server's proof.
func checkProof(key StoredKey, tr, p []byte) (ok bool, server []byte) {
	n := min(max(len(p), 1), MaxTokenLen)
	pad, server := proofKeys(key, tr, n)
	tok := make([]byte, n)
	subtle.XORBytes(tok, p, pad)
	sum := sha256.Sum256(tok)
	ok = subtle.ConstantTimeCompare(sum[:], key[:]) == 1
	return ok && len(p) == n, server
}

// channelBinding returns the TLS exporter value of nc's session, or nil
// on a connection without TLS.
func channelBinding(nc net.Conn) []byte {
	tc, ok := nc.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	b, err := st.ExportKeyingMaterial(bindingLabel, nil, 32)
	if err != nil {
		return nil // TLS 1.2 without extended master secret: both sides agree on none
	}
	return b
}

func randomNonce() []byte {
	b := make([]byte, nonceSize)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// writeHandshakeFrame writes one handshake frame (hello, challenge, proof
// or welcome) with body v.
func writeHandshakeFrame(w io.Writer, k kind, status proto.Code, v any) error {
	b, err := appendBody(make([]byte, headerSize, 256), v)
	if err != nil {
		return err
	}
	if len(b)-headerSize > maxHandshakeBody {
		return proto.Errorf(proto.TooLarge, "rpc: %v body of %d bytes", k, len(b)-headerSize)
	}
	encodeHeader(b, header{kind: k, status: status, bodyLen: uint32(len(b) - headerSize)})
	_, err = w.Write(b)
	return err
}

// readHandshakeFrame reads one handshake frame from r. Malformed frames
// give a *proto.Error; anything else is an I/O error.
func readHandshakeFrame(r io.Reader) (header, []byte, error) {
	var hb [headerSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return header{}, nil, err
	}
	return readHandshakeRest(r, hb)
}

// readHandshakeRest reads the body of the handshake frame whose header is
// hb.
func readHandshakeRest(r io.Reader, hb [headerSize]byte) (header, []byte, error) {
	h, err := decodeHeader(hb[:])
	if err != nil {
		return header{}, nil, err
	}
	switch h.kind {
	case kindHello, kindChallenge, kindProof, kindWelcome:
	default:
		return header{}, nil, errFrame("%v frame during the handshake", h.kind)
	}
	body := make([]byte, h.bodyLen) // at most maxHandshakeBody (decodeHeader)
	if _, err := io.ReadFull(r, body); err != nil {
		return header{}, nil, err
	}
	return h, body, nil
}

// clientHandshake runs the client's side of the handshake on nc (already
// under TLS if wanted), reading through r, and returns the server's
// welcome. Errors are *proto.Error for refusals and protocol errors, I/O
// errors otherwise.
func clientHandshake(nc net.Conn, r io.Reader, token string, maxBody, maxPayload int) (welcome, error) {
	if len(token) > MaxTokenLen {
		return welcome{}, proto.Errorf(proto.TooLarge, "rpc: token of %d bytes (at most %d)", len(token), MaxTokenLen)
	}
	id := KeyOf(token).LookupID()
	cnonce := randomNonce()
	if err := writeHandshakeFrame(nc, kindHello, proto.OK, hello{
		Version: ProtocolVersion, ID: id[:], Nonce: cnonce,
		MaxBody: uint32(maxBody), MaxPayload: uint32(maxPayload),
	}); err != nil {
		return welcome{}, fmt.Errorf("send hello: %w", err)
	}
	h, body, err := readHandshakeFrame(r)
	if err != nil {
		return welcome{}, fmt.Errorf("read challenge: %w", err)
	}
	if h.kind == kindWelcome && h.status != proto.OK {
		return welcome{}, refusal(h, body)
	}
	if h.kind != kindChallenge {
		return welcome{}, errFrame("%v instead of a challenge", h.kind)
	}
	var ch challenge
	if err := decodeBody(body, &ch); err != nil {
		return welcome{}, err
	}
	if len(ch.Nonce) != nonceSize {
		return welcome{}, errFrame("challenge nonce of %d bytes", len(ch.Nonce))
	}
	tr := transcript(ProtocolVersion, id, cnonce, ch.Nonce, channelBinding(nc))
	p, want := clientProof(token, tr)
	if err := writeHandshakeFrame(nc, kindProof, proto.OK, proof{Proof: p}); err != nil {
		return welcome{}, fmt.Errorf("send proof: %w", err)
	}
	if h, body, err = readHandshakeFrame(r); err != nil {
		return welcome{}, fmt.Errorf("read welcome: %w", err)
	}
	if h.kind != kindWelcome {
		return welcome{}, errFrame("%v instead of a welcome", h.kind)
	}
	if h.status != proto.OK {
		return welcome{}, refusal(h, body)
	}
	var wl welcome
	if err := decodeBody(body, &wl); err != nil {
		return welcome{}, err
	}
	if wl.Version != ProtocolVersion {
		return welcome{}, proto.Errorf(proto.ProtocolVersion, "server speaks protocol version %d, client %d", wl.Version, ProtocolVersion)
	}
	if !hmac.Equal(wl.Proof, want) {
		return welcome{}, proto.Errorf(proto.Unauthenticated, "the server did not prove that it knows the token: not a server of this cluster")
	}
	return wl, nil
}

func refusal(h header, body []byte) error {
	var msg string
	_ = decodeBody(body, &msg)
	return &proto.Error{Code: h.status, Msg: msg}
}

// ClientHandshake runs a client's handshake with token on nc, an
// established connection (under TLS if the server wants it), and leaves nc
// right after the server's welcome, ready for request frames. It is for
// tools and tests that write raw frames; Dial does it by itself. It reads
// exactly the server's frames, nothing beyond them.
func ClientHandshake(ctx context.Context, nc net.Conn, token string) error {
	deadline := time.Now().Add(DefaultHandshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Now()) })
	_, err := clientHandshake(nc, nc, token, DefaultMaxBody, DefaultMaxPayload)
	if !stop() && err != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	_ = nc.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("rpc: handshake: %w", err)
	}
	return nil
}
