package fusefs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"

	"fff/internal/proto"
	"fff/libfff"
)

// Options configure a mount. The zero value is a read-write mount with the
// defaults below.
type Options struct {
	// ReadOnly mounts read-only (writes fail with EROFS).
	ReadOnly bool
	// AllowOther lets users other than the mounting one use the mount
	// (FUSE's allow_other; as root always possible, else it needs
	// user_allow_other in /etc/fuse.conf).
	AllowOther bool
	// AttrTimeout is how long the kernel caches attributes (default 1 s;
	// negative: not cached).
	AttrTimeout time.Duration
	// EntryTimeout is how long the kernel caches a name's inode (default 1 s;
	// negative: not cached).
	EntryTimeout time.Duration
	// NegativeTimeout is how long the kernel remembers that a name does not
	// exist (default 1 s; negative: not cached).
	NegativeTimeout time.Duration
	// RetryTimeout bounds how long a request is retried while the cluster
	// is unreachable before it fails with EIO (default 60 s).
	RetryTimeout time.Duration
	// MaxReadahead is the largest readahead window of one sequentially read
	// open file (default 32 MiB; negative: no readahead of our own).
	MaxReadahead int
	// DirectIO opens every file with FOPEN_DIRECT_IO: reads and writes skip
	// the kernel's page cache and reach the mount at the program's own
	// request sizes (up to 1 MiB), and read replies are copied straight
	// into the program's buffer. A stream of large reads is faster (one
	// copy and no page-cache upkeep fewer per byte; docs/fuse.md), small
	// reads are slower (each is a round trip to the mount, served from the
	// readahead window) and nothing is cached between opens. mmap keeps
	// working where the kernel offers DIRECT_IO_ALLOW_MMAP (Linux 6.6+).
	DirectIO bool
	// MaxBackground is the number of asynchronous requests (readahead,
	// writeback) the kernel keeps in flight (default 128; go-fuse's is 12).
	MaxBackground int
	// Writeback makes close(2) of a small file written through the mount
	// return before its data is on storage: the data and the length go to
	// the cluster in the background, and fsync(2) (of the file or of a
	// directory) and unmounting wait for them. Copies of many small files
	// run about twice as fast; other clients see a file's data a few
	// milliseconds after its close(2) instead of at once, and a mount that
	// dies loses what it had not sent (writeback.go, docs/fuse.md).
	Writeback bool
	// Transport is how requests travel between the kernel and the mount
	// (default TransportAuto: the io_uring rings where the kernel offers
	// them, else /dev/fuse; transport.go, ring.go).
	Transport Transport
	// FsName is the source shown by mount(8) and df (default "fff:ADDRESS").
	FsName string
	// Debug logs every FUSE request.
	Debug bool
	// Logger receives the mount's logs.
	Logger zerolog.Logger
}

const (
	defaultTimeout      = time.Second
	defaultRetryTimeout = 60 * time.Second
	defaultReadahead    = 32 << 20
	defaultBackground   = 128
	maxIO               = 1 << 20 // max read and write request size
	blockSize           = 4096    // st_blocks unit is 512; statfs block
)

func (o *Options) setDefaults() {
	for _, d := range []*time.Duration{&o.AttrTimeout, &o.EntryTimeout, &o.NegativeTimeout} {
		switch {
		case *d == 0:
			*d = defaultTimeout
		case *d < 0:
			*d = 0
		}
	}
	if o.RetryTimeout <= 0 {
		o.RetryTimeout = defaultRetryTimeout
	}
	switch {
	case o.MaxReadahead == 0:
		o.MaxReadahead = defaultReadahead
	case o.MaxReadahead < 0:
		o.MaxReadahead = 0
	}
	if o.MaxBackground <= 0 {
		o.MaxBackground = defaultBackground
	}
}

// FS is the file system: a fuse.RawFileSystem over a libfff.Client.
type FS struct {
	fuse.RawFileSystem // ENOSYS for what FS does not implement (xattrs, locks, …)

	c     *libfff.Client
	opts  Options
	log   zerolog.Logger
	ctx   context.Context
	admin bool   // the token is an admin's: new files get the caller's owner
	uid   uint32 // the token's uid

	reads readBatcher
	attrs *attrQueue // attribute changes of open files, applied in the background (attrq.go)
	wb    *writeback // background closes (writeback.go); nil without Options.Writeback

	mu      sync.Mutex
	nextFh  uint64
	files   map[uint64]*handle              // open files by handle
	dirs    map[uint64]*dirHandle           // open directories by handle
	byIno   map[uint64]map[*handle]struct{} // open files by inode
	lastGen map[uint64]cacheKey             // attributes at the last open, for FOPEN_KEEP_CACHE
}

