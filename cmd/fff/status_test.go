package main

import (
	"strings"
	"testing"

	"fff/internal/proto"
)

// Targets on one filesystem (same node, same FSID) share its space: `fff
// status` counts it once and says so.
func TestStatusCapacityPerFilesystem(t *testing.T) {
	const gib = 1 << 30
	ri := &proto.RoutingInfo{Targets: []proto.Target{
		{ID: 1, NodeID: 1, State: proto.TargetServing, Capacity: 250 * gib, Used: 50 * gib, FSID: 2049},
		{ID: 2, NodeID: 1, State: proto.TargetServing, Capacity: 250 * gib, Used: 50 * gib, FSID: 2049},
		{ID: 3, NodeID: 2, State: proto.TargetServing, Capacity: 100 * gib, Used: 10 * gib, FSID: 2049}, // another node
		{ID: 4, NodeID: 2, State: proto.TargetSyncing, Capacity: 10 * gib, Used: 1 * gib},               // FSID unknown
		{ID: 5, NodeID: 2, State: proto.TargetOffline},                                                  // no report yet
	}}
	tc := countTargets(ri)
	if tc.Total != 5 || tc.Reported != 4 || tc.Filesystems != 3 || tc.Capacity != 360*gib || tc.Used != 61*gib ||
		tc.Serving != 3 || tc.Syncing != 1 || tc.Offline != 1 {
		t.Fatalf("countTargets: %+v", tc)
	}

	var b strings.Builder
	st := &clusterStatus{Address: "a:1", routing: ri, Targets: tc, StatFSError: "no meta"}
	if err := printStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	if want := "capacity:     360 GiB, 61 GiB used (4 targets on 3 filesystems of 5 targets, each filesystem counted once"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}

	// With meta's StatFS (one replica per chain), the sharing is noted too.
	ri.Targets = ri.Targets[:2]
	st = &clusterStatus{Address: "a:1", routing: ri, Targets: countTargets(ri),
		StatFS: &statFSJSON{Inodes: 1, TotalBytes: 250 * gib, FreeBytes: 200 * gib}}
	b.Reset()
	if err := printStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	if want := "capacity:     250 GiB, 50 GiB used (20.0%), 200 GiB free (one replica per chain; 2 targets on 1 filesystem)"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
}
