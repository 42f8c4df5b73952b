package mgmtd

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
)

func TestPlace(t *testing.T) {
	// targets lists, per target id 1.., its node.
	for _, tc := range []struct {
		nodes  []uint32
		r      int
		chains string
		left   []uint32
	}{
		{[]uint32{1, 2, 3}, 3, "[[1 2 3]]", nil},
		{[]uint32{1, 2, 3, 1, 2, 3}, 3, "[[1 2 3] [5 6 4]]", nil},
		{[]uint32{1, 1, 2, 3}, 3, "[[1 3 4]]", []uint32{2}},
		{[]uint32{1, 1, 1, 2, 2, 3, 3}, 2, "[[1 4] [6 2] [3 5]]", []uint32{7}},
		{[]uint32{1, 1}, 2, "[]", []uint32{1, 2}},
		{[]uint32{5, 6, 7, 8}, 1, "[[1] [2] [3] [4]]", nil},
	} {
		var ts []proto.Target
		for i, n := range tc.nodes {
			ts = append(ts, proto.Target{ID: uint32(i + 1), NodeID: n})
		}
		chains, left := place(ts, tc.r)
		got := fmt.Sprint(chains)
		if chains == nil {
			got = "[]"
		}
		if got != tc.chains || !slices.Equal(left, tc.left) {
			t.Errorf("place(nodes %v, r %d) = %s, left %v; want %s, left %v", tc.nodes, tc.r, got, left, tc.chains, tc.left)
		}
		for _, c := range chains {
			seen := map[uint32]bool{}
			for _, tid := range c {
				n := tc.nodes[tid-1]
				if seen[n] {
					t.Errorf("place(nodes %v, r %d): chain %v has two targets on node %d", tc.nodes, tc.r, c, n)
				}
				seen[n] = true
			}
		}
	}
}

// TestPlaceChains: unchained serving targets become chains on distinct
// nodes appended to the table in one transaction; a second call makes
// nothing; too few nodes is EINVAL and changes nothing.
func TestPlaceChains(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		ctx := context.Background()
		s := newService(t, db, newFakeClock())
		ts := registerCluster(t, s, 3, "/a", "/b") // node n: targets 2n-1, 2n
		solo := must[proto.Chain](t)(s.CreateChain(ctx, []uint32{ts[0].ID}))
		must[proto.ChainTable](t)(s.SetChainTable(ctx, 1, []uint32{solo.ID}))
		if err := s.SetTargetState(ctx, ts[5].ID, proto.TargetOffline); err != nil {
			t.Fatal(err)
		}
		resp, err := s.PlaceChains(ctx, 1, 2)
		if err != nil {
			t.Fatal(err)
		}
		// Free and serving: 2 (node 1), 3, 4 (node 2), 5 (node 3).
		if len(resp.Chains) != 2 || len(resp.Unplaced) != 0 {
			t.Fatalf("placed %+v", resp)
		}
		ri := routing(t, s)
		for _, c := range resp.Chains {
			if len(c.Targets) != 2 || ri.Target(c.Targets[0]).NodeID == ri.Target(c.Targets[1]).NodeID {
				t.Fatalf("chain %+v", c)
			}
			for _, tid := range c.Targets {
				if ri.Target(tid).ChainID != c.ID {
					t.Fatalf("target %d does not name chain %d", tid, c.ID)
				}
			}
		}
		if tb := ri.ChainTable(1); !slices.Equal(tb.Chains, []uint32{solo.ID, resp.Chains[0].ID, resp.Chains[1].ID}) || tb.Version != 2 {
			t.Fatalf("table %+v", tb)
		}
		v := s.Version()
		if again, err := s.PlaceChains(ctx, 1, 2); err != nil || len(again.Chains) != 0 || s.Version() != v {
			t.Fatalf("second place: %+v, %v; version %d → %d", again, err, v, s.Version())
		}
		// Target 6 serving again, alone on node 3: not enough nodes.
		if err := s.SetTargetState(ctx, ts[5].ID, proto.TargetServing); err != nil {
			t.Fatal(err)
		}
		v = s.Version()
		_, err = s.PlaceChains(ctx, 1, 2)
		wantCode(t, err, proto.EINVAL)
		_, err = s.PlaceChains(ctx, 0, 2)
		wantCode(t, err, proto.EINVAL)
		_, err = s.PlaceChains(ctx, 1, 0)
		wantCode(t, err, proto.EINVAL)
		if s.Version() != v {
			t.Fatal("refused placements changed the cluster")
		}
	})
}
