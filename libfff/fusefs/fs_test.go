package fusefs

import (
	"bytes"
	"context"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"fff/internal/proto"
)

// The mount's operations called directly, as the kernel would call them,
// on an in-process cluster (no FUSE mount needed).

func newTestFS(t *testing.T) (*FS, *testCluster) {
	t.Helper()
	tc := startCluster(t)
	fs, err := New(context.Background(), tc.c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fs.closeAll)
	return fs, tc
}

var root = fuse.Caller{Owner: fuse.Owner{Uid: 0, Gid: 0}}

func header(ino uint64) fuse.InHeader { return fuse.InHeader{NodeId: ino, Caller: root} }

func ok(t *testing.T, what string, st fuse.Status) {
	t.Helper()
	if st != fuse.OK {
		t.Fatalf("%s: %v", what, st)
	}
}

// mkdir makes a directory below the root and returns its inode.
func mkdir(t *testing.T, fs *FS, name string) uint64 {
	t.Helper()
	var out fuse.EntryOut
	ok(t, "mkdir", fs.Mkdir(nil, &fuse.MkdirIn{InHeader: header(proto.RootIno), Mode: 0o755}, name, &out))
	return out.NodeId
}

// copyFile does to the mount what cp -a does to a new file: create, write,
// set the times, set the mode, close.
func copyFile(t *testing.T, fs *FS, dir uint64, name string, data []byte, mtime int64, mode uint32) uint64 {
	t.Helper()
	var co fuse.CreateOut
	ok(t, "create", fs.Create(nil, &fuse.CreateIn{InHeader: header(dir), Flags: uint32(os.O_WRONLY | os.O_CREATE | os.O_EXCL), Mode: syscall.S_IFREG | 0o600}, name, &co))
	ino, fh := co.NodeId, co.Fh
	n, st := fs.Write(nil, &fuse.WriteIn{InHeader: header(ino), Fh: fh, Size: uint32(len(data))}, data)
	ok(t, "write", st)
	if int(n) != len(data) {
		t.Fatalf("wrote %d of %d bytes", n, len(data))
	}
	var ao fuse.AttrOut
	times := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: header(ino), Valid: fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_FH, Fh: fh,
		Atime: uint64(mtime / 1e9), Atimensec: uint32(mtime % 1e9), Mtime: uint64(mtime / 1e9), Mtimensec: uint32(mtime % 1e9)}}
	ok(t, "utimens", fs.SetAttr(nil, times, &ao))
	if got := int64(ao.Mtime)*1e9 + int64(ao.Mtimensec); got != mtime || ao.Size != uint64(len(data)) {
		t.Fatalf("utimens answered mtime %d size %d, want %d and %d", got, ao.Size, mtime, len(data))
	}
	// The times did not wait for the data: no length was reported.
	if m, err := fs.c.StatIno(context.Background(), ino); err != nil || m.Size != 0 {
		t.Fatalf("meta has size %d (%v) before FLUSH; utimens reported the writes", m.Size, err)
	}
	chmod := &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: header(ino), Valid: fuse.FATTR_MODE | fuse.FATTR_FH, Fh: fh, Mode: syscall.S_IFREG | mode}}
	ok(t, "chmod", fs.SetAttr(nil, chmod, &ao))
	if ao.Mode&07777 != mode || ao.Size != uint64(len(data)) {
		t.Fatalf("chmod answered mode %o size %d, want %o and %d", ao.Mode, ao.Size, mode, len(data))
	}
	ok(t, "flush", fs.Flush(nil, &fuse.FlushIn{InHeader: header(ino), Fh: fh}))
	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(ino), Fh: fh})
	return ino
}

// checkFile checks a file's attributes in meta and its content.
func checkFile(t *testing.T, tc *testCluster, ino uint64, data []byte, mtime int64, mode uint32) proto.Inode {
	t.Helper()
	ctx := context.Background()
	n, err := tc.c.StatIno(ctx, ino)
	if err != nil {
		t.Fatal(err)
	}
	if n.Size != uint64(len(data)) || n.Mtime != mtime || n.Atime != mtime || n.Mode != mode {
		t.Fatalf("inode %d: size %d mtime %d atime %d mode %o; want %d, %d, %d, %o", ino, n.Size, n.Mtime, n.Atime, n.Mode, len(data), mtime, mtime, mode)
	}
	f, err := tc.c.OpenIno(ctx, ino, "", os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(io.NewSectionReader(f, 0, int64(len(data))+1))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("inode %d: read %d bytes (%v), want the %d written", ino, len(got), err, len(data))
	}
	return n
}

// TestCopyCostsFewTransactions: a file copied as cp -a copies it is whole
// in meta at close (length, times, mode) and cost at most five meta
// transactions (create, the times and mode, the length report at close,
// the close); it was six when FLUSH reported the length again after the
// report that preceded the times. Setting the times waits for no write.
func TestCopyCostsFewTransactions(t *testing.T) {
	fs, tc := newTestFS(t)
	dir := mkdir(t, fs, "copy")
	data := bytes.Repeat([]byte("small file "), 2800)
	const mtime = 1_700_000_000_123_456_789
	for i, name := range []string{"a", "b", "c"} {
		before := tc.db.writes.Load()
		ino := copyFile(t, fs, dir, name, data[:len(data)-i], mtime, 0o644)
		if w := tc.db.writes.Load() - before; w > 5 {
			t.Errorf("copying %s took %d meta transactions, want at most 5", name, w)
		}
		checkFile(t, tc, ino, data[:len(data)-i], mtime, 0o644)
	}
}

