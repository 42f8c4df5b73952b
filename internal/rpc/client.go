package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/proto"
)

const (
	// DefaultCallTimeout is the deadline of calls whose context has none.
	DefaultCallTimeout = 60 * time.Second
	// DefaultCancelGrace: see ClientOptions.CancelGrace.
	DefaultCancelGrace = 100 * time.Millisecond

	// readChunk bounds one read of a response payload into a caller's
	// buffer; between chunks the reader checks whether the call was canceled.
	readChunk = 1 << 20
)

// errAbandoned: the caller canceled while its payload was arriving.
var errAbandoned = errors.New("rpc: call abandoned")

// ClientOptions configure a Conn. The zero value of a field selects its
// default.
type ClientOptions struct {
	// Logger receives structured logs; the zero Logger discards them.
	Logger zerolog.Logger
	// MaxBody bounds a response body; MaxPayload bounds a response payload
	// the client allocates for (ReturnPayload). Payloads read IntoBuffer are
	// bounded by the buffer instead. Over-limit responses are discarded and
	// the call fails with proto.TooLarge; the connection stays up.
	MaxBody, MaxPayload int
	// DefaultTimeout is the deadline of calls whose context has none
	// (default 60 s; negative: no deadline). Every request carries its
	// deadline to the server.
	DefaultTimeout time.Duration
	// HandshakeTimeout bounds Dial's handshake (default 10 s), in addition
	// to Dial's context.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write (default 60 s; negative: no limit).
	WriteTimeout time.Duration
	// CancelGrace is how long a canceled call waits for a transfer of its
	// own memory that is under way (its request payload being written or its
	// response payload being read into its buffer). If the transfer is
	// still stuck then, the connection is closed, so that Call can return
	// without the buffer being touched afterwards. Default 100 ms.
	CancelGrace time.Duration
	// Dialer dials the TCP connection; nil uses a default net.Dialer.
	Dialer *net.Dialer
	// TCPOnly keeps a connection to a server on this host on loopback TCP
	// instead of switching to the Unix socket the server announces (see
	// ServerOptions.LocalSocket).
	TCPOnly bool
	// TLS, if set, runs TCP connections under TLS with this configuration:
	// RootCAs pins the cluster's CA; Certificates holds the client's
	// certificate for servers that require one (mutual TLS). An empty
	// ServerName is the dialed host. The Unix socket a server announces
	// is used without TLS.
	TLS *tls.Config
}

func (o *ClientOptions) normalize() {
	o.MaxBody = clampLimit(o.MaxBody, DefaultMaxBody, HardMaxBody)
	o.MaxPayload = clampLimit(o.MaxPayload, DefaultMaxPayload, HardMaxPayload)
	if o.DefaultTimeout == 0 {
		o.DefaultTimeout = DefaultCallTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.WriteTimeout < 0 {
		o.WriteTimeout = 0
	}
	if o.CancelGrace <= 0 {
		o.CancelGrace = DefaultCancelGrace
	}
}

// CallOption adjusts one call.
type CallOption func(*callConfig)

type callConfig struct {
	payload [][]byte
	dsts    [][]byte
	hasDst  bool
	out     *[]byte
}

// WithPayload sends p as the request's raw payload, after the body. The
// segments are written to the socket as they are (large ones without a copy)
// and must not change until Call returns.
func WithPayload(p ...[]byte) CallOption {
	return func(c *callConfig) { c.payload = p }
}

// IntoBuffer makes the connection's reader read the response payload straight
// from the socket into dst[:n]; Call returns n. A payload larger than dst is
// discarded unread into dst, and Call fails with proto.TooLarge, returning
// the payload's size as n. Once Call has returned, dst is never written again,
// whether the call succeeded, failed or was canceled.
func IntoBuffer(dst []byte) CallOption {
	return func(c *callConfig) { c.dsts, c.hasDst = [][]byte{dst}, true }
}

// IntoBuffers is IntoBuffer with a vectored destination: the response
// payload is read from the socket sequentially into dsts, filling each one
// completely before the next. Call returns the payload's size n; with n
// smaller than the buffers' total, the bytes after the first n are not
// written. A payload larger than the total is discarded unread into any
// buffer, and Call fails with proto.TooLarge, returning the payload's size.
// As with IntoBuffer, no buffer is written after Call has returned.
func IntoBuffers(dsts ...[]byte) CallOption {
	return func(c *callConfig) { c.dsts, c.hasDst = dsts, true }
}

// ReturnPayload stores the response payload, in a newly allocated slice of at
// most ClientOptions.MaxPayload bytes, in *p.
func ReturnPayload(p *[]byte) CallOption {
	return func(c *callConfig) { c.out = p }
}

// Conn is a client connection. Any number of goroutines may call on it at
// once; their requests are pipelined over the one TCP connection and each
// response goes to its caller by request id.
type Conn struct {
	addr          string
	nc            net.Conn
	log           zerolog.Logger
	opts          ClientOptions
	br            *bufio.Reader
	w             *frameWriter
	bufs          bufPool
	srvMaxBody    int
	srvMaxPayload int
	socket        string // the Unix socket a server on this host announced

	mu      sync.Mutex
	pending map[uint64]*call
	nextID  uint64
	err     error // set once, when the connection fails
	away    bool  // the server sent a goaway: closed once no call is pending
	done    chan struct{}
}

// errGoaway closes a connection the server ended for idleness.
var errGoaway = errors.New("the server closed this idle connection (goaway)")

// usable reports whether new calls should go on c: it has not failed and
// the server has not asked for it to be given up.
func (c *Conn) usable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.away
}

