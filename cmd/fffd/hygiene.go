package main

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// closeInherited closes every descriptor above stderr that this process
// inherited: fffd is a daemon, and a descriptor its starter left open
// without close-on-exec (a shell's `exec 9>lock; flock 9`) would stay held
// for as long as fffd runs. Inherited descriptors are exactly those without
// close-on-exec (exec closed the others); Go opens its own with it, so
// none of the runtime's is touched. Run first thing in main.
func closeInherited() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return // no /proc: nothing better to do than keep them
	}
	for _, ent := range ents {
		fd, err := strconv.Atoi(ent.Name())
		if err != nil || fd <= 2 {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
}

// privateDataDir creates the node's data directory (mode 0700) if needed
// and checks it: it holds the admin token and the same-host Unix socket,
// so it must be this user's and closed to others. A directory owned by
// another user is refused; a mode that lets others in (an older version
// or an operator's mkdir) is narrowed to 0700 with a warning. A symlink
// to a directory is followed: the operator chose it.
func privateDataDir(dir string, log zerolog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return fmt.Errorf("data directory %s belongs to uid %d, not to the user running fffd (uid %d): refusing it (it holds the admin token and the node's socket)", dir, sys.Uid, os.Geteuid())
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data directory %s has mode %v: making it private: %w", dir, perm, err)
		}
		log.Warn().Str("data", dir).Str("was", perm.String()).Msg("data directory was open to other users: narrowed to 0700")
	}
	return nil
}
