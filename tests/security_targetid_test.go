package tests

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// targetRow is a target as `fff admin targets --json` lists it.
type targetRow struct {
	ID      uint32 `json:"id"`
	Node    uint32 `json:"node_id"`
	Path    string `json:"path"`
	ChainID uint32 `json:"chain_id"`
	State   string `json:"state"`
}

// adminTargets returns the targets `fff admin targets --json` lists.
func adminTargets(t *testing.T, c *cluster) []targetRow { return targetsOf(t, c.env(c.token)) }

// targetsOf is adminTargets for the cluster env reaches.
func targetsOf(t *testing.T, env []string) []targetRow {
	t.Helper()
	var ts []targetRow
	out := mustFFF(t, env, "admin", "targets", "--json")
	if err := json.Unmarshal([]byte(out), &ts); err != nil {
		t.Fatalf("admin targets --json: %v\n%s", err, out)
	}
	return ts
}

// A moved data directory keeps its targets: they are registered by the id
// in their id file, not by path, so no new empty targets appear and the
// file's chunks are found.
func TestTargetIDMovedDataDir(t *testing.T) {
	c := startCluster(t)
	src := filepath.Join(t.TempDir(), "f")
	data := randBytes(300 << 10)
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, c.env(c.token), "put", src, "/f")
	before := adminTargets(t, c)
	c.stop(t)
	for _, n := range []string{"0", "1"} {
		fi, err := os.Stat(filepath.Join(c.data, "targets", n, "target.json"))
		if err != nil {
			t.Fatalf("target %s has no id file: %v", n, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("target %s id file mode %v, want 0600", n, fi.Mode().Perm())
		}
	}

	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(c.data, moved); err != nil {
		t.Fatal(err)
	}
	c.data = moved
	c.start(t)
	if got := mustFFF(t, c.env(c.token), "cat", "/f"); got != string(data) {
		t.Fatalf("file after the move: %d bytes, want the %d put", len(got), len(data))
	}
	after := adminTargets(t, c)
	ids := func(ts []targetRow) (out []uint32) {
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	if !slices.Equal(ids(before), ids(after)) {
		t.Fatalf("targets after the move: %+v, want the ids of %+v", after, before)
	}
	for _, tg := range after {
		if !strings.HasPrefix(tg.Path, moved+string(filepath.Separator)) {
			t.Fatalf("target %d path %q: not updated to the moved directory %s", tg.ID, tg.Path, moved)
		}
	}
}

// A target directory of another cluster is refused, with a message naming
// it: serving it would mix two clusters' chunks.
func TestTargetIDForeignRefused(t *testing.T) {
	a := startCluster(t)
	a.stop(t)
	b := startCluster(t)
	b.stop(t)
	foreign := filepath.Join(b.data, "targets", "1")
	if err := os.RemoveAll(foreign); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", filepath.Join(a.data, "targets", "0"), foreign).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(ctxFor(t), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "fffd"), "local", "--data", b.data, "--listen", "127.0.0.1:0").CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("fffd served with a foreign target directory (killed after 15s)\n%s", lastLines(out, 20))
	}
	if err == nil || !strings.Contains(string(out), foreign) || !strings.Contains(string(out), "another cluster") {
		t.Fatalf("fffd with a foreign target: %v, want a refusal naming %s\n%s", err, foreign, lastLines(out, 20))
	}
}

// Targets of an older data directory, without id files, are matched by path
// as before and get their id files.
func TestTargetIDMigration(t *testing.T) {
	c := startCluster(t)
	before := adminTargets(t, c)
	c.stop(t)
	for _, n := range []string{"0", "1"} {
		if err := os.Remove(filepath.Join(c.data, "targets", n, "target.json")); err != nil {
			t.Fatal(err)
		}
	}
	c.start(t)
	if after := adminTargets(t, c); !slices.Equal(after, before) {
		t.Fatalf("targets after the migration: %+v, want %+v", after, before)
	}
	for _, n := range []string{"0", "1"} {
		if _, err := os.Stat(filepath.Join(c.data, "targets", n, "target.json")); err != nil {
			t.Fatalf("target %s: id file not written back: %v", n, err)
		}
	}
}
