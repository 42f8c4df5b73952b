package main

// The replication suite: chain replication (docs/replication.md) on one
// machine, in one run. Two clusters made by `fff up` on the disk under test,
// each a control node (`fffd local`) and two `fffd storage` processes:
// replication 1 (`--storage-nodes 2`: every target its own chain) and
// replication 3 (`--storage-nodes 2 --replicas 3`: a chain of three targets
// on the three nodes).
//
//   - sequential write and cold read of a -repl-size file through libfff (as
//     the data suite: -data-write-size writes, Close included; -data-readers
//     x -data-read-size ReadAt, with local reads and through the nodes'
//     sockets), the two clusters alternating over -rounds rounds (medians).
//     Every copy shares the same cores and disk, so replication 3's write
//     rate is compared with a third of replication 1's (the rate per copy).
//   - write latency: -repl-small-writes 4 KiB and -repl-large-writes 1 MiB
//     WriteAt calls per round, one at a time, each timed until the chain
//     acknowledged it (a zero-length read of the File waits for its
//     writes): overwrites at random aligned offsets of an existing file
//     (copy-on-write of the whole chunk in the chunk engine) and appends to a
//     new file (in place); and 4 KiB appends with File.Sync (which adds
//     meta's length report: pwrite + fsync).
//   - the write stall after a kill -9: the replication-3 cluster restarted
//     with [mgmtd] heartbeat_timeout = -repl-heartbeat; a writer appending 4
//     KiB at a time, each write acknowledged before the next, while storage
//     node 3 is killed (-9); the longest gap between two completed writes,
//     next to the timeout.
//   - resync: with node 3 down, -repl-size of new data is written; node 3 is
//     started again (`fff up`) and the time until every target serves is
//     taken, with the bytes and duration of the resync from the sending
//     node's log ("resync done"); against fio sequential write (the data
//     suite's) of as much data on the same disk. Then the three replicas'
//     chunk files are compared.
//
// Targets (issue 15): reads of replication 3 ≥ 0.9 of replication 1; writes
// of replication 3 ≥ 0.8 of a third of replication 1's; resync ≥ 0.5 of fio
// sequential write.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"fff/internal/uring"
	"fff/libfff"
)

type replConfig struct {
	size        string
	smallWrites int
	largeWrites int
	heartbeat   time.Duration
	fff         string
}

var replCfg replConfig

func init() {
	flag.StringVar(&replCfg.size, "repl-size", "", "replication suite: size of the sequential file and of the data written while a node is down (default: 512MiB, or -file-size if smaller)")
	flag.IntVar(&replCfg.smallWrites, "repl-small-writes", 1000, "replication suite: 4 KiB writes per latency measurement and round")
	flag.IntVar(&replCfg.largeWrites, "repl-large-writes", 100, "replication suite: 1 MiB writes per latency measurement and round")
	flag.DurationVar(&replCfg.heartbeat, "repl-heartbeat", 2*time.Second, "replication suite: mgmtd heartbeat timeout of the kill -9 and resync measurements")
	flag.StringVar(&replCfg.fff, "fff", "", "fff CLI for the replication suite (default: next to this binary, else bin/fff, else PATH); fff up finds fffd next to it unless -fffd is given")
}

const (
	replReadTarget  = 0.90 // replication 3 reads of replication 1's
	replWriteTarget = 0.80 // replication 3 writes of a third of replication 1's
	replSyncTarget  = 0.50 // resync rate of fio sequential write
	replKilledNode  = 3    // the storage node killed (DATA/nodes/3)
)

// replCluster is a cluster made by `fff up --daemon` for the suite.
type replCluster struct {
	name     string // "replication 1", "replication 3"
	replicas int
	root     string // the suite's directory of this cluster
	data     string // fff up --data
	env      []string
	addr     string
	token    string
	chained  []replTarget   // the targets in chains, when last seen all serving
	c        *libfff.Client // local reads on (the default)
	sock     *libfff.Client // local reads off: through the nodes' sockets
}

var (
	replMu       sync.Mutex
	replClusters []*replCluster // to stop on a signal
)

