package libfff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"time"

	"fff/internal/proto"
)

// File is an open file of the cluster. It implements io.Reader,
// io.ReaderAt, io.Writer, io.WriterAt, io.Seeker and io.Closer.
//
// Reads go straight to storage (batched, see ReadBatch): a large read is
// cut on chunk boundaries and its chunks are read in parallel; bytes of the
// file never written read as zeros; reads end at the file's length with
// io.EOF. A File learns the length at Open (and Stat) and asks meta again
// only when a read reaches past it: a read-only File does not see another
// client's truncate until its next Stat.
//
// Writes go to the head of each chunk's chain. Sequential writes are
// buffered (write-behind) and sent as chunk-sized writes in the background,
// several at once, with at most Options.WriteBuffer bytes in flight plus
// the chunk being filled; an error of a background write is reported by the
// next Write, WriteAt, Sync or Close (and every one after it: the File is
// then broken). A write that does not continue the previous one, and every
// read, first waits for the buffered writes. Sync and Close report the
// file's length to meta, and so does a background report every minute
// (the end of the completed writes); other clients see data as soon as it
// is written, and the new length once it is reported. O_APPEND appends at
// the end this File knows: concurrent appenders are not serialized.
//
// A File is safe for concurrent use; Read, Write and Seek share one offset.
type File struct {
	c      *Client
	name   string
	ino    uint64
	layout *proto.Layout
	caps   *fileCap // for the chunks (caps.go)
	flag   int
	limit  int // write-behind bound (bytes in flight)

	posMu sync.Mutex // serializes Read, Write and Seek
	pos   int64

	mu       sync.Mutex
	cond     sync.Cond
	inode    proto.Inode   // attributes as last known
	sess     proto.Session // the write session (ID 0: read-only)
	temp     bool          // from CreateTemp and not published yet
	wend     int64         // end of this File's writes (since its last truncate)
	wrote    bool          // data written since the last length report
	reported int64         // the length meta has from this File: its last report, or the size at open
	bumped   bool          // no truncate before the session can wait for news of its writes (KeepTimes)
	closed   bool
	pend     []byte // buffered sequential write, not yet sent
	pendOff  int64  // file offset of pend[0]
	next     int64  // the offset that continues the last write
	landed   int64  // end of the writes that completed
	inflight int    // bytes of background writes under way
	werr     error  // first background write error (sticky)
}

// Open opens file name with os.OpenFile's flags: O_RDONLY, O_WRONLY or
// O_RDWR, plus O_CREATE (with permissions perm, no umask), O_EXCL, O_TRUNC
// and O_APPEND (each write goes to the end of the file as this client knows
// it; concurrent appenders are not serialized). O_SYNC and other flags are
// ignored. Errors are *fs.PathError as the namespace methods'.
func (c *Client) Open(ctx context.Context, name string, flag int, perm fs.FileMode) (*File, error) {
	f, err := c.open(ctx, name, flag, perm)
	if err != nil {
		return nil, pathErr("open", name, err)
	}
	return f, nil
}

