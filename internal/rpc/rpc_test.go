package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/tcptap"
)

const (
	testToken  = "alice-token"
	adminToken = "admin-token"

	mEcho   uint16 = 1 // body echoed, request payload echoed as response payload
	mGen    uint16 = 2 // genReq → payload of N bytes, byte i = Seed+i
	mSlow   uint16 = 3 // blocks until ctx ends or release is closed; reports ctx.Err()
	mFail   uint16 = 4 // failReq → proto.Errorf(Code)
	mPanic  uint16 = 5
	mWhoAmI uint16 = 6
	mPlain  uint16 = 7 // plainReq → a plain Go error
)

type echoMsg struct {
	N int
	S string
}

type genReq struct {
	N    int
	Seed byte
}

type failReq struct{ Code proto.Code }

type plainReq struct{ Kind string }

// handlers is the test service; its counters let tests assert what ran.
type handlers struct {
	calls    atomic.Int64
	slowErrs chan error    // ctx.Err() seen by mSlow handlers
	release  chan struct{} // closing it lets mSlow handlers return OK
}

func newHandlers() *handlers {
	return &handlers{slowErrs: make(chan error, 64), release: make(chan struct{})}
}

func (h *handlers) register(s *rpc.Server) {
	s.Handle(mEcho, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		var m echoMsg
		if err := req.Decode(&m); err != nil {
			return nil, err
		}
		resp := &rpc.Response{Body: m}
		if req.Payload != nil {
			resp.Payload = [][]byte{req.Payload}
		}
		return resp, nil
	})
	s.Handle(mGen, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		var g genReq
		if err := req.Decode(&g); err != nil {
			return nil, err
		}
		return &rpc.Response{Body: g.N, Payload: [][]byte{pattern(g.N, g.Seed)}}, nil
	})
	s.Handle(mSlow, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		select {
		case <-ctx.Done():
			h.slowErrs <- ctx.Err()
			return nil, ctx.Err()
		case <-h.release:
			return &rpc.Response{Body: "released"}, nil
		}
	})
	s.Handle(mFail, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		var f failReq
		if err := req.Decode(&f); err != nil {
			return nil, err
		}
		return nil, proto.Errorf(f.Code, "failing as asked")
	})
	s.Handle(mPanic, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		panic("test panic")
	})
	s.Handle(mWhoAmI, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		return &rpc.Response{Body: req.Identity}, nil
	})
	s.Handle(mPlain, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		h.calls.Add(1)
		var p plainReq
		if err := req.Decode(&p); err != nil {
			return nil, err
		}
		switch p.Kind {
		case "notexist":
			_, err := os.Open("/nonexistent/fff/rpc/test")
			return nil, err
		case "deadline":
			return nil, fmt.Errorf("waiting: %w", context.DeadlineExceeded)
		}
		return nil, errors.New("plain failure")
	})
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i) + byte(i>>8)
	}
	return b
}

func testAuth() rpc.Authenticator {
	return rpc.NewStaticTokens(map[string]rpc.Identity{
		testToken:  {UID: 1000, GIDs: []uint32{1000, 27}, Name: "alice"},
		adminToken: {UID: 0, Admin: true, Name: "admin"},
	})
}

// startServer serves the test handlers on a fresh loopback port.
func startServer(t testing.TB, opts rpc.ServerOptions) (*rpc.Server, *handlers, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, l, opts)
}

func serveOn(t testing.TB, l net.Listener, opts rpc.ServerOptions) (*rpc.Server, *handlers, string) {
	if opts.Auth == nil {
		opts.Auth = testAuth()
	}
	s := rpc.NewServer(opts)
	h := newHandlers()
	h.register(s)
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return s, h, l.Addr().String()
}

// serveLocal serves the test handlers on a fresh loopback port and on the
// Unix socket sock, which the server announces (opts.LocalSocket).
func serveLocal(t testing.TB, sock string, opts rpc.ServerOptions) string {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	opts.LocalSocket = sock
	s, _, addr := serveOn(t, tl, opts)
	go s.Serve(ul)
	return addr
}

