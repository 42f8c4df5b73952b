package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLINamespace runs the namespace commands through the fff binary with
// FFF_CLUSTER/FFF_TOKEN and checks the result through libfff.
func TestCLINamespace(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	c := cl.admin(t)
	env := cl.env(cl.token)

	mustFFF(t, env, "mkdir", "-p", "/c/d/e", "fff:///c/x")
	mustFFF(t, env, "mkdir", "-m", "700", "/c/private")
	mustFFF(t, env, "touch", "/c/f", "/c/g", "/c/d/e/inside")
	mustFFF(t, env, "ln", "-s", "d/e", "/c/link")
	mustFFF(t, env, "ln", "/c/f", "/c/hard")
	mustFFF(t, env, "chmod", "u+x,g-r", "/c/f")
	mustFFF(t, env, "chown", "5:6", "/c/g")
	if got := mustFFF(t, env, "ls", "/c"); got != "d\nf\ng\nhard\nlink\nprivate\nx\n" {
		t.Fatalf("ls /c:\n%s", got)
	}
	long := mustFFF(t, env, "ls", "-l", "fff:///c")
	for _, re := range []string{
		// Columns are padded (ls aligns them; the day of the month is
		// space-padded on days 1-9), so fields are separated by runs of spaces.
		`(?m)^drwxr-xr-x +1 +0 +0 +0 +\w{3} +\d{1,2} +\d\d:\d\d d$`,
		`(?m)^-rwx---r-- +2 +0 +0 +0 .* f$`,
		`(?m)^-rw-r--r-- +1 +5 +6 +0 .* g$`,
		`(?m)^lrwxrwxrwx +1 +0 +0 +3 .* link -> d/e$`,
		`(?m)^drwx------ +1 +0 +0 +0 .* private$`,
	} {
		if !regexp.MustCompile(re).MatchString(long) {
			t.Errorf("ls -l output does not match %s:\n%s", re, long)
		}
	}
	if got := mustFFF(t, env, "ls", "-a", "/c/d"); got != ".\n..\ne\n" {
		t.Errorf("ls -a /c/d:\n%s", got)
	}
	if got := mustFFF(t, env, "ls", "fff://"+cl.addr+"/c/link"); got != "inside\n" {
		t.Errorf("ls through a symlink, cluster named by address:\n%s", got)
	}
	st := mustFFF(t, env, "stat", "/c/f", "/c/link")
	for _, want := range []string{"File:        /c/f\n", "Type:        file\n", "Mode:        0704 (-rwx---r--)\n", "Links:       2\n", "Chunk size:  4194304 (4.0 MiB)\n", "Stripe:      2\n", "File:        /c/link -> d/e\n"} {
		if !strings.Contains(st, want) {
			t.Errorf("stat output lacks %q:\n%s", want, st)
		}
	}
	// stat --json: lower-case keys, words for enums, times as text.
	var js struct {
		Path   string `json:"path"`
		Type   string `json:"type"`
		Mode   string `json:"mode"`
		Perms  string `json:"perms"`
		UID    uint32 `json:"uid"`
		GID    uint32 `json:"gid"`
		Mtime  string `json:"mtime"`
		Target string `json:"target"`
		Layout *struct {
			ChunkSize uint32   `json:"chunk_size"`
			Stripe    uint32   `json:"stripe"`
			Chains    []uint32 `json:"chains"`
		} `json:"layout"`
	}
	if err := json.Unmarshal([]byte(mustFFF(t, env, "stat", "--json", "/c/g")), &js); err != nil || js.Path != "/c/g" || js.Type != "file" ||
		js.Mode != "0644" || js.Perms != "-rw-r--r--" || js.UID != 5 || js.GID != 6 || js.Layout == nil || js.Layout.ChunkSize != 4<<20 ||
		js.Layout.Stripe != 2 || len(js.Layout.Chains) != 2 {
		t.Errorf("stat --json /c/g: %+v, %v", js, err)
	}
	if mt, err := time.Parse(time.RFC3339Nano, js.Mtime); err != nil || time.Since(mt) > time.Hour || time.Since(mt) < -time.Hour {
		t.Errorf("stat --json mtime %q: %v", js.Mtime, err)
	}
	js.Layout = nil
	if err := json.Unmarshal([]byte(mustFFF(t, env, "stat", "--json", "/c/link")), &js); err != nil || js.Type != "symlink" || js.Target != "d/e" || js.Layout != nil {
		t.Errorf("stat --json /c/link: %+v, %v", js, err)
	}
	if raw := mustFFF(t, env, "stat", "--json", "/c"); !strings.Contains(raw, `"type":"dir"`) || strings.Contains(raw, `"Type"`) {
		t.Errorf("stat --json /c: %s", raw)
	}

	// mv: rename, into a directory, several into a directory.
	mustFFF(t, env, "mv", "/c/g", "/c/g2")
	mustFFF(t, env, "mv", "/c/g2", "/c/d")
	mustFFF(t, env, "mv", "/c/hard", "fff:///c/x", "/c/private")
	for _, p := range []string{"/c/d/g2", "/c/private/hard", "/c/private/x"} {
		if _, err := c.Lstat(ctx, p); err != nil {
			t.Errorf("after mv: %v", err)
		}
	}

	// Errors: coreutils style, exit 1, the other paths still done.
	errCases := []struct {
		args []string
		want string
	}{
		{[]string{"mkdir", "/c", "/c/new"}, "fff mkdir: /c: file exists\n"},
		{[]string{"ls", "/nope"}, "fff ls: /nope: no such file or directory\n"},
		{[]string{"rm", "/c/d"}, "fff rm: /c/d: is a directory\n"},
		{[]string{"rm", "/nope"}, "fff rm: /nope: no such file or directory\n"},
		{[]string{"mv", "/c", "/c/d/e"}, "fff mv: /c: invalid argument\n"},
		{[]string{"mkdir", "/c/f/x"}, "fff mkdir: /c/f/x: not a directory\n"},
		{[]string{"ln", "-s", "x", "/c/f"}, "fff ln: /c/f: file exists\n"},
		{[]string{"stat", "/nope", "/c"}, "fff stat: /nope: no such file or directory\n"},
	}
	for _, ec := range errCases {
		r := fff(t, env, ec.args...)
		if r.code != 1 || r.stderr != ec.want {
			t.Errorf("fff %s: exit %d, stderr %q; want 1, %q", strings.Join(ec.args, " "), r.code, r.stderr, ec.want)
		}
	}
	if _, err := c.Stat(ctx, "/c/new"); err != nil {
		t.Errorf("mkdir went on after a failed path: %v", err)
	}
	if r := fff(t, env, "mkdir"); r.code != 2 {
		t.Errorf("mkdir without paths: exit %d, want 2 (usage)", r.code)
	}
	if r := fff(t, env, "chmod", "9z", "/c"); r.code != 2 {
		t.Errorf("chmod with a bad mode: exit %d, want 2 (usage)", r.code)
	}
	if r := fff(t, env, "rm", "-f", "/nope"); r.code != 0 || r.stderr != "" {
		t.Errorf("rm -f of a missing path: %+v", r)
	}

	// A refused token and no cluster at all.
	if r := fff(t, cl.env("bogus"), "ls", "/"); r.code != 1 || !strings.Contains(r.stderr, "refused the token") {
		t.Errorf("ls with a bad token: %+v", r)
	}
	if r := fff(t, append(cleanEnv(), "XDG_CONFIG_HOME="+t.TempDir()), "ls", "/"); r.code != 1 || !strings.Contains(r.stderr, "fff up") {
		t.Errorf("ls without a cluster: %+v", r)
	}

	// rm -r, then the tree is gone.
	mustFFF(t, env, "rm", "-r", "/c")
	if got := mustFFF(t, env, "ls", "/"); got != "" {
		t.Errorf("after rm -r: ls / = %q", got)
	}
}