// settleAway closes c once the server has sent a goaway and no call is
// pending; it reports whether it did.
func (c *Conn) settleAway() bool {
	c.mu.Lock()
	done := c.away && len(c.pending) == 0
	c.mu.Unlock()
	if done {
		c.fail(errGoaway)
	}
	return done
}

// Dial connects to addr and performs the handshake with token (under TLS
// when ClientOptions.TLS is set). A refused token, or a server whose
// certificate is not trusted, gives an error satisfying errors.Is(err,
// proto.ErrUnauthenticated); a server that does not use TLS when the
// client does, or the other way round, one with proto.ErrProtocolVersion;
// an unreachable server one with proto.ErrUnavailable.
func Dial(ctx context.Context, addr, token string, opts ClientOptions) (*Conn, error) {
	opts.normalize()
	d := opts.Dialer
	if d == nil {
		d = &net.Dialer{}
	}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("rpc: dial %s: %w: %w", addr, ctx.Err(), proto.CodeOf(ctx.Err()).Err())
		}
		return nil, fmt.Errorf("rpc: dial %s: %w: %w", addr, proto.ErrUnavailable, err)
	}
	c, err := newConn(ctx, nc, addr, token, opts, opts.TLS)
	if err != nil {
		return nil, err
	}
	if c.socket != "" && !opts.TCPOnly {
		// The server is on this host and serves a Unix socket too: move
		// there (without TLS: the socket's file permissions guard it).
		// Any failure (no access to the socket, an older server behind
		// it) keeps the TCP connection, which works.
		uc, err := d.DialContext(ctx, "unix", c.socket)
		if err == nil {
			var lc *Conn
			if lc, err = newConn(ctx, uc, addr, token, opts, nil); err == nil {
				c.Close()
				return lc, nil
			}
		}
		c.log.Debug().Err(err).Str("socket", c.socket).Msg("rpc: staying on TCP")
	}
	return c, nil
}

// Transport returns "unix" when the connection runs over the server's Unix
// socket (a server on this host), else "tcp".
func (c *Conn) Transport() string { return c.nc.RemoteAddr().Network() }

// TLS reports whether the connection runs under TLS.
func (c *Conn) TLS() bool {
	_, ok := c.nc.(*tls.Conn)
	return ok
}

// newConn runs the handshake on nc (under TLS with tcfg, if not nil) and
// starts the connection's reader and writer. On failure nc is closed.
func newConn(ctx context.Context, nc net.Conn, addr, token string, opts ClientOptions, tcfg *tls.Config) (*Conn, error) {
	c := &Conn{
		addr:    addr,
		nc:      nc,
		log:     opts.Logger.With().Str("server", addr).Logger(),
		opts:    opts,
		pending: map[uint64]*call{},
		done:    make(chan struct{}),
	}
	if err := c.handshake(ctx, token, tcfg); err != nil {
		c.nc.Close()
		return nil, err
	}
	c.w = newFrameWriter(c.nc, &c.bufs, opts.WriteTimeout)
	go func() {
		if err := c.w.run(); err != nil {
			c.fail(err)
		}
	}()
	go c.readLoop()
	return c, nil
}

