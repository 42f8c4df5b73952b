// Package cluster is the client side of mgmtd: the RPC client, the routing
// cache every client and service keeps, and the heartbeat loop. It lives apart
// from server/mgmtd so that clients (libfff) do not depend on the server and
// its KV.
package cluster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/proto"
)

// Defaults of RoutingCacheOptions and HeartbeatOptions.
const (
	DefaultRoutingRefreshInterval = 2 * time.Second
	DefaultHeartbeatInterval      = time.Second
)

// RoutingSource is where a RoutingCache gets routing info: a *Service in
// process, a *Client remotely.
type RoutingSource interface {
	GetRouting(ctx context.Context, since uint64) (*proto.RoutingInfo, error)
}

// RoutingCacheOptions configure a RoutingCache.
type RoutingCacheOptions struct {
	// Interval is the period of Run's refreshes (default 2 s). A refresh of
	// an up-to-date cache costs one small round trip: mgmtd answers
	// "unchanged" from memory.
	Interval time.Duration
	// LongPoll is how long each of Run's requests waits at mgmtd for a
	// newer version when the source supports it (RoutingWaiter: a
	// *Client), so changes arrive as mgmtd publishes them (default 30 s;
	// negative: poll every Interval instead).
	LongPoll time.Duration
	// Logger receives refresh failures in Run.
	Logger zerolog.Logger
}

// RoutingWaiter is a RoutingSource that long-polls (*Client).
type RoutingWaiter interface {
	WaitRouting(ctx context.Context, since uint64, wait time.Duration) (*proto.RoutingInfo, bool, error)
}

// DefaultRoutingLongPoll is RoutingCacheOptions.LongPoll's default.
const DefaultRoutingLongPoll = 30 * time.Second

// RoutingCache holds the newest routing info a client or service has seen
// (DESIGN §5: pulled periodically, and at once when a peer shows a newer
// version). It is safe for concurrent use; Get is a single atomic load.
type RoutingCache struct {
	src  RoutingSource
	opts RoutingCacheOptions

	cur       atomic.Pointer[proto.RoutingInfo]
	sem       chan struct{} // one fetch at a time
	started   atomic.Uint64 // fetches started
	succeeded atomic.Uint64 // number of the last fetch that succeeded

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when cur changes
}

