package rpc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"fff/internal/proto"
)

// DefaultPoolSize is the number of connections a Pool keeps per server.
const DefaultPoolSize = 4

// PoolOptions configure a Pool.
type PoolOptions struct {
	// Size is the number of connections (default DefaultPoolSize).
	Size int
	// Client configures each connection.
	Client ClientOptions
}

// Pool is a small set of connections to one server. Calls are spread over
// the connections round-robin and pipelined on each. Connections are dialed
// on first use and redialed, on the next call that picks them, after they
// fail. A Pool is safe for concurrent use.
type Pool struct {
	addr, token string
	opts        ClientOptions
	slots       []poolSlot
	next        atomic.Uint64
	closed      atomic.Bool

	mu     sync.Mutex
	cut    context.Context // canceled by Reset: dials in progress give up
	end    context.CancelFunc
	resets atomic.Uint64 // Reset calls: a call failed by one is not retried
}

type poolSlot struct {
	conn atomic.Pointer[Conn]
	dial chan struct{} // 1-token semaphore: one dial per slot at a time
}

// NewPool returns a pool for the server at addr, authenticating with token.
// It dials nothing yet.
func NewPool(addr, token string, opts PoolOptions) *Pool {
	if opts.Size <= 0 {
		opts.Size = DefaultPoolSize
	}
	p := &Pool{addr: addr, token: token, opts: opts.Client, slots: make([]poolSlot, opts.Size)}
	p.cut, p.end = context.WithCancel(context.Background())
	for i := range p.slots {
		p.slots[i].dial = make(chan struct{}, 1)
	}
	return p
}

// Addr returns the server address.
func (p *Pool) Addr() string { return p.addr }

// Get returns a healthy connection, dialing one if the slot whose turn it is
// has none.
func (p *Pool) Get(ctx context.Context) (*Conn, error) {
	if p.closed.Load() {
		return nil, p.errClosed()
	}
	s := &p.slots[p.next.Add(1)%uint64(len(p.slots))]
	if c := s.conn.Load(); c != nil && c.usable() {
		return c, nil
	}
	select {
	case s.dial <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("rpc: pool %s: %w: %w", p.addr, ctx.Err(), proto.CodeOf(ctx.Err()).Err())
	}
	defer func() { <-s.dial }()
	if c := s.conn.Load(); c != nil && c.usable() {
		return c, nil // dialed by someone else meanwhile
	}
	p.mu.Lock()
	cut := p.cut
	p.mu.Unlock()
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(cut, cancel)()
	c, err := Dial(dctx, p.addr, p.token, p.opts)
	if err != nil {
		if cut.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("rpc: pool %s: %w: dial abandoned (the pool was reset)", p.addr, proto.ErrUnavailable)
		}
		return nil, err
	}
	// A connection the server sent a goaway closes itself once its calls
	// have ended; any other old one is dead already.
	if old := s.conn.Swap(c); old != nil && old.usable() {
		old.Close()
	}
	if p.closed.Load() { // Close ran concurrently and may have missed c
		c.Close()
		return nil, p.errClosed()
	}
	return c, nil
}

func (p *Pool) errClosed() error {
	return fmt.Errorf("rpc: pool %s: %w: pool closed", p.addr, proto.ErrUnavailable)
}

// ErrNotSent marks a Pool.Call error after which the server surely did not
// see the request (the dial or the handshake failed, or the connection died
// before any of it was written): such a call may be repeated whatever the
// method does.
var ErrNotSent = errors.New("rpc: request not sent")

// Call is Conn.Call on a connection from the pool. A call that failed
// because its connection had died before any of the request was sent is
// retried once on another (possibly redialed) connection, unless Reset
// failed it; nothing else is retried. Errors of calls that never left satisfy errors.Is(err,
// ErrNotSent).
func (p *Pool) Call(ctx context.Context, method uint16, req, resp any, opts ...CallOption) (int, error) {
	var err error
	resets := p.resets.Load()
	for attempt := 0; attempt < 2 && (attempt == 0 || p.resets.Load() == resets); attempt++ {
		var c *Conn
		c, err = p.Get(ctx)
		if err != nil {
			return 0, fmt.Errorf("%w (%w)", err, ErrNotSent)
		}
		var n int
		var sent bool
		n, sent, err = c.call(ctx, method, req, resp, opts)
		if err == nil || sent || proto.CodeOf(err) != proto.Unavailable {
			return n, err
		}
	}
	return 0, fmt.Errorf("%w (%w)", err, ErrNotSent)
}

// Reset closes the pool's connections, failing the calls in flight on them
// and the dials in progress (proto.Unavailable); later calls dial again. For a server known dead or
// hung, whose connections would otherwise wait for their timeouts.
// It returns how many connections it closed.
func (p *Pool) Reset() int {
	p.resets.Add(1)
	p.mu.Lock()
	p.end()
	p.cut, p.end = context.WithCancel(context.Background())
	p.mu.Unlock()
	n := 0
	for i := range p.slots {
		if c := p.slots[i].conn.Swap(nil); c != nil {
			c.Close()
			n++
		}
	}
	return n
}

// Close closes every connection; later calls fail with proto.Unavailable.
func (p *Pool) Close() error {
	p.closed.Store(true)
	p.Reset()
	return nil
}