func (c *Conn) handshake(ctx context.Context, token string, tcfg *tls.Config) (err error) {
	deadline := time.Now().Add(c.opts.HandshakeTimeout)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	raw := c.nc // startTLS replaces c.nc; deadlines apply to the socket
	_ = raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = raw.SetDeadline(time.Now()) })
	defer func() {
		cerr := ctx.Err()
		if cerr == nil && ctxDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			cerr = context.DeadlineExceeded // the socket deadline was ctx's, and fired first
		}
		if !stop() || cerr != nil {
			if cerr == nil {
				cerr = context.Canceled
			}
			err = fmt.Errorf("rpc: handshake with %s: %w: %w", c.addr, cerr, proto.CodeOf(cerr).Err())
		}
	}()

	if tcfg != nil {
		if err := c.startTLS(ctx, tcfg); err != nil {
			return err
		}
	}
	c.br = bufio.NewReaderSize(c.nc, 64<<10)
	wl, err := clientHandshake(c.nc, c.br, token, c.opts.MaxBody, c.opts.MaxPayload)
	if err != nil {
		return c.handshakeError(err)
	}
	c.srvMaxBody, c.srvMaxPayload = int(wl.MaxBody), int(wl.MaxPayload)
	if c.nc.RemoteAddr().Network() == "tcp" && filepath.IsAbs(wl.Socket) {
		c.socket = wl.Socket
	}
	_ = raw.SetDeadline(time.Time{})
	return nil
}

// startTLS runs the TLS handshake on c.nc and replaces it with the TLS
// connection. The server's name defaults to the dialed host, which its
// certificate must cover.
func (c *Conn) startTLS(ctx context.Context, tcfg *tls.Config) error {
	if tcfg.ServerName == "" {
		tcfg = tcfg.Clone()
		if host, _, err := net.SplitHostPort(c.addr); err == nil {
			tcfg.ServerName = host
		} else {
			tcfg.ServerName = c.addr
		}
	}
	tc := tls.Client(newTLSTransport(c.nc), tcfg)
	c.nc = tc
	if err := tc.HandshakeContext(ctx); err != nil {
		return c.handshakeError(fmt.Errorf("TLS: %w", err))
	}
	return nil
}

// ErrTLS marks the handshake errors of TLS (errors.Is): a server
// certificate not trusted, a client certificate refused, a server that
// does not use TLS when the client does. A server that uses TLS when the
// client does not refuses it with proto.ProtocolVersion and says so.
var ErrTLS = errors.New("rpc: TLS")

// tlsError is a handshake error of TLS: its text is err's, and it matches
// both err and ErrTLS.
type tlsError struct{ error }

func (e tlsError) Unwrap() []error { return []error{e.error, ErrTLS} }

// handshakeError wraps an error of the handshake with the address and
// the code the caller tests for.
func (c *Conn) handshakeError(err error) error {
	var pe *proto.Error
	var rhe tls.RecordHeaderError
	var cve *tls.CertificateVerificationError
	var oe *net.OpError
	switch {
	case errors.As(err, &pe):
		return fmt.Errorf("rpc: handshake with %s: %w", c.addr, err)
	case errors.As(err, &rhe) && rhe.RecordHeader[0] == frameMagic:
		// The server answered our TLS hello with a frame: it does not use TLS.
		return fmt.Errorf("rpc: handshake with %s: %w", c.addr, tlsError{proto.Errorf(proto.ProtocolVersion,
			"the server does not use TLS: connect without the cluster's CA, or turn TLS on in the cluster")})
	case errors.As(err, &cve):
		return fmt.Errorf("rpc: handshake with %s: %w", c.addr, tlsError{proto.Errorf(proto.Unauthenticated,
			"the server's TLS certificate is not trusted (not signed by the cluster's CA, or not for this address): %v", err)})
	case errors.As(err, &oe) && oe.Op == "remote error":
		// A TLS alert from the server: it refused our certificate (or
		// the lack of one, with mutual TLS), or our TLS parameters.
		return fmt.Errorf("rpc: handshake with %s: %w", c.addr, tlsError{proto.Errorf(proto.Unauthenticated,
			"the server refused the TLS connection (%v); with mutual TLS the client needs a certificate signed by the cluster's CA", err)})
	}
	return fmt.Errorf("rpc: handshake with %s: %w: %w", c.addr, proto.ErrUnavailable, err)
}

