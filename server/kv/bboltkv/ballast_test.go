package bboltkv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"fff/internal/testdisk"
	"fff/server/kv"
)

// TestBallast: on a disk with no free block, Update fails with ENOSPC and
// UpdateReserved goes through by releasing the ballast; once the disk has
// room again, the next UpdateReserved makes the ballast again. Needs root,
// for a 24 MiB tmpfs.
func TestBallast(t *testing.T) {
	disk := testdisk.Tmpfs(t, "size=24m")
	path := filepath.Join(disk, "kv.db")
	db, err := Open(path, &Options{BallastSize: 2 << 20, InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if st, err := os.Stat(path + ".ballast"); err != nil || st.Size() != 2<<20 {
		t.Fatalf("ballast after Open: %v, %v", st, err)
	}
	ctx := context.Background()
	filler := filepath.Join(disk, "filler")
	fillDisk(t, filler)
	value := make([]byte, 64<<10)
	set := func(i int) func(kv.Txn) error {
		return func(tx kv.Txn) error { return tx.Set(fmt.Appendf(nil, "k%03d", i), value) }
	}
	// Use up bbolt's own free pages.
	i := 0
	for ; ; i++ {
		err := db.Update(ctx, set(i))
		if err == nil {
			continue
		}
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("Update on a full disk: %v, want ENOSPC", err)
		}
		break
	}
	if err := db.UpdateReserved(ctx, set(i)); err != nil {
		t.Fatalf("UpdateReserved on a full disk: %v", err)
	}
	if _, err := os.Stat(path + ".ballast"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the ballast is still there after UpdateReserved used it: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateReserved(ctx, func(tx kv.Txn) error { return tx.Clear([]byte("k000")) }); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path + ".ballast"); err != nil || st.Size() != 2<<20 {
		t.Fatalf("ballast once the disk has room again: %v, %v", st, err)
	}
}

// fillDisk writes path until its filesystem has no free block.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for n := len(buf); n > 0; n /= 2 {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
}
