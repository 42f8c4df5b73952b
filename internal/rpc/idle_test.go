package rpc_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// TestIdleGoaway: a connection idle for IdleTimeout is sent a goaway; the
// client closes it, and the pool's next call goes on a new connection
// without the caller seeing anything. A connection with a call in flight
// longer than IdleTimeout is not idle.
func TestIdleGoaway(t *testing.T) {
	// The grace is long: within the test only the client closes.
	_, h, addr := startServer(t, rpc.ServerOptions{IdleTimeout: 100 * time.Millisecond, GoawayGrace: time.Minute})
	pool := rpc.NewPool(addr, testToken, rpc.PoolOptions{Size: 1, Client: rpc.ClientOptions{TCPOnly: true}})
	defer pool.Close()
	ctx := ctxT(t)
	first, err := pool.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var id rpc.Identity
	if _, err := pool.Call(ctx, mWhoAmI, nil, &id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection was not closed")
	}
	if err := first.Err(); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("the closed connection's error: %v", err)
	}
	if _, err := pool.Call(ctx, mWhoAmI, nil, &id); err != nil || id.Name != "alice" {
		t.Fatalf("a call after the goaway: %+v %v", id, err)
	}
	second, err := pool.Get(ctx)
	if err != nil || second == first {
		t.Fatalf("the pool kept the closed connection: %v", err)
	}

	// A call in flight for several idle timeouts keeps its connection.
	done := make(chan error, 1)
	go func() {
		var s string
		_, err := second.Call(ctx, mSlow, nil, &s)
		done <- err
	}()
	waitFor(t, func() bool { return h.calls.Load() == 3 })
	time.Sleep(400 * time.Millisecond) // four idle timeouts
	if second.GoingAway() || second.Err() != nil {
		t.Fatalf("a connection with a call in flight was sent a goaway (%v)", second.Err())
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatalf("the slow call: %v", err)
	}
}

// TestIdleIgnoredGoaway: a client that ignores the goaway (a raw
// connection, authenticated) loses the connection GoawayGrace later.
func TestIdleIgnoredGoaway(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{IdleTimeout: 50 * time.Millisecond, GoawayGrace: 100 * time.Millisecond})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := rpc.ClientHandshake(ctxT(t), nc, testToken); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hb [32]byte
	if _, err := io.ReadFull(nc, hb[:]); err != nil {
		t.Fatalf("no goaway: %v", err)
	}
	if hb[2] != 8 {
		t.Fatalf("frame of kind %d, want a goaway (8)", hb[2])
	}
	if n, err := nc.Read(hb[:]); err != io.EOF {
		t.Fatalf("after the grace: %d bytes, %v; want the connection closed", n, err)
	}
}