// Addr returns the address the connection was dialed to.
func (c *Conn) Addr() string { return c.addr }

// Done is closed when the connection has failed or was closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns nil while the connection is usable, then the reason it is not
// (an error satisfying errors.Is(err, proto.ErrUnavailable)).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection; calls in flight fail with proto.Unavailable.
func (c *Conn) Close() error {
	c.fail(errors.New("closed by the client"))
	return nil
}

// fail marks the connection dead, closes it and fails every pending call.
func (c *Conn) fail(cause error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = fmt.Errorf("rpc: connection to %s: %w: %w", c.addr, proto.ErrUnavailable, cause)
	pend := c.pending
	c.pending = nil
	close(c.done)
	c.mu.Unlock()

	c.nc.Close()
	c.w.close(c.err)
	for _, cl := range pend {
		cl.done <- callResult{err: c.err}
	}
	c.log.Debug().Err(cause).Int("pending", len(pend)).Msg("rpc: connection closed")
}

// call is one request in flight on a Conn.
type call struct {
	id     uint64
	dsts   [][]byte // IntoBuffer(s) destination segments
	dstLen int      // their total length
	hasDst bool
	alloc  bool
	done   chan callResult // buffered: the reader never blocks on it

	// sendMu is held by the writer while the request's payload may be
	// read; sendCanceled makes the writer skip a request not yet begun.
	sendMu       sync.Mutex
	sendCanceled bool
	sent         bool

	// recvMu is held by the reader while it writes into dst; abandoned makes
	// it stop (and discard the rest) at the next chunk.
	recvMu    sync.Mutex
	abandoned atomic.Bool
}

type callResult struct {
	status  proto.Code
	body    []byte
	payload []byte
	n       int
	err     error
}

func (cl *call) beginWrite() bool {
	cl.sendMu.Lock()
	if cl.sendCanceled {
		cl.sendMu.Unlock()
		return false
	}
	return true
}

func (cl *call) endWrite(begun bool, err error) {
	if begun {
		cl.sent = err == nil
		cl.sendMu.Unlock()
	}
}

// Call sends a request for method with body req and waits for the response,
// decoding its body into resp (if non-nil). It returns the number of response
// payload bytes (see IntoBuffer and ReturnPayload).
//
// The request carries ctx's deadline, or ClientOptions.DefaultTimeout. When
// ctx ends first, Call returns promptly with an error satisfying both
// errors.Is(err, ctx.Err()) and errors.Is(err, proto.ErrTimeout) (or
// ErrCanceled); the server is told to cancel the request and its late
// response is discarded. An error status from the server comes back as a
// *proto.Error; a lost connection as proto.ErrUnavailable.
func (c *Conn) Call(ctx context.Context, method uint16, req, resp any, opts ...CallOption) (int, error) {
	n, _, err := c.call(ctx, method, req, resp, opts)
	return n, err
}

// call is Call; sent reports whether any of the request may have reached the
// server (false means it is safe to retry elsewhere).
func (c *Conn) call(ctx context.Context, method uint16, req, resp any, opts []CallOption) (n int, sent bool, err error) {
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
	}
	deadline, hasDeadline := ctx.Deadline()
	if !hasDeadline && c.opts.DefaultTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.DefaultTimeout)
		defer cancel()
		deadline, hasDeadline = ctx.Deadline()
	}
	if err := ctx.Err(); err != nil {
		return 0, false, c.ctxError(method, err)
	}
	var timeout uint64
	if hasDeadline {
		d := time.Until(deadline)
		if d <= 0 {
			return 0, false, c.ctxError(method, context.DeadlineExceeded)
		}
		timeout = uint64(d)
	}
	plen := 0
	for _, p := range cfg.payload {
		plen += len(p)
	}
	if plen > c.srvMaxPayload {
		return 0, false, proto.Errorf(proto.TooLarge, "rpc: %s method %d: request payload of %d bytes exceeds the server's limit of %d", c.addr, method, plen, c.srvMaxPayload)
	}
	head := c.bufs.get(headerSize)
	b, err := appendBody(*head, req)
	if err != nil {
		c.bufs.put(head)
		return 0, false, proto.Errorf(proto.BadRequest, "rpc: %s method %d: encode request %T: %v", c.addr, method, req, err)
	}
	if len(b)-headerSize > c.srvMaxBody {
		*head = b
		c.bufs.put(head)
		return 0, false, proto.Errorf(proto.TooLarge, "rpc: %s method %d: request body of %d bytes exceeds the server's limit of %d", c.addr, method, len(b)-headerSize, c.srvMaxBody)
	}

	cl := &call{dsts: cfg.dsts, hasDst: cfg.hasDst, alloc: cfg.out != nil, done: make(chan callResult, 1)}
	for _, d := range cfg.dsts {
		cl.dstLen += len(d)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		*head = b
		c.bufs.put(head)
		return 0, false, err
	}
	c.nextID++
	cl.id = c.nextID
	c.pending[cl.id] = cl
	c.mu.Unlock()

	encodeHeader(b, header{
		kind:       kindRequest,
		method:     method,
		id:         cl.id,
		bodyLen:    uint32(len(b) - headerSize),
		payloadLen: uint32(plen),
		timeout:    timeout,
	})
	*head = b
	if err := c.w.enqueue(outFrame{head: head, payload: cfg.payload, owner: cl}); err != nil {
		c.mu.Lock()
		delete(c.pending, cl.id)
		c.mu.Unlock()
		return 0, false, err
	}

	select {
	case r := <-cl.done:
		return c.result(cl, r, resp, cfg.out)
	case <-ctx.Done():
		return c.abandon(ctx, method, cl, resp, cfg.out)
	}
}

