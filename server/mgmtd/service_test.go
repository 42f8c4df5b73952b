package mgmtd

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/server/kv"
	"fff/server/kv/bboltkv"
	"fff/server/kv/memkv"
)

// fakeClock is a Clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type backend struct {
	name string
	open func(t *testing.T) kv.DB
}

var backends = []backend{
	{"memkv", func(t *testing.T) kv.DB {
		db := memkv.New()
		t.Cleanup(func() { db.Close() })
		return db
	}},
	{"bboltkv", func(t *testing.T) kv.DB {
		return openBolt(t, filepath.Join(t.TempDir(), "kv.db"))
	}},
}

func openBolt(t *testing.T, path string) *bboltkv.DB {
	t.Helper()
	db, err := bboltkv.Open(path, &bboltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// forEachBackend runs f as a subtest over every KV backend.
func forEachBackend(t *testing.T, f func(t *testing.T, db kv.DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

const testTimeout = 10 * time.Second

func newService(t *testing.T, db kv.DB, clk Clock) *Service {
	t.Helper()
	s, err := New(context.Background(), db, Options{HeartbeatTimeout: testTimeout, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func must[T any](t *testing.T) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func routing(t *testing.T, s *Service) *proto.RoutingInfo {
	t.Helper()
	ri, err := s.GetRouting(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return ri
}

func node(id uint32) proto.Node {
	return proto.Node{ID: id, Roles: proto.RoleStorage, Addr: fmt.Sprintf("10.0.0.%d:9000", id), Hostname: fmt.Sprintf("host%d", id)}
}

// registerCluster registers nodes 1..nNodes, each with one target per path in
// paths (target ids in registration order), and returns the targets.
func registerCluster(t *testing.T, s *Service, nNodes int, paths ...string) []proto.Target {
	t.Helper()
	ctx := context.Background()
	var out []proto.Target
	for i := 1; i <= nNodes; i++ {
		must[proto.Node](t)(s.RegisterNode(ctx, node(uint32(i))))
		var req []proto.Target
		for _, p := range paths {
			req = append(req, proto.Target{NodeID: uint32(i), Path: p})
		}
		out = append(out, must[[]proto.Target](t)(s.RegisterTargets(ctx, req))...)
	}
	return out
}

func wantCode(t *testing.T, err error, c proto.Code) {
	t.Helper()
	if proto.CodeOf(err) != c {
		t.Fatalf("error %v, want code %v", err, c)
	}
}

func TestRegisterNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		if v := s.Version(); v != 0 {
			t.Fatalf("empty cluster: version %d", v)
		}
		n := must[proto.Node](t)(s.RegisterNode(ctx, node(1)))
		if n.State != proto.NodeUp || n.Addr != "10.0.0.1:9000" || s.Version() != 1 {
			t.Fatalf("registered %+v, version %d", n, s.Version())
		}
		// Same node again (a restart with the same address): no change.
		must[proto.Node](t)(s.RegisterNode(ctx, node(1)))
		if s.Version() != 1 {
			t.Fatalf("idempotent re-registration bumped the version to %d", s.Version())
		}
		// A restart on another port: the record follows.
		n2 := node(1)
		n2.Addr = "10.0.0.1:9001"
		must[proto.Node](t)(s.RegisterNode(ctx, n2))
		if s.Version() != 2 || routing(t, s).Node(1).Addr != n2.Addr {
			t.Fatalf("address change: version %d, node %+v", s.Version(), routing(t, s).Node(1))
		}
		for _, bad := range []proto.Node{
			{Roles: proto.RoleMeta, Addr: "a:1"},
			{ID: 2, Roles: proto.RoleMeta},
			{ID: 2, Addr: "a:1"},
			{ID: 2, Roles: 0x80, Addr: "a:1"},
		} {
			_, err := s.RegisterNode(ctx, bad)
			wantCode(t, err, proto.EINVAL)
		}
		if s.Version() != 2 {
			t.Fatalf("failed registrations changed the version to %d", s.Version())
		}
	})
}

func TestRegisterTargets(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		must[proto.Node](t)(s.RegisterNode(ctx, node(1)))
		must[proto.Node](t)(s.RegisterNode(ctx, node(2)))
		ts := must[[]proto.Target](t)(s.RegisterTargets(ctx, []proto.Target{
			{NodeID: 1, Path: "/d/a"}, {NodeID: 1, Path: "/d/b"}, {ID: 10, NodeID: 2, Path: "/d/a"},
		}))
		if got := []uint32{ts[0].ID, ts[1].ID, ts[2].ID}; !slices.Equal(got, []uint32{1, 2, 10}) {
			t.Fatalf("ids %v", got)
		}
		for _, tg := range ts {
			if tg.State != proto.TargetServing || tg.ChainID != 0 {
				t.Fatalf("new target %+v", tg)
			}
		}
		v := s.Version()
		// Idempotent by path (id 0) and by id.
		again := must[[]proto.Target](t)(s.RegisterTargets(ctx, []proto.Target{{NodeID: 1, Path: "/d/b"}, {ID: 10, NodeID: 2, Path: "/d/a"}}))
		if again[0].ID != 2 || again[1].ID != 10 || s.Version() != v {
			t.Fatalf("re-registration: %+v, version %d → %d", again, v, s.Version())
		}
		tests := []struct {
			name string
			ts   []proto.Target
			code proto.Code
		}{
			{"no node", []proto.Target{{NodeID: 0, Path: "/x"}}, proto.EINVAL},
			{"no path", []proto.Target{{NodeID: 1}}, proto.EINVAL},
			{"unknown node", []proto.Target{{NodeID: 7, Path: "/x"}}, proto.ENOENT},
			{"id on another node", []proto.Target{{ID: 10, NodeID: 1, Path: "/x"}}, proto.EEXIST},
			{"path of another id", []proto.Target{{ID: 11, NodeID: 1, Path: "/d/a"}}, proto.EEXIST},
			{"all or none", []proto.Target{{NodeID: 1, Path: "/new"}, {NodeID: 9, Path: "/x"}}, proto.ENOENT},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.RegisterTargets(ctx, tc.ts)
				wantCode(t, err, tc.code)
				if s.Version() != v {
					t.Fatalf("failed registration changed the version")
				}
			})
		}
		if ri := routing(t, s); len(ri.Targets) != 3 {
			t.Fatalf("targets %+v", ri.Targets)
		}
		// A path change of an existing target on the same node.
		must[[]proto.Target](t)(s.RegisterTargets(ctx, []proto.Target{{ID: 10, NodeID: 2, Path: "/mnt/a"}}))
		if s.Version() != v+1 || routing(t, s).Target(10).Path != "/mnt/a" {
			t.Fatalf("path change not applied")
		}
	})
}

func TestCreateChainValidation(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		// Nodes 1..3 with targets /a (ids 1, 3, 5) and /b (ids 2, 4, 6).
		registerCluster(t, s, 3, "/a", "/b")
		c := must[proto.Chain](t)(s.CreateChain(ctx, []uint32{5, 1, 3}))
		if c.ID != 1 || c.Version != 1 || !slices.Equal(c.Targets, []uint32{5, 1, 3}) {
			t.Fatalf("chain %+v", c)
		}
		if ri := routing(t, s); ri.Target(5).ChainID != 1 || ri.Target(2).ChainID != 0 {
			t.Fatalf("chain ids not recorded")
		}
		v := s.Version()
		tests := []struct {
			name    string
			targets []uint32
			code    proto.Code
		}{
			{"empty", nil, proto.EINVAL},
			{"duplicate", []uint32{2, 2}, proto.EINVAL},
			{"unknown", []uint32{2, 99}, proto.ENOENT},
			{"same node", []uint32{2, 4, 3}, proto.EINVAL},
			{"same node again", []uint32{4, 3}, proto.EINVAL}, // 3 is node 2's /a, 4 its /b
			{"in another chain", []uint32{2, 1}, proto.EINVAL},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.CreateChain(ctx, tc.targets)
				wantCode(t, err, tc.code)
				if s.Version() != v {
					t.Fatal("failed CreateChain changed the version")
				}
			})
		}
		c2 := must[proto.Chain](t)(s.CreateChain(ctx, []uint32{2, 4, 6}))
		if c2.ID != 2 || s.Version() != v+1 {
			t.Fatalf("second chain %+v, version %d", c2, s.Version())
		}
	})
}

