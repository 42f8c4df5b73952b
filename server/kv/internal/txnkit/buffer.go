package txnkit

import (
	"bytes"
	"slices"
	"sort"
	"strings"

	"fff/server/kv"
)

// Base is the committed state a transaction reads through. Slices it hands
// out may be borrowed (valid only until the transaction ends); Buffer and
// Reader copy them before they reach the caller.
type Base interface {
	// Get returns the value of key, nil if absent (a present empty value
	// must be a non-nil empty slice).
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each pair with begin <= key < end in ascending (or,
	// with reverse, descending) key order until fn returns false. An empty
	// begin is the first key; a nil or empty end is no upper bound.
	Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) error
}

func clone(b []byte) []byte { return append([]byte{}, b...) }

// Reader is a kv.ReadTxn over a Base that copies everything it returns.
type Reader struct{ Base Base }

// prefetch passes keys to base if it prefetches.
func prefetch(base Base, keys [][]byte) error {
	if p, ok := base.(kv.Prefetcher); ok && len(keys) > 0 {
		return p.Prefetch(keys...)
	}
	return nil
}

// Prefetch implements kv.Prefetcher.
func (r Reader) Prefetch(keys ...[]byte) error { return prefetch(r.Base, keys) }

// Get implements kv.ReadTxn.
func (r Reader) Get(key []byte) ([]byte, error) {
	v, err := r.Base.Get(key)
	if err != nil || v == nil {
		return nil, err
	}
	return clone(v), nil
}

