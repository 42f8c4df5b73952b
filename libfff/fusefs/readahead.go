package fusefs

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Readahead of our own for sequential streams. The kernel's readahead for
// a FUSE file is at most 128 KiB and sends one request at a time; a stream
// from a distributed store needs many requests in flight to reach the
// disks' and the network's speed. So each open file tracks where its reads
// go: a read that continues the previous ones (allowing for the kernel's
// reordering of its asynchronous requests) is sequential; from the second
// sequential read on, the handle keeps a window of 1 MiB blocks ahead of
// the reader fetched in parallel, 2 MiB at first, doubling on every
// sequential read up to Options.MaxReadahead. A read elsewhere drops the
// window (and its blocks) and goes straight to storage, as every random
// read does; so does a read that reaches past the length the handle knows.

const (
	raBlock       = 1 << 20 // the unit of readahead
	raFirstWindow = 2 << 20
	raSlack       = 128 << 10 // reordering tolerated around the stream's position
)

type raBuf struct {
	off  int64
	buf  []byte
	n    int
	err  error
	done chan struct{}
	refs int  // the fetch and the readers using it
	gone bool // dropped from the window
}

type readahead struct {
	mu     sync.Mutex
	next   int64 // end of the latest sequential read
	seq    int   // sequential reads in a row
	window int64
	blocks map[int64]*raBuf
}

var raPool = sync.Pool{New: func() any { b := make([]byte, raBlock); return &b }}

// unrefLocked drops a reference to b, recycling its buffer when it is no
// longer in the window and nobody uses it.
func (r *readahead) unrefLocked(b *raBuf) {
	b.refs--
	if b.refs == 0 && b.gone {
		buf := b.buf[:raBlock]
		b.buf = nil
		raPool.Put(&buf)
	}
}

func (r *readahead) dropLocked(b *raBuf) {
	delete(r.blocks, b.off)
	b.gone = true
	b.refs++
	r.unrefLocked(b)
}

func (h *handle) dropReadahead() {
	r := &h.ra
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.blocks {
		r.dropLocked(b)
	}
	r.seq, r.window = 0, 0
}

// read serves a READ of len(p) bytes at off: from the readahead window
// without a copy (the reply is written to the kernel straight from the
// window's blocks), or read into p.
func (h *handle) read(cancel <-chan struct{}, p []byte, off int64) (fuse.ReadResult, error) {
	direct := func() (fuse.ReadResult, error) {
		n, err := h.readAt(cancel, p, off)
		if err != nil {
			return nil, err
		}
		return readInPlace(p[:n]), nil
	}
	maxWin := int64(h.fs.opts.MaxReadahead)
	if maxWin == 0 || len(p) == 0 {
		return direct()
	}
	end := off + int64(len(p))
	size := h.f.Size()
	r := &h.ra
	r.mu.Lock()
	tol := max(int64(len(p)), raSlack) * 4
	if off < r.next-tol || off > r.next+tol {
		// Random: no readahead.
		for _, b := range r.blocks {
			r.dropLocked(b)
		}
		r.seq, r.window, r.next = 0, 0, end
		r.mu.Unlock()
		return direct()
	}
	r.seq++
	r.next = max(r.next, end)
	if r.seq >= 2 {
		r.window = min(max(2*r.window, raFirstWindow), max(maxWin, raBlock))
	}
	if r.window == 0 || end > size {
		r.mu.Unlock()
		return direct()
	}
	if r.blocks == nil {
		r.blocks = map[int64]*raBuf{}
	}
	first := off &^ (raBlock - 1)
	for k, b := range r.blocks {
		if k < first {
			r.dropLocked(b)
		}
	}
	limit := min(end+r.window, size)
	for bo := first; bo < limit; bo += raBlock {
		if r.blocks[bo] == nil {
			h.fetchLocked(bo, int(min(raBlock, size-bo)))
		}
	}
	res := &raResult{r: r}
	for bo := first; bo < end; bo += raBlock {
		b := r.blocks[bo]
		b.refs++
		res.blocks = append(res.blocks, b)
	}
	r.mu.Unlock()

	ok := true
	for _, b := range res.blocks {
		select {
		case <-b.done:
		case <-cancel:
			res.Done()
			return nil, syscall.EINTR
		}
		lo, hi := max(off, b.off), min(end, b.off+int64(b.n))
		if b.err != nil || hi < min(end, b.off+raBlock) {
			ok = false // failed or short: read it directly
			break
		}
		res.slices = append(res.slices, b.buf[lo-b.off:hi-b.off])
		res.size += int(hi - lo)
	}
	if !ok || res.size != len(p) {
		res.Done()
		return direct()
	}
	return res, nil
}

// readInPlace is a READ reply read into the request's own reply buffer:
// with the ring transport that is the ring entry's payload, so the reply
// is already where the kernel takes it from (ring.go).
type readInPlace []byte

func (r readInPlace) Bytes([]byte) ([]byte, fuse.Status) { return r, fuse.OK }
func (r readInPlace) Size() int                          { return len(r) }
func (r readInPlace) Done()                              {}

// Readv copies r into dst, unless it is there already.
func (r readInPlace) Readv(dst [][]byte) (int, fuse.Status) {
	if len(r) > 0 && len(dst) > 0 && len(dst[0]) >= len(r) && &dst[0][0] == &r[0] {
		return len(r), fuse.OK
	}
	n := 0
	for _, d := range dst {
		n += copy(d, r[n:])
	}
	return n, fuse.OK
}

// raResult is a READ reply served from readahead blocks; it holds them
// until go-fuse has written it (Done).
type raResult struct {
	r      *readahead
	blocks []*raBuf
	slices [][]byte
	size   int
}

// Slices lets go-fuse write the reply with writev, without a copy.
func (x *raResult) Slices() ([][]byte, fuse.Status) { return x.slices, fuse.OK }

func (x *raResult) Bytes(buf []byte) ([]byte, fuse.Status) {
	n := 0
	for _, s := range x.slices {
		n += copy(buf[n:], s)
	}
	return buf[:n], fuse.OK
}

func (x *raResult) Size() int { return x.size }

func (x *raResult) Done() {
	x.r.mu.Lock()
	for _, b := range x.blocks {
		x.r.unrefLocked(b)
	}
	x.blocks = nil
	x.r.mu.Unlock()
}

// fetchLocked starts reading block bo (n bytes) into the window.
func (h *handle) fetchLocked(bo int64, n int) {
	r := &h.ra
	bp := raPool.Get().(*[]byte)
	b := &raBuf{off: bo, buf: (*bp)[:n], done: make(chan struct{}), refs: 1}
	r.blocks[bo] = b
	go func() {
		got, err := h.readAt(nil, b.buf, bo)
		r.mu.Lock()
		b.n, b.err = got, err
		close(b.done)
		r.unrefLocked(b)
		r.mu.Unlock()
	}()
}
