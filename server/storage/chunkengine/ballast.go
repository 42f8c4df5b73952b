package chunkengine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The ballast: room kept for removals on a full disk (issue 14, "disk full
// is survivable").
//
// Removing a chunk commits the deletion of its record before it unlinks the
// data file (the crash ordering of the package documentation), and a bbolt
// commit writes new pages: on a disk with no free block, the removal fails
// with ENOSPC, the file stays, and space never comes back. So every target
// keeps a file of Options.BallastSize preallocated bytes, TARGET/ballast (as
// CockroachDB keeps its ballast). A removal whose commit fails with ENOSPC
// deletes the ballast and commits again; once removals have freed four
// times its size, it is made again. Only removals (storage's garbage
// collection, `fff rm`) may use it: writes fail with ENOSPC as before.

// DefaultBallastSize is Options.BallastSize's default.
const DefaultBallastSize = 16 << 20

const ballastName = "ballast"

// ballastPath is the target's ballast file.
func (e *Engine) ballastPath() string { return filepath.Join(e.dir, ballastName) }

// ensureBallast makes the ballast if the engine keeps one and it is
// missing, when the filesystem has room for four of it; it reports whether
// the ballast is in place.
func (e *Engine) ensureBallast() bool {
	if e.ballast <= 0 {
		return true
	}
	e.ballastMu.Lock()
	defer e.ballastMu.Unlock()
	if st, err := os.Stat(e.ballastPath()); err == nil && st.Size() >= e.ballast {
		e.noBallast.Store(false)
		return true
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(e.dir, &fs); err != nil || int64(fs.Bavail)*int64(fs.Bsize) < 4*e.ballast {
		e.noBallast.Store(true)
		return false
	}
	if err := writeBallast(e.ballastPath(), e.ballast); err != nil {
		os.Remove(e.ballastPath())
		e.log.Warn().Err(err).Str("dir", e.dir).Msg("chunkengine: cannot make the target's ballast (room kept for removals on a full disk)")
		e.noBallast.Store(true)
		return false
	}
	e.noBallast.Store(false)
	return true
}

// writeBallast makes path a durable file of size allocated bytes.
func writeBallast(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, fileMode)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		if !errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("fallocate %s: %w", path, err)
		}
		zeros := make([]byte, 1<<20)
		for off := int64(0); off < size; off += int64(len(zeros)) {
			if _, err := f.Write(zeros[:min(int64(len(zeros)), size-off)]); err != nil {
				return err
			}
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// releaseBallast deletes the ballast, for a removal that found the disk
// full; it reports whether there was one to delete.
func (e *Engine) releaseBallast() bool {
	if e.ballast <= 0 {
		return false
	}
	e.ballastMu.Lock()
	defer e.ballastMu.Unlock()
	err := os.Remove(e.ballastPath())
	e.noBallast.Store(true)
	if err != nil {
		return false
	}
	e.log.Warn().Str("dir", e.dir).Int64("bytes", e.ballast).
		Msg("chunkengine: the disk is full; released the target's ballast so that removals can free space")
	return true
}

// isNoSpace reports whether err is the filesystem's ENOSPC (or EDQUOT).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}
