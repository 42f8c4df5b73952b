package main

import (
	"strings"
	"testing"
	"time"

	"fff/internal/proto"
)

func TestAssessHealth(t *testing.T) {
	up := func(id uint32, roles proto.Roles) proto.Node {
		return proto.Node{ID: id, Roles: roles, Addr: "n", State: proto.NodeUp}
	}
	target := func(id, node uint32, s proto.TargetState) proto.Target {
		return proto.Target{ID: id, NodeID: node, State: s, ChainID: 1, Capacity: 100, Used: 50}
	}
	whole := func() *proto.RoutingInfo {
		return &proto.RoutingInfo{
			Nodes:   []proto.Node{up(1, proto.RolesAll), up(2, proto.RoleStorage), up(3, proto.RoleStorage)},
			Targets: []proto.Target{target(1, 1, proto.TargetServing), target(2, 2, proto.TargetServing), target(3, 3, proto.TargetServing)},
			Chains:  []proto.Chain{{ID: 1, Version: 1, Targets: []uint32{1, 2, 3}}},
		}
	}
	skew := func(d time.Duration) *time.Duration { return &d }
	for _, tc := range []struct {
		name   string
		change func(ri *proto.RoutingInfo, st *clusterStatus)
		skew   *time.Duration
		rates  map[uint32]resyncRate
		state  string
		reason string // in one of the reasons
	}{
		{"whole", func(*proto.RoutingInfo, *clusterStatus) {}, nil, nil, healthHealthy, ""},
		{"node down", func(ri *proto.RoutingInfo, _ *clusterStatus) {
			ri.Nodes[2].State = proto.NodeDown
			ri.Targets[2].State = proto.TargetOffline
		}, nil, nil, healthDegraded, "node 3 (storage, n) is down"},
		{"syncing with ETA", func(ri *proto.RoutingInfo, _ *clusterStatus) {
			ri.Targets[2].State = proto.TargetSyncing
			ri.Targets[2].Resync = &proto.ResyncStats{Target: 3, From: 2, Chunks: 50, Total: 200}
		}, nil, map[uint32]resyncRate{3: {chunksPerSec: 10, left: 150}}, healthDegraded, "target 3 syncing, resync 25%, ETA 15s"},
		{"no copy left", func(ri *proto.RoutingInfo, _ *clusterStatus) {
			for i := range ri.Targets {
				ri.Targets[i].State = proto.TargetOffline
			}
		}, nil, nil, healthUnavailable, "chain 1 has no serving target"},
		{"disk nearly full", func(ri *proto.RoutingInfo, _ *clusterStatus) { ri.Targets[1].Used = 95 }, nil, nil, healthDegraded, "target 2 (node 2) is 95% full"},
		{"meta silent", func(_ *proto.RoutingInfo, st *clusterStatus) { st.StatFSError = "rpc: timeout" }, nil, nil, healthUnavailable, "metadata service does not answer"},
		{"mgmtd-only address", func(_ *proto.RoutingInfo, st *clusterStatus) {
			st.statFSErr = proto.Errorf(proto.UnknownMethod, "rpc: no handler for method 117")
			st.StatFSError = st.statFSErr.Error()
		}, nil, nil, healthHealthy, ""},
		{"no leader", func(ri *proto.RoutingInfo, _ *clusterStatus) {
			ri.Nodes[1].Roles, ri.Nodes[2].Roles = proto.RolesAll, proto.RolesAll
		}, nil, nil, healthDegraded, "no mgmtd leader"},
		{"leader", func(ri *proto.RoutingInfo, _ *clusterStatus) {
			ri.Nodes[1].Roles, ri.Nodes[2].Roles = proto.RolesAll, proto.RolesAll
			ri.Leader, ri.LeaderTerm = 2, 7
		}, nil, nil, healthHealthy, ""},
		{"clock skew", func(*proto.RoutingInfo, *clusterStatus) {}, skew(-3 * time.Second), nil, healthDegraded, "clock and mgmtd's differ by -3s"},
		{"worst wins", func(ri *proto.RoutingInfo, _ *clusterStatus) {
			ri.Nodes[2].State = proto.NodeDown
			ri.Chains = append(ri.Chains, proto.Chain{ID: 2, Targets: []uint32{9}})
		}, nil, nil, healthUnavailable, "node 3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ri := whole()
			st := &clusterStatus{routing: ri}
			tc.change(ri, st)
			h := assessHealth(st, tc.rates, tc.skew)
			if h.State != tc.state {
				t.Errorf("state %s (%v), want %s", h.State, h.Reasons, tc.state)
			}
			if tc.reason == "" && len(h.Reasons) != 0 {
				t.Errorf("reasons %v, want none", h.Reasons)
			}
			if tc.reason != "" && !strings.Contains(strings.Join(h.Reasons, "\n"), tc.reason) {
				t.Errorf("reasons %v lack %q", h.Reasons, tc.reason)
			}
		})
	}
}

func TestClockSkew(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ri := func(hb time.Time) *proto.RoutingInfo {
		return &proto.RoutingInfo{Nodes: []proto.Node{{ID: 1, State: proto.NodeUp, LastHeartbeat: hb}}}
	}
	for _, tc := range []struct {
		hb   time.Time
		want *time.Duration
	}{
		{time.Time{}, nil},
		{now.Add(-800 * time.Millisecond), nil},
		{now.Add(2 * time.Second), ptr(-2 * time.Second)},
		{now.Add(-10 * time.Second), ptr(7 * time.Second)},
	} {
		got := clockSkew(ri(tc.hb), now)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("heartbeat at %v: skew %v, want %v", tc.hb, deref(got), deref(tc.want))
		}
	}
}

func ptr(d time.Duration) *time.Duration { return &d }

func deref(d *time.Duration) any {
	if d == nil {
		return nil
	}
	return *d
}
