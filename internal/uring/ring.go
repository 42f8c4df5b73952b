// Package uring is the io_uring disk IO layer: a Ring shared by many
// goroutines that batches their submissions into few io_uring_enter calls,
// and File, which reads local files with O_DIRECT where the filesystem
// allows it.
//
// giouring uses go:linkname, so every build and test linking this package
// needs -ldflags=-checklinkname=0.
package uring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/pawelgaczynski/giouring"
)

// ErrUnavailable is wrapped by NewRing when the kernel refuses io_uring
// (too old, compiled out, seccomp, kernel.io_uring_disabled, memlock), so
// callers can fall back to plain syscalls.
var ErrUnavailable = errors.New("uring: io_uring unavailable")

// ErrClosed is returned for IO on a closed Ring and set on ops that Close
// cancelled.
var ErrClosed = errors.New("uring: ring closed")

// DefaultEntries is the ring size used when NewRing is given 0.
const DefaultEntries = 256

// maxIO caps one SQE's length: the kernel transfers at most ~2 GiB per call
// and a power of two keeps O_DIRECT continuations aligned.
const maxIO = 1 << 30

// maxRetries bounds EINTR/EAGAIN resubmissions of one op so a descriptor
// that never becomes ready cannot spin forever.
const maxRetries = 1000

// OpKind selects the operation an Op performs.
type OpKind uint8

// Op kinds. The zero value is OpRead.
const (
	OpRead      OpKind = iota // pread into Buf
	OpWrite                   // pwrite from Buf
	OpFsync                   // fsync(Fd); Off and Buf ignored
	OpFdatasync               // fdatasync(Fd); Off and Buf ignored
)

// String names the kind after the syscall it performs.
func (k OpKind) String() string {
	switch k {
	case OpRead:
		return "read"
	case OpWrite:
		return "write"
	case OpFsync:
		return "fsync"
	case OpFdatasync:
		return "fdatasync"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one IO for Ring.Do. The caller fills Kind, Fd, Off and Buf; Do sets
// N (bytes transferred) and Err. Neither the Op nor Buf may be touched
// while Do runs: the kernel writes into Buf asynchronously.
type Op struct {
	Kind OpKind
	Fd   int
	Off  int64
	Buf  []byte
	N    int
	Err  error

	// direct is the O_DIRECT offset alignment for reads issued by File;
	// a short result that leaves the next offset unaligned is EOF, and
	// continuing would only earn EINVAL.
	direct int
}

// Ring is one io_uring instance, safe for concurrent use by many
// goroutines.
//
// Submissions are flat-combined: a caller that finds no submission in
// progress becomes the submitter and pushes every queued SQE (its own and
// other callers') in one io_uring_enter; one reaper goroutine waits for
// completions and dispatches them by slot index. In-flight ops are bounded
// by the ring size; further ops queue FIFO until slots free up.
type Ring struct {
	ring  *giouring.Ring
	calls sync.Pool // *call, reused across Do calls
	bufs  bouncePool

	mu          sync.Mutex
	idle        sync.Cond // signalled when the submitter role is released
	slots       []slot    // user_data = gen<<32 | index into slots
	free        []uint32
	waitq       []*call // calls with ops not yet given a slot, FIFO
	pendq       []sqeReq
	outstanding int // SQEs handed to the kernel whose CQE is not yet reaped
	submitting  bool
	enters      uint64 // io_uring_enter submit calls (Stats; tests of batching)
	sqes        uint64 // SQEs submitted
	cqes        uint64 // completions reaped
	closed      bool
	dead        bool  // rings unmapped; never touch r.ring again
	err         error // ring-level failure; the Ring is unusable

	reaperDone chan struct{}
	closeDone  chan struct{}
}

type slot struct {
	gen        uint32
	busy       bool
	inKernel   bool // an SQE for it is (about to be) in the kernel
	cancelSent bool
	afterShort bool // the last result was short (see complete)
	c          *call
	i          int // index in c.ops
	done       int // bytes transferred so far
	reqLen     int // length of the SQE in flight
	retries    int
}

// call is the state of one Do.
type call struct {
	ops       []Op
	next      int // next op to admit
	remaining int // ops not finished
	err       error
	kicked    bool          // handed the submitter role
	sig       chan struct{} // cap 1: "re-check state under r.mu"
}

type sqeReq struct {
	kind   uint8
	idx    uint32
	gen    uint32
	target uint64
}

const (
	reqSlot uint8 = iota
	reqCancel
	reqNop
)

const (
	genMask  = 1<<31 - 1
	udNop    = 1<<63 | 1
	udCancel = 1<<63 | 2
)

func slotUD(idx, gen uint32) uint64 { return uint64(gen)<<32 | uint64(idx) }

// NewRing creates an io_uring with room for entries in-flight ops (rounded
// up to a power of two by the kernel; 0 means DefaultEntries) and starts its
// reaper goroutine. Errors meaning "no io_uring here" wrap ErrUnavailable.
func NewRing(entries uint32) (*Ring, error) {
	if entries == 0 {
		entries = DefaultEntries
	}
	gr := giouring.NewRing()
	if err := gr.QueueInit(entries, 0); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOSYS || errno == syscall.EPERM ||
			errno == syscall.EACCES || errno == syscall.ENOMEM) {
			return nil, fmt.Errorf("%w: io_uring_setup: %w", ErrUnavailable, err)
		}
		return nil, fmt.Errorf("uring: io_uring_setup(%d): %w", entries, err)
	}
	probe, err := gr.GetProbeRing()
	if err != nil || !probe.IsSupported(giouring.OpRead) || !probe.IsSupported(giouring.OpWrite) ||
		!probe.IsSupported(giouring.OpAsyncCancel) {
		gr.QueueExit()
		if err == nil {
			err = errors.New("read/write/cancel opcodes not supported")
		}
		return nil, fmt.Errorf("%w: kernel too old: %w", ErrUnavailable, err)
	}
	n := gr.SQSpaceLeft()
	r := &Ring{
		ring:       gr,
		slots:      make([]slot, n),
		free:       make([]uint32, n),
		reaperDone: make(chan struct{}),
		closeDone:  make(chan struct{}),
	}
	for i := range r.free {
		r.free[i] = uint32(n) - 1 - uint32(i)
	}
	r.idle.L = &r.mu
	go r.reap(int(2 * n)) // the kernel sizes the CQ at twice the SQ
	return r, nil
}