// result turns a delivered result into Call's return values.
func (c *Conn) result(cl *call, r callResult, resp any, out *[]byte) (int, bool, error) {
	if r.err != nil {
		if errors.Is(r.err, proto.ErrUnavailable) {
			// The connection is closed, so a write of our payload that is
			// still under way ends at once; wait for it before returning.
			cl.sendMu.Lock()
			cl.sendCanceled = true
			sent := cl.sent
			cl.sendMu.Unlock()
			return r.n, sent, r.err
		}
		return r.n, true, r.err
	}
	if r.status != proto.OK {
		var msg string
		_ = decodeBody(r.body, &msg)
		return 0, true, &proto.Error{Code: r.status, Msg: msg}
	}
	if err := decodeBody(r.body, resp); err != nil {
		return r.n, true, fmt.Errorf("rpc: %s: response: %w", c.addr, err)
	}
	if out != nil {
		*out = r.payload
	}
	return r.n, true, nil
}

// abandon ends a call whose context is done, making sure neither the reader
// nor the writer touches the caller's memory after it returns.
func (c *Conn) abandon(ctx context.Context, method uint16, cl *call, resp any, out *[]byte) (int, bool, error) {
	c.mu.Lock()
	_, pending := c.pending[cl.id]
	delete(c.pending, cl.id)
	c.mu.Unlock()
	if !pending {
		// The reader has claimed the response and may be reading its
		// payload into dst: stop it at the next chunk, wait for the current
		// one.
		cl.abandoned.Store(true)
		c.lockWithGrace(&cl.recvMu)
		cl.recvMu.Unlock()
		select {
		case r := <-cl.done: // a complete response after all: return it
			if r.err == nil {
				return c.result(cl, r, resp, out)
			}
		default:
		}
	}
	c.lockWithGrace(&cl.sendMu)
	cl.sendCanceled = true
	sent := cl.sent
	cl.sendMu.Unlock()
	// Tell the server to stop working on it. On a deadline the server's own
	// copy of the deadline fires at about the same time, so no frame is
	// needed (and its handler sees DeadlineExceeded, not Canceled).
	if sent && pending && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		c.sendCancel(cl.id)
	}
	return 0, sent, c.ctxError(method, ctx.Err())
}

// lockWithGrace locks mu, closing the connection if that takes longer than
// CancelGrace (which unblocks whoever holds mu in a socket operation).
func (c *Conn) lockWithGrace(mu *sync.Mutex) {
	if mu.TryLock() {
		return
	}
	t := time.AfterFunc(c.opts.CancelGrace, func() {
		c.fail(errors.New("a canceled call's transfer did not finish within the cancel grace period"))
	})
	mu.Lock()
	t.Stop()
}

func (c *Conn) sendCancel(id uint64) {
	head := c.bufs.get(headerSize)
	encodeHeader(*head, header{kind: kindCancel, id: id})
	_ = c.w.enqueue(outFrame{head: head})
}