// NewRoutingCache returns an empty cache over src. Call Refresh (or Run)
// to fill it.
func NewRoutingCache(src RoutingSource, opts RoutingCacheOptions) *RoutingCache {
	if opts.Interval <= 0 {
		opts.Interval = DefaultRoutingRefreshInterval
	}
	if opts.LongPoll == 0 {
		opts.LongPoll = DefaultRoutingLongPoll
	}
	return &RoutingCache{src: src, opts: opts, sem: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Get returns the newest routing info, or nil before the first successful
// refresh (and on a nil cache). It is shared: do not modify it (Clone it first).
func (c *RoutingCache) Get() *proto.RoutingInfo {
	if c == nil { // not made yet (a Failover's Routing before its cache exists)
		return nil
	}
	return c.cur.Load()
}

// Version returns the version of Get (0 when empty).
func (c *RoutingCache) Version() uint64 {
	if ri := c.cur.Load(); ri != nil {
		return ri.Version
	}
	return 0
}

// Refresh asks the source for anything newer than the cached version and
// returns once a fetch that started after the call has completed.
// Concurrent callers share fetches: at most one runs at a time, and a
// caller that waited for one that started after it does not fetch again.
// Only newer versions replace the cached info.
func (c *RoutingCache) Refresh(ctx context.Context) error {
	want := c.started.Load() + 1
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("mgmtd: routing refresh: %w", ctx.Err())
	}
	defer func() { <-c.sem }()
	if c.succeeded.Load() >= want {
		return nil
	}
	n := c.started.Add(1)
	ri, err := c.src.GetRouting(ctx, c.Version())
	if err != nil {
		return fmt.Errorf("mgmtd: routing refresh: %w", err)
	}
	c.install(ri)
	c.succeeded.Store(n)
	return nil
}

// install makes ri the cached info if it is newer.
func (c *RoutingCache) install(ri *proto.RoutingInfo) {
	if ri == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.cur.Load(); cur == nil || ri.Version > cur.Version {
		c.cur.Store(ri)
		close(c.changed)
		c.changed = make(chan struct{})
	}
}

// Observe tells the cache that a peer (a heartbeat answer, a storage
// server) reported routing version v; if it is newer than the cached one,
// Observe refreshes.
func (c *RoutingCache) Observe(ctx context.Context, v uint64) error {
	if v <= c.Version() {
		return nil
	}
	return c.Refresh(ctx)
}

// Wait blocks until the cache holds a version newer than after (or ctx
// ends) and returns it. It does not refresh by itself.
func (c *RoutingCache) Wait(ctx context.Context, after uint64) (*proto.RoutingInfo, error) {
	for {
		c.mu.Lock()
		ch, ri := c.changed, c.cur.Load()
		c.mu.Unlock()
		if ri != nil && ri.Version > after {
			return ri, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ChainTable returns the chain ids of chain table id, refreshing once if
// the cache does not know the table (ENOENT if mgmtd does not either). It
// is the interface the meta service lays files out with.
func (c *RoutingCache) ChainTable(ctx context.Context, id uint32) ([]uint32, error) {
	for attempt := 0; ; attempt++ {
		if ri := c.cur.Load(); ri != nil {
			if t := ri.ChainTable(id); t != nil {
				return slices.Clone(t.Chains), nil
			}
		}
		if attempt == 1 {
			return nil, proto.Errorf(proto.ENOENT, "mgmtd: chain table %d", id)
		}
		if err := c.Refresh(ctx); err != nil {
			return nil, err
		}
	}
}

// Run keeps the cache fresh until ctx ends (returning nil): with a source
// that long-polls, one request after another, each answered when mgmtd
// publishes a newer version (or after LongPoll); otherwise a refresh now
// and every Interval. Failures are logged; the last good info stays.
func (c *RoutingCache) Run(ctx context.Context) error {
	if w, ok := c.src.(RoutingWaiter); ok && c.opts.LongPoll > 0 {
		return c.longPoll(ctx, w)
	}
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		if err := c.Refresh(ctx); err != nil && ctx.Err() == nil {
			c.opts.Logger.Warn().Err(err).Msg("routing refresh failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// longPoll is Run over a source that long-polls. After a failure, or an
// answer that did not wait (a server without long polls), it pauses for
// Interval before the next request.
func (c *RoutingCache) longPoll(ctx context.Context, w RoutingWaiter) error {
	for {
		ri, waited, err := w.WaitRouting(ctx, c.Version(), c.opts.LongPoll)
		if ctx.Err() != nil {
			return nil
		}
		c.install(ri)
		if err != nil {
			c.opts.Logger.Warn().Err(err).Msg("routing refresh failed")
		}
		if err != nil || (!waited && ri == nil) {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(c.opts.Interval):
			}
		}
	}
}

// Heartbeater sends heartbeats: a *Service or a *Client.
type Heartbeater interface {
	Heartbeat(ctx context.Context, req proto.HeartbeatReq) (proto.HeartbeatResp, error)
}

// HeartbeatOptions configure RunHeartbeats.
type HeartbeatOptions struct {
	// NodeID is the node heartbeating.
	NodeID uint32
	// Interval between heartbeats (default 1 s); keep it well under mgmtd's
	// heartbeat timeout. Each heartbeat may take up to max(Interval, 1 s).
	Interval time.Duration
	// Stats, if set, reports the node's targets' usage for each heartbeat.
	Stats func() []proto.TargetStats
	// Resyncs, if set, reports the resyncs the node runs.
	Resyncs func() []proto.ResyncStats
	// Metrics, if set, reports the node's metrics listener's address.
	Metrics func() string
	// Cache, if set, is refreshed when a heartbeat answer shows a newer
	// routing version.
	Cache *RoutingCache
	// Lease, if set, is told after each heartbeat that got through (and
	// the routing refresh it called for) until when the node may serve:
	// the heartbeat's send time plus the lease mgmtd granted.
	Lease func(until time.Time)
	// Logger receives failures.
	Logger zerolog.Logger
}

// RunHeartbeats heartbeats for opts.NodeID now and then every Interval
// until ctx ends (returning nil). Failures are logged and do not stop it.
func RunHeartbeats(ctx context.Context, hb Heartbeater, opts HeartbeatOptions) error {
	if opts.Interval <= 0 {
		opts.Interval = DefaultHeartbeatInterval
	}
	t := time.NewTicker(opts.Interval)
	defer t.Stop()
	for {
		req := proto.HeartbeatReq{NodeID: opts.NodeID}
		if opts.Stats != nil {
			req.Targets = opts.Stats()
		}
		if opts.Resyncs != nil {
			req.Resyncs = opts.Resyncs()
		}
		if opts.Metrics != nil {
			req.Metrics = opts.Metrics()
		}
		cctx, cancel := context.WithTimeout(ctx, max(opts.Interval, time.Second))
		sent := time.Now()
		resp, err := hb.Heartbeat(cctx, req)
		if err == nil && opts.Cache != nil {
			err = opts.Cache.Observe(cctx, resp.RoutingVersion)
		}
		cancel()
		if err == nil && opts.Lease != nil && resp.LeaseMillis > 0 {
			opts.Lease(sent.Add(time.Duration(resp.LeaseMillis) * time.Millisecond))
		}
		if err != nil && ctx.Err() == nil {
			opts.Logger.Warn().Err(err).Uint32("node", opts.NodeID).Msg("heartbeat failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// WatchDown calls cut with the address of every node that the routing in
// c shows down, at each new routing version, until ctx ends. Callers close
// their connections to it: a call in flight to a node that hangs (SIGSTOP,
// a dead link: no reset ever comes) then fails at once and is retried on
// the chain's new routing, instead of waiting for its own timeout. Nothing
// is routed to a down node, so repeated cuts cost nothing.
func WatchDown(ctx context.Context, c *RoutingCache, cut func(addr string)) error {
	var after uint64
	for {
		ri, err := c.Wait(ctx, after)
		if err != nil {
			return nil // ctx ended
		}
		after = ri.Version
		for _, n := range ri.Nodes {
			if n.State != proto.NodeUp && n.Addr != "" {
				cut(n.Addr)
			}
		}
	}
}
