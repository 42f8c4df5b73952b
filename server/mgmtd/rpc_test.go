package mgmtd

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"slices"
	"testing"
	"time"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv/memkv"
)

const (
	adminToken = "admin-token"
	userToken  = "user-token"
)

// serve starts a loopback RPC server with svc's handlers and returns its
// address.
func serve(t *testing.T, svc *Service) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := rpc.NewServer(rpc.ServerOptions{Auth: rpc.NewStaticTokens(map[string]rpc.Identity{
		adminToken: {Admin: true, Name: "admin"},
		userToken:  {UID: 1000, GIDs: []uint32{1000}, Name: "user"},
	})})
	RegisterHandlers(s, svc)
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return l.Addr().String()
}

func newClient(t *testing.T, addr, token string) *cluster.Client {
	p := rpc.NewPool(addr, token, rpc.PoolOptions{Size: 2})
	t.Cleanup(func() { p.Close() })
	return cluster.NewClient(p)
}

func TestRPC(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	svc := newService(t, memkv.New(), clk)
	addr := serve(t, svc)
	c := newClient(t, addr, adminToken)
	user := newClient(t, addr, userToken)

	for i := uint32(1); i <= 3; i++ {
		n := must[proto.Node](t)(c.RegisterNode(ctx, node(i)))
		if n.ID != i || n.State != proto.NodeUp {
			t.Fatalf("registered %+v", n)
		}
	}
	ts := must[[]proto.Target](t)(c.RegisterTargets(ctx, []proto.Target{
		{NodeID: 1, Path: "/a"}, {NodeID: 2, Path: "/a"}, {NodeID: 3, Path: "/a"}, {NodeID: 3, Path: "/b"},
	}))
	if len(ts) != 4 || ts[3].ID != 4 || ts[3].State != proto.TargetServing {
		t.Fatalf("targets %+v", ts)
	}
	ch := must[proto.Chain](t)(c.CreateChain(ctx, []uint32{1, 2, 3}))
	if ch.ID != 1 || ch.Version != 1 || !slices.Equal(ch.Targets, []uint32{1, 2, 3}) {
		t.Fatalf("chain %+v", ch)
	}
	tb := must[proto.ChainTable](t)(c.CreateChainTable(ctx, []uint32{1}))
	if tb.ID != 1 || tb.Version != 1 {
		t.Fatalf("table %+v", tb)
	}
	if tb := must[proto.ChainTable](t)(c.AddToChainTable(ctx, 1, []uint32{1})); tb.Version != 1 || !slices.Equal(tb.Chains, []uint32{1}) {
		t.Fatalf("AddToChainTable of a listed chain: %+v", tb)
	}
	if err := c.SetTargetState(ctx, 2, proto.TargetSyncing); err != nil {
		t.Fatal(err)
	}
	hb := must[proto.HeartbeatResp](t)(c.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 3, Targets: []proto.TargetStats{{ID: 4, Capacity: 1 << 40, Used: 1 << 39}}}))
	if hb.RoutingVersion != svc.Version() {
		t.Fatalf("heartbeat version %d, service %d", hb.RoutingVersion, svc.Version())
	}

	// Routing over the wire equals the service's, live fields included.
	ri := must[*proto.RoutingInfo](t)(user.GetRouting(ctx, 0))
	want := routing(t, svc)
	if ri.Version != want.Version || len(ri.Nodes) != 3 || ri.Target(4).Used != 1<<39 ||
		!ri.Node(3).LastHeartbeat.Equal(want.Node(3).LastHeartbeat) ||
		!slices.Equal(ri.Chain(1).Targets, []uint32{1, 3, 2}) || ri.Chain(1).Version != 2 {
		t.Fatalf("over the wire:\n%+v\nwant\n%+v", ri, want)
	}
	// Up to date: nil.
	if ri, err := user.GetRouting(ctx, want.Version); err != nil || ri != nil {
		t.Fatalf("GetRouting(current) = %+v, %v", ri, err)
	}

	// Errors keep their codes.
	_, err := c.CreateChain(ctx, []uint32{3})
	if !errors.Is(err, proto.ErrInvalid) || !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("CreateChain(target in chain): %v", err)
	}
	_, err = c.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 77})
	if !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("Heartbeat(unknown): %v", err)
	}
	// Only the admin may change the cluster.
	v := svc.Version()
	for name, call := range map[string]func() error{
		"RegisterNode": func() error { _, err := user.RegisterNode(ctx, node(9)); return err },
		"RegisterTargets": func() error {
			_, err := user.RegisterTargets(ctx, []proto.Target{{NodeID: 1, Path: "/x"}})
			return err
		},
		"CreateChain":   func() error { _, err := user.CreateChain(ctx, []uint32{4}); return err },
		"SetChainTable": func() error { _, err := user.SetChainTable(ctx, 1, []uint32{1}); return err },
		"AddToChainTable": func() error {
			_, err := user.AddToChainTable(ctx, 1, []uint32{1})
			return err
		},
		"SetTargetState": func() error { return user.SetTargetState(ctx, 1, proto.TargetOffline) },
		"Heartbeat":      func() error { _, err := user.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1}); return err },
	} {
		if err := call(); !errors.Is(err, proto.ErrNotPermitted) {
			t.Errorf("%s as a user: %v, want EPERM", name, err)
		}
	}
	if svc.Version() != v {
		t.Fatal("refused calls changed the cluster")
	}
}

// TestRPCClusterLifecycle drives a node's life over the wire: bootstrap,
// heartbeats through cluster.RunHeartbeats, a cluster.RoutingCache over the client that
// sees the node go down and come back.
func TestRPCClusterLifecycle(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := newFakeClock()
	svc := newService(t, memkv.New(), clk)
	c := newClient(t, serve(t, svc), adminToken)
	if err := Bootstrap(ctx, c, 1, "127.0.0.1:7000", []string{"/d/0", "/d/1"}, 1); err != nil {
		t.Fatal(err)
	}
	v := svc.Version()
	if err := Bootstrap(ctx, c, 1, "127.0.0.1:7000", []string{"/d/1", "/d/0"}, 1); err != nil || svc.Version() != v {
		t.Fatalf("second bootstrap over RPC: %v, version %d → %d", err, v, svc.Version())
	}
	cache := cluster.NewRoutingCache(c, cluster.RoutingCacheOptions{})
	if got := must[[]uint32](t)(cache.ChainTable(ctx, BootstrapTable)); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("table %v", got)
	}
	clk.Advance(2 * testTimeout)
	must[struct{}](t)(struct{}{}, svc.CheckHeartbeats(ctx))
	if err := cache.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ri := cache.Get(); ri.Node(1).State != proto.NodeDown || ri.Target(1).State != proto.TargetOffline {
		t.Fatalf("not down: %+v %+v", ri.Nodes, ri.Targets)
	}
	v = cache.Version()
	hbDone := make(chan error)
	go func() {
		hbDone <- cluster.RunHeartbeats(ctx, c, cluster.HeartbeatOptions{NodeID: 1, Interval: 5 * time.Millisecond, Cache: cache})
	}()
	defer func() {
		cancel()
		if err := <-hbDone; err != nil {
			t.Error(err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	ri, err := cache.Wait(wctx, v) // the return is one change
	if err != nil {
		t.Fatal(err)
	}
	// Replication 1: straight back to serving.
	if ri.Node(1).State != proto.NodeUp || ri.Target(1).State != proto.TargetServing || ri.Target(2).State != proto.TargetServing {
		t.Fatalf("after return: %+v %+v", ri.Nodes, ri.Targets)
	}
}