func TestChainTables(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		registerCluster(t, s, 1, "/a", "/b", "/c")
		for i := uint32(1); i <= 3; i++ {
			must[proto.Chain](t)(s.CreateChain(ctx, []uint32{i}))
		}
		tb := must[proto.ChainTable](t)(s.CreateChainTable(ctx, []uint32{1, 2}))
		if tb.ID != 1 || tb.Version != 1 {
			t.Fatalf("table %+v", tb)
		}
		v := s.Version()
		must[proto.ChainTable](t)(s.SetChainTable(ctx, 1, []uint32{1, 2}))
		if s.Version() != v {
			t.Fatal("setting the same chains bumped the version")
		}
		tb = must[proto.ChainTable](t)(s.SetChainTable(ctx, 1, []uint32{1, 2, 3}))
		if tb.Version != 2 || s.Version() != v+1 {
			t.Fatalf("extended table %+v, version %d", tb, s.Version())
		}
		tb = must[proto.ChainTable](t)(s.SetChainTable(ctx, 7, []uint32{3}))
		if tb.ID != 7 || tb.Version != 1 {
			t.Fatalf("table with explicit id %+v", tb)
		}
		if tb := must[proto.ChainTable](t)(s.CreateChainTable(ctx, []uint32{2})); tb.ID != 8 {
			t.Fatalf("next table id %d", tb.ID)
		}
		for _, tc := range []struct {
			chains []uint32
			code   proto.Code
		}{{nil, proto.EINVAL}, {[]uint32{1, 1}, proto.EINVAL}, {[]uint32{1, 9}, proto.ENOENT}} {
			_, err := s.SetChainTable(ctx, 1, tc.chains)
			wantCode(t, err, tc.code)
		}
		got := must[[]uint32](t)(s.ChainTable(ctx, 1))
		if !slices.Equal(got, []uint32{1, 2, 3}) {
			t.Fatalf("ChainTable(1) = %v", got)
		}
		_, err := s.ChainTable(ctx, 99)
		wantCode(t, err, proto.ENOENT)
	})
}

