package rpc_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/certs"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/tcptap"
)

// TestHandshakeReplayRefused: the bytes a client sent for one successful
// handshake, recorded on the wire, hold no token, and replayed on a new
// connection they are refused with Unauthenticated: the server's
// challenge is new, so the recorded proof does not answer it.
func TestHandshakeReplayRefused(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{})
	p := tcptap.Start(t, addr, nil)
	c := dial(t, p.Addr, rpc.ClientOptions{TCPOnly: true})
	var id rpc.Identity
	if _, err := c.Call(ctxT(t), mWhoAmI, nil, &id); err != nil || id.Name != "alice" {
		t.Fatalf("through the proxy: %+v %v", id, err)
	}
	rec := p.Sent(0)
	if bytes.Contains(rec, []byte(testToken)) {
		t.Fatal("the token crossed the wire")
	}
	calls := h.calls.Load()

	// Replayed whole (hello, proof, the request) on a new connection.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(rec); err != nil {
		t.Fatal(err)
	}
	ch, err := rpc.TestFrames.Read(nc)
	if err != nil || rpc.TestFrames.Kind(ch) != 6 {
		t.Fatalf("challenge: %x %v", ch, err)
	}
	b, _ := io.ReadAll(nc)
	if code := rpc.TestFrames.Status(b); code != proto.Unauthenticated {
		t.Fatalf("replayed handshake: status %v, want Unauthenticated", code)
	}
	if n := h.calls.Load(); n != calls {
		t.Fatalf("%d handlers ran for the replay", n-calls)
	}
}

// TestHandshakeRefusalsAlike: an unknown token and a known token with a
// wrong proof get the same challenge-then-refusal, byte for byte after the
// challenge, so a prober learns nothing about which tokens exist.
func TestHandshakeRefusalsAlike(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	refusal := func(token string, corrupt bool) []byte {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		nc.Write(rpc.TestFrames.Hello(token))
		ch, err := rpc.TestFrames.Read(nc)
		if err != nil || rpc.TestFrames.Kind(ch) != 6 {
			t.Fatalf("%q: challenge %x %v", token, ch, err)
		}
		pf := rpc.TestFrames.Proof(token, ch)
		if corrupt {
			pf[len(pf)-1] ^= 1 // the proof's last byte
		}
		nc.Write(pf)
		b, _ := io.ReadAll(nc)
		return b
	}
	unknown := refusal("nobody's token", false)
	wrong := refusal(testToken, true)
	if rpc.TestFrames.Status(unknown) != proto.Unauthenticated || !bytes.Equal(unknown, wrong) {
		t.Fatalf("refusals differ:\nunknown token %x\nwrong proof   %x", unknown, wrong)
	}
}

// TestHandshakeServerProof: a server that does not hold the token's key
// (one that only pretends to be the cluster's) is detected by the client.
func TestHandshakeServerProof(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		nc, err := l.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := rpc.TestFrames.Read(nc); err != nil { // hello
			return
		}
		nc.Write(rpc.TestFrames.Challenge(bytes.Repeat([]byte{1}, 32)))
		if _, err := rpc.TestFrames.Read(nc); err != nil { // proof
			return
		}
		nc.Write(rpc.TestFrames.Welcome(bytes.Repeat([]byte{2}, 32)))
		io.Copy(io.Discard, nc)
	}()
	_, err = rpc.Dial(ctxT(t), l.Addr().String(), testToken, rpc.ClientOptions{})
	if !errors.Is(err, proto.ErrUnauthenticated) || !strings.Contains(err.Error(), "did not prove") {
		t.Fatalf("a server without the key: %v", err)
	}
}