// cacheKey is what says that a file's content may have changed.
type cacheKey struct {
	size  uint64
	mtime int64
}

// New returns the file system of client c. It asks the cluster who the
// token belongs to (retrying for Options.RetryTimeout while it is
// unreachable).
func New(ctx context.Context, c *libfff.Client, opts Options) (*FS, error) {
	opts.setDefaults()
	fs := &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		c:             c, opts: opts, log: opts.Logger, ctx: context.Background(),
		nextFh: 1, files: map[uint64]*handle{}, dirs: map[uint64]*dirHandle{},
		byIno: map[uint64]map[*handle]struct{}{}, lastGen: map[uint64]cacheKey{},
	}
	fs.reads = readBatcher{c: c, ctx: fs.ctx, maxBatches: maxBatches}
	if opts.Writeback {
		fs.wb = newWriteback()
	}
	fs.attrs = newAttrQueue(func(ctx context.Context, ino uint64, a proto.SetAttr) (n proto.Inode, err error) {
		err = fs.retry(nil, func(ctx context.Context) (err error) {
			n, err = fs.c.SetAttrIno(ctx, ino, a)
			return err
		})
		return n, err
	})
	var id libfff.Identity
	err := fs.retry(ctx.Done(), func(ctx context.Context) (err error) {
		id, err = c.WhoAmI(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	fs.admin, fs.uid = id.Admin || id.UID == 0, id.UID
	return fs, nil
}

// Server is a mounted file system.
type Server struct {
	FS         *FS
	Mountpoint string
	// Transport is the transport in use: TransportURing or TransportDev.
	Transport Transport

	t mountTransport
}

// mountTransport is what a mounted transport does for its Server.
type mountTransport interface {
	unmount() error // unmount and wait for the transport's loops to end
	wait()          // wait until the mount is gone and the loops have ended
}

// devTransport is go-fuse's server over /dev/fuse.
type devTransport struct{ *fuse.Server }

func (d devTransport) unmount() error { return d.Server.Unmount() }
func (d devTransport) wait()          { d.Server.Wait() }

// Mount mounts client c's namespace on mountpoint (a directory) and serves
// it in the background until it is unmounted (Server.Unmount, `fff umount`,
// umount(8)); Server.Wait waits for that. As root the kernel is asked
// directly (no fusermount needed); otherwise fusermount3 or fusermount must
// be installed.
func Mount(ctx context.Context, c *libfff.Client, mountpoint string, opts Options) (*Server, error) {
	fs, err := New(ctx, c, opts)
	if err != nil {
		return nil, err
	}
	o := fs.opts
	name := o.FsName
	if name == "" {
		name = "fff:" + c.Address()
	}
	mo := &fuse.MountOptions{
		AllowOther:          o.AllowOther,
		Options:             []string{"default_permissions"},
		MaxBackground:       o.MaxBackground,
		CongestionThreshold: o.MaxBackground * 3 / 4,
		MaxWrite:            maxIO,
		MaxReadAhead:        128 << 10,
		FsName:              name,
		Name:                "fff",
		DirectMount:         os.Geteuid() == 0,
		Debug:               o.Debug,
		// O_TRUNC arrives with OPEN (the File truncates and renews its
		// write session), not as a separate SETATTR; O_DIRECT reads and
		// writes are sent asynchronously, several at once (without
		// ASYNC_DIO the kernel sends one request of an io_uring or libaio
		// queue at a time).
		ExtraCapabilities: fuse.CAP_ATOMIC_O_TRUNC | fuse.CAP_ASYNC_DIO,
		// Splicing moves data from a file descriptor into /dev/fuse; our
		// replies are in memory, so each attempt only cost a pipe resize
		// and a header write before falling back (and failed outright,
		// with a log line on stderr, for 1 MiB replies).
		DisableSplice: true,
	}
	if o.DirectIO {
		// Without it, mmap of a direct-IO file fails with ENODEV.
		mo.ExtraCapabilities |= fuse.CAP_DIRECT_IO_ALLOW_MMAP
	}
	if o.ReadOnly {
		mo.Options = append(mo.Options, "ro")
	}
	switch o.Transport {
	case TransportURing, TransportAuto, "":
		why := uringUnavailable()
		if why == nil {
			rs, err := mountRing(fs, mountpoint, mo)
			if err != nil {
				return nil, err
			}
			return &Server{FS: fs, Mountpoint: mountpoint, Transport: TransportURing, t: rs}, nil
		}
		if o.Transport == TransportURing {
			return nil, fmt.Errorf("mount %s: --transport uring: %w", mountpoint, why)
		}
		fs.log.Info().Msg(why.Error() + "; serving through /dev/fuse")
	case TransportDev:
	default:
		return nil, fmt.Errorf("mount %s: unknown transport %q", mountpoint, o.Transport)
	}
	srv, err := fuse.NewServer(fs, mountpoint, mo)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		srv.Unmount()
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return &Server{FS: fs, Mountpoint: mountpoint, Transport: TransportDev, t: devTransport{srv}}, nil
}

// Unmount unmounts the file system. If it is busy (open files, a process's
// working directory) it is detached lazily instead: it disappears from the
// namespace at once and the kernel ends the connection when the last user
// is gone (Wait returns then).
func (s *Server) Unmount() error {
	err := s.t.unmount()
	if err == nil {
		return nil
	}
	if lerr := syscall.Unmount(s.Mountpoint, syscall.MNT_DETACH); lerr != nil {
		return err
	}
	return nil
}

// Wait waits until the file system is unmounted, then closes the files
// left open (sending their buffered writes and reporting their lengths)
// and waits for the background closes of write-back.
func (s *Server) Wait() {
	s.t.wait()
	s.FS.closeAll()
}

// closeAll closes every open file.
func (fs *FS) closeAll() {
	fs.mu.Lock()
	hs := make([]*handle, 0, len(fs.files))
	for fh, h := range fs.files {
		hs = append(hs, h)
		delete(fs.files, fh)
	}
	fs.byIno = map[uint64]map[*handle]struct{}{}
	fs.mu.Unlock()
	for _, h := range hs {
		if err := fs.attrs.forget(h.ino); err != nil {
			fs.log.Warn().Err(err).Uint64("ino", h.ino).Msg("setting attributes of a file")
		}
		h.close()
	}
	fs.wbDrain()
}

func (fs *FS) String() string { return "fff" }

// retryable reports whether err means the cluster could not be reached.
func retryable(err error) bool {
	switch proto.CodeOf(err) {
	case proto.Unavailable:
		return true
	}
	return false
}

// retry runs op until it succeeds, fails for another reason than an
// unreachable cluster, or Options.RetryTimeout has passed (EIO then), with
// exponential backoff; an interrupted request (cancel) fails with EINTR.
func (fs *FS) retry(cancel <-chan struct{}, op func(ctx context.Context) error) error {
	err := op(fs.ctx)
	if err == nil || !retryable(err) {
		return err
	}
	deadline := time.Now().Add(fs.opts.RetryTimeout)
	backoff := 20 * time.Millisecond
	for {
		if time.Now().After(deadline) {
			fs.log.Warn().Err(err).Msg("cluster unreachable; giving up (EIO)")
			return &proto.Error{Code: proto.EIO, Msg: "cluster unreachable: " + err.Error()}
		}
		t := time.NewTimer(min(backoff, time.Until(deadline)+time.Millisecond))
		select {
		case <-cancel:
			t.Stop()
			return syscall.EINTR
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
		if err = op(fs.ctx); err == nil || !retryable(err) {
			return err
		}
	}
}

// status maps an error to the FUSE status of its errno.
func status(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	var errno syscall.Errno
	if errors.As(err, &errno) && proto.CodeOf(err) == proto.Internal {
		return fuse.Status(errno)
	}
	return fuse.Status(proto.Errno(err))
}

// fillAttr converts an inode's attributes.
func fillAttr(n *proto.Inode, a *fuse.Attr) {
	*a = fuse.Attr{}
	a.Ino = n.Ino
	a.Size = n.Size
	if n.Type == proto.TypeSymlink {
		a.Size = uint64(len(n.Target))
	}
	a.Blocks = (a.Size + 511) / 512
	a.Blksize = maxIO // cp and friends size their buffers by it
	a.Mode = n.StMode()
	a.Nlink = n.Nlink
	a.Owner = fuse.Owner{Uid: n.UID, Gid: n.GID}
	a.Atime, a.Atimensec = uint64(n.Atime/1e9), uint32(n.Atime%1e9)
	a.Mtime, a.Mtimensec = uint64(n.Mtime/1e9), uint32(n.Mtime%1e9)
	a.Ctime, a.Ctimensec = uint64(n.Ctime/1e9), uint32(n.Ctime%1e9)
}

func (fs *FS) fillEntry(n *proto.Inode, out *fuse.EntryOut) {
	out.NodeId = n.Ino
	out.Generation = 0
	out.SetEntryTimeout(fs.opts.EntryTimeout)
	out.SetAttrTimeout(fs.opts.AttrTimeout)
	fs.withOpenSize(n)
	fillAttr(n, &out.Attr)
}

// withOpenSize extends n's size by the writes of this mount's open files
// that meta has not been told of yet.
func (fs *FS) withOpenSize(n *proto.Inode) {
	if n.Type != proto.TypeFile {
		return
	}
	fs.mu.Lock()
	hs := fs.byIno[n.Ino]
	var size uint64
	for h := range hs {
		if h.f.Writable() {
			size = max(size, uint64(h.f.Size()))
		}
	}
	fs.mu.Unlock()
	n.Size = max(n.Size, size)
}

func (fs *FS) rofs() bool { return fs.opts.ReadOnly }

// own gives a new inode the caller's uid and gid, where the token may (an
// admin's) and the cluster gave it another. For a file just created open
// for writing (open), the change is applied in the background (attrq.go).
func (fs *FS) own(cancel <-chan struct{}, n *proto.Inode, caller fuse.Caller, open bool) {
	if !fs.admin || (n.UID == caller.Uid && n.GID == caller.Gid) {
		return
	}
	a := proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: caller.Uid, GID: caller.Gid}
	if open {
		fs.attrs.add(n.Ino, a, nil)
		applyAttr(n, a, time.Now().UnixNano())
		return
	}
	var got proto.Inode
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		got, err = fs.c.SetAttrIno(ctx, n.Ino, a)
		return err
	})
	if err != nil {
		fs.log.Warn().Err(err).Uint64("ino", n.Ino).Msg("cannot give a new inode its creator's owner")
		return
	}
	n.UID, n.GID, n.Ctime = got.UID, got.GID, got.Ctime
}

