package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/proto"
)

// ProtocolVersion is the version of the RPC protocol exchanged in the
// handshake. A server refuses clients of another version with
// proto.ProtocolVersion. Version 2: the challenge-response handshake
// (version 1 sent the token in the hello).
const ProtocolVersion = 2

// Default and hard limits. Options may lower or raise the defaults up to the
// hard limits.
const (
	DefaultMaxBody    = 16 << 20 // msgpack body of one frame
	DefaultMaxPayload = 64 << 20 // raw payload of one frame
	HardMaxBody       = 256 << 20
	HardMaxPayload    = 1 << 30

	DefaultMaxInFlight      = 256       // concurrent requests per server connection
	DefaultMaxInFlightBytes = 256 << 20 // request bodies+payloads held per server connection
	DefaultMaxTotalBytes    = 1 << 30   // request bodies+payloads held by the whole server
	DefaultMaxConns         = 4096      // connections served at once
	DefaultFrameTimeout     = 30 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 10 * time.Minute
	DefaultWriteTimeout     = 60 * time.Second
	// DefaultGoawayGrace is how long a connection told to go away is still
	// read: requests the client sent before the goaway reached it are
	// served.
	DefaultGoawayGrace = 10 * time.Second

	// maxErrorMessage bounds the error text a server sends back.
	maxErrorMessage = 2048
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("rpc: server closed")

// HandlerFunc serves one request. ctx carries the caller's deadline and is
// canceled when the caller cancels, the connection is lost or the server is
// closed. A non-nil error is sent to the caller as status proto.CodeOf(err)
// with err.Error() as message; the Response is then ignored (its Done still
// runs).
type HandlerFunc func(ctx context.Context, req *Request) (*Response, error)

// Request is one incoming call. It and its Payload are valid until the
// response has been written; a handler that keeps Payload longer must copy it.
type Request struct {
	Method   uint16
	ID       uint64
	Identity Identity // from the connection's handshake; treat as read-only
	Remote   net.Addr
	// Payload is the request's raw payload, read straight from the socket
	// into a pooled buffer (nil if there is none).
	Payload []byte

	body   []byte
	detach func()
}

// Decode decodes the request's msgpack body into v. An empty body leaves v
// untouched. Malformed bodies give an error with code proto.BadRequest.
func (r *Request) Decode(v any) error { return decodeBody(r.body, v) }

// Detach tells the server that the handler will wait long (a long poll)
// and needs no more of the request's bytes than it decoded: the request
// stops counting in the server-wide budget (MaxTotalBytes), where a
// request larger than the budget waits until nothing else is held, so
// such requests of other connections do not wait for it. The
// connection's own limits still count it.
func (r *Request) Detach() {
	if r.detach != nil {
		r.detach()
	}
}

// Response is what a handler returns.
type Response struct {
	// Body is encoded with msgpack; nil sends an empty body.
	Body any
	// Payload segments are written after the body as they are, without
	// copying (large segments go to the kernel in one writev). They must
	// stay unchanged until Done runs.
	Payload [][]byte
	// Done, if set, runs once when the response has been written or
	// dropped, e.g. to return Payload's buffers to a pool.
	Done func()
}

// ServerOptions configure a Server. The zero value of a field selects its
// default.
type ServerOptions struct {
	// Auth finds the keys of the tokens clients prove in the handshake.
	// Nil refuses every connection.
	Auth Authenticator
	// TLS, if set, serves TCP connections under TLS with this
	// configuration (Certificates: the node's certificate; ClientAuth and
	// ClientCAs for mutual TLS). Unix socket connections stay plaintext:
	// file permissions guard them. A plaintext client gets a refusal that
	// says so, as does a TLS client of a server without TLS.
	TLS *tls.Config
	// Logger receives structured logs; the zero Logger discards them.
	Logger zerolog.Logger
	// MaxBody and MaxPayload bound a request's body and payload; a frame over
	// either closes the connection (clients learn the limits in the handshake
	// and refuse such calls with proto.TooLarge before sending).
	MaxBody, MaxPayload int
	// MaxInFlight bounds the requests served at once per connection;
	// MaxInFlightBytes bounds their bodies and payloads. When either is
	// reached the server stops reading from that connection until a
	// response has been written.
	MaxInFlight, MaxInFlightBytes int
	// MaxTotalBytes bounds the bodies and payloads of the large requests
	// (over 64 KiB) held by all connections together: a connection whose
	// next request would go beyond it stops being read until others'
	// requests end. Small requests are counted but never wait, so that
	// metadata calls and reads get through while uploads wait. A request
	// larger than the whole budget is admitted when nothing else is held.
	MaxTotalBytes int
	// MaxConns bounds the connections served at once; one accepted beyond
	// it is closed at once (and logged).
	MaxConns int
	// FrameTimeout bounds the wait for the next bytes of a request whose
	// header has arrived: a peer that announces a body or payload and stops
	// sending it for this long is disconnected and what its request held is
	// released. Between requests a connection may stay idle. Negative
	// means no limit.
	FrameTimeout time.Duration
	// HandshakeTimeout bounds the time from accept to an accepted handshake.
	HandshakeTimeout time.Duration
	// IdleTimeout ends connections that stay idle — no request in flight,
	// none arriving — for this long (an authenticated client parking
	// connections costs their buffers and goroutines). The server sends a
	// goaway frame, so the client stops using the connection and closes it
	// (a pool dials a new one when it needs it), and serves what the
	// client had sent meanwhile; a connection still open GoawayGrace later
	// is closed (GoawayGrace). Negative means never.
	IdleTimeout time.Duration
	// GoawayGrace is how long a connection sent a goaway is still read
	// (DefaultGoawayGrace).
	GoawayGrace time.Duration
	// WriteTimeout bounds each write to a connection; a peer that does not
	// read for this long is disconnected. Negative means no limit.
	WriteTimeout time.Duration
	// LocalSocket is the path of a Unix socket the server also serves on
	// (the caller passes its listener to Serve). It is announced in the
	// handshake to clients that connected over loopback TCP — they run on
	// this host — which then switch to it: a Unix stream moves bulk data
	// for about half the CPU of loopback TCP (docs/wire.md).
	LocalSocket string
	// Observer, if set, learns of every served request (metrics).
	Observer Observer
	// SlowRequest: requests that take at least this long from arrival to
	// the end of their response are logged with their stages, as a
	// warning (DefaultSlowRequest; negative: never).
	SlowRequest time.Duration
}

func (o *ServerOptions) normalize() {
	o.MaxBody = clampLimit(o.MaxBody, DefaultMaxBody, HardMaxBody)
	o.MaxPayload = clampLimit(o.MaxPayload, DefaultMaxPayload, HardMaxPayload)
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxInFlightBytes <= 0 {
		o.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if o.MaxTotalBytes <= 0 {
		o.MaxTotalBytes = DefaultMaxTotalBytes
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.FrameTimeout == 0 {
		o.FrameTimeout = DefaultFrameTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.GoawayGrace <= 0 {
		o.GoawayGrace = DefaultGoawayGrace
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.SlowRequest == 0 {
		o.SlowRequest = DefaultSlowRequest
	}
}

func clampLimit(v, def, hard int) int {
	if v <= 0 {
		return def
	}
	return min(v, hard)
}

// Server serves RPCs on any number of listeners.
type Server struct {
	opts     ServerOptions
	log      zerolog.Logger
	bufs     bufPool
	dummyKey StoredKey     // checked against for unknown lookup ids, so they cost the same
	nonce    func() []byte // the challenges' nonces (randomNonce; fixed in the fuzz tests)
	handlers atomic.Pointer[map[uint16]handler]
	hmu      sync.Mutex // serializes Handle

	total    budget       // request bytes held by all connections (MaxTotalBytes)
	inFlight atomic.Int64 // requests received and not yet answered (Stats)

	memMu    sync.Mutex  // giving memory back (idleMemory)
	memTimer *time.Timer // a scheduled give-back
	memLast  time.Time   // the last give-back

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	refused   int // connections refused for MaxConns
	connWG    sync.WaitGroup
}

// NewServer returns a server with no handlers.
func NewServer(opts ServerOptions) *Server {
	opts.normalize()
	s := &Server{
		opts:      opts,
		log:       opts.Logger,
		dummyKey:  StoredKey(randomNonce()),
		nonce:     randomNonce,
		listeners: map[net.Listener]struct{}{},
		conns:     map[*serverConn]struct{}{},
	}
	s.handlers.Store(&map[uint16]handler{})
	s.total.init(math.MaxInt, opts.MaxTotalBytes)
	s.total.shared = true
	s.total.onIdle = s.idleMemory
	return s
}

// Giving memory back. A burst of large requests (or connections that
// announced them and stalled) leaves their buffers in the pool and Go's heap
// at its high-water mark, and an idle server allocates nothing that would
// make the runtime collect and return it: fffd's resident memory would stay
// there. So when nothing is held any more after at least memBurst bytes
// (or half the budget, if less) were, the server collects and returns
// memory to the system, at most once per memInterval (later if one ran
// less than memInterval ago). Two collections: the first moves the pool's
// buffers to its victim cache, the second frees them.
const (
	memBurst    = 256 << 20
	memInterval = 10 * time.Second
)

// idleMemory is the total budget's onIdle.
func (s *Server) idleMemory(peak int) {
	if peak < min(memBurst, s.opts.MaxTotalBytes/2) {
		return
	}
	s.memMu.Lock()
	defer s.memMu.Unlock()
	if s.memTimer != nil {
		return // one is scheduled
	}
	wait := max(0, time.Until(s.memLast.Add(memInterval)))
	s.memTimer = time.AfterFunc(wait, func() {
		debug.FreeOSMemory()
		debug.FreeOSMemory()
		s.memMu.Lock()
		s.memLast, s.memTimer = time.Now(), nil
		s.memMu.Unlock()
	})
}

// Access says who may call a method. Every method states it when it is
// registered (Handle), so that the server's surface can be listed with who
// may use each part of it (Methods, Access; docs/security.md).
type Access uint8

const (
	// AccessUser: any authenticated identity; the handler decides per
	// object (permissions, write sessions, ...).
	AccessUser Access = iota + 1
	// AccessAdmin: the admin only; the server refuses other identities
	// with EPERM before the handler runs.
	AccessAdmin
)

func (a Access) String() string {
	switch a {
	case AccessUser:
		return "user"
	case AccessAdmin:
		return "admin"
	}
	return fmt.Sprintf("Access(%d)", uint8(a))
}

// handler is a registered method.
type handler struct {
	h      HandlerFunc
	access Access
}

// Handle registers h for method with who may call it, replacing any earlier
// handler. It may be called while the server is serving. An access other
// than AccessUser or AccessAdmin panics (a programming error).
func (s *Server) Handle(method uint16, access Access, h HandlerFunc) {
	if access != AccessUser && access != AccessAdmin {
		panic(fmt.Sprintf("rpc: method %d registered with %v", method, access))
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	old := *s.handlers.Load()
	m := make(map[uint16]handler, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[method] = handler{h: h, access: access}
	s.handlers.Store(&m)
}

// Access returns who may call method; false if it is not registered.
func (s *Server) Access(method uint16) (Access, bool) {
	h, ok := (*s.handlers.Load())[method]
	return h.access, ok
}

// Serve accepts connections on l and serves each in its own goroutines until
// the server is shut down (it then returns ErrServerClosed) or l fails.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("rpc: accept on %v: %w", l.Addr(), err)
			}
			// Out of file descriptors and the like: back off and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn().Err(err).Stringer("listen", l.Addr()).Dur("retry_in", backoff).Msg("rpc: accept failed")
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if _, tcp := nc.(*net.TCPConn); tcp && s.opts.TLS != nil {
			nc = tls.Server(newTLSTransport(nc), s.opts.TLS) // handshake in serve, under its deadline
		}
		sc := s.newServerConn(nc)
		if ok, full := s.track(sc); !ok {
			nc.Close()
			if full {
				continue
			}
			return ErrServerClosed
		}
		go func() {
			defer s.untrack(sc)
			sc.serve()
		}()
	}
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// track adds sc to the connections served; it refuses it when the server
// is closing, or serves MaxConns already (full).
func (s *Server) track(sc *serverConn) (ok, full bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, false
	}
	if len(s.conns) >= s.opts.MaxConns {
		// Logged for the first refusal and every 1024th after it, so that
		// a flood does not flood the log too.
		if s.refused%1024 == 0 {
			s.log.Warn().Int("max_conns", s.opts.MaxConns).Int("refused", s.refused+1).Stringer("peer", sc.nc.RemoteAddr()).
				Msg("rpc: too many connections; closing the new one")
		}
		s.refused++
		sc.cancel()
		return false, true
	}
	s.conns[sc] = struct{}{}
	s.connWG.Add(1)
	return true, false
}

func (s *Server) untrack(sc *serverConn) {
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	s.connWG.Done()
}

// beginClose marks the server closing, closes its listeners and returns its
// connections.
func (s *Server) beginClose() []*serverConn {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	return conns
}

// Shutdown stops the server gracefully: it closes the listeners, stops
// reading new requests, lets the requests already read finish and their
// responses go out, then closes the connections. If ctx ends first, the
// remaining connections are closed at once (their handlers' contexts are
// canceled and their callers fail with proto.Unavailable) and ctx.Err() is
// returned.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, sc := range s.beginClose() {
		sc.drain()
	}
	done := make(chan struct{})
	go func() {
		s.connWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		for _, sc := range s.beginClose() {
			sc.kill()
		}
		return ctx.Err()
	}
}

// Close closes the listeners and every connection at once, canceling the
// handlers in flight. It does not wait for them.
func (s *Server) Close() error {
	for _, sc := range s.beginClose() {
		sc.kill()
	}
	s.memMu.Lock()
	if s.memTimer != nil {
		s.memTimer.Stop()
	}
	s.memMu.Unlock()
	return nil
}

func (s *Server) handler(m uint16) handler { return (*s.handlers.Load())[m] }

// Methods returns the registered method numbers in increasing order: what
// a client can call (the surface tests and fuzzing walk).
func (s *Server) Methods() []uint16 {
	m := *s.handlers.Load()
	out := make([]uint16, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// serverConn is one accepted connection: a reader (serve/readLoop), a writer
// goroutine, and one goroutine per request in flight.
type serverConn struct {
	s      *Server
	nc     net.Conn
	log    zerolog.Logger
	br     *bufio.Reader
	w      *frameWriter
	ctx    context.Context // parent of every handler context
	cancel context.CancelFunc

	identity    Identity
	peerMaxBody int

	mu       sync.Mutex
	draining bool // no new requests are read (Shutdown or Close)
	inflight map[uint64]*serverCall

	budget budget
	wg     sync.WaitGroup // requests in flight
}

func (s *Server) newServerConn(nc net.Conn) *serverConn {
	ctx, cancel := context.WithCancel(context.Background())
	sc := &serverConn{
		s:        s,
		nc:       nc,
		log:      s.log.With().Str("peer", nc.RemoteAddr().String()).Logger(),
		br:       bufio.NewReaderSize(nc, 64<<10),
		ctx:      ctx,
		cancel:   cancel,
		inflight: map[uint64]*serverCall{},
	}
	wt := s.opts.WriteTimeout
	if wt < 0 {
		wt = 0
	}
	sc.w = newInlineFrameWriter(nc, &s.bufs, wt, func(err error) {
		sc.log.Debug().Err(err).Msg("rpc: write failed, closing connection")
		sc.kill()
	})
	sc.budget.init(s.opts.MaxInFlight, s.opts.MaxInFlightBytes)
	return sc
}

// drain stops reading new requests; serve then finishes those in flight.
func (sc *serverConn) drain() {
	sc.mu.Lock()
	sc.draining = true
	_ = sc.nc.SetReadDeadline(time.Now())
	sc.mu.Unlock()
	sc.budget.close()
	sc.s.total.wake()
}

// kill closes the connection and cancels every handler.
func (sc *serverConn) kill() {
	sc.mu.Lock()
	sc.draining = true
	sc.mu.Unlock()
	// Close before canceling, so that handlers ending on the cancellation
	// cannot get their responses out: callers see the connection fail.
	sc.w.close(proto.Errorf(proto.Unavailable, "rpc: connection closed"))
	sc.nc.Close()
	sc.cancel()
	sc.budget.close()
	sc.s.total.wake()
}

func (sc *serverConn) isDraining() bool {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	return sc.draining
}

// serve runs the connection to its end.
func (sc *serverConn) serve() {
	defer sc.nc.Close()
	defer sc.cancel()
	if !sc.handshake() {
		return
	}
	err := sc.readLoop()
	switch {
	case sc.isDraining():
		sc.log.Debug().Msg("rpc: connection draining")
	case errors.Is(err, io.EOF):
		sc.log.Debug().Msg("rpc: connection closed by peer")
		sc.cancel()
	case errors.Is(err, errIdle):
		sc.log.Debug().Dur("idle_timeout", sc.s.opts.IdleTimeout).Msg("rpc: closed an idle connection the client kept after its goaway")
	default:
		var pe *proto.Error
		if errors.As(err, &pe) { // the peer broke the protocol
			sc.log.Warn().Err(err).Msg("rpc: closing connection")
		} else {
			sc.log.Debug().Err(err).Msg("rpc: connection failed")
		}
		sc.cancel()
	}
	sc.budget.close()
	sc.wg.Wait() // every request answered (or dropped)
	sc.w.close(nil)
}

// handshake runs the server's side of the handshake (handshake.go): TLS
// first if the connection has it, then hello, challenge, proof, welcome.
// It reports whether the connection is established; on false the caller
// closes it. Nothing but handshake frames is read before authentication
// succeeds.
func (sc *serverConn) handshake() bool {
	deadline := time.Now().Add(sc.s.opts.HandshakeTimeout)
	sc.mu.Lock()
	if sc.draining {
		sc.mu.Unlock()
		return false
	}
	_ = sc.nc.SetDeadline(deadline)
	sc.mu.Unlock()
	ctx, cancel := context.WithDeadline(sc.ctx, deadline)
	defer cancel()
	if tc, ok := sc.nc.(*tls.Conn); ok {
		if tt, ok := tc.NetConn().(*tlsTransport); ok {
			// A plaintext fff client is told so in its own protocol; the
			// first byte tells it from a TLS client.
			first, err := tt.r.Peek(1)
			if err != nil {
				sc.log.Debug().Err(err).Msg("rpc: handshake: nothing received")
				return false
			}
			if first[0] == frameMagic {
				sc.refusePlaintext(tt)
				return false
			}
		}
		if err := tc.HandshakeContext(ctx); err != nil {
			sc.log.Warn().Err(err).Msg("rpc: TLS handshake failed")
			return false
		}
	}

	var hb [headerSize]byte
	if _, err := io.ReadFull(sc.br, hb[:]); err != nil {
		sc.log.Debug().Err(err).Msg("rpc: handshake: no hello")
		return false
	}
	if hb[0] == tlsRecordHandshake && hb[1] == 3 {
		sc.refuseTLS(hb)
		return false
	}
	h, body, err := readHandshakeRest(sc.br, hb)
	if err == nil && h.kind != kindHello {
		err = errFrame("first frame is a %v, not a hello", h.kind)
	}
	if err != nil {
		if errors.As(err, new(*proto.Error)) {
			sc.log.Warn().Err(err).Msg("rpc: handshake: bad first frame")
			if proto.CodeOf(err) == proto.ProtocolVersion {
				sc.refuse(proto.ProtocolVersion, err.Error())
			}
		} else {
			sc.log.Debug().Err(err).Msg("rpc: handshake: short hello")
		}
		return false
	}
	var hl hello
	if err := decodeBody(body, &hl); err != nil {
		sc.log.Warn().Err(err).Msg("rpc: handshake: bad hello")
		return false
	}
	if hl.Version != ProtocolVersion {
		sc.log.Warn().Uint16("version", hl.Version).Msg("rpc: handshake: unsupported protocol version")
		sc.refuse(proto.ProtocolVersion, fmt.Sprintf("rpc: protocol version %d not supported (server speaks %d): client and server must be of the same release", hl.Version, ProtocolVersion))
		return false
	}
	if len(hl.ID) != len(LookupID{}) || len(hl.Nonce) != nonceSize {
		sc.log.Warn().Int("id", len(hl.ID)).Int("nonce", len(hl.Nonce)).Msg("rpc: handshake: bad hello")
		return false
	}
	id := LookupID(hl.ID)

	// An unknown id (or a failed lookup) goes through the same exchange
	// and computation against a dummy key: the refusal comes at the same
	// step, in about the same time, as that of a wrong proof.
	key, identity, lerr := sc.s.dummyKey, Identity{}, error(nil)
	if sc.s.opts.Auth == nil {
		lerr = errors.New("no authenticator configured")
	} else if k, ident, err := sc.s.opts.Auth.Lookup(ctx, id); err != nil {
		lerr = err
	} else {
		key, identity = k, ident
	}
	snonce := sc.s.nonce()
	if err := writeHandshakeFrame(sc.nc, kindChallenge, proto.OK, challenge{Nonce: snonce}); err != nil {
		sc.log.Debug().Err(err).Msg("rpc: handshake: write challenge")
		return false
	}
	h, body, err = readHandshakeFrame(sc.br)
	if err == nil && h.kind != kindProof {
		err = errFrame("a %v instead of the proof", h.kind)
	}
	var pr proof
	if err == nil {
		err = decodeBody(body, &pr)
	}
	if err != nil {
		sc.log.Debug().Err(err).Msg("rpc: handshake: no proof")
		return false
	}
	tr := transcript(hl.Version, id, hl.Nonce, snonce, channelBinding(sc.nc))
	ok, serverProof := checkProof(key, tr, pr.Proof)
	if lerr != nil || !ok {
		if lerr == nil {
			lerr = errors.New("wrong proof")
		}
		sc.log.Warn().Err(lerr).Msg("rpc: handshake: authentication failed")
		sc.refuse(proto.Unauthenticated, "rpc: authentication failed")
		return false
	}
	sc.identity = identity
	sc.peerMaxBody = int(hl.MaxBody)
	if sc.peerMaxBody == 0 {
		sc.peerMaxBody = DefaultMaxBody
	}
	wl := welcome{
		Version:    ProtocolVersion,
		MaxBody:    uint32(sc.s.opts.MaxBody),
		MaxPayload: uint32(sc.s.opts.MaxPayload),
		Proof:      serverProof,
	}
	if sc.s.opts.LocalSocket != "" && isLoopbackTCP(sc.nc) {
		wl.Socket = sc.s.opts.LocalSocket
	}
	if err := writeHandshakeFrame(sc.nc, kindWelcome, proto.OK, wl); err != nil {
		sc.log.Debug().Err(err).Msg("rpc: handshake: write welcome")
		return false
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.draining {
		return false
	}
	_ = sc.nc.SetDeadline(time.Time{})
	sc.log.Debug().Uint32("uid", sc.identity.UID).Str("name", sc.identity.Name).Bool("tls", sc.isTLS()).Msg("rpc: connection established")
	return true
}

func (sc *serverConn) isTLS() bool {
	_, ok := sc.nc.(*tls.Conn)
	return ok
}

// refuse answers the hello with an error status; the caller then closes.
func (sc *serverConn) refuse(code proto.Code, msg string) {
	_ = writeHandshakeFrame(sc.nc, kindWelcome, code, msg)
}

// tlsRecordHandshake is the first byte of a TLS client's first record.
const tlsRecordHandshake = 0x16

// refusePlaintext answers a plaintext client of a TLS server on tt, the
// connection under TLS: it reads the client's hello (closing with unread
// bytes would reset the connection before the client reads the answer),
// then refuses in the client's own protocol.
func (sc *serverConn) refusePlaintext(tt *tlsTransport) {
	if _, _, err := readHandshakeFrame(tt); err != nil {
		return
	}
	sc.log.Warn().Msg("rpc: a client without TLS connected to this TLS server; refused")
	_ = writeHandshakeFrame(tt, kindWelcome, proto.ProtocolVersion,
		"rpc: this server accepts TLS connections only: the client needs the cluster's CA (cluster.json \"ca\", FFF_CA)")
}

// refuseTLS answers a TLS client of a server without TLS, whose first
// record starts with hb: it reads the rest of that record, then writes a
// refusal frame, which the client's TLS layer reports as a record that is
// not TLS (the client recognizes the frame's magic).
func (sc *serverConn) refuseTLS(hb [headerSize]byte) {
	rest := 5 + int(binary.BigEndian.Uint16(hb[3:5])) - headerSize
	if rest > 0 {
		if _, err := sc.br.Discard(rest); err != nil {
			return
		}
	}
	sc.log.Warn().Msg("rpc: a TLS client connected to this server, which does not use TLS; refused")
	sc.refuse(proto.ProtocolVersion, "rpc: this server does not use TLS")
}

// readLoop reads requests and cancels until the connection fails or drains.
func (sc *serverConn) readLoop() error {
	opts := &sc.s.opts
	var hb [headerSize]byte
	goingAway := false
	for {
		if err := sc.readHeader(hb[:], &goingAway); err != nil {
			return err
		}
		h, err := decodeHeader(hb[:])
		if err != nil {
			return err
		}
		if err := h.checkLimits(opts.MaxBody, opts.MaxPayload); err != nil {
			return err
		}
		switch h.kind {
		case kindCancel:
			sc.cancelCall(h.id)
			continue
		case kindRequest:
		default:
			return errFrame("unexpected %v frame from a client", h.kind)
		}
		recvAt := time.Now()
		size := int(h.bodyLen) + int(h.payloadLen)
		if !sc.budget.acquire(size) {
			return proto.Errorf(proto.Unavailable, "rpc: connection closing")
		}
		if size <= smallFrame {
			// Small requests cost their sender as much as they hold, and
			// must get through while large ones wait: metadata calls and
			// reads keep being served when stalled uploads fill the budget.
			sc.s.total.take(size)
		} else if !sc.s.total.acquireUnless(size, sc.isDraining) {
			sc.budget.release(size)
			return proto.Errorf(proto.Unavailable, "rpc: connection closing")
		}
		c := &serverCall{sc: sc, h: h, size: size}
		c.body = sc.s.bufs.get(int(h.bodyLen))
		if err := sc.readFrame(*c.body); err != nil {
			c.release()
			return err
		}
		if h.payloadLen > 0 {
			c.payload = sc.s.bufs.get(int(h.payloadLen))
			if err := sc.readFrame(*c.payload); err != nil {
				c.release()
				return err
			}
		}
		if err := sc.start(c, recvAt); err != nil {
			c.release()
			return err
		}
	}
}

// errIdle ends a connection that stayed idle after its goaway.
var errIdle = errors.New("rpc: idle connection closed")

// readHeader reads the next frame header into hb. Under IdleTimeout, a
// connection with nothing in flight and nothing arriving for that long is
// sent a goaway (*goingAway is set) and read for GoawayGrace more (the
// client closes it, or requests it sent before the goaway arrive), then
// ended with errIdle. A header that starts arriving must complete within
// FrameTimeout, as the rest of a frame.
func (sc *serverConn) readHeader(hb []byte, goingAway *bool) error {
	idle := sc.s.opts.IdleTimeout
	if idle < 0 || sc.br.Buffered() >= len(hb) {
		_, err := io.ReadFull(sc.br, hb) // no timer for what is already here
		return err
	}
	for {
		wait := idle
		if *goingAway {
			wait = sc.s.opts.GoawayGrace
		}
		sc.setReadDeadline(time.Now().Add(wait))
		n, err := io.ReadFull(sc.br, hb)
		sc.setReadDeadline(time.Time{})
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, os.ErrDeadlineExceeded) || sc.isDraining():
			return err
		case n > 0:
			return sc.readFrame(hb[n:])
		case sc.budget.busy():
			// Requests in flight: the connection is not idle.
		case *goingAway:
			return errIdle
		default:
			*goingAway = true
			sc.goaway()
		}
	}
}

// goaway tells the client to stop using this connection.
func (sc *serverConn) goaway() {
	head := sc.s.bufs.get(headerSize)
	b := (*head)[:headerSize]
	encodeHeader(b, header{kind: kindGoaway})
	*head = b
	_ = sc.w.enqueue(outFrame{head: head})
}

const (
	// frameStep is how much of a frame readFrame reads per deadline.
	frameStep = 1 << 20
	// smallFrame: requests up to this size are counted in the server's
	// total budget but never wait for it (MaxTotalBytes).
	smallFrame = 64 << 10
)

// readFrame reads the rest of a frame into b, in steps of frameStep, each
// of which must arrive within FrameTimeout: a peer that stalls in the
// middle of a request it announced loses its connection (and the request
// its buffers and budget), one that is slow but sending keeps it.
func (sc *serverConn) readFrame(b []byte) error {
	t := sc.s.opts.FrameTimeout
	if t < 0 {
		_, err := io.ReadFull(sc.br, b)
		return err
	}
	if len(b) <= sc.br.Buffered() {
		_, err := io.ReadFull(sc.br, b) // already here: no deadline to set
		return err
	}
	defer sc.setReadDeadline(time.Time{})
	for len(b) > 0 {
		n := min(len(b), frameStep)
		sc.setReadDeadline(time.Now().Add(t))
		if _, err := io.ReadFull(sc.br, b[:n]); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !sc.isDraining() {
				sc.log.Warn().Dur("frame_timeout", t).Msg("rpc: peer stopped sending a request; closing the connection")
			}
			return err
		}
		b = b[n:]
	}
	return nil
}

// setReadDeadline sets the connection's read deadline unless it is
// draining (drain's deadline in the past must stay).
func (sc *serverConn) setReadDeadline(d time.Time) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if !sc.draining {
		_ = sc.nc.SetReadDeadline(d)
	}
}

func (sc *serverConn) start(c *serverCall, recvAt time.Time) error {
	c.recvAt = recvAt
	var ctx context.Context
	if c.h.timeout > 0 {
		d := time.Duration(min(c.h.timeout, math.MaxInt64/2))
		ctx, c.cancel = context.WithDeadline(sc.ctx, recvAt.Add(d))
	} else {
		ctx, c.cancel = context.WithCancel(sc.ctx)
	}
	sc.mu.Lock()
	if _, dup := sc.inflight[c.h.id]; dup {
		sc.mu.Unlock()
		c.cancel()
		return errFrame("request id %d already in flight", c.h.id)
	}
	sc.inflight[c.h.id] = c
	sc.mu.Unlock()
	sc.wg.Add(1)
	sc.s.inFlight.Add(1)
	go c.run(ctx)
	return nil
}

func (sc *serverConn) cancelCall(id uint64) {
	sc.mu.Lock()
	c := sc.inflight[id]
	sc.mu.Unlock()
	if c != nil {
		c.canceled.Store(true)
		c.cancel()
	}
}

// serverCall is one request in flight on a serverConn.
type serverCall struct {
	sc       *serverConn
	h        header
	size     int
	status   proto.Code // the response's
	out      int        // the response frame's bytes
	recvAt   time.Time  // the request's header arrived
	runAt    time.Time  // its handler started (zero: it did not run)
	answerAt time.Time  // its handler returned
	body     *[]byte
	payload  *[]byte
	cancel   context.CancelFunc
	canceled atomic.Bool // by a cancel frame from the client
	detached atomic.Bool // out of the server's total budget (Request.Detach)
	done     func()      // the Response's Done
}

// release returns what the request holds; used before the call was started.
func (c *serverCall) release() {
	c.sc.s.bufs.put(c.body)
	c.sc.s.bufs.put(c.payload)
	c.sc.budget.release(c.size)
	if !c.detached.Load() {
		c.sc.s.total.release(c.size)
	}
}

// detach is Request.Detach.
func (c *serverCall) detach() {
	if c.detached.CompareAndSwap(false, true) {
		c.sc.s.total.release(c.size)
	}
}

// finish ends a started call: after its response was written or dropped.
func (c *serverCall) finish() {
	if c.done != nil {
		c.done()
	}
	c.served(time.Now())
	c.sc.s.inFlight.Add(-1)
	c.cancel()
	c.sc.mu.Lock()
	delete(c.sc.inflight, c.h.id)
	c.sc.mu.Unlock()
	c.release()
	c.sc.wg.Done()
}

func (c *serverCall) beginWrite() bool           { return true }
func (c *serverCall) endWrite(_ bool, err error) { c.finish() }

func (c *serverCall) run(ctx context.Context) {
	var (
		resp *Response
		err  error
	)
	switch {
	case ctx.Err() != nil:
		err = proto.Errorf(proto.CodeOf(ctx.Err()), "rpc: method %d: gave up before running", c.h.method)
	default:
		h := c.sc.s.handler(c.h.method)
		if h.h == nil {
			err = proto.Errorf(proto.UnknownMethod, "rpc: no handler for method %d", c.h.method)
			break
		}
		if h.access == AccessAdmin && !c.sc.identity.Admin {
			err = proto.Errorf(proto.EPERM, "rpc: method %d needs the admin token", c.h.method)
			break
		}
		req := &Request{
			Method:   c.h.method,
			ID:       c.h.id,
			Identity: c.sc.identity,
			Remote:   c.sc.nc.RemoteAddr(),
			body:     *c.body,
			detach:   c.detach,
		}
		if c.payload != nil {
			req.Payload = *c.payload
		}
		c.runAt = time.Now()
		resp, err = c.invoke(ctx, h.h, req)
		c.answerAt = time.Now()
	}
	c.respond(resp, err)
}

func (c *serverCall) invoke(ctx context.Context, h HandlerFunc, req *Request) (resp *Response, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.sc.log.Error().Uint16("method", c.h.method).Interface("panic", r).Bytes("stack", debug.Stack()).Msg("rpc: handler panicked")
			resp, err = nil, proto.Errorf(proto.Internal, "rpc: method %d: handler panicked", c.h.method)
		}
	}()
	return h(ctx, req)
}

