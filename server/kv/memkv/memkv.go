// Package memkv is an in-memory kv.DB: one mutex, so trivially
// serializable. It passes the kv conformance suite and is meant for fast
// unit tests of code that runs over a kv.DB (in the spirit of
// hashicorp/raft's in-memory stores). Nothing is persisted.
//
// Update holds the write lock while its body runs, View a read lock. Keys
// are kept in one sorted slice: inserting a key in the middle of n keys
// costs O(n), fine for tests, not for production.
package memkv

import (
	"bytes"
	"context"
	"slices"
	"sort"
	"sync"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
)

type item struct{ key, val []byte }

// DB is an in-memory kv.DB.
type DB struct {
	life  txnkit.Lifecycle
	mu    sync.RWMutex
	items []item // sorted by key
}

var _ kv.DB = (*DB)(nil)

// New returns an empty in-memory database.
func New() *DB { return &DB{} }

// Update implements kv.DB. The body runs exactly once, under the write lock.
func (d *DB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	g := txnkit.NewGuard(ctx, true)
	buf := txnkit.NewBuffer(base{d})
	if err := g.Finish(fn(g.Txn(buf))); err != nil {
		return err
	}
	return buf.Apply(d.clearRange, d.set, d.del)
}

// View implements kv.DB.
func (d *DB) View(ctx context.Context, fn func(kv.ReadTxn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	g := txnkit.NewGuard(ctx, false)
	return g.Finish(fn(g.ReadTxn(txnkit.Reader{Base: base{d}})))
}

// Close implements kv.DB. It waits for running transactions.
func (d *DB) Close() error {
	d.life.Close()
	return nil
}

// search returns the index of the first item with key >= k.
func (d *DB) search(k []byte) int {
	return sort.Search(len(d.items), func(i int) bool { return bytes.Compare(d.items[i].key, k) >= 0 })
}

func (d *DB) set(k, v []byte) error {
	i := d.search(k)
	if i < len(d.items) && bytes.Equal(d.items[i].key, k) {
		d.items[i].val = v
		return nil
	}
	d.items = slices.Insert(d.items, i, item{key: k, val: v})
	return nil
}

func (d *DB) del(k []byte) error {
	i := d.search(k)
	if i < len(d.items) && bytes.Equal(d.items[i].key, k) {
		d.items = slices.Delete(d.items, i, i+1)
	}
	return nil
}

func (d *DB) clearRange(begin, end []byte) error {
	lo, hi := d.search(begin), len(d.items)
	if end != nil {
		hi = d.search(end)
	}
	if lo < hi {
		d.items = slices.Delete(d.items, lo, hi)
	}
	return nil
}

// base reads the committed items; the caller holds d.mu.
type base struct{ d *DB }

func (b base) Get(key []byte) ([]byte, error) {
	i := b.d.search(key)
	if i < len(b.d.items) && bytes.Equal(b.d.items[i].key, key) {
		return b.d.items[i].val, nil
	}
	return nil, nil
}

func (b base) Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	lo, hi := b.d.search(begin), len(b.d.items)
	if len(end) > 0 {
		hi = b.d.search(end)
	}
	if reverse {
		for i := hi - 1; i >= lo; i-- {
			if !fn(b.d.items[i].key, b.d.items[i].val) {
				break
			}
		}
		return nil
	}
	for i := lo; i < hi; i++ {
		if !fn(b.d.items[i].key, b.d.items[i].val) {
			break
		}
	}
	return nil
}