// TestVersion checks that the routing version moves by exactly one on
// every operation that changes something and stays otherwise.
func TestVersion(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		clk := newFakeClock()
		s := newService(t, db, clk)
		steps := []struct {
			name  string
			op    func() error
			delta uint64
		}{
			{"register node", func() error { _, err := s.RegisterNode(ctx, node(1)); return err }, 1},
			{"register node again", func() error { _, err := s.RegisterNode(ctx, node(1)); return err }, 0},
			{"register node 2", func() error { _, err := s.RegisterNode(ctx, node(2)); return err }, 1},
			{"register targets", func() error {
				_, err := s.RegisterTargets(ctx, []proto.Target{{NodeID: 1, Path: "/a"}, {NodeID: 2, Path: "/a"}})
				return err
			}, 1},
			{"register targets again", func() error {
				_, err := s.RegisterTargets(ctx, []proto.Target{{NodeID: 1, Path: "/a"}, {NodeID: 2, Path: "/a"}})
				return err
			}, 0},
			{"heartbeat", func() error {
				_, err := s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1, Targets: []proto.TargetStats{{ID: 1, Capacity: 100, Used: 10}}})
				return err
			}, 0},
			{"create chain", func() error { _, err := s.CreateChain(ctx, []uint32{1, 2}); return err }, 1},
			{"failed chain", func() error { _, err := s.CreateChain(ctx, []uint32{1}); return err }, 0},
			{"create table", func() error { _, err := s.SetChainTable(ctx, 1, []uint32{1}); return err }, 1},
			{"same table", func() error { _, err := s.SetChainTable(ctx, 1, []uint32{1}); return err }, 0},
			{"target syncing", func() error { return s.SetTargetState(ctx, 2, proto.TargetSyncing) }, 1},
			{"target syncing again", func() error { return s.SetTargetState(ctx, 2, proto.TargetSyncing) }, 0},
			{"check, nobody silent", func() error { return s.CheckHeartbeats(ctx) }, 0},
			{"check after timeout", func() error {
				clk.Advance(testTimeout + time.Second)
				_, err := s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1})
				if err != nil {
					return err
				}
				return s.CheckHeartbeats(ctx) // node 2 goes down
			}, 1},
			{"check again", func() error { return s.CheckHeartbeats(ctx) }, 0},
			{"node 2 returns", func() error { _, err := s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}); return err }, 1},
			{"node 2 heartbeats", func() error { _, err := s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}); return err }, 0},
		}
		for _, st := range steps {
			before := s.Version()
			riBefore := routing(t, s)
			err := st.op()
			if st.name == "failed chain" {
				wantCode(t, err, proto.EINVAL)
			} else if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if got := s.Version() - before; got != st.delta {
				t.Fatalf("%s: version moved by %d, want %d", st.name, got, st.delta)
			}
			// The cheap path: up to date callers get nil, others the info.
			ri, err := s.GetRouting(ctx, s.Version())
			if err != nil || ri != nil {
				t.Fatalf("%s: GetRouting(current) = %v, %v; want nil, nil", st.name, ri, err)
			}
			if st.delta > 0 {
				ri, err := s.GetRouting(ctx, riBefore.Version)
				if err != nil || ri == nil || ri.Version != s.Version() {
					t.Fatalf("%s: GetRouting(old) = %+v, %v", st.name, ri, err)
				}
			}
		}
		// The KV agrees with the cache.
		s2 := newService(t, db, clk)
		if s2.Version() != s.Version() {
			t.Fatalf("KV version %d, cached %d", s2.Version(), s.Version())
		}
	})
}

