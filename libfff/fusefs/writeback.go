package fusefs

import (
	"errors"
	"os"
	"sync"
)

// Write-back close (Options.Writeback).
//
// A program copying small files waits, per file, for its close(2): the
// storage write of the data and the meta transaction with its length,
// about two thirds of the time a copied file costs (docs/performance.md,
// "Small files"). With write-back, FLUSH of a file written by this mount
// returns at once and RELEASE sends the data and ends the write session in
// the background, one transaction instead of two; the program goes on to
// the next file meanwhile. This is what local file systems, Lustre and
// CephFS do, and JuiceFS with --writeback: close(2) is not a durability
// point, fsync(2) is.
//
// What holds, and what is given up:
//
//   - fsync(2) of the file, or of any directory of the mount (FSYNCDIR;
//     `sync DIR`), returns once everything closed before it is on storage
//     and in meta; unmounting waits for the same. A background close that
//     failed is logged, and its error is returned by the next fsync(2) of
//     a directory or of the file and by the file's next close(2) in this
//     mount.
//   - This mount sees its own data at once: LOOKUP, GETATTR and
//     READDIRPLUS report the length written, and OPEN, CREATE without
//     O_EXCL and SETATTR of a file wait for its background close (or
//     send its writes, when its RELEASE has not come yet: wbSettle).
//   - Other clients see a closed file's data and length once its
//     background close has landed (the storage write and one transaction,
//     a few milliseconds), not at the moment close(2) returned: no
//     close-to-open consistency across clients. A mount that dies (kill
//     -9, a crash of its host) loses what it had not sent, as a crashed
//     kernel loses its page cache.
//   - Memory is bounded: at most wbMaxPending files wait for their
//     background close (the next close(2) waits for a slot), and only
//     files of at most wbMaxSize bytes are written back; larger ones are
//     bandwidth-bound anyway and close as without write-back.
const (
	wbMaxPending = 64
	wbMaxSize    = 1 << 20
)

// writeback tracks the background closes of one mount.
type writeback struct {
	slots chan struct{} // one per file between its write-back FLUSH and the end of its close

	mu      sync.Mutex
	idle    sync.Cond        // on mu: a background close ended
	pending map[uint64]int   // background closes under way, by inode (none: absent)
	errs    map[uint64]error // failed background closes not reported yet, by inode

	// Tests: beforeClose runs in a background close before it sends
	// anything; waiting runs when waitIno or drain is about to wait.
	beforeClose, waiting func()
}

func newWriteback() *writeback {
	w := &writeback{
		slots:   make(chan struct{}, wbMaxPending),
		pending: map[uint64]int{},
		errs:    map[uint64]error{},
	}
	w.idle.L = &w.mu
	return w
}

// reserve takes a slot for a file whose FLUSH returns without its data
// being sent, waiting while wbMaxPending files are under way; it fails
// only when cancel is closed first (an interrupted close(2)).
func (w *writeback) reserve(cancel <-chan struct{}) bool {
	select {
	case w.slots <- struct{}{}:
		return true
	case <-cancel:
		return false
	}
}

// unreserve gives back a slot reserve took.
func (w *writeback) unreserve() { <-w.slots }

// start records that file ino's close goes on in the background.
func (w *writeback) start(ino uint64) {
	w.mu.Lock()
	w.pending[ino]++
	w.mu.Unlock()
}

// done records the end of a background close of ino started with start,
// with its error, and frees its slot.
func (w *writeback) done(ino uint64, err error) {
	w.mu.Lock()
	if w.pending[ino]--; w.pending[ino] == 0 {
		delete(w.pending, ino)
	}
	if err != nil && w.errs[ino] == nil {
		w.errs[ino] = err
	}
	w.idle.Broadcast()
	w.mu.Unlock()
	w.unreserve()
}

// waitIno waits until no background close of ino is under way.
func (w *writeback) waitIno(ino uint64) {
	w.mu.Lock()
	if w.pending[ino] > 0 && w.waiting != nil {
		w.waiting()
	}
	for w.pending[ino] > 0 {
		w.idle.Wait()
	}
	w.mu.Unlock()
}

// drain waits until no background close is under way.
func (w *writeback) drain() {
	w.mu.Lock()
	if len(w.pending) > 0 && w.waiting != nil {
		w.waiting()
	}
	for len(w.pending) > 0 {
		w.idle.Wait()
	}
	w.mu.Unlock()
}