// TestUpLsDown runs `fff up --daemon`, `fff ls /` and `fff down` through
// the binaries, with the cluster file in a temporary XDG_CONFIG_HOME.
func TestUpLsDown(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) }) // whatever happened, no fffd outlives the test
	out := mustFFF(t, env, "up", "--daemon", "--data", data)
	if !strings.Contains(out, "admin token:") || !strings.Contains(out, "running in the background") {
		t.Fatalf("fff up printed:\n%s", out)
	}
	clusterFile := filepath.Join(config, "fff", "cluster.json")
	if _, err := os.Stat(clusterFile); err != nil {
		t.Fatalf("no cluster file: %v", err)
	}
	var ri struct{ PID int }
	b, err := os.ReadFile(filepath.Join(data, "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil || ri.PID <= 0 {
		t.Fatalf("fffd.json: %s %v", b, err)
	}

	if got := mustFFF(t, env, "ls", "/"); got != "" {
		t.Fatalf("ls / of a new cluster: %q", got)
	}
	mustFFF(t, env, "mkdir", "/hello")
	if got := mustFFF(t, env, "ls", "fff:///"); got != "hello\n" {
		t.Fatalf("ls / = %q", got)
	}

	out = mustFFF(t, env, "down", "--data", data)
	if !strings.Contains(out, "stopped") {
		t.Fatalf("fff down printed:\n%s", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(ri.PID, 0) == nil && !zombie(ri.PID) {
		if time.Now().After(deadline) {
			t.Fatalf("fffd (pid %d) still runs after fff down", ri.PID)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The record stays: the cluster comes back at the same address.
	before, err := os.ReadFile(clusterFile)
	if err != nil {
		t.Fatalf("cluster file after fff down: %v", err)
	}
	if r := fff(t, env, "ls", "/"); r.code != 1 || !strings.Contains(r.stderr, "fff up") {
		t.Fatalf("ls after fff down: %+v (want exit 1 and a hint to run fff up)", r)
	}
	addr := clusterAddr(t, before)
	mustFFF(t, env, "up", "--daemon", "--data", data)
	after, _ := os.ReadFile(clusterFile)
	if got := clusterAddr(t, after); got != addr {
		t.Fatalf("fff up after fff down serves at %s, before at %s", got, addr)
	}
	if got := mustFFF(t, env, "ls", "/"); got != "hello\n" {
		t.Fatalf("ls / after restart = %q", got)
	}

	// A second cluster elsewhere does not take the default's place, and
	// stopping it leaves the default's record alone.
	other := t.TempDir()
	t.Cleanup(func() { killCluster(other) })
	out = mustFFF(t, env, "up", "--daemon", "--data", other)
	if !strings.Contains(out, "export FFF_CLUSTER=") || !strings.Contains(out, "not the default cluster") {
		t.Errorf("fff up --data OTHER printed:\n%s", out)
	}
	if b, _ := os.ReadFile(clusterFile); clusterAddr(t, b) != addr {
		t.Errorf("fff up --data OTHER replaced the default cluster's record: %s", b)
	}
	mustFFF(t, env, "down", "--data", other)
	if b, _ := os.ReadFile(clusterFile); clusterAddr(t, b) != addr {
		t.Errorf("fff down --data OTHER changed the default cluster's record: %s", b)
	}
	mustFFF(t, env, "down", "--data", data)
}

// clusterAddr is the address a cluster file records.
func clusterAddr(t *testing.T, b []byte) string {
	t.Helper()
	var info struct{ Address string }
	if err := json.Unmarshal(b, &info); err != nil || info.Address == "" {
		t.Fatalf("cluster file %q: %v", b, err)
	}
	return info.Address
}

// killCluster kills the fffd serving data and its storage nodes (fff up
// --storage-nodes), if any.
func killCluster(data string) {
	nodes, _ := filepath.Glob(filepath.Join(data, "nodes", "*", "fffd.json"))
	for _, f := range append(nodes, filepath.Join(data, "fffd.json")) {
		var ri struct{ PID int }
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID > 0 {
			syscall.Kill(ri.PID, syscall.SIGKILL)
		}
	}
}

// zombie reports whether pid has exited but not been reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