func TestHeartbeatTimeoutAndReturn(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		clk := newFakeClock()
		s := newService(t, db, clk)
		// Nodes 1..3 with targets /a (ids 1, 3, 5) and /b (ids 2, 4, 6).
		registerCluster(t, s, 3, "/a", "/b")
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 3, 5})) // chain 1: replication 3, node 1 at the head
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{2}))       // chain 2: replication 1 on node 1
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{4, 6}))    // chain 3: not on node 1

		clk.Advance(testTimeout / 2)
		for _, id := range []uint32{2, 3} {
			must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: id}))
		}
		must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx))
		clk.Advance(testTimeout/2 + time.Millisecond) // node 1 silent for longer than the timeout
		v := s.Version()
		must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx))
		if s.Version() != v+1 {
			t.Fatalf("marking node 1 down: version %d → %d", v, s.Version())
		}
		ri := routing(t, s)
		type chainWant struct {
			id      uint32
			version uint32
			targets []uint32
		}
		check := func(nodeState proto.NodeState, states map[uint32]proto.TargetState, chains []chainWant) {
			t.Helper()
			ri = routing(t, s)
			if ri.Node(1).State != nodeState {
				t.Fatalf("node 1 %v, want %v", ri.Node(1).State, nodeState)
			}
			for id, want := range states {
				if got := ri.Target(id).State; got != want {
					t.Fatalf("target %d %v, want %v", id, got, want)
				}
			}
			for _, c := range chains {
				got := ri.Chain(c.id)
				if got.Version != c.version || !slices.Equal(got.Targets, c.targets) {
					t.Fatalf("chain %d = v%d %v, want v%d %v", c.id, got.Version, got.Targets, c.version, c.targets)
				}
			}
		}
		check(proto.NodeDown,
			map[uint32]proto.TargetState{1: proto.TargetOffline, 2: proto.TargetOffline, 3: proto.TargetServing, 5: proto.TargetServing},
			[]chainWant{{1, 2, []uint32{3, 5, 1}}, {2, 2, []uint32{2}}, {3, 1, []uint32{4, 6}}})
		if ri.Node(2).State != proto.NodeUp || ri.Node(3).State != proto.NodeUp {
			t.Fatal("heartbeating nodes went down")
		}
		// Serving and syncing need the node up.
		wantCode(t, s.SetTargetState(ctx, 1, proto.TargetServing), proto.EINVAL)
		wantCode(t, s.SetTargetState(ctx, 99, proto.TargetOffline), proto.ENOENT)
		wantCode(t, s.SetTargetState(ctx, 1, 0), proto.EINVAL)

		// Node 1 returns: the replicated target syncs, the lone one serves.
		v = s.Version()
		must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1}))
		if s.Version() != v+1 {
			t.Fatalf("return: version %d → %d", v, s.Version())
		}
		check(proto.NodeUp,
			map[uint32]proto.TargetState{1: proto.TargetSyncing, 2: proto.TargetServing},
			[]chainWant{{1, 3, []uint32{3, 5, 1}}, {2, 3, []uint32{2}}, {3, 1, []uint32{4, 6}}})

		// Resync done (an admin or, later, the resync protocol says so).
		must[struct{}](t)(struct{}{}, s.SetTargetState(ctx, 1, proto.TargetServing))
		check(proto.NodeUp, map[uint32]proto.TargetState{1: proto.TargetServing},
			[]chainWant{{1, 4, []uint32{3, 5, 1}}})
		// Taking the head offline moves it to the end.
		must[struct{}](t)(struct{}{}, s.SetTargetState(ctx, 3, proto.TargetOffline))
		check(proto.NodeUp, map[uint32]proto.TargetState{3: proto.TargetOffline},
			[]chainWant{{1, 5, []uint32{5, 1, 3}}})
		// A syncing target sits between serving and offline ones.
		must[struct{}](t)(struct{}{}, s.SetTargetState(ctx, 3, proto.TargetSyncing))
		must[struct{}](t)(struct{}{}, s.SetTargetState(ctx, 1, proto.TargetOffline))
		check(proto.NodeUp, nil, []chainWant{{1, 7, []uint32{5, 3, 1}}})

		// Registration also counts as a return.
		clk.Advance(2 * testTimeout)
		must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
		must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 3}))
		must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx))
		check(proto.NodeDown, map[uint32]proto.TargetState{2: proto.TargetOffline}, nil)
		must[proto.Node](t)(s.RegisterNode(ctx, node(1)))
		// Every offline target of a returning node comes back, including
		// target 1 that an admin had taken offline before.
		check(proto.NodeUp, map[uint32]proto.TargetState{1: proto.TargetSyncing, 2: proto.TargetServing}, nil)

		// Unknown nodes cannot heartbeat.
		_, err := s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 42})
		wantCode(t, err, proto.ENOENT)
	})
}

func TestLiveStats(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	s := newService(t, memkv.New(), clk)
	registerCluster(t, s, 2, "/a")
	v := s.Version()
	clk.Advance(time.Second)
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1, Targets: []proto.TargetStats{
		{ID: 1, Capacity: 1000, Used: 250},
		{ID: 2, Capacity: 5, Used: 5}, // node 2's target: ignored
	}}))
	ri := routing(t, s)
	if ri.Version != v {
		t.Fatal("stats changed the version")
	}
	if tg := ri.Target(1); tg.Capacity != 1000 || tg.Used != 250 {
		t.Fatalf("target 1 %+v", tg)
	}
	if tg := ri.Target(2); tg.Capacity != 0 {
		t.Fatalf("foreign stats accepted: %+v", tg)
	}
	if hb := ri.Node(1).LastHeartbeat; !hb.Equal(clk.Now()) {
		t.Fatalf("last heartbeat %v, want %v", hb, clk.Now())
	}
	// The cached state is not modified by the overlay.
	if s.cur.Load().Target(1).Capacity != 0 {
		t.Fatal("live stats leaked into the cached state")
	}
}

func TestRunMarksSilentNodesDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := newFakeClock()
	s, err := New(ctx, memkv.New(), Options{HeartbeatTimeout: time.Minute, CheckInterval: 2 * time.Millisecond, RefreshInterval: 2 * time.Millisecond, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	registerCluster(t, s, 2, "/a")
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if ri := routing(t, s); ri.Node(1).State != proto.NodeUp {
		t.Fatal("node down before its timeout")
	}
	clk.Advance(2 * time.Minute)
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
	deadline := time.Now().Add(5 * time.Second)
	for routing(t, s).Node(1).State != proto.NodeDown {
		if time.Now().After(deadline) {
			t.Fatal("Run did not mark the silent node down")
		}
		time.Sleep(2 * time.Millisecond)
	}
	ri := routing(t, s)
	if ri.Node(2).State != proto.NodeUp || ri.Target(1).State != proto.TargetOffline {
		t.Fatalf("after check: %+v %+v", ri.Nodes, ri.Targets)
	}
}

func TestRestartPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.db")
	clk := newFakeClock()
	db, err := bboltkv.Open(path, nil) // durable, as in production
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, db, clk)
	registerCluster(t, s, 3, "/a")
	must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 2, 3}))
	must[proto.ChainTable](t)(s.CreateChainTable(ctx, []uint32{1}))
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 3, Targets: []proto.TargetStats{{ID: 3, Capacity: 9, Used: 1}}}))
	clk.Advance(testTimeout + time.Second)
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1}))
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
	must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx)) // node 3 down
	before := routing(t, s)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db2 := openBolt(t, path)
	s2 := newService(t, db2, clk)
	after := routing(t, s2)
	// Live fields are not persisted; everything else is.
	want := before.Clone()
	for i := range want.Nodes {
		want.Nodes[i].LastHeartbeat = time.Time{}
	}
	for i := range want.Targets {
		want.Targets[i].Capacity, want.Targets[i].Used = 0, 0
	}
	if fmt.Sprintf("%+v", after) != fmt.Sprintf("%+v", want) {
		t.Fatalf("after restart:\n%+v\nwant\n%+v", after, want)
	}
	if after.Node(3).State != proto.NodeDown || !slices.Equal(after.Chain(1).Targets, []uint32{1, 2, 3}) || after.Chain(1).Version != 2 {
		t.Fatalf("failure state lost: %+v %+v", after.Nodes, after.Chains)
	}
	// Up nodes get a full timeout of grace after a restart.
	must[struct{}](t)(struct{}{}, s2.CheckHeartbeats(ctx))
	if routing(t, s2).Node(1).State != proto.NodeUp {
		t.Fatal("node marked down without grace after restart")
	}
	clk.Advance(testTimeout + time.Second)
	must[proto.HeartbeatResp](t)(s2.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
	must[struct{}](t)(struct{}{}, s2.CheckHeartbeats(ctx))
	if ri := routing(t, s2); ri.Node(1).State != proto.NodeDown || ri.Node(2).State != proto.NodeUp {
		t.Fatalf("after grace: %+v", ri.Nodes)
	}
}

// TestSharedKV: two instances over one KV (as with FoundationDB) never
// disagree about committed state; the standby notices changes.
func TestSharedKV(t *testing.T) {
	ctx := context.Background()
	db := memkv.New()
	clk := newFakeClock()
	a := newService(t, db, clk)
	b := newService(t, db, clk)
	registerCluster(t, a, 1, "/a")
	// b has not refreshed yet, but a caller with a's version makes it
	// reread the KV: "unchanged".
	if ri, err := b.GetRouting(ctx, a.Version()); err != nil || ri != nil {
		t.Fatalf("b.GetRouting(a's version) = %+v, %v", ri, err)
	}
	if b.Version() != a.Version() {
		t.Fatalf("b at %d, a at %d", b.Version(), a.Version())
	}
	// Mutations through b build on a's state.
	must[proto.Chain](t)(b.CreateChain(ctx, []uint32{1}))
	must[proto.ChainTable](t)(b.CreateChainTable(ctx, []uint32{1}))
	// a learns it on its own refresh, or when asked for an unknown table.
	if got := must[[]uint32](t)(a.ChainTable(ctx, 1)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("a.ChainTable(1) = %v", got)
	}
	if a.Version() != b.Version() {
		t.Fatalf("a at %d, b at %d", a.Version(), b.Version())
	}
}

func TestConcurrentHeartbeats(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		clk := newFakeClock()
		s := newService(t, db, clk)
		const nodes = 16
		ts := registerCluster(t, s, nodes, "/a")
		for i := 0; i < nodes; i += 2 {
			must[proto.Chain](t)(s.CreateChain(ctx, []uint32{ts[i].ID, ts[i+1].ID}))
		}
		// Half the nodes go down, then everybody heartbeats at once while
		// readers and the checker run.
		clk.Advance(testTimeout + time.Second)
		for i := 1; i <= nodes/2; i++ {
			must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: uint32(i)}))
		}
		must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx))
		v := s.Version()
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					id := uint32((g+i)%nodes + 1)
					resp, err := s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: id, Targets: []proto.TargetStats{{ID: id, Capacity: 100, Used: uint64(i)}}})
					if err != nil {
						errs <- err
						return
					}
					if resp.RoutingVersion < v {
						errs <- fmt.Errorf("version went back: %d < %d", resp.RoutingVersion, v)
						return
					}
				}
			}()
		}
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var seen uint64
				for i := 0; i < 50; i++ {
					ri, err := s.GetRouting(ctx, 0)
					if err == nil {
						err = s.CheckHeartbeats(ctx)
					}
					if err != nil {
						errs <- err
						return
					}
					if ri.Version < seen {
						errs <- fmt.Errorf("GetRouting went back: %d < %d", ri.Version, seen)
						return
					}
					seen = ri.Version
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ri := routing(t, s)
		for _, n := range ri.Nodes {
			if n.State != proto.NodeUp {
				t.Fatalf("node %d %v after heartbeating", n.ID, n.State)
			}
		}
		// Each of the 8 returning nodes is one change, whatever the races.
		if ri.Version != v+nodes/2 {
			t.Fatalf("version %d, want %d", ri.Version, v+nodes/2)
		}
		for _, c := range ri.Chains {
			// Chains of the nodes that stayed up never changed; the others
			// went down (+1) and got each of their two targets back (+2).
			want := uint32(1)
			if c.ID > nodes/4 {
				want = 4
			}
			if c.Version != want {
				t.Fatalf("chain %+v, want version %d", c, want)
			}
		}
	})
}

