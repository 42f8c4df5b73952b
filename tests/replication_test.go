package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// replicaChunks maps each chunk data file of target directory dir, by chunk
// (the name without its generation), to its bytes without the zero
// padding of whole-block writes.
func replicaChunks(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "data", "*", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		name = name[:strings.LastIndexByte(name, '.')]
		if _, dup := out[name]; dup {
			t.Fatalf("%s: two data files of chunk %s", dir, name)
		}
		out[name] = bytes.TrimRight(b, "\x00")
	}
	return out
}

// TestReplicatedCluster: `fff up --storage-nodes 2 --replicas 3` keeps every
// chunk on three nodes (separate fffd processes). With one storage node
// killed (-9), a file reads back at once and a new file is written once
// mgmtd notices (its heartbeat timeout); restarted, the node's target is
// syncing, receives what it missed from its predecessor and becomes
// serving by itself, and every replica of every chunk is then the same.
func TestReplicatedCluster(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	// A short heartbeat timeout for the failover below; the restart of
	// every node also sends the control node's and one storage node's
	// targets through resync.
	upReplicated(t, env, data, 2, 2*time.Second)
	chained := waitServing(t, env)
	if len(chained) != 3 {
		t.Fatalf("targets in chains: %+v, want 3 on 3 nodes", chained)
	}

	rng := rand.New(rand.NewPCG(5, 5))
	put := func(name string, n int) []byte {
		b := randData(rng, n)
		src := filepath.Join(t.TempDir(), "src")
		if err := os.WriteFile(src, b, 0o600); err != nil {
			t.Fatal(err)
		}
		mustFFF(t, env, "put", src, name)
		return b
	}
	get := func(name string, want []byte) {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "dst")
		mustFFF(t, env, "get", name, dst)
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %d bytes, %v; differs from what was put", name, len(got), err)
		}
	}
	a := put("/a", 10<<20+123)
	get("/a", a)

	var ri struct{ PID int }
	b, err := os.ReadFile(filepath.Join(data, "nodes", "3", "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil || ri.PID <= 0 {
		t.Fatalf("storage node 3: fffd.json %s %v", b, err)
	}
	if err := syscall.Kill(ri.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	get("/a", a)
	c := put("/c", 6<<20+5) // stalls until node 3 is offline, then goes on
	get("/c", c)
	for _, tg := range targetsOf(t, env) {
		if tg.Node == 3 && tg.State != "offline" {
			t.Fatalf("target %+v of the killed node", tg)
		}
	}

	mustFFF(t, env, "up", "--daemon", "--data", data)
	waitServing(t, env)
	get("/a", a)
	get("/c", c)

	// A gray failure: a storage node stops (SIGSTOP) and answers nothing, its
	// connections open. Reads and writes that wait on it fail over once
	// mgmtd declares it down (the nodes and clients cut their
	// connections to it; a call would otherwise wait a minute); back, its
	// lease has run out, so it serves nothing on its old routing, and it
	// resyncs.
	victim := stopVictim(t, env)
	b, err = os.ReadFile(filepath.Join(data, "nodes", strconv.Itoa(int(victim)), "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil || ri.PID <= 0 {
		t.Fatalf("storage node %d: fffd.json %s %v", victim, b, err)
	}
	put("/w", 1<<20) // connections to the victim open: calls on them hang
	if err := syscall.Kill(ri.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(ri.PID, syscall.SIGCONT)
		}
	}()
	d := put("/d", 5<<20+77)
	get("/a", a)
	get("/d", d)
	if err := syscall.Kill(ri.PID, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	chained = waitServing(t, env)
	get("/c", c)
	get("/d", d)
	if files := identicalReplicas(t, chained); len(files) != 8 { // 3 chunks of /a, 2 of /c, 2 of /d, 1 of /w
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		t.Fatalf("target %d holds chunks %v, want 8", chained[0].ID, names)
	}
	mustFFF(t, env, "down", "--data", data)
}

// identicalReplicas fails the test unless the targets (a chain's) hold the
// same chunks with the same bytes, and returns the first one's chunks.
func identicalReplicas(t *testing.T, targets []targetRow) map[string][]byte {
	t.Helper()
	first := replicaChunks(t, targets[0].Path)
	for _, tg := range targets[1:] {
		files := replicaChunks(t, tg.Path)
		if len(files) != len(first) {
			t.Fatalf("target %d holds %d chunks, target %d %d", tg.ID, len(files), targets[0].ID, len(first))
		}
		for name, b := range files {
			if !bytes.Equal(b, first[name]) {
				t.Fatalf("chunk %s differs between targets %d and %d", name, tg.ID, targets[0].ID)
			}
		}
	}
	return first
}

// waitServing waits until every target in a chain serves (resyncs done)
// and returns those targets.
func waitServing(t *testing.T, env []string) []targetRow {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute) // a bound for failure only
	for {
		var chained []targetRow
		all := true
		for _, tg := range targetsOf(t, env) {
			if tg.ChainID != 0 {
				chained = append(chained, tg)
				all = all && tg.State == "serving"
			}
		}
		if all && len(chained) > 0 {
			return chained
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not all serving: %+v", chained)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopVictim picks the storage node to stop: the last one in the chain's
// order that is not the control node (1), so that a write's forward waits
// on it over a connection already open.
func stopVictim(t *testing.T, env []string) uint32 {
	t.Helper()
	var cs struct {
		Chains []struct{ Targets []uint32 } `json:"chains"`
	}
	out := mustFFF(t, env, "admin", "chains", "--json")
	if err := json.Unmarshal([]byte(out), &cs); err != nil || len(cs.Chains) == 0 {
		t.Fatalf("admin chains --json: %v\n%s", err, out)
	}
	node := map[uint32]uint32{}
	for _, tg := range targetsOf(t, env) {
		node[tg.ID] = tg.Node
	}
	ts := cs.Chains[0].Targets
	for i := len(ts) - 1; i > 0; i-- {
		if n := node[ts[i]]; n != 1 {
			return n
		}
	}
	t.Fatalf("chain %v has no storage node after its head", ts)
	return 0
}

// TestFlippedByte: one byte flipped in one replica's chunk file. Reads
// still return the right bytes (the client reads another replica), `fff
// admin scrub --dry-run` reports the damage and changes nothing, `fff
// admin scrub` rewrites the replica from a good one, and afterwards every
// replica is the same and a second scrub finds nothing.
func TestFlippedByte(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	mustFFF(t, env, "up", "--daemon", "--data", data, "--storage-nodes", "2", "--replicas", "3")
	chained := waitServing(t, env)
	rng := rand.New(rand.NewPCG(9, 9))
	want := randData(rng, 5<<20+3)
	src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", src, "/f")

	var victim targetRow
	for _, tg := range chained {
		if tg.Node == 3 {
			victim = tg
		}
	}
	files, _ := filepath.Glob(filepath.Join(victim.Path, "data", "*", "*", "*"))
	if len(files) != 2 {
		t.Fatalf("target %d holds %v, want the 2 chunks of /f", victim.ID, files)
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 70000)
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, 70000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	r := fff(t, env, "admin", "scrub", "--dry-run")
	if r.code != 1 || !strings.Contains(r.stdout, "1 damaged") || !strings.Contains(r.stdout, fmt.Sprintf("target %d ", victim.ID)) {
		t.Fatalf("scrub --dry-run of a flipped byte: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for range 3 { // reads spread over the replicas
		mustFFF(t, env, "get", "/f", dst)
		if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("get with a damaged replica: %d bytes, %v; differs", len(got), err)
		}
	}
	out := mustFFF(t, env, "admin", "scrub")
	if !strings.Contains(out, "total (3 targets)") {
		t.Fatalf("scrub:\n%s", out)
	}
	out = mustFFF(t, env, "admin", "scrub")
	if !strings.Contains(out, "0 damaged, 0 diverging, 0 repaired") || strings.Contains(out, "damaged: ") {
		t.Fatalf("second scrub:\n%s", out)
	}
	identicalReplicas(t, chained)
	mustFFF(t, env, "down", "--data", data)
}

// upReplicated starts a cluster of a control node and n storage nodes with
// replication 3 in data (`fff up --storage-nodes n --replicas 3`), and
// restarts it with mgmtd's heartbeat timeout set to hb: tests of failovers
// want a short one.
func upReplicated(t *testing.T, env []string, data string, n int, hb time.Duration) {
	t.Helper()
	out := mustFFF(t, env, "up", "--daemon", "--data", data, "--storage-nodes", strconv.Itoa(n), "--replicas", "3")
	if !strings.Contains(out, "chain table 1") {
		t.Fatalf("fff up --replicas 3 made no chains:\n%s", out)
	}
	mustFFF(t, env, "down", "--data", data)
	f, err := os.OpenFile(filepath.Join(data, "local.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[mgmtd]\nheartbeat_timeout = %q\n", hb.String())
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "up", "--daemon", "--data", data)
}

// TestReplicatedTLS: `fff up --tls --storage-nodes 2 --replicas 3` runs the
// storage nodes under the cluster's TLS too: they register, take part in
// the chain (forwards between nodes over TLS) and serve reads, and a file
// round-trips.
func TestReplicatedTLS(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	mustFFF(t, env, "up", "--daemon", "--tls", "--data", data, "--storage-nodes", "2", "--replicas", "3")
	if chained := waitServing(t, env); len(chained) != 3 {
		t.Fatalf("targets in chains: %+v, want 3 on 3 nodes", chained)
	}
	cfg, err := os.ReadFile(filepath.Join(data, "nodes", "2", "fffd.toml"))
	if err != nil || !strings.Contains(string(cfg), "[tls]") {
		t.Fatalf("storage node 2's config without [tls] (%v):\n%s", err, cfg)
	}
	want := randData(rand.New(rand.NewPCG(4, 4)), 6<<20+9)
	src, dst := filepath.Join(t.TempDir(), "src"), filepath.Join(t.TempDir(), "dst")
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", src, "/f")
	mustFFF(t, env, "get", "/f", dst)
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("get: %d bytes, %v; differs from what was put", len(got), err)
	}
	if r := fff(t, env, "admin", "scrub", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "total (3 targets)") {
		t.Fatalf("scrub of a TLS cluster: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	mustFFF(t, env, "down", "--data", data)
}
