package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"fff/libfff"
)

// The files `fffd local` keeps in its data directory, shared with `fff up`.
const (
	readyFile = "fffd.json"   // written by fffd once it serves: pid and address
	tokenFile = "admin.token" // the admin token, written when the cluster is created
	logFile   = "fffd.log"    // fffd's output when started with --daemon
)

// readyInfo is the content of readyFile.
type readyInfo struct {
	PID     int    `json:"pid"`
	Address string `json:"address"`
	Version string `json:"version"`
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "fff")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".fff"
	}
	return filepath.Join(home, ".local", "share", "fff")
}

type upOpts struct {
	data, listen, fffd string
	daemon             bool
	timeout            time.Duration
}

func newUpCmd() *cobra.Command {
	var o upOpts
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a single-node cluster (every role in one fffd process)",
		Long: `Start a local single-node fff cluster: 'fffd local' with every role in one
process, the embedded KV and its targets under the data directory, listening on
loopback. Prints the address and the admin token and records them in
~/.config/fff/cluster.json, where the CLI and Python find them (FFF_CLUSTER and
FFF_TOKEN override). Runs in the foreground until interrupted, or in the
background with --daemon ('fff down' stops it). Running 'fff up' again for a
data directory whose cluster is already up just prints its details.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runUp(cmd.Context(), cmd.OutOrStdout(), o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.data, "data", defaultDataDir(), "data directory")
	f.StringVar(&o.listen, "listen", "127.0.0.1:0", "listen address (port 0 picks a free port)")
	f.BoolVar(&o.daemon, "daemon", false, "run in the background (output goes to DATA/fffd.log)")
	f.StringVar(&o.fffd, "fffd", "", "fffd binary (default: next to this fff, else on PATH)")
	f.DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for the cluster to come up")
	return cmd
}

func runUp(ctx context.Context, out io.Writer, o upOpts) error {
	data, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("cannot create the data directory: %w", err)
	}
	if ri, ok := runningCluster(data); ok {
		info, err := recordCluster(data, ri)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "fff is already up (pid %d)\n", ri.PID)
		printCluster(out, info)
		return nil
	}
	bin, err := findFFFD(o.fffd)
	if err != nil {
		return err
	}
	os.Remove(filepath.Join(data, readyFile)) // stale: its process is gone
	args := []string{"local", "--data", data, "--listen", o.listen}
	c := exec.Command(bin, args...)
	c.Env = os.Environ()
	if o.daemon {
		lf, err := os.OpenFile(filepath.Join(data, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		defer lf.Close()
		c.Stdout, c.Stderr = lf, lf
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // survives this shell
	} else {
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // we forward signals ourselves
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- c.Wait() }()

	ri, err := waitReady(ctx, data, c.Process.Pid, exited, o.timeout)
	if err != nil {
		c.Process.Signal(syscall.SIGTERM)
		if o.daemon {
			err = fmt.Errorf("%w (see %s)", err, filepath.Join(data, logFile))
		}
		return err
	}
	info, err := recordCluster(data, ri)
	if err != nil {
		c.Process.Signal(syscall.SIGTERM)
		return err
	}
	printCluster(out, info)
	if o.daemon {
		fmt.Fprintf(out, "running in the background (pid %d); stop it with: fff down --data %s\n", ri.PID, data)
		c.Process.Release()
		return nil
	}
	fmt.Fprintln(out, "running in the foreground; Ctrl-C stops it")
	select {
	case err := <-exited:
		libfff.RemoveClusterFile(data)
		if err != nil {
			return fmt.Errorf("fffd exited: %w", err)
		}
		return nil
	case <-ctx.Done():
		c.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			c.Process.Kill()
			<-exited
		}
		libfff.RemoveClusterFile(data)
		return nil
	}
}

// waitReady waits until fffd (pid) has written its ready file.
func waitReady(ctx context.Context, data string, pid int, exited <-chan error, timeout time.Duration) (readyInfo, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ri, err := readReady(data); err == nil && ri.PID == pid {
			return ri, nil
		}
		select {
		case err := <-exited:
			return readyInfo{}, fmt.Errorf("fffd exited before it was ready: %v", err)
		case <-deadline.C:
			return readyInfo{}, fmt.Errorf("fffd did not come up within %s", timeout)
		case <-ctx.Done():
			return readyInfo{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func readReady(data string) (readyInfo, error) {
	var ri readyInfo
	b, err := os.ReadFile(filepath.Join(data, readyFile))
	if err != nil {
		return ri, err
	}
	return ri, json.Unmarshal(b, &ri)
}

// runningCluster reports the fffd serving data, if its process is alive.
func runningCluster(data string) (readyInfo, bool) {
	ri, err := readReady(data)
	if err != nil || ri.PID <= 0 {
		return ri, false
	}
	return ri, alive(ri.PID)
}

// alive reports whether pid runs (a zombie, exited but not yet reaped by a
// parent that may never reap it, does not count).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name, which may hold spaces.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// recordCluster writes the cluster file for the cluster at data.
func recordCluster(data string, ri readyInfo) (libfff.ClusterInfo, error) {
	tok, err := os.ReadFile(filepath.Join(data, tokenFile))
	if err != nil {
		return libfff.ClusterInfo{}, fmt.Errorf("cannot read the admin token: %w", err)
	}
	info := libfff.ClusterInfo{Address: ri.Address, Token: strings.TrimSpace(string(tok)), DataDir: data, PID: ri.PID}
	return info, libfff.SaveClusterFile(info)
}

func printCluster(out io.Writer, info libfff.ClusterInfo) {
	cf, _ := libfff.ClusterFile()
	fmt.Fprintf(out, "address:     %s\nadmin token: %s\ndata:        %s\nrecorded in: %s\n", info.Address, info.Token, info.DataDir, cf)
}

// findFFFD locates the server binary: the flag, next to this executable, or PATH.
func findFFFD(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "fffd")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	p, err := exec.LookPath("fffd")
	if err != nil {
		return "", errors.New("fffd not found next to fff or on PATH: run 'make build' (it builds bin/fff and bin/fffd) or pass --fffd")
	}
	return p, nil
}

func newDownCmd() *cobra.Command {
	var data string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop the local cluster started by 'fff up'",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			ri, ok := runningCluster(abs)
			if !ok {
				libfff.RemoveClusterFile(abs)
				fmt.Fprintf(cmd.OutOrStdout(), "no cluster is running from %s\n", abs)
				return nil
			}
			if err := stopProcess(cmd.Context(), ri.PID, timeout); err != nil {
				return err
			}
			libfff.RemoveClusterFile(abs)
			fmt.Fprintf(cmd.OutOrStdout(), "stopped fffd (pid %d)\n", ri.PID)
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", defaultDataDir(), "data directory of the cluster")
	cmd.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for a clean stop before killing")
	return cmd
}

// stopProcess sends SIGTERM and waits for pid to exit, then SIGKILL.
func stopProcess(ctx context.Context, pid int, timeout time.Duration) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("cannot signal fffd (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	return fmt.Errorf("fffd (pid %d) did not stop within %s and was killed", pid, timeout)
}