// TestFlushAfterFsyncReportsNothing: close(2) after fsync(2) with no
// write in between costs no transaction.
func TestFlushAfterFsyncReportsNothing(t *testing.T) {
	fs, tc := newTestFS(t)
	dir := mkdir(t, fs, "d")
	var co fuse.CreateOut
	ok(t, "create", fs.Create(nil, &fuse.CreateIn{InHeader: header(dir), Flags: uint32(os.O_WRONLY | os.O_CREATE), Mode: syscall.S_IFREG | 0o644}, "f", &co))
	data := []byte("hello")
	_, st := fs.Write(nil, &fuse.WriteIn{InHeader: header(co.NodeId), Fh: co.Fh, Size: uint32(len(data))}, data)
	ok(t, "write", st)
	ok(t, "fsync", fs.Fsync(nil, &fuse.FsyncIn{InHeader: header(co.NodeId), Fh: co.Fh}))
	n, err := tc.c.StatIno(context.Background(), co.NodeId)
	if err != nil || n.Size != uint64(len(data)) {
		t.Fatalf("after fsync: size %d (%v), want %d", n.Size, err, len(data))
	}
	before := tc.db.writes.Load()
	ok(t, "flush", fs.Flush(nil, &fuse.FlushIn{InHeader: header(co.NodeId), Fh: co.Fh}))
	if w := tc.db.writes.Load() - before; w != 0 {
		t.Fatalf("flush after fsync: %d transactions, want none", w)
	}
	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(co.NodeId), Fh: co.Fh})
}

// TestTimesOfTruncatedFile: a file truncated before it was opened may have
// a truncate waiting in meta's GC queue, which only a write reported as a
// write makes obsolete; so an explicit mtime on it reports the writes as
// writes first (Inode.WriteVer moves) and still keeps the mtime.
func TestTimesOfTruncatedFile(t *testing.T) {
	fs, tc := newTestFS(t)
	ctx := context.Background()
	if err := tc.c.MkdirAll(ctx, "/t", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := tc.c.Create(ctx, "/t/f")
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("x"), 10000))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tc.c.Truncate(ctx, "/t/f", 10); err != nil {
		t.Fatal(err)
	}
	n, err := tc.c.StatIno(ctx, f.Ino())
	if err != nil || n.TruncVer == 0 {
		t.Fatalf("after truncate: TruncVer %d (%v)", n.TruncVer, err)
	}
	var oo fuse.OpenOut
	ok(t, "open", fs.Open(nil, &fuse.OpenIn{InHeader: header(f.Ino()), Flags: uint32(os.O_WRONLY)}, &oo))
	data := []byte("0123456789abcdef")
	_, st := fs.Write(nil, &fuse.WriteIn{InHeader: header(f.Ino()), Fh: oo.Fh, Offset: 10, Size: uint32(len(data))}, data)
	ok(t, "write", st)
	const mtime = 1_600_000_000_000_000_000
	var ao fuse.AttrOut
	ok(t, "utimens", fs.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: header(f.Ino()),
		Valid: fuse.FATTR_ATIME | fuse.FATTR_MTIME | fuse.FATTR_FH, Fh: oo.Fh, Atime: mtime / 1e9, Mtime: mtime / 1e9}}, &ao))
	ok(t, "flush", fs.Flush(nil, &fuse.FlushIn{InHeader: header(f.Ino()), Fh: oo.Fh}))
	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(f.Ino()), Fh: oo.Fh})
	got, err := tc.c.StatIno(ctx, f.Ino())
	if err != nil {
		t.Fatal(err)
	}
	if got.WriteVer <= n.WriteVer || got.Mtime != mtime || got.Size != 26 {
		t.Fatalf("after write and utimens: WriteVer %d (was %d), mtime %d, size %d; want a write reported, mtime %d, size 26",
			got.WriteVer, n.WriteVer, got.Mtime, got.Size, int64(mtime))
	}
}

// TestPendingAttributesAreReported: right after a SETATTR answered from
// the background queue, GETATTR reports the new attributes, whether or not
// meta has them yet, and after FLUSH meta has them.
func TestPendingAttributesAreReported(t *testing.T) {
	fs, tc := newTestFS(t)
	dir := mkdir(t, fs, "p")
	var co fuse.CreateOut
	ok(t, "create", fs.Create(nil, &fuse.CreateIn{InHeader: header(dir), Flags: uint32(os.O_RDWR | os.O_CREATE), Mode: syscall.S_IFREG | 0o600}, "f", &co))
	for _, mode := range []uint32{0o640, 0o604, 0o755} {
		var ao fuse.AttrOut
		ok(t, "chmod", fs.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: header(co.NodeId), Valid: fuse.FATTR_MODE, Mode: syscall.S_IFREG | mode}}, &ao))
		ok(t, "getattr", fs.GetAttr(nil, &fuse.GetAttrIn{InHeader: header(co.NodeId)}, &ao))
		if ao.Mode&07777 != mode {
			t.Fatalf("GETATTR after chmod %o: mode %o", mode, ao.Mode&07777)
		}
	}
	ok(t, "flush", fs.Flush(nil, &fuse.FlushIn{InHeader: header(co.NodeId), Fh: co.Fh}))
	n, err := tc.c.StatIno(context.Background(), co.NodeId)
	if err != nil || n.Mode != 0o755 {
		t.Fatalf("meta after flush: mode %o (%v), want 755", n.Mode, err)
	}
	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(co.NodeId), Fh: co.Fh})
}