// Entries reports how many ops the ring keeps in flight at most.
func (r *Ring) Entries() int { return len(r.slots) }

// Do runs all ops concurrently and waits for them. Short reads and writes
// are continued for the remainder; a read reaching EOF stops with a short N
// and no error; EINTR/EAGAIN are retried. Per-op failures go to Op.Err.
// Do returns non-nil only when ctx ends (ctx.Err()), the Ring is closed
// (ErrClosed) or the ring itself fails; in the first two cases every op is
// finished or cancelled in the kernel before Do returns, so no buffer is
// still referenced.
func (r *Ring) Do(ctx context.Context, ops []Op) error {
	_, err := r.do(ctx, ops)
	return err
}

// do is Do that also reports whether the kernel is certainly done with
// every buffer (false only after a ring-level failure).
func (r *Ring) do(ctx context.Context, ops []Op) (safe bool, err error) {
	for i := range ops {
		ops[i].N, ops[i].Err = 0, nil
	}
	if len(ops) == 0 {
		return true, nil
	}
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		setErr(ops, err)
		return true, err
	}
	c, _ := r.calls.Get().(*call)
	if c == nil {
		c = &call{sig: make(chan struct{}, 1)}
	}
	*c = call{ops: ops, remaining: len(ops), sig: c.sig}

	r.mu.Lock()
	if r.closed || r.err != nil {
		err := r.err
		if err == nil {
			err = ErrClosed
		}
		r.mu.Unlock()
		setErr(ops, err)
		return true, err
	}
	r.waitq = append(r.waitq, c)
	r.admit()
	if !r.submitting && len(r.pendq) > 0 {
		r.submitting = true
		r.submitLoop(c)
	}
	ctxDone := ctx.Done()
	for c.remaining > 0 || c.kicked {
		if c.kicked {
			c.kicked = false
			r.submitLoop(c)
			continue
		}
		r.mu.Unlock()
		select {
		case <-c.sig:
			r.mu.Lock()
		case <-ctxDone:
			ctxDone = nil
			r.mu.Lock()
			r.cancelCall(c, ctx.Err())
			if !r.submitting && len(r.pendq) > 0 {
				r.submitting = true
				r.submitLoop(c)
			}
		}
	}
	err, safe = c.err, r.err == nil
	r.mu.Unlock()
	*c = call{sig: c.sig}
	r.calls.Put(c)
	return safe, err
}