// Namespace.

func (fs *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	fs.attrs.settle()
	var n proto.Inode
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		n, err = fs.c.LookupIno(ctx, h.NodeId, name)
		return err
	})
	if errors.Is(err, proto.ErrNotFound) && fs.opts.NegativeTimeout > 0 {
		// A negative entry: the kernel remembers the name is absent.
		*out = fuse.EntryOut{}
		out.SetEntryTimeout(fs.opts.NegativeTimeout)
		return fuse.OK
	}
	if err != nil {
		return status(err)
	}
	fs.fillEntry(&n, out)
	return fuse.OK
}

func (fs *FS) Forget(nodeid, nlookup uint64) {}

// stat returns ino's attributes; an open file that was removed is
// described by its handle (with no links).
func (fs *FS) stat(cancel <-chan struct{}, ino uint64) (proto.Inode, error) {
	fs.attrs.settle()
	var n proto.Inode
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		n, err = fs.c.StatIno(ctx, ino)
		return err
	})
	if errors.Is(err, proto.ErrNotFound) {
		fs.mu.Lock()
		for h := range fs.byIno[ino] {
			n, err = h.f.Inode(), nil
			n.Nlink = 0
			break
		}
		if err != nil {
			for _, d := range fs.dirs {
				if d.ino == ino {
					n, err = d.inode, nil
					n.Nlink = 0
					break
				}
			}
		}
		fs.mu.Unlock()
	}
	return n, err
}