func dial(t testing.TB, addr string, opts rpc.ClientOptions) *rpc.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rpc.Dial(ctx, addr, testToken, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestRoundTrip(t *testing.T) {
	const maxPayload = 8 << 20
	_, _, addr := startServer(t, rpc.ServerOptions{MaxPayload: maxPayload})
	c := dial(t, addr, rpc.ClientOptions{MaxPayload: maxPayload})
	ctx := ctxT(t)
	for _, size := range []int{0, 1, 100, 8 << 10, 1 << 20, maxPayload - 1, maxPayload} {
		for _, mode := range []string{"into", "return", "discard"} {
			t.Run(fmt.Sprintf("%d/%s", size, mode), func(t *testing.T) {
				in := pattern(size, byte(size))
				var opts []rpc.CallOption
				if size > 0 {
					// Split the payload to exercise multi-segment writes.
					opts = append(opts, rpc.WithPayload(in[:size/3], in[size/3:]))
				}
				dst := make([]byte, size+10)
				var got []byte
				switch mode {
				case "into":
					opts = append(opts, rpc.IntoBuffer(dst))
				case "return":
					opts = append(opts, rpc.ReturnPayload(&got))
				}
				var out echoMsg
				n, err := c.Call(ctx, mEcho, echoMsg{N: size, S: "hello"}, &out, opts...)
				if err != nil {
					t.Fatal(err)
				}
				if n != size || out != (echoMsg{N: size, S: "hello"}) {
					t.Fatalf("n=%d out=%+v", n, out)
				}
				switch mode {
				case "into":
					got = dst[:n]
				case "discard":
					return
				}
				if !bytes.Equal(got, in) {
					t.Fatalf("payload differs")
				}
			})
		}
	}
}

// TestIntoBuffers reads response payloads into vectored destinations.
func TestIntoBuffers(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{})
	ctx := ctxT(t)
	segs := func(sizes ...int) [][]byte {
		out := make([][]byte, len(sizes))
		for i, n := range sizes {
			out[i] = make([]byte, n)
		}
		return out
	}
	join := func(d [][]byte) []byte { return bytes.Join(d, nil) }
	for _, tc := range []struct {
		name  string
		sizes []int
		n     int
	}{
		{"exact", []int{100, 0, 3 << 20, 1, 5000}, 100 + 3<<20 + 1 + 5000},
		{"short", []int{10, 2 << 20, 10}, 10 + 1<<20},
		{"empty payload", []int{10, 10}, 0},
		{"one", []int{4096}, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsts := segs(tc.sizes...)
			n, err := c.Call(ctx, mGen, genReq{N: tc.n, Seed: 3}, nil, rpc.IntoBuffers(dsts...))
			if err != nil || n != tc.n {
				t.Fatalf("n=%d err=%v, want %d", n, err, tc.n)
			}
			got := join(dsts)
			if !bytes.Equal(got[:n], pattern(tc.n, 3)) {
				t.Fatal("payload differs")
			}
			if !bytes.Equal(got[n:], make([]byte, len(got)-n)) {
				t.Fatal("bytes after the payload were written")
			}
		})
	}
	t.Run("too large", func(t *testing.T) {
		dsts := segs(100, 200, 300)
		n, err := c.Call(ctx, mGen, genReq{N: 601, Seed: 1}, nil, rpc.IntoBuffers(dsts...))
		if !errors.Is(err, proto.ErrTooLarge) || n != 601 {
			t.Fatalf("n=%d err=%v, want 601 TooLarge", n, err)
		}
		if !bytes.Equal(join(dsts), make([]byte, 600)) {
			t.Fatal("buffers written although the payload did not fit")
		}
		var out echoMsg
		if _, err := c.Call(ctx, mEcho, echoMsg{N: 7}, &out); err != nil || out.N != 7 {
			t.Fatalf("follow-up call: %v %+v", err, out)
		}
	})
	t.Run("no buffers", func(t *testing.T) {
		n, err := c.Call(ctx, mGen, genReq{N: 1}, nil, rpc.IntoBuffers())
		if !errors.Is(err, proto.ErrTooLarge) || n != 1 {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if n, err := c.Call(ctx, mGen, genReq{N: 0}, nil, rpc.IntoBuffers()); err != nil || n != 0 {
			t.Fatalf("empty: n=%d err=%v", n, err)
		}
	})
}