func runReplicationSuite(ctx context.Context, cfg config) error {
	size := min(int64(512<<20), cfg.fileSize)
	if replCfg.size != "" {
		v, err := parseSize(replCfg.size)
		if err != nil {
			return err
		}
		size = v
	}
	size = size / dataFioSeqBS * dataFioSeqBS
	wsize, err := parseSize(dataCfg.writeSize)
	if err != nil {
		return err
	}
	rsize, err := parseSize(dataCfg.readSize)
	if err != nil {
		return err
	}
	if size == 0 || wsize <= 0 || rsize <= 0 || dataCfg.readers <= 0 || replCfg.smallWrites <= 0 || replCfg.largeWrites <= 0 {
		return errors.New("replication: -repl-size must be at least 4 MiB, sizes, readers and write counts positive")
	}
	fffBin, err := findFFF()
	if err != nil {
		return err
	}
	root, err := benchRoot(cfg)
	if err != nil {
		return err
	}

	defer stopOnInterrupt("the replication clusters", func() {
		replMu.Lock()
		for _, rc := range replClusters {
			rc.stop(fffBin, cfg.keep)
		}
	})()

	var clusters []*replCluster
	for _, r := range []int{1, 3} {
		rc, err := startReplCluster(ctx, cfg, fffBin, root, r)
		if err != nil {
			return err
		}
		defer rc.stop(fffBin, cfg.keep)
		clusters = append(clusters, rc)
	}
	r1, r3 := clusters[0], clusters[1]

	fmt.Printf("\n## Replication: 3 copies against 1 on one machine\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; clusters made by `fff up --daemon --storage-nodes 2` (replication 1: %s) and `fff up --daemon --storage-nodes 2 --replicas 3` (replication 3: %s), each a control node (fffd local) and two fffd storage processes; every process, client included, shares the machine's CPUs and one disk; %d rounds, the clusters alternating (medians)\n\n",
		hostInfo(), runtime.NumCPU(), root, replChains(r1.chained), replChains(r3.chained), cfg.rounds)

	r1Write, err := replThroughput(ctx, cfg, r1, r3, size, wsize, rsize)
	if err != nil {
		return err
	}
	if err := replLatency(ctx, cfg, r1, r3); err != nil {
		return err
	}
	// The failure measurements need only the replicated cluster.
	r1.stop(fffBin, cfg.keep)
	return replFailure(ctx, cfg, fffBin, r3, size, wsize, r1Write)
}

// replChains describes the chains of the chained targets ts.
func replChains(ts []replTarget) string {
	chains := map[uint32][]uint32{}
	for _, t := range ts {
		chains[t.ChainID] = append(chains[t.ChainID], t.Node)
	}
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(chains)) {
		nodes := chains[id]
		slices.Sort(nodes)
		parts = append(parts, fmt.Sprintf("chain %d on nodes %v", id, nodes))
	}
	return strings.Join(parts, ", ")
}

// findFFF returns the fff CLI to run: the flag; fff next to this binary;
// bin/fff; PATH.
func findFFF() (string, error) {
	if replCfg.fff != "" {
		return replCfg.fff, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "fff")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	if st, err := os.Stat("bin/fff"); err == nil && st.Mode().IsRegular() {
		return filepath.Abs("bin/fff")
	}
	if p, err := exec.LookPath("fff"); err == nil {
		return p, nil
	}
	return "", errors.New("fff not found: run `make build` or pass -fff")
}

// startReplCluster makes a cluster of a control node and two storage nodes
// with replicas copies in a new directory under root, waits until its
// chained targets serve and connects two clients.
func startReplCluster(ctx context.Context, cfg config, fffBin, root string, replicas int) (*replCluster, error) {
	dir, err := os.MkdirTemp(root, fmt.Sprintf("fff-bench-replication-r%d-", replicas))
	if err == nil {
		// fff up runs the nodes with absolute paths (replOwnProcess
		// compares them).
		dir, err = filepath.Abs(dir)
	}
	if err != nil {
		return nil, err
	}
	rc := &replCluster{name: fmt.Sprintf("replication %d", replicas), replicas: replicas, root: dir, data: filepath.Join(dir, "data")}
	// Its own config directory: the cluster file `fff up` writes goes
	// there, not over the user's, and names this cluster.
	home := filepath.Join(dir, "config")
	env, err := isolatedEnv(home)
	if err != nil {
		return nil, err
	}
	rc.env = env
	replMu.Lock()
	replClusters = append(replClusters, rc)
	replMu.Unlock()
	args := []string{"up", "--daemon", "--data", rc.data, "--storage-nodes", "2"}
	if replicas > 1 {
		args = append(args, "--replicas", strconv.Itoa(replicas))
	}
	out, err := rc.fff(ctx, fffBin, 2*time.Minute, args...)
	if err != nil {
		rc.stop(fffBin, cfg.keep)
		return nil, err
	}
	if replicas > 1 && !strings.Contains(out, "chain table 1") {
		rc.stop(fffBin, cfg.keep)
		return nil, fmt.Errorf("replication: fff up --replicas %d made no chains:\n%s", replicas, out)
	}
	if err := rc.connect(ctx, fffBin); err != nil {
		rc.stop(fffBin, cfg.keep)
		return nil, err
	}
	return rc, nil
}

