package main

import (
	"context"
	"encoding/json"
	"errors"
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

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"fff/internal/certs"
	"fff/internal/fileutil"
	"fff/libfff"
)

// The files `fffd local` keeps in its data directory, shared with `fff up`.
const (
	readyFile   = "fffd.json"   // written by fffd once it serves: pid and address
	tokenFile   = "admin.token" // the admin token, written when the cluster is created
	logFile     = "fffd.log"    // fffd's output when started with --daemon
	addressFile = "address"     // the address the cluster serves on, kept across restarts
)

// readyInfo is the content of readyFile.
type readyInfo struct {
	PID     int    `json:"pid"`
	Address string `json:"address"`
	Version string `json:"version"`
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "fff")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".fff"
	}
	return filepath.Join(home, ".local", "share", "fff")
}

type upOpts struct {
	data, listen, fffd string
	listenSet          bool // --listen given: it replaces the recorded address
	daemon, asDefault  bool
	tls, tlsSet        bool      // --tls, and whether it was given (up_tls.go)
	warn               io.Writer // warnings (stderr)
	timeout            time.Duration
	storageNodes       int // --storage-nodes (up_nodes.go)
	nodes              int // --nodes (up_cluster.go)
	replicas           int // --replicas (up_replicas.go)
}

func newUpCmd() *cobra.Command {
	var o upOpts
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a single-node cluster (every role in one fffd process)",
		Long: `Start a local single-node fff cluster: 'fffd local' with every role in one
process, the embedded KV and its targets under the data directory, listening on
loopback. Prints the address and the admin token and records them in
~/.config/fff/cluster.json, where the CLI and Python find them (FFF_CLUSTER and
FFF_TOKEN override). Runs in the foreground until interrupted, or in the
background with --daemon ('fff down' stops it). Running 'fff up' again for a
data directory whose cluster is already up just prints its details.

The first start picks a free loopback port and records it in DATA/address;
every later start of the same data directory listens there again, so mounts,
loaders and clients that were connected ride through 'fff down; fff up'.
--listen chooses another address (and records it).

--tls makes a CA and a node certificate in DATA/tls (kept and reused by
later starts, which keep TLS on) and serves TCP under TLS; the cluster file
records the CA, which clients then pin (FFF_CA names it for FFF_CLUSTER
users). Without TLS, a cluster listening beyond loopback gets a warning:
file data and requests would cross the network in clear.

--storage-nodes N also runs N storage nodes as separate 'fffd storage'
processes, each in DATA/nodes/ID (ids 2, 3, ...) with one target, joined to this
node: a multi-node cluster on one machine, the same binaries and configs as on
several machines. Later starts run the nodes made before; 'fff down' stops
them all. --replicas R keeps each chunk on R of these nodes (chain
replication, docs/replication.md): the targets join chains of R targets on
distinct nodes once all nodes are up. R is chosen when the cluster is made.

--nodes N runs N full nodes instead, each 'fffd local' with an embedded etcd
member (DATA for node 1, DATA/nodes/ID for the others): the metadata lives in
the etcd cluster they form and survives the loss of a minority of them, and one
mgmtd is the elected leader. With --replicas R (R <= N) chunks are kept on R
of them. N is chosen when the cluster is made.

The cluster of the default data directory is the default cluster. A cluster
started with another --data becomes the default only when none is recorded
(or the recorded one's data directory is gone), or with --default; otherwise
'fff up' prints the FFF_CLUSTER and FFF_TOKEN to reach it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.listenSet = cmd.Flags().Changed("listen")
			o.tlsSet = cmd.Flags().Changed("tls")
			o.warn = cmd.ErrOrStderr()
			return runUp(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", defaultDataDir(), "data directory")
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "listen address (port 0 picks a free port; default: the address recorded in DATA/address, else a free loopback port)")
	f.BoolVar(&o.asDefault, "default", false, "record this cluster as the default one even if another is recorded")
	f.BoolVar(&o.daemon, "daemon", false, "run in the background (output goes to DATA/fffd.log)")
	f.BoolVar(&o.tls, "tls", false, "serve TCP under TLS with a CA and node certificate made in DATA/tls (kept on by later starts)")
	f.StringVar(&o.fffd, "fffd", "", "fffd binary (default: next to this fff, else on PATH)")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for the cluster to come up")
	f.IntVar(&o.storageNodes, "storage-nodes", 0, "also run N storage nodes as separate fffd processes (DATA/nodes/2, …) joined to this one; later starts run those made before too")
	f.IntVar(&o.replicas, "replicas", 0, "copies of each chunk, on distinct nodes (chains of R targets; needs --storage-nodes R-1 or more, or --nodes R or more; chosen when the cluster is made)")
	f.IntVar(&o.nodes, "nodes", 0, "run N full nodes (DATA, DATA/nodes/2, …), each an fffd with an embedded etcd member, mgmtd, meta and storage: metadata replicated over etcd, an elected mgmtd leader (chosen when the cluster is made)")
	return cmd
}

func runUp(ctx context.Context, out io.Writer, o upOpts) error {
	data, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("cannot create the data directory: %w", err)
	}
	useTLS, err := upTLS(data, o)
	if err != nil {
		return err
	}
	if o.storageNodes < 0 {
		return usageErrorf("--storage-nodes %d: want 0 or more", o.storageNodes)
	}
	if made, err := clusterNodes(data); err != nil {
		return err
	} else if made > 0 || o.nodes != 0 {
		return runUpNodes(ctx, out, o, data)
	}
	made, err := storageNodes(data)
	if err != nil {
		return err
	}
	withNodes := o.storageNodes > 0 || len(made) > 0
	replicas, err := upReplicas(data, o.replicas, max(o.storageNodes, len(made)))
	if err != nil {
		return err
	}
	if ri, ok := runningCluster(data); ok {
		if useTLS && !clusterUsesTLS(data) {
			return fmt.Errorf("the cluster in %s is up without TLS (pid %d): stop it with 'fff down --data %s', then run 'fff up --tls'", data, ri.PID, data)
		}
		info, def, err := recordCluster(data, ri, o.asDefault)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "fff is already up (pid %d)\n", ri.PID)
		if withNodes {
			bin, err := findFFFD(o.fffd)
			if err != nil {
				return err
			}
			started, err := upStorageNodes(ctx, bin, data, ri.Address, o.storageNodes, replicas > 1, o.timeout)
			if err != nil {
				return err
			}
			for _, p := range started {
				p.Release()
			}
			printStorageNodes(out, data)
			if replicas > 1 {
				if err := placeChains(ctx, out, data, ri.Address, replicas); err != nil {
					return err
				}
			}
		}
		printCluster(out, info, def)
		return nil
	}
	bin, err := findFFFD(o.fffd)
	if err != nil {
		return err
	}
	listen, err := upAddress(ctx, data, o)
	if err != nil {
		return err
	}
	os.Remove(filepath.Join(data, readyFile)) // stale: its process is gone
	if err := cloexecInherited(); err != nil {
		return err
	}
	args := []string{"local", "--data", data, "--listen", listen}
	if useTLS {
		cfg, err := prepareTLS(data, listen)
		if err != nil {
			return err
		}
		args = append(args, "--config", cfg)
	} else if p := filepath.Join(data, localConfig); fileExists(p) {
		args = append(args, "--config", p)
	}
	if !useTLS && !loopbackListen(listen) && o.warn != nil {
		fmt.Fprintf(o.warn, "warning: %s is reachable from other hosts without TLS: file data and requests cross the network in clear, and a connection can be taken over after its handshake; use 'fff up --tls'\n", listen)
	}
	c := exec.Command(bin, args...)
	c.Env = os.Environ()
	if o.daemon {
		lf, err := os.OpenFile(filepath.Join(data, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		defer lf.Close()
		c.Stdout, c.Stderr = lf, lf
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // survives this shell
	} else {
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // we forward signals ourselves
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()

	ri, err := waitReady(ctx, data, c.Process.Pid, exited, o.timeout)
	if err != nil {
		c.Process.Signal(syscall.SIGTERM)
		if o.daemon {
			err = fmt.Errorf("%w (see %s)", err, filepath.Join(data, logFile))
		}
		return err
	}
	if err := fileutil.WriteAtomic(filepath.Join(data, addressFile), []byte(ri.Address+"\n"), 0o600); err != nil {
		c.Process.Signal(syscall.SIGTERM)
		return fmt.Errorf("cannot record the cluster's address: %w", err)
	}
	var nodes []*os.Process
	if withNodes {
		if nodes, err = upStorageNodes(ctx, bin, data, ri.Address, o.storageNodes, replicas > 1, o.timeout); err != nil {
			c.Process.Signal(syscall.SIGTERM)
			return err
		}
		printStorageNodes(out, data)
		if replicas > 1 {
			if err := placeChains(ctx, out, data, ri.Address, replicas); err != nil {
				for _, p := range nodes {
					p.Signal(syscall.SIGTERM)
				}
				c.Process.Signal(syscall.SIGTERM)
				return err
			}
		}
	}
	stopNodes := func() {
		for _, p := range nodes {
			p.Signal(syscall.SIGTERM)
		}
	}
	info, def, err := recordCluster(data, ri, o.asDefault)
	if err != nil {
		stopNodes()
		c.Process.Signal(syscall.SIGTERM)
		return err
	}
	printCluster(out, info, def)
	if o.daemon {
		fmt.Fprintf(out, "running in the background (pid %d); stop it with: fff down --data %s\n", ri.PID, data)
		c.Process.Release()
		for _, p := range nodes {
			p.Release()
		}
		return nil
	}
	fmt.Fprintln(out, "running in the foreground; Ctrl-C stops it")
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("fffd exited: %w", err)
		}
		return nil
	case <-ctx.Done():
		stopNodes()
		c.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			c.Process.Kill()
			<-exited
		}
		return nil
	}
}

// waitReady waits until fffd (pid) has written its ready file.
func waitReady(ctx context.Context, data string, pid int, exited <-chan error, timeout time.Duration) (readyInfo, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ri, err := readReady(data); err == nil && ri.PID == pid {
			return ri, nil
		}
		select {
		case err := <-exited:
			return readyInfo{}, fmt.Errorf("fffd exited before it was ready: %v", err)
		case <-deadline.C:
			return readyInfo{}, fmt.Errorf("fffd did not come up within %s", timeout)
		case <-ctx.Done():
			return readyInfo{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func readReady(data string) (readyInfo, error) {
	var ri readyInfo
	b, err := os.ReadFile(filepath.Join(data, readyFile))
	if err != nil {
		return ri, err
	}
	return ri, json.Unmarshal(b, &ri)
}

// runningCluster reports the fffd serving data, if its process is alive.
func runningCluster(data string) (readyInfo, bool) {
	ri, err := readReady(data)
	if err != nil || ri.PID <= 0 {
		return ri, false
	}
	return ri, alive(ri.PID)
}

// alive reports whether pid runs (a zombie, exited but not yet reaped by a
// parent that may never reap it, does not count).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may hold spaces.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// upAddress is where fffd listens: --listen when given, else the address
// this data directory's cluster served on before (so that clients of the
// previous run reconnect to it), else a free loopback port. A recorded
// address still held by another process (a previous fffd that is still
// exiting lets it go within moments) is waited for briefly, then refused
// with the way out.
func upAddress(ctx context.Context, data string, o upOpts) (string, error) {
	if o.listenSet {
		return o.listen, nil
	}
	b, err := os.ReadFile(filepath.Join(data, addressFile))
	addr := strings.TrimSpace(string(b))
	if err != nil || addr == "" {
		return o.listen, nil
	}
	const wait = 10 * time.Second
	deadline := time.Now().Add(wait)
	for {
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			return addr, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return "", fmt.Errorf("cannot listen on %s, this cluster's address (recorded in %s): %w; start it elsewhere with --listen 127.0.0.1:0", addr, filepath.Join(data, addressFile), err)
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s, this cluster's address (recorded in %s), is used by another process; stop that process, or start the cluster on a new address with --listen 127.0.0.1:0 (clients and mounts of the old address must then reconnect)", addr, filepath.Join(data, addressFile))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// recordCluster records the cluster at data as the default cluster when it
// is the default data directory's, when asked (asDefault), or when no other
// cluster is recorded (or the recorded one's data directory is gone): a
// second cluster started for a test or an experiment does not silently take
// the place of the user's cluster. It reports whether the record now names
// this cluster.
func recordCluster(data string, ri readyInfo, asDefault bool) (libfff.ClusterInfo, bool, error) {
	tok, err := os.ReadFile(filepath.Join(data, tokenFile))
	if err != nil {
		return libfff.ClusterInfo{}, false, fmt.Errorf("cannot read the admin token: %w", err)
	}
	ca, err := readCA(data)
	if err != nil {
		return libfff.ClusterInfo{}, false, err
	}
	info := libfff.ClusterInfo{Address: ri.Address, Token: strings.TrimSpace(string(tok)), DataDir: data, PID: ri.PID, CA: ca}
	if !asDefault && data != absOrSelf(defaultDataDir()) {
		if cur, err := libfff.RecordedCluster(); err == nil && cur.DataDir != "" && cur.DataDir != data {
			if _, err := os.Stat(cur.DataDir); err == nil {
				return info, false, nil
			}
		}
	}
	return info, true, libfff.SaveClusterFile(info)
}

func absOrSelf(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func printCluster(out io.Writer, info libfff.ClusterInfo, recorded bool) {
	fmt.Fprintf(out, "address:     %s\nadmin token: %s\ndata:        %s\n", info.Address, info.Token, info.DataDir)
	ca := filepath.Join(info.DataDir, tlsDir, certs.CAFile)
	if info.CA != "" {
		fmt.Fprintf(out, "tls:         on (CA %s)\n", ca)
	}
	if recorded {
		cf, _ := libfff.ClusterFile()
		fmt.Fprintf(out, "recorded in: %s (the default cluster)\n", cf)
		return
	}
	fmt.Fprintf(out, "not the default cluster (another one is recorded; --default makes this one it); reach it with:\n  export %s=%s %s=%s", libfff.EnvCluster, info.Address, libfff.EnvToken, info.Token)
	if info.CA != "" {
		fmt.Fprintf(out, " %s=%s", libfff.EnvCA, ca)
	}
	fmt.Fprintln(out)
}

// cloexecInherited marks close-on-exec every descriptor above stderr that
// this process inherited without it (a caller's `exec 9>lock; flock 9`), so
// that the daemons it starts do not hold them: a lock held by the caller
// would stay held for the daemon's whole life. Go opens its own descriptors
// close-on-exec, and exec.Cmd's ExtraFiles are passed on regardless.
func cloexecInherited() error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("listing inherited descriptors: %w", err)
	}
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue // closed since (the listing's own descriptor), or already
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags|unix.FD_CLOEXEC); err != nil {
			return fmt.Errorf("descriptor %d: %w", fd, err)
		}
	}
	return nil
}

// findFFFD locates the server binary: the flag, next to this executable, or PATH.
func findFFFD(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "fffd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("fffd")
	if err != nil {
		return "", errors.New("fffd not found next to fff or on PATH: run 'make build' (it builds bin/fff and bin/fffd) or pass --fffd")
	}
	return p, nil
}

func newDownCmd() *cobra.Command {
	var data string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the local cluster started by 'fff up'",
		Long: `Stop the local cluster started by 'fff up' (SIGTERM, then SIGKILL after
--timeout). Its data and its record as the default cluster stay: 'fff up'
starts it again at the same address, and clients and mounts that wait for it
carry on. Remove the data directory to delete the cluster.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			pids, err := downStorageNodes(cmd.Context(), abs, timeout)
			if len(pids) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "stopped %d storage node(s) (pids %v)\n", len(pids), pids)
			}
			if err != nil {
				return err
			}
			ri, ok := runningCluster(abs)
			if !ok {
				fmt.Fprintf(cmd.OutOrStdout(), "no cluster is running from %s\n", abs)
				return nil
			}
			if err := stopProcess(cmd.Context(), ri.PID, timeout); err != nil {
				return err
			}
			// The cluster file stays: 'fff up' brings the cluster back at
			// the same address, and clients waiting for it reconnect.
			fmt.Fprintf(cmd.OutOrStdout(), "stopped fffd (pid %d); 'fff up --data %s' starts it again at %s\n", ri.PID, abs, ri.Address)
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", defaultDataDir(), "data directory of the cluster")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for a clean stop before killing")
	return cmd
}

// stopProcess sends SIGTERM and waits for pid to exit, then SIGKILL.
func stopProcess(ctx context.Context, pid int, timeout time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("cannot signal fffd (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("fffd (pid %d) did not stop within %s and was killed", pid, timeout)
}