func TestNilBodies(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{})
	var out echoMsg
	out.S = "untouched"
	if _, err := c.Call(ctxT(t), mEcho, nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.S != "" { // server echoed the zero echoMsg it decoded from an empty body
		t.Fatalf("out = %+v", out)
	}
	if _, err := c.Call(ctxT(t), mEcho, echoMsg{S: "x"}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestLimits(t *testing.T) {
	const maxPayload = 1 << 20
	_, h, addr := startServer(t, rpc.ServerOptions{MaxPayload: maxPayload, MaxBody: 64 << 10})
	c := dial(t, addr, rpc.ClientOptions{MaxPayload: 256 << 10, MaxBody: 64 << 10})
	ctx := ctxT(t)
	big := make([]byte, maxPayload+1)
	small := dial(t, addr, rpc.ClientOptions{MaxBody: 1024})

	tests := []struct {
		name  string
		call  func() (int, error)
		wantN int
	}{
		{"request payload over server limit", func() (int, error) {
			return c.Call(ctx, mEcho, echoMsg{}, nil, rpc.WithPayload(big))
		}, 0},
		{"request body over server limit", func() (int, error) {
			return c.Call(ctx, mEcho, echoMsg{S: strings.Repeat("x", 70<<10)}, nil)
		}, 0},
		{"response payload over IntoBuffer", func() (int, error) {
			dst := make([]byte, 1000)
			n, err := c.Call(ctx, mGen, genReq{N: 1001}, nil, rpc.IntoBuffer(dst))
			if !bytes.Equal(dst, make([]byte, 1000)) {
				t.Errorf("dst written although the payload did not fit")
			}
			return n, err
		}, 1001},
		{"response payload over client MaxPayload", func() (int, error) {
			var p []byte
			return c.Call(ctx, mGen, genReq{N: 300 << 10}, nil, rpc.ReturnPayload(&p))
		}, 300 << 10},
		{"response payload over server limit", func() (int, error) {
			return c.Call(ctx, mGen, genReq{N: maxPayload + 1}, nil)
		}, 0},
		{"response body over client limit", func() (int, error) {
			return small.Call(ctx, mEcho, echoMsg{S: strings.Repeat("y", 2000)}, nil)
		}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := tc.call()
			if !errors.Is(err, proto.ErrTooLarge) {
				t.Fatalf("err = %v, want TooLarge", err)
			}
			if n != tc.wantN {
				t.Fatalf("n = %d, want %d", n, tc.wantN)
			}
			// The connection survives.
			var out echoMsg
			if _, err := c.Call(ctx, mEcho, echoMsg{N: 7}, &out); err != nil || out.N != 7 {
				t.Fatalf("follow-up call: %v %+v", err, out)
			}
		})
	}
	// Near the limit still works.
	dst := make([]byte, maxPayload)
	if n, err := c.Call(ctx, mEcho, echoMsg{}, nil, rpc.WithPayload(big[:maxPayload]), rpc.IntoBuffer(dst)); err != nil || n != maxPayload {
		t.Fatalf("at the limit: n=%d err=%v", n, err)
	}
	if h.calls.Load() == 0 {
		t.Fatal("no handler ran")
	}
}

func TestConcurrentCallsOneConn(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{})
	runConcurrent(t, 3000, func(ctx context.Context, m uint16, req, resp any, opts ...rpc.CallOption) (int, error) {
		return c.Call(ctx, m, req, resp, opts...)
	})
}

func TestConcurrentCallsPool(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	p := rpc.NewPool(addr, testToken, rpc.PoolOptions{Size: 4})
	defer p.Close()
	runConcurrent(t, 3000, p.Call)
}

type callFunc func(ctx context.Context, m uint16, req, resp any, opts ...rpc.CallOption) (int, error)