// connect waits until the chained targets serve and (re)connects the
// clients.
func (rc *replCluster) connect(ctx context.Context, fffBin string) error {
	rc.closeClients()
	chained, _, err := rc.waitServing(ctx, fffBin, 5*time.Minute)
	if err != nil {
		return err
	}
	rc.chained = chained
	if rc.addr, rc.token, err = rc.credentials(); err != nil {
		return err
	}
	o := libfff.Options{Address: rc.addr, Token: rc.token, PoolSize: dataCfg.pool}
	if rc.c, err = libfff.Connect(ctx, o); err != nil {
		return err
	}
	o.NoLocalRead = true
	if rc.sock, err = libfff.Connect(ctx, o); err != nil {
		rc.closeClients()
		return err
	}
	return rc.c.MkdirAll(ctx, "/bench", 0o755)
}

// credentials are the address node 1 serves on (its fffd.json) and the
// cluster's admin token.
func (rc *replCluster) credentials() (addr, token string, err error) {
	var ri struct {
		Address string `json:"address"`
	}
	p := filepath.Join(rc.data, "fffd.json")
	b, err := os.ReadFile(p)
	if err == nil {
		err = json.Unmarshal(b, &ri)
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", p, err)
	}
	tok, err := os.ReadFile(filepath.Join(rc.data, "admin.token"))
	if err != nil {
		return "", "", err
	}
	return ri.Address, strings.TrimSpace(string(tok)), nil
}

func (rc *replCluster) closeClients() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
	if rc.sock != nil {
		rc.sock.Close()
		rc.sock = nil
	}
}

// fff runs the CLI against this cluster and returns its standard output.
func (rc *replCluster) fff(ctx context.Context, fffBin string, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if metaCfg.fffd != "" && len(args) > 0 && args[0] == "up" {
		args = append(args, "--fffd", metaCfg.fffd)
	}
	cmd := exec.CommandContext(ctx, fffBin, args...)
	cmd.Env = rc.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: fff %s: %v\n%s%s", rc.name, strings.Join(args, " "), err, out.Bytes(), errb.Bytes())
	}
	return out.String(), nil
}

// stop stops the cluster (fff down), kills what is left of its processes
// and, unless keep, removes its directory. It may be called again.
func (rc *replCluster) stop(fffBin string, keep bool) {
	if rc.root == "" {
		return
	}
	rc.closeClients()
	if _, err := os.Stat(rc.data); err == nil {
		if _, err := rc.fff(context.Background(), fffBin, 90*time.Second, "down", "--data", rc.data); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
		replKillLeftovers(rc.data)
	}
	if !keep {
		os.RemoveAll(rc.root)
	}
	rc.root = ""
}

