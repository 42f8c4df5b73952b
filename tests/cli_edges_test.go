package tests

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The CLI's smaller edges (issue 13 item 6), each as a user meets it: the
// real fff binary against a real cluster.

// TestCLIEdgesNamespace: mv and ln name the path that is missing; ls -h
// means human-readable sizes and ls -R recurses; du sums trees.
func TestCLIEdgesNamespace(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	env := cl.env(cl.token)

	mustFFF(t, env, "mkdir", "-p", "/e/sub/deep", "/e/empty")
	put(t, c, "/e/small", randBytes(12))
	put(t, c, "/e/sub/k", randBytes(1536))
	put(t, c, "/e/sub/deep/m", randBytes(5000000))
	mustFFF(t, env, "ln", "/e/sub/deep/m", "/e/hard") // counted once by du
	mustFFF(t, env, "ln", "-s", "sub", "/e/sym")      // 3 bytes, not followed

	for _, ec := range []struct {
		args []string
		want string
	}{
		{[]string{"mv", "/e/small", "/missing/x"}, "fff mv: cannot move /e/small to /missing/x: /missing: no such file or directory\n"},
		{[]string{"mv", "/e/small", "fff:///e/sub/nope/x"}, "fff mv: cannot move /e/small to fff:///e/sub/nope/x: fff:///e/sub/nope: no such file or directory\n"},
		{[]string{"mv", "/e/small", "/e/small/x"}, "fff mv: cannot move /e/small to /e/small/x: /e/small: not a directory\n"},
		{[]string{"mv", "/nope", "/e"}, "fff mv: /nope: no such file or directory\n"},
		{[]string{"ln", "/e/small", "/missing/l"}, "fff ln: cannot link /e/small to /missing/l: /missing: no such file or directory\n"},
		{[]string{"ln", "/nope", "/e/l"}, "fff ln: /nope: no such file or directory\n"},
		{[]string{"du", "/nope", "/e/small"}, "fff du: /nope: no such file or directory\n"},
		{[]string{"mv", "/e/small", "/e/small"}, "fff mv: /e/small and /e/small are the same file\n"},
		{[]string{"mv", "/e/small", "/e"}, "fff mv: /e/small and /e are the same file\n"},
	} {
		if r := fff(t, env, ec.args...); r.code != 1 || r.stderr != ec.want {
			t.Errorf("fff %s: exit %d, stderr %q; want 1, %q", strings.Join(ec.args, " "), r.code, r.stderr, ec.want)
		}
	}
	if _, err := c.Lstat(ctxFor(t), "/e/small"); err != nil {
		t.Fatalf("a failed mv moved its source: %v", err)
	}

	// ls -lh: sizes as coreutils print them; --help is still help.
	long := mustFFF(t, env, "ls", "-lh", "/e")
	for _, re := range []string{`(?m)^-\S+ +2 +0 +0 +4\.8M .* hard$`, `(?m)^-\S+ +1 +0 +0 +12 .* small$`} {
		if !regexp.MustCompile(re).MatchString(long) {
			t.Errorf("ls -lh does not match %s:\n%s", re, long)
		}
	}
	if got := mustFFF(t, env, "ls", "-h", "/e"); got != "empty\nhard\nsmall\nsub\nsym\n" {
		t.Errorf("ls -h (without -l) /e:\n%s", got)
	}
	if got := mustFFF(t, env, "ls", "--help"); !strings.Contains(got, "Usage:") || !strings.Contains(got, "-h, --human-readable") {
		t.Errorf("ls --help:\n%s", got)
	}
	if got := mustFFF(t, env, "ls", "-R", "/e"); got != "/e:\nempty\nhard\nsmall\nsub\nsym\n\n/e/empty:\n\n/e/sub:\ndeep\nk\n\n/e/sub/deep:\nm\n" {
		t.Errorf("ls -R /e:\n%s", got)
	}
	if got := mustFFF(t, env, "ls", "-R", "fff:///e/sub", "/e/small"); got != "/e/small\n\nfff:///e/sub:\ndeep\nk\n\nfff:///e/sub/deep:\nm\n" {
		t.Errorf("ls -R of a directory and a file:\n%s", got)
	}

	// du: apparent bytes (12 + 1536 + 5000000 + 3 in /e), subdirectories
	// first, a hard-linked file once.
	for _, tc := range []struct {
		args []string
		want string
	}{
		// /e/hard comes first: /e/sub/deep/m is its second link.
		{[]string{"du", "/e"}, "0\t/e/empty\n0\t/e/sub/deep\n1536\t/e/sub\n5001551\t/e\n"},
		{[]string{"du", "-s", "/e", "/e/sub"}, "5001551\t/e\n1536\t/e/sub\n"},
		{[]string{"du", "-sh", "/e"}, "4.8M\t/e\n"},
		{[]string{"du", "-a", "/e"}, "0\t/e/empty\n5000000\t/e/hard\n12\t/e/small\n0\t/e/sub/deep\n1536\t/e/sub/k\n1536\t/e/sub\n3\t/e/sym\n5001551\t/e\n"},
		{[]string{"du", "-a", "/e/sub"}, "5000000\t/e/sub/deep/m\n5000000\t/e/sub/deep\n1536\t/e/sub/k\n5001536\t/e/sub\n"},
		{[]string{"du", "-c", "-d", "0", "/e/sub/k", "/e/small"}, "1536\t/e/sub/k\n12\t/e/small\n1548\ttotal\n"},
		{[]string{"du", "-h", "-d", "1", "fff:///e"}, "0\tfff:///e/empty\n1.5K\tfff:///e/sub\n4.8M\tfff:///e\n"},
	} {
		if got := mustFFF(t, env, tc.args...); got != tc.want {
			t.Errorf("fff %s:\n%s\nwant:\n%s", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	for _, args := range [][]string{{"du", "-s", "-a", "/e"}, {"du", "-s", "-d", "1", "/e"}, {"ls", "-Z"}, {"du", "--bogus"}} {
		if r := fff(t, env, args...); r.code != 2 || !strings.Contains(r.stderr, "--help") {
			t.Errorf("fff %s: exit %d, stderr %q; want 2 (usage)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// TestCLIEdgesFFR: a file that is not an FFRecord file is called one, each
// FAIL line names its file once, verify advises re-packing only for damage,
// and a negative sample index counts from the end.
func TestCLIEdgesFFR(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+t.TempDir()) // no cluster
	src := filepath.Join(dir, "src")
	for i, s := range []string{"zero", "one", "two"} {
		writeLocal(t, filepath.Join(src, string(rune('a'+i))), s)
	}
	ds := filepath.Join(dir, "ds.ffr")
	mustFFF(t, env, "ffr", "pack", src, "-o", ds)
	junk := filepath.Join(dir, "notes.txt")
	writeLocal(t, junk, "these are my notes, not a dataset\n")
	missing := filepath.Join(dir, "missing.ffr")

	for _, cmd := range []string{"inspect", "cat"} {
		args := []string{"ffr", cmd, junk}
		if cmd == "cat" {
			args = append(args, "0")
		}
		r := fff(t, env, args...)
		if want := "fff ffr " + cmd + ": " + junk + ": not an FFRecord file ("; r.code != 1 || !strings.HasPrefix(r.stderr, want) {
			t.Errorf("ffr %s of a text file: exit %d, stderr %q; want 1, %q…", cmd, r.code, r.stderr, want)
		}
	}

	r := fff(t, env, "ffr", "verify", ds, junk, missing, "fff:///x.ffr")
	wantOut := []string{
		"OK " + ds + " (3 samples, ",
		"FAIL " + junk + ": not an FFRecord file (",
		"FAIL " + missing + ": no such file or directory\n",
		"FAIL fff:///x.ffr: no fff cluster configured",
	}
	for _, w := range wantOut {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("verify output lacks %q:\n%s", w, r.stdout)
		}
	}
	if r.code != 1 || strings.Contains(r.stderr, "re-pack") || !strings.Contains(r.stderr, "3 of 4 dataset(s) could not be verified") {
		t.Errorf("verify of unreadable datasets: exit %d, stderr %q (re-packing does not help them)", r.code, r.stderr)
	}

	damaged := filepath.Join(dir, "damaged.ffr")
	b, err := os.ReadFile(ds)
	if err != nil {
		t.Fatal(err)
	}
	b[40] ^= 0xff // in a sample (the v2 header is 32 bytes)
	writeLocal(t, damaged, string(b))
	r = fff(t, env, "ffr", "verify", damaged)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "FAIL "+damaged+": sample ") || !strings.Contains(r.stderr, "re-pack") {
		t.Errorf("verify of a damaged dataset: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ffr", "cat", ds, "-1"}, "two"},
		{[]string{"ffr", "cat", ds, "-3"}, "zero"},
		{[]string{"ffr", "cat", "--key", ds, "-2"}, "b\n"},
		{[]string{"ffr", "cat", ds, "-1", "--key"}, "c\n"},
		{[]string{"ffr", "cat", ds, "--", "-1"}, "two"},
	} {
		if got := mustFFF(t, env, tc.args...); got != tc.want {
			t.Errorf("fff %s = %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}
	if r := fff(t, env, "ffr", "cat", ds, "-4"); r.code != 1 || !strings.Contains(r.stderr, "-3 to -1 from the end") {
		t.Errorf("ffr cat -4 of 3 samples: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := fff(t, env, "ffr", "cat", ds, "x"); r.code != 2 {
		t.Errorf("ffr cat with a bad index: exit %d, want 2", r.code)
	}
}

// TestCLIEdgesWarnings: fff's warnings are lines for people on any stderr,
// JSON only when asked for.
func TestCLIEdgesWarnings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeLocal(t, filepath.Join(src, "a"), "a")
	if err := syscall.Mkfifo(filepath.Join(src, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := cleanEnv()
	r := fff(t, env, "ffr", "pack", src, "-o", filepath.Join(dir, "1.ffr"))
	if want := "fff: warning: skipping: not a regular file (file=" + filepath.Join(src, "fifo") + ")\n"; r.code != 0 || !strings.HasPrefix(r.stderr, want) {
		t.Errorf("pack with a fifo: exit %d, stderr %q; want it to start with %q", r.code, r.stderr, want)
	}
	r = fff(t, append(env, "FFF_LOG_FORMAT=json"), "ffr", "pack", src, "-o", filepath.Join(dir, "2.ffr"))
	first, _, _ := strings.Cut(r.stderr, "\n")
	var ev struct{ Level, Message, File string }
	if err := json.Unmarshal([]byte(first), &ev); r.code != 0 || err != nil || ev.Level != "warn" || ev.File == "" {
		t.Errorf("FFF_LOG_FORMAT=json: exit %d, first line %q (%v)", r.code, first, err)
	}
	if r := fff(t, env, "--log-format", "xml", "version"); r.code != 2 {
		t.Errorf("--log-format xml: exit %d, want 2", r.code)
	}
}

// TestCLIEdgesVersion: fffd has a version command, with fff's version.
func TestCLIEdgesVersion(t *testing.T) {
	t.Parallel()
	v := mustFFF(t, cleanEnv(), "version")
	out, err := exec.Command(filepath.Join(binDir, "fffd"), "version").Output()
	if err != nil {
		t.Fatalf("fffd version: %v", err)
	}
	d := string(out)
	if !strings.HasPrefix(v, "fff ") || !strings.HasPrefix(d, "fffd ") || v[len("fff "):] != d[len("fffd "):] {
		t.Errorf("fff version %q, fffd version %q: want the same version", v, d)
	}
	if out, err := exec.Command(filepath.Join(binDir, "fffd"), "--version").Output(); err != nil || string(out) != d {
		t.Errorf("fffd --version = %q, %v; want %q", out, err, d)
	}
}

// TestCLIEdgesBench: bench removes what it made, also when interrupted,
// unless --keep.
func TestCLIEdgesBench(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	env := cl.env(cl.token)
	quick := []string{"bench", "--size", "64KiB", "--duration", "50ms", "--sample-size", "4KiB"}
	gone := func(p string) {
		t.Helper()
		if _, err := c.Lstat(ctxFor(t), p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after bench: %v, want it gone", p, err)
		}
	}
	mustFFF(t, env, quick...)
	gone("/bench")

	mustFFF(t, env, "mkdir", "/mine")
	mustFFF(t, env, append(quick, "--dir", "/mine/x/y")...)
	gone("/mine/x")
	if _, err := c.Lstat(ctxFor(t), "/mine"); err != nil {
		t.Errorf("bench removed a directory it did not make: %v", err)
	}

	r := fff(t, env, append(quick, "--keep")...)
	if ents, err := c.ReadDir(ctxFor(t), "/bench"); r.code != 0 || err != nil || len(ents) != 1 || !strings.Contains(r.stderr, "kept /bench/bench-") {
		t.Errorf("bench --keep: exit %d, stderr %q; /bench: %v, %v", r.code, r.stderr, ents, err)
	}
	mustFFF(t, env, "rm", "-r", "/bench")

	// Interrupted while it reads: what it wrote is removed all the same.
	cmd := exec.Command(filepath.Join(binDir, "fff"), "bench", "--size", "8MiB", "--duration", "60s", "--sample-size", "4KiB")
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ents, err := c.ReadDir(ctxFor(t), "/bench"); err == nil && len(ents) == 1 {
			if fi, err := c.Lstat(ctxFor(t), "/bench/"+ents[0].Name()); err == nil && fi.Size() == 8<<20 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("bench did not write its file within 20s")
		}
	}
	time.Sleep(200 * time.Millisecond) // into the random reads
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("interrupted bench: %v, want exit 130", err)
	}
	gone("/bench")
}

// TestCLIEdgesMountTwice: mounting an fff mount again is refused, saying
// how to unmount it. Should the refusal break, the second mount is undone
// (and a foreground one, which would serve until killed, is given 15s).
func TestCLIEdgesMountTwice(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	m := mountCluster(t, cl)
	want := "fff mount: " + m.dir + " is already an fff mount (of fff:" + cl.addr + "): unmount it first with 'fff umount " + m.dir + "'\n"
	for _, args := range [][]string{{"mount", "--daemon", m.dir + "/"}, {"mount", m.dir}} {
		ctx, cancel := context.WithTimeout(ctxFor(t), 15*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(binDir, "fff"), args...)
		cmd.Env = m.env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		timedOut := ctx.Err() != nil
		cancel()
		var ee *exec.ExitError
		switch {
		case timedOut:
			syscall.Unmount(m.dir, syscall.MNT_DETACH) // the stacked mount's process was killed
			t.Errorf("fff %s mounted again (killed after 15s)", strings.Join(args, " "))
		case err == nil:
			fff(t, m.env, "umount", m.dir)
			t.Errorf("fff %s mounted again", strings.Join(args, " "))
		case !errors.As(err, &ee) || ee.ExitCode() != 1 || stderr.String() != want:
			t.Errorf("fff %s: %v, stderr %q; want exit 1, %q", strings.Join(args, " "), err, stderr.String(), want)
		}
	}
}

// TestCLIEdgesMountErrors: mount and umount name the path they fail on
// (no cluster needed: the mountpoint is checked first).
func TestCLIEdgesMountErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeLocal(t, file, "x")
	env := append(cleanEnv(), "XDG_RUNTIME_DIR="+dir)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"mount", filepath.Join(dir, "nope")}, "fff mount: " + filepath.Join(dir, "nope") + ": no such file or directory\n"},
		{[]string{"mount", file}, "fff mount: " + file + ": not a directory\n"},
		{[]string{"umount", dir}, "fff umount: " + dir + ": not mounted\n"},
	} {
		if os.Geteuid() != 0 && tc.args[0] == "umount" {
			continue // fusermount words it its own way
		}
		if r := fff(t, env, tc.args...); r.code != 1 || r.stderr != tc.want {
			t.Errorf("fff %s: exit %d, stderr %q; want 1, %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.want)
		}
	}
}

func writeLocal(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}