// runConcurrent makes n concurrent calls, each with its own body and payload,
// and checks every caller got its own answer.
func runConcurrent(t *testing.T, n int, call callFunc) {
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := i % 3000
			if i%2 == 0 {
				var out echoMsg
				in := pattern(size, byte(i))
				dst := make([]byte, size)
				got, err := call(ctx, mEcho, echoMsg{N: i, S: fmt.Sprint(i)}, &out, rpc.WithPayload(in), rpc.IntoBuffer(dst))
				switch {
				case err != nil:
					errs <- err
				case out.N != i || out.S != fmt.Sprint(i) || got != size || !bytes.Equal(dst, in):
					errs <- fmt.Errorf("call %d got someone else's answer: %+v n=%d", i, out, got)
				}
				return
			}
			var back []byte
			var got int
			if _, err := call(ctx, mGen, genReq{N: size, Seed: byte(i)}, &got, rpc.ReturnPayload(&back)); err != nil {
				errs <- err
			} else if got != size || !bytes.Equal(back, pattern(size, byte(i))) {
				errs <- fmt.Errorf("gen call %d got a wrong payload", i)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestDeadline(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, mSlow, nil, nil)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("call took %v", el)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, proto.ErrTimeout) || proto.CodeOf(err) != proto.Timeout {
		t.Fatalf("err = %v", err)
	}
	select {
	case serr := <-h.slowErrs:
		if !errors.Is(serr, context.DeadlineExceeded) {
			t.Fatalf("handler saw %v", serr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("handler never saw its context end")
	}
	// The connection is fine afterwards.
	if _, err := c.Call(ctxT(t), mEcho, echoMsg{}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestCancelPropagates(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{DefaultTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := c.Call(ctx, mSlow, nil, nil)
		done <- err
	}()
	waitFor(t, func() bool { return h.calls.Load() == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) || !errors.Is(err, proto.ErrCanceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("canceled call did not return")
	}
	select {
	case serr := <-h.slowErrs:
		if !errors.Is(serr, context.Canceled) {
			t.Fatalf("handler saw %v", serr)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("cancel did not reach the handler")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestCancelDuringPayload cancels calls while their response payload is
// streaming into the caller's buffer and checks that the buffer is not
// written after Call returns (the race detector checks the same).
func TestCancelDuringPayload(t *testing.T) {
	const size = 4 << 20
	for _, tc := range []struct {
		name      string
		stall     bool // the stream stops mid-payload: the grace period closes the connection
		connAlive bool
		grace     time.Duration
		vectored  bool // IntoBuffers over segments of dst
	}{
		{"trickle", false, true, 2 * time.Second, false},
		{"stall", true, false, 50 * time.Millisecond, false},
		{"trickle vectored", false, true, 2 * time.Second, true},
		{"stall vectored", true, false, 50 * time.Millisecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, addr := startServer(t, rpc.ServerOptions{})
			unblock := make(chan struct{})
			var unblockOnce sync.Once
			defer unblockOnce.Do(func() { close(unblock) })
			px := tcptap.Start(t, addr, func(d tcptap.Dir, fwd int64) {
				if d != tcptap.Down || fwd < 1<<20 {
					return
				}
				if tc.stall {
					<-unblock
				} else {
					time.Sleep(2 * time.Millisecond)
				}
			})
			c := dial(t, px.Addr, rpc.ClientOptions{CancelGrace: tc.grace})

			dst := make([]byte, size)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				opt := rpc.IntoBuffer(dst)
				if tc.vectored {
					opt = rpc.IntoBuffers(dst[:1000], dst[1000:1<<20+7], dst[1<<20+7:])
				}
				_, err := c.Call(ctx, mGen, genReq{N: size, Seed: 1}, nil, opt)
				done <- err
			}()
			waitFor(t, func() bool { return px.Forwarded(tcptap.Down) >= 1<<20 })
			time.Sleep(50 * time.Millisecond) // let the reader take in what arrived
			start := time.Now()
			cancel()
			var err error
			select {
			case err = <-done:
			case <-time.After(2 * time.Second):
				t.Fatal("canceled call did not return")
			}
			if el := time.Since(start); el > time.Second {
				t.Fatalf("cancel took %v", el)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
			snapshot := bytes.Clone(dst) // a racing write would be reported by -race here
			unblockOnce.Do(func() { close(unblock) })
			// Let the rest of the payload arrive (and be discarded).
			time.Sleep(200 * time.Millisecond)
			if !bytes.Equal(snapshot, dst) {
				t.Fatal("the buffer changed after Call returned")
			}
			want := pattern(size, 1)
			if !bytes.Equal(dst[:1000], want[:1000]) {
				t.Fatal("the first payload bytes were not read into the buffer")
			}
			if bytes.Equal(dst, want) {
				t.Fatal("the whole payload arrived: the test did not cancel mid-payload")
			}
			_, err = c.Call(ctxT(t), mEcho, echoMsg{}, nil)
			if tc.connAlive && err != nil {
				t.Fatalf("connection should survive: %v", err)
			}
			if !tc.connAlive && !errors.Is(err, proto.ErrUnavailable) {
				t.Fatalf("stalled connection should have been closed: %v", err)
			}
		})
	}
}

// TestCancelDuringRequestPayload cancels while the request payload is being
// written and the server is not reading.
func TestCancelDuringRequestPayload(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{MaxInFlight: 1})
	c := dial(t, addr, rpc.ClientOptions{CancelGrace: 50 * time.Millisecond, DefaultTimeout: -1})
	ctx, cancel := context.WithCancel(context.Background())
	// Fill the server's one request slot so it stops reading.
	go c.Call(ctx, mSlow, nil, nil)
	waitFor(t, func() bool { return h.calls.Load() == 1 })
	payload := make([]byte, 32<<20)
	done := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, mEcho, echoMsg{}, nil, rpc.WithPayload(payload))
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("canceled call did not return")
	}
	payload[0] = 1 // the writer must be done with it (-race checks)
}

func TestAuthRejected(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{})
	ctx := ctxT(t)
	for _, tok := range []string{"wrong-token", "", testToken + "x", testToken[:len(testToken)-1]} {
		c, err := rpc.Dial(ctx, addr, tok, rpc.ClientOptions{})
		if err == nil {
			c.Close()
			t.Fatalf("token %q accepted", tok)
		}
		if !errors.Is(err, proto.ErrUnauthenticated) {
			t.Fatalf("token %q: err = %v", tok, err)
		}
	}
	// A client that pipelines requests behind a bad proof gets nothing run.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(rpc.TestFrames.Hello("bogus"))
	ch, err := rpc.TestFrames.Read(nc)
	if err != nil || rpc.TestFrames.Kind(ch) != 6 {
		t.Fatalf("challenge: %x %v", ch, err)
	}
	nc.Write(rpc.TestFrames.Proof("bogus", ch))
	nc.Write(rpc.TestFrames.Request(1, mEcho, nil))
	nc.Write(rpc.TestFrames.Request(2, mEcho, nil))
	b, _ := io.ReadAll(nc)
	if code := rpc.TestFrames.Status(b); code != proto.Unauthenticated {
		t.Fatalf("reply status %v", code)
	}
	// A connection that starts with anything but a hello is closed.
	for _, first := range [][]byte{
		rpc.TestFrames.Request(1, mEcho, nil),
		[]byte("GET / HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.Write(first)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(nc)
		nc.Close()
		if err != nil || len(b) != 0 {
			t.Fatalf("got %q, %v; want a silent close", b, err)
		}
	}
	if n := h.calls.Load(); n != 0 {
		t.Fatalf("%d handlers ran for unauthenticated connections", n)
	}
	// The right token works, and the handler sees its identity.
	c := dial(t, addr, rpc.ClientOptions{})
	var id rpc.Identity
	if _, err := c.Call(ctx, mWhoAmI, nil, &id); err != nil {
		t.Fatal(err)
	}
	if id.UID != 1000 || id.Name != "alice" || len(id.GIDs) != 2 || id.Admin {
		t.Fatalf("identity %+v", id)
	}
}

func TestNilAuthenticatorRefuses(t *testing.T) {
	s := rpc.NewServer(rpc.ServerOptions{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	_, err = rpc.Dial(ctxT(t), l.Addr().String(), testToken, rpc.ClientOptions{})
	if !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("err = %v", err)
	}
}

func TestGarbageClosesConnection(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{})
	// Garbage instead of the hello, instead of the proof, and after the
	// handshake.
	const (
		first = iota
		proof
		after
	)
	garbage := []struct {
		at int
		b  []byte
	}{
		{first, bytes.Repeat([]byte{0xff}, 100)},
		{first, bytes.Repeat([]byte{0}, 64)},
		{proof, rpc.TestFrames.Request(1, mEcho, nil)},
		{proof, rpc.TestFrames.Hello(testToken)},
		{after, bytes.Repeat([]byte{0xF3, 1, 9}, 20)},
		{after, rpc.TestFrames.Header(3, 1, 1, 0, 1<<31, 0)}, // body over limit
		{after, rpc.TestFrames.Header(3, 1, 1, 0, 0, 1<<31)}, // payload over limit
	}
	for i, g := range garbage {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		switch g.at {
		case proof:
			nc.Write(rpc.TestFrames.Hello(testToken))
		case after:
			if err := rpc.ClientHandshake(ctxT(t), nc, testToken); err != nil {
				t.Fatal(err)
			}
		}
		nc.Write(g.b)
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.ReadAll(nc) // the welcome, if any, then EOF
		nc.Close()
		if err != nil {
			t.Fatalf("garbage %d: connection not closed: %v", i, err)
		}
	}
	if n := h.calls.Load(); n != 0 {
		t.Fatalf("%d handlers ran", n)
	}
	if _, err := c.Call(ctxT(t), mEcho, echoMsg{}, nil); err != nil {
		t.Fatalf("server stopped serving others: %v", err)
	}
}

func TestErrorCodes(t *testing.T) {
	_, _, addr := startServer(t, rpc.ServerOptions{})
	c := dial(t, addr, rpc.ClientOptions{})
	ctx := ctxT(t)
	for _, code := range proto.Codes() {
		if code == proto.OK {
			continue
		}
		t.Run(code.String(), func(t *testing.T) {
			_, err := c.Call(ctx, mFail, failReq{Code: code}, nil)
			var pe *proto.Error
			if !errors.As(err, &pe) || pe.Code != code {
				t.Fatalf("err = %#v", err)
			}
			if !errors.Is(err, code.Err()) || proto.CodeOf(err) != code {
				t.Fatalf("errors.Is(%v, %v) false", err, code.Err())
			}
			if !strings.Contains(err.Error(), "failing as asked") {
				t.Fatalf("message lost: %q", err)
			}
		})
	}
	tests := []struct {
		req    plainReq
		want   proto.Code
		stdlib error
	}{
		{plainReq{"notexist"}, proto.ENOENT, fs.ErrNotExist},
		{plainReq{"deadline"}, proto.Timeout, context.DeadlineExceeded},
		{plainReq{"other"}, proto.Internal, nil},
	}
	for _, tc := range tests {
		_, err := c.Call(ctx, mPlain, tc.req, nil)
		if proto.CodeOf(err) != tc.want || (tc.stdlib != nil && !errors.Is(err, tc.stdlib)) {
			t.Errorf("%v: err = %v (code %v)", tc.req, err, proto.CodeOf(err))
		}
	}
	if _, err := c.Call(ctx, 999, nil, nil); !errors.Is(err, proto.ErrUnknownMethod) {
		t.Errorf("unknown method: %v", err)
	}
	if _, err := c.Call(ctx, mPanic, nil, nil); !errors.Is(err, proto.ErrInternal) {
		t.Errorf("panic: %v", err)
	}
	// A body of the wrong type is a BadRequest.
	if _, err := c.Call(ctx, mGen, "not a genReq", nil); !errors.Is(err, proto.ErrBadRequest) {
		t.Errorf("bad body: %v", err)
	}
	if _, err := c.Call(ctx, mEcho, echoMsg{N: 1}, nil); err != nil {
		t.Fatalf("connection broken by errors: %v", err)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("graceful", func(t *testing.T) {
		s, h, addr := startServer(t, rpc.ServerOptions{})
		c := dial(t, addr, rpc.ClientOptions{})
		done := make(chan error, 1)
		go func() {
			var out string
			_, err := c.Call(ctxT(t), mSlow, nil, &out)
			if err == nil && out != "released" {
				err = fmt.Errorf("out = %q", out)
			}
			done <- err
		}()
		waitFor(t, func() bool { return h.calls.Load() == 1 })
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(ctxT(t)) }()
		time.Sleep(50 * time.Millisecond)
		close(h.release) // the in-flight call finishes and is answered
		if err := <-done; err != nil {
			t.Fatalf("in-flight call: %v", err)
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if _, err := c.Call(ctxT(t), mEcho, nil, nil); !errors.Is(err, proto.ErrUnavailable) {
			t.Fatalf("call after shutdown: %v", err)
		}
		if _, err := rpc.Dial(ctxT(t), addr, testToken, rpc.ClientOptions{}); !errors.Is(err, proto.ErrUnavailable) {
			t.Fatalf("dial after shutdown: %v", err)
		}
	})
	t.Run("forced", func(t *testing.T) {
		s, h, addr := startServer(t, rpc.ServerOptions{})
		c := dial(t, addr, rpc.ClientOptions{})
		const n = 20
		errs := make(chan error, n)
		for range n {
			go func() {
				_, err := c.Call(ctxT(t), mSlow, nil, nil)
				errs <- err
			}()
		}
		waitFor(t, func() bool { return h.calls.Load() == n })
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		for range n {
			select {
			case err := <-errs:
				if !errors.Is(err, proto.ErrUnavailable) {
					t.Fatalf("pending call: %v", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("pending call not failed")
			}
		}
		select {
		case <-c.Done():
		case <-time.After(time.Second):
			t.Fatal("Done not closed")
		}
	})
}

func TestPoolRedial(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s1, _, addr := serveOn(t, l, rpc.ServerOptions{})
	p := rpc.NewPool(addr, testToken, rpc.PoolOptions{Size: 2})
	defer p.Close()
	ctx := ctxT(t)
	for range 4 {
		if _, err := p.Call(ctx, mEcho, echoMsg{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	s1.Close()
	if _, err := p.Call(ctx, mEcho, echoMsg{}, nil); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("call with the server down: %v", err)
	}
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, h2, _ := serveOn(t, l2, rpc.ServerOptions{})
	// Calls may still pick a connection whose failure is not yet noticed,
	// but they must recover within a few attempts.
	var lastErr error
	ok := 0
	for i := 0; i < 50 && ok < 4; i++ {
		if _, lastErr = p.Call(ctx, mEcho, echoMsg{}, nil); lastErr == nil {
			ok++
		}
	}
	if ok < 4 || h2.calls.Load() < 4 {
		t.Fatalf("pool did not redial: %v", lastErr)
	}
	p.Close()
	if _, err := p.Call(ctx, mEcho, nil, nil); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("call on a closed pool: %v", err)
	}
}

func TestDialErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	if _, err := rpc.Dial(ctxT(t), addr, testToken, rpc.ClientOptions{}); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("refused: %v", err)
	}
	// A listener that never answers the handshake: Dial's context decides.
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = rpc.Dial(ctx, l.Addr().String(), testToken, rpc.ClientOptions{})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("silent server: %v after %v", err, time.Since(start))
	}
}

func TestStaticTokens(t *testing.T) {
	a := rpc.NewStaticTokens(map[string]rpc.Identity{"t1": {UID: 1, GIDs: []uint32{5}}, "": {UID: 9}})
	ctx := context.Background()
	key, id, err := a.Lookup(ctx, rpc.KeyOf("t1").LookupID())
	if err != nil || id.UID != 1 || key != rpc.KeyOf("t1") {
		t.Fatalf("t1: %+v %v", id, err)
	}
	id.GIDs[0] = 99 // callers get a copy
	if _, id2, _ := a.Lookup(ctx, rpc.KeyOf("t1").LookupID()); id2.GIDs[0] != 5 {
		t.Fatal("identity shared between callers")
	}
	for _, tok := range []string{"", "t2", "t1 "} {
		if _, _, err := a.Lookup(ctx, rpc.KeyOf(tok).LookupID()); !errors.Is(err, proto.ErrUnauthenticated) {
			t.Fatalf("%q: %v", tok, err)
		}
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestLogs(t *testing.T) {
	var logs syncBuffer
	_, _, addr := startServer(t, rpc.ServerOptions{Logger: zerolog.New(&logs)})
	if _, err := rpc.Dial(ctxT(t), addr, "wrong", rpc.ClientOptions{}); err == nil {
		t.Fatal("wrong token accepted")
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.Write(bytes.Repeat([]byte{0xff}, 64))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(nc)
	nc.Close()
	waitFor(t, func() bool {
		s := logs.String()
		return strings.Contains(s, "authentication failed") && strings.Contains(s, "bad first frame")
	})
	if !strings.Contains(logs.String(), `"level":"warn"`) || !strings.Contains(logs.String(), `"peer":"127.0.0.1:`) {
		t.Fatalf("logs lack level or peer:\n%s", logs.String())
	}
}

// TestPoolNotSent: a call to an address nobody listens on fails as
// unavailable and says that nothing was sent, so that any method may be
// repeated; a call the server answered with an error does not say so.
func TestPoolNotSent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := rpc.NewPool(addr, testToken, rpc.PoolOptions{Size: 1})
	defer p.Close()
	_, err = p.Call(ctxT(t), mEcho, echoMsg{}, nil)
	if !errors.Is(err, proto.ErrUnavailable) || !errors.Is(err, rpc.ErrNotSent) {
		t.Fatalf("call to a closed port: %v; want unavailable and not sent", err)
	}

	_, _, addr = startServer(t, rpc.ServerOptions{})
	p2 := rpc.NewPool(addr, testToken, rpc.PoolOptions{Size: 1})
	defer p2.Close()
	if _, err := p2.Call(ctxT(t), 9999, echoMsg{}, nil); err == nil || errors.Is(err, rpc.ErrNotSent) {
		t.Fatalf("call of an unknown method: %v; want an error that does not claim the request was never sent", err)
	}
}

// TestPoolReset: Reset fails the calls in flight on the pool's connections
// (a server that hangs never answers them) and later calls dial again.
func TestPoolReset(t *testing.T) {
	_, h, addr := startServer(t, rpc.ServerOptions{})
	p := rpc.NewPool(addr, testToken, rpc.PoolOptions{Size: 1})
	defer p.Close()
	ctx := ctxT(t)
	if _, err := p.Call(ctx, mEcho, echoMsg{}, nil); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := p.Call(ctx, mSlow, nil, nil); done <- err }()
	for h.calls.Load() < 2 { // the slow call reached its handler
		time.Sleep(time.Millisecond)
	}
	p.Reset()
	if err := <-done; !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("call in flight across Reset: %v, want Unavailable", err)
	}
	if _, err := p.Call(ctx, mEcho, echoMsg{}, nil); err != nil {
		t.Fatalf("call after Reset: %v", err)
	}
}

// TestDetach: a request larger than the server's total budget waits until
// nothing else is held — but not for a handler that detached its request
// (a long poll), which may wait far longer.
func TestDetach(t *testing.T) {
	const mWait, mBig uint16 = 900, 901
	s := rpc.NewServer(rpc.ServerOptions{Auth: testAuth(), MaxTotalBytes: 256 << 10})
	hold := make(chan struct{})
	defer close(hold)
	waiting := make(chan struct{}, 1)
	s.Handle(mWait, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		req.Detach()
		waiting <- struct{}{}
		<-hold
		return &rpc.Response{}, nil
	})
	s.Handle(mBig, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		return &rpc.Response{Body: len(req.Payload)}, nil
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Close()
	ctx := ctxT(t)
	waiter := dial(t, l.Addr().String(), rpc.ClientOptions{})
	go waiter.Call(ctx, mWait, nil, nil)
	<-waiting
	big := dial(t, l.Addr().String(), rpc.ClientOptions{})
	var n int
	if _, err := big.Call(ctx, mBig, nil, &n, rpc.WithPayload(make([]byte, 1<<20))); err != nil || n != 1<<20 {
		t.Fatalf("a request over the total budget while a detached one waits: %d, %v", n, err)
	}
}
