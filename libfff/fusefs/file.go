package fusefs

import (
	"cmp"
	"context"
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"fff/internal/proto"
	"fff/libfff"
)

// handle is an open file: its libfff.File and its readahead state.
type handle struct {
	fs  *FS
	ino uint64
	f   *libfff.File

	ra readahead

	// On FS.mu (writeback.go): the handle holds a write-back slot (its
	// FLUSH returned without sending its data); RELEASE made it closing
	// (its close goes on in the background).
	wbSlot  bool
	closing bool
}

func (fs *FS) addHandle(h *handle) uint64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fh := fs.nextFh
	fs.nextFh++
	fs.files[fh] = h
	if fs.byIno[h.ino] == nil {
		fs.byIno[h.ino] = map[*handle]struct{}{}
	}
	fs.byIno[h.ino][h] = struct{}{}
	return fh
}

func (fs *FS) handle(fh uint64) *handle {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.files[fh]
}

// openFlag converts the open(2) flags the kernel passes to libfff's: the
// access mode and O_TRUNC. O_APPEND is the kernel's business: it sends
// each write at the end of the file it knows.
func openFlag(flags uint32) int {
	f := int(flags) & syscall.O_ACCMODE
	if flags&syscall.O_TRUNC != 0 && f != os.O_RDONLY {
		f |= os.O_TRUNC
	}
	return f
}

// keepCache says whether the kernel may keep the file's cached pages from
// an earlier open: only if its size and mtime did not change since then
// (close-to-open consistency, as NFS gives).
func (fs *FS) keepCache(n proto.Inode) bool {
	k := cacheKey{size: n.Size, mtime: n.Mtime}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	old, ok := fs.lastGen[n.Ino]
	fs.lastGen[n.Ino] = k
	return ok && old == k
}

// directIO is the open flag of Options.DirectIO.
func (fs *FS) directIO() uint32 {
	if fs.opts.DirectIO {
		return fuse.FOPEN_DIRECT_IO
	}
	return 0
}

func (fs *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	flag := openFlag(in.Flags)
	if fs.rofs() && (flag&syscall.O_ACCMODE != os.O_RDONLY || flag&os.O_TRUNC != 0) {
		return fuse.EROFS
	}
	if err := fs.wbSettle(in.NodeId); err != nil { // its data and length are in meta
		return status(err)
	}
	fs.attrs.settle() // the attributes at open decide FOPEN_KEEP_CACHE
	var f *libfff.File
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		f, err = fs.c.OpenIno(ctx, in.NodeId, "", flag)
		return err
	})
	if err != nil {
		return status(err)
	}
	h := &handle{fs: fs, ino: in.NodeId, f: f}
	out.Fh = fs.addHandle(h)
	if flag&os.O_TRUNC == 0 && fs.keepCache(f.Inode()) {
		out.OpenFlags |= fuse.FOPEN_KEEP_CACHE
	}
	out.OpenFlags |= fs.directIO()
	return fuse.OK
}

func (fs *FS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	flag := openFlag(in.Flags)
	excl := in.Flags&syscall.O_EXCL != 0
	if !excl {
		// An existing file may come back (and be truncated): its
		// attributes and data first.
		if err := fs.wbSettle(0); err != nil {
			return status(err)
		}
		fs.attrs.settle()
	}
	var f *libfff.File
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		f, err = fs.c.CreateIno(ctx, in.NodeId, name, in.Mode&07777, flag, excl)
		return err
	})
	if err != nil {
		return status(err)
	}
	h := &handle{fs: fs, ino: f.Inode().Ino, f: f}
	out.Fh = fs.addHandle(h) // before own: its change waits for the handle's FLUSH
	n := f.Inode()
	fs.own(cancel, &n, in.Caller, f.Writable())
	fs.keepCache(n)
	fs.fillEntry(&n, &out.EntryOut)
	out.OpenFlags |= fs.directIO()
	return fuse.OK
}

