package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Local destinations are written atomically: a hidden temporary file in
// the destination's directory, renamed over the name by commit, removed by
// abort.

// tmpLeft fails the test if a temporary file is left in dir.
func tmpLeft(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), tmpSuffix) {
			t.Fatalf("temporary file %s left in %s", e.Name(), dir)
		}
	}
}

func TestLocalCreateCommitAbort(t *testing.T) {
	mtime := time.Date(2022, 2, 2, 2, 2, 2, 0, time.UTC)
	tests := []struct {
		name     string
		existing bool        // dst holds "old" with mode 0o640 before
		perm     fs.FileMode // given to create
		exact    bool
		attrs    *xattrs
		abort    bool
		wantData string
		wantPerm fs.FileMode
	}{
		{name: "new file", perm: 0o600, wantData: "new", wantPerm: 0o600},
		{name: "replaced file keeps its mode", existing: true, perm: 0o600, wantData: "new", wantPerm: 0o640},
		{name: "exact mode, no umask", existing: true, perm: 0o777, exact: true, wantData: "new", wantPerm: 0o777},
		{name: "-p", existing: true, perm: 0o604, exact: true, attrs: &xattrs{perm: 0o604, mtime: mtime}, wantData: "new", wantPerm: 0o604},
		{name: "abort over a file", existing: true, perm: 0o600, abort: true, wantData: "old", wantPerm: 0o640},
		{name: "abort of a new file", perm: 0o600, abort: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "f")
			if tc.existing {
				if err := os.WriteFile(dst, []byte("old"), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			w, err := localFS{}.create(context.Background(), dst, tc.perm, tc.exact)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(w, "new"); err != nil {
				t.Fatal(err)
			}
			// Written, not committed: the name still holds what it held.
			if b, err := os.ReadFile(dst); tc.existing && string(b) != "old" || !tc.existing && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("before commit, %s reads %q, %v", dst, b, err)
			}
			if got, _ := io.ReadAll(w.reader()); string(got) != "new" {
				t.Fatalf("reader reads %q back", got)
			}
			if tc.abort {
				w.abort()
			} else if err := w.commit(context.Background(), tc.attrs); err != nil {
				t.Fatal(err)
			}
			w.abort() // after commit: nothing
			tmpLeft(t, dir)
			b, err := os.ReadFile(dst)
			if tc.wantData == "" {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s after abort: %q, %v; want none", dst, b, err)
				}
				return
			}
			if err != nil || string(b) != tc.wantData {
				t.Fatalf("%s reads %q, %v; want %q", dst, b, err, tc.wantData)
			}
			st, err := os.Stat(dst)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.wantPerm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.wantPerm)
			}
			if tc.attrs != nil && !st.ModTime().Equal(mtime) {
				t.Errorf("mtime %v, want %v", st.ModTime(), mtime)
			}
		})
	}
}

// TestLocalCreateSpecial: a symlink's target is replaced, not the symlink;
// a FIFO (as /dev/null) is written into; a directory is refused at once.
func TestLocalCreateSpecial(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("target", link); err != nil {
		t.Fatal(err)
	}
	w, err := localFS{}.create(ctx, link, 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "new")
	if err := w.commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the symlink was replaced: %v, %v", st, err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("the symlink's target reads %q", b)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		b, _ := os.ReadFile(fifo)
		got <- string(b)
	}()
	w, err = localFS{}.create(ctx, fifo, 0o644, false)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "through")
	if w.reader() != nil {
		t.Fatal("a FIFO offers a reader for --verify")
	}
	if err := w.commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "through" {
		t.Fatalf("the FIFO's reader got %q", s)
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&fs.ModeNamedPipe == 0 {
		t.Fatalf("the FIFO was replaced: %v, %v", st, err)
	}

	if _, err := (localFS{}).create(ctx, dir, 0o644, false); !errors.Is(err, syscall.EISDIR) {
		t.Fatalf("create over a directory: %v, want EISDIR", err)
	}
	tmpLeft(t, dir)
}

// TestCtxReader: a read blocked on an idle pipe returns when the context
// ends (Ctrl-C during `fff put -`).
func TestCtxReader(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cr := &ctxReader{ctx: ctx, r: r}
	go w.WriteString("abc")
	buf := make([]byte, 10)
	if n, err := cr.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := cr.Read(buf)
		done <- err
	}()
	// Most likely blocked by now; either way the read must end.
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a read of an idle pipe did not return after cancel")
	}
}