// takeErr returns (and forgets) the error of a failed background close of
// ino not reported yet.
func (w *writeback) takeErr(ino uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	err := w.errs[ino]
	delete(w.errs, ino)
	return err
}

// takeAnyErr returns (and forgets) the errors of every failed background
// close not reported yet: the first of them.
func (w *writeback) takeAnyErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first error
	for ino, err := range w.errs {
		if first == nil {
			first = err
		}
		delete(w.errs, ino)
	}
	return first
}

// The mount's side.

// wbDrain waits for every background close, if the mount writes back.
func (fs *FS) wbDrain() {
	if fs.wb != nil {
		fs.wb.drain()
	}
}

// wbSettle puts into meta what this mount wrote to ino (to every file,
// with ino 0) and closed: it waits for the background closes, and first
// sends the writes of handles whose FLUSH returned without sending them
// and whose RELEASE has not come. The kernel sends RELEASE after close(2)
// has returned, so a program's next open(2) can arrive before it; as that
// RELEASE may never come (a dup(2)ed descriptor keeps the file open), the
// writes are sent here rather than waited for. The handles keep their
// slots: their RELEASE still ends them in the background.
func (fs *FS) wbSettle(ino uint64) error {
	if fs.wb == nil {
		return nil
	}
	var flushed []*handle
	fs.mu.Lock()
	for i, hs := range fs.byIno {
		if ino != 0 && i != ino {
			continue
		}
		for h := range hs {
			if h.wbSlot && !h.closing {
				flushed = append(flushed, h)
			}
		}
	}
	fs.mu.Unlock()
	var err error
	for _, h := range flushed {
		// A handle whose RELEASE came meanwhile is closed (or about to be)
		// in the background, which the wait below covers.
		if ferr := h.flush(); ferr != nil && !errors.Is(ferr, os.ErrClosed) && err == nil {
			err = ferr
		}
	}
	if ino == 0 {
		fs.wb.drain()
	} else {
		fs.wb.waitIno(ino)
	}
	return err
}

// wbErr returns the unreported error of a background close of ino.
func (fs *FS) wbErr(ino uint64) error {
	if fs.wb == nil {
		return nil
	}
	return fs.wb.takeErr(ino)
}

// flushLater decides whether FLUSH of h may return without sending its
// data: the mount writes back, h was written through and is small, and a
// slot is free (waited for). A handle keeps the slot it got until its
// RELEASE hands it to the background close.
func (fs *FS) flushLater(cancel <-chan struct{}, h *handle) bool {
	if fs.wb == nil || !h.f.Writable() || h.f.Size() > wbMaxSize {
		return false
	}
	fs.mu.Lock()
	has := h.wbSlot
	fs.mu.Unlock()
	if has {
		return true
	}
	if !fs.wb.reserve(cancel) {
		return false
	}
	fs.mu.Lock()
	h.wbSlot = true
	fs.mu.Unlock()
	return true
}

// closeLater ends h in the background: its attribute changes, its data
// and the end of its write session; last says whether it was the last of
// the mount's handles of its inode. RELEASE took h out of the mount's
// handles and marked it closing (which it does only for a handle holding a
// slot); h stays in byIno, where it gives the length it wrote to this
// mount's reads of attributes, until its close has landed.
func (fs *FS) closeLater(h *handle, last bool) {
	fs.wb.start(h.ino)
	go func() {
		if fs.wb.beforeClose != nil {
			fs.wb.beforeClose()
		}
		err := fs.finish(h, last)
		if err != nil {
			fs.log.Warn().Err(err).Uint64("ino", h.ino).Msg("write-back: closing a file; its data may be lost (fsync reports this)")
		}
		fs.mu.Lock()
		fs.unlistLocked(h)
		fs.mu.Unlock()
		fs.wb.done(h.ino, err)
	}()
}

// unlistLocked takes h out of byIno.
func (fs *FS) unlistLocked(h *handle) {
	delete(fs.byIno[h.ino], h)
	if len(fs.byIno[h.ino]) == 0 {
		delete(fs.byIno, h.ino)
	}
}

// flushAll is FSYNCDIR with write-back: every background close, then the
// first unreported error of any.
func (fs *FS) flushAll() error {
	if fs.wb == nil {
		return nil
	}
	fs.wb.drain()
	return fs.wb.takeAnyErr()
}
