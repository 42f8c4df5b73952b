package bboltkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"

	"fff/server/kv"
)

// goodFile returns the bytes of a closed, valid database holding n keys.
func goodFile(t testing.TB, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "good.db")
	db, err := Open(path, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 100 {
		err := db.Update(context.Background(), func(tx kv.Txn) error {
			for j := i; j < i+100 && j < n; j++ {
				if err := tx.Set([]byte(fmt.Sprintf("key%06d", j)), bytes.Repeat([]byte{'v'}, 100)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pageSizeOf(t *testing.T, b []byte) int {
	t.Helper()
	m, err := decodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	return int(m.pageSize)
}

var pngHeader = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00")

// TestOpenDamaged damages a valid file in the ways a disk, a crash or an
// operator does, and checks that Open refuses it with ErrCorrupt naming
// the file and fffd check, and never panics or faults.
func TestOpenDamaged(t *testing.T) {
	good := goodFile(t, 2000)
	ps := pageSizeOf(t, good)
	hdr, reason, err := checkHeader(bytes.NewReader(good), int64(len(good)))
	if err != nil || reason != "" || hdr.Pages < 10 {
		t.Fatalf("good file: %+v, %q, %v", hdr, reason, err)
	}
	meta1 := func(b []byte) []byte { return b[ps:] }
	tests := []struct {
		name    string
		damage  func(b []byte) []byte
		corrupt bool
	}{
		{"intact", func(b []byte) []byte { return b }, false},
		// bbolt grows the file ahead of its pages: only a cut into the
		// pages in use is damage.
		{"truncated below the pages in use", func(b []byte) []byte { return b[:(hdr.Pages-1)*uint64(ps)] }, true},
		{"truncated to 3 pages", func(b []byte) []byte { return b[:3*ps] }, true},
		{"truncated mid-page", func(b []byte) []byte { return b[:len(b)-ps/2] }, true},
		{"truncated inside meta page 0", func(b []byte) []byte { return b[:40] }, true},
		{"both meta pages zeroed", func(b []byte) []byte {
			clear(b[:pageHeaderSize+metaSize])
			clear(meta1(b)[:pageHeaderSize+metaSize])
			return b
		}, true},
		{"bit flip in both meta pages", func(b []byte) []byte {
			b[pageHeaderSize+20] ^= 0x10
			meta1(b)[pageHeaderSize+44] ^= 0x01
			return b
		}, true},
		{"foreign file (PNG)", func(b []byte) []byte {
			return append(append([]byte{}, pngHeader...), make([]byte, 8*ps)...)
		}, true},
		{"foreign file (text)", func(b []byte) []byte { return []byte(strings.Repeat("hello\n", 5000)) }, true},
		// A torn write of one meta page at a crash is what bbolt's two
		// meta pages are for: it falls back to the other one.
		{"meta page 0 zeroed", func(b []byte) []byte { clear(b[:pageHeaderSize+metaSize]); return b }, false},
		{"meta page 1 bit flip", func(b []byte) []byte { meta1(b)[pageHeaderSize+50] ^= 0x80; return b }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "meta.db")
			if err := os.WriteFile(path, tc.damage(append([]byte{}, good...)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, cerr := CheckFile(path)
			db, err := Open(path, &Options{NoSync: true})
			if !tc.corrupt {
				if cerr != nil || err != nil {
					t.Fatalf("CheckFile: %v, Open: %v; want both to accept the file", cerr, err)
				}
				defer db.Close()
				if err := db.View(context.Background(), func(tx kv.ReadTxn) error {
					_, err := tx.Range([]byte("key"), []byte("kez"), kv.RangeOptions{})
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				db.Close()
				t.Fatal("Open accepted a damaged file")
			}
			for _, e := range []error{cerr, err} {
				if !errors.Is(e, ErrCorrupt) {
					t.Fatalf("error %v is not ErrCorrupt", e)
				}
				if msg := e.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, "fffd check") {
					t.Fatalf("error %q does not name the file and fffd check", msg)
				}
			}
		})
	}
}

// TestOpenMissingOrEmpty: a new file is no damage.
func TestOpenMissingOrEmpty(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "new.db"), empty} {
		db, err := Open(p, &Options{NoSync: true})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		db.Close()
	}
}

// TestGuardFault: a read of a mapped page beyond the end of a truncated
// file (SIGBUS) becomes ErrCorrupt under guard instead of killing the
// process.
func TestGuardFault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ps := os.Getpagesize()
	if err := f.Truncate(int64(2 * ps)); err != nil {
		t.Fatal(err)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, 2*ps, syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	read := func() (b byte, err error) {
		defer guard(&err, debug.SetPanicOnFault(true))
		return m[ps], nil
	}
	if _, err := read(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("read beyond a truncated mapping: %v, want ErrCorrupt", err)
	}
}

// FuzzCheckHeader: the header check never panics, and a file it accepts
// has the shape bbolt relies on when it maps it.
func FuzzCheckHeader(f *testing.F) {
	good := goodFile(f, 300)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(pngHeader)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, reason, err := checkHeader(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			t.Fatal(err)
		}
		if reason != "" || len(b) == 0 {
			return
		}
		ps := int64(h.PageSize)
		if ps < minPageSize || int64(len(b))%ps != 0 || h.Pages < minPages || h.Pages*uint64(ps) > uint64(len(b)) {
			t.Fatalf("accepted %d bytes with page size %d and %d pages", len(b), ps, h.Pages)
		}
	})
}
