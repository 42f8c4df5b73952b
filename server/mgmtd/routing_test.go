package mgmtd

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/server/kv/memkv"
)

// countingSource counts fetches and can hold them until released.
type countingSource struct {
	src   cluster.RoutingSource
	calls atomic.Int64
	gate  chan struct{} // if non-nil, each fetch waits for a receive
	fail  atomic.Bool
}

func (c *countingSource) GetRouting(ctx context.Context, since uint64) (*proto.RoutingInfo, error) {
	c.calls.Add(1)
	if c.gate != nil {
		<-c.gate
	}
	if c.fail.Load() {
		return nil, proto.Errorf(proto.Unavailable, "test: down")
	}
	return c.src.GetRouting(ctx, since)
}

func TestRoutingCache(t *testing.T) {
	ctx := context.Background()
	s := newService(t, memkv.New(), newFakeClock())
	registerCluster(t, s, 1, "/a", "/b")
	src := &countingSource{src: s}
	c := cluster.NewRoutingCache(src, cluster.RoutingCacheOptions{})
	if c.Get() != nil || c.Version() != 0 {
		t.Fatal("new cache not empty")
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Version() != s.Version() || len(c.Get().Targets) != 2 {
		t.Fatalf("cache at %d, service at %d", c.Version(), s.Version())
	}
	first := c.Get()
	// Unchanged: the same object stays.
	if err := c.Refresh(ctx); err != nil || c.Get() != first {
		t.Fatalf("refresh without change replaced the info (%v)", err)
	}
	// Observe of an old or current version does not fetch.
	n := src.calls.Load()
	if err := c.Observe(ctx, first.Version); err != nil || src.calls.Load() != n {
		t.Fatal("Observe(current) fetched")
	}
	// A change, seen through Observe, and through Wait.
	waited := make(chan *proto.RoutingInfo, 1)
	go func() {
		ri, err := c.Wait(ctx, first.Version)
		if err != nil {
			t.Error(err)
		}
		waited <- ri
	}()
	must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1}))
	must[proto.ChainTable](t)(s.CreateChainTable(ctx, []uint32{1}))
	if err := c.Observe(ctx, s.Version()); err != nil || c.Version() != s.Version() {
		t.Fatalf("Observe(newer): %v, cache at %d, want %d", err, c.Version(), s.Version())
	}
	select {
	case ri := <-waited:
		if ri.Version <= first.Version {
			t.Fatalf("Wait returned version %d", ri.Version)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
	}
	// ChainTable refreshes once for an unknown table.
	must[proto.Chain](t)(s.CreateChain(ctx, []uint32{2}))
	must[proto.ChainTable](t)(s.CreateChainTable(ctx, []uint32{2, 1}))
	if got := must[[]uint32](t)(c.ChainTable(ctx, 2)); !slices.Equal(got, []uint32{2, 1}) {
		t.Fatalf("ChainTable(2) = %v", got)
	}
	_, err := c.ChainTable(ctx, 3)
	wantCode(t, err, proto.ENOENT)
	// Failures keep the last good info.
	src.fail.Store(true)
	v := c.Version()
	if err := c.Refresh(ctx); !errors.Is(err, proto.ErrUnavailable) || c.Version() != v {
		t.Fatalf("failed refresh: %v, version %d", err, c.Version())
	}
	// Wait honors its context.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := c.Wait(wctx, v); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait: %v", err)
	}
}

// TestRoutingCacheCoalesces: concurrent refreshes share fetches, and each
// caller still gets a fetch that started after it asked.
func TestRoutingCacheCoalesces(t *testing.T) {
	ctx := context.Background()
	s := newService(t, memkv.New(), newFakeClock())
	registerCluster(t, s, 1, "/a")
	src := &countingSource{src: s, gate: make(chan struct{})}
	c := cluster.NewRoutingCache(src, cluster.RoutingCacheOptions{})
	var wg sync.WaitGroup
	refresh := func() {
		defer wg.Done()
		if err := c.Refresh(ctx); err != nil {
			t.Error(err)
		}
	}
	// One fetch is under way when the other callers ask: they cannot use
	// it (it may have started before they asked), so exactly one more
	// fetch serves all of them.
	wg.Add(1)
	go refresh()
	for src.calls.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	const callers = 20
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go refresh()
	}
	time.Sleep(50 * time.Millisecond) // let them queue up
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case src.gate <- struct{}{}:
			continue
		case <-done:
		}
		break
	}
	if got := src.calls.Load(); got != 2 {
		t.Fatalf("%d callers behind a running fetch made %d fetches in all, want 2", callers, got)
	}
	if c.Version() != s.Version() {
		t.Fatal("cache not filled")
	}
	// A canceled caller waiting for the fetch slot returns.
	src.gate = make(chan struct{})
	go c.Refresh(ctx) // holds the slot until released below
	for src.calls.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Refresh(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Refresh: %v", err)
	}
	src.gate <- struct{}{}
}

func TestRunHeartbeats(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := newFakeClock()
	s := newService(t, memkv.New(), clk)
	registerCluster(t, s, 2, "/a")
	clk.Advance(2 * testTimeout)
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
	must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx)) // node 1 down
	cache := cluster.NewRoutingCache(s, cluster.RoutingCacheOptions{})
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if cache.Get().Node(1).State != proto.NodeDown {
		t.Fatal("setup: node 1 not down")
	}
	var stats atomic.Int64
	v := cache.Version()
	done := make(chan error)
	go func() {
		done <- cluster.RunHeartbeats(ctx, s, cluster.HeartbeatOptions{
			NodeID: 1, Interval: 5 * time.Millisecond, Cache: cache,
			Stats: func() []proto.TargetStats {
				stats.Add(1)
				return []proto.TargetStats{{ID: 1, Capacity: 10, Used: 3}}
			},
		})
	}()
	// The first heartbeat brings node 1 back; the cache follows at once.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	for {
		ri, err := cache.Wait(wctx, v)
		if err != nil {
			t.Fatal(err)
		}
		if ri.Node(1).State == proto.NodeUp {
			break
		}
		v = ri.Version
	}
	for stats.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	if tg := routing(t, s).Target(1); tg.Used != 3 {
		t.Fatalf("stats not reported: %+v", tg)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRoutingCacheRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newService(t, memkv.New(), newFakeClock())
	c := cluster.NewRoutingCache(s, cluster.RoutingCacheOptions{Interval: 2 * time.Millisecond})
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	registerCluster(t, s, 1, "/a")
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if _, err := c.Wait(wctx, s.Version()-1); err != nil {
		t.Fatalf("Run did not pick up the change: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