// TestHandshakeOldClient: a client of protocol version 1 (the token in its
// hello) is refused with ProtocolVersion and a message saying why.
func TestHandshakeOldClient(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	body, err := msgpack.Marshal(map[string]any{"version": 1, "token": testToken, "max_body": 1 << 20, "max_payload": 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	nc.Write(append(rpc.TestFrames.Header(1, 0, 0, 0, uint32(len(body)), 0), body...))
	b, err := rpc.TestFrames.Read(nc)
	if err != nil || rpc.TestFrames.Status(b) != proto.ProtocolVersion || !bytes.Contains(b, []byte("protocol version 1 not supported")) {
		t.Fatalf("old client: %q %v", b, err)
	}
}

// TestHandshakeStalls: a client that sends its hello and never its proof,
// or starts TLS and stops, is closed after the handshake timeout.
func TestHandshakeStalls(t *testing.T) {
	pki := newPKI(t)
	for _, tc := range []struct {
		name  string
		opts  rpc.ServerOptions
		first []byte
	}{
		{"no proof", rpc.ServerOptions{}, rpc.TestFrames.Hello(testToken)},
		{"silent under TLS", rpc.ServerOptions{TLS: pki.server(t, false)}, nil},
		{"half a TLS hello", rpc.ServerOptions{TLS: pki.server(t, false)}, []byte{0x16, 3, 1, 0, 200, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.HandshakeTimeout = 200 * time.Millisecond
			_, _, addr := startServer(t, tc.opts)
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(tc.first)
			nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, err = io.Copy(io.Discard, nc)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("the server kept a stalled handshake open")
			}
		})
	}
}

// pki is a cluster's TLS material made by certs.Ensure.
type pki struct{ dir string }

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	if _, err := certs.Ensure(dir, []string{"127.0.0.1", "localhost"}); err != nil {
		t.Fatal(err)
	}
	return pki{dir}
}

func (p pki) file(name string) string { return filepath.Join(p.dir, name) }

func (p pki) server(t *testing.T, clientAuth bool) *tls.Config {
	t.Helper()
	cfg, err := certs.ServerConfig(p.file(certs.NodeFile), p.file(certs.NodeKey), p.file(certs.CAFile), clientAuth)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// client trusts p's CA; with cert, it presents the node certificate.
func (p pki) client(t *testing.T, cert bool) *tls.Config {
	t.Helper()
	ca, err := certs.CAPEM(p.dir)
	if err != nil {
		t.Fatal(err)
	}
	var cf, kf string
	if cert {
		cf, kf = p.file(certs.NodeFile), p.file(certs.NodeKey)
	}
	cfg, err := certs.ClientConfig(ca, cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestTLS: a client that pins the cluster's CA talks to a TLS server; one
// that trusts another CA, one without TLS and one of a server without TLS
// are refused at once with errors that say why; with client_auth a client
// without a certificate is refused and a node's certificate accepted; a
// client on the same host still moves to the (plaintext) Unix socket.
func TestTLS(t *testing.T) {
	p, other := newPKI(t), newPKI(t)
	_, h, addr := startServer(t, rpc.ServerOptions{TLS: p.server(t, false)})
	_, _, plainAddr := startServer(t, rpc.ServerOptions{})
	_, _, mutualAddr := startServer(t, rpc.ServerOptions{TLS: p.server(t, true)})

	echo := func(t *testing.T, c *rpc.Conn) {
		t.Helper()
		in := pattern(3<<20, 9)
		dst := make([]byte, len(in))
		n, err := c.Call(ctxT(t), mEcho, echoMsg{N: 1}, nil, rpc.WithPayload(in), rpc.IntoBuffer(dst))
		if err != nil || n != len(in) || !bytes.Equal(dst, in) {
			t.Fatalf("echo: n=%d err=%v", n, err)
		}
	}
	t.Run("pinned CA", func(t *testing.T) {
		c := dial(t, addr, rpc.ClientOptions{TLS: p.client(t, false), TCPOnly: true})
		if !c.TLS() {
			t.Fatal("connection without TLS")
		}
		echo(t, c)
	})
	t.Run("concurrent", func(t *testing.T) {
		// Many frames per batch: their records are gathered into few
		// writes (tlsTransport), in order.
		c := dial(t, addr, rpc.ClientOptions{TLS: p.client(t, false), TCPOnly: true})
		runConcurrent(t, 2000, func(ctx context.Context, m uint16, req, resp any, opts ...rpc.CallOption) (int, error) {
			return c.Call(ctx, m, req, resp, opts...)
		})
		big := make([]byte, 40<<20) // more than a batch gathers at once
		n, err := c.Call(ctxT(t), mGen, genReq{N: len(big), Seed: 3}, nil, rpc.IntoBuffer(big))
		if err != nil || n != len(big) || !bytes.Equal(big, pattern(len(big), 3)) {
			t.Fatalf("40 MiB response: n=%d err=%v", n, err)
		}
	})
	t.Run("by name", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(addr)
		c := dial(t, net.JoinHostPort("localhost", port), rpc.ClientOptions{TLS: p.client(t, false), TCPOnly: true})
		echo(t, c)
	})
	calls := h.calls.Load()
	for _, tc := range []struct {
		name, addr string
		tls        *tls.Config
		code       proto.Code
		tlsErr     bool
		says       string
	}{
		{"wrong CA", addr, other.client(t, false), proto.Unauthenticated, true, "not trusted"},
		{"client without TLS", addr, nil, proto.ProtocolVersion, false, "TLS connections only"},
		{"server without TLS", plainAddr, p.client(t, false), proto.ProtocolVersion, true, "does not use TLS"},
		{"mutual TLS, no certificate", mutualAddr, p.client(t, false), proto.Unauthenticated, true, "refused the TLS connection"},
		{"mutual TLS, another CA's certificate", mutualAddr, func() *tls.Config {
			c := p.client(t, false)
			c.Certificates = other.client(t, true).Certificates
			return c
		}(), proto.Unauthenticated, true, "refused the TLS connection"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := rpc.Dial(ctxT(t), tc.addr, testToken, rpc.ClientOptions{TLS: tc.tls, TCPOnly: true})
			if err == nil {
				c.Close()
				t.Fatal("connected")
			}
			if proto.CodeOf(err) != tc.code || errors.Is(err, rpc.ErrTLS) != tc.tlsErr || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("err = %v (code %v, TLS %v), want %v saying %q", err, proto.CodeOf(err), errors.Is(err, rpc.ErrTLS), tc.code, tc.says)
			}
			// Refused at once, not after the handshake timeout.
			if d := time.Since(start); d > rpc.DefaultHandshakeTimeout/2 {
				t.Fatalf("refused after %v", d)
			}
		})
	}
	if n := h.calls.Load(); n != calls {
		t.Fatalf("%d handlers ran for refused clients", n-calls)
	}
	t.Run("mutual TLS, node certificate", func(t *testing.T) {
		echo(t, dial(t, mutualAddr, rpc.ClientOptions{TLS: p.client(t, true), TCPOnly: true}))
	})
	t.Run("local socket", func(t *testing.T) {
		addr := serveLocal(t, filepath.Join(t.TempDir(), "s.sock"), rpc.ServerOptions{TLS: p.server(t, false)})
		c := dial(t, addr, rpc.ClientOptions{TLS: p.client(t, false)})
		if c.Transport() != "unix" || c.TLS() {
			t.Fatalf("transport %s, TLS %v: want the plaintext Unix socket", c.Transport(), c.TLS())
		}
		echo(t, c)
	})
}