// respond queues the response frame; the writer calls finish once it is out.
func (c *serverCall) respond(resp *Response, err error) {
	if resp != nil {
		c.done = resp.Done
	}
	if c.canceled.Load() {
		c.status = proto.Canceled
		c.finish() // the caller is gone: nothing to send
		return
	}
	bufs := &c.sc.s.bufs
	head := bufs.get(headerSize)
	b := *head
	var payload [][]byte
	var plen int
	if err == nil && resp != nil {
		b, err = appendBody(b, resp.Body)
		if err != nil {
			err = proto.Errorf(proto.Internal, "rpc: method %d: encode response: %v", c.h.method, err)
		} else if len(b)-headerSize > c.sc.peerMaxBody {
			err = proto.Errorf(proto.TooLarge, "rpc: method %d: response body of %d bytes exceeds the client's limit of %d", c.h.method, len(b)-headerSize, c.sc.peerMaxBody)
		}
		for _, p := range resp.Payload {
			plen += len(p)
		}
		if err == nil && plen > c.sc.s.opts.MaxPayload {
			err = proto.Errorf(proto.TooLarge, "rpc: method %d: response payload of %d bytes exceeds the limit of %d", c.h.method, plen, c.sc.s.opts.MaxPayload)
		}
		payload = resp.Payload
	}
	status := proto.OK
	if err != nil {
		status = proto.CodeOf(err)
		if status == proto.Internal {
			c.sc.log.Error().Err(err).Uint16("method", c.h.method).Msg("rpc: handler failed")
		} else {
			c.sc.log.Debug().Err(err).Uint16("method", c.h.method).Msg("rpc: handler returned an error")
		}
		msg := err.Error()
		if len(msg) > maxErrorMessage {
			msg = msg[:maxErrorMessage]
		}
		b, _ = appendBody(b[:headerSize], msg)
		payload, plen = nil, 0
	}
	encodeHeader(b, header{
		kind:       kindResponse,
		method:     c.h.method,
		status:     status,
		id:         c.h.id,
		bodyLen:    uint32(len(b) - headerSize),
		payloadLen: uint32(plen),
	})
	*head = b
	c.status, c.out = status, len(b)+plen
	_ = c.sc.w.enqueue(outFrame{head: head, payload: payload, owner: c})
}

