package tests

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Operational hygiene (docs/security.md): private chunk files and data
// directories, daemons that do not keep their starter's descriptors, mount
// logs in a private directory opened without following symlinks.

// checkModes fails unless every directory under root is dirMode and every
// chunk data file (under a target's data/) is fileMode; it returns how many
// data files it saw.
func checkModes(t *testing.T, root string, dirMode, fileMode fs.FileMode) int {
	t.Helper()
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if st.Mode().Perm() != dirMode {
				t.Errorf("directory %s: mode %v, want %v", p, st.Mode().Perm(), dirMode)
			}
		case st.Mode().IsRegular() && strings.Contains(p, "/data/"):
			files++
			if st.Mode().Perm() != fileMode {
				t.Errorf("chunk file %s: mode %v, want %v", p, st.Mode().Perm(), fileMode)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestHygieneChunkModes: chunk files are 0600 and the data directory and
// every target directory 0700 under the usual umask, and directories left
// wider (an older version, an operator's chmod) are narrowed at the next
// start.
func TestHygieneChunkModes(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	src := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(src, []byte(strings.Repeat("x", 100000)), 0o644); err != nil {
		t.Fatal(err)
	}
	env := c.env(c.token)
	mustFFF(t, env, "put", src, "/f")
	// DATA/targets itself is inside the private DATA; the targets are what
	// the chunk engine keeps private.
	targets := filepath.Join(c.data, "targets")
	check := func() {
		n := 0
		for _, tg := range []string{"0", "1"} {
			n += checkModes(t, filepath.Join(targets, tg), 0o700, 0o600)
		}
		if n == 0 {
			t.Fatalf("no chunk file under %s", targets)
		}
	}
	check()

	c.stop(t)
	for _, d := range []string{c.data, targets} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(targets, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = os.Chmod(p, 0o755)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.start(t)
	mustFFF(t, c.env(c.token), "put", src, "/g") // a new port
	check()
	if st, err := os.Stat(c.data); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("data directory after a restart: %v %v, want mode 0700", st.Mode().Perm(), err)
	}
}

// lockedFile returns an open file holding an exclusive flock, to hand to a
// child as an inherited descriptor without close-on-exec, as a shell's
// `exec 9>lock; flock 9` would.
func lockedFile(t *testing.T) (*os.File, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lock")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return f, path
}

// atFD9 is an exec.Cmd's ExtraFiles that hand f on as descriptor 9, clear
// of the descriptors 3.. a daemonizing fff passes on purpose (its ExtraFiles
// would overwrite a lock at 3 and hide a leak).
func atFD9(f *os.File) []*os.File { return []*os.File{6: f} }

// checkNotHeld fails if process pid has path open, or if the lock on path
// cannot be taken (the test's own descriptor closed).
func checkNotHeld(t *testing.T, pid int, path string) {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, ent := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, ent.Name())); l == path {
			t.Errorf("process %d holds the starter's descriptor %s on %s", pid, ent.Name(), path)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Errorf("the starter's lock on %s is still held: %v", path, err)
	}
}

// TestHygieneUpDaemonFDs: `fff up --daemon` started with a locked
// descriptor leaves fffd without it, and the lock free once the starter
// let go.
func TestHygieneUpDaemonFDs(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	t.Cleanup(func() { killCluster(data) })
	lock, path := lockedFile(t)
	cmd := exec.Command(filepath.Join(binDir, "fff"), "up", "--daemon", "--data", data)
	cmd.Env = append(cleanEnv(), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.ExtraFiles = atFD9(lock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fff up --daemon: %v\n%s", err, out)
	}
	lock.Close()
	var ri struct{ PID int }
	b, err := os.ReadFile(filepath.Join(data, "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil || ri.PID <= 0 {
		t.Fatalf("fffd.json: %s %v", b, err)
	}
	checkNotHeld(t, ri.PID, path)
}

// TestHygieneFFFDClosesInherited: fffd started directly (by a supervisor
// or a shell) closes what it inherited too.
func TestHygieneFFFDClosesInherited(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	lock, path := lockedFile(t)
	cmd := exec.Command(filepath.Join(binDir, "fffd"), "local", "--data", data, "--listen", "127.0.0.1:0")
	cmd.ExtraFiles = atFD9(lock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	lock.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ri struct{ PID int }
		if b, err := os.ReadFile(filepath.Join(data, "fffd.json")); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID == cmd.Process.Pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fffd did not come up within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkNotHeld(t, cmd.Process.Pid, path)
}

// TestHygieneMount: `fff mount --daemon` keeps its default log in the
// user's private state directory (not /tmp), refuses a log name that is a
// symlink, and the mount process does not hold its starter's descriptors.
func TestHygieneMount(t *testing.T) {
	t.Parallel()
	needFUSE(t)
	c := startCluster(t)
	base := t.TempDir()
	state := filepath.Join(base, "state")
	m := &mount{dir: filepath.Join(base, "mnt")}
	if err := os.Mkdir(m.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m.env = append(c.env(c.token), "XDG_RUNTIME_DIR="+filepath.Join(base, "run"), "XDG_STATE_HOME="+state)
	h := sha256.Sum256([]byte(m.dir))
	logPath := filepath.Join(state, "fff", "mount-"+hex.EncodeToString(h[:8])+".log")

	// A symlink planted at the log's name is not followed.
	victim := filepath.Join(base, "victim")
	if err := os.WriteFile(victim, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, logPath); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cleanup(t, base) })
	if r := fff(t, m.env, "mount", "--daemon", m.dir); r.code == 0 {
		t.Fatalf("fff mount with a symlink as its log: exit 0, want a refusal")
	}
	if b, _ := os.ReadFile(victim); len(b) != 0 {
		t.Fatalf("the mount wrote through the planted symlink:\n%s", b)
	}
	if mounted(m.dir) {
		t.Fatal("mounted despite the refused log")
	}
	os.Remove(logPath)

	lock, path := lockedFile(t)
	cmd := exec.Command(filepath.Join(binDir, "fff"), "mount", "--daemon", m.dir)
	cmd.Env = m.env
	cmd.ExtraFiles = atFD9(lock)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fff mount --daemon: %v\n%s", err, out)
	}
	lock.Close()
	st, err := os.Lstat(logPath)
	if err != nil {
		t.Fatalf("no mount log in the state directory: %v", err)
	}
	if !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Errorf("mount log %s: mode %v, want a regular file 0600", logPath, st.Mode())
	}
	if st, err := os.Stat(filepath.Dir(logPath)); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v %v, want mode 0700", st.Mode().Perm(), err)
	}
	checkNotHeld(t, m.pid(t), path)
}
