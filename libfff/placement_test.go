package libfff

import (
	"reflect"
	"testing"

	"fff/internal/proto"
)

func TestSplitRange(t *testing.T) {
	for _, tc := range []struct {
		cs   uint32
		off  int64
		n    int
		want []piece
	}{
		{cs: 4096, off: 0, n: 0, want: nil},
		{cs: 4096, off: 0, n: 1, want: []piece{{0, 0, 1, 0}}},
		{cs: 4096, off: 0, n: 4096, want: []piece{{0, 0, 4096, 0}}},
		{cs: 4096, off: 4095, n: 2, want: []piece{{0, 4095, 1, 0}, {1, 0, 1, 1}}},
		{cs: 4096, off: 4096, n: 4096, want: []piece{{1, 0, 4096, 0}}},
		{cs: 4096, off: 100, n: 10000, want: []piece{{0, 100, 3996, 0}, {1, 0, 4096, 3996}, {2, 0, 1908, 8092}}},
		{cs: 1 << 20, off: 5<<20 + 7, n: 3, want: []piece{{5, 7, 3, 0}}},
		{cs: 0, off: 0, n: 10, want: nil},
	} {
		got := splitRange(tc.cs, tc.off, tc.n)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitRange(%d, %d, %d) = %v, want %v", tc.cs, tc.off, tc.n, got, tc.want)
		}
	}
}

// testRouting: chain 1 = [t1 (node 1, serving), t2 (node 2, serving)],
// chain 2 = [t3 (node 2, syncing), t4 (node 1, serving)] is reordered by
// mgmtd in real life; here it tests that a non-serving head refuses
// writes, chain 3 = [t5 (node 1, offline)].
func testRouting() *proto.RoutingInfo {
	return &proto.RoutingInfo{
		Version: 7,
		Nodes:   []proto.Node{{ID: 1, Addr: "n1:1"}, {ID: 2, Addr: "n2:1"}},
		Targets: []proto.Target{
			{ID: 1, NodeID: 1, State: proto.TargetServing},
			{ID: 2, NodeID: 2, State: proto.TargetServing},
			{ID: 3, NodeID: 2, State: proto.TargetSyncing},
			{ID: 4, NodeID: 1, State: proto.TargetServing},
			{ID: 5, NodeID: 1, State: proto.TargetOffline},
		},
		Chains: []proto.Chain{
			{ID: 1, Version: 3, Targets: []uint32{1, 2}},
			{ID: 2, Version: 4, Targets: []uint32{3, 4}},
			{ID: 3, Version: 1, Targets: []uint32{5}},
		},
	}
}

