package rpc_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"fff/internal/rpc"
)

// Bounded resources (docs/security.md): a stalled request loses its
// connection, large requests of all connections share one byte budget that
// small ones bypass, and the number of connections is bounded.

// rawConn is an authenticated connection that writes whatever it is told.
func rawConn(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if err := rpc.ClientHandshake(ctxT(t), nc, testToken); err != nil {
		t.Fatal(err)
	}
	return nc
}

// closedByPeer reads (and drops) until the server closes nc, or fails the
// test after limit: the server's FrameTimeout is far shorter.
func closedByPeer(t *testing.T, nc net.Conn, limit time.Duration) {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(limit))
	_, err := io.Copy(io.Discard, nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a stalled connection open for %v", limit)
	}
}

// TestStalledRequestDisconnected: a peer that announces an 8 MiB payload,
// sends part of it and stops is disconnected after FrameTimeout, and what
// its request held is released; a peer that sends slowly but steadily is
// served.
func TestStalledRequestDisconnected(t *testing.T) {
	s, _, addr := startServer(t, rpc.ServerOptions{FrameTimeout: 300 * time.Millisecond, MaxPayload: 16 << 20})
	nc := rawConn(t, addr)
	nc.Write(rpc.TestFrames.Header(3, 1, mEcho, 0, 0, 8<<20))
	nc.Write(make([]byte, 1<<20))
	closedByPeer(t, nc, 20*time.Second)
	waitFor(t, func() bool { return rpc.HeldBytes(s) == 0 })
}

// TestTotalBudget: with MaxTotalBytes 4 MiB, a second 4 MiB request waits
// while a first one is held, small calls on other connections are served
// meanwhile, and the second runs once the first ends.
func TestTotalBudget(t *testing.T) {
	s, h, addr := startServer(t, rpc.ServerOptions{MaxTotalBytes: 4 << 20, FrameTimeout: -1})
	big := make([]byte, 4<<20) // the whole budget: nothing fits beside it
	errs := make(chan error, 2)
	for range 2 {
		c := dial(t, addr, rpc.ClientOptions{})
		go func() {
			_, err := c.Call(ctxT(t), mSlow, nil, nil, rpc.WithPayload(big))
			errs <- err
		}()
	}
	waitFor(t, func() bool { return rpc.BudgetWaits(s) > 0 })
	if held := rpc.HeldBytes(s); held > 4<<20 {
		t.Fatalf("server holds %d request bytes, budget 4 MiB", held)
	}
	small := dial(t, addr, rpc.ClientOptions{})
	if _, err := small.Call(ctxT(t), mEcho, echoMsg{N: 2}, nil); err != nil {
		t.Fatalf("a small call while the budget is full: %v", err)
	}
	close(h.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("a large call: %v", err)
		}
	}
	// Released once each response is written (after the caller has it).
	waitFor(t, func() bool { return rpc.HeldBytes(s) == 0 })
}

// TestMaxConns: a connection beyond MaxConns is closed at once; once one
// closes, a new one is served.
func TestMaxConns(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{MaxConns: 2})
	a := dial(t, addr, rpc.ClientOptions{})
	dial(t, addr, rpc.ClientOptions{})
	if c, err := rpc.Dial(ctxT(t), addr, testToken, rpc.ClientOptions{}); err == nil {
		c.Close()
		t.Fatal("a third connection was served with MaxConns 2")
	}
	a.Close()
	waitFor(t, func() bool {
		c, err := rpc.Dial(ctxT(t), addr, testToken, rpc.ClientOptions{})
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}