func TestBootstrap(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.db")
	clk := newFakeClock()
	db, err := bboltkv.Open(path, &bboltkv.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := newService(t, db, clk)
	dirs := []string{"/data/t0", "/data/t1", "/data/t2/"}
	if err := Bootstrap(ctx, s, 1, "127.0.0.1:7000", dirs, 1); err != nil {
		t.Fatal(err)
	}
	ri := routing(t, s)
	if len(ri.Nodes) != 1 || ri.Nodes[0].Roles != proto.RolesAll || len(ri.Targets) != 3 || len(ri.Chains) != 3 {
		t.Fatalf("bootstrapped %+v", ri)
	}
	for _, tg := range ri.Targets {
		if tg.State != proto.TargetServing || tg.ChainID == 0 {
			t.Fatalf("target %+v", tg)
		}
	}
	if ri.Target(3).Path != "/data/t2" {
		t.Fatalf("paths not cleaned: %q", ri.Target(3).Path)
	}
	table := must[[]uint32](t)(s.ChainTable(ctx, BootstrapTable))
	if !slices.Equal(table, []uint32{1, 2, 3}) {
		t.Fatalf("table %v", table)
	}
	v := s.Version()
	if err := Bootstrap(ctx, s, 1, "127.0.0.1:7000", dirs, 0); err != nil || s.Version() != v {
		t.Fatalf("second bootstrap: %v, version %d → %d", err, v, s.Version())
	}
	db.Close()

	// Restart, paths in another order plus a new one: the new target gets
	// a chain appended to the table; nothing else moves.
	db2 := openBolt(t, path)
	s2 := newService(t, db2, clk)
	dirs2 := []string{"/data/t3", "/data/t2", "/data/t0", "/data/t1"}
	if err := Bootstrap(ctx, s2, 1, "127.0.0.1:7000", dirs2, 1); err != nil {
		t.Fatal(err)
	}
	ri = routing(t, s2)
	// Three changes: the target, its chain, the table.
	if ri.Version != v+3 || len(ri.Targets) != 4 || ri.Target(4).Path != "/data/t3" {
		t.Fatalf("after adding a path: version %d (was %d), %+v", ri.Version, v, ri.Targets)
	}
	if tb := ri.ChainTable(BootstrapTable); tb.Version != 2 || !slices.Equal(tb.Chains, []uint32{1, 2, 3, 4}) {
		t.Fatalf("table %+v", tb)
	}

	for _, tc := range []struct {
		name  string
		paths []string
		repl  int
	}{
		{"replication 2", dirs, 2},
		{"no paths", nil, 1},
		{"duplicate paths", []string{"/x", "/x/"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, Bootstrap(ctx, s2, 1, "127.0.0.1:7000", tc.paths, tc.repl), proto.EINVAL)
		})
	}
}

// tableBarrier holds every caller of a chain-table change until n callers
// have arrived: each has done what it does before its change.
type tableBarrier struct {
	API
	arrived *sync.WaitGroup
}

func (b tableBarrier) wait() { b.arrived.Done(); b.arrived.Wait() }

func (b tableBarrier) SetChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error) {
	b.wait()
	return b.API.SetChainTable(ctx, id, chains)
}

func (b tableBarrier) AddToChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error) {
	b.wait()
	return b.API.AddToChainTable(ctx, id, chains)
}

// TestBootstrapConcurrentNodes: nodes that bootstrap at once, all of them
// past their registrations before any changes the table, each add their
// chains to it: none is lost (a read of the table followed by a write of
// it, in two calls, kept only the last writer's).
func TestBootstrapConcurrentNodes(t *testing.T) {
	ctx := context.Background()
	s := newService(t, memkv.New(), newFakeClock())
	const nodes = 4
	var arrived sync.WaitGroup
	arrived.Add(nodes)
	api := tableBarrier{API: s, arrived: &arrived}
	errs := make(chan error, nodes)
	for n := uint32(1); n <= nodes; n++ {
		go func() {
			errs <- Bootstrap(ctx, api, n, fmt.Sprintf("127.0.0.1:%d", 7000+n), []string{"/t0", "/t1"}, 1)
		}()
	}
	for range nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ri := routing(t, s)
	tb := ri.ChainTable(BootstrapTable)
	if len(ri.Chains) != 2*nodes || tb == nil || len(tb.Chains) != 2*nodes {
		t.Fatalf("%d chains, table %+v", len(ri.Chains), tb)
	}
	for _, c := range ri.Chains {
		if !slices.Contains(tb.Chains, c.ID) {
			t.Errorf("chain %d (target %v) is missing from the table %v", c.ID, c.Targets, tb.Chains)
		}
	}
}

