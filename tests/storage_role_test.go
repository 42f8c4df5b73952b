package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	fffcluster "fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
)

// copyFile copies src to dst (mode 0600).
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startStorageNode starts `fffd storage` as node id on data directory dir
// (targets dir/targets/0 and 1), joined to main's mgmtd, asking main's meta
// about tokens and taking its GC queue, with extra lines for its config's
// [storage] section; it returns the node's address. The node gets copies of
// main's admin token and capability key, nothing else: it keeps no
// metadata. The process is killed when the test ends.
func startStorageNode(t *testing.T, main *cluster, dir string, id uint32, storageExtra ...string) string {
	t.Helper()
	copyFile(t, filepath.Join(main.data, "admin.token"), filepath.Join(dir, "admin.token"))
	copyFile(t, filepath.Join(main.data, "capability.key"), filepath.Join(dir, "capability.key"))
	cfg := fmt.Sprintf(`[node]
id = %d

[mgmtd]
address = %q

[storage]
targets = ["targets/0", "targets/1"]
%s
`, id, main.addr, strings.Join(storageExtra, "\n"))
	if err := os.WriteFile(filepath.Join(dir, "fffd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "fffd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(binDir, "fffd"), "storage", "--config", filepath.Join(dir, "fffd.toml"),
		"--data", dir, "--listen", "127.0.0.1:0", "--log-level", "debug", "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("fffd storage log (%s):\n%s", dir, lastLines(b, 30))
			}
		}
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		var ri struct {
			PID     int    `json:"pid"`
			Address string `json:"address"`
		}
		if b, err := os.ReadFile(filepath.Join(dir, "fffd.json")); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID == pid {
			return ri.Address
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("fffd storage exited before serving:\n%s", lastLines(b, 30))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("fffd storage did not come up within 20s")
		}
	}
}