func (fs *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, err := fs.stat(cancel, in.NodeId)
	if err != nil {
		return status(err)
	}
	fs.withOpenSize(&n)
	fillAttr(&n, &out.Attr)
	out.SetTimeout(fs.opts.AttrTimeout)
	return fuse.OK
}

func (fs *FS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	ino := in.NodeId
	// A background close would report a length and times over these.
	if err := fs.wbSettle(ino); err != nil {
		return status(err)
	}
	if size, ok := in.GetSize(); ok {
		if err := fs.truncate(cancel, ino, size); err != nil {
			return status(err)
		}
	}
	var a proto.SetAttr
	if m, ok := in.GetMode(); ok {
		a.Valid |= proto.SetMode
		a.Mode = m
	}
	if uid, ok := in.GetUID(); ok && uid != ^uint32(0) {
		a.Valid |= proto.SetUID
		a.UID = uid
	}
	if gid, ok := in.GetGID(); ok && gid != ^uint32(0) {
		a.Valid |= proto.SetGID
		a.GID = gid
	}
	switch {
	case in.Valid&fuse.FATTR_ATIME_NOW != 0:
		a.Valid |= proto.SetAtimeNow
	case in.Valid&fuse.FATTR_ATIME != 0:
		a.Valid |= proto.SetAtime
		a.Atime = int64(in.Atime)*1e9 + int64(in.Atimensec)
	}
	switch {
	case in.Valid&fuse.FATTR_MTIME_NOW != 0:
		a.Valid |= proto.SetMtimeNow
	case in.Valid&fuse.FATTR_MTIME != 0:
		a.Valid |= proto.SetMtime
		a.Mtime = int64(in.Mtime)*1e9 + int64(in.Mtimensec)
	}
	ws := fs.writers(ino)
	for _, h := range ws {
		// Programs set attributes after writing (cp -a, tar, rsync): the
		// data travels while meta works, and FLUSH finds it landed.
		h.f.SendBuffered()
	}
	var undo []func()
	if a.Valid&proto.SetMtime != 0 && len(ws) > 0 {
		// An explicit mtime must survive the length report of the writes
		// made before it (at FLUSH): those report no write, if the files
		// allow it; otherwise they report first, as writes.
		var err error
		if undo, err = keepTimes(ws); err != nil {
			return status(err)
		}
	}
	if a.Valid != 0 && len(ws) > 0 && fs.admin {
		// In the background (attrq.go; a size was set above, in the
		// foreground); the answer is what meta will make of the
		// attributes this mount knows.
		n := fs.attrs.base(ws[0].f.Inode())
		applyAttr(&n, a, time.Now().UnixNano())
		fs.attrs.add(ino, a, undo)
		fs.withOpenSize(&n)
		fillAttr(&n, &out.Attr)
		out.SetTimeout(fs.opts.AttrTimeout)
		return fuse.OK
	}
	var n proto.Inode
	var err error
	if a.Valid != 0 {
		err = fs.retry(cancel, func(ctx context.Context) (err error) {
			n, err = fs.c.SetAttrIno(ctx, ino, a)
			return err
		})
	} else {
		n, err = fs.stat(cancel, ino)
	}
	if err != nil {
		for _, u := range undo {
			u()
		}
		return status(err)
	}
	fs.withOpenSize(&n)
	fillAttr(&n, &out.Attr)
	out.SetTimeout(fs.opts.AttrTimeout)
	return fuse.OK
}