// stopOnInterrupt runs stop and exits on SIGINT or SIGTERM until the
// returned release is called: the fffd processes of `fff up --daemon` run
// in their own sessions, so an interrupted benchmark stops them itself (fff
// down, then kill -9 of what is left).
func stopOnInterrupt(what string, stop func()) (release func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(os.Stderr, "bench: %v: stopping %s\n", s, what)
			stop()
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

// replPIDs returns the pids recorded in the ready files of the control
// node and the storage nodes of data, by node directory.
func replPIDs(data string) map[string]int {
	files, _ := filepath.Glob(filepath.Join(data, "nodes", "*", "fffd.json"))
	out := map[string]int{}
	for _, f := range append(files, filepath.Join(data, "fffd.json")) {
		var ri struct {
			PID int `json:"pid"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID > 0 {
			out[filepath.Dir(f)] = ri.PID
		}
	}
	return out
}

// replOwnProcess reports whether pid is alive and an fffd of node directory
// dir (its command line names dir), not a process that reused the pid.
func replOwnProcess(pid int, dir string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		if i := bytes.LastIndexByte(st, ')'); i >= 0 && i+2 < len(st) && st[i+2] == 'Z' {
			return false
		}
	}
	for _, a := range bytes.Split(b, []byte{0}) {
		if string(a) == dir {
			return true
		}
	}
	return false
}

// replKillLeftovers kills (-9) the fffd processes of data that are still
// running.
func replKillLeftovers(data string) {
	for dir, pid := range replPIDs(data) {
		if replOwnProcess(pid, dir) {
			fmt.Fprintf(os.Stderr, "bench: killing leftover fffd %d of %s\n", pid, dir)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// replTarget is a target as `fff admin targets --json` lists it.
type replTarget struct {
	ID      uint32 `json:"id"`
	Node    uint32 `json:"node_id"`
	Path    string `json:"path"`
	ChainID uint32 `json:"chain_id"`
	State   string `json:"state"`
}

func (rc *replCluster) targets(ctx context.Context, fffBin string) ([]replTarget, error) {
	out, err := rc.fff(ctx, fffBin, 30*time.Second, "admin", "targets", "--json")
	if err != nil {
		return nil, err
	}
	var ts []replTarget
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		return nil, fmt.Errorf("replication: fff admin targets --json: %v\n%s", err, out)
	}
	return ts, nil
}

// waitServing polls the targets until every target in a chain serves and
// returns those targets and the time it took.
func (rc *replCluster) waitServing(ctx context.Context, fffBin string, limit time.Duration) ([]replTarget, time.Duration, error) {
	t0 := time.Now()
	var last []replTarget
	for {
		ts, err := rc.targets(ctx, fffBin)
		if err == nil {
			var chained []replTarget
			all := true
			for _, t := range ts {
				if t.ChainID != 0 {
					chained = append(chained, t)
					all = all && t.State == "serving"
				}
			}
			if all && len(chained) > 0 {
				return chained, time.Since(t0), nil
			}
			last = chained
		}
		if time.Since(t0) > limit {
			return nil, 0, fmt.Errorf("replication: %s: targets not all serving after %s: %+v (%v)", rc.name, limit, last, err)
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// replThroughput writes and reads a size file on both clusters, the
// clusters alternating over the rounds, prints the throughput table and
// returns replication 1's median write rate.
func replThroughput(ctx context.Context, cfg config, r1, r3 *replCluster, size, wsize, rsize int64) (float64, error) {
	sides := []*replCluster{r1, r3}
	w := make([][]float64, 2)
	rl := make([][]float64, 2)
	rs := make([][]float64, 2)
	for round := range cfg.rounds {
		name := fmt.Sprintf("/bench/seq-%d", round)
		for k := range sides {
			i := (round + k) % 2
			dropCaches(cfg)
			v, err := dataSeqWrite(ctx, sides[i].c, name, size, wsize)
			if err != nil {
				return 0, fmt.Errorf("replication: %s: write: %w", sides[i].name, err)
			}
			w[i] = append(w[i], v)
		}
		for k := range 4 {
			i, sock := (round+k)%2, (round+k)/2%2 == 1
			dropCaches(cfg)
			c, dst := sides[i].c, &rl[i]
			if sock {
				c, dst = sides[i].sock, &rs[i]
			}
			v, err := dataSeqRead(ctx, c, name, size, rsize, dataCfg.readers)
			if err != nil {
				return 0, fmt.Errorf("replication: %s: read: %w", sides[i].name, err)
			}
			*dst = append(*dst, v)
		}
		for _, s := range sides {
			if err := s.c.Remove(ctx, name); err != nil {
				return 0, err
			}
		}
	}
	fmt.Printf("Sequential, %s file: %s writes (time includes Close), then, page cache dropped, %d readers x %s ReadAt, reading the nodes' chunk files directly (local reads, docs/wire.md) or through the nodes' sockets\n\n",
		formatSize(size), formatSize(wsize), dataCfg.readers, formatSize(rsize))
	fmt.Println("| workload | replication 1 MiB/s | replication 3 MiB/s | r3 / r1 | compared | target | r1 range | r3 range |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	m1, m3 := medianF(w[0]), medianF(w[1])
	r1Write := m1
	perCopy := m3 / (m1 / 3)
	fmt.Printf("| sequential write | %.0f | %.0f | %.2f | r3 / (r1 / 3) = %.2f (chunk data written: r1 %.0f, r3 3 x %.0f = %.0f MiB/s) | ≥ %.2f %s | %s | %s |\n",
		m1, m3, m3/m1, perCopy, m1, m3, 3*m3, replWriteTarget, verdict(perCopy >= replWriteTarget), spreadF(w[0]), spreadF(w[1]))
	m1, m3 = medianF(rl[0]), medianF(rl[1])
	fmt.Printf("| sequential read, cold, local reads | %.0f | %.0f | %s | r3 / r1 | ≥ %.2f %s | %s | %s |\n",
		m1, m3, fmtRatio(m3/m1, replReadTarget), replReadTarget, verdict(m3/m1 >= replReadTarget), spreadF(rl[0]), spreadF(rl[1]))
	m1, m3 = medianF(rs[0]), medianF(rs[1])
	fmt.Printf("| sequential read, cold, through the nodes' sockets | %.0f | %.0f | %s | r3 / r1 | ≥ %.2f %s | %s | %s |\n",
		m1, m3, fmtRatio(m3/m1, replReadTarget), replReadTarget, verdict(m3/m1 >= replReadTarget), spreadF(rs[0]), spreadF(rs[1]))
	return r1Write, nil
}

// replLatency times single writes, one at a time, on both clusters and
// prints the latency table.
func replLatency(ctx context.Context, cfg config, r1, r3 *replCluster) error {
	const fileSize = 64 << 20
	type kind struct {
		name   string
		bs     int64
		n      int
		append bool // at the end of a new file, else over an existing one
		sync   bool
	}
	kinds := []kind{
		{"4 KiB overwrite", 4 << 10, replCfg.smallWrites, false, false},
		{"1 MiB overwrite", 1 << 20, replCfg.largeWrites, false, false},
		{"4 KiB append", 4 << 10, replCfg.smallWrites, true, false},
		{"1 MiB append", 1 << 20, replCfg.largeWrites, true, false},
		{"4 KiB append + Sync", 4 << 10, replCfg.smallWrites, true, true},
	}
	sides := []*replCluster{r1, r3}
	for _, s := range sides {
		if _, err := dataSeqWrite(ctx, s.c, "/bench/lat", fileSize, 4<<20); err != nil {
			return fmt.Errorf("replication: %s: %w", s.name, err)
		}
	}
	lats := make([][][]time.Duration, len(kinds))
	for k := range kinds {
		lats[k] = make([][]time.Duration, 2)
	}
	for round := range cfg.rounds {
		for k, kd := range kinds {
			for j := range sides {
				i := (round + j) % 2
				c := sides[i].c
				name := "/bench/lat"
				if kd.append {
					name = "/bench/append"
					f, err := c.Create(ctx, name)
					if err == nil {
						err = f.Close()
					}
					if err != nil {
						return fmt.Errorf("replication: %s: %w", sides[i].name, err)
					}
				}
				l, err := replWriteLatency(ctx, c, name, fileSize, kd.bs, kd.n, kd.append, kd.sync, uint64(round*10+k))
				if err != nil {
					return fmt.Errorf("replication: %s: %s: %w", sides[i].name, kd.name, err)
				}
				lats[k][i] = append(lats[k][i], l...)
				if kd.append {
					c.Remove(ctx, name)
				}
			}
		}
	}
	for _, s := range sides {
		s.c.Remove(ctx, "/bench/lat")
	}
	fmt.Printf("\nWrite latency: single WriteAt calls, one after another, each timed until the chain acknowledged it (a zero-length ReadAt of the File waits for its writes) or, with Sync, until File.Sync returned (pwrite + fsync: adds meta's length report); overwrite: at random aligned offsets of an existing %s file (the chunk engine rewrites the whole 4 MiB chunk, copy-on-write, on every replica); append: one after another at the end of a new file (written in place); %d rounds, the clusters alternating, percentiles over all rounds\n\n",
		formatSize(fileSize), cfg.rounds)
	fmt.Println("| write | writes per side | r1 p50 | r3 p50 | r3 / r1 p50 | added p50 | r1 p99 | r3 p99 | added p99 |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for k, kd := range kinds {
		a, b := lats[k][0], lats[k][1]
		a50, a99, b50, b99 := pctD(a, 0.5), pctD(a, 0.99), pctD(b, 0.5), pctD(b, 0.99)
		fmt.Printf("| %s | %d | %s | %s | %.2f | %s | %s | %s | %s |\n", kd.name, len(a), fmtLatency(a50), fmtLatency(b50),
			float64(b50)/float64(a50), fmtSigned(b50-a50), fmtLatency(a99), fmtLatency(b99), fmtSigned(b99-a99))
	}
	return nil
}

// replWriteLatency makes n writes of bs bytes, one at a time, to the
// existing file name: with appendAt one after another from offset 0 (a new
// file), else at random bs-aligned offsets below size (a file of at least
// size bytes). It returns their latencies: until storage acknowledged the
// write, or with sync until File.Sync returned.
func replWriteLatency(ctx context.Context, c *libfff.Client, name string, size, bs int64, n int, appendAt, sync bool, seed uint64) ([]time.Duration, error) {
	f, err := c.Open(ctx, name, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := uring.AlignedBuffer(int(bs))
	rand.NewChaCha8([32]byte{4, byte(seed)}).Read(buf)
	rng := rand.New(rand.NewPCG(seed, 11))
	lats := make([]time.Duration, 0, n)
	for i := range n {
		off := int64(i) * bs
		if !appendAt {
			off = rng.Int64N(size/bs) * bs
		}
		buf[0], buf[1] = byte(i), byte(i>>8)
		t0 := time.Now()
		if err := replWriteOne(f, buf, off, sync); err != nil {
			return nil, err
		}
		lats = append(lats, time.Since(t0))
	}
	return lats, f.Sync()
}

// replWriteOne writes p at off and waits until storage acknowledged it: a
// read through the File waits for the File's writes to land (libfff
// File.settle), and a zero-length one reads nothing. With sync, File.Sync
// waits instead (and reports the file's length to meta).
func replWriteOne(f *libfff.File, p []byte, off int64, sync bool) error {
	if _, err := f.WriteAt(p, off); err != nil {
		return err
	}
	if sync {
		return f.Sync()
	}
	if _, err := f.ReadAt(p[:0], off); err != nil && err != io.EOF {
		return err
	}
	return nil
}

func pctD(v []time.Duration, p float64) time.Duration {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func fmtSigned(d time.Duration) string {
	if d < 0 {
		return "−" + fmtLatency(-d)
	}
	return "+" + fmtLatency(d)
}

// replFailure restarts the replicated cluster with a short heartbeat
// timeout, measures the write stall around a kill -9 of a storage node,
// writes while it is down, restarts it and measures the resync.
func replFailure(ctx context.Context, cfg config, fffBin string, rc *replCluster, size, wsize int64, r1Write float64) error {
	rc.closeClients()
	if _, err := rc.fff(ctx, fffBin, 90*time.Second, "down", "--data", rc.data); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(rc.data, "local.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "\n[mgmtd]\nheartbeat_timeout = %q\n", replCfg.heartbeat.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if _, err := rc.fff(ctx, fffBin, 2*time.Minute, "up", "--daemon", "--data", rc.data); err != nil {
		return err
	}
	// The restart sends targets through resync: wait until all serve.
	if err := rc.connect(ctx, fffBin); err != nil {
		return err
	}
	ts, err := rc.targets(ctx, fffBin)
	if err != nil {
		return err
	}
	var victim replTarget
	for _, t := range ts {
		if t.Node == replKilledNode && t.ChainID != 0 {
			victim = t
		}
	}
	if victim.ID == 0 {
		return fmt.Errorf("replication: node %d has no target in a chain: %+v", replKilledNode, ts)
	}
	nodeDir := filepath.Join(rc.data, "nodes", strconv.Itoa(replKilledNode))
	pid := replPIDs(rc.data)[nodeDir]
	if pid == 0 || !replOwnProcess(pid, nodeDir) {
		return fmt.Errorf("replication: no running fffd for %s (pid %d)", nodeDir, pid)
	}

	// The stall: a writer of 4 KiB writes, node 3 killed under it.
	st, err := replStall(ctx, fffBin, rc, victim.ID, pid)
	if err != nil {
		return err
	}
	fmt.Printf("\nWrite stall after a kill -9: [mgmtd] heartbeat_timeout = %s (the default is 10 s); one writer appends 4 KiB at a time to a new file with WriteAt, each write waited for until acknowledged; storage node %d (target %d of the chain) is killed with SIGKILL %s into the run\n\n",
		replCfg.heartbeat, replKilledNode, victim.ID, st.killAt.Round(time.Millisecond))
	fmt.Println("| heartbeat timeout | longest gap between completed writes | the gap, from the kill | target offline in fff admin targets | writes (before / after the kill) | write p50 before the kill | gap / timeout |")
	fmt.Println("|---|---|---|---|---|---|---|")
	offline := "not seen"
	if st.offlineAfter > 0 {
		offline = fmt.Sprintf("%.2f s after the kill", st.offlineAfter.Seconds())
	}
	fmt.Printf("| %s | %.2f s | %+.2f s to %+.2f s | %s | %d / %d | %s | %.2f |\n",
		replCfg.heartbeat, st.gap.Seconds(), st.gapFrom.Round(10*time.Millisecond).Seconds(), (st.gapFrom + st.gap).Round(10*time.Millisecond).Seconds(), offline,
		st.before, st.after, fmtLatency(st.p50), st.gap.Seconds()/replCfg.heartbeat.Seconds())
	if st.note != "" {
		fmt.Printf("\n%s\n", st.note)
	}

	// Resync: new data while node 3 is down, then node 3 back.
	degraded, err := dataSeqWrite(ctx, rc.c, "/bench/resync", size, wsize)
	if err != nil {
		return fmt.Errorf("replication: write with node %d down: %w", replKilledNode, err)
	}
	logs, _ := filepath.Glob(filepath.Join(rc.data, "nodes", "*", "fffd.log"))
	logs = append(logs, filepath.Join(rc.data, "fffd.log"))
	offsets := map[string]int64{}
	for _, l := range logs {
		if fi, err := os.Stat(l); err == nil {
			offsets[l] = fi.Size()
		}
	}
	t0 := time.Now()
	if _, err := rc.fff(ctx, fffBin, 2*time.Minute, "up", "--daemon", "--data", rc.data); err != nil {
		return err
	}
	started := time.Since(t0)
	chained, _, err := rc.waitServing(ctx, fffBin, 30*time.Minute)
	if err != nil {
		return err
	}
	wall := time.Since(t0)
	rs := replResyncLog(offsets, victim.ID)
	same, detail, err := replCompare(chained)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "bench: replication: fio sequential write of %s\n", formatSize(size))
	plain := filepath.Join(rc.root, "fio-seq")
	var fios []float64
	for range cfg.rounds {
		dropCaches(cfg)
		v, err := dataFioSeq(ctx, cfg, plain, size, "write")
		if err != nil {
			return err
		}
		fios = append(fios, v)
	}
	// A resync on this machine reads its data from the same disk it
	// writes it to: fio copying as much within the disk is what that
	// allows (reported next to the target, which is against writes alone).
	fmt.Fprintf(os.Stderr, "bench: replication: fio copy of %s within the disk\n", formatSize(size))
	var copies []float64
	for range cfg.rounds {
		dropCaches(cfg)
		v, err := dataFioCopy(ctx, cfg, plain, plain+".copy", size)
		os.Remove(plain + ".copy")
		if err != nil {
			return err
		}
		copies = append(copies, v)
	}
	os.Remove(plain)
	fio, fioCopy := medianF(fios), medianF(copies)

	fmt.Printf("\nResync: with node %d down, a new %s file written (%s writes; %.0f MiB/s on the two remaining copies); then `fff up --daemon` starts node %d again (the process was up after %.2f s) and `fff admin targets --json` is polled until every chained target serves; the resync's bytes and duration from the sending node's log (\"resync done\"); against fio --rw=write --bs=4M --iodepth=16 --direct=1 --end_fsync=1 of %s on the same disk, %d runs (median); against fio copying as much within the disk (a reading and a writing job at once, the same blocks and depth: a resync between two nodes of one machine reads from the disk it writes to; size over the longer job's time), %d runs (median); and against replication 1's sequential write above (fff's own write path on this machine)\n\n",
		replKilledNode, formatSize(size), formatSize(wsize), degraded, replKilledNode, started.Seconds(), formatSize(size), cfg.rounds, cfg.rounds)
	fmt.Println("| resync runs | chunks compared / sent | bytes sent | resync took | resync MiB/s | restart → all serving | bytes / that time, MiB/s | fio seq write MiB/s | resync / fio | target | fio range | fio copy MiB/s | resync / fio copy | fio copy range | resync / replication-1 sequential write |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	rate := float64(rs.bytes) / (1 << 20) / rs.took.Seconds()
	if rs.runs == 0 {
		rate = 0
	}
	wallRate := float64(rs.bytes) / (1 << 20) / wall.Seconds()
	fmt.Printf("| %d | %d / %d | %s | %.2f s | %.0f | %.2f s | %.0f | %.0f | %.2f | ≥ %.2f %s | %s | %.0f | %.2f | %s | %.2f (of %.0f) |\n",
		rs.runs, rs.chunks, rs.sent, formatSize(rs.bytes), rs.took.Seconds(), rate, wall.Seconds(), wallRate, fio, rate/fio,
		replSyncTarget, verdict(rate/fio >= replSyncTarget), spreadF(fios), fioCopy, rate/fioCopy, spreadF(copies), rate/r1Write, r1Write)
	if rs.runs == 0 {
		fmt.Printf("\nNo \"resync done\" line about target %d in the nodes' logs (%s): the resync rate is unknown.\n", victim.ID, strings.Join(logs, ", "))
	}
	if rs.failed > 0 {
		fmt.Printf("\n%d \"resync failed\" lines in the nodes' logs during the resync.\n", rs.failed)
	}
	fmt.Printf("\nReplicas after the resync: %s\n", detail)
	if !same {
		return errors.New("replication: the replicas differ after the resync (see above)")
	}
	return nil
}

type replStallResult struct {
	killAt        time.Duration // since the writer started
	gap           time.Duration // longest gap between completed writes
	gapFrom       time.Duration // its start, relative to the kill
	offlineAfter  time.Duration // when the targets listing first showed the victim offline (0: never)
	before, after int           // completed writes before and after the kill
	p50           time.Duration // write latency before the kill
	note          string
}

// replStall runs a writer of 4 KiB writes, kills (-9) process pid (the
// storage node of target victim) after a few seconds, and measures the
// longest gap between completed writes.
func replStall(ctx context.Context, fffBin string, rc *replCluster, victim uint32, pid int) (replStallResult, error) {
	const (
		bs     = 4 << 10
		lead   = 3 * time.Second  // writes before the kill
		settle = 5 * time.Second  // writes after the stall ended
		limit  = 90 * time.Second // ForwardTimeout (60 s) and then some
	)
	var res replStallResult
	f, err := rc.c.Create(ctx, "/bench/stall")
	if err != nil {
		return res, err
	}
	var (
		mu    sync.Mutex
		ends  []time.Time
		lats  []time.Duration
		werr  error
		stop  = make(chan struct{})
		wdone = make(chan struct{})
	)
	start := time.Now()
	go func() {
		defer close(wdone)
		buf := uring.AlignedBuffer(bs)
		rand.NewChaCha8([32]byte{5}).Read(buf)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			buf[0], buf[1] = byte(i), byte(i>>8)
			t0 := time.Now()
			err := replWriteOne(f, buf, int64(i)*bs, false)
			now := time.Now()
			mu.Lock()
			if err != nil {
				werr = err
				mu.Unlock()
				return
			}
			ends = append(ends, now)
			lats = append(lats, now.Sub(t0))
			mu.Unlock()
		}
	}()
	time.Sleep(lead)
	fmt.Fprintf(os.Stderr, "bench: replication: kill -9 of storage node %d (pid %d)\n", replKilledNode, pid)
	kill := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		close(stop)
		<-wdone
		f.Close()
		return res, err
	}
	res.killAt = kill.Sub(start)
	// Watch the listing for the target going offline while the writer
	// goes on; stop once writes have flowed for a while after it.
	for {
		if res.offlineAfter == 0 {
			if ts, err := rc.targets(ctx, fffBin); err == nil {
				for _, t := range ts {
					if t.ID == victim && t.State != "serving" && t.State != "syncing" {
						res.offlineAfter = time.Since(kill)
					}
				}
			}
		}
		mu.Lock()
		var last time.Time
		if len(ends) > 0 {
			last = ends[len(ends)-1]
		}
		failed := werr != nil
		mu.Unlock()
		if failed || (res.offlineAfter > 0 && last.After(kill.Add(res.offlineAfter)) && time.Since(kill) > res.offlineAfter+settle) {
			break
		}
		if time.Since(kill) > limit {
			res.note = fmt.Sprintf("**The writer did not recover within %s of the kill** (last completed write %.2f s after it; target offline: %v).", limit, last.Sub(kill).Seconds(), res.offlineAfter)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	select {
	case <-wdone:
	case <-time.After(limit):
		res.note += " The writer's last write did not return."
	}
	end := time.Now()
	mu.Lock()
	defer mu.Unlock()
	if werr != nil {
		f.Close()
		return res, fmt.Errorf("replication: a write failed after the kill -9 of node %d: %w", replKilledNode, werr)
	}
	f.Close()
	prev := start
	var before []time.Duration
	for i, e := range ends {
		if e.Before(kill) {
			res.before++
			before = append(before, lats[i])
		} else {
			res.after++
		}
		if g := e.Sub(prev); g > res.gap {
			res.gap, res.gapFrom = g, prev.Sub(kill)
		}
		prev = e
	}
	if g := end.Sub(prev); g > res.gap {
		res.gap, res.gapFrom = g, prev.Sub(kill)
		res.note += " The longest gap lasted until the writer was stopped."
	}
	res.p50 = pctD(before, 0.5)
	res.note = strings.TrimSpace(res.note)
	return res, nil
}

type replResync struct {
	runs, failed int
	chunks, sent int64
	bytes        int64
	took         time.Duration
}

// replResyncLog sums the "resync done" lines about target to written to
// the logs since offsets (JSON lines: fffd under `fff up --daemon` logs to
// a file).
func replResyncLog(offsets map[string]int64, to uint32) replResync {
	var rs replResync
	for path, off := range offsets {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l struct {
				Message string  `json:"message"`
				Target  uint32  `json:"target"`
				Chunks  int64   `json:"chunks"`
				Sent    int64   `json:"sent"`
				Bytes   int64   `json:"bytes"`
				Took    float64 `json:"took"` // zerolog: milliseconds
			}
			if json.Unmarshal(sc.Bytes(), &l) != nil || l.Target != to {
				continue
			}
			switch {
			case strings.Contains(l.Message, "resync done"):
				rs.runs++
				rs.chunks += l.Chunks
				rs.sent += l.Sent
				rs.bytes += l.Bytes
				rs.took += time.Duration(l.Took * float64(time.Millisecond))
			case strings.Contains(l.Message, "resync failed"):
				rs.failed++
			}
		}
		f.Close()
	}
	return rs
}

// replCompare compares the chunk files of the chained targets (the bytes of
// each chunk without the zero padding of whole-block writes, as
// tests/replication_test.go does) and describes the outcome.
func replCompare(ts []replTarget) (bool, string, error) {
	var first map[string][32]byte
	var firstID uint32
	for _, t := range ts {
		files, err := filepath.Glob(filepath.Join(t.Path, "data", "*", "*", "*"))
		if err != nil {
			return false, "", err
		}
		sums := map[string][32]byte{}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return false, "", err
			}
			name := filepath.Base(f)
			if i := strings.LastIndexByte(name, '.'); i >= 0 {
				name = name[:i]
			}
			if _, dup := sums[name]; dup {
				return false, fmt.Sprintf("target %d holds two data files of chunk %s", t.ID, name), nil
			}
			sums[name] = sha256.Sum256(bytes.TrimRight(b, "\x00"))
		}
		if first == nil {
			first, firstID = sums, t.ID
			continue
		}
		if len(sums) != len(first) {
			return false, fmt.Sprintf("target %d holds %d chunks, target %d %d", t.ID, len(sums), firstID, len(first)), nil
		}
		for name, s := range sums {
			if s != first[name] {
				return false, fmt.Sprintf("chunk %s differs between targets %d and %d", name, t.ID, firstID), nil
			}
		}
	}
	return true, fmt.Sprintf("the %d chained targets hold the same %d chunks, byte for byte.", len(ts), len(first)), nil
}

// isolatedEnv is this process's environment without the variables that
// name a cluster, with the config directory home (made here): the cluster
// file `fff up` writes goes there, not over the user's.
func isolatedEnv(home string) ([]string, error) {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == libfff.EnvCluster || k == libfff.EnvToken || k == libfff.EnvCA || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "XDG_CONFIG_HOME="+home), nil
}
