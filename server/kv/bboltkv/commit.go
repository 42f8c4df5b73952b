package bboltkv

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
)

// The group commit (see the package documentation): a queue of Updates and
// one leader at a time that commits the oldest of them.

// call is one Update waiting for, or taking part in, a commit.
type call struct {
	ctx     context.Context
	fn      func(kv.Txn) error
	lead    chan bool // true: lead the next commit; false: the result is set
	arrived time.Time // with MaxBatchDelay only

	// The outcome of the body's last run, set by the leader before it
	// sends on lead (the channel orders the writes before the reads).
	err      error
	panicked bool
	panicVal any
	buf      *txnkit.Buffer // the writes of a run that succeeded
}

// Update implements kv.DB: it joins the queue and either leads the next
// commit at once (no commit under way) or waits for a leader to commit it
// or to hand it the lead.
func (d *DB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	c := &call{ctx: ctx, fn: fn, lead: make(chan bool, 1)}
	if d.delay > 0 {
		c.arrived = time.Now()
	}
	d.mu.Lock()
	d.queue = append(d.queue, c)
	if d.full != nil && len(d.queue) >= d.maxBatch {
		close(d.full)
		d.full = nil
	}
	leader := !d.leading
	d.leading = true
	d.mu.Unlock()
	// Not waiting on ctx here: once queued, the Update may be committed
	// at any moment, and returning early would hide whether it was. A
	// canceled ctx fails the body when its turn comes.
	if leader || <-c.lead {
		d.commitNext()
	}
	if c.panicked {
		panic(c.panicVal)
	}
	return c.err
}

// commitNext commits the oldest queued Updates, the caller's own first
// among them, then hands the lead to the oldest Update still queued.
func (d *DB) commitNext() {
	if d.delay > 0 {
		d.waitForCompany()
	}
	d.mu.Lock()
	n := min(len(d.queue), d.maxBatch)
	batch := make([]*call, n)
	copy(batch, d.queue)
	rest := copy(d.queue, d.queue[n:])
	clear(d.queue[rest:])
	d.queue = d.queue[:rest]
	d.mu.Unlock()

	d.run(batch)

	d.mu.Lock()
	var next *call
	if len(d.queue) > 0 {
		next = d.queue[0]
	} else {
		d.leading = false
	}
	d.mu.Unlock()
	if next != nil {
		next.lead <- true
	}
	for _, c := range batch[1:] {
		c.lead <- false
	}
}

// waitForCompany lets others join the leader's batch until MaxBatchDelay
// after its oldest member arrived (as bbolt's timer, which starts with a
// batch's first member: one that queued behind a long commit waits no
// more) or until the batch is full.
func (d *DB) waitForCompany() {
	d.mu.Lock()
	wait := time.Until(d.queue[0].arrived.Add(d.delay))
	if len(d.queue) >= d.maxBatch || wait <= 0 {
		d.mu.Unlock()
		return
	}
	full := make(chan struct{})
	d.full = full
	d.mu.Unlock()
	if d.hooks.wait != nil {
		d.hooks.wait()
	}
	t := time.NewTimer(wait)
	select {
	case <-t.C:
	case <-full:
	}
	t.Stop()
	d.mu.Lock()
	if d.full == full {
		d.full = nil
	}
	d.mu.Unlock()
}

// run runs the bodies of batch in one bbolt transaction, in order, and
// commits it; it sets every member's result. If bbolt refuses a member's
// writes, the transaction is rolled back, that member fails, and the rest
// run again.
func (d *DB) run(batch []*call) {
	live := batch
	for {
		tx, err := d.bolt.Begin(true)
		if err != nil {
			for _, c := range live {
				c.fail(mapErr(err))
			}
			return
		}
		b := tx.Bucket(bucketName)
		wrote := false
		bad := -1
		for i, c := range live {
			c.runBody(b)
			if c.buf == nil || c.buf.Empty() {
				continue
			}
			wrote = true
			if err := d.apply(i, b, c.buf); err != nil {
				c.fail(fmt.Errorf("bboltkv: applying a transaction's writes: %w", err))
				bad = i
				break
			}
		}
		if bad >= 0 {
			_ = tx.Rollback()
			live = append(live[:bad:bad], live[bad+1:]...)
			continue
		}
		if d.hooks.commit != nil {
			if err := d.hooks.commit(len(live), wrote); err != nil {
				_ = tx.Rollback()
				for _, c := range live {
					c.fail(err)
				}
				return
			}
		}
		if !wrote {
			// Nothing to make durable: no fsync.
			_ = tx.Rollback()
			return
		}
		if err := tx.Commit(); err != nil {
			// Failed bodies get it too: their errors may rest on writes
			// of earlier members that were never committed.
			for _, c := range live {
				c.fail(mapErr(err))
			}
		}
		return
	}
}

// runBody runs c's body once over b, recording its outcome: c.buf holds
// its writes if it succeeded.
func (c *call) runBody(b *bolt.Bucket) {
	c.err, c.panicked, c.panicVal, c.buf = nil, false, nil, nil
	if err := txnkit.CtxErr(c.ctx); err != nil {
		c.err = err
		return
	}
	defer func() {
		if r := recover(); r != nil {
			c.panicked, c.panicVal, c.buf = true, r, nil
		}
	}()
	g := txnkit.NewGuard(c.ctx, true)
	buf := txnkit.NewBuffer(base{b})
	if err := g.Finish(c.fn(g.Txn(buf))); err != nil {
		c.err = err
		return
	}
	c.buf = buf
}

// fail replaces c's outcome by err, unless its body panicked (the panic is
// what its caller must see).
func (c *call) fail(err error) {
	if !c.panicked {
		c.err = err
	}
	c.buf = nil
}

// apply hands member i's writes to the bbolt transaction of b.
func (d *DB) apply(i int, b *bolt.Bucket, buf *txnkit.Buffer) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked: %v", r)
		}
	}()
	if d.hooks.apply != nil {
		if err := d.hooks.apply(i); err != nil {
			return err
		}
	}
	return buf.Apply(
		func(begin, end []byte) error { return clearRange(b, begin, end) },
		b.Put,
		b.Delete,
	)
}
