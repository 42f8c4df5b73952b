package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFUSEWriteback mounts with --writeback: small files written and copied
// (cp -a) through it read back at once through the same mount, and are
// whole for other clients after `sync DIR` (an fsync of a directory) and
// after `fff umount`, which wait for the background closes.
func TestFUSEWriteback(t *testing.T) {
	needFUSE(t)
	needTool(t, "cp", "coreutils")
	c := startClusterAt(t)
	wb := mountCluster(t, c, "--writeback")
	cl := c.admin(t)
	r := rand.New(rand.NewPCG(3, 4))

	src := t.TempDir()
	want := map[string][]byte{}
	for i := range 60 {
		data := randData(r, 1+r.IntN(40<<10))
		name := fmt.Sprintf("f%02d", i)
		if err := os.WriteFile(filepath.Join(src, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
		want[name] = data
	}
	if out, err := exec.Command("cp", "-a", src, filepath.Join(wb.dir, "copy")).CombinedOutput(); err != nil {
		t.Fatalf("cp -a into the --writeback mount: %v: %s", err, out)
	}
	// The mount sees its own writes at once.
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(wb.dir, "copy", name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s read back through the mount: %d bytes (%v), want the %d written", name, len(got), err, len(data))
		}
	}
	if out, err := exec.Command("sync", filepath.Join(wb.dir, "copy")).CombinedOutput(); err != nil {
		t.Fatalf("sync DIR: %v: %s", err, out)
	}
	for name, data := range want {
		if got := get(t, cl, "/copy/"+name); !bytes.Equal(got, data) {
			t.Fatalf("/copy/%s after sync DIR, read natively: %d bytes, want the %d written", name, len(got), len(data))
		}
	}

	// Written with write(2) and close(2), then unmounted: all there.
	for name, data := range want {
		if err := os.WriteFile(filepath.Join(wb.dir, "w-"+name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if res := fff(t, wb.env, "umount", "--timeout", "60s", wb.dir); res.code != 0 {
		t.Fatalf("fff umount: exit %d: %s", res.code, res.stderr)
	}
	for name, data := range want {
		if got := get(t, cl, "/w-"+name); !bytes.Equal(got, data) {
			t.Fatalf("/w-%s after unmounting, read natively: %d bytes, want the %d written", name, len(got), len(data))
		}
	}
}
