package tests

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/libfff"
)

func names(es []libfff.DirEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Name()
	}
	return out
}

// TestNamespace drives every namespace operation through libfff against a
// real fffd, and the errors each one reports.
func TestNamespace(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	c := cl.admin(t)
	ctx := ctxFor(t)

	who, err := c.WhoAmI(ctx)
	if err != nil || !who.Admin || who.Name != "admin" {
		t.Fatalf("whoami = %+v, %v", who, err)
	}
	root, err := c.Stat(ctx, "/")
	if err != nil || !root.IsDir() || root.Ino() != proto.RootIno || root.Name() != "/" {
		t.Fatalf("stat / = %+v, %v", root, err)
	}

	// mkdir, MkdirAll, create, stat, readdir.
	if err := c.Mkdir(ctx, "/data", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.MkdirAll(ctx, "fff:///data/train/shards", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := c.MkdirAll(ctx, "/data/train", 0o750); err != nil {
		t.Fatalf("MkdirAll of an existing directory: %v", err)
	}
	fi, err := c.CreateFile(ctx, "/data/train/a.ffr", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name() != "a.ffr" || fi.Mode() != 0o644 || fi.Size() != 0 || fi.IsDir() {
		t.Fatalf("new file: %+v mode %v", fi.Inode, fi.Mode())
	}
	if l := fi.Inode.Layout; l == nil || l.ChunkSize == 0 || l.Stripe == 0 || len(l.Chains) != int(l.Stripe) {
		t.Fatalf("new file layout: %+v", l)
	}
	if _, err := c.CreateFile(ctx, "/data/train/b.ffr", 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "/data/train/shards"); err != nil || !fi.IsDir() || fi.Mode() != fs.ModeDir|0o750 {
		t.Fatalf("stat dir: %v %v", fi, err)
	}
	es, err := c.ReadDir(ctx, "/data/train")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(es); !slices.Equal(got, []string{"a.ffr", "b.ffr", "shards"}) {
		t.Fatalf("readdir = %v", got)
	}
	for _, e := range es {
		info, err := e.Info()
		if err != nil || info.Name() != e.Name() || info.IsDir() != e.IsDir() || e.Attr().Ino != e.Ino() {
			t.Fatalf("entry %s: %v %v", e.Name(), info, err)
		}
	}

	// symlink, readlink, stat vs lstat, hard link.
	if err := c.Symlink(ctx, "train/shards", "/data/s"); err != nil {
		t.Fatal(err)
	}
	if err := c.Symlink(ctx, "/data/train/a.ffr", "/data/abs"); err != nil {
		t.Fatal(err)
	}
	if tgt, err := c.Readlink(ctx, "/data/s"); err != nil || tgt != "train/shards" {
		t.Fatalf("readlink = %q, %v", tgt, err)
	}
	if fi, err := c.Lstat(ctx, "/data/s"); err != nil || fi.Mode()&fs.ModeSymlink == 0 || fi.Size() != int64(len("train/shards")) {
		t.Fatalf("lstat symlink: %v %v", fi, err)
	}
	if fi, err := c.Stat(ctx, "/data/s"); err != nil || !fi.IsDir() {
		t.Fatalf("stat through symlink: %v %v", fi, err)
	}
	if fi, err := c.Stat(ctx, "/data/abs"); err != nil || fi.Name() != "abs" || fi.IsDir() {
		t.Fatalf("stat through absolute symlink: %v %v", fi, err)
	}
	if _, err := c.CreateFile(ctx, "/data/s/x", 0o644); err != nil { // a symlink in the parent path is followed
		t.Fatal(err)
	}
	if _, err := c.Stat(ctx, "/data/train/shards/x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Link(ctx, "/data/train/a.ffr", "/data/hard"); err != nil {
		t.Fatal(err)
	}
	a, _ := c.Stat(ctx, "/data/train/a.ffr")
	h, _ := c.Stat(ctx, "/data/hard")
	if a == nil || h == nil || a.Ino() != h.Ino() || h.Inode.Nlink != 2 {
		t.Fatalf("hard link: %+v %+v", a, h)
	}

	// Attributes.
	if err := c.Chmod(ctx, "/data/hard", 0o640|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := c.Chown(ctx, "/data/hard", 1234, 77); err != nil {
		t.Fatal(err)
	}
	if err := c.Chown(ctx, "/data/hard", -1, 78); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate(ctx, "/data/hard", 5<<20); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2021, 3, 4, 5, 6, 7, 8, time.UTC)
	mt := time.Date(2022, 3, 4, 5, 6, 7, 9, time.UTC)
	if err := c.Chtimes(ctx, "/data/hard", at, mt); err != nil {
		t.Fatal(err)
	}
	fi, err = c.Stat(ctx, "/data/train/a.ffr")
	if err != nil {
		t.Fatal(err)
	}
	n := fi.Inode
	if fi.Mode() != 0o640|fs.ModeSetgid || n.UID != 1234 || n.GID != 78 || n.Size != 5<<20 || n.Atime != at.UnixNano() || n.Mtime != mt.UnixNano() || n.TruncVer != 1 {
		t.Fatalf("attributes: %+v (mode %v)", n, fi.Mode())
	}
	if err := c.Touch(ctx, "/data/hard"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := c.Stat(ctx, "/data/hard"); fi == nil || fi.Inode.Mtime <= mt.UnixNano() || fi.Size() != 5<<20 {
		t.Fatalf("touch of an existing file: %+v", fi)
	}
	if err := c.Touch(ctx, "/data/touched"); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "/data/touched"); err != nil || fi.Mode() != libfff.TouchMode || fi.Size() != 0 {
		t.Fatalf("touch created %v, %v", fi, err)
	}
	if err := c.SetDirLayout(ctx, "/data/train/shards", proto.DirLayout{ChunkSize: 1 << 20, Stripe: 1}); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.CreateFile(ctx, "/data/train/shards/small", 0o644); err != nil || fi.Inode.Layout.ChunkSize != 1<<20 || fi.Inode.Layout.Stripe != 1 {
		t.Fatalf("file under a layout policy: %+v, %v", fi, err)
	}

	// Rename: within a directory, across directories, replacing a file,
	// a directory onto an empty directory.
	if err := c.Rename(ctx, "/data/touched", "/data/t2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, "/data/t2", "/data/train/t3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, "/data/train/t3", "/data/train/b.ffr"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mkdir(ctx, "/empty", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, "/data/train/shards", "/empty"); err != nil {
		t.Fatal(err)
	}
	if es, err := c.ReadDir(ctx, "/empty"); err != nil || !slices.Equal(names(es), []string{"small", "x"}) {
		t.Fatalf("renamed directory holds %v, %v", names(es), err)
	}
	if es, err := c.ReadDir(ctx, "/data/train"); err != nil || !slices.Equal(names(es), []string{"a.ffr", "b.ffr"}) {
		t.Fatalf("after renames /data/train holds %v, %v", names(es), err)
	}

	// Errors, each matched with the proto sentinel and the io/fs error.
	if err := c.Mkdir(ctx, "/file", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "/file"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateFile(ctx, "/file", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Mkdir(ctx, "/full", 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateFile(ctx, "/full/x", 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat(ctx, "/nope")
	wantErr(t, "stat missing", err, proto.ErrNotFound, fs.ErrNotExist)
	var pe *fs.PathError
	if !errors.As(err, &pe) || pe.Op != "stat" || pe.Path != "/nope" || err.Error() != "stat /nope: no such file or directory" {
		t.Fatalf("path error: %#v", err)
	}
	_, err = c.Stat(ctx, "/nope/deeper")
	wantErr(t, "stat below missing", err, proto.ErrNotFound, fs.ErrNotExist)
	wantErr(t, "mkdir below missing", c.Mkdir(ctx, "/nope/x", 0o755), proto.ErrNotFound, fs.ErrNotExist)
	wantErr(t, "remove missing", c.Remove(ctx, "/nope"), proto.ErrNotFound, fs.ErrNotExist)
	wantErr(t, "rename missing", c.Rename(ctx, "/nope", "/x"), proto.ErrNotFound, fs.ErrNotExist)
	_, err = c.Readlink(ctx, "/nope")
	wantErr(t, "readlink missing", err, proto.ErrNotFound, fs.ErrNotExist)
	wantErr(t, "chmod missing", c.Chmod(ctx, "/nope", 0o644), proto.ErrNotFound, fs.ErrNotExist)

	wantErr(t, "mkdir existing", c.Mkdir(ctx, "/data", 0o755), proto.ErrExist, fs.ErrExist)
	wantErr(t, "mkdir over a file", c.Mkdir(ctx, "/file", 0o755), proto.ErrExist, fs.ErrExist)
	wantErr(t, "mkdir /", c.Mkdir(ctx, "/", 0o755), proto.ErrExist, fs.ErrExist)
	_, err = c.CreateFile(ctx, "/file", 0o644)
	wantErr(t, "create existing", err, proto.ErrExist, fs.ErrExist)
	wantErr(t, "symlink over existing", c.Symlink(ctx, "x", "/file"), proto.ErrExist, fs.ErrExist)
	wantErr(t, "link over existing", c.Link(ctx, "/file", "/data/hard"), proto.ErrExist, fs.ErrExist)

	wantErr(t, "mkdir below a file", c.Mkdir(ctx, "/file/x", 0o755), proto.ErrNotDir)
	wantErr(t, "MkdirAll below a file", c.MkdirAll(ctx, "/file/x/y", 0o755), proto.ErrNotDir)
	_, err = c.CreateFile(ctx, "/file/x", 0o644)
	wantErr(t, "create below a file", err, proto.ErrNotDir)
	_, err = c.ReadDir(ctx, "/file")
	wantErr(t, "readdir of a file", err, proto.ErrNotDir)
	_, err = c.Stat(ctx, "/file/x")
	wantErr(t, "stat below a file", err, proto.ErrNotDir)
	wantErr(t, "rename a directory onto a file", c.Rename(ctx, "/empty", "/file"), proto.ErrNotDir)

	wantErr(t, "rename a file onto a directory", c.Rename(ctx, "/file", "/empty"), proto.ErrIsDir)
	wantErr(t, "truncate a directory", c.Truncate(ctx, "/empty", 0), proto.ErrIsDir)

	wantErr(t, "remove a non-empty directory", c.Remove(ctx, "/full"), proto.ErrNotEmpty)
	wantErr(t, "rename onto a non-empty directory", c.Rename(ctx, "/empty", "/full"), proto.ErrNotEmpty)

	wantErr(t, "rename a directory into itself", c.Rename(ctx, "/data", "/data/train/data"), proto.ErrInvalid, fs.ErrInvalid)
	wantErr(t, "rename a directory below itself", c.Rename(ctx, "/data/train", "/data/train/a/b"), proto.ErrNotFound)
	if err := c.Mkdir(ctx, "/data/train/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "rename a directory into its subtree", c.Rename(ctx, "/data", "/data/train/sub/data"), proto.ErrInvalid, fs.ErrInvalid)
	wantErr(t, "rename /", c.Rename(ctx, "/", "/x"), proto.ErrInvalid)
	_, err = c.Readlink(ctx, "/file")
	wantErr(t, "readlink of a file", err, proto.ErrInvalid, fs.ErrInvalid)
	wantErr(t, "remove /", c.Remove(ctx, "/"), proto.ErrInvalid)
	wantErr(t, "RemoveAll /", c.RemoveAll(ctx, "/"), proto.ErrInvalid)
	wantErr(t, "truncate to a negative size", c.Truncate(ctx, "/file", -1), proto.ErrInvalid)

	wantErr(t, "hard link to a directory", c.Link(ctx, "/empty", "/elink"), proto.ErrNotPermitted, fs.ErrPermission)
	wantErr(t, "long name", c.Mkdir(ctx, "/"+strings.Repeat("n", 256), 0o755), proto.ErrNameTooLong)
	if err := c.Symlink(ctx, "loop2", "/loop1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Symlink(ctx, "loop1", "/loop2"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Stat(ctx, "/loop1")
	wantErr(t, "symlink loop", err, proto.ErrLoop)
	wantErr(t, "another cluster's path", c.Mkdir(ctx, "fff://127.0.0.1:1/x", 0o755), proto.ErrCrossDevice)
	var le *os.LinkError
	if err := c.Rename(ctx, "/file", "/empty"); !errors.As(err, &le) || le.Old != "/file" || le.New != "/empty" {
		t.Fatalf("rename error: %#v", err)
	}

	// Remove and RemoveAll.
	if err := c.Remove(ctx, "/loop1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "/data/hard"); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "/data/train/a.ffr"); err != nil || fi.Inode.Nlink != 1 {
		t.Fatalf("after removing a link: %v %v", fi, err)
	}
	if err := c.Remove(ctx, "/empty/x"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "/empty/small"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "/empty"); err != nil {
		t.Fatalf("remove an empty directory: %v", err)
	}
	before, err := c.StatFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveAll(ctx, "/data"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveAll(ctx, "/data"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}
	after, err := c.StatFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// /data, train, sub, a.ffr, b.ffr, s, abs: 7 inodes.
	if before.Inodes-after.Inodes != 7 {
		t.Fatalf("RemoveAll freed %d inodes, want 7", before.Inodes-after.Inodes)
	}
	es, err = c.ReadDir(ctx, "/")
	if err != nil || !slices.Equal(names(es), []string{"file", "full", "loop2"}) {
		t.Fatalf("root holds %v, %v", names(es), err)
	}
	if ri, err := c.Routing(ctx); err != nil || len(ri.ChainTables) == 0 || len(ri.Nodes) != 1 {
		t.Fatalf("routing info: %+v, %v", ri, err)
	}
}