func TestAddToChainTable(t *testing.T) {
	ctx := context.Background()
	s := newService(t, memkv.New(), newFakeClock())
	if err := Bootstrap(ctx, s, 1, "127.0.0.1:7000", []string{"/a", "/b", "/c"}, 1); err != nil {
		t.Fatal(err)
	}
	v := s.Version()
	for _, tc := range []struct {
		name   string
		id     uint32
		chains []uint32
		code   proto.Code
	}{
		{"table 0", 0, []uint32{1}, proto.EINVAL},
		{"no chains", 5, nil, proto.EINVAL},
		{"twice", 5, []uint32{1, 1}, proto.EINVAL},
		{"unknown chain", 5, []uint32{1, 9}, proto.ENOENT},
	} {
		_, err := s.AddToChainTable(ctx, tc.id, tc.chains)
		wantCode(t, err, tc.code)
		if s.Version() != v {
			t.Fatalf("%s: refused call changed the cluster", tc.name)
		}
	}
	tb := must[proto.ChainTable](t)(s.AddToChainTable(ctx, 5, []uint32{3, 1}))
	if tb.ID != 5 || tb.Version != 1 || !slices.Equal(tb.Chains, []uint32{3, 1}) {
		t.Fatalf("new table %+v", tb)
	}
	tb = must[proto.ChainTable](t)(s.AddToChainTable(ctx, 5, []uint32{1, 2, 3}))
	if tb.Version != 2 || !slices.Equal(tb.Chains, []uint32{3, 1, 2}) {
		t.Fatalf("after adding %+v", tb)
	}
	v = s.Version()
	tb = must[proto.ChainTable](t)(s.AddToChainTable(ctx, 5, []uint32{2}))
	if tb.Version != 2 || s.Version() != v {
		t.Fatalf("adding a listed chain changed the table: %+v, version %d → %d", tb, v, s.Version())
	}
}

func TestBadTargetStateParse(t *testing.T) {
	for _, s := range []string{"serving", "SYNCING", "offline"} {
		if _, err := proto.ParseTargetState(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := proto.ParseTargetState("up"); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("ParseTargetState(up): %v", err)
	}
}

func TestCapacity(t *testing.T) {
	ctx := context.Background()
	s := newService(t, memkv.New(), newFakeClock())
	registerCluster(t, s, 2, "/a", "/b") // targets 1, 2 on node 1; 3, 4 on node 2
	must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 3}))
	must[proto.Chain](t)(s.CreateChain(ctx, []uint32{2})) // no stats: not counted
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1, Targets: []proto.TargetStats{{ID: 1, Capacity: 100, Used: 10}}}))
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2, Targets: []proto.TargetStats{{ID: 3, Capacity: 80, Used: 30}, {ID: 4, Capacity: 1000}}}))
	total, free, err := s.Capacity(ctx)
	if err != nil || total != 80 || free != 50 {
		t.Fatalf("Capacity = %d, %d, %v; want 80, 50", total, free, err)
	}
}

// TestRestartMakesSyncing: a node that registers again while up restarted
// unseen; its targets in chains with another serving member become
// syncing (what they knew in memory is gone), its chain's only serving
// member stays serving, and its chains of one stay serving.
func TestRestartMakesSyncing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		ts := registerCluster(t, s, 3, "/a") // targets 1, 2, 3 on nodes 1, 2, 3
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{ts[0].ID, ts[1].ID}))
		solo := must[proto.Chain](t)(s.CreateChain(ctx, []uint32{ts[2].ID}))
		must[proto.Node](t)(s.RegisterNode(ctx, node(2)))
		ri := routing(t, s)
		if st := ri.Target(ts[1].ID).State; st != proto.TargetSyncing {
			t.Fatalf("restarted node's target in a chain of two: %v, want syncing", st)
		}
		if c := ri.Chain(1); c.Version != 2 || c.Targets[0] != ts[0].ID {
			t.Fatalf("chain after the restart: %+v", c)
		}
		// Node 1 restarts now: its target is the chain's only serving one.
		must[proto.Node](t)(s.RegisterNode(ctx, node(1)))
		must[proto.Node](t)(s.RegisterNode(ctx, node(3)))
		ri = routing(t, s)
		if st := ri.Target(ts[0].ID).State; st != proto.TargetServing {
			t.Fatalf("the only serving member after its restart: %v", st)
		}
		if st := ri.Target(ts[2].ID).State; st != proto.TargetServing || ri.Chain(solo.ID).Version != 1 {
			t.Fatalf("a chain of one after its node's restart: %v, %+v", st, ri.Chain(solo.ID))
		}
	})
}

// TestLastServing: when every member of a chain has gone down, only the
// one that served last may serve again on its return; the others return
// syncing and wait for it (they may lack acknowledged writes).
func TestLastServing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		clk := newFakeClock()
		s := newService(t, db, clk)
		registerCluster(t, s, 3, "/a") // targets 1, 2, 3 on nodes 1, 2, 3
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 2, 3}))
		down := func(keep ...uint32) {
			t.Helper()
			clk.Advance(testTimeout / 2)
			for _, id := range keep {
				must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: id}))
			}
			clk.Advance(testTimeout/2 + time.Millisecond)
			must[struct{}](t)(struct{}{}, s.CheckHeartbeats(ctx))
		}
		down(1, 3) // node 2 first
		down(3)    // then node 1
		if c := routing(t, s).Chain(1); c.LastServing != 0 || c.Targets[0] != 3 {
			t.Fatalf("chain with target 3 serving: %+v", c)
		}
		down() // and node 3, the last to serve
		if c := routing(t, s).Chain(1); c.LastServing != 3 {
			t.Fatalf("chain with no serving member: %+v, want last serving 3", c)
		}
		for _, id := range []uint32{1, 2} {
			must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: id}))
		}
		ri := routing(t, s)
		for _, id := range []uint32{1, 2} {
			if st := ri.Target(id).State; st != proto.TargetSyncing {
				t.Fatalf("target %d back before the last serving one: %v, want syncing", id, st)
			}
		}
		must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 3}))
		ri = routing(t, s)
		if st := ri.Target(3).State; st != proto.TargetServing {
			t.Fatalf("the last serving target back: %v, want serving", st)
		}
		if c := ri.Chain(1); c.LastServing != 0 || c.Targets[0] != 3 {
			t.Fatalf("chain after the last serving target returned: %+v", c)
		}
	})
}