func (fs *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	h := fs.handle(in.Fh)
	if h == nil {
		return nil, fuse.EBADF
	}
	res, err := h.read(cancel, buf[:min(len(buf), int(in.Size))], int64(in.Offset))
	if err != nil {
		return nil, status(err)
	}
	return res, fuse.OK
}

// readAt reads straight from storage, retrying while the cluster is
// unreachable; a short read at the end of the file is no error.
func (h *handle) readAt(cancel <-chan struct{}, p []byte, off int64) (int, error) {
	var n int
	err := h.fs.retry(cancel, func(ctx context.Context) (err error) {
		n, err = h.fs.reads.read(h.f, p, off)
		return err
	})
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

func (fs *FS) Write(cancel <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	if fs.rofs() {
		return 0, fuse.EROFS
	}
	h := fs.handle(in.Fh)
	if h == nil {
		return 0, fuse.EBADF
	}
	h.dropReadahead()
	// The File buffers sequential writes and sends them in chunk-sized
	// pieces in the background; data is the kernel's buffer, which the
	// File copies (or has sent) before WriteAt returns.
	n, err := h.f.WriteAt(data, int64(in.Offset))
	if err != nil {
		return uint32(n), status(err)
	}
	return uint32(n), fuse.OK
}

// sync sends a writable handle's buffered writes and reports its length.
func (h *handle) sync() error {
	if !h.f.Writable() {
		return nil
	}
	return h.f.Sync()
}

// flush makes the file's background attribute changes (attrq.go) and h's
// writes durable. The changes first: one that meta refused gives the
// writes back their mtime (KeepTimes), which the length report then
// carries. The data travels meanwhile.
func (h *handle) flush() error {
	aerr := h.fs.attrs.wait(h.ino)
	if err := h.sync(); err != nil {
		return err
	}
	return aerr
}

func (fs *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	if err := fs.wbErr(h.ino); err != nil {
		return status(err)
	}
	if fs.flushLater(cancel, h) {
		return fuse.OK // RELEASE closes it in the background (writeback.go)
	}
	return status(h.flush())
}

func (fs *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	h := fs.handle(in.Fh)
	if h == nil {
		return fuse.EBADF
	}
	err := h.flush()
	if werr := fs.wbErr(h.ino); err == nil {
		err = werr
	}
	return status(err)
}

func (fs *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	fs.mu.Lock()
	h := fs.files[in.Fh]
	delete(fs.files, in.Fh)
	last, later := false, false
	if h != nil {
		later = h.wbSlot
		h.wbSlot, h.closing = false, later
		if !later {
			fs.unlistLocked(h)
		}
		last = true
		for o := range fs.byIno[h.ino] {
			if o != h && !o.closing {
				last = false
			}
		}
	}
	fs.mu.Unlock()
	if h == nil {
		return
	}
	if later {
		fs.closeLater(h, last)
		return
	}
	if err := fs.finish(h, last); err != nil {
		fs.log.Warn().Err(err).Uint64("ino", h.ino).Msg("closing a file")
	}
}

// finish ends released handle h, in RELEASE or in a background close
// (writeback.go); last says whether h was the mount's last handle of its
// inode. It returns the first error: of the file's attribute changes or of
// its close.
func (fs *FS) finish(h *handle, last bool) error {
	// The attribute changes land before the close, whose answer the page
	// cache check below uses.
	wait := fs.attrs.wait
	if last {
		wait = fs.attrs.forget
	}
	err := wait(h.ino)
	h.dropReadahead()
	cerr := h.f.Close()
	if errors.Is(cerr, os.ErrClosed) {
		cerr = nil
	}
	if cerr == nil && h.f.Writable() {
		// Our own writes: the pages the kernel cached stay valid. Close
		// left the attributes meta answered in the File.
		fs.keepCache(h.f.Inode())
	}
	return cmp.Or(err, cerr)
}

func (h *handle) close() {
	h.dropReadahead()
	if err := h.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		h.fs.log.Warn().Err(err).Uint64("ino", h.ino).Msg("closing a file")
	}
}

func (fs *FS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return fuse.Status(syscall.EOPNOTSUPP)
}
