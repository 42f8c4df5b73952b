// Package capi_test tests libfff.so, the C API of libfff (libfff/capi,
// fff.h), from C: it builds the library with -buildmode=c-shared, compiles
// capi_test.c against it with gcc, starts a real `fffd local` and runs the
// program (with GODEBUG=cgocheck=1, so a Go pointer handed to C fails it).
//
//	go test ./tests/capi
//
// It is skipped when gcc is missing.
package capi_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repoRoot is the module root (two levels up from this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
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

// cleanEnv is the environment without FFF_* and with a private config
// directory, so that nothing reaches the user's cluster.
func cleanEnv(config string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FFF_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") && !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	return append(env, "XDG_CONFIG_HOME="+config)
}

func run(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// startFFFD starts `fffd local` on a new data directory and returns its
// address and admin token; it is killed when the test ends.
func startFFFD(t *testing.T, fffd string, env []string) (addr, token string) {
	t.Helper()
	data := t.TempDir()
	logf, err := os.Create(filepath.Join(data, "fffd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(fffd, "local", "--data", data, "--listen", "127.0.0.1:0")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(data, "fffd.log")); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("fffd log, last lines:\n%s", strings.Join(lines[max(0, len(lines)-20):], "\n"))
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		var ri struct {
			PID     int    `json:"pid"`
			Address string `json:"address"`
		}
		if b, err := os.ReadFile(filepath.Join(data, "fffd.json")); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID == pid {
			addr = ri.Address
			break
		}
		select {
		case <-done:
			t.Fatal("fffd exited before serving")
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("fffd did not come up within 30s")
		}
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	return addr, strings.TrimSpace(string(tok))
}

func TestCAPI(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: the C API test compiles a C program against libfff.so; install gcc to run it")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	root := repoRoot(t)
	tmp := t.TempDir()
	lib, bin, local, config := filepath.Join(tmp, "lib"), filepath.Join(tmp, "bin"), filepath.Join(tmp, "local"), filepath.Join(tmp, "config")
	for _, d := range []string{lib, bin, local, config} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := cleanEnv(config)
	goEnv := append(env, "GOFLAGS="+goflags(), "CGO_ENABLED=1")

	start := time.Now()
	run(t, ctx, root, goEnv, "go", "build", "-buildmode=c-shared", "-o", filepath.Join(lib, "libfff.so"), "./libfff/capi")
	run(t, ctx, root, goEnv, "go", "build", "-o", bin+"/", "./cmd/fffd")
	prog := filepath.Join(bin, "capi_test")
	run(t, ctx, root, env, gcc, "-std=gnu11", "-O1", "-g", "-Wall", "-Werror", "-pthread",
		"-I", filepath.Join(root, "libfff", "capi"), "-I", lib,
		"-o", prog, filepath.Join(root, "tests", "capi", "capi_test.c"),
		"-L", lib, "-lfff", "-Wl,-rpath,"+lib)
	t.Logf("built libfff.so, fffd and capi_test in %v", time.Since(start).Round(time.Millisecond))

	addr, token := startFFFD(t, filepath.Join(bin, "fffd"), env)
	cmd := exec.CommandContext(ctx, prog, addr, token, local)
	cmd.Env = append(env, "FFF_CLUSTER="+addr, "FFF_TOKEN="+token, "GODEBUG=cgocheck=1")
	out, err := cmd.CombinedOutput()
	t.Logf("capi_test output:\n%s", out)
	if err != nil {
		t.Fatalf("capi_test: %v", err)
	}
	if !strings.Contains(string(out), "PASS") {
		t.Fatal("capi_test did not report PASS")
	}
}
