package tests

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fff/server/kv/bboltkv"
)

// TestDamagedMetaDB: fffd refuses a meta.db cut short (of a stopped
// cluster) with a message naming it and `fffd check`, instead of dying of
// SIGBUS or a panic; `fffd check` reports the file and exits 1.
func TestDamagedMetaDB(t *testing.T) {
	c := startCluster(t)
	mustFFF(t, c.env(c.token), "mkdir", "/d")
	c.stop(t)

	path := filepath.Join(c.data, "meta.db")
	h, err := bboltkv.CheckFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Cut into the pages in use: what bbolt would map and fault on.
	if err := os.Truncate(path, int64(h.Pages-1)*int64(h.PageSize)); err != nil {
		t.Fatal(err)
	}

	// Bounded: an unprotected fffd can hang on the damaged file.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "fffd"), "local", "--data", c.data, "--listen", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("fffd on a truncated meta.db: %v, want exit status 1; output:\n%s", err, out)
	}
	msg := string(out)
	for _, want := range []string{path, "fffd check"} {
		if !strings.Contains(msg, want) {
			t.Errorf("fffd's message does not name %q:\n%s", want, msg)
		}
	}
	for _, crash := range []string{"panic", "SIGBUS", "goroutine "} {
		if strings.Contains(msg, crash) {
			t.Errorf("fffd crashed (%q) instead of refusing:\n%s", crash, msg)
		}
	}

	out, err = exec.CommandContext(ctx, filepath.Join(binDir, "fffd"), "check", c.data).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("fffd check: %v, want exit status 1; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), path) || !strings.Contains(string(out), "truncated") {
		t.Errorf("fffd check does not report the truncated meta.db:\n%s", out)
	}
}
