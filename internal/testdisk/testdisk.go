// Package testdisk gives tests a small disk of their own, to fill up: a
// tmpfs mounted on a temporary directory.
package testdisk

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// Tmpfs mounts a tmpfs with mount options opts ("size=24m", …) on a new
// temporary directory and returns it; it is unmounted when the test ends,
// after the cleanups registered later (a daemon on it is stopped first).
// The test is skipped where it cannot mount (not root).
func Tmpfs(tb testing.TB, opts string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to mount a small tmpfs")
	}
	dir := tb.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, opts); err != nil {
		tb.Skipf("cannot mount a tmpfs: %v", err)
	}
	tb.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}