// writers returns this mount's files open for writing on ino.
func (fs *FS) writers(ino uint64) []*handle {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	var ws []*handle
	for h := range fs.byIno[ino] {
		if h.f.Writable() && !h.closing {
			ws = append(ws, h)
		}
	}
	return ws
}

// keepTimes prepares the writers ws of one file for an explicit mtime
// (libfff.File.KeepTimes): it returns the undo functions of those that
// will report no write for their writes so far, and reports the writes of
// the others now.
func keepTimes(ws []*handle) ([]func(), error) {
	var undo []func()
	for _, h := range ws {
		if u := h.f.KeepTimes(); u != nil {
			undo = append(undo, u)
			continue
		}
		if err := h.sync(); err != nil {
			for _, u := range undo {
				u()
			}
			return nil, err
		}
	}
	return undo, nil
}

// truncate sets file ino's length: through every file this mount has open
// for writing on it (so that their write sessions stay valid and their
// buffered writes land first), else directly.
func (fs *FS) truncate(cancel <-chan struct{}, ino uint64, size uint64) error {
	ws := fs.writers(ino)
	if len(ws) == 0 {
		return fs.retry(cancel, func(ctx context.Context) error {
			_, err := fs.c.SetAttrIno(ctx, ino, proto.SetAttr{Valid: proto.SetSize, Size: size})
			return err
		})
	}
	for _, h := range ws {
		h.dropReadahead()
		if err := h.f.Truncate(int64(size)); err != nil {
			return err
		}
	}
	return nil
}

