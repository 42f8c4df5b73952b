package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"fff/internal/fileutil"
	"fff/internal/proto"
	"fff/server/mgmtd"
)

// targetIDFile names the id file in every target directory. Targets are
// registered by the id it records, not by path, so a moved or copied data
// directory keeps its targets, ids and chunks.
const targetIDFile = "target.json"

// errForeignTarget is returned for a target directory whose id file names
// another cluster, or a target mgmtd does not know on this node.
var errForeignTarget = errors.New("target directory belongs to another cluster or node")

// targetID is the content of a target's id file.
type targetID struct {
	Cluster string `json:"cluster"`
	Target  uint32 `json:"target"`
	Node    uint32 `json:"node"`
}

// readTargetID reads dir's id file; ok is false if there is none (a new
// target, or one of an older fffd).
func readTargetID(dir string) (id targetID, ok bool, err error) {
	path := filepath.Join(dir, targetIDFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return targetID{}, false, nil
	}
	if err != nil {
		return targetID{}, false, fmt.Errorf("target id: %w", err)
	}
	if err := json.Unmarshal(b, &id); err != nil || id.Cluster == "" || id.Target == 0 {
		return targetID{}, false, fmt.Errorf("target id file %s is damaged (%v): %w", path, err, proto.ErrIO)
	}
	return id, true, nil
}

// writeTargetID writes dir's id file durably (temporary file, fsync,
// rename, fsync of dir): a crash leaves the old file or the new one.
func writeTargetID(dir string, id targetID) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := fileutil.WriteAtomic(filepath.Join(dir, targetIDFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("target id: %w", err)
	}
	return nil
}

// checkTargetID checks the id file of target directory dir against the
// cluster: it must name this cluster and a target mgmtd has on this node.
func checkTargetID(dir string, id targetID, ri *proto.RoutingInfo, nodeID uint32) error {
	if id.Cluster != ri.ClusterID {
		return fmt.Errorf("target directory %s belongs to cluster %s, not this cluster %s: move it away (or out of storage.targets) and start again: %w",
			dir, id.Cluster, ri.ClusterID, errForeignTarget)
	}
	t := ri.Target(id.Target)
	if t == nil || t.NodeID != nodeID {
		return fmt.Errorf("target directory %s is target %d, which mgmtd does not know on node %d: start it with the node it belongs to, or move it away (or out of storage.targets): %w",
			dir, id.Target, nodeID, errForeignTarget)
	}
	return nil
}

// registerTargets registers node nodeID and its target directories with
// mgmtd (mgmtd.BootstrapTargets): a directory with an id file by the id it
// records, once checked to belong to this cluster and node; one without (a
// new target, or one from before id files) by path, and it then gets its
// id file. With ownChains each target without a chain gets one of its own
// in chain table 1; without, targets stay unchained (storage.chains =
// "manual").
func registerTargets(ctx context.Context, api mgmtd.API, nodeID uint32, addr string, roles proto.Roles, paths []string, ownChains bool) error {
	ri, err := api.GetRouting(ctx, 0)
	if err != nil {
		return fmt.Errorf("routing: %w", err)
	}
	if ri.ClusterID == "" {
		return fmt.Errorf("mgmtd reports no cluster id (an older mgmtd?): %w", proto.ErrIO)
	}
	req := make([]proto.Target, len(paths))
	has := make([]bool, len(paths))
	for i, p := range paths {
		id, ok, err := readTargetID(p)
		if err != nil {
			return err
		}
		if ok {
			if err := checkTargetID(p, id, ri, nodeID); err != nil {
				return err
			}
			req[i].ID = id.Target
		}
		req[i].Path, has[i] = p, ok
	}
	var ts []proto.Target
	if ownChains {
		ts, err = mgmtd.BootstrapTargets(ctx, api, nodeID, addr, roles, req, 1)
	} else {
		ts, err = mgmtd.RegisterNodeTargets(ctx, api, nodeID, addr, roles, req)
	}
	if err != nil {
		return err
	}
	for i, t := range ts {
		if has[i] {
			continue
		}
		if err := writeTargetID(paths[i], targetID{Cluster: ri.ClusterID, Target: t.ID, Node: nodeID}); err != nil {
			return err
		}
	}
	return nil
}
