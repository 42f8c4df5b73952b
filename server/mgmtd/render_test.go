package mgmtd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fff/internal/proto"
)

func TestRender(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	ri := &proto.RoutingInfo{
		Version: 12,
		Nodes: []proto.Node{
			{ID: 1, Roles: proto.RolesAll, Addr: "10.0.0.1:7000", Hostname: "a", State: proto.NodeUp, LastHeartbeat: now.Add(-1500 * time.Millisecond)},
			{ID: 2, Roles: proto.RoleStorage, Addr: "10.0.0.2:7000", State: proto.NodeDown},
		},
		Targets: []proto.Target{
			{ID: 1, NodeID: 1, Path: "/d/1", State: proto.TargetServing, ChainID: 1, Capacity: 4 << 30, Used: 1 << 30},
			{ID: 2, NodeID: 2, Path: "/d/2", State: proto.TargetOffline, ChainID: 1},
			{ID: 3, NodeID: 2, Path: "/d/3", State: proto.TargetSyncing},
		},
		Chains:      []proto.Chain{{ID: 1, Version: 3, Targets: []uint32{1, 2}}},
		ChainTables: []proto.ChainTable{{ID: 1, Version: 2, Chains: []uint32{1}}},
	}
	tests := []struct {
		name   string
		render func(*strings.Builder) error
		want   string
	}{
		{"nodes", func(b *strings.Builder) error { return RenderNodes(b, ri, now) }, `
ID  ROLES               ADDR           HOSTNAME  STATE  LAST HEARTBEAT
1   mgmtd,meta,storage  10.0.0.1:7000  a         up     1.5s ago
2   storage             10.0.0.2:7000  -         down   -
`},
		{"targets", func(b *strings.Builder) error { return RenderTargets(b, ri) }, `
ID  NODE  STATE    CHAIN  CAPACITY  USED     USE%   PATH
1   1     serving  1      4.0 GiB   1.0 GiB  25.0%  /d/1
2   2     offline  1      -         -        -      /d/2
3   2     syncing  -      -         -        -      /d/3
`},
		{"chains", func(b *strings.Builder) error { return RenderChains(b, ri) }, `
ID  VERSION  TARGETS (HEAD FIRST)
1   3        1(serving) 2(offline)
`},
		{"tables", func(b *strings.Builder) error { return RenderChainTables(b, ri) }, `
ID  VERSION  CHAINS  CHAIN IDS
1   2        1       1
`},
		{"summary", func(b *strings.Builder) error { return RenderSummary(b, ri) }, `
routing version 12: 2 nodes (1 up), 3 targets (1 serving, 1 syncing, 1 offline), 1 chain, 1 chain table
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := tc.render(&b); err != nil {
				t.Fatal(err)
			}
			if got, want := b.String(), strings.TrimPrefix(tc.want, "\n"); got != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
	// Empty routing info renders headers only.
	var b strings.Builder
	if err := RenderNodes(&b, &proto.RoutingInfo{}, now); err != nil || strings.Count(b.String(), "\n") != 1 {
		t.Fatalf("empty: %q, %v", b.String(), err)
	}
}

// Targets on one filesystem (same node and FSID) count its space once in
// Capacity (meta's StatFS); FSID 0 (unknown) counts per target.
func TestCapacitySharedFilesystem(t *testing.T) {
	ctx := context.Background()
	s := newService(t, openBolt(t, filepath.Join(t.TempDir(), "kv.db")), newFakeClock())
	ts := registerCluster(t, s, 2, "/a", "/b") // node 1: ts[0], ts[1]; node 2: ts[2], ts[3]
	for _, tg := range ts {
		must[proto.Chain](t)(s.CreateChain(ctx, []uint32{tg.ID}))
	}
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 1, Targets: []proto.TargetStats{
		{ID: ts[0].ID, Capacity: 100, Used: 40, FSID: 7},
		{ID: ts[1].ID, Capacity: 100, Used: 40, FSID: 7},
	}}))
	must[proto.HeartbeatResp](t)(s.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 2, Targets: []proto.TargetStats{
		{ID: ts[2].ID, Capacity: 50, Used: 10, FSID: 7}, // same FSID on another node: another filesystem
		{ID: ts[3].ID, Capacity: 30},                    // unknown filesystem
	}}))
	total, free, err := s.Capacity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if total != 180 || free != 130 {
		t.Fatalf("capacity %d free %d, want 180 and 130", total, free)
	}
	if ri := routing(t, s); ri.Target(ts[1].ID).FSID != 7 || ri.Target(ts[3].ID).FSID != 0 {
		t.Fatalf("routing targets: %+v", ri.Targets)
	}
}
