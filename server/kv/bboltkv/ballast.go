package bboltkv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"fff/server/kv"
)

// The ballast: room kept on the file's disk for transactions that free
// space (issue 14, "disk full is survivable").
//
// A bbolt commit writes new pages, and when its free list has none left it
// grows the file: on a disk with no free block, every transaction fails
// with ENOSPC, including those that delete, so a full disk could never be
// emptied through fff (storage removes a chunk's record before its data
// file; meta records an unlink before the chunks are collected). With
// Options.BallastSize, the database keeps a file of that many preallocated
// bytes next to it, PATH.ballast (as CockroachDB keeps its ballast).
// UpdateReserved, which callers use for transactions that free space, on
// ENOSPC deletes the ballast and runs again; the ballast is made again by a
// later UpdateReserved once the disk has room for four of it. Update never
// uses it: writes fail with ENOSPC as before.

// ballast is the database's reserved room; size <= 0: none.
type ballast struct {
	path    string
	size    int64
	mu      sync.Mutex  // making or deleting the file
	missing atomic.Bool // released, or no room to make it
}

// ensure makes the ballast if it is missing, when the filesystem has room
// for four of it; it reports whether the ballast is in place.
func (b *ballast) ensure() (bool, error) {
	if b.size <= 0 {
		return true, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if st, err := os.Stat(b.path); err == nil && st.Size() >= b.size {
		b.missing.Store(false)
		return true, nil
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(filepath.Dir(b.path), &fs); err != nil || int64(fs.Bavail)*int64(fs.Bsize) < 4*b.size {
		b.missing.Store(true)
		return false, nil
	}
	if err := writeBallast(b.path, b.size); err != nil {
		os.Remove(b.path)
		b.missing.Store(true)
		return false, err
	}
	b.missing.Store(false)
	return true, nil
}

// writeBallast makes path a durable file of size allocated bytes.
func writeBallast(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
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
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// release deletes the ballast; it reports whether there was one.
func (b *ballast) release() bool {
	if b.size <= 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	err := os.Remove(b.path)
	b.missing.Store(true)
	return err == nil
}

// isNoSpace reports whether err is the filesystem's ENOSPC (or EDQUOT).
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// UpdateReserved implements kv.Reserved: Update for a transaction that
// frees space, which may use the ballast when the disk is full.
func (d *DB) UpdateReserved(ctx context.Context, fn func(kv.Txn) error) error {
	err := d.Update(ctx, fn)
	if isNoSpace(err) && d.ballast.release() {
		d.log.Warn().Str("file", d.path).Int64("bytes", d.ballast.size).
			Msg("bboltkv: the disk is full; released the ballast so that removals can free space")
		err = d.Update(ctx, fn)
	}
	if err == nil && d.ballast.missing.Load() {
		if ok, berr := d.ballast.ensure(); berr != nil {
			d.log.Warn().Err(berr).Str("file", d.ballast.path).Msg("bboltkv: cannot make the ballast again")
		} else if ok {
			d.log.Info().Str("file", d.ballast.path).Msg("bboltkv: ballast made again")
		}
	}
	return err
}

var _ kv.Reserved = (*DB)(nil)
