package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"fff/libfff"
	"fff/libfff/fusefs"
)

// `fff mount` and `fff umount`: the FUSE mount of libfff/fusefs
// (docs/fuse.md).

// envNotifyFD names the descriptor on which a daemonized mount reports to
// the process that started it: "ok" once mounted, else the error.
const envNotifyFD = "FFF_MOUNT_NOTIFY_FD"

type mountOpts struct {
	daemon, allowOther, readOnly, debug bool
	directIO, writeback                 bool
	attrTimeout, entryTimeout           time.Duration
	negTimeout, retryTimeout            time.Duration
	readahead                           string
	logFile                             string
	transport                           string
}

func newMountCmd() *cobra.Command {
	var o mountOpts
	cmd := &cobra.Command{
		Use:   "mount MOUNTPOINT",
		Short: "Mount the cluster's namespace on a local directory (FUSE)",
		Long: `Mount the default cluster (FFF_CLUSTER/FFF_TOKEN, else the one 'fff up' recorded)
on MOUNTPOINT with FUSE, so that every program can use it. Runs in the
foreground until interrupted (SIGINT/SIGTERM unmount it) or unmounted with
'fff umount', or in the background with --daemon. Permissions are checked by
the kernel against the caller's uid and gids with the cluster's attributes;
with the admin token new files belong to their creator. Requests made while
the cluster is unreachable are retried for --retry-timeout, then fail with EIO.
See docs/fuse.md.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMount(cmd.Context(), cmd.OutOrStdout(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.daemon, "daemon", false, "run in the background; print the mountpoint once it is mounted")
	f.BoolVar(&o.allowOther, "allow-other", false, "let other users use the mount (FUSE allow_other)")
	f.BoolVar(&o.readOnly, "read-only", false, "mount read-only")
	f.BoolVar(&o.debug, "debug", false, "log every FUSE request")
	f.BoolVar(&o.directIO, "direct-io", false, "bypass the kernel page cache: faster streams of large reads, slower small reads, no caching between opens (docs/fuse.md)")
	f.BoolVar(&o.writeback, "writeback", false, "close(2) of small files returns before their data is on the cluster: faster copies of many small files; fsync(2) and unmounting wait for the data (docs/fuse.md)")
	f.DurationVar(&o.attrTimeout, "attr-timeout", time.Second, "how long the kernel caches attributes (0: not at all)")
	f.DurationVar(&o.entryTimeout, "entry-timeout", time.Second, "how long the kernel caches names (0: not at all)")
	f.DurationVar(&o.negTimeout, "negative-timeout", time.Second, "how long the kernel remembers absent names (0: not at all)")
	f.DurationVar(&o.retryTimeout, "retry-timeout", 60*time.Second, "how long requests are retried while the cluster is unreachable before failing with EIO")
	f.StringVar(&o.readahead, "readahead", "32MiB", "largest readahead window of a sequentially read file (0: none)")
	f.StringVar(&o.transport, "transport", "auto", "how requests travel between the kernel and the mount: uring (FUSE over io_uring, Linux 6.14+ with fuse.enable_uring=Y, as root), dev (/dev/fuse) or auto (uring where possible, else dev; docs/fuse.md)")
	f.StringVar(&o.logFile, "log", "", "with --daemon: the log file (default: a file in the temporary directory, printed)")
	return cmd
}

// fuseTimeout turns a flag's 0 ("not cached") into fusefs's negative.
func fuseTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

func runMount(ctx context.Context, out io.Writer, mountpoint string, o mountOpts) error {
	mnt, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	// Before the stat: a mount whose process died fails it with ENOTCONN.
	if src, ok := fffMountAt(mnt); ok {
		return fmt.Errorf("%s is already an fff mount (of %s): unmount it first with 'fff umount %s'", mnt, src, mnt)
	}
	if st, err := os.Stat(mnt); err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) { // "stat /x: …" would read as a failure of stat
			err = pe.Err
		}
		return fmt.Errorf("%s: %w", mnt, err)
	} else if !st.IsDir() {
		return fmt.Errorf("%s: %w", mnt, syscall.ENOTDIR)
	}
	// Neither the mount process nor the fusermount it runs keeps what the
	// caller left open.
	if err := cloexecInherited(); err != nil {
		return err
	}
	transport, err := fusefs.ParseTransport(o.transport)
	if err != nil {
		return err
	}
	if o.daemon {
		return daemonizeMount(ctx, out, mnt, o)
	}
	ra, err := parseSizeFlag("readahead", o.readahead)
	if err != nil {
		return err
	}
	if ra == 0 {
		ra = -1
	}
	notify := notifier()
	if notify != nil {
		stampLogLines() // stderr is the mount's log file
	}
	fail := func(err error) error {
		if notify != nil {
			fmt.Fprintln(notify, err)
			notify.Close()
		}
		return err
	}
	c, err := libfff.Connect(ctx, fusefs.ClientOptions(libfff.Options{Logger: log.Logger}))
	if err != nil {
		return fail(explainConnect("", err))
	}
	defer c.Close()
	srv, err := fusefs.Mount(ctx, c, mnt, fusefs.Options{
		ReadOnly: o.readOnly, AllowOther: o.allowOther, Debug: o.debug, DirectIO: o.directIO,
		Writeback: o.writeback, AttrTimeout: fuseTimeout(o.attrTimeout), EntryTimeout: fuseTimeout(o.entryTimeout),
		NegativeTimeout: fuseTimeout(o.negTimeout), RetryTimeout: o.retryTimeout,
		MaxReadahead: int(ra), Transport: transport, Logger: log.Logger,
	})
	if err != nil {
		return fail(err)
	}
	state := mountState{PID: os.Getpid(), Mountpoint: mnt, Cluster: c.Address(), Log: o.logFile}
	if err := writeMountState(state); err != nil {
		log.Warn().Err(err).Msg("cannot record the mount (fff umount will not wait for this process)")
	}
	defer removeMountState(mnt, os.Getpid())
	log.Info().Str("mountpoint", mnt).Str("cluster", c.Address()).Str("transport", string(srv.Transport)).Msg("mounted")
	if notify != nil {
		fmt.Fprintln(notify, "ok")
		notify.Close()
	} else {
		fmt.Fprintln(out, mnt)
	}
	done := make(chan struct{})
	go func() {
		srv.Wait()
		close(done)
	}()
	select {
	case <-done:
		log.Info().Str("mountpoint", mnt).Msg("unmounted")
		return nil
	case <-ctx.Done():
	}
	log.Info().Str("mountpoint", mnt).Msg("signal: unmounting")
	if err := srv.Unmount(); err != nil {
		log.Error().Err(err).Msg("unmount")
	}
	<-done
	log.Info().Str("mountpoint", mnt).Msg("unmounted")
	return nil
}

// notifier returns the daemon's notification pipe, if this process is one.
func notifier() *os.File {
	s := os.Getenv(envNotifyFD)
	if s == "" {
		return nil
	}
	os.Unsetenv(envNotifyFD)
	fd, err := strconv.Atoi(s)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), "notify")
}

// daemonizeMount starts this program again as a detached `fff mount`
// (without --daemon), waits until it reports the mount ready, and prints
// the mountpoint.
func daemonizeMount(ctx context.Context, out io.Writer, mnt string, o mountOpts) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := o.logFile
	if logPath == "" {
		dir, err := stateDir()
		if err != nil {
			return err
		}
		logPath = filepath.Join(dir, "mount-"+mountKey(mnt)+".log")
	}
	logPath, _ = filepath.Abs(logPath)
	// Never through a symlink: a planted one would make this user append
	// to (or create) a file of the planter's choosing.
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("mount log: %w", err)
	}
	defer logf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	args := []string{"mount", mnt, "--log", logPath,
		"--allow-other=" + strconv.FormatBool(o.allowOther), "--read-only=" + strconv.FormatBool(o.readOnly),
		"--debug=" + strconv.FormatBool(o.debug), "--direct-io=" + strconv.FormatBool(o.directIO),
		"--writeback=" + strconv.FormatBool(o.writeback),
		"--attr-timeout=" + o.attrTimeout.String(), "--entry-timeout=" + o.entryTimeout.String(),
		"--negative-timeout=" + o.negTimeout.String(), "--retry-timeout=" + o.retryTimeout.String(),
		"--readahead=" + o.readahead, "--transport=" + o.transport}
	if lvl := log.Logger.GetLevel().String(); lvl != "" {
		args = append(args, "--log-level="+lvl)
	}
	args = append(args, "--log-format="+logFormat())
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), envNotifyFD+"=3")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return err
	}
	pw.Close()
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	msg := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		msg <- strings.TrimSpace(line)
	}()
	select {
	case m := <-msg:
		if m == "ok" {
			cmd.Process.Release()
			fmt.Fprintln(out, mnt)
			return nil
		}
		<-exited
		if m == "" {
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("the mount process exited (log %s):\n%s", logPath, lastLogLines(b, 10))
		}
		return errors.New(m)
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		return ctx.Err()
	}
}

func lastLogLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// mountState records a serving mount process, so that `fff umount` can
// wait for it to finish.
type mountState struct {
	PID        int    `json:"pid"`
	Mountpoint string `json:"mountpoint"`
	Cluster    string `json:"cluster"`
	Log        string `json:"log,omitempty"`
}

// stateDir returns this user's private directory for mount logs (and mount
// records without XDG_RUNTIME_DIR): $XDG_STATE_HOME/fff, else
// ~/.local/state/fff. Not the shared temporary directory, where another
// user can choose the names first.
func stateDir() (string, error) {
	base := os.Getenv("XDG_STATE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no directory for the mount's log and record (set XDG_STATE_HOME or HOME, or pass --log): %w", err)
		}
		base = filepath.Join(home, ".local", "state")
	}
	dir := filepath.Join(base, "fff")
	return dir, privateUserDir(dir)
}

// privateUserDir creates dir (mode 0700) if needed and checks that it is a
// directory, not a symlink, owned by this user; a mode that lets others in
// is narrowed to 0700.
func privateUserDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory (%s): refusing to keep private files there", dir, st.Mode().Type())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d): refusing to keep private files there", dir, sys.Uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("making %s private: %w", dir, err)
		}
	}
	return nil
}

// mountStateDir is where serving mounts are recorded: the per-user runtime
// directory if there is one, else the state directory.
func mountStateDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "fff", "mounts")
	}
	if d, err := stateDir(); err == nil {
		return filepath.Join(d, "mounts")
	}
	return "" // no record: fff umount does not wait
}

func mountKey(mnt string) string {
	h := sha256.Sum256([]byte(mnt))
	return hex.EncodeToString(h[:8])
}

func mountStatePath(mnt string) string {
	dir := mountStateDir()
	if dir == "" {
		return "" // not a name relative to the working directory
	}
	return filepath.Join(dir, mountKey(mnt)+".json")
}

func writeMountState(s mountState) error {
	dir := mountStateDir()
	if dir == "" {
		return errors.New("no directory for mount records (set XDG_RUNTIME_DIR, XDG_STATE_HOME or HOME)")
	}
	if err := privateUserDir(dir); err != nil {
		return err
	}
	b, _ := json.Marshal(s)
	tmp := mountStatePath(s.Mountpoint) + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, mountStatePath(s.Mountpoint))
}

func readMountState(mnt string) (mountState, bool) {
	var s mountState
	b, err := os.ReadFile(mountStatePath(mnt))
	if err != nil || json.Unmarshal(b, &s) != nil {
		return s, false
	}
	return s, true
}

// removeMountState removes mnt's record if it is pid's.
func removeMountState(mnt string, pid int) {
	if s, ok := readMountState(mnt); ok && s.PID == pid {
		os.Remove(mountStatePath(mnt))
	}
}

type umountOpts struct {
	lazy    bool
	timeout time.Duration
}

func newUmountCmd() *cobra.Command {
	var o umountOpts
	cmd := &cobra.Command{
		Use:   "umount MOUNTPOINT",
		Short: "Unmount an fff FUSE mount and wait for its process to finish",
		Long: `Unmount MOUNTPOINT (mounted by 'fff mount') and wait until the mount process has
sent its buffered writes and exited. A mount whose process died (the kernel
answers ENOTCONN) is detached lazily; --lazy detaches a busy mount too (it
disappears at once; its process ends when the last open file is closed).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUmount(cmd.Context(), args[0], o)
		},
	}
	cmd.Flags().BoolVarP(&o.lazy, "lazy", "l", false, "detach a busy mount lazily")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait for the mount process to exit")
	return cmd
}