// Range implements kv.ReadTxn.
func (r Reader) Range(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	var out []kv.KeyValue
	err := r.Base.Scan(begin, end, opts.Reverse, func(k, v []byte) bool {
		out = append(out, kv.KeyValue{Key: clone(k), Value: clone(v)})
		return opts.Limit <= 0 || len(out) < opts.Limit
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

type entry struct {
	val []byte
	del bool
}

// span is a cleared range [begin, end); a nil end is no upper bound.
type span struct{ begin, end []byte }

// cmpEnd compares two range ends where nil is +infinity.
func cmpEnd(a, b []byte) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	return bytes.Compare(a, b)
}

// Buffer is a read-write transaction over a Base: writes stay in memory,
// reads see them (read-your-writes, Range included), and nothing reaches
// the Base unless Apply is called. A Buffer that is dropped leaves no
// trace, which is how a failed transaction body rolls back.
type Buffer struct {
	base    Base
	writes  map[string]entry
	sorted  []string // sorted keys of writes, rebuilt when dirty
	dirty   bool
	cleared []span // sorted by begin, disjoint
}

// NewBuffer starts an empty transaction over base.
func NewBuffer(base Base) *Buffer {
	return &Buffer{base: base, writes: map[string]entry{}}
}

func (b *Buffer) keys() []string {
	if b.dirty {
		b.sorted = b.sorted[:0]
		for k := range b.writes {
			b.sorted = append(b.sorted, k)
		}
		slices.Sort(b.sorted)
		b.dirty = false
	}
	return b.sorted
}

// covered reports whether a ClearRange of this transaction removed key.
func (b *Buffer) covered(key []byte) bool {
	// First span whose begin is > key; the candidate is the one before.
	i := sort.Search(len(b.cleared), func(i int) bool { return bytes.Compare(b.cleared[i].begin, key) > 0 })
	if i == 0 {
		return false
	}
	return cmpEnd(key, b.cleared[i-1].end) < 0
}

// Get implements kv.ReadTxn.
func (b *Buffer) Get(key []byte) ([]byte, error) {
	if e, ok := b.writes[string(key)]; ok {
		if e.del {
			return nil, nil
		}
		return clone(e.val), nil
	}
	if b.covered(key) {
		return nil, nil
	}
	return Reader{b.base}.Get(key)
}

// Prefetch implements kv.Prefetcher for the keys this transaction has not
// written or cleared (their Gets do not reach the Base).
func (b *Buffer) Prefetch(keys ...[]byte) error {
	base := keys[:0:0]
	for _, k := range keys {
		if _, ok := b.writes[string(k)]; !ok && !b.covered(k) {
			base = append(base, k)
		}
	}
	return prefetch(b.base, base)
}

// Range implements kv.ReadTxn: the Base's pairs merged with this
// transaction's writes and clears.
func (b *Buffer) Range(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	if len(end) == 0 {
		end = nil
	}
	keys := b.keys()
	lo := sort.SearchStrings(keys, string(begin))
	hi := len(keys)
	if end != nil {
		hi = sort.SearchStrings(keys, string(end))
	}
	var wk []string
	if lo < hi {
		wk = keys[lo:hi]
	}
	// i walks wk in the direction of the scan.
	i, step := 0, 1
	if opts.Reverse {
		i, step = len(wk)-1, -1
	}
	more := func() bool { return i >= 0 && i < len(wk) }
	before := func(w string, k []byte) bool { // w comes before k in scan order
		c := strings.Compare(w, string(k))
		if opts.Reverse {
			return c > 0
		}
		return c < 0
	}
	var out []kv.KeyValue
	full := func() bool { return opts.Limit > 0 && len(out) >= opts.Limit }
	emitWrite := func() {
		k := wk[i]
		i += step
		if e := b.writes[k]; !e.del {
			out = append(out, kv.KeyValue{Key: []byte(k), Value: clone(e.val)})
		}
	}
	err := b.base.Scan(begin, end, opts.Reverse, func(k, v []byte) bool {
		for more() && before(wk[i], k) {
			if emitWrite(); full() {
				return false
			}
		}
		if more() && wk[i] == string(k) {
			emitWrite()
			return !full()
		}
		if b.covered(k) {
			return true
		}
		out = append(out, kv.KeyValue{Key: clone(k), Value: clone(v)})
		return !full()
	})
	if err != nil {
		return nil, err
	}
	for more() && !full() {
		emitWrite()
	}
	return out, nil
}

// Set implements kv.Txn.
func (b *Buffer) Set(key, value []byte) error {
	if _, ok := b.writes[string(key)]; !ok {
		b.dirty = true
	}
	b.writes[string(key)] = entry{val: clone(value)}
	return nil
}

// Clear implements kv.Txn.
func (b *Buffer) Clear(key []byte) error {
	if _, ok := b.writes[string(key)]; !ok {
		b.dirty = true
	}
	b.writes[string(key)] = entry{del: true}
	return nil
}

// ClearRange implements kv.Txn.
func (b *Buffer) ClearRange(begin, end []byte) error {
	if len(end) == 0 {
		end = nil
	} else if bytes.Compare(begin, end) >= 0 {
		return nil
	}
	for k := range b.writes {
		if k >= string(begin) && (end == nil || k < string(end)) {
			delete(b.writes, k)
			b.dirty = true
		}
	}
	nb, ne := clone(begin), end
	if ne != nil {
		ne = clone(ne)
	}
	kept := b.cleared[:0:0]
	for _, s := range b.cleared {
		if (s.end != nil && bytes.Compare(s.end, nb) < 0) || (ne != nil && bytes.Compare(s.begin, ne) > 0) {
			kept = append(kept, s) // disjoint and not touching
			continue
		}
		if bytes.Compare(s.begin, nb) < 0 {
			nb = s.begin
		}
		if cmpEnd(s.end, ne) > 0 {
			ne = s.end
		}
	}
	kept = append(kept, span{nb, ne})
	slices.SortFunc(kept, func(x, y span) int { return bytes.Compare(x.begin, y.begin) })
	b.cleared = kept
	return nil
}

// Empty reports whether the transaction wrote nothing.
func (b *Buffer) Empty() bool { return len(b.writes) == 0 && len(b.cleared) == 0 }

// Apply hands the transaction's net effect to a backend: first every
// cleared range (end nil = no upper bound), then every set or deleted key in
// ascending order. Applying them in that order gives the state the
// transaction saw.
func (b *Buffer) Apply(clearRange func(begin, end []byte) error, set func(k, v []byte) error, del func(k []byte) error) error {
	for _, s := range b.cleared {
		if err := clearRange(s.begin, s.end); err != nil {
			return err
		}
	}
	for _, k := range b.keys() {
		e := b.writes[k]
		var err error
		if e.del {
			err = del([]byte(k))
		} else {
			err = set([]byte(k), e.val)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
