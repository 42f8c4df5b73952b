package tests

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/posixtest"

	"fff/ffrecord"
)

// The FUSE mount (libfff/fusefs, `fff mount`), tested against real mounts
// of real `fffd local` clusters: go-fuse's POSIX suite, standard tools,
// fio's verify, FFRecord files read by plain Python, a restart of the
// cluster under the mount, permissions and the CLI's mount life cycle.
// Every test skips with a message where /dev/fuse is missing.

// posixSkipped lists go-fuse's posixtest cases that do not apply, with the
// reason; every other case of posixtest.All must pass.
var posixSkipped = map[string]string{
	"XAttr":               "fff stores no extended attributes",
	"XAttrLarge":          "fff stores no extended attributes",
	"Fallocate":           "fff does not implement fallocate (EOPNOTSUPP)",
	"FallocateKeepSize":   "fff does not implement fallocate (EOPNOTSUPP)",
	"Tmpfile":             "O_TMPFILE is not supported",
	"LseekHoleSeeksToEOF": "fff reports no holes (SEEK_HOLE/SEEK_DATA are not implemented)",
	"LseekEnxioCheck":     "fff reports no holes (SEEK_HOLE/SEEK_DATA are not implemented)",
	"FcntlFlockLocksFile": "record locks are the kernel's, per process (the mount implements no lock owners): the test expects a lock file system",
}

// TestFUSEPosix: go-fuse's posixtest suite (the parts that apply) on a
// real mount, in both mount modes.
func TestFUSEPosix(t *testing.T) { forMountModes(t, posixSuite) }

// forMountModes runs fn as a subtest for each way of mounting whose
// semantics must hold: the default (page cache) and --direct-io.
func forMountModes(t *testing.T, fn func(t *testing.T, mountFlags ...string)) {
	t.Run("PageCache", func(t *testing.T) { fn(t) })
	t.Run("DirectIO", func(t *testing.T) { fn(t, "--direct-io") })
}

// posixSuite runs go-fuse's posixtest suite on a new mount.
func posixSuite(t *testing.T, mountFlags ...string) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c, mountFlags...)
	names := make([]string, 0, len(posixtest.All))
	for name := range posixtest.All {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			if why, ok := posixSkipped[name]; ok {
				t.Skip(why)
			}
			dir := filepath.Join(m.dir, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			posixtest.All[name](t, dir)
		})
	}
}

// TestFUSETools: the mount under the standard tools, checked against the
// same operations on the local disk.
func TestFUSETools(t *testing.T) { forMountModes(t, toolsSuite) }

