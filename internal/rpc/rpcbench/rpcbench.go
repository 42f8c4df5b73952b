// Package rpcbench measures fff's RPC layer against raw loopback TCP in one
// run, for `fff bench` and `make bench`.
//
// Workloads, all on 127.0.0.1 inside this process:
//
// Each comparison alternates the RPC and the raw side in 3 rounds and reports
// each side's best round.
//
//   - small calls: a ~30-byte msgpack request echoed back, with 1, 16 and 256
//     calls in flight on one RPC connection; the reference is a 64-byte
//     ping-pong over raw TCP with as many connections as calls in flight (one
//     message in flight per connection, no framing, no encoding).
//   - bulk read: 1 MiB response payloads read IntoBuffer, 4 calls in flight
//     on one connection; the reference streams 1 MiB messages over one raw
//     TCP connection into a 1 MiB buffer (io.ReadFull), one direction, no
//     request/response turn-around.
//   - bulk write: 1 MiB request payloads (WithPayload), 4 in flight, against
//     the same raw stream.
package rpcbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"fff/internal/rpc"
)

const (
	token       = "rpcbench"
	mSmall      = 1
	mBulkRead   = 2
	mBulkWrite  = 3
	bulkSize    = 1 << 20
	smallMsg    = 64
	bulkFlight  = 4
	warmupShare = 10 // warm-up = d / warmupShare
)

type smallReq struct {
	ID   uint64
	Name string
}

// Env is a running RPC server and raw TCP reference servers.
type Env struct {
	srv      *rpc.Server
	addr     string
	rawSmall string
	rawBulk  string
	ls       []net.Listener
	bulk     []byte
	wg       sync.WaitGroup
}

// NewEnv starts the servers on loopback ports.
func NewEnv() (*Env, error) {
	e := &Env{bulk: make([]byte, bulkSize)}
	for i := range e.bulk {
		e.bulk[i] = byte(i)
	}
	e.srv = rpc.NewServer(rpc.ServerOptions{
		Auth: rpc.NewStaticTokens(map[string]rpc.Identity{token: {Name: "bench"}}),
	})
	e.srv.Handle(mSmall, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r smallReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		return &rpc.Response{Body: r}, nil
	})
	e.srv.Handle(mBulkRead, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		return &rpc.Response{Payload: [][]byte{e.bulk}}, nil
	})
	e.srv.Handle(mBulkWrite, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		return &rpc.Response{Body: len(req.Payload)}, nil
	})
	listen := func() (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err == nil {
			e.ls = append(e.ls, l)
		}
		return l, err
	}
	l, err := listen()
	if err != nil {
		return nil, err
	}
	e.addr = l.Addr().String()
	go e.srv.Serve(l)

	ls, err := listen()
	if err != nil {
		e.Close()
		return nil, err
	}
	e.rawSmall = ls.Addr().String()
	e.acceptLoop(ls, func(c net.Conn) { // ping-pong echo
		buf := make([]byte, smallMsg)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	lb, err := listen()
	if err != nil {
		e.Close()
		return nil, err
	}
	e.rawBulk = lb.Addr().String()
	e.acceptLoop(lb, func(c net.Conn) { // sink of 1 MiB messages
		buf := make([]byte, bulkSize)
		for {
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
		}
	})
	return e, nil
}

func (e *Env) acceptLoop(l net.Listener, serve func(net.Conn)) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
}

// Close stops the servers.
func (e *Env) Close() {
	for _, l := range e.ls {
		l.Close()
	}
	e.srv.Close()
	e.wg.Wait()
}

// Limit ends a measurement after N operations (if N > 0) or at Until.
type Limit struct {
	N     int64
	Until time.Time
}

