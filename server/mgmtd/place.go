package mgmtd

import (
	"cmp"
	"context"
	"slices"

	"fff/internal/proto"
)

// PlaceChains makes chains of replicas targets each out of the serving
// targets that belong to no chain, every chain on distinct nodes, and
// appends them to chain table table (created if missing), all in one
// transaction. It makes as many chains as the targets allow (place) and
// reports the targets left over. replicas must be at least 1 and table
// non-zero (EINVAL). Without unchained serving targets it makes nothing;
// with some, but on fewer than replicas distinct nodes, it is EINVAL and
// changes nothing.
func (s *Service) PlaceChains(ctx context.Context, table uint32, replicas int) (proto.PlaceChainsResp, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return proto.PlaceChainsResp{}, err
		}
		return f.PlaceChains(ctx, table, replicas)
	}
	if replicas < 1 || table == 0 {
		return proto.PlaceChainsResp{}, proto.Errorf(proto.EINVAL, "mgmtd: place chains: replicas %d, table %d: want replicas ≥ 1 and a table id", replicas, table)
	}
	var made []uint32
	var left []uint32
	ri, err := s.update(ctx, func(st *state) error {
		made, left = made[:0], nil
		var free []proto.Target
		for _, id := range sortedKeys(st.targets) {
			t := st.targets[id]
			if t.ChainID == 0 && t.State == proto.TargetServing {
				free = append(free, *t)
			}
		}
		if len(free) == 0 {
			return nil
		}
		var groups [][]uint32
		groups, left = place(free, replicas)
		if len(groups) == 0 {
			return proto.Errorf(proto.EINVAL, "mgmtd: place chains: %d unchained serving targets on fewer than %d distinct nodes", len(free), replicas)
		}
		for _, g := range groups {
			id, err := nextID(st.chains)
			if err != nil {
				return err
			}
			st.chains[id] = &proto.Chain{ID: id, Version: 1, Targets: g}
			for _, tid := range g {
				st.targets[tid].ChainID = id
			}
			made = append(made, id)
		}
		st.addToTable(table, made)
		return nil
	})
	if err != nil {
		return proto.PlaceChainsResp{}, err
	}
	resp := proto.PlaceChainsResp{Unplaced: left}
	for _, id := range made {
		resp.Chains = append(resp.Chains, *ri.Chain(id))
	}
	if t := ri.ChainTable(table); t != nil {
		resp.Table = *t
	}
	return resp, nil
}

// place groups targets into as many chains of r as it can, each on r
// distinct nodes: every round takes one target from each of the r nodes
// with the most targets left (ties: lower node id), which makes the most
// chains, and rotates the chain's order by the round so that heads (the
// members that take every write first) spread over the nodes. It returns
// the chains and the targets left over, in id order.
func place(targets []proto.Target, r int) (chains [][]uint32, left []uint32) {
	byNode := map[uint32][]uint32{}
	for _, t := range targets {
		byNode[t.NodeID] = append(byNode[t.NodeID], t.ID)
	}
	nodes := sortedKeys(byNode)
	for _, n := range nodes {
		slices.Sort(byNode[n])
	}
	for round := 0; ; round++ {
		avail := slices.DeleteFunc(slices.Clone(nodes), func(n uint32) bool { return len(byNode[n]) == 0 })
		if len(avail) < r {
			break
		}
		slices.SortStableFunc(avail, func(a, b uint32) int { return cmp.Compare(len(byNode[b]), len(byNode[a])) })
		pick := avail[:r]
		slices.Sort(pick)
		chain := make([]uint32, r)
		for i, n := range pick {
			chain[(i+r-round%r)%r] = byNode[n][0]
			byNode[n] = byNode[n][1:]
		}
		chains = append(chains, chain)
	}
	for _, n := range nodes {
		left = append(left, byNode[n]...)
	}
	slices.Sort(left)
	return chains, left
}