func setErr(ops []Op, err error) {
	for i := range ops {
		ops[i].Err = err
	}
}

// admit gives free slots to waiting ops in FIFO order. r.mu held.
func (r *Ring) admit() {
	for len(r.waitq) > 0 {
		c := r.waitq[0]
		for c.next < len(c.ops) {
			op := &c.ops[c.next]
			if err := checkOp(op); err != nil || (len(op.Buf) == 0 && op.Kind <= OpWrite) {
				op.Err = err
				c.next++
				r.opDone(c)
				continue
			}
			if len(r.free) == 0 {
				return
			}
			idx := r.free[len(r.free)-1]
			r.free = r.free[:len(r.free)-1]
			s := &r.slots[idx]
			s.busy, s.c, s.i = true, c, c.next
			c.next++
			r.pendq = append(r.pendq, sqeReq{kind: reqSlot, idx: idx, gen: s.gen})
		}
		r.waitq[0] = nil
		r.waitq = r.waitq[1:]
	}
}

func checkOp(op *Op) error {
	if op.Kind > OpFdatasync {
		return fmt.Errorf("uring: invalid op kind %v", op.Kind)
	}
	if op.Off < 0 && op.Kind <= OpWrite {
		return os.NewSyscallError(op.Kind.String(), syscall.EINVAL)
	}
	return nil
}

func (r *Ring) opDone(c *call) {
	c.remaining--
	if c.remaining == 0 {
		r.notify(c)
	}
}

func (r *Ring) notify(c *call) {
	select {
	case c.sig <- struct{}{}:
	default:
	}
}

// submitLoop pushes queued SQEs to the kernel until none are left. The
// caller holds r.mu and the submitter role (r.submitting). Once self's own
// ops are finished (self == nil for the reaper) the role is handed to a
// caller whose ops are queued, so no goroutine submits for others forever.
func (r *Ring) submitLoop(self *call) {
	for pass := 0; ; pass++ {
		if len(r.pendq) == 0 || r.dead || r.err != nil {
			r.pendq = r.pendq[:0]
			r.submitting = false
			r.idle.Broadcast()
			return
		}
		if pass > 0 && (self == nil || self.remaining == 0) {
			if c := r.handoffTarget(self); c != nil {
				c.kicked = true
				r.notify(c)
				return
			}
		}
		r.prep()
		r.enters++
		r.mu.Unlock()
		err := r.enter()
		r.mu.Lock()
		if err != nil {
			r.fail(err)
		}
	}
}

// handoffTarget returns a caller other than self with a queued op.
func (r *Ring) handoffTarget(self *call) *call {
	for _, q := range r.pendq {
		if q.kind != reqSlot {
			continue
		}
		s := &r.slots[q.idx]
		if s.busy && s.gen == q.gen && !s.inKernel && s.c != self {
			return s.c
		}
	}
	return nil
}

// prep moves queued requests into SQEs. r.mu held; only the submitter
// touches the SQ ring.
func (r *Ring) prep() {
	space := int(r.ring.SQSpaceLeft())
	i := 0
	for ; i < len(r.pendq) && space > 0; i++ {
		q := r.pendq[i]
		if q.kind == reqSlot {
			s := &r.slots[q.idx]
			if !s.busy || s.gen != q.gen || s.inKernel {
				continue // finished or cancelled while queued
			}
		}
		sqe := r.ring.GetSQE()
		if sqe == nil {
			break
		}
		*sqe = giouring.SubmissionQueueEntry{} // the library leaves rw_flags/addr3 stale
		switch q.kind {
		case reqSlot:
			r.prepSlot(sqe, q.idx)
		case reqCancel:
			sqe.PrepareCancel64(q.target, 0)
			sqe.UserData = udCancel
		default:
			sqe.PrepareNop()
			sqe.UserData = udNop
		}
		space--
		r.outstanding++
		r.sqes++
	}
	n := copy(r.pendq, r.pendq[i:])
	clear(r.pendq[n:])
	r.pendq = r.pendq[:n]
}