// TestStorageRoleGC: chunks of deleted files disappear from the targets of
// a separate `fffd storage` process too. Files are striped over the chains
// of both nodes; each GC record is applied by the node that holds the head
// of the file's first chain (through the other node for its chunks there),
// so both nodes' GC loops, and the storage node's RPC GC queue, are at work.
func TestStorageRoleGC(t *testing.T) {
	t.Parallel()
	main := startCluster(t)
	sdir := t.TempDir()
	saddr := startStorageNode(t, main, sdir, 2)
	waitStorageNode(t, main, 2, saddr)
	ctx := ctxFor(t)

	c := main.admin(t)
	chunk := smallChunkDir(t, c, "/split")
	node2 := &cluster{data: sdir}
	r := rand.New(rand.NewPCG(7, 7))
	var names []string
	inos := map[string]uint64{}
	on1, on2 := 0, 0
	for i := range 8 {
		name := fmt.Sprintf("/split/f%d", i)
		data := randData(r, 8*chunk+99)
		put(t, c, name, data)
		if got := get(t, c, name); string(got) != string(data) {
			t.Fatalf("%s reads back wrong", name)
		}
		names = append(names, name)
		inos[name] = inoOf(t, c, name)
		on1 += len(chunkFiles(t, main, inos[name]))
		on2 += len(chunkFiles(t, node2, inos[name]))
	}
	if on1 == 0 || on2 == 0 {
		t.Fatalf("chunk files: %d on node 1, %d on node 2: files are not striped over both nodes", on1, on2)
	}
	keep := "/split/f0"
	keepFiles := len(chunkFiles(t, node2, inos[keep])) + len(chunkFiles(t, main, inos[keep]))
	for _, name := range names[1:] {
		if err := c.Remove(ctx, name); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(40 * time.Second) // GC runs every 5s when idle
	for {
		var left []string
		for _, name := range names[1:] {
			for node, cl := range map[string]*cluster{"node 1": main, "node 2": node2} {
				if files := chunkFiles(t, cl, inos[name]); len(files) > 0 {
					left = append(left, fmt.Sprintf("%s (inode %d): %d chunk(s) on %s", name, inos[name], len(files), node))
				}
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("data files of deleted files still on disk after 40s:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(chunkFiles(t, node2, inos[keep])) + len(chunkFiles(t, main, inos[keep])); n != keepFiles {
		t.Fatalf("the kept file has %d chunk files, want %d", n, keepFiles)
	}
	// The storage node's own GC loop (over meta's RPC queue) applied the
	// records whose first chain it heads.
	b, err := os.ReadFile(filepath.Join(sdir, "fffd.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "storage: garbage collected") {
		t.Errorf("the storage node collected nothing itself; its log:\n%s", lastLines(b, 30))
	}
}

// waitStorageNode waits until node id serves at addr with its two targets
// serving and in the default chain table.
func waitStorageNode(t *testing.T, main *cluster, id uint32, addr string) {
	t.Helper()
	ctx := ctxFor(t)
	pool := rpc.NewPool(main.addr, main.token, rpc.PoolOptions{Size: 1})
	defer pool.Close()
	mg := fffcluster.NewClient(pool)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		ri, err := mg.GetRouting(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		serving, inTable := 0, 0
		for _, tg := range ri.Targets {
			if tg.NodeID == id && tg.State == proto.TargetServing {
				serving++
				if ct := ri.ChainTable(1); ct != nil && slices.Contains(ct.Chains, tg.ChainID) {
					inTable++
				}
			}
		}
		if n := ri.Node(id); serving == 2 && inTable == 2 && n != nil && n.Addr == addr {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d's targets not serving in the chain table: %+v", id, ri)
		}
	}
}

// TestStorageRoleUsers: a storage node keeps no user database; it asks
// meta. A user added after it started writes and reads files striped over
// both nodes at once, and once removed, the storage node refuses the
// user's new connections within its credentials_ttl while the admin's go
// on.
func TestStorageRoleUsers(t *testing.T) {
	t.Parallel()
	main := startCluster(t)
	sdir := t.TempDir()
	saddr := startStorageNode(t, main, sdir, 2, `credentials_ttl = "200ms"`)
	waitStorageNode(t, main, 2, saddr)
	if _, err := os.Stat(filepath.Join(sdir, "meta.db")); err == nil {
		t.Fatal("the storage node made a meta.db")
	}
	ctx := ctxFor(t)
	admin := main.admin(t)
	chunk := smallChunkDir(t, admin, "/u")
	if err := admin.Chmod(ctx, "/u", 0o777); err != nil {
		t.Fatal(err)
	}
	tok, err := admin.UserAdd(ctx, "carol", 3100, []uint32{3100}, false)
	if err != nil {
		t.Fatal(err)
	}
	carol := main.connect(t, tok)
	data := randData(rand.New(rand.NewPCG(5, 5)), 8*chunk+7)
	put(t, carol, "/u/c", data)
	if got := get(t, carol, "/u/c"); string(got) != string(data) {
		t.Fatal("carol's file reads back wrong")
	}
	ino := inoOf(t, admin, "/u/c")
	if len(chunkFiles(t, &cluster{data: sdir}, ino)) == 0 || len(chunkFiles(t, main, ino)) == 0 {
		t.Fatal("carol's file is not striped over both nodes")
	}

	// Removed: a new connection of carol's to the storage node is refused
	// (meta says so once the node's answer is older than its TTL).
	if err := admin.UserRemove(ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := rpc.Dial(ctx, saddr, tok, rpc.ClientOptions{})
		if err != nil {
			if !errors.Is(err, proto.ErrUnauthenticated) {
				t.Fatalf("carol's dial after removal: %v, want Unauthenticated", err)
			}
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the storage node still accepts a removed user's token after 30s")
		}
	}
	c, err := rpc.Dial(ctx, saddr, main.token, rpc.ClientOptions{})
	if err != nil {
		t.Fatalf("the admin's dial to the storage node: %v", err)
	}
	c.Close()
}

// TestStorageRoleNeedsCapabilityKey: a storage node without a copy of the
// cluster's capability key refuses to start, saying which file it needs
// (it could check no client's capability).
func TestStorageRoleNeedsCapabilityKey(t *testing.T) {
	t.Parallel()
	main := startCluster(t)
	sdir := t.TempDir()
	copyFile(t, filepath.Join(main.data, "admin.token"), filepath.Join(sdir, "admin.token"))
	cfg := fmt.Sprintf("[node]\nid = 2\n\n[mgmtd]\naddress = %q\n\n[storage]\ntargets = [\"targets/0\"]\n", main.addr)
	if err := os.WriteFile(filepath.Join(sdir, "fffd.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctxFor(t), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "fffd"), "storage", "--config", filepath.Join(sdir, "fffd.toml"),
		"--data", sdir, "--listen", "127.0.0.1:0", "--log-format", "json").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "capability.key") || !strings.Contains(string(out), "copy") {
		t.Fatalf("fffd storage without the key: %v\n%s", err, out)
	}
}
