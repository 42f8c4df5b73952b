package tests

import (
	"archive/tar"
	"compress/gzip"
	"encoding/json"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statusHealth runs `fff status --json` and returns the health it reports
// with the exit status.
func statusHealth(t *testing.T, env []string) (state string, reasons []string, code int) {
	t.Helper()
	r := fff(t, env, "status", "--json")
	var st struct {
		Health struct {
			State   string   `json:"state"`
			Reasons []string `json:"reasons"`
		} `json:"health"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("fff status --json: exit %d, %v\nstdout: %s\nstderr: %s", r.code, err, r.stdout, r.stderr)
	}
	return st.Health.State, st.Health.Reasons, r.code
}

// waitHealth polls `fff status` until it reports state, and checks its
// exit status. The deadline only bounds a failure.
func waitHealth(t *testing.T, env []string, state string, code int) []string {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		got, reasons, c := statusHealth(t, env)
		if got == state {
			if c != code {
				t.Fatalf("fff status: %s with exit %d, want exit %d", got, c, code)
			}
			return reasons
		}
		if time.Now().After(deadline) {
			t.Fatalf("fff status still says %s (%v, exit %d), want %s", got, reasons, c, state)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStatusHealth: `fff status` is the health summary. On a replicated
// cluster (a control node and two storage nodes, replication 3) it says
// healthy (exit 0); with a storage node killed it says degraded once mgmtd
// declares the node down (exit 3), naming the node and the chains short of
// a copy, and the text form leads with the same; with the node back it
// says healthy again only after the node's targets have resynced.
func TestStatusHealth(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	upReplicated(t, env, data, 2, 2*time.Second)
	waitServing(t, env)
	if state, reasons, code := statusHealth(t, env); state != "healthy" || code != 0 || len(reasons) != 0 {
		t.Fatalf("fff status of a whole cluster: %s %v, exit %d", state, reasons, code)
	}
	if out := mustFFF(t, env, "status"); !strings.HasPrefix(out, "health:       healthy\n") {
		t.Fatalf("fff status does not lead with its health:\n%s", out)
	}

	// fff top through a pipe: two tables of every node's figures, read
	// from the metrics listeners the nodes report in their heartbeats.
	top := mustFFF(t, env, "top", "--count", "2", "--interval", "300ms")
	if strings.Contains(top, "\x1b") || strings.Count(top, "fff top ") != 2 || !strings.Contains(top, "health: healthy") {
		t.Fatalf("fff top --count 2 through a pipe:\n%s", top)
	}
	for _, id := range []string{"1", "2", "3"} {
		found := false
		for _, l := range strings.Split(top, "\n") {
			if f := strings.Fields(l); len(f) == 11 && f[0] == id && f[2] == "up" {
				found = true
			}
		}
		if !found {
			t.Errorf("fff top has no figures for node %s:\n%s", id, top)
		}
	}

	pid, _ := nodeReady(t, data, 3)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	reasons := waitHealth(t, env, "degraded", 3)
	all := strings.Join(reasons, "\n")
	for _, want := range []string{"node 3 ", "is down", "copies"} {
		if !strings.Contains(all, want) {
			t.Errorf("degraded, but the reasons do not say %q:\n%s", want, all)
		}
	}
	r := fff(t, env, "status")
	if r.code != 3 || !strings.HasPrefix(r.stdout, "health:       degraded\n") || !strings.Contains(r.stdout, "node 3 ") {
		t.Fatalf("fff status with node 3 down: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// Writes while the node is down give its target something to resync.
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, randData(rand.New(rand.NewPCG(3, 3)), 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", src, "/while-down")

	mustFFF(t, env, "up", "--daemon", "--data", data)
	waitHealth(t, env, "healthy", 0)
	for _, tg := range targetsOf(t, env) {
		if tg.ChainID != 0 && tg.State != "serving" {
			t.Fatalf("fff status says healthy with target %+v not serving", tg)
		}
	}

	// fff admin dump: one archive with status, every node's metrics, the
	// configs and the logs, and never the admin token.
	out := t.TempDir()
	archive := strings.TrimSpace(mustFFF(t, env, "admin", "dump", out))
	files := readTarGz(t, archive)
	for _, want := range []string{"fff-dump/status.json", "fff-dump/status.txt", "fff-dump/metrics/node-1.txt",
		"fff-dump/metrics/node-2.txt", "fff-dump/metrics/node-3.txt", "fff-dump/config/local.toml",
		"fff-dump/logs/fffd.log", "fff-dump/logs/nodes/2/fffd.log"} {
		if _, ok := files[want]; !ok {
			t.Errorf("the dump has no %s: %v", want, keys(files))
		}
	}
	if !strings.Contains(files["fff-dump/metrics/node-2.txt"], "fff_rpc_server_requests_total") {
		t.Errorf("node 2's metrics in the dump: %.300s", files["fff-dump/metrics/node-2.txt"])
	}
	tok := adminToken(t, data)
	for name, body := range files {
		if strings.Contains(body, tok) {
			t.Errorf("the dump's %s holds the admin token", name)
		}
	}
}

// readTarGz reads every file of a .tar.gz.
func readTarGz(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = string(b)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
