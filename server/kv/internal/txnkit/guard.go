// Package txnkit holds what the kv backends share: the limit, deadline and
// context checks every backend applies identically (Guard), a write buffer
// that gives read-your-writes and all-or-nothing commits over a committed
// snapshot (Buffer), and open/close bookkeeping (Lifecycle).
package txnkit

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"fff/server/kv"
)

// Guard checks one attempt of one transaction against the kv limits, the
// attempt's age and the caller's context. Create a new Guard for every run
// of a transaction body.
type Guard struct {
	ctx      context.Context
	write    bool
	deadline time.Time
	size     int64
	sticky   error
}

// NewGuard starts the clock of a transaction attempt. write says whether the
// attempt is read-write (its reads and writes are then counted against
// kv.MaxTxnSize).
func NewGuard(ctx context.Context, write bool) *Guard {
	return &Guard{ctx: ctx, write: write, deadline: time.Now().Add(kv.MaxTxnDuration)}
}

// Size is the cost counted so far.
func (g *Guard) Size() int64 { return g.size }

// CtxErr returns a kv error wrapping ctx.Err(), or nil if ctx is live.
func CtxErr(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: transaction aborted: %w", err)
	}
	return nil
}

// live reports why no further operation may run in this attempt.
func (g *Guard) live() error {
	if g.sticky != nil {
		return g.sticky
	}
	if err := CtxErr(g.ctx); err != nil {
		return err
	}
	if time.Now().After(g.deadline) {
		g.sticky = fmt.Errorf("%w: attempt ran longer than %v", kv.ErrTxnTooOld, kv.MaxTxnDuration)
		return g.sticky
	}
	return nil
}

func (g *Guard) charge(n int64) error {
	if !g.write {
		return nil
	}
	if g.size+n > kv.MaxTxnSize {
		g.sticky = fmt.Errorf("%w: %d bytes counted, operation of %d would pass the %d-byte limit",
			kv.ErrTxnTooLarge, g.size, n, kv.MaxTxnSize)
		return g.sticky
	}
	g.size += n
	return nil
}

// Finish decides the outcome of an attempt whose body returned bodyErr:
// the body's own error first, then a sticky limit error, then the context,
// then the age limit. A nil result means the attempt may commit.
func (g *Guard) Finish(bodyErr error) error {
	if bodyErr != nil {
		return bodyErr
	}
	return g.live()
}

// CheckKey validates a single key.
func CheckKey(key []byte) error {
	if len(key) == 0 {
		return kv.ErrEmptyKey
	}
	if len(key) > kv.MaxKeySize {
		return fmt.Errorf("%w: %d bytes, max %d", kv.ErrKeyTooLarge, len(key), kv.MaxKeySize)
	}
	return nil
}

// checkBound validates a range boundary (which may be empty).
func checkBound(key []byte) error {
	if len(key) > kv.MaxKeySize {
		return fmt.Errorf("%w: range bound of %d bytes, max %d", kv.ErrKeyTooLarge, len(key), kv.MaxKeySize)
	}
	return nil
}

// EmptyRange reports whether [begin, end) holds no key (an empty end means
// no upper bound).
func EmptyRange(begin, end []byte) bool {
	return len(end) > 0 && bytes.Compare(begin, end) >= 0
}

// ReadTxn wraps a backend's raw reads with the checks.
func (g *Guard) ReadTxn(raw kv.ReadTxn) kv.ReadTxn { return &guardedRead{g: g, raw: raw} }

// Txn wraps a backend's raw transaction with the checks.
func (g *Guard) Txn(raw kv.Txn) kv.Txn { return &guardedTxn{guardedRead{g: g, raw: raw}, raw} }

type guardedRead struct {
	g   *Guard
	raw kv.ReadTxn
}

func (t *guardedRead) Get(key []byte) ([]byte, error) {
	if err := t.g.live(); err != nil {
		return nil, err
	}
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	if err := t.g.charge(kv.GetCost(len(key))); err != nil {
		return nil, err
	}
	return t.raw.Get(key)
}

// Prefetch implements kv.Prefetcher: it charges nothing (the Gets that
// follow do) and passes the valid keys on.
func (t *guardedRead) Prefetch(keys ...[]byte) error {
	if err := t.g.live(); err != nil {
		return err
	}
	valid := keys[:0:0]
	for _, k := range keys {
		if CheckKey(k) == nil {
			valid = append(valid, k)
		}
	}
	if len(valid) == 0 {
		return nil
	}
	return kv.Prefetch(t.raw, valid...)
}

func (t *guardedRead) Range(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	if err := t.g.live(); err != nil {
		return nil, err
	}
	if err := checkBound(begin); err != nil {
		return nil, err
	}
	if err := checkBound(end); err != nil {
		return nil, err
	}
	if EmptyRange(begin, end) {
		return nil, nil
	}
	if opts.Limit < 0 {
		opts.Limit = 0
	}
	kvs, err := t.raw.Range(begin, end, opts)
	if err != nil {
		return nil, err
	}
	endLen := len(end)
	if opts.Limit > 0 && len(kvs) == opts.Limit {
		if n := len(kvs[len(kvs)-1].Key) + 1; n > endLen {
			endLen = n
		}
	}
	if err := t.g.charge(kv.RangeCost(len(begin), endLen)); err != nil {
		return nil, err
	}
	return kvs, nil
}

type guardedTxn struct {
	guardedRead
	raw kv.Txn
}

func (t *guardedTxn) Set(key, value []byte) error {
	if err := t.g.live(); err != nil {
		return err
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	if len(value) > kv.MaxValueSize {
		return fmt.Errorf("%w: %d bytes, max %d", kv.ErrValueTooLarge, len(value), kv.MaxValueSize)
	}
	if err := t.g.charge(kv.SetCost(len(key), len(value))); err != nil {
		return err
	}
	return t.raw.Set(key, value)
}

func (t *guardedTxn) Clear(key []byte) error {
	if err := t.g.live(); err != nil {
		return err
	}
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := t.g.charge(kv.ClearCost(len(key))); err != nil {
		return err
	}
	return t.raw.Clear(key)
}

func (t *guardedTxn) ClearRange(begin, end []byte) error {
	if err := t.g.live(); err != nil {
		return err
	}
	if err := checkBound(begin); err != nil {
		return err
	}
	if err := checkBound(end); err != nil {
		return err
	}
	if EmptyRange(begin, end) {
		return nil
	}
	if err := t.g.charge(kv.ClearRangeCost(len(begin), len(end))); err != nil {
		return err
	}
	return t.raw.ClearRange(begin, end)
}
