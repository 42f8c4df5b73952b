package tests

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"fff/internal/rpc"
	"fff/libfff"
)

// TestLocalSocket: fffd local serves DATA/fffd.sock, a client on this host
// that dials its TCP address moves there, and data written over one
// transport reads back over the other.
func TestLocalSocket(t *testing.T) {
	c := startCluster(t)
	b, err := os.ReadFile(filepath.Join(c.data, "fffd.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ri struct{ Socket string }
	if err := json.Unmarshal(b, &ri); err != nil || ri.Socket != filepath.Join(c.data, "fffd.sock") {
		t.Fatalf("fffd.json socket %q (err %v), want DATA/fffd.sock", ri.Socket, err)
	}
	ctx := ctxFor(t)
	for _, tcpOnly := range []bool{false, true} {
		conn, err := rpc.Dial(ctx, c.addr, c.token, rpc.ClientOptions{TCPOnly: tcpOnly})
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]string{false: "unix", true: "tcp"}[tcpOnly]
		if got := conn.Transport(); got != want {
			t.Errorf("TCPOnly=%v: transport %q, want %q", tcpOnly, got, want)
		}
		conn.Close()
	}

	data := bytes.Repeat([]byte("fff over a unix socket "), 1<<18) // ~5.8 MiB, two chunks
	clients := map[bool]*libfff.Client{}
	for _, tcpOnly := range []bool{false, true} {
		cl, err := libfff.Connect(ctx, libfff.Options{Address: c.addr, Token: c.token, TCPOnly: tcpOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		clients[tcpOnly] = cl
	}
	for _, tcpOnly := range []bool{false, true} {
		name := map[bool]string{false: "/via-unix", true: "/via-tcp"}[tcpOnly]
		f, err := clients[tcpOnly].Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		// Read it back through the other transport.
		r, err := clients[!tcpOnly].OpenFile(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(data))
		if n, err := r.ReadAt(got, 0); n != len(data) || (err != nil && n != len(data)) {
			t.Fatalf("%s: read %d bytes: %v", name, n, err)
		}
		r.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: bytes differ across transports", name)
		}
	}
}
