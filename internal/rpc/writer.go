package rpc

import (
	"crypto/tls"
	"net"
	"sync"
	"time"
)

const (
	// copyThreshold: payload segments shorter than this are copied into the
	// coalescing buffer; longer ones go to writev as their own iovec, uncopied.
	copyThreshold = 8 << 10
	// flushBytes: a batch is handed to the kernel once this much is pending,
	// even if more frames are queued.
	flushBytes = 4 << 20
	// maxCoalesce: the coalescing buffer is dropped after a flush if it grew
	// beyond this, so one burst does not pin memory forever.
	maxCoalesce = 1 << 20
)

// frameOwner is told when the writer takes and finishes a frame whose memory
// (payload) belongs to someone else.
type frameOwner interface {
	// beginWrite is called before the frame's bytes are first touched;
	// returning false drops the frame unwritten.
	beginWrite() bool
	// endWrite is called once the frame's bytes have been handed to the
	// kernel (err == nil) or the connection failed (err != nil), and also
	// for frames that were queued but never begun (begun == false).
	endWrite(begun bool, err error)
}

// outFrame is a frame queued for writing: head holds the header and body
// (taken from the writer's pool and returned to it), payload the raw payload
// segments (not copied unless small).
type outFrame struct {
	head    *[]byte
	payload [][]byte
	owner   frameOwner
}

// frameWriter is the one writer of a connection. Producers enqueue frames;
// one writer at a time takes everything queued, packs headers, bodies and
// small payloads into one buffer, passes large payloads as separate iovecs,
// and writes the lot with one writev. While it writes, new frames queue up
// and go out in the next batch, so the connection is flushed exactly when
// the queue runs empty.
//
// The writer is either a dedicated goroutine (run; the client's choice, so a
// caller never blocks in a write on behalf of others and can always return
// when its context ends), or, in inline mode (the server's), whichever
// producer finds no write under way: it writes batches until the queue is
// empty, saving a goroutine hand-off per response.
type frameWriter struct {
	conn    net.Conn
	tt      *tlsTransport // under conn when it is TLS: gathers a batch's records
	pool    *bufPool
	timeout time.Duration
	inline  bool
	onFail  func(error) // inline mode: called once when a write fails

	mu     sync.Mutex
	cond   sync.Cond
	queue  []outFrame
	spare  []outFrame
	active bool // inline mode: a producer is writing
	closed bool
	err    error

	// owned by run
	wbuf   []byte // headers, bodies and small payloads of the current batch
	mark   int    // wbuf[:mark] is already referenced by vec
	vec    [][]byte
	begun  []outFrame
	vecLen int
}

func newFrameWriter(conn net.Conn, pool *bufPool, timeout time.Duration) *frameWriter {
	w := &frameWriter{conn: conn, pool: pool, timeout: timeout}
	if tc, ok := conn.(*tls.Conn); ok {
		w.tt, _ = tc.NetConn().(*tlsTransport)
	}
	w.cond.L = &w.mu
	return w
}

// newInlineFrameWriter returns a writer in inline mode; onFail is called
// (once, from a producer) if a write fails.
func newInlineFrameWriter(conn net.Conn, pool *bufPool, timeout time.Duration, onFail func(error)) *frameWriter {
	w := newFrameWriter(conn, pool, timeout)
	w.inline, w.onFail = true, onFail
	return w
}

// enqueue queues f. If the writer is closed, f's owner is told so at once and
// the writer's error is returned. In inline mode the caller may end up
// writing f and whatever else is queued.
func (w *frameWriter) enqueue(f outFrame) error {
	w.mu.Lock()
	if w.closed {
		err := w.err
		w.mu.Unlock()
		w.drop(f, false, err)
		return err
	}
	w.queue = append(w.queue, f)
	if !w.inline {
		if len(w.queue) == 1 {
			w.cond.Signal()
		}
		w.mu.Unlock()
		return nil
	}
	if w.active {
		w.mu.Unlock()
		return nil
	}
	w.active = true
	w.mu.Unlock()
	w.writeInline()
	return nil
}

