package uring

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// Options controls Open.
type Options struct {
	// NoDirect forces buffered (page cache) IO even where O_DIRECT works.
	NoDirect bool
	// Write opens the file read-write; writes go through Ring.Do with
	// Fd() and, when Direct(), must be aligned like O_DIRECT requires.
	Write bool
	// Create, with Write, creates the file (mode 0644) if it is missing.
	Create bool
}

// File is a local file read through a Ring. It uses O_DIRECT when the
// filesystem accepts it and buffered IO otherwise; Direct reports which, so
// the caller can log a warning (this package does not log). Methods are
// safe for concurrent use; Close waits for reads in progress.
type File struct {
	ring     *Ring
	fd       int
	name     string
	size     int64
	direct   bool
	memAlign int   // O_DIRECT buffer address alignment
	offAlign int64 // O_DIRECT offset and length alignment

	mu     sync.RWMutex // read-held by IO so Close cannot free the fd under it
	closed bool
}

// Open opens path for IO through ring.
func Open(path string, ring *Ring, opts Options) (*File, error) {
	if ring == nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("uring: nil Ring")}
	}
	flags := unix.O_RDONLY | unix.O_CLOEXEC
	if opts.Write {
		flags = unix.O_RDWR | unix.O_CLOEXEC
		if opts.Create {
			flags |= unix.O_CREAT
		}
	}
	var fd int
	var err error
	for {
		fd, err = unix.Open(path, flags, 0o644)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		unix.Close(fd)
		return nil, &os.PathError{Op: "open", Path: path, Err: unix.EISDIR}
	}
	f := &File{ring: ring, fd: fd, name: path, size: st.Size}
	if !opts.NoDirect {
		f.tryDirect()
	}
	return f, nil
}

// tryDirect switches the descriptor to O_DIRECT when the filesystem
// supports it, learning the alignment from statx where the kernel reports
// it (Linux 6.1+) and falling back to Align plus a probe read otherwise.
func (f *File) tryDirect() {
	memA, offA, known := Align, Align, false
	var stx unix.Statx_t
	if unix.Statx(f.fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx) == nil &&
		stx.Mask&unix.STATX_DIOALIGN != 0 {
		if stx.Dio_offset_align == 0 || !pow2(stx.Dio_offset_align) || !pow2(stx.Dio_mem_align) {
			return // the filesystem says: no direct IO for this file
		}
		memA, offA, known = int(stx.Dio_mem_align), int(stx.Dio_offset_align), true
	}
	var sfs unix.Statfs_t
	if unix.Fstatfs(f.fd, &sfs) == nil && sfs.Type == unix.TMPFS_MAGIC {
		return // tmpfs accepts O_DIRECT on new kernels, but its data is the page cache
	}
	fl, err := unix.FcntlInt(uintptr(f.fd), unix.F_GETFL, 0)
	if err != nil {
		return
	}
	if _, err := unix.FcntlInt(uintptr(f.fd), unix.F_SETFL, fl|unix.O_DIRECT); err != nil {
		return
	}
	if !known {
		// Some filesystems (FUSE, overlays) accept the flag and then fail
		// every read with EINVAL.
		buf := alignedAlloc(offA, memA)
		if _, err := unix.Pread(f.fd, buf, 0); err == unix.EINVAL {
			_, _ = unix.FcntlInt(uintptr(f.fd), unix.F_SETFL, fl)
			return
		}
	}
	f.direct, f.memAlign, f.offAlign = true, memA, int64(offA)
}

func pow2(x uint32) bool { return x != 0 && x&(x-1) == 0 }

// Size is the file size at Open.
func (f *File) Size() int64 { return f.size }

// Direct reports whether reads bypass the page cache (O_DIRECT).
func (f *File) Direct() bool { return f.direct }

// Name is the path given to Open.
func (f *File) Name() string { return f.name }

// Fd is the descriptor, for building Ops (writes, fsync) for Ring.Do. It is
// valid until Close.
func (f *File) Fd() int { return f.fd }

// Close closes the descriptor after reads in progress have finished.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return &os.PathError{Op: "close", Path: f.name, Err: os.ErrClosed}
	}
	f.closed = true
	if err := unix.Close(f.fd); err != nil {
		return &os.PathError{Op: "close", Path: f.name, Err: err}
	}
	return nil
}

// ReadAt implements io.ReaderAt: it returns len(p) bytes or an error, and
// io.EOF when the file ends before p is full.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	req := [1]ReadReq{{Off: off, Buf: p}}
	if err := f.ReadBatch(context.Background(), req[:]); err != nil {
		return req[0].N, err
	}
	if req[0].Err == io.ErrUnexpectedEOF {
		return req[0].N, io.EOF
	}
	return req[0].N, req[0].Err
}

// ReadReq is one read of a ReadBatch.
type ReadReq struct {
	Off int64
	Buf []byte
	// N and Err are set by ReadBatch with io.ReadFull semantics: when the
	// file ends before Buf is full, Err is io.EOF if N == 0 and
	// io.ErrUnexpectedEOF otherwise.
	N   int
	Err error
}