func (r *Ring) prepSlot(sqe *giouring.SubmissionQueueEntry, idx uint32) {
	s := &r.slots[idx]
	op := &s.c.ops[s.i]
	switch op.Kind {
	case OpRead, OpWrite:
		rest := op.Buf[s.done:]
		n := min(len(rest), maxIO)
		addr := uintptr(unsafe.Pointer(&rest[0]))
		off := uint64(op.Off) + uint64(s.done)
		if op.Kind == OpRead {
			sqe.PrepareRead(op.Fd, addr, uint32(n), off)
		} else {
			sqe.PrepareWrite(op.Fd, addr, uint32(n), off)
		}
		s.reqLen = n
	case OpFsync:
		sqe.PrepareFsync(op.Fd, 0)
	case OpFdatasync:
		sqe.PrepareFsync(op.Fd, giouring.FsyncDatasync)
	}
	sqe.UserData = slotUD(idx, s.gen)
	s.inKernel = true
}

// enter submits every prepared SQE, retrying transient errors. Called by
// the submitter without r.mu.
func (r *Ring) enter() error {
	for backoff := time.Microsecond; r.ring.SQReady() > 0; {
		_, err := r.ring.Submit()
		switch {
		case err == nil:
		case errors.Is(err, syscall.EINTR):
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EBUSY):
			// Kernel short of memory or CQ overflow: let the reaper drain.
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Millisecond)
		default:
			return fmt.Errorf("uring: io_uring_enter: %w", err)
		}
	}
	return nil
}

// fail marks the ring unusable and finishes every op with err. Buffers of
// ops that reached the kernel may still be written; do reports that.
func (r *Ring) fail(err error) {
	if r.err != nil {
		return
	}
	r.err = err
	r.failWaiting(err)
	for idx := range r.slots {
		if s := &r.slots[idx]; s.busy {
			if s.c.err == nil {
				s.c.err = err
			}
			r.finish(uint32(idx), err)
		}
	}
	r.pendq = r.pendq[:0]
}

// failWaiting finishes all ops that never got a slot.
func (r *Ring) failWaiting(err error) {
	for _, c := range r.waitq {
		if c.err == nil {
			c.err = err
		}
		r.dropUnadmitted(c)
	}
	clear(r.waitq)
	r.waitq = r.waitq[:0]
}

func (r *Ring) dropUnadmitted(c *call) {
	for ; c.next < len(c.ops); c.next++ {
		c.ops[c.next].Err = c.err
		r.opDone(c)
	}
}

// cancelCall stops c's ops after its context ended: queued ones finish at
// once, in-flight ones get an async cancel. r.mu held.
func (r *Ring) cancelCall(c *call, err error) {
	if c.remaining == 0 {
		return
	}
	if c.err == nil {
		c.err = err
	}
	for i, w := range r.waitq {
		if w == c {
			r.waitq = append(r.waitq[:i], r.waitq[i+1:]...)
			r.dropUnadmitted(c)
			break
		}
	}
	r.cancelSlots(func(s *slot) bool { return s.c == c })
}

func (r *Ring) cancelSlots(match func(*slot) bool) {
	for idx := range r.slots {
		s := &r.slots[idx]
		if !s.busy || !match(s) {
			continue
		}
		if !s.inKernel {
			r.finish(uint32(idx), s.c.err)
		} else if !s.cancelSent && r.err == nil {
			s.cancelSent = true
			r.pendq = append(r.pendq, sqeReq{kind: reqCancel, target: slotUD(uint32(idx), s.gen)})
		}
	}
}

// finish completes the op in slot idx and frees the slot. r.mu held.
func (r *Ring) finish(idx uint32, err error) {
	s := &r.slots[idx]
	c := s.c
	op := &c.ops[s.i]
	op.N, op.Err = s.done, err
	*s = slot{gen: (s.gen + 1) & genMask}
	r.free = append(r.free, idx)
	r.opDone(c)
	if !r.closed {
		r.admit()
	}
}

func (r *Ring) requeue(idx uint32) {
	r.pendq = append(r.pendq, sqeReq{kind: reqSlot, idx: idx, gen: r.slots[idx].gen})
}

