package chunkengine

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// checkPrivate fails unless every directory under dir (dir included) is
// dirMode and every file fileMode.
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		st, err := d.Info()
		if err != nil {
			return err
		}
		want := fileMode
		if d.IsDir() {
			want = dirMode
		} else if filepath.Base(p) != metaFileName {
			files++
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatalf("no data file under %s", dir)
	}
}

// TestPrivateModes checks that chunk data is private to the server's user
// whatever the umask and whatever modes the directories already had.
// Not parallel: it sets the process's umask.
func TestPrivateModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	id := ChunkID{Ino: 7, Index: 1}
	for _, tc := range []struct {
		name string
		// widen runs between a first engine's close and the checked open.
		widen func(t *testing.T, dir string)
	}{
		{"new", nil},
		{"wide dirs", func(t *testing.T, dir string) {
			err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					err = os.Chmod(p, 0o777)
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"wide target", func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "target")
			if err := os.Mkdir(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			e := openEngine(t, dir, Options{})
			mustWrite(t, e, id, 0, pattern(1, 8192))
			if tc.widen != nil {
				if err := e.Close(); err != nil {
					t.Fatal(err)
				}
				tc.widen(t, dir)
				e = openEngine(t, dir, Options{})
				mustWrite(t, e, ChunkID{Ino: 8}, 0, pattern(2, 4096))
			}
			checkPrivate(t, dir)
		})
	}
}

// TestPrivateDirRefusesSymlink checks that a fan-out directory replaced by
// a symlink is refused rather than followed.
func TestPrivateDirRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "ab")); err != nil {
		t.Fatal(err)
	}
	if err := privateDir(filepath.Join(dir, "ab"), false); err == nil {
		t.Fatal("privateDir accepted a symlink")
	}
	if err := privateDir(filepath.Join(dir, "ab"), true); err != nil {
		t.Fatalf("privateDir(follow) of a symlinked target: %v", err)
	}
}
