package cluster

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Failover is a Caller that reaches one role of the control plane (mgmtd,
// or meta) through one node at a time: the first given address (or, with
// Spread, once the routing info is known, a node of the role picked at
// random, so that many callers given one address share the load), and after
// a lost connection (proto.Unavailable) the next among the given addresses
// and the nodes of the last routing info that run the role and are up.
// Over a shared KV every full node serves both roles (mgmtd followers
// forward to the leader, meta servers are stateless), so any of them
// answers. Whether the failed call itself is repeated is the caller's
// decision: Failover only moves on for the next call.
type Failover struct {
	opts  FailoverOptions
	given []string

	mu     sync.Mutex
	cur    *rpc.Pool
	pools  map[string]*rpc.Pool
	picked bool // Spread has picked
}

// FailoverOptions configure a Failover.
type FailoverOptions struct {
	// Role is the role whose nodes the Failover moves between.
	Role proto.Roles
	// First is the pool of the first given address, which the caller owns
	// (Close leaves it open): a client shares it with its storage calls.
	First *rpc.Pool
	// Others are more given addresses, tried in turn with the routing
	// info's nodes (a node's config can name several control nodes).
	Others []string
	// Routing returns the last routing info, nil until there is one.
	Routing func() *proto.RoutingInfo
	// Dial makes the pool of another address.
	Dial func(addr string) *rpc.Pool
	// Spread moves to a random node of the role once the routing is known.
	Spread bool
	Logger zerolog.Logger
}

// NewFailover starts at opts.First.
func NewFailover(opts FailoverOptions) *Failover {
	given := []string{opts.First.Addr()}
	for _, a := range opts.Others {
		if a != "" && !slices.Contains(given, a) {
			given = append(given, a)
		}
	}
	return &Failover{opts: opts, given: given, cur: opts.First, pools: map[string]*rpc.Pool{opts.First.Addr(): opts.First}}
}

// SplitAddrs splits a configured list of addresses ("a:1,b:2"), dropping
// empty entries and spaces.
func SplitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Call implements Caller.
func (f *Failover) Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error) {
	f.mu.Lock()
	if f.opts.Spread && !f.picked {
		f.pick()
	}
	p := f.cur
	f.mu.Unlock()
	n, err := p.Call(ctx, method, req, resp, opts...)
	if proto.CodeOf(err) == proto.Unavailable {
		f.next(p)
	}
	return n, err
}

// Current returns the address calls go to now.
func (f *Failover) Current() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur.Addr()
}

// candidates returns the given addresses and those of the nodes that run
// the role and are up in the last routing info, sorted.
func (f *Failover) candidates() []string {
	addrs := slices.Clone(f.given)
	if ri := f.routing(); ri != nil {
		for _, n := range ri.Nodes {
			if n.Roles.Has(f.opts.Role) && n.State == proto.NodeUp && !slices.Contains(addrs, n.Addr) {
				addrs = append(addrs, n.Addr)
			}
		}
	}
	slices.Sort(addrs)
	return addrs
}

func (f *Failover) routing() *proto.RoutingInfo {
	if f.opts.Routing == nil {
		return nil
	}
	return f.opts.Routing()
}

// pick moves to a node chosen at random once the routing info is known.
// f.mu is held.
func (f *Failover) pick() {
	if f.routing() == nil {
		return
	}
	f.picked = true
	addrs := f.candidates()
	f.cur = f.pool(addrs[rand.IntN(len(addrs))])
}

// pool returns the pool of addr, made if needed. f.mu is held.
func (f *Failover) pool(addr string) *rpc.Pool {
	p := f.pools[addr]
	if p == nil {
		p = f.opts.Dial(addr)
		f.pools[addr] = p
	}
	return p
}

// next moves on from the failed pool to the next candidate in address
// order after it.
func (f *Failover) next(failed *rpc.Pool) {
	addrs := f.candidates()
	if len(addrs) < 2 {
		return
	}
	i, _ := slices.BinarySearch(addrs, failed.Addr())
	addr := addrs[i%len(addrs)]
	if addr == failed.Addr() {
		addr = addrs[(i+1)%len(addrs)]
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur != failed {
		return // another call moved on already
	}
	f.opts.Logger.Info().Stringer("role", f.opts.Role).Str("from", failed.Addr()).Str("to", addr).Msg("control node unreachable: moving to another")
	f.cur = f.pool(addr)
}

// Close closes the pools it opened (not First).
func (f *Failover) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr, p := range f.pools {
		if p != f.opts.First {
			p.Close()
		}
		delete(f.pools, addr)
	}
}