// Create creates or truncates file name (mode 0o666 for a new file) and
// opens it for reading and writing, like os.Create.
func (c *Client) Create(ctx context.Context, name string) (*File, error) {
	return c.Open(ctx, name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

// OpenFile opens file name for reading, like os.Open.
func (c *Client) OpenFile(ctx context.Context, name string) (*File, error) {
	return c.Open(ctx, name, os.O_RDONLY, 0)
}

func (c *Client) open(ctx context.Context, name string, flag int, perm fs.FileMode) (*File, error) {
	p, err := c.clusterPath(name)
	if err != nil {
		return nil, err
	}
	var flags proto.OpenFlags
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		flags = proto.OpenRead
	case os.O_WRONLY:
		flags = proto.OpenWrite
	case os.O_RDWR:
		flags = proto.OpenRead | proto.OpenWrite
	default:
		return nil, errorf(proto.EINVAL)
	}
	writing := flags&proto.OpenWrite != 0
	// O_TRUNC is done by the File (Truncate) rather than by meta's open,
	// so that the storage side is cut at once: data written right after
	// the open can never be taken by a late garbage collection.
	trunc := flag&os.O_TRUNC != 0 && writing
	var resp proto.MetaOpenResp
	create := flag&os.O_CREATE != 0
	if create {
		if p == "/" {
			return nil, errorf(proto.EISDIR)
		}
		parent, base, err := c.parent(ctx, p)
		if err != nil {
			return nil, err
		}
		cf := flags
		if flag&os.O_EXCL != 0 {
			cf |= proto.OpenExcl
		}
		err = c.metaCall(ctx, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: parent, Name: base, Mode: unixMode(perm), Flags: cf}, &resp)
		if errors.Is(err, proto.ErrExist) && flag&os.O_EXCL == 0 {
			create = false // a symlink: open what it names
		} else if err != nil {
			return nil, err
		}
	}
	if !create {
		n, err := c.statPath(ctx, p, true)
		if err != nil {
			return nil, err
		}
		if err := c.metaCall(ctx, proto.MethodMetaOpen, &proto.MetaOpenReq{Ino: n.Ino, Flags: flags}, &resp); err != nil {
			return nil, err
		}
	}
	if resp.Inode.Type != proto.TypeFile {
		if resp.Session.ID != 0 {
			_ = c.metaCall(ctx, proto.MethodMetaClose, &proto.MetaCloseReq{Session: resp.Session}, nil)
		}
		return nil, errorf(proto.EISDIR)
	}
	f := c.newFile(name, flag, resp)
	if trunc && resp.Inode.Size > 0 {
		if err := f.truncate(ctx, 0); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// newFile makes the File of an open, create or temporary create's answer.
func (c *Client) newFile(name string, flag int, resp proto.MetaOpenResp) *File {
	n, sess := resp.Inode, resp.Session
	flags, _ := openFlags(flag)
	l := n.Layout
	if l == nil {
		l = &proto.Layout{}
	}
	cs := int(l.ChunkSize)
	limit := c.writeBuffer
	if limit <= 0 {
		limit = 2 * cs
	}
	limit = max(limit, cs, 1)
	// A file never truncated (TruncVer 0) has no truncate waiting in
	// meta's garbage-collection queue (server/meta/gc.go).
	f := &File{c: c, name: name, ino: n.Ino, layout: l, flag: flag, limit: limit, inode: n, sess: sess,
		reported: int64(n.Size), bumped: n.TruncVer == 0,
		caps: c.newFileCap(n.Ino, flags, resp.Cap, resp.CapTTL, sess)}
	f.cond.L = &f.mu
	if sess.ID != 0 {
		c.addWriter(f)
	}
	return f
}

func (c *Client) addWriter(f *File) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writers == nil {
		c.writers = map[*File]struct{}{}
	}
	c.writers[f] = struct{}{}
	if c.reporting {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.reporting = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(c.reportEvery)
		defer t.Stop()
		for {
			select {
			case <-c.bg.Done():
				return
			case <-t.C:
			}
			c.wmu.Lock()
			fs := make([]*File, 0, len(c.writers))
			for f := range c.writers {
				fs = append(fs, f)
			}
			c.wmu.Unlock()
			for _, f := range fs {
				f.reportLength(c.bg)
			}
		}
	}()
}

func (c *Client) removeWriter(f *File) {
	c.wmu.Lock()
	delete(c.writers, f)
	c.wmu.Unlock()
}

// reportLength reports the length of the data written so far (the end of
// the writes that completed) without waiting for buffered writes.
func (f *File) reportLength(ctx context.Context) {
	f.mu.Lock()
	sess, length, wrote := f.sess, max(int64(f.inode.Size), f.landed), f.wrote
	f.mu.Unlock()
	if sess.ID == 0 {
		return
	}
	var resp proto.MetaInodeResp
	if err := f.c.metaCall(ctx, proto.MethodMetaReportLength, &proto.MetaCloseReq{Session: sess, Length: uint64(length), Wrote: wrote}, &resp); err != nil {
		f.c.log.Debug().Err(err).Str("file", f.name).Msg("periodic length report")
	}
}

// Name returns the name the file was opened with.
func (f *File) Name() string { return f.name }

// Ino returns the file's inode id.
func (f *File) Ino() uint64 { return f.ino }

// Layout returns the file's chunk layout.
func (f *File) Layout() proto.Layout { return *f.layout }

func (f *File) writable() error {
	if f.flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return &fs.PathError{Op: "write", Path: f.name, Err: errorf(proto.EBADF)}
	}
	return nil
}

func (f *File) readable() error {
	if f.flag&os.O_WRONLY != 0 {
		return &fs.PathError{Op: "read", Path: f.name, Err: errorf(proto.EBADF)}
	}
	return nil
}

func (f *File) errClosed(op string) error {
	return &fs.PathError{Op: op, Path: f.name, Err: fs.ErrClosed}
}