// budget bounds the requests (count and bytes) in flight on a connection.
type budget struct {
	mu              sync.Mutex
	cond            sync.Cond
	n, maxN         int
	bytes, maxBytes int
	closed          bool
	shared          bool           // waited for by many connections: release wakes them all
	waits           int            // acquisitions that had to wait (tests)
	peak            int            // most bytes held since the last time none were (shared)
	onIdle          func(peak int) // shared: called, outside mu, when release leaves nothing held
}

func (b *budget) init(maxN, maxBytes int) {
	b.cond.L = &b.mu
	b.maxN, b.maxBytes = maxN, maxBytes
}

// acquire waits for room for one request of size bytes; a request larger
// than the whole byte budget is admitted when nothing else is in flight. It
// returns false once the budget is closed.
func (b *budget) acquire(size int) bool { return b.acquireUnless(size, nil) }

// acquireUnless is acquire that also gives up (returning false) when stop,
// checked whenever the budget is woken (release, wake), returns true.
func (b *budget) acquireUnless(size int, stop func() bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	waited := false
	for !b.closed && (b.n >= b.maxN || (b.n > 0 && b.bytes+size > b.maxBytes)) {
		if stop != nil && stop() {
			return false
		}
		if !waited {
			b.waits++
			waited = true
		}
		b.cond.Wait()
	}
	if b.closed {
		return false
	}
	b.n++
	b.bytes += size
	b.peak = max(b.peak, b.bytes)
	return true
}

func (b *budget) release(size int) {
	b.mu.Lock()
	b.n--
	b.bytes -= size
	peak := -1
	if b.bytes == 0 && b.onIdle != nil {
		peak, b.peak = b.peak, 0
	}
	b.mu.Unlock()
	if peak >= 0 {
		b.onIdle(peak)
	}
	if b.shared {
		b.cond.Broadcast()
	} else {
		b.cond.Signal()
	}
}

// take counts size bytes in flight without waiting for room.
func (b *budget) take(size int) {
	b.mu.Lock()
	b.n++
	b.bytes += size
	b.peak = max(b.peak, b.bytes)
	b.mu.Unlock()
}

// wake wakes every waiter, to check its stop condition.
func (b *budget) wake() {
	b.mu.Lock()
	b.mu.Unlock()
	b.cond.Broadcast()
}

// busy reports whether requests are in flight.
func (b *budget) busy() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n > 0
}

func (b *budget) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.cond.Broadcast()
}

// isLoopbackTCP reports whether nc is a TCP connection whose peer is on a
// loopback address, i.e. a client on this host.
func isLoopbackTCP(nc net.Conn) bool {
	a, ok := nc.RemoteAddr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}
