package main

// End-to-end tests of `fff status` and `fff admin` through the real binaries:
// fff (built by TestMain in e2e_test.go) and fffd (built here, once, next to
// it, so `fff` finds it too), against an `fffd local` on a temporary data
// directory.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	fffdOnce  sync.Once
	fffdBin   string
	fffdBuild error
)

// buildFFFD builds cmd/fffd into the directory of the fff test binary
// (removed by TestMain).
func buildFFFD(t *testing.T) string {
	t.Helper()
	fffdOnce.Do(func() {
		fffdBin = filepath.Join(filepath.Dir(fffBin), "fffd")
		cmd := exec.Command("go", "build", "-ldflags=-checklinkname=0", "-o", fffdBin, "../fffd")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			fffdBuild = fmt.Errorf("building fffd: %v\n%s", err, out.String())
		}
	})
	if fffdBuild != nil {
		t.Fatal(fffdBuild)
	}
	return fffdBin
}

// localCluster is an `fffd local` started for one test.
type localCluster struct {
	data, addr, token string
	config            string // XDG_CONFIG_HOME for the CLI
}

// startLocalCluster starts `fffd local` on a temporary data directory and
// stops it when the test ends, whatever the outcome (and if the test binary
// dies, the kernel kills it: Pdeathsig).
func startLocalCluster(t *testing.T) *localCluster {
	t.Helper()
	bin := buildFFFD(t)
	lc := &localCluster{data: t.TempDir(), config: t.TempDir()}
	logPath := filepath.Join(t.TempDir(), "fffd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "local", "--data", lc.data, "--listen", "127.0.0.1:0", "--log-format", "json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("fffd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ri readyInfo
		b, err := os.ReadFile(filepath.Join(lc.data, readyFile))
		if err == nil && json.Unmarshal(b, &ri) == nil && ri.PID == cmd.Process.Pid {
			lc.addr = ri.Address
			break
		}
		select {
		case <-exited:
			t.Fatalf("fffd exited before it was ready")
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("fffd did not come up within 30s")
		}
	}
	tok, err := os.ReadFile(filepath.Join(lc.data, tokenFile))
	if err != nil {
		t.Fatal(err)
	}
	lc.token = strings.TrimSpace(string(tok))
	return lc
}

// run runs the CLI against the cluster with token (FFF_CLUSTER and
// FFF_TOKEN set, the config directory private to the test).
func (lc *localCluster) run(t *testing.T, token string, args ...string) result {
	t.Helper()
	return fffEnv(t, []string{"FFF_CLUSTER=" + lc.addr, "FFF_TOKEN=" + token, "XDG_CONFIG_HOME=" + lc.config}, args...)
}

// fffEnv runs the CLI with env added to a copy of the environment without
// any FFF_* or XDG_CONFIG_HOME variables.
func fffEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(fffBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FFF_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running fff %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

func mustRun(t *testing.T, r result, args ...string) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("fff %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

func TestStatusAndAdmin(t *testing.T) {
	lc := startLocalCluster(t)
	admin := func(args ...string) result { t.Helper(); return mustRun(t, lc.run(t, lc.token, args...), args...) }

	out := admin("status").stdout
	for _, want := range []string{"cluster:      " + lc.addr, "nodes:        1 (1 up, 0 down)",
		"targets:      2 (2 serving, 0 syncing, 0 offline)", "chain tables: 1", "admin (uid 0", "inodes:       1"} {
		if !strings.Contains(out, want) {
			t.Errorf("fff status lacks %q:\n%s", want, out)
		}
	}
	var st clusterStatus
	if err := json.Unmarshal([]byte(admin("status", "--json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Address != lc.addr || st.Nodes.Up != 1 || st.Nodes.Total != 1 || st.Targets.Serving != 2 ||
		st.Chains != 2 || st.ChainTables != 1 || st.StatFS == nil || st.StatFS.Inodes != 1 ||
		st.User == nil || !st.User.Admin || len(st.Routing.Targets) != 2 || st.RoutingVersion == 0 {
		t.Errorf("fff status --json: %+v", st)
	}

	// Both default targets live on the data directory's filesystem: its
	// capacity counts once (after the first heartbeat with stats).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		out := admin("status").stdout
		if strings.Contains(out, "one replica per chain; 2 targets on 1 filesystem)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("fff status does not count the shared filesystem once:\n%s", out)
		}
	}
	var fs syscall.Statfs_t
	if err := syscall.Statfs(lc.data, &fs); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(admin("status", "--json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if want := fs.Blocks * uint64(fs.Bsize); st.StatFS == nil || st.StatFS.TotalBytes != want ||
		st.Targets.Capacity != want || st.Targets.Filesystems != 1 || st.Targets.Reported != 2 {
		t.Errorf("fff status --json capacity (want %d, once): statfs %+v targets %+v", want, st.StatFS, st.Targets)
	}

	if out := admin("admin", "nodes").stdout; !strings.Contains(out, "mgmtd,meta,storage") || !strings.Contains(out, " up ") {
		t.Errorf("fff admin nodes:\n%s", out)
	}
	if out := admin("admin", "targets").stdout; strings.Count(out, "serving") != 2 || !strings.Contains(out, filepath.Join(lc.data, "targets")) {
		t.Errorf("fff admin targets:\n%s", out)
	}
	if out := admin("admin", "chains").stdout; !strings.Contains(out, "1(serving)") || !strings.Contains(out, "CHAIN TABLES") {
		t.Errorf("fff admin chains:\n%s", out)
	}

	// A user: its token is printed once, alone on stdout.
	add := admin("admin", "user", "add", "alice", "--uid", "1000")
	alice := strings.TrimSpace(add.stdout)
	if alice == "" || strings.ContainsAny(alice, " \n") || !strings.Contains(add.stderr, "alice") {
		t.Fatalf("fff admin user add: stdout %q stderr %q", add.stdout, add.stderr)
	}
	if r := lc.run(t, lc.token, "admin", "user", "add", "alice", "--uid", "1001"); r.code != 1 || !strings.Contains(r.stderr, "EEXIST") {
		t.Errorf("adding alice twice: exit %d, stderr %q", r.code, r.stderr)
	}

	// alice is no admin.
	r := lc.run(t, alice, "admin", "user", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "permission denied") || !strings.Contains(r.stderr, "needs an admin token") || r.stdout != "" {
		t.Errorf("user list as alice: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := lc.run(t, alice, "admin", "user", "add", "mallory", "--uid", "0", "--admin"); r.code != 1 {
		t.Errorf("user add as alice: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := mustRun(t, lc.run(t, alice, "status")).stdout; !strings.Contains(out, "alice (uid 1000") {
		t.Errorf("fff status as alice:\n%s", out)
	}

	list := admin("admin", "user", "list").stdout
	if !strings.Contains(list, "alice") || !strings.Contains(list, "1000") || !strings.Contains(list, "admin") {
		t.Errorf("fff admin user list:\n%s", list)
	}
	var users []struct {
		Name  string   `json:"name"`
		UID   uint32   `json:"uid"`
		GIDs  []uint32 `json:"gids"`
		Admin bool     `json:"admin"`
	}
	if err := json.Unmarshal([]byte(admin("admin", "user", "list", "--json").stdout), &users); err != nil || len(users) != 2 {
		t.Fatalf("user list --json: %v %+v", err, users)
	}

	// Rotating a token retires the old one.
	rot := strings.TrimSpace(admin("admin", "user", "token", "alice").stdout)
	if rot == "" || rot == alice {
		t.Fatalf("rotated token %q", rot)
	}
	if r := lc.run(t, alice, "status"); r.code != 1 || !strings.Contains(r.stderr, "refused the token") {
		t.Errorf("status with the old token: exit %d, stderr %q", r.code, r.stderr)
	}
	mustRun(t, lc.run(t, rot, "status"))

	// Removed, the user's token no longer authenticates.
	if out := admin("admin", "user", "remove", "alice").stdout; !strings.Contains(out, "removed user alice") {
		t.Errorf("user remove: %q", out)
	}
	if r := lc.run(t, rot, "status"); r.code != 1 || !strings.Contains(r.stderr, "refused the token") {
		t.Errorf("status with a removed user's token: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := lc.run(t, lc.token, "admin", "user", "remove", "alice"); r.code != 1 || !strings.Contains(r.stderr, `no user "alice"`) || !strings.Contains(r.stderr, "ENOENT") {
		t.Errorf("removing alice twice: exit %d, stderr %q", r.code, r.stderr)
	}
	// The admin is refused for what it is asking, not for its token.
	if r := lc.run(t, lc.token, "admin", "user", "remove", "admin"); r.code != 1 ||
		!strings.Contains(r.stderr, `cannot remove user "admin": it is the last admin user`) || strings.Contains(r.stderr, "needs an admin token") {
		t.Errorf("removing the last admin: exit %d, stderr %q", r.code, r.stderr)
	}

	// Usage errors.
	for _, args := range [][]string{{"admin", "user", "add", "bob"}, {"admin", "user", "add"}, {"admin", "nope"}, {"status", "extra"}} {
		if r := lc.run(t, lc.token, args...); r.code != 2 {
			t.Errorf("fff %v: exit %d, want 2 (stderr %q)", args, r.code, r.stderr)
		}
	}
}

// TestStatusFromClusterFile: without FFF_CLUSTER the CLI finds the cluster
// that `fff up` recorded in the config directory.
func TestStatusFromClusterFile(t *testing.T) {
	lc := startLocalCluster(t)
	b, _ := json.Marshal(map[string]any{"address": lc.addr, "token": lc.token, "data_dir": lc.data})
	writeFile(t, filepath.Join(lc.config, "fff", "cluster.json"), b)
	r := mustRun(t, fffEnv(t, []string{"XDG_CONFIG_HOME=" + lc.config}, "status"), "status")
	if !strings.Contains(r.stdout, lc.addr+" (local cluster, data "+lc.data) {
		t.Errorf("fff status:\n%s", r.stdout)
	}
}

func TestStatusWithoutCluster(t *testing.T) {
	r := fffEnv(t, []string{"XDG_CONFIG_HOME=" + t.TempDir()}, "status")
	if r.code != 1 || !strings.Contains(r.stderr, "fff up") {
		t.Errorf("no cluster configured: exit %d, stderr %q", r.code, r.stderr)
	}
	// Nothing listens on port 1.
	r = fffEnv(t, []string{"XDG_CONFIG_HOME=" + t.TempDir(), "FFF_CLUSTER=127.0.0.1:1", "FFF_TOKEN=x"}, "admin", "nodes")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot reach") || !strings.Contains(r.stderr, "fff up") {
		t.Errorf("cluster not running: exit %d, stderr %q", r.code, r.stderr)
	}
}
