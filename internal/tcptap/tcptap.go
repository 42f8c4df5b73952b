// Package tcptap is a TCP proxy for tests that sees every byte: it
// forwards each connection it accepts to a target, records what crosses
// it both ways, and can hold a piece back before forwarding it (to slow
// or stall a stream). Tests use it to check what travels in clear, to
// replay a client's bytes, and to shape a transfer.
package tcptap

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Dir is a direction of a connection through the tap.
type Dir int

const (
	Up   Dir = iota // client → server
	Down            // server → client
)

// Tap is a running proxy; it stops when the test ends.
type Tap struct {
	Addr string // where clients connect

	gate      func(d Dir, forwarded int64)
	forwarded [2]atomic.Int64
	mu        sync.Mutex
	conns     [][2][]byte
}

// Start starts a tap in front of target. gate, if not nil, is called
// before each piece is forwarded, with its direction and the bytes that
// direction has forwarded so far on every connection; it may block.
func Start(tb testing.TB, target string, gate func(d Dir, forwarded int64)) *Tap {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	t := &Tap{Addr: l.Addr().String(), gate: gate}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			cc, err := l.Accept()
			if err != nil {
				return
			}
			sc, err := net.Dial("tcp", target)
			if err != nil {
				cc.Close()
				continue
			}
			tb.Cleanup(func() { cc.Close(); sc.Close() })
			t.mu.Lock()
			i := len(t.conns)
			t.conns = append(t.conns, [2][]byte{})
			t.mu.Unlock()
			go t.pipe(cc, sc, i, Up)
			go t.pipe(sc, cc, i, Down)
		}
	}()
	return t
}

// pipe copies from → to, recording each piece before forwarding it: once
// the other side has answered a piece, the record holds it.
func (t *Tap) pipe(from, to net.Conn, i int, d Dir) {
	defer to.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			t.mu.Lock()
			t.conns[i][d] = append(t.conns[i][d], buf[:n]...)
			t.mu.Unlock()
			if t.gate != nil {
				t.gate(d, t.forwarded[d].Load())
			}
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
			t.forwarded[d].Add(int64(n))
		}
		if err != nil {
			return
		}
	}
}

// Forwarded returns the bytes forwarded in direction d so far.
func (t *Tap) Forwarded(d Dir) int64 { return t.forwarded[d].Load() }

// Sent returns what the client sent on connection i (in accept order).
func (t *Tap) Sent(i int) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.conns[i][Up])
}

// All returns every recorded byte, both ways, and the number of
// connections.
func (t *Tap) All() ([]byte, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b []byte
	for _, c := range t.conns {
		b = append(append(b, c[Up]...), c[Down]...)
	}
	return b, len(t.conns)
}