func (fs *FS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG && in.Mode&syscall.S_IFMT != 0 {
		return fuse.EPERM // devices, FIFOs and sockets are not stored
	}
	var f *libfff.File
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		f, err = fs.c.CreateIno(ctx, in.NodeId, name, in.Mode&07777, os.O_RDONLY, true)
		return err
	})
	if err != nil {
		return status(err)
	}
	n := f.Inode()
	f.Close()
	fs.own(cancel, &n, in.Caller, false)
	fs.fillEntry(&n, out)
	return fuse.OK
}

func (fs *FS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	var n proto.Inode
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		n, err = fs.c.MkdirIno(ctx, in.NodeId, name, in.Mode&07777)
		return err
	})
	if err != nil {
		return status(err)
	}
	fs.own(cancel, &n, in.Caller, false)
	fs.fillEntry(&n, out)
	return fuse.OK
}

func (fs *FS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	return status(fs.retry(cancel, func(ctx context.Context) error { return fs.c.UnlinkIno(ctx, h.NodeId, name) }))
}

func (fs *FS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	return status(fs.retry(cancel, func(ctx context.Context) error { return fs.c.RmdirIno(ctx, h.NodeId, name) }))
}

const (
	renameNoReplace = 1 << 0
	renameExchange  = 1 << 1
)

func (fs *FS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	if in.Flags&renameExchange != 0 || in.Flags&^(renameNoReplace|renameExchange) != 0 {
		return fuse.EINVAL
	}
	if in.Flags&renameNoReplace != 0 {
		// Not atomic with the rename: meta has no "no replace" flag.
		err := fs.retry(cancel, func(ctx context.Context) error {
			_, err := fs.c.LookupIno(ctx, in.Newdir, newName)
			return err
		})
		if err == nil {
			return fuse.Status(syscall.EEXIST)
		}
		if !errors.Is(err, proto.ErrNotFound) {
			return status(err)
		}
	}
	return status(fs.retry(cancel, func(ctx context.Context) error {
		return fs.c.RenameIno(ctx, in.NodeId, oldName, in.Newdir, newName)
	}))
}

func (fs *FS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	fs.attrs.settle()
	var n proto.Inode
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		n, err = fs.c.LinkIno(ctx, in.Oldnodeid, in.NodeId, name)
		return err
	})
	if err != nil {
		return status(err)
	}
	fs.fillEntry(&n, out)
	return fuse.OK
}

func (fs *FS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	if fs.rofs() {
		return fuse.EROFS
	}
	var n proto.Inode
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		n, err = fs.c.SymlinkIno(ctx, h.NodeId, name, target)
		return err
	})
	if err != nil {
		return status(err)
	}
	fs.own(cancel, &n, h.Caller, false)
	fs.fillEntry(&n, out)
	return fuse.OK
}

func (fs *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	n, err := fs.stat(cancel, h.NodeId)
	if err != nil {
		return nil, status(err)
	}
	if n.Type != proto.TypeSymlink {
		return nil, fuse.EINVAL
	}
	return []byte(n.Target), fuse.OK
}

func (fs *FS) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	// default_permissions: the kernel checks modes itself.
	return fuse.OK
}

func (fs *FS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	var st proto.StatFS
	err := fs.retry(cancel, func(ctx context.Context) (err error) {
		st, err = fs.c.StatFS(ctx)
		return err
	})
	if err != nil {
		return status(err)
	}
	*out = fuse.StatfsOut{
		Blocks: st.TotalBytes / blockSize, Bfree: st.FreeBytes / blockSize, Bavail: st.FreeBytes / blockSize,
		Files: st.Inodes + 1<<32, Ffree: 1 << 32,
		Bsize: blockSize, Frsize: blockSize, NameLen: 255,
	}
	return fuse.OK
}

// Directories.

// dirHandle is an open directory: its listing, read from meta in pages as
// the kernel asks for more, and kept for the handle's life so that offsets
// (telldir/seekdir) stay valid.
type dirHandle struct {
	mu      sync.Mutex
	ino     uint64
	parent  uint64
	inode   proto.Inode      // attributes at open (for fstat after removal)
	entries []proto.DirEntry // "." and ".." first
	more    bool
	plus    bool // the listing carries attributes
	loaded  bool
}