func toolsSuite(t *testing.T, mountFlags ...string) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c, mountFlags...)
	local := t.TempDir()
	// A source tree with files of several sizes (one spanning chunks), an
	// empty file, a symlink, a hard link, modes and times.
	src := filepath.Join(local, "src")
	r := rand.New(rand.NewPCG(1, 2))
	for i, n := range []int{0, 1, 4095, 4096, 100_000, 5<<20 + 17} {
		dir := filepath.Join(src, fmt.Sprintf("d%d", i%3), "sub")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d", n)), randData(r, n), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	sh(t, src, "ln -s d0/sub/f0 link && ln d1/sub/f1 hard && chmod 0750 d2 && touch -d 2001-02-03T04:05:06Z d1/sub/f1")

	sums := func(dir string) string {
		return sh(t, dir, "find . -type f -print0 | sort -z | xargs -0 sha256sum; find . -printf '%y %m %p %l\\n' | sort")
	}
	want := sums(src)

	// cp -a keeps modes, times, symlinks and (within the copy) hard links.
	sh(t, local, "cp -a src "+m.dir+"/cp")
	if got := sums(filepath.Join(m.dir, "cp")); got != want {
		t.Fatalf("cp -a into the mount:\n%s\nwant\n%s", got, want)
	}
	if a, b := sh(t, src, "stat -c %Y d1/sub/f1"), sh(t, m.dir+"/cp", "stat -c %Y d1/sub/f1"); a != b {
		t.Fatalf("cp -a: mtime %s, want %s", b, a)
	}
	if got := sh(t, m.dir+"/cp", "stat -c %h hard"); strings.TrimSpace(got) != "2" {
		t.Fatalf("cp -a: hard link count %s, want 2", got)
	}
	// tar round trip: pack from the mount, unpack into the mount, compare.
	sh(t, local, "tar -C "+m.dir+"/cp -cf tree.tar . && mkdir "+m.dir+"/untar && tar -C "+m.dir+"/untar -xpf tree.tar")
	if got := sums(filepath.Join(m.dir, "untar")); got != want {
		t.Fatalf("tar round trip:\n%s\nwant\n%s", got, want)
	}
	// mv across directories, ln -s, find.
	sh(t, m.dir, "mkdir -p mv/a mv/b && cp cp/d2/sub/f4095 mv/a/x && mv mv/a/x mv/b/y && mv mv/b mv/a/ && ln -s ../a/b/y mv/a/s")
	if got := sh(t, m.dir, "find mv | sort; cat mv/a/s | sha256sum; sha256sum < cp/d2/sub/f4095"); strings.Count(got, "mv/a/b/y") != 1 || strings.Split(got, "\n")[5] != strings.Split(got, "\n")[6] {
		t.Fatalf("mv/ln -s/find:\n%s", got)
	}
	// Copy back out and compare with the original.
	sh(t, local, "cp -a "+m.dir+"/untar back")
	if got := sums(filepath.Join(local, "back")); got != want {
		t.Fatalf("cp -a out of the mount:\n%s\nwant\n%s", got, want)
	}
	// rsync -a both ways (a second run must copy nothing).
	t.Run("rsync", func(t *testing.T) {
		needTool(t, "rsync", "rsync")
		sh(t, local, "rsync -a src/ "+m.dir+"/rsync/")
		if got := sums(filepath.Join(m.dir, "rsync")); got != want {
			t.Fatalf("rsync -a into the mount:\n%s\nwant\n%s", got, want)
		}
		if out := sh(t, local, "rsync -a --itemize-changes src/ "+m.dir+"/rsync/"); strings.TrimSpace(out) != "" {
			t.Fatalf("second rsync -a copied again:\n%s", out)
		}
	})

	// setattr: chmod, chown, utimes, truncate; statfs.
	f := filepath.Join(m.dir, "attrs")
	if err := os.WriteFile(f, randData(r, 10000), 0o600); err != nil {
		t.Fatal(err)
	}
	sh(t, m.dir, "chmod 0604 attrs && chown 1234:2345 attrs && truncate -s 3000 attrs && touch -d 2010-01-01T00:00:00Z attrs")
	if got := strings.TrimSpace(sh(t, m.dir, "stat -c '%a %u %g %Y %s' attrs")); got != "604 1234 2345 1262304000 3000" {
		t.Fatalf("attributes after chmod/chown/touch/truncate: %q", got)
	}
	if err := os.Truncate(f, 20000); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(f)
	if err != nil || len(b) != 20000 || !bytes.Equal(b[3000:], make([]byte, 17000)) {
		t.Fatalf("extended file: %d bytes, %v (want zeros past 3000)", len(b), err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(m.dir, &st); err != nil || st.Blocks == 0 || st.Bsize == 0 {
		t.Fatalf("statfs: %+v %v", st, err)
	}

	// errnos.
	for _, tc := range []struct {
		what string
		err  error
		want syscall.Errno
	}{
		{"open missing", func() error { _, err := os.Open(m.dir + "/nope"); return err }(), syscall.ENOENT},
		{"mkdir existing", os.Mkdir(m.dir+"/cp", 0o755), syscall.EEXIST},
		{"rmdir non-empty", syscall.Rmdir(m.dir + "/cp"), syscall.ENOTEMPTY},
		{"unlink a directory", syscall.Unlink(m.dir + "/cp"), syscall.EISDIR},
		{"rmdir a file", syscall.Rmdir(m.dir + "/attrs"), syscall.ENOTDIR},
		{"create exclusive", func() error {
			_, err := os.OpenFile(m.dir+"/attrs", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			return err
		}(), syscall.EEXIST},
		{"rename into own subtree", os.Rename(m.dir+"/mv", m.dir+"/mv/a/inside"), syscall.EINVAL},
		{"hard link a directory", os.Link(m.dir+"/mv", m.dir+"/mvlink"), syscall.EPERM},
		{"readlink a file", func() error { _, err := os.Readlink(m.dir + "/attrs"); return err }(), syscall.EINVAL},
		{"long name", os.WriteFile(m.dir+"/"+strings.Repeat("n", 300), nil, 0o644), syscall.ENAMETOOLONG},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
		}
	}
	// rename replacing a file.
	sh(t, m.dir, "echo one > r1 && echo two > r2 && mv -f r1 r2")
	if got := sh(t, m.dir, "cat r2; ls r1 2>/dev/null || true"); got != "one\n" {
		t.Fatalf("rename over a file: %q", got)
	}
}

// TestFUSEData: large sequential writes and reads through the mount
// (readahead), parallel random reads of one file, and visibility between
// the mount and the native client.
func TestFUSEData(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c)
	cl := c.admin(t)
	r := rand.New(rand.NewPCG(5, 6))
	data := randData(r, 40<<20+12345)
	// Written through the mount in 1 MiB writes, read natively.
	p := filepath.Join(m.dir, "big")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := get(t, cl, "/big"); !bytes.Equal(got, data) {
		t.Fatalf("written through the mount, read natively: %d bytes differ", len(got))
	}
	// Written natively, read sequentially through the mount (readahead),
	// with several buffer sizes.
	put(t, cl, "/native", data)
	for _, bs := range []int{4096, 128 << 10, 1 << 20, 3<<20 + 1} {
		f, err := os.Open(filepath.Join(m.dir, "native"))
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.CopyBuffer(h, struct{ io.Reader }{f}, make([]byte, bs)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if !bytes.Equal(h.Sum(nil), sha(data)) {
			t.Fatalf("sequential read with %d-byte buffers differs", bs)
		}
	}
	// Parallel random reads of one open file, with O_DIRECT (no page cache:
	// every read reaches the mount), mixed with a sequential reader.
	f, err := os.OpenFile(filepath.Join(m.dir, "native"), os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 9)
	for g := range 8 {
		wg.Go(func() {
			rr := rand.New(rand.NewPCG(uint64(g), 1))
			buf := alignedBuf(256 << 10)
			for range 40 {
				n := (1 + rr.IntN(64)) * 4096
				off := int64(rr.IntN(len(data)-n)) &^ 4095
				if _, err := f.ReadAt(buf[:n], off); err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], data[off:off+int64(n)]) {
					errs <- fmt.Errorf("random read of %d at %d differs", n, off)
					return
				}
			}
		})
	}
	wg.Go(func() {
		buf := alignedBuf(1 << 20)
		for off := int64(0); off < int64(len(data))-1<<20; off += 1 << 20 {
			if _, err := f.ReadAt(buf, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(buf, data[off:off+1<<20]) {
				errs <- fmt.Errorf("sequential read at %d differs", off)
				return
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Overwrite in the middle and append through the mount; the length
	// reaches meta on close.
	w, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := randData(r, 100_000)
	if _, err := w.WriteAt(patch, 5<<20-3); err != nil {
		t.Fatal(err)
	}
	copy(data[5<<20-3:], patch)
	tail := randData(r, 3<<20)
	if _, err := w.WriteAt(tail, int64(len(data))); err != nil {
		t.Fatal(err)
	}
	data = append(data, tail...)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := cl.Stat(ctxFor(t), "/big"); err != nil || fi.Size() != int64(len(data)) {
		t.Fatalf("native stat after close: %v %v, want size %d", fi, err, len(data))
	}
	if got := get(t, cl, "/big"); !bytes.Equal(got, data) {
		t.Fatal("overwrite and append through the mount: content differs")
	}
	if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back through the mount: %v", err)
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// alignedBuf returns n bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptrOf(b)&4095)
	return b[off%4096 : off%4096+n]
}

// TestFUSEFio: fio writes through the mount and verifies what it reads back
// (crc32c in every block), sequentially and at random offsets.
func TestFUSEFio(t *testing.T) { forMountModes(t, fioVerify) }

func fioVerify(t *testing.T, mountFlags ...string) {
	needFUSE(t)
	needTool(t, "fio", "fio")
	c := startClusterAt(t)
	m := mountCluster(t, c, mountFlags...)
	for _, rw := range []string{"write", "randwrite"} {
		cmd := exec.Command("fio", "--name=verify-"+rw, "--directory="+m.dir, "--filename=fio-"+rw,
			"--rw="+rw, "--bs=64k", "--size=48m", "--ioengine=psync", "--numjobs=1",
			"--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--end_fsync=1", "--verify_state_save=0")
		cmd.Dir = t.TempDir() // fio's own files (state, logs) never land in the source tree
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "err= 0") {
			t.Fatalf("fio %s --verify=crc32c: %v\n%s", rw, err, out)
		}
	}
}

// TestFUSEFFRecord: FFRecord files stored in the cluster (v1 and v2,
// written by the native client), read through the mount by plain Python
// open(), match the originals byte for byte; the v1 file's samples are
// parsed and checked against their CRCs by a few lines of Python, in random
// order, as a data loader would.
func TestFUSEFFRecord(t *testing.T) {
	needFUSE(t)
	needTool(t, "python3", "python3")
	c := startClusterAt(t)
	m := mountCluster(t, c)
	cl := c.admin(t)
	ctx := ctxFor(t)
	r := rand.New(rand.NewPCG(7, 8))
	var samples [][]byte
	for range 300 {
		samples = append(samples, randData(r, 1+r.IntN(40_000)))
	}
	want := map[string][]byte{}
	for _, v := range []ffrecord.Version{ffrecord.V1, ffrecord.V2} {
		name := fmt.Sprintf("/ds/v%d.ffr", v)
		if err := cl.MkdirAll(ctx, "/ds", 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := cl.Create(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ffrecord.NewWriter(f, ffrecord.WriterOptions{Format: v, Count: int64(len(samples)), Alignment: map[bool]int64{true: 4096}[v == ffrecord.V2]})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range samples {
			if err := w.Write(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		want[name] = get(t, cl, name)
	}
	var allSamples []byte
	for _, s := range samples {
		allSamples = append(allSamples, s...)
	}
	script := `
import hashlib, random, struct, sys, zlib
mnt = sys.argv[1]
for name in ("v1.ffr", "v2.ffr"):
    with open(mnt + "/ds/" + name, "rb") as f:
        print(name, hashlib.sha256(f.read()).hexdigest())
with open(mnt + "/ds/v1.ffr", "rb") as f:
    f.seek(0, 2); size = f.tell(); f.seek(0)
    meta_crc, n = struct.unpack("<Iq", f.read(12))
    crcs = struct.unpack("<%dI" % n, f.read(4 * n))
    offs = list(struct.unpack("<%dq" % n, f.read(8 * n))) + [size]
    order = list(range(n)); random.Random(1).shuffle(order)
    got = {}
    for i in order:
        f.seek(offs[i]); b = f.read(offs[i + 1] - offs[i])
        assert zlib.crc32(b) == crcs[i], "sample %d: crc mismatch" % i
        got[i] = b
    print("samples", n, hashlib.sha256(b"".join(got[i] for i in range(n))).hexdigest())
`
	out, err := exec.Command("python3", "-c", script, m.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	wantOut := fmt.Sprintf("v1.ffr %x\nv2.ffr %x\nsamples %d %x\n", sha(want["/ds/v1.ffr"]), sha(want["/ds/v2.ffr"]), len(samples), sha(allSamples))
	if string(out) != wantOut {
		t.Fatalf("python through the mount:\n%s\nwant\n%s", out, wantOut)
	}
}

// TestFUSERestart: a mount survives a restart of `fffd local`: a read made
// while the cluster is down waits and then succeeds; with the cluster gone
// for longer than --retry-timeout a request fails with EIO.
func TestFUSERestart(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	m := mountCluster(t, c, "--retry-timeout", "3s")
	cl := c.admin(t)
	data := randData(rand.New(rand.NewPCG(9, 9)), 3<<20)
	put(t, cl, "/before", data)
	if err := os.WriteFile(filepath.Join(m.dir, "warm"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	addr := c.addr
	c.stop(t)

	// Down for longer than the retry timeout: EIO.
	if _, err := os.Stat(filepath.Join(m.dir, "nothing-here")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("stat while the cluster is down: %v, want EIO", err)
	}
	// Down for less: the read waits for the cluster.
	done := make(chan error, 1)
	go func() {
		got, err := os.ReadFile(filepath.Join(m.dir, "before"))
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("content differs")
		}
		done <- err
	}()
	time.Sleep(time.Second)
	c.startListen(t, addr)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("read across the restart: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("read across the restart did not finish")
	}
	// Writes work again too.
	if err := os.WriteFile(filepath.Join(m.dir, "after"), data[:1000], 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(m.dir, "after")); err != nil || !bytes.Equal(got, data[:1000]) {
		t.Fatalf("read after the restart: %v", err)
	}
}

// TestFUSEPermissions: with the admin token, files belong to the caller who
// creates them and the kernel enforces modes against the caller.
func TestFUSEPermissions(t *testing.T) {
	needFUSE(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as other users")
	}
	c := startClusterAt(t)
	m := mountCluster(t, c, "--allow-other")
	// Let other users reach the mount through the test's directories.
	for d := filepath.Dir(m.dir); d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	if err := os.Chmod(m.dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "rootfile"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	as := func(uid uint32, script string) ([]byte, error) {
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = m.dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		return cmd.CombinedOutput()
	}
	if out, err := as(4321, "echo hi > mine && mkdir mydir && ln -s mine mylink"); err != nil {
		t.Fatalf("create as uid 4321: %v %s", err, out)
	}
	if got := strings.TrimSpace(sh(t, m.dir, "stat -c '%u:%g' mine mydir; stat -c '%u:%g' -h mylink 2>/dev/null || find mylink -printf '%U:%G\\n'")); got != "4321:4321\n4321:4321\n4321:4321" {
		t.Fatalf("owners of what uid 4321 created: %q", got)
	}
	if out, err := as(4321, "cat rootfile"); err == nil {
		t.Fatalf("uid 4321 read a 0600 file of root: %s", out)
	}
	if out, err := as(4321, "chmod 0644 rootfile"); err == nil {
		t.Fatalf("uid 4321 chmod-ed root's file: %s", out)
	}
	if out, err := as(1000, "echo x >> mine"); err == nil {
		t.Fatalf("uid 1000 wrote to uid 4321's 0644 file: %s", out)
	}
}

// TestFUSEMountCLI: the mount's life cycle from the command line:
// read-only mounts, SIGTERM of a foreground mount, and `fff umount` of a
// mount whose process was killed.
func TestFUSEMountCLI(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	cl := c.admin(t)
	put(t, cl, "/ro", []byte("read me"))

	ro := mountCluster(t, c, "--read-only")
	if b, err := os.ReadFile(filepath.Join(ro.dir, "ro")); err != nil || string(b) != "read me" {
		t.Fatalf("read on a read-only mount: %q %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(ro.dir, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("create on a read-only mount: %v, want EROFS", err)
	}
	mustFFF(t, ro.env, "umount", ro.dir)
	if mounted(ro.dir) {
		t.Fatal("still mounted after fff umount")
	}

	// Foreground, stopped by SIGTERM: unmounted cleanly, exit status 0.
	fg := t.TempDir()
	cmd := exec.Command(filepath.Join(binDir, "fff"), "mount", fg, "--transport", fuseTransport(t))
	cmd.Env = append(c.env(c.token), "XDG_RUNTIME_DIR="+t.TempDir())
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if mounted(fg) {
			syscall.Unmount(fg, syscall.MNT_DETACH)
		}
		cmd.Process.Kill()
	})
	line := make([]byte, len(fg)+1)
	if _, err := io.ReadFull(stdout, line); err != nil || strings.TrimSpace(string(line)) != fg {
		t.Fatalf("foreground mount printed %q, %v", line, err)
	}
	if b, err := os.ReadFile(filepath.Join(fg, "ro")); err != nil || string(b) != "read me" {
		t.Fatalf("read on the foreground mount: %q %v", b, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("foreground mount after SIGTERM: %v", err)
	}
	if mounted(fg) {
		t.Fatal("still mounted after SIGTERM")
	}

	// A mount whose process died: fff umount detaches it.
	dead := mountCluster(t, c)
	syscall.Kill(dead.pid(t), syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dead.dir, "ro")); !errors.Is(err, syscall.ENOTCONN) {
		t.Fatalf("stat on a dead mount: %v, want ENOTCONN", err)
	}
	mustFFF(t, dead.env, "umount", dead.dir)
	if mounted(dead.dir) {
		t.Fatal("dead mount still mounted after fff umount")
	}
}
