package tests

import (
	"bytes"
	"errors"
	"fff/internal/testdisk"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDiskFullRemovalFreesSpace: on a data disk with no free block left,
// `fff rm` works and its garbage collection gives the space back without a
// restart (the targets' ballast lets the removals commit), and writes work
// again afterwards. Needs root, for a small tmpfs as the data disk.
func TestDiskFullRemovalFreesSpace(t *testing.T) {
	disk := testdisk.Tmpfs(t, "size=128m,mode=0700") // unmounted after fffd is killed
	c := &cluster{data: filepath.Join(disk, "data")}
	if err := os.Mkdir(c.data, 0o700); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	cl := c.admin(t)
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(disk, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Bavail) * int64(st.Bsize)
	}
	for _, b := range []string{"meta.db.ballast", "targets/0/chunks.db.ballast", "targets/1/chunks.db.ballast"} {
		if _, err := os.Stat(filepath.Join(c.data, b)); err != nil {
			t.Fatalf("no ballast: %v", err)
		}
	}
	big := bytes.Repeat([]byte("data on a disk about to fill up "), 1<<20) // 32 MiB
	put(t, cl, "/big", big)
	// Fill the disk through fff until it refuses (the targets' chunk
	// records grow too), then every block left, as another program on the
	// disk would.
	for i := 0; ; i++ {
		f, err := cl.Create(ctxFor(t), fmt.Sprintf("/fill-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.Write(big[:8<<20])
		if cerr := f.Close(); werr != nil || cerr != nil {
			break
		}
	}
	filler, err := os.Create(filepath.Join(disk, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	for n := 1 << 19; n > 0; n /= 2 { // the last blocks
		for {
			if _, err := filler.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	filler.Close()
	if f := free(); f > 0 {
		t.Fatalf("%d bytes still free after filling the disk", f)
	}
	if f, err := cl.Create(ctxFor(t), "/nospace"); err == nil {
		_, werr := f.Write(chunk)
		if cerr := f.Close(); werr == nil && cerr == nil {
			t.Fatal("writing 1 MiB on a full disk succeeded")
		}
	}
	// Metadata too: empty files until meta's KV has no free page left and
	// cannot grow (or many: meta.db may have room for all of them).
	var names []string
	for i := range 20000 {
		f, err := cl.Create(ctxFor(t), fmt.Sprintf("/empty-%05d", i))
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) && !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("creating empty files on a full disk: %v", err)
			}
			break
		}
		f.Close()
		names = append(names, fmt.Sprintf("/empty-%05d", i))
	}
	t.Logf("%d empty files created on the full disk", len(names))
	if len(names) > 0 {
		if r := fff(t, c.env(c.token), append([]string{"rm"}, names[:min(len(names), 200)]...)...); r.code != 0 {
			t.Fatalf("fff rm of empty files on a full disk: exit %d: %s", r.code, r.stderr)
		}
	}
	if r := fff(t, c.env(c.token), "mv", "/big", "/big2"); r.code != 0 {
		t.Fatalf("fff mv on a full disk: exit %d: %s", r.code, r.stderr)
	}
	if r := fff(t, c.env(c.token), "rm", "/big2"); r.code != 0 {
		t.Fatalf("fff rm on a full disk: exit %d: %s", r.code, r.stderr)
	}
	// The garbage collection frees the chunks (polled; it runs within
	// seconds, the bound is only against one that never does).
	deadline := time.Now().Add(60 * time.Second)
	for free() < int64(len(big))/2 {
		if time.Now().After(deadline) {
			t.Fatalf("60 s after fff rm on a full disk, %d bytes free; the removed file's 32 MiB never came back", free())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(c.data, "fffd.log")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "ballast") {
				t.Logf("fffd: %s", l)
			}
		}
	}
	put(t, cl, "/after", []byte("written after space came back"))
	if got := get(t, cl, "/after"); string(got) != "written after space came back" {
		t.Fatalf("read back %q", got)
	}
}
