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
	ts := make([]proto.Target, len(targetPaths))
	for i, p := range targetPaths {
		ts[i].Path = p
	}
	_, err := BootstrapTargets(ctx, api, nodeID, addr, proto.RolesAll, ts, replication)
	return err
}

// BootstrapTargets is Bootstrap over targets that may carry their ids: one
// with a non-zero ID is registered by that id and its recorded path set to
// Path (a moved data directory keeps its targets), one with ID 0 by path.
// It returns the targets as registered, in order.
func BootstrapTargets(ctx context.Context, api API, nodeID uint32, addr string, roles proto.Roles, targets []proto.Target, replication int) ([]proto.Target, error) {
	if replication == 0 {
		replication = 1
	}
	if replication != 1 {
		return nil, proto.Errorf(proto.EINVAL, "mgmtd: bootstrap: replication %d needs as many nodes; a single node supports 1", replication)
	}
	registered, err := RegisterNodeTargets(ctx, api, nodeID, addr, roles, targets)
	if err != nil {
		return nil, err
	}
	chains := make([]uint32, len(registered))
	for i, t := range registered {
		chains[i] = t.ChainID
		if chains[i] == 0 {
			c, err := api.CreateChain(ctx, []uint32{t.ID})
			if err != nil {
				return nil, err
			}
			chains[i] = c.ID
			registered[i].ChainID = c.ID
		}
	}
	// One transaction: storage nodes starting at once each add their
	// chains without losing the others'.
	if _, err = api.AddToChainTable(ctx, BootstrapTable, chains); err != nil {
		return nil, err
	}
	return registered, nil
}

// RegisterNodeTargets registers node nodeID at addr with roles (clients
// send meta calls to the nodes with proto.RoleMeta, so a storage-only node
// must say so) and its targets (as BootstrapTargets does) and makes no
// chains: a storage
// node whose targets join replicated chains that an admin makes
// (`fff admin chain create`, `fff admin chain place`).
func RegisterNodeTargets(ctx context.Context, api API, nodeID uint32, addr string, roles proto.Roles, targets []proto.Target) ([]proto.Target, error) {
	if len(targets) == 0 {
		return nil, proto.Errorf(proto.EINVAL, "mgmtd: bootstrap: no target paths")
	}
	paths := make([]string, len(targets))
	for i, t := range targets {
		paths[i] = filepath.Clean(t.Path)
		if slices.Contains(paths[:i], paths[i]) {
			return nil, proto.Errorf(proto.EINVAL, "mgmtd: bootstrap: target path %q listed twice", t.Path)
		}
	}
	host, _ := os.Hostname()
	if _, err := api.RegisterNode(ctx, proto.Node{ID: nodeID, Roles: roles, Addr: addr, Hostname: host}); err != nil {
		return nil, err
	}
	req := make([]proto.Target, len(paths))
	for i, p := range paths {
		req[i] = proto.Target{ID: targets[i].ID, NodeID: nodeID, Path: p}
	}
	return api.RegisterTargets(ctx, req)
}