// TestSynced: the end of a resync makes its target serving only while the
// chain is at the version the resync ran against, and only from syncing.
func TestSynced(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		registerCluster(t, s, 2, "/a")
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 2}))
		must[struct{}](t)(struct{}{}, s.SetTargetState(ctx, 2, proto.TargetSyncing))
		cv := routing(t, s).Chain(1).Version
		if err := s.Synced(ctx, 1, cv); !errors.Is(err, proto.ErrChainVersionMismatch) {
			t.Fatalf("Synced of a serving target: %v", err)
		}
		if err := s.Synced(ctx, 2, cv-1); !errors.Is(err, proto.ErrChainVersionMismatch) {
			t.Fatalf("Synced at an old chain version: %v", err)
		}
		if st := routing(t, s).Target(2).State; st != proto.TargetSyncing {
			t.Fatalf("after refused Synced calls: %v", st)
		}
		must[struct{}](t)(struct{}{}, s.Synced(ctx, 2, cv))
		if st := routing(t, s).Target(2).State; st != proto.TargetServing {
			t.Fatalf("after Synced: %v", st)
		}
		resp := must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
		if resp.LeaseMillis != uint32(testTimeout.Milliseconds()) {
			t.Fatalf("heartbeat lease %d ms, want the heartbeat timeout %v", resp.LeaseMillis, testTimeout)
		}
	})
}

// TestResyncProgress: a node's heartbeat reports the resyncs it runs; the
// routing shows each on its syncing target until a heartbeat no longer
// lists it, and never on a target that is not syncing.
func TestResyncProgress(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		registerCluster(t, s, 3, "/a")
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 2, 3}))
		must[struct{}](t)(struct{}{}, s.SetTargetState(ctx, 3, proto.TargetSyncing))
		rs := proto.ResyncStats{Target: 3, From: 2, Chunks: 10, Total: 40, Sent: 4, Bytes: 1 << 20}
		must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2, Resyncs: []proto.ResyncStats{rs, {Target: 1, From: 3}}}))
		ri := must[*proto.RoutingInfo](t)(s.GetRouting(ctx, 0))
		if got := ri.Target(3).Resync; got == nil || *got != rs {
			t.Fatalf("syncing target's resync: %+v, want %+v", got, rs)
		}
		if got := ri.Target(1).Resync; got != nil {
			t.Fatalf("serving target with a resync: %+v", got)
		}
		must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2}))
		ri = must[*proto.RoutingInfo](t)(s.GetRouting(ctx, 0))
		if got := ri.Target(3).Resync; got != nil {
			t.Fatalf("resync no longer reported: %+v", got)
		}
	})
}

// TestWaitRouting: a caller that is up to date waits for the next version
// (answered as soon as it is published), a caller behind is answered at
// once, and a wait with nothing new answers unchanged (nil).
func TestWaitRouting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		registerCluster(t, s, 2, "/a")
		v := s.Version()
		if ri, waited, err := s.WaitRouting(ctx, v, time.Hour); ri != nil || waited || err != nil {
			t.Fatalf("a wait before Run: %v, waited %v, %v; want an answer at once", ri, waited, err)
		}
		rctx, stop := context.WithCancel(ctx)
		ran := make(chan error, 1)
		go func() { ran <- s.Run(rctx) }()
		for { // Run has started (a bound for failure only: the test's deadline)
			if _, waited, _ := s.WaitRouting(ctx, v, time.Millisecond); waited {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if ri, err := must2(s.WaitRouting(ctx, v-1, time.Hour)); err != nil || ri == nil || ri.Version != v {
			t.Fatalf("a caller behind: %+v, %v", ri, err)
		}
		got := make(chan *proto.RoutingInfo, 1)
		go func() {
			ri, _, err := s.WaitRouting(ctx, v, time.Hour)
			if err != nil {
				t.Error(err)
			}
			got <- ri
		}()
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{1, 2}))
		select {
		case ri := <-got:
			if ri == nil || ri.Version <= v || ri.Chain(1) == nil {
				t.Fatalf("the wait answered %+v, want the version with the new chain", ri)
			}
		case <-time.After(30 * time.Second): // a bound for failure only
			t.Fatal("the wait did not end when a new version was published")
		}
		// A wait in progress ends (unchanged) when Run does.
		go func() {
			ri, _, _ := s.WaitRouting(ctx, s.Version(), time.Hour)
			got <- ri
		}()
		stop()
		if err := <-ran; err != nil {
			t.Fatal(err)
		}
		select {
		case ri := <-got:
			if ri != nil {
				t.Fatalf("the wait at Run's end answered %+v, want unchanged", ri)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a wait outlived Run")
		}
	})
}

func must2(ri *proto.RoutingInfo, _ bool, err error) (*proto.RoutingInfo, error) { return ri, err }
