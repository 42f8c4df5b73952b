package tests

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestUpStorageNodes: `fff up --storage-nodes 2` runs a control node and two
// `fffd storage` processes on this machine; their targets join chain table
// 1, a file's chunks land on every node, `fff down` stops all three, and a
// plain `fff up` brings all three back with the data readable.
func TestUpStorageNodes(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	out := mustFFF(t, env, "up", "--daemon", "--data", data, "--storage-nodes", "2")
	for _, want := range []string{"storage node 2:", "storage node 3:", "running in the background"} {
		if !strings.Contains(out, want) {
			t.Fatalf("fff up --storage-nodes 2 printed no %q:\n%s", want, out)
		}
	}

	ts := targetsOf(t, env)
	var tables struct {
		Tables []struct {
			ID     uint32   `json:"id"`
			Chains []uint32 `json:"chains"`
		} `json:"chain_tables"`
	}
	if err := json.Unmarshal([]byte(mustFFF(t, env, "admin", "chains", "--json")), &tables); err != nil {
		t.Fatal(err)
	}
	perNode := map[uint32]int{}
	for _, tg := range ts {
		perNode[tg.Node]++
		if tg.State != "serving" || len(tables.Tables) != 1 || !slices.Contains(tables.Tables[0].Chains, tg.ChainID) {
			t.Fatalf("target %+v: not serving in chain table 1 (%+v)", tg, tables)
		}
	}
	if perNode[1] != 2 || perNode[2] != 1 || perNode[3] != 1 || len(perNode) != 3 {
		t.Fatalf("targets per node: %v", perNode)
	}

	src := filepath.Join(t.TempDir(), "src")
	want := randData(rand.New(rand.NewPCG(9, 9)), 32<<20)
	if err := os.WriteFile(src, want, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", src, "/f")
	for _, n := range []string{"2", "3"} {
		files, _ := filepath.Glob(filepath.Join(data, "nodes", n, "targets", "0", "data", "*", "*", "*"))
		if len(files) == 0 {
			t.Fatalf("no chunk of /f on storage node %s", n)
		}
	}

	var pids []int
	for _, n := range []string{"2", "3"} {
		var ri struct{ PID int }
		b, err := os.ReadFile(filepath.Join(data, "nodes", n, "fffd.json"))
		if err != nil || json.Unmarshal(b, &ri) != nil || ri.PID <= 0 {
			t.Fatalf("storage node %s: fffd.json %s %v", n, b, err)
		}
		pids = append(pids, ri.PID)
	}
	if out := mustFFF(t, env, "down", "--data", data); !strings.Contains(out, "stopped 2 storage node(s)") {
		t.Fatalf("fff down printed:\n%s", out)
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(10 * time.Second); syscall.Kill(pid, 0) == nil && !zombie(pid); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("storage node (pid %d) still runs after fff down", pid)
			}
		}
	}

	out = mustFFF(t, env, "up", "--daemon", "--data", data)
	if !strings.Contains(out, "storage node 2:") || !strings.Contains(out, "storage node 3:") {
		t.Fatalf("fff up after fff down did not restart the storage nodes:\n%s", out)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	mustFFF(t, env, "get", "/f", dst)
	if got, err := os.ReadFile(dst); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("/f after a restart of all nodes: %d bytes, %v; differs from what was put", len(got), err)
	}
	mustFFF(t, env, "down", "--data", data)
}