const dirPage = 1000

func (fs *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, err := fs.stat(cancel, in.NodeId)
	if err != nil {
		return status(err)
	}
	if n.Type != proto.TypeDir {
		return fuse.ENOTDIR
	}
	d := &dirHandle{ino: in.NodeId, parent: n.Parent, inode: n}
	fs.mu.Lock()
	fh := fs.nextFh
	fs.nextFh++
	fs.dirs[fh] = d
	fs.mu.Unlock()
	out.Fh = fh
	return fuse.OK
}

func (fs *FS) ReleaseDir(in *fuse.ReleaseIn) {
	fs.mu.Lock()
	delete(fs.dirs, in.Fh)
	fs.mu.Unlock()
}

// FsyncDir: meta's transactions are durable when answered; with write-back
// it waits for every background close (writeback.go).
func (fs *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return status(fs.flushAll())
}

// fill makes sure entries [0, upto) are loaded, if the directory has them;
// offset 0 (a new listing or rewinddir) reloads.
func (fs *FS) fillDir(cancel <-chan struct{}, d *dirHandle, off uint64, upto int) error {
	if off == 0 || !d.loaded {
		parent := d.parent
		if parent == 0 {
			parent = d.ino
		}
		d.entries = []proto.DirEntry{{Name: ".", Ino: d.ino, Type: proto.TypeDir}, {Name: "..", Ino: parent, Type: proto.TypeDir}}
		d.more, d.plus, d.loaded = true, true, true
	}
	for d.more && len(d.entries) < upto {
		after := ""
		if len(d.entries) > 2 {
			after = d.entries[len(d.entries)-1].Name
		}
		var es []proto.DirEntry
		var more bool
		if d.plus {
			fs.attrs.settle()
		}
		err := fs.retry(cancel, func(ctx context.Context) (err error) {
			es, more, err = fs.c.ReadDirIno(ctx, d.ino, after, dirPage, d.plus)
			return err
		})
		if err != nil && d.plus && errors.Is(err, proto.ErrPermissionDenied) {
			d.plus = false // readable, not searchable: names only
			continue
		}
		if err != nil {
			return err
		}
		d.entries = append(d.entries, es...)
		d.more = more && len(es) > 0
	}
	return nil
}

func (fs *FS) dirHandle(fh uint64) *dirHandle {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.dirs[fh]
}

func (fs *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fs.readDir(cancel, in, out, false)
}

func (fs *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return fs.readDir(cancel, in, out, true)
}

func (fs *FS) readDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	d := fs.dirHandle(in.Fh)
	if d == nil {
		return fuse.EBADF
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	off := in.Offset
	// A page of 4 KiB holds about 100 entries; ask for a little more.
	if err := fs.fillDir(cancel, d, off, int(off)+int(in.Size)/24+1); err != nil {
		return status(err)
	}
	for i := int(off); i < len(d.entries); i++ {
		e := &d.entries[i]
		var n proto.Inode
		if e.Attr != nil {
			n = *e.Attr
		} else {
			n = proto.Inode{Ino: e.Ino, Type: e.Type}
		}
		de := fuse.DirEntry{Name: e.Name, Ino: e.Ino, Mode: n.StMode(), Off: uint64(i + 1)}
		if !plus {
			if !out.AddDirEntry(de) {
				break
			}
			continue
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			break
		}
		if e.Attr != nil && i >= 2 {
			fs.fillEntry(&n, eo)
		}
	}
	return fuse.OK
}

// ClientOptions returns o as a mount's client should have them: reading
// through the storage nodes' sockets, without local reads
// (libfff/localread.go). Measured on the machine of docs/performance.md,
// local reads lowered the mount's random 128 KiB reads by 5–25% and its
// --direct-io stream by ~6% in side-by-side runs, though they speed up the
// native client: the mount keeps few reads at the disk (its batches wait
// on the kernel's requests), and a local read adds a round trip (asking
// where the bytes are) before the disk read to each batch's latency.
func ClientOptions(o libfff.Options) libfff.Options {
	o.NoLocalRead = true
	// The mount waits out an unreachable cluster itself (FS.retry), where
	// an interrupted request can stop waiting; the client must not wait
	// underneath it.
	o.RetryTimeout = -1
	return o
}