// runOps runs op on conc workers until lim is reached and returns the number
// of operations and the time taken.
func runOps(ctx context.Context, conc int, lim Limit, op func(w int) error) (int64, time.Duration, error) {
	var (
		count   atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if lim.N > 0 {
					if count.Add(1) > lim.N {
						return
					}
				} else if time.Now().After(lim.Until) || ctx.Err() != nil {
					return
				}
				if err := op(w); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
				if lim.N == 0 {
					count.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	n := count.Load()
	if lim.N > 0 {
		n = lim.N
	}
	return n, time.Since(start), first
}

// SmallRPC runs small echo calls with conc in flight on one connection.
func (e *Env) SmallRPC(ctx context.Context, conc int, lim Limit) (int64, time.Duration, error) {
	c, err := rpc.Dial(ctx, e.addr, token, rpc.ClientOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	return runOps(ctx, conc, lim, func(w int) error {
		var out smallReq
		_, err := c.Call(ctx, mSmall, smallReq{ID: uint64(w), Name: "sample-000042.jpg"}, &out)
		if err == nil && out.ID != uint64(w) {
			err = errors.New("rpcbench: wrong answer")
		}
		return err
	})
}

// SmallRaw runs 64-byte ping-pongs on conc raw TCP connections.
func (e *Env) SmallRaw(ctx context.Context, conc int, lim Limit) (int64, time.Duration, error) {
	conns := make([]net.Conn, conc)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	bufs := make([][]byte, conc)
	for i := range conns {
		c, err := net.Dial("tcp", e.rawSmall)
		if err != nil {
			return 0, 0, err
		}
		conns[i] = c
		bufs[i] = make([]byte, smallMsg)
	}
	return runOps(ctx, conc, lim, func(w int) error {
		if _, err := conns[w].Write(bufs[w]); err != nil {
			return err
		}
		_, err := io.ReadFull(conns[w], bufs[w])
		return err
	})
}

// BulkRPC reads 1 MiB payloads IntoBuffer (write=false) or sends them
// WithPayload (write=true), conc in flight on one connection. Each operation
// moves 1 MiB.
func (e *Env) BulkRPC(ctx context.Context, conc int, write bool, lim Limit) (int64, time.Duration, error) {
	c, err := rpc.Dial(ctx, e.addr, token, rpc.ClientOptions{})
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	bufs := make([][]byte, conc)
	for i := range bufs {
		bufs[i] = make([]byte, bulkSize)
	}
	return runOps(ctx, conc, lim, func(w int) error {
		if write {
			var n int
			_, err := c.Call(ctx, mBulkWrite, nil, &n, rpc.WithPayload(bufs[w]))
			if err == nil && n != bulkSize {
				err = errors.New("rpcbench: short write")
			}
			return err
		}
		n, err := c.Call(ctx, mBulkRead, nil, nil, rpc.IntoBuffer(bufs[w]))
		if err == nil && n != bulkSize {
			err = errors.New("rpcbench: short read")
		}
		return err
	})
}

// BulkRaw streams 1 MiB messages over one raw TCP connection.
func (e *Env) BulkRaw(ctx context.Context, lim Limit) (int64, time.Duration, error) {
	c, err := net.Dial("tcp", e.rawBulk)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	buf := make([]byte, bulkSize)
	return runOps(ctx, 1, lim, func(int) error {
		_, err := c.Write(buf)
		return err
	})
}

type row struct {
	name, unit string
	flight     int
	rpc, raw   float64
}

// rounds: each side of a comparison is measured in this many alternating
// rounds of d/rounds, and its best round is reported, so that a burst of
// load from elsewhere on the machine does not decide a ratio.
const rounds = 3

// Run measures every workload for d per side (plus a warm-up of d/10) and
// writes a markdown table comparing fff's RPC with raw loopback TCP to w.
func Run(ctx context.Context, w io.Writer, d time.Duration) error {
	e, err := NewEnv()
	if err != nil {
		return err
	}
	defer e.Close()

	type side func(Limit) (int64, time.Duration, error)
	// compare measures a and b in alternating rounds; best rate of each.
	compare := func(a, b side) (float64, float64, error) {
		var best [2]float64
		for _, f := range []side{a, b} {
			if _, _, err := f(Limit{Until: time.Now().Add(d / warmupShare)}); err != nil {
				return 0, 0, err
			}
		}
		for range rounds {
			for i, f := range []side{a, b} {
				n, el, err := f(Limit{Until: time.Now().Add(d / rounds)})
				if err != nil {
					return 0, 0, err
				}
				best[i] = max(best[i], float64(n)/el.Seconds())
			}
		}
		return best[0], best[1], nil
	}
	var rows []row
	for _, conc := range []int{1, 16, 256} {
		r, raw, err := compare(
			func(l Limit) (int64, time.Duration, error) { return e.SmallRPC(ctx, conc, l) },
			func(l Limit) (int64, time.Duration, error) { return e.SmallRaw(ctx, conc, l) })
		if err != nil {
			return fmt.Errorf("rpcbench: small calls x%d: %w", conc, err)
		}
		rows = append(rows, row{"small call", "calls/s", conc, r, raw})
	}
	for _, write := range []bool{false, true} {
		for _, conc := range []int{1, bulkFlight} {
			r, raw, err := compare(
				func(l Limit) (int64, time.Duration, error) { return e.BulkRPC(ctx, conc, write, l) },
				func(l Limit) (int64, time.Duration, error) { return e.BulkRaw(ctx, l) })
			if err != nil {
				return fmt.Errorf("rpcbench: bulk: %w", err)
			}
			name := "1 MiB read (IntoBuffer)"
			if write {
				name = "1 MiB write (WithPayload)"
			}
			rows = append(rows, row{name, "MiB/s", conc, r, raw})
		}
	}

	fmt.Fprintf(w, "| workload | in flight | fff RPC | raw loopback TCP | RPC / raw |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %d | %s %s | %s %s | %.2f |\n", r.name, r.flight,
			human(r.rpc), r.unit, human(r.raw), r.unit, r.rpc/r.raw)
	}
	fmt.Fprintf(w, "\nSmall calls: one RPC connection vs one raw 64-byte ping-pong connection per call in flight. "+
		"Bulk: 1 MiB RPC payloads vs one raw TCP stream of 1 MiB writes. Loopback, one process; "+
		"best of %d alternating rounds of %v per side.\n", rounds, d/rounds)
	return nil
}

func human(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
