package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func newWritebackFS(t *testing.T) (*FS, *testCluster) {
	t.Helper()
	tc := startCluster(t)
	fs, err := New(context.Background(), tc.c, Options{Writeback: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fs.closeAll)
	return fs, tc
}

// gate holds every background close of fs before it sends anything until
// the returned function is called (at the latest when the test ends, so
// that a failing test does not hang in the mount's cleanup); waits
// receives a value each time a request starts waiting for background
// closes.
func gate(t *testing.T, fs *FS) (open func(), waits chan struct{}) {
	g := make(chan struct{})
	waits = make(chan struct{}, 100)
	fs.wb.beforeClose = func() { <-g }
	fs.wb.waiting = func() {
		select {
		case waits <- struct{}{}:
		default:
		}
	}
	open = sync.OnceFunc(func() { close(g) })
	t.Cleanup(open) // runs before the cleanup of newWritebackFS
	return open, waits
}

func metaSize(t *testing.T, tc *testCluster, ino uint64) uint64 {
	t.Helper()
	n, err := tc.c.StatIno(context.Background(), ino)
	if err != nil {
		t.Fatal(err)
	}
	return n.Size
}

// TestWritebackCopy: with write-back, a file copied as cp -a copies it is
// not in meta when its FLUSH returns (the data was not sent), this mount
// reports its length at once, and after FSYNCDIR it is whole in meta
// (length, times, mode, content) and cost at most four transactions (the
// length goes with the end of the write session).
func TestWritebackCopy(t *testing.T) {
	fs, tc := newWritebackFS(t)
	dir := mkdir(t, fs, "copy")
	open, _ := gate(t, fs)
	data := bytes.Repeat([]byte("write-back "), 3000)
	const mtime = 1_700_000_000_123_456_789
	before := tc.db.writes.Load()
	ino := copyFile(t, fs, dir, "a", data, mtime, 0o640)
	if s := metaSize(t, tc, ino); s != 0 {
		t.Fatalf("meta has size %d right after close; FLUSH sent the data", s)
	}
	var ao fuse.AttrOut
	ok(t, "getattr", fs.GetAttr(nil, &fuse.GetAttrIn{InHeader: header(ino)}, &ao))
	if ao.Size != uint64(len(data)) {
		t.Fatalf("GETATTR after close: size %d, want the %d written", ao.Size, len(data))
	}
	var eo fuse.EntryOut
	ok(t, "lookup", fs.Lookup(nil, &fuse.InHeader{NodeId: dir, Caller: root}, "a", &eo))
	if eo.Size != uint64(len(data)) {
		t.Fatalf("LOOKUP after close: size %d, want %d", eo.Size, len(data))
	}
	open()
	ok(t, "fsyncdir", fs.FsyncDir(nil, &fuse.FsyncIn{InHeader: header(dir)}))
	checkFile(t, tc, ino, data, mtime, 0o640)
	if w := tc.db.writes.Load() - before; w > 4 {
		t.Errorf("copying with write-back took %d meta transactions, want at most 4", w)
	}
}

// TestWritebackOpenWaits: OPEN of a file whose close is under way in the
// background waits for it, so this mount reads what it wrote from meta and
// storage.
func TestWritebackOpenWaits(t *testing.T) {
	fs, tc := newWritebackFS(t)
	dir := mkdir(t, fs, "o")
	open, waits := gate(t, fs)
	data := []byte("the data of a file closed a moment ago")
	ino := copyFile(t, fs, dir, "f", data, 1_600_000_000_000_000_000, 0o644)
	opened := make(chan fuse.Status, 1)
	go func() {
		var oo fuse.OpenOut
		opened <- fs.Open(nil, &fuse.OpenIn{InHeader: header(ino), Flags: uint32(os.O_RDONLY)}, &oo)
	}()
	select {
	case st := <-opened:
		t.Fatalf("OPEN returned %v while the file's close was held", st)
	case <-waits:
	}
	open()
	ok(t, "open", <-opened)
	if s := metaSize(t, tc, ino); s != uint64(len(data)) {
		t.Fatalf("meta size after OPEN: %d, want %d", s, len(data))
	}
}

// TestWritebackUnmountWaits: the end of the mount (closeAll, after the
// kernel's last request) waits for the background closes.
func TestWritebackUnmountWaits(t *testing.T) {
	fs, tc := newWritebackFS(t)
	dir := mkdir(t, fs, "u")
	open, waits := gate(t, fs)
	var inos []uint64
	for i := range 5 {
		inos = append(inos, copyFile(t, fs, dir, fmt.Sprint(i), bytes.Repeat([]byte{byte(i)}, 5000+i), 1e18, 0o600))
	}
	done := make(chan struct{})
	go func() {
		fs.closeAll()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("closeAll returned while background closes were held")
	case <-waits:
	}
	open()
	<-done
	for i, ino := range inos {
		if s := metaSize(t, tc, ino); s != uint64(5000+i) {
			t.Fatalf("file %d: meta size %d after unmount, want %d", i, s, 5000+i)
		}
	}
}

// TestWritebackBounded: once wbMaxPending files wait for their background
// close, FLUSH does not queue another: a FLUSH that cannot wait for a slot
// (interrupted) sends the data itself.
func TestWritebackBounded(t *testing.T) {
	fs, tc := newWritebackFS(t)
	dir := mkdir(t, fs, "b")
	gate(t, fs)
	for i := range wbMaxPending {
		copyFile(t, fs, dir, fmt.Sprint(i), []byte("x"), 1e18, 0o600)
	}
	var co fuse.CreateOut
	ok(t, "create", fs.Create(nil, &fuse.CreateIn{InHeader: header(dir), Flags: uint32(os.O_WRONLY | os.O_CREATE | os.O_EXCL), Mode: syscall.S_IFREG | 0o600}, "last", &co))
	data := []byte("one too many")
	_, st := fs.Write(nil, &fuse.WriteIn{InHeader: header(co.NodeId), Fh: co.Fh, Size: uint32(len(data))}, data)
	ok(t, "write", st)
	interrupted := make(chan struct{})
	close(interrupted)
	ok(t, "flush", fs.Flush(interrupted, &fuse.FlushIn{InHeader: header(co.NodeId), Fh: co.Fh}))
	if s := metaSize(t, tc, co.NodeId); s != uint64(len(data)) {
		t.Fatalf("meta size after a FLUSH with no slot free: %d, want %d (sent at FLUSH)", s, len(data))
	}
	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(co.NodeId), Fh: co.Fh})
}

