package tests

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// Helpers of the FUSE tests (fuse_test.go): a `fffd local` on a fixed
// port (so that it can be restarted under a live mount) and `fff mount
// --daemon` mounts that are unmounted whatever happens to the test.

// needFUSE skips the test where FUSE mounts cannot be made.
func needFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("FUSE tests need /dev/fuse, which this machine lacks")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			if _, err := exec.LookPath("fusermount"); err != nil {
				t.Skip("FUSE tests need root (DirectMount) or fusermount3 (Debian package fuse3)")
			}
		}
	}
}

// The kernel's switch for FUSE over io_uring; testMain turns it on for the
// run where it is off (and back off at the end), as root.
const enableURingParam = "/sys/module/fuse/parameters/enable_uring"

// envFUSETransport chooses the transport of the tests' mounts: uring or
// dev. Unset: uring where this kernel has it, else dev. `make test` runs
// the mount tests once more with dev (Makefile, test-fuse-dev).
const envFUSETransport = "FFF_TEST_FUSE_TRANSPORT"

// enableFUSEURing turns FUSE over io_uring on where the kernel has it and
// it is off, and returns what puts the switch back.
func enableFUSEURing() (restore func()) {
	b, err := os.ReadFile(enableURingParam)
	if err != nil || strings.TrimSpace(string(b)) == "Y" || os.Geteuid() != 0 {
		return func() {}
	}
	if os.WriteFile(enableURingParam, []byte("Y"), 0) != nil {
		return func() {}
	}
	return func() { os.WriteFile(enableURingParam, []byte("N"), 0) }
}

// haveURing says why the kernel cannot serve a mount through the rings, or
// "" if it can.
func haveURing() string {
	b, err := os.ReadFile(enableURingParam)
	switch {
	case err != nil:
		return "this kernel has no FUSE over io_uring (Linux 6.14+, CONFIG_FUSE_IO_URING)"
	case strings.TrimSpace(string(b)) != "Y":
		return "FUSE over io_uring is off (" + enableURingParam + " is not Y; the tests turn it on only as root)"
	case os.Geteuid() != 0:
		return "the ring transport needs root"
	}
	return ""
}

// needURing skips the test where mounts cannot use the rings.
func needURing(t *testing.T) {
	t.Helper()
	if why := haveURing(); why != "" {
		t.Skip(why)
	}
}

// fuseTransport is the transport of the tests' mounts (envFUSETransport).
func fuseTransport(t *testing.T) string {
	t.Helper()
	switch tr := os.Getenv(envFUSETransport); tr {
	case "dev":
		return tr
	case "uring":
		needURing(t)
		return tr
	case "":
		if haveURing() == "" {
			return "uring"
		}
		return "dev"
	default:
		t.Fatalf("%s=%q: want uring or dev", envFUSETransport, tr)
		return ""
	}
}

// needTool skips the test if a program is not installed.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s is not installed (Debian package %s; scripts/bootstrap.sh installs it)", name, pkg)
	}
}

// freePort returns a loopback address with a port that was free a moment
// ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startClusterAt starts fffd local on a new data directory listening on a
// fixed address, which restartAt reuses.
func startClusterAt(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{data: t.TempDir()}
	c.startListen(t, freePort(t))
	return c
}

// mount is a `fff mount --daemon` of a cluster.
type mount struct {
	dir string
	env []string // the CLI's environment (cluster, token, runtime dir)
}

// mountCluster mounts c with `fff mount --daemon` on a new directory; the
// mount is undone when the test ends, even if it failed: `fff umount`,
// else a lazy unmount and a kill of the mount process.
func mountCluster(t *testing.T, c *cluster, args ...string) *mount {
	t.Helper()
	return mountAs(t, c, c.token, args...)
}

// mountAs is mountCluster with the cluster identity of token.
func mountAs(t *testing.T, c *cluster, token string, args ...string) *mount {
	t.Helper()
	needFUSE(t)
	base := t.TempDir()
	m := &mount{dir: filepath.Join(base, "mnt")}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m.env = append(c.env(token), "XDG_RUNTIME_DIR="+filepath.Join(base, "run"))
	argv := append([]string{"mount", "--daemon", "--log", filepath.Join(base, "mount.log"), m.dir}, args...)
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--transport") }) {
		argv = append(argv, "--transport", fuseTransport(t))
	}
	t.Cleanup(func() { m.cleanup(t, base) })
	r := fff(t, m.env, argv...)
	if r.code != 0 {
		t.Fatalf("fff mount: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if got := strings.TrimSpace(r.stdout); got != m.dir {
		t.Fatalf("fff mount printed %q, want the mountpoint %q", got, m.dir)
	}
	return m
}

// pid returns the mount process's pid from the record fff mount keeps.
func (m *mount) pid(t *testing.T) int {
	t.Helper()
	pid := m.findPID()
	if pid == 0 {
		t.Fatalf("no record of the mount of %s", m.dir)
	}
	return pid
}

func (m *mount) findPID() int {
	var run string
	for _, kv := range m.env {
		if v, ok := strings.CutPrefix(kv, "XDG_RUNTIME_DIR="); ok {
			run = v
		}
	}
	files, _ := filepath.Glob(filepath.Join(run, "fff", "mounts", "*.json"))
	for _, f := range files {
		var s struct {
			PID        int    `json:"pid"`
			Mountpoint string `json:"mountpoint"`
		}
		if b, err := os.ReadFile(f); err == nil && json.Unmarshal(b, &s) == nil && s.Mountpoint == m.dir {
			return s.PID
		}
	}
	return 0
}

func (m *mount) cleanup(t *testing.T, base string) {
	if !mounted(m.dir) {
		return
	}
	pid := m.findPID()
	r := fff(t, m.env, "umount", "--timeout", "20s", m.dir)
	if r.code != 0 {
		t.Logf("fff umount: exit %d: %s", r.code, r.stderr)
		syscall.Unmount(m.dir, syscall.MNT_DETACH)
		if pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if t.Failed() {
		if b, err := os.ReadFile(filepath.Join(base, "mount.log")); err == nil {
			t.Logf("mount log:\n%s", lastLines(b, 30))
		}
	}
}

// mounted reports whether dir is a mount point (in /proc/self/mounts).
func mounted(dir string) bool {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return false
	}
	for l := range bytes.SplitSeq(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) > 1 && f[1] == dir {
			return true
		}
	}
	return false
}

// sh runs a shell command in dir and fails the test if it fails.
func sh(t *testing.T, dir, script string) string {
	t.Helper()
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}
