package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"fff/internal/fileutil"
)

// `fff up --nodes N`: a cluster of N full nodes on one machine, each one
// `fffd local` process with an embedded etcd member, mgmtd, meta and
// storage (docs/operations.md, "A replicated control plane"). Node 1 lives
// in DATA itself, nodes 2…N in DATA/nodes/ID. The metadata is in the etcd
// cluster the members form, so any minority of nodes may die; one mgmtd is
// the elected leader. N is chosen when the cluster is made and recorded in
// DATA/nodesFile with the etcd ports, in every node's config.

// nodesFile records N for a cluster made with --nodes.
const nodesFile = "nodes.count"

// upNode is one full node of such a cluster.
type upNode struct {
	id  uint32
	dir string
	cfg string // its fffd config
}

// clusterNodes returns N for a cluster made with --nodes, 0 for another.
func clusterNodes(data string) (int, error) {
	b, err := os.ReadFile(filepath.Join(data, nodesFile))
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s: not a node count: %q", filepath.Join(data, nodesFile), b)
	}
	return n, nil
}

// freePort returns a loopback port nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// prepareNodes returns the n nodes of the cluster in data, writing their
// configs when the cluster is new: etcd ports are picked once and kept, as
// etcd members must keep their peer URLs.
func prepareNodes(data string, n int, manual bool) ([]upNode, error) {
	nodes := make([]upNode, n)
	for i := range nodes {
		id := uint32(i + 1)
		dir := data
		if id > 1 {
			dir = filepath.Join(data, nodesDir, strconv.Itoa(int(id)))
		}
		cfg := filepath.Join(dir, "fffd.toml")
		if id == 1 {
			cfg = filepath.Join(data, localConfig)
		}
		nodes[i] = upNode{id: id, dir: dir, cfg: cfg}
	}
	if made, err := clusterNodes(data); err != nil || made > 0 {
		return nodes, err
	}
	type urls struct{ client, peer string }
	us := make([]urls, n)
	var initial []string
	for i := range us {
		c, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		us[i] = urls{fmt.Sprintf("http://127.0.0.1:%d", c), fmt.Sprintf("http://127.0.0.1:%d", p)}
		initial = append(initial, fmt.Sprintf("n%d=%s", i+1, us[i].peer))
	}
	for i, nd := range nodes {
		if err := os.MkdirAll(nd.dir, 0o700); err != nil {
			return nil, err
		}
		cfg := fmt.Sprintf("# written by fff up --nodes %d\n[node]\nid = %d\n\n[kv]\nbackend = \"etcd\"\n\n"+
			"[etcd]\nname = \"n%d\"\nclient_url = %q\npeer_url = %q\ninitial_cluster = %q\n",
			n, nd.id, nd.id, us[i].client, us[i].peer, strings.Join(initial, ","))
		if manual {
			cfg += "\n" + manualChains
		}
		if err := fileutil.WriteAtomic(nd.cfg, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
	}
	return nodes, fileutil.WriteAtomic(filepath.Join(data, nodesFile), []byte(strconv.Itoa(n)+"\n"), 0o600)
}

// spawned is a started fffd.
type spawned struct {
	proc   *os.Process
	exited <-chan error
}

// spawnFFFD starts bin with args in its own session, its output appended to
// dir's log file.
func spawnFFFD(bin, dir string, args []string, session bool) (spawned, error) {
	os.Remove(filepath.Join(dir, readyFile)) // stale: its process is gone
	lf, err := os.OpenFile(filepath.Join(dir, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return spawned{}, err
	}
	defer lf.Close()
	c := exec.Command(bin, args...)
	c.Env = os.Environ()
	c.Stdout, c.Stderr = lf, lf
	if session {
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives this command
	} else {
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // we forward signals ourselves
	}
	if err := c.Start(); err != nil {
		return spawned{}, fmt.Errorf("cannot start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()
	return spawned{c.Process, exited}, nil
}

// recordedListen returns the address dir's node listened on before if it
// is free now, else a free loopback port.
func recordedListen(dir string) string {
	if b, err := os.ReadFile(filepath.Join(dir, addressFile)); err == nil {
		if a := strings.TrimSpace(string(b)); a != "" {
			if l, err := net.Listen("tcp", a); err == nil {
				l.Close()
				return a
			}
		}
	}
	return "127.0.0.1:0"
}

// runUpNodes is `fff up` for a cluster of full nodes: it starts every node
// that is not running (all at once: etcd members wait for a quorum), waits
// until each serves, places replicated chains, records node 1 as the
// cluster's address and, in the foreground, stops them all on Ctrl-C.
func runUpNodes(ctx context.Context, out io.Writer, o upOpts, data string) error {
	made, err := clusterNodes(data)
	if err != nil {
		return err
	}
	n := o.nodes
	switch {
	case made > 0 && n > 0 && n != made:
		return usageErrorf("--nodes %d: the cluster in %s was made with %d nodes (chosen when a cluster is made; add nodes as docs/operations.md says)", n, data, made)
	case made > 0:
		n = made
	case fileExists(filepath.Join(data, "meta.db")):
		return usageErrorf("--nodes %d: the cluster in %s keeps its metadata in one node's bbolt file; --nodes makes a new cluster over etcd", n, data)
	}
	if o.storageNodes > 0 || o.tls {
		return usageErrorf("--nodes does not combine with --storage-nodes or --tls yet")
	}
	if n < 1 {
		return usageErrorf("--nodes %d: want 1 or more", n)
	}
	replicas, err := upReplicas(data, o.replicas, n-1)
	if err != nil {
		return err
	}
	nodes, err := prepareNodes(data, n, replicas > 1)
	if err != nil {
		return err
	}
	bin, err := findFFFD(o.fffd)
	if err != nil {
		return err
	}
	if err := cloexecInherited(); err != nil {
		return err
	}
	type running struct {
		nd upNode
		sp spawned
	}
	var started []running
	stopAll := func() {
		for _, r := range started {
			r.sp.proc.Signal(syscall.SIGTERM)
		}
	}
	for _, nd := range nodes {
		if _, ok := runningCluster(nd.dir); ok {
			continue
		}
		listen := recordedListen(nd.dir)
		if nd.id == 1 {
			if listen, err = upAddress(ctx, data, o); err != nil {
				stopAll()
				return err
			}
		}
		sp, err := spawnFFFD(bin, nd.dir, []string{"local", "--config", nd.cfg, "--data", nd.dir, "--listen", listen}, o.daemon)
		if err != nil {
			stopAll()
			return err
		}
		started = append(started, running{nd, sp})
	}
	for _, r := range started {
		ri, err := waitReady(ctx, r.nd.dir, r.sp.proc.Pid, r.sp.exited, o.timeout)
		if err == nil {
			err = fileutil.WriteAtomic(filepath.Join(r.nd.dir, addressFile), []byte(ri.Address+"\n"), 0o600)
		}
		if err != nil {
			stopAll()
			return fmt.Errorf("node %d: %w (see %s)", r.nd.id, err, filepath.Join(r.nd.dir, logFile))
		}
	}
	ri, ok := runningCluster(data)
	if !ok {
		stopAll()
		return fmt.Errorf("node 1 is not running")
	}
	if replicas > 1 {
		if err := placeChains(ctx, out, data, ri.Address, replicas); err != nil {
			stopAll()
			return err
		}
	}
	info, def, err := recordCluster(data, ri, o.asDefault)
	if err != nil {
		stopAll()
		return err
	}
	for _, nd := range nodes[1:] {
		if r, ok := runningCluster(nd.dir); ok {
			fmt.Fprintf(out, "node %d: %s (pid %d, %s)\n", nd.id, r.Address, r.PID, nd.dir)
		}
	}
	printCluster(out, info, def)
	if len(started) == 0 {
		fmt.Fprintf(out, "fff is already up (%d nodes)\n", n)
		return nil
	}
	if o.daemon {
		fmt.Fprintf(out, "running in the background (%d nodes); stop them with: fff down --data %s\n", n, data)
		for _, r := range started {
			r.sp.proc.Release()
		}
		return nil
	}
	fmt.Fprintln(out, "running in the foreground; Ctrl-C stops every node")
	<-ctx.Done()
	stopAll()
	for _, r := range started {
		select {
		case <-r.sp.exited:
		case <-time.After(30 * time.Second):
			r.sp.proc.Kill()
			<-r.sp.exited
		}
	}
	return nil
}
