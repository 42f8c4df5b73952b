package tests

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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

// TestDamagedMetaRecord: one undecodable record of a stopped cluster's
// meta.db fails the operations that touch it with EIO; the rest of the
// namespace keeps working and fffd stays up.
func TestDamagedMetaRecord(t *testing.T) {
	c := startCluster(t)
	env := c.env(c.token)
	mustFFF(t, env, "mkdir", "/a")
	mustFFF(t, env, "touch", "/a/x", "/a/y")
	fi, err := c.admin(t).Stat(ctxFor(t), "/a/x")
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Inode.Ino
	c.stop(t)

	// The inode record of /a/x: 'I' and the big-endian inode number
	// (server/meta/keys.go), in bucket "kv"; 0xc1 is no msgpack value.
	db, err := bolt.Open(filepath.Join(c.data, "meta.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key := binary.BigEndian.AppendUint64([]byte{'I'}, ino)
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("kv"))
		if b == nil {
			return errors.New(`no bucket "kv"`)
		}
		if b.Get(key) == nil {
			return errors.New("no inode record of /a/x")
		}
		return b.Put(key, []byte{0xc1, 'g', 'a', 'r', 'b', 'a', 'g', 'e'})
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	c.start(t)
	env = c.env(c.token) // a new address
	r := fff(t, env, "stat", "/a/x")
	if r.code != 1 || !strings.Contains(r.stderr, "input/output error") {
		t.Errorf("fff stat of the damaged /a/x: exit %d, want 1 and an input/output error\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	mustFFF(t, env, "stat", "/a/y")
	if out := mustFFF(t, env, "ls", "/a"); !strings.Contains(out, "x") || !strings.Contains(out, "y") {
		t.Errorf("fff ls /a = %q, want x and y", out)
	}
	if err := syscall.Kill(c.pid, 0); err != nil {
		t.Errorf("fffd died: %v", err)
	}
	select {
	case <-c.done:
		t.Errorf("fffd exited: %v", c.state)
	default:
	}
}