// sizeLocked is the file's length as this File knows it.
func (f *File) sizeLocked() int64 { return max(int64(f.inode.Size), f.wend) }

// Size returns the file's length as this File knows it: meta's at Open (or
// the latest Stat), extended by this File's writes.
func (f *File) Size() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sizeLocked()
}

// refreshSize asks meta for the file's attributes.
func (f *File) refreshSize(ctx context.Context) error {
	var resp proto.MetaInodeResp
	if err := f.c.metaCall(ctx, proto.MethodMetaStat, &proto.MetaStatReq{Ino: f.ino}, &resp); err != nil {
		return err
	}
	f.mu.Lock()
	f.inode = resp.Inode
	f.mu.Unlock()
	return nil
}

// ctx is the context of calls made by methods that take none: the
// client's (ended by Client.Close); the pool applies Options.CallTimeout.
func (f *File) ctx() context.Context { return f.c.bg }

// ReadAt reads len(p) bytes at off (io.ReaderAt): fewer only at the end of
// the file, with io.EOF.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	return f.ReadAtContext(f.ctx(), p, off)
}

// ReadAtContext is ReadAt with a context.
func (f *File) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if err := f.readable(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: errorf(proto.EINVAL)}
	}
	ops := []ReadOp{{File: f, Off: off, Dst: p}}
	if err := f.c.ReadBatch(ctx, ops); err != nil && ops[0].Err == nil {
		return 0, &fs.PathError{Op: "read", Path: f.name, Err: err}
	}
	return ops[0].N, ops[0].Err
}

// Read reads up to len(p) bytes at the file offset and advances it.
func (f *File) Read(p []byte) (int, error) {
	f.posMu.Lock()
	defer f.posMu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// Seek sets the offset of the next Read or Write (io.Seeker); io.SeekEnd
// is relative to the file's length as meta and this File know it.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	f.posMu.Lock()
	defer f.posMu.Unlock()
	var base int64
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		base = f.pos
	case io.SeekEnd:
		if err := f.refreshSize(f.ctx()); err != nil {
			return 0, &fs.PathError{Op: "seek", Path: f.name, Err: err}
		}
		base = f.Size()
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: errorf(proto.EINVAL)}
	}
	// Like lseek, a position below 0 or past the largest file size is
	// EINVAL; the comparisons are arranged not to overflow.
	if offset < -base || offset > proto.MaxFileSize-base {
		return 0, &fs.PathError{Op: "seek", Path: f.name, Err: proto.Errorf(proto.EINVAL, "seek to %d%+d: outside [0, %d]", base, offset, proto.MaxFileSize)}
	}
	f.pos = base + offset
	return f.pos, nil
}

// WriteAt writes p at off (io.WriterAt). Not allowed on a File opened with
// O_APPEND.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if err := f.writable(); err != nil {
		return 0, err
	}
	if f.flag&os.O_APPEND != 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: &proto.Error{Code: proto.EINVAL, Msg: "WriteAt on a file opened with O_APPEND"}}
	}
	if err := checkRange("write", f.name, off, len(p)); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.writeAtLocked(p, off)
}