// complete handles one CQE. r.mu held.
func (r *Ring) complete(ud uint64, res int32) {
	r.outstanding--
	if ud == udNop || ud == udCancel {
		return
	}
	idx, gen := uint32(ud), uint32(ud>>32)
	if int(idx) >= len(r.slots) {
		return
	}
	s := &r.slots[idx]
	if !s.busy || s.gen != gen || !s.inKernel {
		return
	}
	s.inKernel, s.cancelSent = false, false
	c := s.c
	op := &c.ops[s.i]
	if res < 0 {
		errno := syscall.Errno(-res)
		switch {
		case (errno == syscall.EINTR || errno == syscall.EAGAIN) && c.err == nil && s.retries < maxRetries:
			s.retries++
			r.requeue(idx)
		case errno == syscall.ECANCELED && c.err != nil:
			r.finish(idx, c.err)
		case errno == syscall.EINVAL && op.Kind == OpRead && s.afterShort:
			// Continuing a short O_DIRECT read from an unaligned offset:
			// the short read was EOF.
			r.finish(idx, nil)
		default:
			r.finish(idx, os.NewSyscallError(op.Kind.String(), errno))
		}
		return
	}
	if op.Kind >= OpFsync {
		r.finish(idx, nil)
		return
	}
	s.done += int(res)
	short := int(res) < s.reqLen
	switch {
	case s.done >= len(op.Buf):
		r.finish(idx, nil)
	case res == 0 && op.Kind == OpRead:
		r.finish(idx, nil) // EOF
	case res == 0:
		r.finish(idx, os.NewSyscallError("write", io.ErrShortWrite))
	case c.err != nil:
		r.finish(idx, c.err)
	case short && op.direct > 0 && (op.Off+int64(s.done))%int64(op.direct) != 0:
		r.finish(idx, nil) // O_DIRECT read ended inside a block: EOF
	default:
		s.afterShort = short
		r.requeue(idx)
	}
}

// reap is the only goroutine reading the CQ ring.
func (r *Ring) reap(cqSize int) {
	defer close(r.reaperDone)
	cqes := make([]*giouring.CompletionQueueEvent, cqSize)
	for {
		_, err := r.ring.WaitCQE()
		if err != nil {
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.EAGAIN) ||
				errors.Is(err, syscall.ETIME) {
				continue
			}
			r.mu.Lock()
			r.fail(fmt.Errorf("uring: waiting for completions: %w", err))
			r.mu.Unlock()
			return
		}
		n := r.ring.PeekBatchCQE(cqes)
		r.mu.Lock()
		for _, cqe := range cqes[:n] {
			r.complete(cqe.UserData, cqe.Res)
		}
		r.ring.CQAdvance(n)
		r.cqes += uint64(n)
		clear(cqes[:n])
		if r.closed && ((r.outstanding == 0 && len(r.pendq) == 0) || r.err != nil) {
			r.mu.Unlock()
			return
		}
		if !r.submitting && len(r.pendq) > 0 {
			r.submitting = true
			r.submitLoop(nil)
		}
		r.mu.Unlock()
	}
}

// Close cancels in-flight ops (their Do returns ErrClosed), waits until the
// kernel has let go of every buffer, then releases the ring. It is
// idempotent; later calls wait for the first to finish. After a ring-level
// failure the rings are leaked rather than unmapped under a blocked reaper.
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		<-r.closeDone
		return nil
	}
	r.closed = true
	if r.err != nil {
		err := r.err
		close(r.closeDone)
		r.mu.Unlock()
		return err
	}
	r.failWaiting(ErrClosed)
	r.cancelSlots(func(s *slot) bool {
		if s.c.err == nil {
			s.c.err = ErrClosed
		}
		return true
	})
	r.pendq = append(r.pendq, sqeReq{kind: reqNop}) // wakes the reaper
	if !r.submitting {
		r.submitting = true
		r.submitLoop(nil)
	}
	r.mu.Unlock()

	<-r.reaperDone
	r.mu.Lock()
	for r.submitting {
		r.idle.Wait()
	}
	r.dead = true
	err := r.err
	r.mu.Unlock()
	if err == nil {
		r.ring.QueueExit()
	}
	close(r.closeDone)
	return err
}

// Stats are a ring's counters (fffd's metrics).
type Stats struct {
	Enters      uint64 // io_uring_enter calls that submitted
	Submissions uint64 // SQEs submitted
	Completions uint64 // CQEs reaped
	InFlight    int    // SQEs in the kernel
	Waiting     int    // calls waiting for a free slot
}

// Stats reports the ring's counters.
func (r *Ring) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Stats{Enters: r.enters, Submissions: r.sqes, Completions: r.cqes, InFlight: r.outstanding, Waiting: len(r.waitq)}
}