func runUmount(ctx context.Context, mountpoint string, o umountOpts) error {
	mnt, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	state, haveState := readMountState(mnt)
	if err := unmount(mnt, o.lazy); err != nil {
		if haveState && !alive(state.PID) {
			os.Remove(mountStatePath(mnt))
		}
		return err
	}
	if !haveState {
		return nil
	}
	deadline := time.Now().Add(o.timeout)
	for alive(state.PID) {
		if time.Now().After(deadline) {
			return fmt.Errorf("unmounted %s, but its mount process %d has not exited after %v", mnt, state.PID, o.timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	os.Remove(mountStatePath(mnt))
	return nil
}

// unmount unmounts mnt: umount2 as root (lazily for a dead mount or with
// lazy), else fusermount3/fusermount -u.
func unmount(mnt string, lazy bool) error {
	flags := 0
	if lazy {
		flags = syscall.MNT_DETACH
	}
	err := syscall.Unmount(mnt, flags)
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EBUSY) && !lazy {
		var st syscall.Stat_t
		if serr := syscall.Stat(mnt, &st); errors.Is(serr, syscall.ENOTCONN) {
			// The mount's process is gone: nothing can be flushed any more.
			if err = syscall.Unmount(mnt, syscall.MNT_DETACH); err == nil {
				return nil
			}
		}
		return fmt.Errorf("unmount %s: %w (files are open or a process works in it; --lazy detaches it anyway)", mnt, syscall.EBUSY)
	}
	if errors.Is(err, syscall.EPERM) {
		for _, fm := range []string{"fusermount3", "fusermount"} {
			if p, lerr := exec.LookPath(fm); lerr == nil {
				args := []string{"-u"}
				if lazy {
					args = append(args, "-z")
				}
				out, ferr := exec.Command(p, append(args, mnt)...).CombinedOutput()
				if ferr == nil {
					return nil
				}
				return fmt.Errorf("unmount %s: %s: %s", mnt, fm, strings.TrimSpace(string(out)))
			}
		}
	}
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s: not mounted", mnt)
	}
	if errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("%s: %w", mnt, syscall.ENOENT)
	}
	return fmt.Errorf("unmount %s: %w", mnt, err)
}