// Write writes p at the file offset (at the end of the file with
// O_APPEND) and advances it.
func (f *File) Write(p []byte) (int, error) {
	if err := f.writable(); err != nil {
		return 0, err
	}
	f.posMu.Lock()
	defer f.posMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flag&os.O_APPEND != 0 {
		f.pos = f.sizeLocked()
	}
	n, err := f.writeAtLocked(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *File) writeAtLocked(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, f.errClosed("write")
	}
	if f.werr != nil {
		return 0, f.werr
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Before anything is buffered or sent (Write's offset, O_APPEND's
	// included, comes here unchecked).
	if err := checkRange("write", f.name, off, len(p)); err != nil {
		return 0, err
	}
	if off != f.next {
		// Not a continuation of the buffered write: let every earlier
		// write land first, so that overlapping writes apply in order.
		if err := f.waitLocked(); err != nil {
			return 0, err
		}
	}
	cs := int64(f.layout.ChunkSize)
	if cs == 0 || len(f.layout.Chains) == 0 {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: proto.Errorf(proto.Unavailable, "the file has no chains (no storage was configured when it was created)")}
	}
	if len(f.pend) == 0 && len(p) >= f.limit {
		// A large write goes out at once, its chunks in parallel.
		if err := f.c.writeRange(f.ctx(), f.caps, f.layout, f.ino, p, off); err != nil {
			f.werr = &fs.PathError{Op: "write", Path: f.name, Err: err}
			return 0, f.werr
		}
		f.wrote = true
		f.wend = max(f.wend, off+int64(len(p)))
		f.landed = max(f.landed, off+int64(len(p)))
		f.next = off + int64(len(p))
		return len(p), nil
	}
	written := 0
	for written < len(p) {
		if len(f.pend) == 0 {
			f.pendOff = off + int64(written)
		}
		end := f.pendOff + int64(len(f.pend))
		room := cs - end%cs
		m := int(min(int64(len(p)-written), room))
		if f.pend == nil {
			f.pend = make([]byte, 0, min(room, max(int64(m), 1<<20)))
		}
		f.pend = append(f.pend, p[written:written+m]...)
		written += m
		f.wrote = true
		f.wend = max(f.wend, f.pendOff+int64(len(f.pend)))
		if (end+int64(m))%cs == 0 {
			f.dispatchLocked()
		}
	}
	f.next = off + int64(written)
	return written, nil
}

// dispatchLocked sends the buffered write in the background, once the
// writes under way leave room for it.
func (f *File) dispatchLocked() {
	piece, off := f.pend, f.pendOff
	f.pend = nil
	if len(piece) == 0 {
		return
	}
	for f.inflight > 0 && f.inflight+len(piece) > f.limit {
		f.cond.Wait()
	}
	f.inflight += len(piece)
	go func() {
		err := f.c.writeRange(f.ctx(), f.caps, f.layout, f.ino, piece, off)
		f.mu.Lock()
		f.inflight -= len(piece)
		if err != nil && f.werr == nil {
			f.werr = &fs.PathError{Op: "write", Path: f.name, Err: err}
		} else if err == nil {
			f.landed = max(f.landed, off+int64(len(piece)))
		}
		f.cond.Broadcast()
		f.mu.Unlock()
	}()
}

// waitLocked sends the buffered write and waits for every background
// write; it returns the File's write error, if any.
func (f *File) waitLocked() error {
	f.dispatchLocked()
	for f.inflight > 0 {
		f.cond.Wait()
	}
	return f.werr
}

// settle waits for the File's buffered and background writes, so that a
// read sees them; it reports whether the File is closed.
func (f *File) settle() (closed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pend) > 0 || f.inflight > 0 {
		f.waitLocked()
	}
	return f.closed
}

// Sync sends the buffered writes, waits for them and reports the file's
// length to meta, unless meta already has it: nothing was written since
// the last report (a close(2) after an fsync(2) costs no second report).
func (f *File) Sync() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.errClosed("sync")
	}
	if err := f.waitLocked(); err != nil {
		return err
	}
	length := f.sizeLocked()
	if f.sess.ID == 0 || (!f.wrote && length == f.reported) {
		return nil
	}
	var resp proto.MetaInodeResp
	if err := f.c.metaCall(f.ctx(), proto.MethodMetaReportLength, &proto.MetaCloseReq{Session: f.sess, Length: uint64(length), Wrote: f.wrote}, &resp); err != nil {
		return &fs.PathError{Op: "sync", Path: f.name, Err: err}
	}
	f.bumped = f.bumped || f.wrote
	f.wrote = false
	f.reported = length
	f.inode = resp.Inode
	return nil
}

// SendBuffered starts sending the buffered writes and returns without
// waiting for them (Sync and Close do): a caller that expects no more
// writes for now, such as the mount when a program sets attributes after
// writing, lets the data travel while it does other work.
func (f *File) SendBuffered() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed && f.werr == nil {
		f.dispatchLocked()
	}
}

// KeepTimes is for a caller about to set the file's times explicitly
// while it is open (utimensat, as cp -a and tar do after writing): the
// writes made so far will not set the modification time when their length
// is reported, so the times being set stay, without a Sync first. It
// returns a function that undoes this, for when setting the times fails.
// It returns nil and changes nothing when the writes must be reported as
// writes first (call Sync before setting the times then): the file was
// truncated before this File's session opened and the session has not
// reported a write yet, so meta's garbage collection of that truncate may
// still be waiting for news of later writes (Inode.WriteVer).
func (f *File) KeepTimes() (undo func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.wrote {
		return func() {}
	}
	if !f.bumped {
		return nil
	}
	f.wrote = false
	return func() {
		f.mu.Lock()
		f.wrote = true
		f.mu.Unlock()
	}
}

