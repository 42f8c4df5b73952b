package tests

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"fff/libfff"
)

// `fff put` and `fff cp` into a cluster write every file atomically: an
// anonymous file that gets its name only once all of it is written. These
// tests kill and interrupt puts in the middle of a file and race many puts
// to one name, and check both what readers see and that no chunk of an
// abandoned file stays on the targets.
//
// "In the middle" is made deterministic by feeding put from a pipe (the
// source "-"): the test writes part of the data, waits until the chunks
// of that part are on the targets, and only then kills or interrupts put,
// which is blocked reading the open pipe. Waits are for conditions, with
// generous bounds.

// startClusterConfig is startCluster with a fffd config file (TOML).
func startClusterConfig(t *testing.T, config string) *cluster {
	t.Helper()
	c := &cluster{data: t.TempDir()}
	c.config = filepath.Join(c.data, "fffd.toml")
	if err := os.WriteFile(c.config, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	return c
}

// waitFor polls cond until it holds; after bound it fails the test with
// cond's last explanation.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s: %s", bound, what, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var chunkName = regexp.MustCompile(`^[0-9a-f]{16}-[0-9a-f]{8}\.[0-9a-f]{16}$`)

// allChunks returns the chunk data files on the cluster's targets.
func allChunks(t *testing.T, cl *cluster) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(filepath.Join(cl.data, "targets"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) { // removed while walking
				return nil
			}
			return err
		}
		if !d.IsDir() && chunkName.MatchString(d.Name()) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// waitChunksBack waits until the targets hold exactly the chunk files of
// want again (those of every abandoned file are collected).
func waitChunksBack(t *testing.T, cl *cluster, want []string, bound time.Duration) {
	t.Helper()
	waitFor(t, bound, "the chunks of abandoned files to be collected", func() (bool, string) {
		got := allChunks(t, cl)
		if slices.Equal(got, want) {
			return true, ""
		}
		var extra []string
		for _, p := range got {
			if _, found := slices.BinarySearch(want, p); !found {
				extra = append(extra, filepath.Base(p))
			}
		}
		return false, fmt.Sprintf("%d chunk files, want %d; not collected: %d, e.g. %v", len(got), len(want), len(extra), extra[:min(len(extra), 5)])
	})
}

// pipedPut is `fff put - DST` running with a pipe as its stdin.
type pipedPut struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	stderr bytes.Buffer
	done   chan struct{}
}