// TestTLSChannelBinding: a relay that terminates TLS, even with a
// certificate the client trusts (a stolen node key), cannot pass a client's
// handshake on to the server: the proof is bound to the client's TLS
// session, which is not the one the server sees.
func TestTLSChannelBinding(t *testing.T) {
	p := newPKI(t)
	_, h, addr := startServer(t, rpc.ServerOptions{TLS: p.server(t, false)})
	l, err := tls.Listen("tcp", "127.0.0.1:0", p.server(t, false))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			cc, err := l.Accept()
			if err != nil {
				return
			}
			sc, err := tls.Dial("tcp", addr, p.client(t, false))
			if err != nil {
				cc.Close()
				continue
			}
			go func() { io.Copy(sc, cc); sc.Close() }()
			go func() { io.Copy(cc, sc); cc.Close() }()
		}
	}()
	_, err = rpc.Dial(ctxT(t), l.Addr().String(), testToken, rpc.ClientOptions{TLS: p.client(t, false), TCPOnly: true})
	if !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("through a TLS-terminating relay: %v", err)
	}
	if h.calls.Load() != 0 {
		t.Fatal("a handler ran")
	}
	// The relay itself works for a client that authenticates to the
	// server directly: only the relayed handshake fails.
	c := dial(t, addr, rpc.ClientOptions{TLS: p.client(t, false), TCPOnly: true})
	if _, err := c.Call(context.Background(), mWhoAmI, nil, nil); err != nil {
		t.Fatal(err)
	}
}