// writeInline writes batches until the queue is empty (inline mode).
func (w *frameWriter) writeInline() {
	var failed error
	for {
		w.mu.Lock()
		if w.closed || len(w.queue) == 0 {
			q, err := w.queue, w.err
			w.queue = nil
			w.active = false
			w.mu.Unlock()
			for _, f := range q {
				w.drop(f, false, err)
			}
			if failed != nil && w.onFail != nil {
				w.onFail(failed)
			}
			return
		}
		batch := w.queue
		w.queue = w.spare[:0]
		w.mu.Unlock()

		err := w.writeBatch(batch)
		clear(batch)
		w.spare = batch[:0]
		if err != nil {
			failed = err
			w.close(err)
		}
	}
}

// close stops the writer; frames still queued are dropped with err. It does
// not close the connection (a write blocked in the kernel ends only when the
// connection is closed).
func (w *frameWriter) close(err error) {
	w.mu.Lock()
	if !w.closed {
		w.closed, w.err = true, err
		w.cond.Signal()
	}
	w.mu.Unlock()
}

func (w *frameWriter) drop(f outFrame, begun bool, err error) {
	w.pool.put(f.head)
	if f.owner != nil {
		f.owner.endWrite(begun, err)
	}
}

// run writes queued frames until close is called or a write fails; it
// returns the write error (nil after close).
func (w *frameWriter) run() error {
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closed {
			w.cond.Wait()
		}
		if w.closed {
			q, err := w.queue, w.err
			w.queue = nil
			w.mu.Unlock()
			for _, f := range q {
				w.drop(f, false, err)
			}
			return nil
		}
		batch := w.queue
		w.queue = w.spare[:0]
		w.mu.Unlock()

		err := w.writeBatch(batch)
		clear(batch)
		w.spare = batch[:0]
		if err != nil {
			w.close(err)
			w.mu.Lock()
			q := w.queue
			w.queue = nil
			w.mu.Unlock()
			for _, f := range q {
				w.drop(f, false, err)
			}
			return err
		}
	}
}

func (w *frameWriter) writeBatch(batch []outFrame) error {
	var err error
	for i := range batch {
		f := batch[i]
		if err != nil {
			w.drop(f, false, err)
			continue
		}
		if f.owner != nil && !f.owner.beginWrite() {
			w.drop(f, false, nil)
			continue
		}
		w.begun = append(w.begun, f)
		w.wbuf = append(w.wbuf, *f.head...)
		w.vecLen += len(*f.head)
		for _, p := range f.payload {
			w.vecLen += len(p)
			if len(p) < copyThreshold {
				w.wbuf = append(w.wbuf, p...)
				continue
			}
			if w.mark < len(w.wbuf) {
				w.vec = append(w.vec, w.wbuf[w.mark:])
				w.mark = len(w.wbuf)
			}
			w.vec = append(w.vec, p)
		}
		if w.vecLen >= flushBytes {
			err = w.flush()
		}
	}
	if err == nil {
		err = w.flush()
	}
	return err
}

// flush writes everything packed so far and tells the frames' owners.
func (w *frameWriter) flush() error {
	if w.mark < len(w.wbuf) {
		w.vec = append(w.vec, w.wbuf[w.mark:])
	}
	var err error
	if w.vecLen > 0 {
		if w.timeout > 0 {
			_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		bufs := net.Buffers(w.vec)
		if w.tt != nil {
			w.tt.gather(w.pool)
		}
		_, err = bufs.WriteTo(w.conn)
		if w.tt != nil {
			if rerr := w.tt.release(); err == nil {
				err = rerr
			}
		}
	}
	for _, f := range w.begun {
		w.drop(f, true, err)
	}
	clear(w.begun)
	w.begun = w.begun[:0]
	clear(w.vec)
	w.vec = w.vec[:0]
	w.vecLen = 0
	// Segments taken from wbuf point into its array (or into older arrays if
	// append reallocated); all are written now, so reuse it from the start.
	w.wbuf, w.mark = w.wbuf[:0], 0
	if cap(w.wbuf) > maxCoalesce {
		w.wbuf = nil
	}
	return err
}
