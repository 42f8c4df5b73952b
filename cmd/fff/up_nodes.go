package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"fff/internal/certs"
	"fff/internal/fileutil"
)

// `fff up --storage-nodes N`: a multi-node cluster on one machine, as
// separate processes — the control node (`fffd local`: mgmtd, meta and its
// own targets over the embedded KV) and N `fffd storage` nodes joined to
// it, each in DATA/nodes/ID (ids 2, 3, …) with one target. They are the
// local testbed of a multi-machine cluster: the same binaries and configs.

// nodesDir holds the storage nodes' data directories.
const nodesDir = "nodes"

// storageNodes returns the ids of the storage nodes made under data by
// earlier starts, in order.
func storageNodes(data string) ([]uint32, error) {
	es, err := os.ReadDir(filepath.Join(data, nodesDir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for _, e := range es {
		if v, err := strconv.ParseUint(e.Name(), 10, 32); err == nil && v >= 2 && e.IsDir() {
			ids = append(ids, uint32(v))
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// upStorageNodes starts the storage nodes of data that are not running:
// those made by earlier starts, and new ones until there are n. Each runs
// in its own session (it outlives this command when daemon) and logs to its
// directory's fffd.log. It returns the processes it started.
// With manual, their targets wait for placement in replicated chains
// (up_replicas.go).
func upStorageNodes(ctx context.Context, bin, data, control string, n int, manual bool, timeout time.Duration) ([]*os.Process, error) {
	ids, err := storageNodes(data)
	if err != nil {
		return nil, err
	}
	for id := uint32(len(ids) + 2); len(ids) < n; id++ {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	var started []*os.Process
	for _, id := range ids {
		p, err := upStorageNode(ctx, bin, data, control, id, manual, timeout)
		if err != nil {
			for _, q := range started {
				q.Signal(syscall.SIGTERM)
			}
			return nil, fmt.Errorf("storage node %d: %w", id, err)
		}
		if p != nil {
			started = append(started, p)
		}
	}
	return started, nil
}

// upStorageNode starts storage node id unless it runs (nil process then).
func upStorageNode(ctx context.Context, bin, data, control string, id uint32, manual bool, timeout time.Duration) (*os.Process, error) {
	dir := filepath.Join(data, nodesDir, strconv.FormatUint(uint64(id), 10))
	if _, ok := runningCluster(dir); ok {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// What a storage node needs from the control node: the admin token
	// (to register and heartbeat) and the cluster's capability key.
	for _, f := range []string{tokenFile, "capability.key"} {
		b, err := os.ReadFile(filepath.Join(data, f))
		if err != nil {
			return nil, err
		}
		if err := fileutil.WriteAtomic(filepath.Join(dir, f), b, 0o600); err != nil {
			return nil, err
		}
	}
	cfg := fmt.Sprintf("# written by fff up --storage-nodes\n[node]\nid = %d\n\n[mgmtd]\naddress = %q\n\n[storage]\ntargets = [\"targets/0\"]\n", id, control)
	if manual {
		cfg += "chains = \"manual\"\n"
	}
	if clusterUsesTLS(data) {
		// The control node's certificate: it names the loopback
		// addresses the storage nodes listen on, and it is the
		// cluster CA's, which every node trusts.
		tdir := filepath.Join(data, tlsDir)
		cfg += fmt.Sprintf("\n[tls]\ncert = %q\nkey = %q\nca = %q\n",
			filepath.Join(tdir, certs.NodeFile), filepath.Join(tdir, certs.NodeKey), filepath.Join(tdir, certs.CAFile))
	}
	cfgPath := filepath.Join(dir, "fffd.toml")
	if err := fileutil.WriteAtomic(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	sp, err := spawnFFFD(bin, dir, []string{"storage", "--config", cfgPath, "--data", dir, "--listen", recordedListen(dir), "--log-format", "json"}, true)
	if err != nil {
		return nil, err
	}
	c, exited := sp, sp.exited
	ri, err := waitReady(ctx, dir, c.proc.Pid, exited, timeout)
	if err != nil {
		c.proc.Signal(syscall.SIGTERM)
		return nil, fmt.Errorf("%w (see %s)", err, filepath.Join(dir, logFile))
	}
	if err := fileutil.WriteAtomic(filepath.Join(dir, addressFile), []byte(ri.Address+"\n"), 0o600); err != nil {
		c.proc.Signal(syscall.SIGTERM)
		return nil, err
	}
	return c.proc, nil
}

// downStorageNodes stops the running storage nodes of data and returns
// their pids.
func downStorageNodes(ctx context.Context, data string, timeout time.Duration) ([]int, error) {
	ids, err := storageNodes(data)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, id := range ids {
		ri, ok := runningCluster(filepath.Join(data, nodesDir, strconv.FormatUint(uint64(id), 10)))
		if !ok {
			continue
		}
		if err := stopProcess(ctx, ri.PID, timeout); err != nil {
			return pids, err
		}
		pids = append(pids, ri.PID)
	}
	return pids, nil
}

// printStorageNodes lists the storage nodes of data and their addresses.
func printStorageNodes(out io.Writer, data string) {
	ids, _ := storageNodes(data)
	for _, id := range ids {
		dir := filepath.Join(data, nodesDir, strconv.FormatUint(uint64(id), 10))
		if ri, ok := runningCluster(dir); ok {
			fmt.Fprintf(out, "storage node %d: %s (pid %d, %s)\n", id, ri.Address, ri.PID, dir)
		}
	}
}
