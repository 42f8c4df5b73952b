package fusefs

import (
	"context"
	"math"
	"sync"
	"time"

	"fff/internal/proto"
)

// Attribute changes of files open for writing, applied in the background.
//
// cp -a, tar and rsync set a file's times and mode (and a root caller's
// ownership) after writing it and before closing it. Each SETATTR is a
// meta transaction with an fsync, and answered synchronously each costs
// the program a transaction while the file's data is on its way to
// storage. So, with an admin token (root in the cluster, where meta applies
// mode, owner and times exactly as asked, which the answer below relies
// on), a SETATTR that changes no size on a file this mount has open for
// writing is answered at once with the attributes it gives, and sent to
// meta in the background: in order per file, changes queued behind a call
// under way merged into one call. FLUSH, FSYNC and RELEASE of the file
// wait for them and return their first error. Every read of attributes
// from meta (GETATTR, LOOKUP, READDIRPLUS, OPEN) first waits for the
// changes queued before it began (settle), so this mount never reports
// attributes older than its own answers; in a copy the queue has drained by
// then (FLUSH waited), so reads do not wait. Other clients see the changes
// once meta has them, about one transaction later, as they see the data.

// attrQueue holds the background attribute changes of every file.
type attrQueue struct {
	set func(ctx context.Context, ino uint64, a proto.SetAttr) (proto.Inode, error)

	mu      sync.Mutex
	settled sync.Cond // on mu: a call ended
	seq     uint64    // numbers the changes in order of arrival
	inos    map[uint64]*inoAttrs
}

// inoAttrs is one file's queue.
type inoAttrs struct {
	known    proto.Inode   // meta's latest answer to a call of this queue (Ino 0: none)
	inflight *attrChange   // the call under way
	queue    []attrChange  // not sent yet, oldest first
	idle     chan struct{} // closed when the sender stops; nil while idle
	err      error         // first failure not yet returned by wait
}

// attrChange is one SETATTR (or several merged) and what undoes its side
// effects on the file's writers if meta refuses it (KeepTimes).
type attrChange struct {
	a    proto.SetAttr
	undo []func()
	seq  uint64 // of the oldest change merged into it
}

func newAttrQueue(set func(ctx context.Context, ino uint64, a proto.SetAttr) (proto.Inode, error)) *attrQueue {
	q := &attrQueue{set: set, inos: map[uint64]*inoAttrs{}}
	q.settled.L = &q.mu
	return q
}

// add queues change a of file ino and starts sending if nothing is under
// way.
func (q *attrQueue) add(ino uint64, a proto.SetAttr, undo []func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e := q.inos[ino]
	if e == nil {
		e = &inoAttrs{}
		q.inos[ino] = e
	}
	q.seq++
	if k := len(e.queue) - 1; k >= 0 && mergeable(e.queue[k].a, a) {
		e.queue[k].a = mergeAttr(e.queue[k].a, a)
		e.queue[k].undo = append(e.queue[k].undo, undo...)
	} else {
		e.queue = append(e.queue, attrChange{a: a, undo: undo, seq: q.seq})
	}
	if e.idle == nil {
		e.idle = make(chan struct{})
		go q.run(ino, e)
	}
}

// run sends e's changes until none is left.
func (q *attrQueue) run(ino uint64, e *inoAttrs) {
	for {
		q.mu.Lock()
		if len(e.queue) == 0 {
			e.inflight = nil
			close(e.idle)
			e.idle = nil
			q.mu.Unlock()
			return
		}
		c := e.queue[0]
		e.queue = e.queue[1:]
		e.inflight = &c
		q.mu.Unlock()
		n, err := q.set(context.Background(), ino, c.a)
		if err != nil {
			for _, u := range c.undo {
				u()
			}
		}
		q.mu.Lock()
		if err != nil && e.err == nil {
			e.err = err
		} else if err == nil {
			e.known = n
		}
		e.inflight = nil
		q.settled.Broadcast()
		q.mu.Unlock()
	}
}

