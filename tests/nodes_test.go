package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"fff/libfff"
)

// nodeDir is node id's data directory in a cluster made by fff up --nodes.
func nodeDir(data string, id int) string {
	if id == 1 {
		return data
	}
	return filepath.Join(data, "nodes", strconv.Itoa(id))
}

// nodeConfig is node id's fffd config in such a cluster.
func nodeConfig(data string, id int) string {
	if id == 1 {
		return filepath.Join(data, "local.toml")
	}
	return filepath.Join(nodeDir(data, id), "fffd.toml")
}

// adminToken reads the cluster's admin token from data.
func adminToken(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// nodeReady reads a node's fffd.json: its pid and address.
func nodeReady(t *testing.T, data string, id int) (pid int, addr string) {
	t.Helper()
	var ri struct {
		PID     int
		Address string
	}
	b, err := os.ReadFile(filepath.Join(nodeDir(data, id), "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil {
		t.Fatalf("node %d's fffd.json: %v", id, err)
	}
	return ri.PID, ri.Address
}

// leaderOf asks the node at addr for the mgmtd leader (fff status --json)
// until one is elected with a term above after.
func leaderOf(t *testing.T, env []string, addr string, after uint64) (node uint32, term uint64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a bound for failure only
	for {
		r := fff(t, append(env, "FFF_CLUSTER="+addr), "status", "--json")
		var st struct {
			Leader *struct {
				Node uint32
				Term uint64
			} `json:"mgmtd_leader"`
		}
		if json.Unmarshal([]byte(r.stdout), &st) == nil && st.Leader != nil && st.Leader.Term > after {
			return st.Leader.Node, st.Leader.Term
		}
		if time.Now().After(deadline) {
			t.Fatalf("no mgmtd leader above term %d through %s:\n%s%s", after, addr, r.stdout, r.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// upNodes makes a cluster of 3 full nodes in a new data directory with
// chains of replicas targets, killed when the test ends, and restarts it
// with short timeouts, so that failovers take seconds: a 3 s heartbeat
// timeout, a 1 s leader lease. It returns the environment of fff commands
// for it (its own config directory) and the data directory.
func upNodes(t *testing.T, replicas int) (env []string, data string) {
	t.Helper()
	config := t.TempDir()
	data = t.TempDir()
	env = append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	out := mustFFF(t, env, "up", "--daemon", "--data", data, "--nodes", "3", "--replicas", strconv.Itoa(replicas))
	if replicas > 1 && !strings.Contains(out, "chain table 1") {
		t.Fatalf("fff up --nodes 3 --replicas %d made no chains:\n%s", replicas, out)
	}
	mustFFF(t, env, "down", "--data", data)
	for id := 1; id <= 3; id++ {
		f, err := os.OpenFile(nodeConfig(data, id), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "\n[mgmtd]\nheartbeat_timeout = \"3s\"\nleader_lease = \"1s\"\n")
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mustFFF(t, env, "up", "--daemon", "--data", data)
	return env, data
}

// TestNodes: `fff up --nodes 3 --replicas 3` runs three full nodes over an
// etcd cluster of their embedded members. A client connected to node 1
// keeps working when node 1 is killed (its mgmtd and meta calls move to
// another node, the chunks have two more copies); the mgmtd leader's kill
// -9 hands the lease to another node with a higher term; every file
// written reads back.
func TestNodes(t *testing.T) {
	t.Parallel()
	env, data := upNodes(t, 3)
	if chained := waitServing(t, env); len(chained) != 6 {
		t.Fatalf("targets in chains: %+v, want 6 (two chains of 3)", chained)
	}
	tok := adminToken(t, data)
	_, addr1 := nodeReady(t, data, 1)
	_, addr2 := nodeReady(t, data, 2)
	tenv := append(env, "FFF_TOKEN="+tok) // for FFF_CLUSTER=another node
	_, term := leaderOf(t, tenv, addr2, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := libfff.Connect(ctx, libfff.Options{Address: addr1, Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Routing(ctx); err != nil { // the client learns the other nodes
		t.Fatal(err)
	}
	files := map[string][]byte{}
	write := func(name string, seed uint64) {
		t.Helper()
		want := randData(rand.New(rand.NewPCG(seed, 1)), 5<<20+int(seed))
		f, err := c.Create(ctx, name)
		if err == nil {
			_, err = f.Write(want)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
		files[name] = want
	}
	readAll := func(when string) {
		t.Helper()
		for name, want := range files {
			f, err := c.Open(ctx, name, os.O_RDONLY, 0)
			if err != nil {
				t.Fatalf("%s: open %s: %v", when, name, err)
			}
			got, err := io.ReadAll(f)
			f.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("%s: read %s: %d bytes, %v; differs from what was written", when, name, len(got), err)
			}
		}
	}
	write("/a", 1)

	// Node 1, the client's own address, dies.
	pid1, _ := nodeReady(t, data, 1)
	syscall.Kill(pid1, syscall.SIGKILL)
	if _, err := c.Stat(ctx, "/a"); err != nil { // idempotent: moves to another node
		t.Fatalf("stat after node 1's death: %v", err)
	}
	write("/b", 2)
	readAll("node 1 dead")
	leader, term := leaderOf(t, tenv, addr2, term-1)
	mustFFF(t, env, "up", "--daemon", "--data", data) // starts node 1 again
	waitServing(t, env)

	// The mgmtd leader dies.
	pid, _ := nodeReady(t, data, int(leader))
	syscall.Kill(pid, syscall.SIGKILL)
	alive := addr2
	if leader == 2 {
		_, alive = nodeReady(t, data, 3)
	}
	if _, err := c.Stat(ctx, "/a"); err != nil {
		t.Fatalf("stat after the leader's death: %v", err)
	}
	leader2, term2 := leaderOf(t, tenv, alive, term)
	if leader2 == leader {
		t.Fatalf("node %d leads again (term %d) while dead", leader2, term2)
	}
	write("/c", 3)
	readAll("leader dead")
	mustFFF(t, env, "up", "--daemon", "--data", data)
	waitServing(t, env)
	readAll("all back")
	mustFFF(t, env, "down", "--data", data)
}