// Close sends the buffered writes, waits for them and ends the write
// session, reporting the file's length. It returns the first error of a
// background write that was not reported yet. Closing a file from
// CreateTemp that was not published deletes it: its buffered writes are
// dropped, and its chunks go to the garbage collection.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return f.errClosed("close")
	}
	if f.temp {
		f.pend = nil // no use sending what is about to be deleted
	}
	// Writes under way land before the session ends: one landing after
	// the file's chunks were collected would leave an orphan chunk.
	err := f.waitLocked()
	f.closed = true
	if f.sess.ID == 0 {
		return err
	}
	f.c.removeWriter(f)
	var resp proto.MetaInodeResp
	cerr := f.c.metaCall(f.ctx(), proto.MethodMetaClose, &proto.MetaCloseReq{Session: f.sess, Length: uint64(f.sizeLocked()), Wrote: f.wrote}, &resp)
	if cerr != nil && err == nil {
		err = &fs.PathError{Op: "close", Path: f.name, Err: cerr}
	}
	if cerr == nil {
		f.inode = resp.Inode // what Inode reports after Close (the mount's caching)
	}
	f.sess = proto.Session{}
	return err
}

// Stat returns the file's attributes from meta, with the length extended
// by this File's writes not reported yet.
func (f *File) Stat() (*FileInfo, error) {
	if err := f.refreshSize(f.ctx()); err != nil {
		return nil, &fs.PathError{Op: "stat", Path: f.name, Err: compact(err)}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.inode
	n.Size = uint64(f.sizeLocked())
	_, base := splitPath(CleanPath(f.name))
	return newFileInfo(base, n), nil
}

// Truncate sets the file's length; bytes past it are dropped at once on
// storage, and an extension reads as zeros.
func (f *File) Truncate(size int64) error {
	if err := f.writable(); err != nil {
		return err
	}
	if err := checkRange("truncate", f.name, size, 0); err != nil {
		return err
	}
	f.mu.Lock()
	closed, temp := f.closed, f.temp
	f.mu.Unlock()
	if closed {
		return f.errClosed("truncate")
	}
	if temp {
		// truncate opens a new write session, and an anonymous file can
		// get none (meta opens no file without a name).
		return &fs.PathError{Op: "truncate", Path: f.name, Err: &proto.Error{Code: proto.ENOTSUP, Msg: "truncate of an unpublished temporary file"}}
	}
	if err := f.truncate(f.ctx(), size); err != nil {
		return &fs.PathError{Op: "truncate", Path: f.name, Err: compact(err)}
	}
	return nil
}

// truncate sets the length in meta, cuts the chunks, and replaces the
// write session by a new one: meta ignores the length reports of sessions
// opened before a truncate, and this File's later writes must count.
func (f *File) truncate(ctx context.Context, size int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.waitLocked(); err != nil {
		return err
	}
	old := f.sizeLocked()
	var resp proto.MetaInodeResp
	if err := f.c.metaCall(ctx, proto.MethodMetaSetAttr, &proto.MetaSetAttrReq{Ino: f.ino, Attr: proto.SetAttr{Valid: proto.SetSize, Size: uint64(size)}}, &resp); err != nil {
		return err
	}
	old = max(old, int64(f.inode.Size))
	f.inode = resp.Inode
	f.wend = min(f.wend, size)
	f.landed = min(f.landed, size)
	if err := f.c.truncateChunks(ctx, f.caps, f.layout, f.ino, size, old); err != nil {
		return err
	}
	if f.sess.ID == 0 {
		return nil
	}
	var o proto.MetaOpenResp
	if err := f.c.metaCall(ctx, proto.MethodMetaOpen, &proto.MetaOpenReq{Ino: f.ino, Flags: f.caps.flags | proto.OpenWrite}, &o); err != nil {
		return err
	}
	oldSess := f.sess
	f.sess = o.Session
	f.caps.set(o.Cap, o.CapTTL, o.Session)
	_ = f.c.metaCall(ctx, proto.MethodMetaClose, &proto.MetaCloseReq{Session: oldSess, Length: uint64(size), Wrote: f.wrote}, nil)
	// Reporting a write makes meta's queued garbage collection of the cut
	// range obsolete: it was done above, and must not run after new writes.
	var r proto.MetaInodeResp
	if err := f.c.metaCall(ctx, proto.MethodMetaReportLength, &proto.MetaCloseReq{Session: f.sess, Length: uint64(size), Wrote: true}, &r); err != nil {
		return err
	}
	f.inode = r.Inode
	f.wrote = false
	f.reported, f.bumped = size, true
	return nil
}

// CreateTemp creates an anonymous file for writing in directory dir (its
// layout policy, its permission checks: write and search on dir) with
// permissions perm (no umask is applied), like Linux's O_TMPFILE: the file
// has no name until Publish gives it one, so no reader can see it while it
// is written. Closing it unpublished deletes it; if the client dies, meta
// deletes it once its write session times out (meta.session_timeout). Its
// chunks are garbage-collected in both cases.
//
// The File is open for reading and writing; its Name is dir/#INO (INO its
// inode id), also after Publish, as an os.File keeps its name after a
// rename. Truncate fails with ENOTSUP until it is published.
func (c *Client) CreateTemp(ctx context.Context, dir string, perm fs.FileMode) (*File, error) {
	p, err := c.clusterPath(dir)
	if err != nil {
		return nil, pathErr("createtemp", dir, err)
	}
	n, err := c.statPath(ctx, p, true)
	if err != nil {
		return nil, pathErr("createtemp", dir, err)
	}
	if n.Type != proto.TypeDir {
		return nil, pathErr("createtemp", dir, errorf(proto.ENOTDIR))
	}
	var resp proto.MetaOpenResp
	err = c.metaCall(ctx, proto.MethodMetaCreateTemp, &proto.MetaCreateTempReq{Parent: n.Ino, Mode: unixMode(perm)}, &resp)
	if err != nil {
		return nil, pathErr("createtemp", dir, err)
	}
	f := c.newFile(path.Join(p, fmt.Sprintf("#%d", resp.Inode.Ino)), os.O_RDWR, resp)
	f.temp = true
	return f, nil
}

// Publish gives f, a file from CreateTemp, the name name, replacing an
// existing file or symlink of that name as Rename does (EISDIR for a
// directory): it sends the buffered writes, waits for them, and then in
// one step at meta sets the file's length and links it. A reader of name
// sees the old file or the whole new one, never part of it. The writer
// still closes f. Publish works once per file (EINVAL after), needs write
// and search permission on name's directory, and fails with EBADF once
// meta has ended f's write session (the client was silent for longer than
// meta.session_timeout). Errors are *os.LinkError.
func (f *File) Publish(ctx context.Context, name string) error {
	return f.publish(ctx, name, false)
}

// PublishExcl is Publish failing with EEXIST if name exists.
func (f *File) PublishExcl(ctx context.Context, name string) error {
	return f.publish(ctx, name, true)
}

func (f *File) publish(ctx context.Context, name string, excl bool) error {
	p, err := f.c.clusterPath(name)
	if err != nil {
		return linkErr("publish", f.name, name, err)
	}
	if p == "/" {
		return linkErr("publish", f.name, name, errorf(proto.EISDIR))
	}
	parent, base, err := f.c.parent(ctx, p)
	if err != nil {
		return linkErr("publish", f.name, name, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return f.errClosed("publish")
	case !f.temp:
		return linkErr("publish", f.name, name, errorf(proto.EINVAL))
	}
	// Every byte lands before the name appears, and the length comes with
	// the name in one transaction.
	if err := f.waitLocked(); err != nil {
		return err
	}
	req := proto.MetaPublishReq{Session: f.sess, Length: uint64(f.sizeLocked()), Wrote: f.wrote, Parent: parent, Name: base, NoReplace: excl}
	var resp proto.MetaInodeResp
	if err := f.c.metaCall(ctx, proto.MethodMetaPublish, &req, &resp); err != nil {
		return linkErr("publish", f.name, name, err)
	}
	f.temp = false
	f.wrote = false
	f.inode = resp.Inode
	return nil
}

// Chmod sets the file's mode as Client.Chmod does.
func (f *File) Chmod(mode fs.FileMode) error {
	return pathErr("chmod", f.name, f.c.setAttr(f.ctx(), f.ino, proto.SetAttr{Valid: proto.SetMode, Mode: unixMode(mode)}))
}

// Chtimes sets the file's access and modification times as Client.Chtimes
// does. Writes reported later (by Sync, Close, Publish or the periodic
// report) set the modification time to theirs: call Sync first.
func (f *File) Chtimes(atime, mtime time.Time) error {
	var a proto.SetAttr
	if !atime.IsZero() {
		a.Valid |= proto.SetAtime
		a.Atime = atime.UnixNano()
	}
	if !mtime.IsZero() {
		a.Valid |= proto.SetMtime
		a.Mtime = mtime.UnixNano()
	}
	return pathErr("chtimes", f.name, f.c.setAttr(f.ctx(), f.ino, a))
}