func startPipedPut(t *testing.T, env []string, dst string) *pipedPut {
	t.Helper()
	p := &pipedPut{cmd: exec.Command(filepath.Join(binDir, "fff"), "put", "-", dst), done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stderr = &p.stderr
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.in = in
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// feed writes b to put's stdin and returns once put has read it.
func (p *pipedPut) feed(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.in.Write(b); err != nil {
		t.Fatalf("feeding put: %v (stderr: %s)", err, p.stderr.String())
	}
}

// stop sends sig and waits for put to exit.
func (p *pipedPut) stop(t *testing.T, sig syscall.Signal) *os.ProcessState {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("fff put did not exit within 30s of %v", sig)
	}
	p.in.Close()
	return p.cmd.ProcessState
}

const (
	testChunkSize = 64 << 10
	// midWay is what the tests feed before stopping a put: two of put's
	// 4 MiB copy buffers, which it writes out whole (64 chunks each)
	// before it reads stdin again.
	midWay = 8 << 20
)

// killScenario starts two piped puts, one to a new name and one over
// oldName (which holds old), feeds them midWay bytes each, waits until all
// their chunks are on the targets, and stops them with sig. It returns the
// puts.
func killScenario(t *testing.T, cl *cluster, c *libfff.Client, dir string, sig syscall.Signal) (newPut, oldPut *pipedPut, old []byte, before []string) {
	t.Helper()
	ctx := ctxFor(t)
	if err := c.MkdirAll(ctx, dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old = randData(rand.New(rand.NewPCG(7, 7)), 3*testChunkSize+5)
	put(t, c, dir+"/old.bin", old)
	before = allChunks(t, cl)
	inodes := must(c.StatFS(ctx))(t).Inodes

	env := cl.env(cl.token)
	newPut = startPipedPut(t, env, dir+"/new.bin")
	oldPut = startPipedPut(t, env, dir+"/old.bin")
	r := rand.New(rand.NewPCG(8, 8))
	var wg sync.WaitGroup
	for _, p := range []*pipedPut{newPut, oldPut} {
		data := randData(r, midWay)
		wg.Go(func() { p.feed(t, data) })
	}
	wg.Wait()
	want := 2 * midWay / testChunkSize
	waitFor(t, 30*time.Second, "the puts' chunks on the targets", func() (bool, string) {
		n := 0
		for _, p := range allChunks(t, cl) {
			if _, found := slices.BinarySearch(before, p); !found {
				n++
			}
		}
		return n >= want, fmt.Sprintf("%d new chunk files, want %d", n, want)
	})
	// Mid-way: every byte fed is on the targets, in two files without
	// names (the two anonymous files are counted as inodes).
	if got := must(c.StatFS(ctx))(t).Inodes; got != inodes+2 {
		t.Errorf("inodes in use: %d, want %d (two anonymous files)", got, inodes+2)
	}
	for _, p := range []*pipedPut{newPut, oldPut} {
		p.stop(t, sig)
	}
	return newPut, oldPut, old, before
}

// checkNothingVisible: the new name does not exist and the old one still
// holds old.
func checkNothingVisible(t *testing.T, c *libfff.Client, dir string, old []byte) {
	t.Helper()
	ctx := ctxFor(t)
	if _, err := c.Stat(ctx, dir+"/new.bin"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s/new.bin after the put was stopped: %v, want it absent", dir, err)
	}
	if got := get(t, c, dir+"/old.bin"); !bytes.Equal(got, old) {
		t.Errorf("%s/old.bin reads %d bytes after the put over it was stopped, want the old %d", dir, len(got), len(old))
	}
	ents, err := c.ReadDir(ctx, dir)
	if err != nil || len(ents) != 1 {
		t.Errorf("%s lists %v, %v; want old.bin alone", dir, ents, err)
	}
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestPutKill9: `fff put` killed with SIGKILL in the middle of a file
// leaves no partial file (the name is absent, or holds the old file), and
// once meta has ended the dead writer's session (meta.session_timeout) the
// garbage collection removes every chunk it wrote.
func TestPutKill9(t *testing.T) {
	t.Parallel()
	cl := startClusterConfig(t, fmt.Sprintf("[meta]\nsession_timeout = \"5s\"\nchunk_size = %d\n", testChunkSize))
	c := cl.admin(t)
	inodes := must(c.StatFS(ctxFor(t)))(t).Inodes
	_, _, old, before := killScenario(t, cl, c, "/k", syscall.SIGKILL)
	checkNothingVisible(t, c, "/k", old)
	// Pruning runs every second with a 5 s timeout; GC every 5 s.
	waitChunksBack(t, cl, before, 60*time.Second)
	checkNothingVisible(t, c, "/k", old)
	waitFor(t, 10*time.Second, "the anonymous files' inodes to go", func() (bool, string) {
		got := must(c.StatFS(ctxFor(t)))(t).Inodes
		return got == inodes+2, fmt.Sprintf("%d inodes in use, want %d (/k and old.bin added)", got, inodes+2)
	})
}

// TestPutInterrupted: `fff put` interrupted (SIGINT, Ctrl-C) in the middle
// of a file says so, exits 130, leaves no partial file, and discards its
// anonymous file at once: the cluster runs with the default session
// timeout (30 min), so only that can make the chunks go.
func TestPutInterrupted(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	smallChunkDir(t, c, "/i")
	newPut, oldPut, old, before := killScenario(t, cl, c, "/i", syscall.SIGINT)
	for _, p := range []*pipedPut{newPut, oldPut} {
		st := p.cmd.ProcessState
		if st.ExitCode() != 130 || !strings.Contains(p.stderr.String(), "fff put: interrupted") {
			t.Errorf("interrupted put: %v, stderr %q; want exit 130 and \"fff put: interrupted\"", st, p.stderr.String())
		}
		if strings.Contains(p.stderr.String(), "put: 1 file") {
			t.Errorf("interrupted put printed a summary: %q", p.stderr.String())
		}
	}
	checkNothingVisible(t, c, "/i", old)
	waitChunksBack(t, cl, before, 60*time.Second)
}

// TestPutConcurrentOneName: 20 puts of different files to one name at
// once. The name ends up holding exactly one of them, whole, and the
// chunks of the 19 others are collected.
func TestPutConcurrentOneName(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)
	smallChunkDir(t, c, "/same")
	env := cl.env(cl.token)
	dir := t.TempDir()
	const puts = 20
	sums := map[[32]byte]int{}
	var srcs []string
	for i := range puts {
		// 1 to 2 MiB: each spans many 64 KiB chunks, of sizes that differ.
		b := randData(rand.New(rand.NewPCG(uint64(i), 99)), 1<<20+i*53<<10+i)
		p := filepath.Join(dir, fmt.Sprintf("src%d", i))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sums[sha256.Sum256(b)] = i
		srcs = append(srcs, p)
	}
	before := allChunks(t, cl)
	var wg sync.WaitGroup
	results := make([]result, puts)
	for i := range puts {
		wg.Go(func() { results[i] = fff(t, env, "put", srcs[i], "/same/f") })
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("put %d: exit %d, stderr %s", i, r.code, r.stderr)
		}
	}
	got := get(t, c, "/same/f")
	winner, ok := sums[sha256.Sum256(got)]
	if !ok {
		t.Fatalf("/same/f (%d bytes) equals none of the %d sources", len(got), puts)
	}
	if ents, err := c.ReadDir(ctx, "/same"); err != nil || len(ents) != 1 {
		t.Fatalf("/same lists %v, %v; want f alone", ents, err)
	}
	// Every chunk written besides the winner's is collected.
	want := slices.Clone(before)
	ino := inoOf(t, c, "/same/f")
	for _, files := range chunkFiles(t, cl, ino) {
		want = append(want, files...)
	}
	slices.Sort(want)
	if n := len(want) - len(before); n != (len(got)+testChunkSize-1)/testChunkSize {
		t.Fatalf("the winner (source %d, %d bytes) has %d chunk files", winner, len(got), n)
	}
	waitChunksBack(t, cl, want, 60*time.Second)
}

// runWithStdin runs the CLI with stdin.
func runWithStdin(t *testing.T, env []string, stdin []byte, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "fff"), args...)
	cmd.Env = env
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("fff %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// TestCLIStdioPreserveSummary: "-" as put's source and get's destination,
// -p in both directions, the summary line without a terminal, and local
// destinations replaced whole.
func TestCLIStdioPreserveSummary(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)
	env := cl.env(cl.token)
	dir := t.TempDir()
	data := randData(rand.New(rand.NewPCG(1, 1)), 5<<20+3)

	r := runWithStdin(t, env, data, "put", "-", "/s/piped")
	if r.code != 1 || !strings.Contains(r.stderr, "/s") {
		t.Fatalf("put - into a missing directory: exit %d, %s", r.code, r.stderr)
	}
	mustFFF(t, env, "mkdir", "/s")
	r = runWithStdin(t, env, data, "put", "-", "/s/piped")
	if r.code != 0 || !regexp.MustCompile(`^put: 1 file, 5\.0 MiB in [0-9.]+ s \([^)]+/s\)\n$`).MatchString(r.stderr) {
		t.Fatalf("put -: exit %d, stderr %q; want only the summary line", r.code, r.stderr)
	}
	if r := runWithStdin(t, env, data, "put", "-", "/s"); r.code != 2 {
		t.Fatalf("put - onto a directory: exit %d, %s", r.code, r.stderr)
	}
	r = fff(t, env, "get", "/s/piped", "/s/piped", "-")
	if r.code != 0 || r.stdout != string(data)+string(data) || !strings.HasPrefix(r.stderr, "get: 2 files, 10 MiB in ") {
		t.Fatalf("get to -: exit %d, %d bytes, stderr %q", r.code, len(r.stdout), r.stderr)
	}

	// -p: times and permissions, of files and directories, both ways.
	src := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "sub", "f"), data[:1000], 0o600); err != nil {
		t.Fatal(err)
	}
	fileTime := time.Date(2021, 3, 4, 5, 6, 7, 8, time.UTC)
	dirTime := time.Date(2019, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(src, "sub", "f"), fileTime, fileTime); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(src, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "sub"), dirTime, dirTime); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", "-r", "-p", src, "/p/")
	mustFFF(t, env, "put", "-r", src, "/np/")
	check := func(where string, st fs.FileInfo, err error, perm fs.FileMode, mtime time.Time) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != perm || !st.ModTime().Equal(mtime) {
			t.Errorf("%s: mode %v, mtime %v; want %v, %v", where, st.Mode().Perm(), st.ModTime(), perm, mtime)
		}
	}
	st, err := c.Stat(ctx, "/p/tree/sub/f")
	check("put -p file", st, err, 0o600, fileTime)
	st, err = c.Stat(ctx, "/p/tree/sub")
	check("put -p directory", st, err, 0o750, dirTime)
	if st, err := c.Stat(ctx, "/np/tree/sub/f"); err != nil || st.ModTime().Equal(fileTime) {
		t.Errorf("put without -p kept the mtime: %v, %v", st, err)
	}
	back := filepath.Join(dir, "back")
	mustFFF(t, env, "get", "-r", "-p", "/p/tree", back)
	lst, err := os.Stat(filepath.Join(back, "sub", "f"))
	check("get -p file", lst, err, 0o600, fileTime)
	lst, err = os.Stat(filepath.Join(back, "sub"))
	check("get -p directory", lst, err, 0o750, dirTime)

	// A local file that is replaced keeps its permissions and its other
	// names keep the old data (a new file takes the name); no temporary
	// file is left.
	dst := filepath.Join(dir, "dst")
	if err := os.WriteFile(dst, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(dst, dst+".link"); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "get", "/s/piped", dst)
	if b, err := os.ReadFile(dst); err != nil || !bytes.Equal(b, data) {
		t.Fatalf("replaced local file: %d bytes, %v", len(b), err)
	}
	if st, err := os.Stat(dst); err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("replaced local file: %v, %v; want mode 0640 kept", st, err)
	}
	if b, _ := os.ReadFile(dst + ".link"); string(b) != "old" {
		t.Fatalf("the other link reads %q", b)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".fff-tmp") {
			t.Fatalf("temporary file %s left behind", e.Name())
		}
	}
}