// ReadBatch reads all reqs concurrently in one submission and reports each
// one's N and Err. It returns non-nil only when ctx ends, the File or Ring
// is closed, or the ring fails; unfinished requests then carry that error.
// Buffers must not be touched until it returns.
func (f *File) ReadBatch(ctx context.Context, reqs []ReadReq) error {
	for i := range reqs {
		reqs[i].N, reqs[i].Err = 0, nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		err := &os.PathError{Op: "read", Path: f.name, Err: os.ErrClosed}
		for i := range reqs {
			reqs[i].Err = err
		}
		return err
	}
	b := f.plan(reqs)
	safe, err := f.ring.do(ctx, b.ops)
	for i := range reqs {
		f.assemble(&reqs[i], b.ops, b.pieces[b.first[i]:b.first[i+1]])
	}
	if safe {
		for i := range b.pieces {
			if x := b.pieces[i].bounce; x != nil {
				f.ring.bufs.put(x)
			}
		}
	}
	return err
}

// piece is one op serving part of a request: file bytes
// [foff, foff+len(op.Buf)), read into the caller's buffer, or into bounce
// and copied out afterwards.
type piece struct {
	op     int
	foff   int64
	bounce *bounce
}

type batch struct {
	ops    []Op
	pieces []piece
	first  []int // pieces of reqs[i] are pieces[first[i]:first[i+1]]
}

// plan maps requests to ops. Buffered files read straight into the caller's
// buffer. Direct files do too when buffer, offset and length are aligned;
// otherwise the aligned middle goes straight into the caller's buffer if its
// address allows, and only the partial head and tail blocks (or, if the
// buffer is misaligned, the whole aligned span) use bounce buffers.
func (f *File) plan(reqs []ReadReq) batch {
	b := batch{
		ops:    make([]Op, 0, len(reqs)),
		pieces: make([]piece, 0, len(reqs)),
		first:  make([]int, len(reqs)+1),
	}
	add := func(foff int64, buf []byte, x *bounce) {
		b.pieces = append(b.pieces, piece{op: len(b.ops), foff: foff, bounce: x})
		b.ops = append(b.ops, Op{Kind: OpRead, Fd: f.fd, Off: foff, Buf: buf, direct: int(f.offAlign)})
	}
	for i := range reqs {
		b.first[i] = len(b.pieces)
		q := &reqs[i]
		start, n := q.Off, int64(len(q.Buf))
		switch {
		case start < 0 || start > math.MaxInt64-n-2*f.offAlign:
			q.Err = &os.PathError{Op: "readat", Path: f.name, Err: errors.New("negative offset")}
			if start >= 0 {
				q.Err = &os.PathError{Op: "readat", Path: f.name, Err: unix.EINVAL}
			}
		case n == 0:
		case !f.direct:
			add(start, q.Buf, nil)
		default:
			end, a := start+n, f.offAlign
			m0, m1 := alignUp(start, a), alignDown(end, a)
			if m1 > m0 && isAligned(q.Buf[m0-start:], f.memAlign) {
				if start < m0 {
					x := f.getBounce(a)
					add(m0-a, x.b[:a], x)
				}
				add(m0, q.Buf[m0-start:m1-start], nil)
				if m1 < end {
					x := f.getBounce(a)
					add(m1, x.b[:a], x)
				}
			} else {
				s, e := alignDown(start, a), alignUp(end, a)
				x := f.getBounce(e - s)
				add(s, x.b[:e-s], x)
			}
		}
	}
	b.first[len(reqs)] = len(b.pieces)
	return b
}

func (f *File) getBounce(n int64) *bounce {
	if f.memAlign > Align {
		return &bounce{b: alignedAlloc(int(n), f.memAlign)} // unusual device; not pooled
	}
	return f.ring.bufs.get(int(n))
}

// assemble copies bounced bytes into q.Buf and derives q.N and q.Err from
// the pieces, which cover q's range contiguously in file order.
func (f *File) assemble(q *ReadReq, ops []Op, ps []piece) {
	if q.Err != nil || len(q.Buf) == 0 {
		return
	}
	start, end := q.Off, q.Off+int64(len(q.Buf))
	for _, p := range ps {
		op := &ops[p.op]
		lo, hi := max(p.foff, start), min(p.foff+int64(len(op.Buf)), end)
		got := min(p.foff+int64(op.N), hi) // end of valid bytes from this piece
		if p.bounce != nil && got > lo {
			copy(q.Buf[lo-start:got-start], op.Buf[lo-p.foff:got-p.foff])
		}
		if got > lo {
			q.N = int(got - start)
		}
		if op.Err != nil {
			q.Err = f.wrapErr(op.Err)
			return
		}
		if got < hi {
			break // EOF inside this piece
		}
	}
	if q.N < len(q.Buf) {
		q.Err = io.ErrUnexpectedEOF
		if q.N == 0 {
			q.Err = io.EOF
		}
	}
}

func (f *File) wrapErr(err error) error {
	var se *os.SyscallError
	if errors.As(err, &se) {
		return &os.PathError{Op: "read", Path: f.name, Err: se.Err}
	}
	return err
}

func alignUp(x, a int64) int64   { return (x + a - 1) &^ (a - 1) }
func alignDown(x, a int64) int64 { return x &^ (a - 1) }
