package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	fffcluster "fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/libfff"
)

// resumeBound is how long a client may go without a completed operation
// while a node is down (a bound for failure only: a kill costs a heartbeat
// timeout of 3 s, a lease of 1 s and an etcd election).
const resumeBound = 45 * time.Second

// metaWorker runs create → rename → stat → (every other file) remove on
// its own directory and keeps the namespace its acknowledged operations
// make. An operation that failed may or may not have happened: the worker
// reads the outcome back and takes it. An operation whose retry found its
// own earlier effect (EEXIST for a new name, ENOENT for a name only it
// touches) ran twice: that is a failure.
type metaWorker struct {
	c       *libfff.Client
	dir     string
	model   map[string]bool // names that exist
	acked   int
	unknown int
	lastOK  time.Time
	maxGap  time.Duration
	dup     []string
}

func (w *metaWorker) ok() {
	now := time.Now()
	w.maxGap = max(w.maxGap, now.Sub(w.lastOK))
	w.lastOK = now
	w.acked++
}

// resolve learns whether name exists once the cluster answers.
func (w *metaWorker) resolve(ctx context.Context, name string) error {
	for {
		_, err := w.c.Stat(ctx, name)
		switch {
		case err == nil:
			w.model[name] = true
			return nil
		case proto.CodeOf(err) == proto.ENOENT:
			delete(w.model, name)
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("resolving %s: %w", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// step runs the operations on file k.
func (w *metaWorker) step(ctx context.Context, k int) error {
	f, g := fmt.Sprintf("%s/f%d", w.dir, k), fmt.Sprintf("%s/g%d", w.dir, k)
	// do runs op; a refusal in dupCode means it ran twice.
	do := func(what string, op func() error, dupCode proto.Code, apply func(), names ...string) error {
		err := op()
		switch {
		case err == nil:
			apply()
			w.ok()
			return nil
		case proto.CodeOf(err) == dupCode:
			w.dup = append(w.dup, fmt.Sprintf("%s: %v", what, err))
			return nil
		}
		w.unknown++
		for _, n := range names {
			if err := w.resolve(ctx, n); err != nil {
				return err
			}
		}
		return nil
	}
	if err := do("create "+f, func() error { _, err := w.c.CreateFile(ctx, f, 0o644); return err },
		proto.EEXIST, func() { w.model[f] = true }, f); err != nil {
		return err
	}
	if !w.model[f] {
		return nil
	}
	if err := do("rename "+f, func() error { return w.c.Rename(ctx, f, g) },
		proto.ENOENT, func() { delete(w.model, f); w.model[g] = true }, f, g); err != nil {
		return err
	}
	if w.model[g] {
		if _, err := w.c.Stat(ctx, g); err == nil {
			w.ok()
		} else if proto.CodeOf(err) == proto.ENOENT {
			return fmt.Errorf("stat %s: %w, but its rename was acknowledged", g, err)
		}
	}
	if k%2 == 0 && w.model[g] {
		return do("remove "+g, func() error { return w.c.Remove(ctx, g) },
			proto.ENOENT, func() { delete(w.model, g) }, g)
	}
	return nil
}

// TestMetaFailover: 16 clients spread over the 3 nodes of an etcd cluster
// create, rename, stat and remove continuously while the mgmtd leader, then
// another node (its meta server and etcd member with it), then the new
// leader are killed -9 and restarted, one at a time. Checked: the
// namespace at the end is what the acknowledged operations (and the
// outcomes read back for the failed ones) make; no operation ran twice;
// every client resumed within resumeBound; each mgmtd term had one leader.
func TestMetaFailover(t *testing.T) {
	t.Parallel()
	env, data := upNodes(t, 1)
	tok := adminToken(t, data)
	addrs := make([]string, 4)
	for id := 1; id <= 3; id++ {
		_, addrs[id] = nodeReady(t, data, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Leader terms as every node reports them: one leader per term.
	var termsMu sync.Mutex
	terms := map[uint64]uint32{}
	var termErr atomic.Value
	monCtx, stopMon := context.WithCancel(ctx)
	var monWG sync.WaitGroup
	for id := 1; id <= 3; id++ {
		pool := rpc.NewPool(addrs[id], tok, rpc.PoolOptions{Size: 1, Client: rpc.ClientOptions{DefaultTimeout: 2 * time.Second}})
		defer pool.Close()
		mc := fffcluster.NewClient(pool)
		monWG.Add(1)
		go func() {
			defer monWG.Done()
			for monCtx.Err() == nil {
				if ri, err := mc.GetRouting(monCtx, 0); err == nil && ri.Leader != 0 {
					termsMu.Lock()
					if n, seen := terms[ri.LeaderTerm]; seen && n != ri.Leader {
						termErr.Store(fmt.Sprintf("term %d had two leaders: nodes %d and %d", ri.LeaderTerm, n, ri.Leader))
					}
					terms[ri.LeaderTerm] = ri.Leader
					termsMu.Unlock()
				}
				time.Sleep(100 * time.Millisecond)
			}
		}()
	}

	const workers = 16
	ws := make([]*metaWorker, workers)
	for i := range ws {
		c, err := libfff.Connect(ctx, libfff.Options{Address: addrs[1+i%3], Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Routing(ctx); err != nil {
			t.Fatal(err)
		}
		dir := fmt.Sprintf("/w%02d", i)
		if err := c.Mkdir(ctx, dir, 0o755); err != nil {
			t.Fatal(err)
		}
		ws[i] = &metaWorker{c: c, dir: dir, model: map[string]bool{}, lastOK: time.Now()}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for _, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; !stop.Load(); k++ {
				if err := w.step(ctx, k); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	leader := func() int {
		termsMu.Lock()
		defer termsMu.Unlock()
		var top uint64
		for term := range terms {
			top = max(top, term)
		}
		return int(terms[top])
	}
	waitLeader := func() int {
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if l := leader(); l != 0 {
				return l
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("no mgmtd leader reported")
		return 0
	}
	kill := func(id int, why string) {
		pid, _ := nodeReady(t, data, id)
		t.Logf("kill -9 node %d (%s)", id, why)
		syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(4 * time.Second) // a heartbeat timeout with the node gone
		mustFFF(t, env, "up", "--daemon", "--data", data)
		time.Sleep(2 * time.Second)
	}
	time.Sleep(2 * time.Second)
	l := waitLeader()
	kill(l, "the mgmtd leader")
	kill(1+l%3, "not the leader")
	kill(waitLeader(), "the mgmtd leader")
	time.Sleep(2 * time.Second)
	stop.Store(true)
	wg.Wait()
	stopMon()
	monWG.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if e := termErr.Load(); e != nil {
		t.Fatal(e)
	}
	t.Logf("leader terms seen: %v", terms)

	var acked, unknown int
	var gap time.Duration
	for _, w := range ws {
		acked += w.acked
		gap = max(gap, w.maxGap)
		unknown += w.unknown
		if len(w.dup) > 0 {
			t.Errorf("%s: operations that ran twice: %v", w.dir, w.dup)
		}
		if w.maxGap > resumeBound {
			t.Errorf("%s: %v without a completed operation, over the %v bound", w.dir, w.maxGap, resumeBound)
		}
		// The namespace equals the replay of the log.
		ents, err := w.c.ReadDir(ctx, w.dir)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, e := range ents {
			got[w.dir+"/"+e.Name()] = true
		}
		for n := range w.model {
			if !got[n] {
				t.Errorf("%s: acknowledged, missing at the end", n)
			}
		}
		for n := range got {
			if !w.model[n] {
				t.Errorf("%s: present at the end, not made by an acknowledged operation", n)
			}
		}
	}
	t.Logf("%d operations acknowledged, %d with an unknown outcome read back; longest wait of a client %v", acked, unknown, gap.Round(time.Millisecond))
	if len(terms) < 3 {
		t.Errorf("leader terms seen: %v; two leader kills should make at least 3", terms)
	}
	mustFFF(t, env, "down", "--data", data)
}

// TestStandaloneMeta: an `fffd meta` over the etcd of a 3-node cluster
// registers with mgmtd (role meta) and heartbeats, so it is in the routing
// info and up; it serves the cluster's namespace, not one of its own.
func TestStandaloneMeta(t *testing.T) {
	t.Parallel()
	env, data := upNodes(t, 1)
	tok := adminToken(t, data)
	_, addr1 := nodeReady(t, data, 1)
	var endpoints []string
	for id := 1; id <= 3; id++ {
		b, err := os.ReadFile(nodeConfig(data, id))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "client_url = "); ok {
				endpoints = append(endpoints, v)
			}
		}
	}
	mdir := t.TempDir()
	cfg := fmt.Sprintf("[node]\nid = 10\nlisten = \"127.0.0.1:0\"\ndata_dir = %q\n\n[kv]\nbackend = \"etcd\"\nendpoints = [%s]\n\n[mgmtd]\naddress = %q\nheartbeat_timeout = \"3s\"\nleader_lease = \"1s\"\n",
		mdir, strings.Join(endpoints, ", "), addr1)
	if err := os.WriteFile(filepath.Join(mdir, "fffd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(binDir, "fffd"), "meta", "--config", filepath.Join(mdir, "fffd.toml"))
	logf, err := os.Create(filepath.Join(mdir, "fffd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(time.Minute) // a bound for failure only
	var maddr string
	for maddr == "" {
		if b, err := os.ReadFile(filepath.Join(mdir, "fffd.json")); err == nil {
			var ri struct{ Address string }
			if json.Unmarshal(b, &ri) == nil {
				maddr = ri.Address
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(mdir, "fffd.log"))
			t.Fatalf("fffd meta did not start:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		var st struct {
			Routing struct {
				Nodes []struct {
					ID    uint32
					Roles string
					Addr  string
					State string
				}
			}
		}
		r := fff(t, env, "status", "--json")
		if json.Unmarshal([]byte(r.stdout), &st) == nil {
			found := false
			for _, n := range st.Routing.Nodes {
				found = found || (n.ID == 10 && n.Roles == "meta" && n.Addr == maddr && n.State == "up")
			}
			if found {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the meta server is not in the routing info as node 10 (meta, up, %s):\n%s", maddr, r.stdout)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mc, err := libfff.Connect(ctx, libfff.Options{Address: maddr, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if _, err := mc.CreateFile(ctx, "/through-meta", 0o644); err != nil {
		t.Fatal(err)
	}
	nc, err := libfff.Connect(ctx, libfff.Options{Address: addr1, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Stat(ctx, "/through-meta"); err != nil {
		t.Fatalf("a file created through the meta server, seen through node 1: %v", err)
	}

	// Its config names node 1 alone as mgmtd. When node 1 dies, its calls
	// move to the other nodes of the routing info (cluster.Failover): it
	// logs the move, and a heartbeat sent after it reaches mgmtd.
	pid1, _ := nodeReady(t, data, 1)
	_, addr2 := nodeReady(t, data, 2)
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var moved time.Time
	deadline = time.Now().Add(time.Minute) // a bound for failure only
	for {
		if moved.IsZero() {
			moved = logged(filepath.Join(mdir, "fffd.log"), "control node unreachable: moving to another", `"role":"mgmtd"`)
		}
		var st struct {
			Routing struct {
				Nodes []struct {
					ID            uint32
					LastHeartbeat *time.Time `json:"last_heartbeat"`
				}
			}
		}
		r := fff(t, append(env, "FFF_CLUSTER="+addr2, "FFF_TOKEN="+tok), "status", "--json")
		if !moved.IsZero() && json.Unmarshal([]byte(r.stdout), &st) == nil {
			// The log's times have whole seconds: the move was before
			// moved plus one.
			if i := slices.IndexFunc(st.Routing.Nodes, func(n struct {
				ID            uint32
				LastHeartbeat *time.Time `json:"last_heartbeat"`
			}) bool {
				return n.ID == 10 && n.LastHeartbeat != nil && n.LastHeartbeat.After(moved.Add(time.Second))
			}); i >= 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(mdir, "fffd.log"))
			t.Fatalf("after node 1's death no heartbeat of the meta server reached mgmtd through another node (moved at %v):\n%s%s\n%s", moved, r.stdout, r.stderr, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	mustFFF(t, env, "down", "--data", data)
}

// logged returns the time of the first line of the JSON log at path that
// has message msg and contains every string of also (zero if none).
func logged(path, msg string, also ...string) time.Time {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			Message string    `json:"message"`
			Time    time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Message != msg {
			continue
		}
		ok := true
		for _, a := range also {
			ok = ok && strings.Contains(line, a)
		}
		if ok {
			return l.Time
		}
	}
	return time.Time{}
}