// TestWritebackErrorReported: a background close that fails (the cluster
// went away before the data was sent) is reported by the next FSYNCDIR,
// once.
func TestWritebackErrorReported(t *testing.T) {
	fs, tc := newWritebackFS(t)
	dir := mkdir(t, fs, "e")
	open, _ := gate(t, fs)
	copyFile(t, fs, dir, "lost", []byte("never sent"), 1e18, 0o600)
	fs.attrs.settle() // the times and mode are in meta: only the data is lost
	tc.srv.Close()
	open()
	if st := fs.FsyncDir(nil, &fuse.FsyncIn{InHeader: header(dir)}); st == fuse.OK {
		t.Fatal("FSYNCDIR after a failed background close: OK, want an error")
	}
	ok(t, "second fsyncdir", fs.FsyncDir(nil, &fuse.FsyncIn{InHeader: header(dir)}))
}

// TestWritebackOpenBeforeRelease: the kernel sends RELEASE after close(2)
// has returned, so a program's next open(2) of the file can come between
// the FLUSH that returned without sending the data and that RELEASE. OPEN
// sends the data then: the file opened reads what was written, and the
// RELEASE that follows still ends the write session in the background.
func TestWritebackOpenBeforeRelease(t *testing.T) {
	fs, tc := newWritebackFS(t)
	dir := mkdir(t, fs, "r")
	var co fuse.CreateOut
	ok(t, "create", fs.Create(nil, &fuse.CreateIn{InHeader: header(dir), Flags: uint32(os.O_WRONLY | os.O_CREATE | os.O_EXCL), Mode: syscall.S_IFREG | 0o644}, "f", &co))
	ino := co.NodeId
	data := []byte("appended a moment before the file was opened again")
	_, st := fs.Write(nil, &fuse.WriteIn{InHeader: header(ino), Fh: co.Fh, Size: uint32(len(data))}, data)
	ok(t, "write", st)
	ok(t, "flush", fs.Flush(nil, &fuse.FlushIn{InHeader: header(ino), Fh: co.Fh}))
	if s := metaSize(t, tc, ino); s != 0 {
		t.Fatalf("meta has size %d right after FLUSH; FLUSH sent the data", s)
	}

	var oo fuse.OpenOut
	ok(t, "open", fs.Open(nil, &fuse.OpenIn{InHeader: header(ino), Flags: uint32(os.O_RDONLY)}, &oo))
	if s := metaSize(t, tc, ino); s != uint64(len(data)) {
		t.Fatalf("meta size after OPEN: %d, want %d", s, len(data))
	}
	buf := make([]byte, 2*len(data))
	res, st := fs.Read(nil, &fuse.ReadIn{InHeader: header(ino), Fh: oo.Fh, Size: uint32(len(buf))}, buf)
	ok(t, "read", st)
	got, st := res.Bytes(buf)
	ok(t, "read bytes", st)
	if !bytes.Equal(got, data) {
		t.Fatalf("read %q after OPEN, want %q", got, data)
	}
	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(ino), Fh: oo.Fh})

	fs.Release(nil, &fuse.ReleaseIn{InHeader: header(ino), Fh: co.Fh})
	ok(t, "fsyncdir", fs.FsyncDir(nil, &fuse.FsyncIn{InHeader: header(dir)}))
	if s := metaSize(t, tc, ino); s != uint64(len(data)) {
		t.Fatalf("meta size after the RELEASE: %d, want %d", s, len(data))
	}
}
