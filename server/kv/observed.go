package kv

import (
	"context"
	"time"
)

// TxnInfo describes one finished transaction (Observed).
type TxnInfo struct {
	Update bool // Update (or UpdateReserved); false: View
	// Attempts is how many times the body ran: more than one means the
	// engine retried after conflicts (or, on bbolt, a shared batch failed).
	Attempts int
	Duration time.Duration
	Err      error
}

// Observed wraps a DB and reports every transaction to observe (fffd's
// metrics: transactions, conflicts and retries, latency). It passes the
// engine's own transactions to the bodies, so optional interfaces of
// transactions (Prefetcher) keep working, and it is Reserved when the
// engine is.
func Observed(db DB, observe func(*TxnInfo)) DB {
	o := &observed{db: db, observe: observe}
	if r, ok := db.(Reserved); ok {
		return &observedReserved{observed: o, r: r}
	}
	return o
}

type observed struct {
	db      DB
	observe func(*TxnInfo)
}

func (o *observed) Update(ctx context.Context, fn func(Txn) error) error {
	return o.run(true, func(count func()) error {
		return o.db.Update(ctx, func(tx Txn) error { count(); return fn(tx) })
	})
}

func (o *observed) View(ctx context.Context, fn func(ReadTxn) error) error {
	return o.run(false, func(count func()) error {
		return o.db.View(ctx, func(tx ReadTxn) error { count(); return fn(tx) })
	})
}

func (o *observed) Close() error { return o.db.Close() }

// run times a transaction and counts its body's runs. Bodies of one
// transaction run one after another, never at once.
func (o *observed) run(update bool, txn func(count func()) error) error {
	info := TxnInfo{Update: update}
	start := time.Now()
	err := txn(func() { info.Attempts++ })
	info.Duration, info.Err = time.Since(start), err
	o.observe(&info)
	return err
}

type observedReserved struct {
	*observed
	r Reserved
}

func (o *observedReserved) UpdateReserved(ctx context.Context, fn func(Txn) error) error {
	return o.run(true, func(count func()) error {
		return o.r.UpdateReserved(ctx, func(tx Txn) error { count(); return fn(tx) })
	})
}