// settle waits until every change queued before it was called is with meta
// (or refused): a read from meta that starts after it sees them.
func (q *attrQueue) settle() {
	q.mu.Lock()
	defer q.mu.Unlock()
	upto := q.seq
	for q.oldestLocked() <= upto {
		q.settled.Wait()
	}
}

// oldestLocked is the number of the oldest change not yet answered by meta.
func (q *attrQueue) oldestLocked() uint64 {
	oldest := uint64(math.MaxUint64)
	for _, e := range q.inos {
		if e.inflight != nil {
			oldest = min(oldest, e.inflight.seq)
		}
		if len(e.queue) > 0 {
			oldest = min(oldest, e.queue[0].seq)
		}
	}
	return oldest
}

// wait waits until file ino's changes are with meta and returns the first
// error since the last wait.
func (q *attrQueue) wait(ino uint64) error {
	q.mu.Lock()
	e := q.inos[ino]
	if e == nil {
		q.mu.Unlock()
		return nil
	}
	for e.idle != nil {
		idle := e.idle
		q.mu.Unlock()
		<-idle
		q.mu.Lock()
	}
	err := e.err
	e.err = nil
	q.mu.Unlock()
	return err
}

// forget drops file ino's queue once it is idle (the file has no writers
// left in this mount); it returns the error wait would.
func (q *attrQueue) forget(ino uint64) error {
	err := q.wait(ino)
	q.mu.Lock()
	if e := q.inos[ino]; e != nil && e.idle == nil && len(e.queue) == 0 {
		delete(q.inos, ino)
	}
	q.mu.Unlock()
	return err
}

// base returns what this mount knows of a file's attributes, for the
// answer to a change queued next: meta's answer to the queue's latest call
// or from (the attributes a writer of the file has), whichever meta gave
// later, with the changes meta has not answered yet applied.
func (q *attrQueue) base(from proto.Inode) proto.Inode {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := from
	e := q.inos[from.Ino]
	if e == nil {
		return n
	}
	if e.known.Ino != 0 && e.known.Ctime >= from.Ctime {
		n = e.known
		n.Size = max(n.Size, from.Size)
	}
	now := time.Now().UnixNano()
	if e.inflight != nil {
		applyAttr(&n, e.inflight.a, now)
	}
	for _, c := range e.queue {
		applyAttr(&n, c.a, now)
	}
	return n
}

// mergeable reports whether b, queued after a, can be sent in one call
// with it: meta applies the mode before the owner, and an owner change
// clears setuid and setgid, so a mode or owner change after an owner
// change must stay a call of its own.
func mergeable(a, b proto.SetAttr) bool {
	owner := proto.SetUID | proto.SetGID
	return a.Valid&owner == 0 || b.Valid&(owner|proto.SetMode) == 0
}

// mergeAttr merges b, queued after a, into a: b's fields win.
func mergeAttr(a, b proto.SetAttr) proto.SetAttr {
	if b.Valid&proto.SetMode != 0 {
		a.Mode = b.Mode
	}
	if b.Valid&proto.SetUID != 0 {
		a.UID = b.UID
	}
	if b.Valid&proto.SetGID != 0 {
		a.GID = b.GID
	}
	if b.Valid&(proto.SetAtime|proto.SetAtimeNow) != 0 {
		a.Valid &^= proto.SetAtime | proto.SetAtimeNow
		a.Atime = b.Atime
	}
	if b.Valid&(proto.SetMtime|proto.SetMtimeNow) != 0 {
		a.Valid &^= proto.SetMtime | proto.SetMtimeNow
		a.Mtime = b.Mtime
	}
	a.Valid |= b.Valid
	return a
}

// applyAttr applies a to n as meta does for root (server/meta SetAttr),
// with now as the server's clock.
func applyAttr(n *proto.Inode, a proto.SetAttr, now int64) {
	if a.Valid&proto.SetMode != 0 {
		n.Mode = a.Mode & proto.ModeMask
	}
	a.ApplyOwner(n)
	a.ApplyTimes(n, now)
}
