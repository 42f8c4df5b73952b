package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"fff/libfff"
)

// binDir holds fff and fffd, built once by TestMain.
var binDir string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "fff-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Never reach the user's cluster, never touch ~/.config.
	os.Unsetenv(libfff.EnvCluster)
	os.Unsetenv(libfff.EnvToken)
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))

	defer enableFUSEURing()()

	binDir = filepath.Join(dir, "bin")
	start := time.Now()
	build := exec.Command("go", "build", "-o", binDir+"/", "./cmd/fff", "./cmd/fffd")
	build.Dir = ".."
	build.Env = append(os.Environ(), "GOFLAGS="+goflags())
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tests: building fff and fffd:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "tests: built fff and fffd in %v\n", time.Since(start).Round(time.Millisecond))
	}
	return m.Run()
}

// goflags returns GOFLAGS with the flags every fff build needs added.
func goflags() string {
	f := os.Getenv("GOFLAGS")
	for _, need := range []string{"-buildvcs=false", "-ldflags=-checklinkname=0"} {
		if !strings.Contains(f, need) {
			f = strings.TrimSpace(f + " " + need)
		}
	}
	return f
}

// ctxFor returns a context for a test's calls, with a deadline well within
// the package's time budget.
func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// cluster is a `fffd local` process on a data directory.
type cluster struct {
	data   string
	config string // a fffd config file (TOML) for every start; "": none
	addr   string
	token  string // the admin token
	pid    int
	done   chan struct{} // closed when the process has exited
	state  *os.ProcessState
}

// startCluster starts fffd local on a new data directory.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{data: t.TempDir()}
	c.start(t)
	return c
}

// start starts fffd on c.data and waits until it serves. The process (and
// any children, its process group) is killed when the test ends, whatever
// happened.
func (c *cluster) start(t *testing.T) {
	t.Helper()
	c.startListen(t, "127.0.0.1:0")
}

// startListen is start with a given listen address (a restart on the same
// port: tests of clients that outlive a restart).
func (c *cluster) startListen(t *testing.T, listen string) {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(c.data, "fffd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	os.Remove(filepath.Join(c.data, "fffd.json"))
	args := []string{"local", "--data", c.data, "--listen", listen}
	if c.config != "" {
		args = append(args, "--config", c.config)
	}
	cmd := exec.Command(filepath.Join(binDir, "fffd"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		c.state = cmd.ProcessState
		close(done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(c.data, "fffd.log")); err == nil {
				t.Logf("fffd log (%s):\n%s", c.data, lastLines(b, 20))
			}
		}
	})
	c.pid, c.done = pid, done
	deadline := time.Now().Add(20 * time.Second)
	for {
		var ri struct {
			PID     int    `json:"pid"`
			Address string `json:"address"`
		}
		if b, err := os.ReadFile(filepath.Join(c.data, "fffd.json")); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID == pid {
			c.addr = ri.Address
			break
		}
		select {
		case <-done:
			t.Fatalf("fffd exited before serving: %v", c.state)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("fffd did not come up within 20s")
		}
	}
	tok, err := os.ReadFile(filepath.Join(c.data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	c.token = strings.TrimSpace(string(tok))
}

// stop stops fffd gracefully (SIGTERM) and waits for it to exit.
func (c *cluster) stop(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(c.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatal("fffd did not stop within 20s of SIGTERM")
	}
	if !c.state.Success() {
		t.Fatalf("fffd exited with %v", c.state)
	}
}

// kill kills fffd with SIGKILL and waits for it to be gone.
func (c *cluster) kill(t *testing.T) {
	t.Helper()
	syscall.Kill(-c.pid, syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(20 * time.Second):
		t.Fatal("fffd still runs 20s after SIGKILL")
	}
}

// connect connects to the cluster with token.
func (c *cluster) connect(t *testing.T, token string) *libfff.Client {
	t.Helper()
	cl, err := libfff.Connect(ctxFor(t), libfff.Options{Address: c.addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// admin connects with the admin token.
func (c *cluster) admin(t *testing.T) *libfff.Client { return c.connect(t, c.token) }

// env is the environment of CLI runs against this cluster.
func (c *cluster) env(token string) []string {
	return append(cleanEnv(), libfff.EnvCluster+"="+c.addr, libfff.EnvToken+"="+token)
}

// cleanEnv is the test process's environment without FFF_*.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FFF_") {
			env = append(env, kv)
		}
	}
	return env
}

type result struct {
	stdout, stderr string
	code           int
}

// fff runs the CLI with env.
func fff(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "fff"), args...)
	cmd.Env = env
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

// mustFFF runs the CLI and fails the test unless it succeeds.
func mustFFF(t *testing.T, env []string, args ...string) string {
	t.Helper()
	r := fff(t, env, args...)
	if r.code != 0 {
		t.Fatalf("fff %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// wantErr checks that err matches every target with errors.Is and is an
// error about a path (*fs.PathError or *os.LinkError).
func wantErr(t *testing.T, what string, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("%s: %v (%T) is not %v", what, err, err, target)
		}
	}
	var pe *fs.PathError
	var le *os.LinkError
	if !errors.As(err, &pe) && !errors.As(err, &le) {
		t.Fatalf("%s: %v (%T) is not a path error", what, err, err)
	}
}
