package mgmtd

import (
	"context"
	"os"
	"path/filepath"
	"slices"

	"fff/internal/proto"
)

// BootstrapTable is the chain table Bootstrap creates: the default table of
// a single-node cluster.
const BootstrapTable uint32 = 1

// Bootstrap sets up the cluster of `fffd local` (DESIGN §5, §11): it
// registers node nodeID at addr with every role, registers one target per
// path of targetPaths (matched by path, so target ids stay stable across
// restarts whatever the order of the paths), creates one chain per target
// that has none, and makes chain table BootstrapTable list those chains:
// the chains it already lists keep their places and new ones are appended.
// Nothing is ever removed: a path dropped from the configuration stays
// registered, its chain stays in the table.
//
// Run again on every start, it changes nothing (and the routing version
// stays) unless the configuration changed. Every step is idempotent, so a
// crash half-way is repaired by the next run.
//
// replication must be 1 (or 0, meaning 1): a chain's targets must be on
// distinct nodes, and there is one node (EINVAL otherwise).
//
// Bootstrap does not heartbeat. The process must heartbeat for its node
// (RunHeartbeats), or the node goes down after the heartbeat timeout like
// any other.
func Bootstrap(ctx context.Context, api API, nodeID uint32, addr string, targetPaths []string, replication int) error {
	if replication == 0 {
		replication = 1
	}
	if replication != 1 {
		return proto.Errorf(proto.EINVAL, "mgmtd: bootstrap: replication %d needs as many nodes; a single node supports 1", replication)
	}
	if len(targetPaths) == 0 {
		return proto.Errorf(proto.EINVAL, "mgmtd: bootstrap: no target paths")
	}
	paths := make([]string, len(targetPaths))
	for i, p := range targetPaths {
		paths[i] = filepath.Clean(p)
		if slices.Contains(paths[:i], paths[i]) {
			return proto.Errorf(proto.EINVAL, "mgmtd: bootstrap: target path %q listed twice", p)
		}
	}
	host, _ := os.Hostname()
	if _, err := api.RegisterNode(ctx, proto.Node{ID: nodeID, Roles: proto.RolesAll, Addr: addr, Hostname: host}); err != nil {
		return err
	}
	req := make([]proto.Target, len(paths))
	for i, p := range paths {
		req[i] = proto.Target{NodeID: nodeID, Path: p}
	}
	targets, err := api.RegisterTargets(ctx, req)
	if err != nil {
		return err
	}
	chains := make([]uint32, len(targets))
	for i, t := range targets {
		chains[i] = t.ChainID
		if chains[i] == 0 {
			c, err := api.CreateChain(ctx, []uint32{t.ID})
			if err != nil {
				return err
			}
			chains[i] = c.ID
		}
	}
	ri, err := api.GetRouting(ctx, 0)
	if err != nil {
		return err
	}
	var list []uint32
	if t := ri.ChainTable(BootstrapTable); t != nil {
		list = slices.Clone(t.Chains)
	}
	for _, c := range chains {
		if !slices.Contains(list, c) {
			list = append(list, c)
		}
	}
	_, err = api.SetChainTable(ctx, BootstrapTable, list)
	return err
}
