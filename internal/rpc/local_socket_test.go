package rpc_test

import (
	"bytes"
	"net"
	"path/filepath"
	"testing"

	"fff/internal/rpc"
)

// TestLocalSocket: a client that reaches a server over loopback TCP moves to
// the Unix socket the server announces, unless it is told not to or the
// socket cannot be reached; every variant serves calls and payloads.
func TestLocalSocket(t *testing.T) {
	dir := t.TempDir()
	addr := serveLocal(t, filepath.Join(dir, "s.sock"), rpc.ServerOptions{})

	// A server announcing a socket nobody serves: clients stay on TCP.
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, _, ghostAddr := serveOn(t, gl, rpc.ServerOptions{LocalSocket: filepath.Join(dir, "gone.sock")})
	// A server without a socket.
	_, _, plainAddr := startServer(t, rpc.ServerOptions{})

	for _, tc := range []struct {
		name, addr string
		opts       rpc.ClientOptions
		want       string
	}{
		{"announced", addr, rpc.ClientOptions{}, "unix"},
		{"tcp only", addr, rpc.ClientOptions{TCPOnly: true}, "tcp"},
		{"socket gone", ghostAddr, rpc.ClientOptions{}, "tcp"},
		{"no socket", plainAddr, rpc.ClientOptions{}, "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, tc.addr, tc.opts)
			if got := c.Transport(); got != tc.want {
				t.Fatalf("transport %q, want %q", got, tc.want)
			}
			if c.Addr() != tc.addr {
				t.Fatalf("Addr %q, want the dialed %q", c.Addr(), tc.addr)
			}
			in := pattern(3<<20, 7)
			dst := make([]byte, len(in))
			var out echoMsg
			n, err := c.Call(ctxT(t), mEcho, echoMsg{N: len(in), S: "x"}, &out, rpc.WithPayload(in), rpc.IntoBuffer(dst))
			if err != nil || n != len(in) || !bytes.Equal(dst, in) {
				t.Fatalf("echo over %s: n=%d err=%v equal=%v", tc.want, n, err, bytes.Equal(dst, in))
			}
		})
	}

	// A wrong token is refused before any socket is announced.
	if _, err := rpc.Dial(ctxT(t), addr, "wrong", rpc.ClientOptions{}); err == nil {
		t.Fatal("a wrong token was accepted")
	}
}
