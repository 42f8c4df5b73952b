package libfff

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// control reaches one role of the cluster's control plane (mgmtd, or meta)
// through one node at a time: the address the client was given (for meta,
// once the routing info is known, a node of the role picked at random, so
// that clients spread over the meta servers), and after a lost connection
// (proto.Unavailable) the next node in the routing info that runs the role
// and is up. Over a shared KV every full node serves both
// (mgmtd followers forward to the leader, meta servers are stateless), so
// any of them answers; whether the failed call itself is repeated is
// decided by the caller (outage.go: only calls that are safe to repeat or
// that were not sent).
type control struct {
	c      *Client
	role   proto.Roles
	first  *rpc.Pool // the given address's pool, also the storage pool for it
	spread bool      // pick a random node of the role once the routing is known

	mu     sync.Mutex
	cur    *rpc.Pool
	pools  map[string]*rpc.Pool
	picked bool // spread has picked
}

func newControl(c *Client, role proto.Roles, first *rpc.Pool, spread bool) *control {
	return &control{c: c, role: role, first: first, spread: spread, cur: first, pools: map[string]*rpc.Pool{first.Addr(): first}}
}

// Call implements cluster.Caller.
func (k *control) Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error) {
	k.mu.Lock()
	if k.spread && !k.picked {
		k.pick()
	}
	p := k.cur
	k.mu.Unlock()
	n, err := p.Call(ctx, method, req, resp, opts...)
	if proto.CodeOf(err) == proto.Unavailable {
		k.next(p)
	}
	return n, err
}

// candidates returns the given address and the addresses of the nodes that
// run the role and are up in the last routing info, sorted.
func (k *control) candidates() []string {
	addrs := []string{k.first.Addr()}
	if ri := k.c.routing.Get(); ri != nil {
		for _, n := range ri.Nodes {
			if n.Roles.Has(k.role) && n.State == proto.NodeUp && !slices.Contains(addrs, n.Addr) {
				addrs = append(addrs, n.Addr)
			}
		}
	}
	slices.Sort(addrs)
	return addrs
}

// pick spreads clients over the role's nodes: once the routing info is
// known, it moves to a node chosen at random (the given address among
// them), so that many clients given one address share the load. k.mu is
// held.
func (k *control) pick() {
	if k.c.routing.Get() == nil {
		return
	}
	k.picked = true
	addrs := k.candidates()
	k.cur = k.pool(addrs[rand.IntN(len(addrs))])
}

// pool returns the pool of addr, made if needed. k.mu is held.
func (k *control) pool(addr string) *rpc.Pool {
	p := k.pools[addr]
	if p == nil {
		p = rpc.NewPool(addr, k.c.token, k.c.popts)
		k.pools[addr] = p
	}
	return p
}

// next moves on from the failed pool to the next control node, in address
// order after it, among the given address and the nodes that run the role
// and are up in the last routing info.
func (k *control) next(failed *rpc.Pool) {
	addrs := k.candidates()
	if len(addrs) < 2 {
		return
	}
	i, _ := slices.BinarySearch(addrs, failed.Addr())
	addr := addrs[i%len(addrs)]
	if addr == failed.Addr() {
		addr = addrs[(i+1)%len(addrs)]
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cur != failed {
		return // another call moved on already
	}
	p := k.pool(addr)
	k.c.log.Info().Stringer("role", k.role).Str("from", failed.Addr()).Str("to", addr).Msg("control node unreachable: moving to another")
	k.cur = p
}

// close closes the pools it opened besides the first.
func (k *control) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for addr, p := range k.pools {
		if p != k.first {
			p.Close()
		}
		delete(k.pools, addr)
	}
}