// fffMountAt reports whether mnt is the mountpoint of an fff FUSE mount,
// and its source ("fff:ADDRESS"), from /proc/self/mountinfo.
func fffMountAt(mnt string) (source string, ok bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	return findFFFMount(f, mnt)
}

// findFFFMount scans a mountinfo table (proc_pid_mountinfo(5)) for an fff
// mount on mnt: fstype fuse.fff (fusefs names its mounts "fff"), or a FUSE
// mount whose source starts with "fff:". The last mount on mnt counts: it
// is the one a path lookup sees.
func findFFFMount(r io.Reader, mnt string) (source string, ok bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) || unescapeMountinfo(fields[4]) != mnt {
			continue
		}
		fstype, src := fields[sep+1], unescapeMountinfo(fields[sep+2])
		source, ok = src, fstype == "fuse.fff" || strings.HasPrefix(fstype, "fuse") && strings.HasPrefix(src, "fff:")
	}
	return source, ok
}

// unescapeMountinfo undoes the octal escapes (\040 for a space) of a
// mountinfo field.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseSizeFlag reads a size flag ("32MiB", "0").
func parseSizeFlag(name, v string) (int64, error) {
	if v == "0" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(v)
	if err != nil {
		return 0, usageErrorf("--%s: %v", name, err)
	}
	return int64(n), nil
}