func (c *Conn) ctxError(method uint16, err error) error {
	return fmt.Errorf("rpc: %s method %d: %w: %w", c.addr, method, err, proto.CodeOf(err).Err())
}

// readLoop reads responses and hands each to its caller.
func (c *Conn) readLoop() {
	var hb [headerSize]byte
	for {
		if _, err := io.ReadFull(c.br, hb[:]); err != nil {
			c.fail(err)
			return
		}
		h, err := decodeHeader(hb[:])
		if err == nil && h.kind == kindGoaway {
			// The server ends this connection for idleness: no new calls
			// go on it (a pool dials another); the calls pending end.
			c.mu.Lock()
			c.away = true
			c.mu.Unlock()
			if c.settleAway() {
				return
			}
			continue
		}
		if err == nil && h.kind != kindResponse {
			err = errFrame("unexpected %v frame from a server", h.kind)
		}
		if err != nil {
			c.fail(err)
			return
		}
		c.mu.Lock()
		cl := c.pending[h.id]
		delete(c.pending, h.id)
		c.mu.Unlock()
		if cl == nil { // canceled call, or the connection failed meanwhile
			if _, err := c.br.Discard(int(h.bodyLen) + int(h.payloadLen)); err != nil {
				c.fail(err)
				return
			}
			continue
		}
		r, err := c.readResponse(h, cl)
		if err != nil {
			// cl is no longer pending, so fail will not reach it.
			cl.done <- callResult{err: fmt.Errorf("rpc: connection to %s: %w: %w", c.addr, proto.ErrUnavailable, err)}
			c.fail(err)
			return
		}
		cl.done <- r
		if c.settleAway() {
			return
		}
	}
}

// readResponse reads the body and payload of response h for cl. An error
// means the connection is broken.
func (c *Conn) readResponse(h header, cl *call) (callResult, error) {
	r := callResult{status: h.status}
	if int(h.bodyLen) > c.opts.MaxBody {
		if _, err := c.br.Discard(int(h.bodyLen)); err != nil {
			return r, err
		}
		r.err = proto.Errorf(proto.TooLarge, "rpc: %s: response body of %d bytes exceeds the limit of %d", c.addr, h.bodyLen, c.opts.MaxBody)
	} else if h.bodyLen > 0 {
		r.body = make([]byte, h.bodyLen)
		if _, err := io.ReadFull(c.br, r.body); err != nil {
			return r, err
		}
	}
	plen := int(h.payloadLen)
	if plen == 0 {
		return r, nil
	}
	r.n = plen
	var err error
	switch {
	case r.err != nil:
		_, err = c.br.Discard(plen)
	case cl.hasDst && plen > cl.dstLen:
		_, err = c.br.Discard(plen)
		r.err = proto.Errorf(proto.TooLarge, "rpc: %s: response payload of %d bytes exceeds the buffer of %d", c.addr, plen, cl.dstLen)
	case cl.hasDst:
		err = c.readInto(cl, plen)
		if errors.Is(err, errAbandoned) {
			r.err, err = err, nil
		}
	case cl.alloc && plen > c.opts.MaxPayload:
		_, err = c.br.Discard(plen)
		r.err = proto.Errorf(proto.TooLarge, "rpc: %s: response payload of %d bytes exceeds the limit of %d", c.addr, plen, c.opts.MaxPayload)
	case cl.alloc:
		r.payload = make([]byte, plen)
		_, err = io.ReadFull(c.br, r.payload)
	default:
		_, err = c.br.Discard(plen)
	}
	return r, err
}

// readInto reads plen payload bytes into cl's destination segments, in
// order, chunk by chunk, holding cl.recvMu while it writes into them. If the
// caller abandons the call, the rest is discarded and errAbandoned returned.
func (c *Conn) readInto(cl *call, plen int) error {
	left := plen
	for _, dst := range cl.dsts {
		if left == 0 {
			break
		}
		if len(dst) > left {
			dst = dst[:left]
		}
		off := 0
		for off < len(dst) {
			end := min(off+readChunk, len(dst))
			cl.recvMu.Lock()
			if cl.abandoned.Load() {
				cl.recvMu.Unlock()
				if _, err := c.br.Discard(left - off); err != nil {
					return err
				}
				return errAbandoned
			}
			n, err := c.br.Read(dst[off:end])
			cl.recvMu.Unlock()
			off += n
			if err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		left -= len(dst)
	}
	return nil
}