func TestPlacement(t *testing.T) {
	ri := testRouting()
	l := &proto.Layout{ChunkSize: 4096, Stripe: 3, Chains: []uint32{1, 2, 3}}
	for _, tc := range []struct {
		index     uint64
		write     string // head's address, "" for an error
		writeT    uint32
		readAddrs []string // the possible read addresses
	}{
		{index: 0, write: "n1:1", writeT: 1, readAddrs: []string{"n1:1", "n2:1"}},
		{index: 3, write: "n1:1", writeT: 1, readAddrs: []string{"n1:1", "n2:1"}},
		{index: 1, write: "", readAddrs: []string{"n1:1"}}, // syncing head; t4 serves reads
		{index: 2, write: "", readAddrs: nil},              // offline chain
	} {
		w, err := writeRoute(ri, l, 9, tc.index)
		if tc.write == "" {
			if err == nil {
				t.Errorf("chunk %d: write routed to %v, want an error", tc.index, w)
			}
		} else if err != nil || w.addr != tc.write || w.ref.TargetID != tc.writeT || w.ref.Ino != 9 || w.ref.Index != uint32(tc.index) {
			t.Errorf("chunk %d: write route %v, %v", tc.index, w, err)
		} else if ch := ri.Chain(l.ChainOf(tc.index)); w.ref.ChainVersion != ch.Version || w.ref.ChainID != ch.ID {
			t.Errorf("chunk %d: write route %v has the wrong chain", tc.index, w)
		}
		seen := map[string]bool{}
		for attempt := range 4 {
			r, err := readRoute(ri, l, 9, tc.index, attempt, nil)
			if tc.readAddrs == nil {
				if err == nil || proto.CodeOf(err) != proto.TargetNotServing {
					t.Errorf("chunk %d: read routed to %v, %v; want TargetNotServing", tc.index, r, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("chunk %d: read route: %v", tc.index, err)
			}
			if rt := ri.Target(r.ref.TargetID); rt.State != proto.TargetServing {
				t.Errorf("chunk %d: read from a %v target", tc.index, rt.State)
			}
			seen[r.addr] = true
		}
		if tc.readAddrs != nil && len(seen) != len(tc.readAddrs) {
			t.Errorf("chunk %d: retries read from %v, want every one of %v", tc.index, seen, tc.readAddrs)
		}
	}
	// Reads of a 2-replica chain spread over both replicas.
	count := map[uint32]int{}
	for idx := uint64(0); idx < 3000; idx += 3 {
		r, _ := readRoute(ri, l, 42, idx, 0, nil)
		count[r.ref.TargetID]++
	}
	if count[1] < 300 || count[2] < 300 {
		t.Errorf("reads spread %v over the replicas of chain 1", count)
	}
	// A replica on this host is read first; retries still reach the other.
	onN2 := func(n *proto.Node) bool { return n.Addr == "n2:1" }
	for idx := uint64(0); idx < 300; idx += 3 {
		if r, _ := readRoute(ri, l, 42, idx, 0, onN2); r.addr != "n2:1" {
			t.Fatalf("chunk %d: first read from %s with a replica on this host (n2:1)", idx, r.addr)
		}
		seen := map[string]bool{}
		for attempt := range 2 {
			r, _ := readRoute(ri, l, 42, idx, attempt, onN2)
			seen[r.addr] = true
		}
		if len(seen) != 2 {
			t.Fatalf("chunk %d: retries read from %v only", idx, seen)
		}
	}
	if _, err := writeRoute(ri, &proto.Layout{ChunkSize: 4096}, 1, 0); err == nil {
		t.Error("a layout without chains routed a write")
	}
	if _, err := readRoute(ri, &proto.Layout{ChunkSize: 4096, Chains: []uint32{99}}, 1, 0, 0, nil); err == nil {
		t.Error("an unknown chain routed a read")
	}
}

func TestCoalesce(t *testing.T) {
	ref := func(ino uint64, idx uint32, tid uint32) proto.ChunkRef {
		return proto.ChunkRef{Ino: ino, Index: idx, ChainID: 1, ChainVersion: 1, TargetID: tid}
	}
	mk := func(addr string, r proto.ChunkRef, off uint32, n int, op int) *seg {
		return &seg{r: route{ref: r, addr: addr}, off: off, dst: make([]byte, n), op: op}
	}
	type io struct {
		idx      uint32
		off, len uint32
		ops      []int
	}
	for _, tc := range []struct {
		name string
		segs []*seg
		want map[string][]io
	}{
		{
			name: "adjacent ranges of one chunk merge, in offset order",
			segs: []*seg{mk("a", ref(1, 0, 1), 100, 50, 1), mk("a", ref(1, 0, 1), 0, 100, 0), mk("a", ref(1, 0, 1), 150, 10, 2)},
			want: map[string][]io{"a": {{0, 0, 160, []int{0, 1, 2}}}},
		},
		{
			name: "a gap keeps ranges apart",
			segs: []*seg{mk("a", ref(1, 0, 1), 0, 100, 0), mk("a", ref(1, 0, 1), 101, 10, 1)},
			want: map[string][]io{"a": {{0, 0, 100, []int{0}}, {0, 101, 10, []int{1}}}},
		},
		{
			name: "overlaps are not merged",
			segs: []*seg{mk("a", ref(1, 0, 1), 0, 100, 0), mk("a", ref(1, 0, 1), 50, 100, 1)},
			want: map[string][]io{"a": {{0, 0, 100, []int{0}}, {0, 50, 100, []int{1}}}},
		},
		{
			name: "different chunks, files and nodes stay apart",
			segs: []*seg{
				mk("a", ref(1, 1, 1), 0, 10, 0), mk("a", ref(1, 0, 1), 4086, 10, 1),
				mk("b", ref(2, 0, 2), 0, 10, 2), mk("a", ref(3, 0, 1), 10, 10, 3),
			},
			want: map[string][]io{
				"a": {{0, 4086, 10, []int{1}}, {1, 0, 10, []int{0}}, {0, 10, 10, []int{3}}},
				"b": {{0, 0, 10, []int{2}}},
			},
		},
	} {
		got := coalesce(tc.segs)
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d nodes, want %d", tc.name, len(got), len(tc.want))
			continue
		}
		for addr, wios := range tc.want {
			gios := got[addr]
			if len(gios) != len(wios) {
				t.Errorf("%s: node %s: %d IOs, want %d", tc.name, addr, len(gios), len(wios))
				continue
			}
			for k, w := range wios {
				g := gios[k]
				var ops []int
				total := 0
				for _, s := range g.segs {
					ops = append(ops, s.op)
					total += len(s.dst)
				}
				if g.io.Chunk.Index != w.idx || g.io.Off != w.off || g.io.Len != w.len || !reflect.DeepEqual(ops, w.ops) || total != int(g.io.Len) {
					t.Errorf("%s: node %s IO %d = chunk %d [%d+%d] ops %v, want %+v", tc.name, addr, k, g.io.Chunk.Index, g.io.Off, g.io.Len, ops, w)
				}
			}
		}
	}
}

func TestSplitRequests(t *testing.T) {
	mk := func(lens ...uint32) []rio {
		out := make([]rio, len(lens))
		for i, n := range lens {
			out[i].io.Len = n
		}
		return out
	}
	sizes := func(rs [][]rio) []int {
		var out []int
		for _, r := range rs {
			out = append(out, len(r))
		}
		return out
	}
	for _, tc := range []struct {
		ios             []rio
		maxIOs, maxByte int
		want            []int
	}{
		{ios: nil, maxIOs: 2, maxByte: 100, want: nil},
		{ios: mk(10, 10, 10, 10, 10), maxIOs: 2, maxByte: 100, want: []int{2, 2, 1}},
		{ios: mk(60, 60, 30, 10), maxIOs: 10, maxByte: 100, want: []int{1, 3}},
		{ios: mk(500, 10), maxIOs: 10, maxByte: 100, want: []int{1, 1}},
		{ios: mk(50, 50, 1), maxIOs: 10, maxByte: 100, want: []int{2, 1}},
	} {
		if got := sizes(splitRequests(tc.ios, tc.maxIOs, tc.maxByte)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitRequests(%v, %d, %d) = %v, want %v", tc.ios, tc.maxIOs, tc.maxByte, got, tc.want)
		}
	}
}

func TestRequestBytes(t *testing.T) {
	mk := func(n int, each uint32) []rio {
		out := make([]rio, n)
		for i := range out {
			out[i].io.Len = each
		}
		return out
	}
	for _, tc := range []struct {
		ios  []rio
		want int
	}{
		{mk(1, 100), minSplit},
		{mk(2, 4<<20), 2 << 20},
		{mk(64, 4<<20), maxReqBytes},
	} {
		if got := requestBytes(tc.ios); got != tc.want {
			t.Errorf("requestBytes(%d IOs of %d) = %d, want %d", len(tc.ios), tc.ios[0].io.Len, got, tc.want)
		}
	}
	// Two whole-chunk IOs of 4 MiB go out as two requests.
	if got := splitRequests(mk(2, 4<<20), maxReqIOs, requestBytes(mk(2, 4<<20))); len(got) != 2 {
		t.Errorf("a two-chunk read went out as %d requests", len(got))
	}
}
