// Package kvtest is the conformance suite that every kv backend runs
// (bboltkv, memkv, etcdkv against a 3-member etcd cluster started by its
// test, and fdbkv against a real cluster with -tags fdb).
//
//	func TestConformance(t *testing.T) {
//		kvtest.Run(t, func(t *testing.T) kv.DB { return openFreshDB(t) })
//	}
//
// The concurrency cases are also exported as functions that return an
// error (CheckLostUpdates, CheckWriteSkew, CheckDeleteSkew, CheckIsolation,
// CheckRetriedBodies), so that the suite itself is tested: they must fail
// on a deliberately non-serializable backend (broken_test.go).
package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"fff/server/kv"
)

// Run runs the conformance suite. open must return a new, empty database
// each time it is called and must be safe to call from parallel subtests;
// Run closes every database it opened (open may register more cleanup,
// such as removing files, with t.Cleanup). The subtests run in parallel.
// In -short mode the one slow case (the 5 s transaction age limit) is
// skipped.
func Run(t *testing.T, open func(t *testing.T) kv.DB) {
	cases := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, db kv.DB)
	}{
		{"GetSetClear", testGetSetClear},
		{"Overwrite", testOverwrite},
		{"Range", testRange},
		{"ClearRange", testClearRange},
		{"ReadYourWrites", testReadYourWrites},
		{"ReturnedSlicesAreOwned", testOwnership},
		{"ErrorRollsBack", testErrorRollsBack},
		{"PanicRollsBack", testPanicRollsBack},
		{"Isolation", check(CheckIsolation)},
		{"LostUpdates", check(CheckLostUpdates)},
		{"WriteSkew", check(CheckWriteSkew)},
		{"DeleteSkew", check(CheckDeleteSkew)},
		{"PrefetchSkew", check(CheckPrefetchSkew)},
		{"Prefetch", testPrefetch},
		{"RetriedBodies", check(CheckRetriedBodies)},
		{"KeyLimit", testKeyLimit},
		{"ValueLimit", testValueLimit},
		{"TxnSizeLimit", testTxnSizeLimit},
		{"TxnAgeLimitUpdate", testTxnAgeLimitUpdate},
		{"TxnAgeLimitView", testTxnAgeLimitView},
		{"Context", testContext},
		{"Closed", testClosed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			db := open(t)
			t.Cleanup(func() { db.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			c.fn(t, ctx, db)
		})
	}
}

func check(fn func(context.Context, kv.DB) error) func(*testing.T, context.Context, kv.DB) {
	return func(t *testing.T, ctx context.Context, db kv.DB) {
		t.Helper()
		if err := fn(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
}

// --- helpers -------------------------------------------------------------

func update(t *testing.T, ctx context.Context, db kv.DB, fn func(kv.Txn) error) {
	t.Helper()
	if err := db.Update(ctx, fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func get(t *testing.T, ctx context.Context, db kv.DB, key string) []byte {
	t.Helper()
	var v []byte
	if err := db.View(ctx, func(tx kv.ReadTxn) error {
		var err error
		v, err = tx.Get([]byte(key))
		return err
	}); err != nil {
		t.Fatalf("View Get %q: %v", key, err)
	}
	return v
}

// dump returns everything in the database.
func dump(t *testing.T, ctx context.Context, db kv.DB) model {
	t.Helper()
	m := model{}
	if err := db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(nil, nil, kv.RangeOptions{})
		for _, p := range kvs {
			m[string(p.Key)] = p.Value
		}
		return err
	}); err != nil {
		t.Fatalf("View Range: %v", err)
	}
	return m
}

func mustErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func mustNil(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// model is the expected content of a database.
type model map[string][]byte

func (m model) clone() model {
	c := model{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (m model) clearRange(begin, end []byte) {
	for k := range m {
		if k >= string(begin) && (len(end) == 0 || k < string(end)) {
			delete(m, k)
		}
	}
}

// rangeOf is the oracle for Range.
func (m model) rangeOf(begin, end []byte, opts kv.RangeOptions) []kv.KeyValue {
	var keys []string
	for k := range m {
		if k >= string(begin) && (len(end) == 0 || k < string(end)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if opts.Reverse {
		slices.Reverse(keys)
	}
	if opts.Limit > 0 && len(keys) > opts.Limit {
		keys = keys[:opts.Limit]
	}
	var out []kv.KeyValue
	for _, k := range keys {
		out = append(out, kv.KeyValue{Key: []byte(k), Value: m[k]})
	}
	return out
}

func fmtKVs(kvs []kv.KeyValue) string {
	var b strings.Builder
	b.WriteString("[")
	for i, p := range kvs {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%q=%q", p.Key, p.Value)
	}
	b.WriteString("]")
	return b.String()
}

func equalKVs(a, b []kv.KeyValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func (m model) equal(o model) bool {
	if len(m) != len(o) {
		return false
	}
	for k, v := range m {
		w, ok := o[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// binaryKeys exercise ordering at the byte extremes.
var binaryKeys = [][]byte{
	{0x00}, {0x00, 0x00}, {0x00, 0x01}, {0x01}, []byte("a"), []byte("a\x00"),
	[]byte("a\xff"), []byte("ab"), []byte("b"), {0x7f}, {0x80}, {0xfe, 0xff},
	{0xff}, {0xff, 0x00}, {0xff, 0xff}, {0xff, 0xff, 0xff},
}

// bounds are range boundaries to try: every key, nil, and keys between.
var bounds = append([][]byte{nil, {0x00, 0x00, 0x00}, []byte("aa"), {0xff, 0xfe}}, binaryKeys...)

// --- cases ---------------------------------------------------------------

func testGetSetClear(t *testing.T, ctx context.Context, db kv.DB) {
	if v := get(t, ctx, db, "k"); v != nil {
		t.Fatalf("Get of absent key = %q, want nil", v)
	}
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("k"), []byte("v")); err != nil {
			return err
		}
		return tx.Set([]byte("empty"), []byte{})
	})
	if v := get(t, ctx, db, "k"); string(v) != "v" {
		t.Fatalf("Get k = %q, want v", v)
	}
	if v := get(t, ctx, db, "empty"); v == nil || len(v) != 0 {
		t.Fatalf("Get of a present empty value = %#v, want non-nil empty", v)
	}
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := tx.Clear([]byte("k")); err != nil {
			return err
		}
		return tx.Clear([]byte("never-set")) // clearing an absent key is fine
	})
	if v := get(t, ctx, db, "k"); v != nil {
		t.Fatalf("Get after Clear = %q, want nil", v)
	}
	if v := get(t, ctx, db, "empty"); v == nil {
		t.Fatal("unrelated key lost")
	}
	// Empty keys are refused by every operation that takes one key.
	err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set(nil, []byte("x")) })
	mustErr(t, err, kv.ErrEmptyKey, "Set(empty key)")
	err = db.Update(ctx, func(tx kv.Txn) error { return tx.Clear([]byte{}) })
	mustErr(t, err, kv.ErrEmptyKey, "Clear(empty key)")
	err = db.View(ctx, func(tx kv.ReadTxn) error { _, err := tx.Get(nil); return err })
	mustErr(t, err, kv.ErrEmptyKey, "Get(empty key)")
}

func testOverwrite(t *testing.T, ctx context.Context, db kv.DB) {
	update(t, ctx, db, func(tx kv.Txn) error {
		for _, v := range []string{"first", "a much longer second value", "3"} {
			if err := tx.Set([]byte("k"), []byte(v)); err != nil {
				return err
			}
		}
		v, err := tx.Get([]byte("k"))
		if err == nil && string(v) != "3" {
			err = fmt.Errorf("Get after overwrites in one txn = %q, want 3", v)
		}
		return err
	})
	if v := get(t, ctx, db, "k"); string(v) != "3" {
		t.Fatalf("Get = %q, want 3", v)
	}
	for _, v := range []string{"four-four", "5", ""} {
		update(t, ctx, db, func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte(v)) })
		if got := get(t, ctx, db, "k"); string(got) != v || got == nil {
			t.Fatalf("Get = %q, want %q", got, v)
		}
	}
	if m := dump(t, ctx, db); len(m) != 1 {
		t.Fatalf("overwrites left %d keys, want 1", len(m))
	}
}

// checkRanges compares Range on r against the oracle for every pair of
// bounds, limit and direction.
func checkRanges(r kv.ReadTxn, m model, what string) error {
	for _, b := range bounds {
		for _, e := range bounds {
			for _, limit := range []int{0, 1, 3} {
				for _, rev := range []bool{false, true} {
					opts := kv.RangeOptions{Limit: limit, Reverse: rev}
					got, err := r.Range(b, e, opts)
					if err != nil {
						return fmt.Errorf("%s: Range(%q, %q, %+v): %w", what, b, e, opts, err)
					}
					if want := m.rangeOf(b, e, opts); !equalKVs(got, want) {
						return fmt.Errorf("%s: Range(%q, %q, %+v) = %s, want %s", what, b, e, opts, fmtKVs(got), fmtKVs(want))
					}
				}
			}
		}
	}
	return nil
}

func testRange(t *testing.T, ctx context.Context, db kv.DB) {
	m := model{}
	update(t, ctx, db, func(tx kv.Txn) error {
		for i, k := range binaryKeys {
			v := fmt.Appendf(nil, "v%d", i)
			m[string(k)] = v
			if err := tx.Set(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	mustNil(t, db.View(ctx, func(tx kv.ReadTxn) error { return checkRanges(tx, m, "View") }), "ranges")
	// The same reads inside a read-write transaction.
	mustNil(t, db.Update(ctx, func(tx kv.Txn) error { return checkRanges(tx, m, "Update") }), "ranges in Update")

	mustNil(t, db.View(ctx, func(tx kv.ReadTxn) error {
		// Begin inclusive, end exclusive.
		kvs, err := tx.Range([]byte("a"), []byte("b"), kv.RangeOptions{})
		if err != nil {
			return err
		}
		if len(kvs) != 4 || string(kvs[0].Key) != "a" || string(kvs[3].Key) != "a\xff" {
			return fmt.Errorf("Range[a, b) = %s", fmtKVs(kvs))
		}
		// Reverse with a limit returns the last pairs of the range.
		kvs, err = tx.Range(nil, nil, kv.RangeOptions{Limit: 2, Reverse: true})
		if err != nil {
			return err
		}
		if len(kvs) != 2 || !bytes.Equal(kvs[0].Key, []byte{0xff, 0xff, 0xff}) || !bytes.Equal(kvs[1].Key, []byte{0xff, 0xff}) {
			return fmt.Errorf("Range reverse limit 2 = %s", fmtKVs(kvs))
		}
		// Empty ranges.
		for _, r := range [][2][]byte{{[]byte("b"), []byte("b")}, {[]byte("b"), []byte("a")}, {[]byte("c"), []byte("d")}} {
			if kvs, err := tx.Range(r[0], r[1], kv.RangeOptions{}); err != nil || len(kvs) != 0 {
				return fmt.Errorf("Range(%q, %q) = %s, %v; want empty", r[0], r[1], fmtKVs(kvs), err)
			}
		}
		// Prefix ranges, including a prefix with no successor.
		for _, p := range [][]byte{[]byte("a"), {0x00}, {0xff}, {0xff, 0xff}} {
			kvs, err := tx.Range(p, kv.PrefixEnd(p), kv.RangeOptions{})
			if err != nil {
				return err
			}
			want := 0
			for k := range m {
				if strings.HasPrefix(k, string(p)) {
					want++
				}
			}
			if len(kvs) != want {
				return fmt.Errorf("prefix %q: %d pairs, want %d: %s", p, len(kvs), want, fmtKVs(kvs))
			}
		}
		return nil
	}), "range details")
}

func testClearRange(t *testing.T, ctx context.Context, db kv.DB) {
	fill := func() model {
		m := model{}
		update(t, ctx, db, func(tx kv.Txn) error {
			if err := tx.ClearRange(nil, nil); err != nil {
				return err
			}
			for i, k := range binaryKeys {
				v := fmt.Appendf(nil, "v%d", i)
				m[string(k)] = v
				if err := tx.Set(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		return m
	}
	for _, r := range [][2][]byte{
		{[]byte("a"), []byte("b")},
		{{0x00}, {0x01}},
		{[]byte("a\x00"), []byte("ab")},
		{[]byte("b"), nil},          // to the end of the keyspace
		{nil, []byte("a")},          // from the start
		{[]byte("ab"), []byte("a")}, // inverted: no-op
		{[]byte("c"), []byte("d")},  // nothing in it
		{{0xff}, kv.PrefixEnd([]byte{0xff})},
		{nil, nil}, // everything
	} {
		m := fill()
		update(t, ctx, db, func(tx kv.Txn) error { return tx.ClearRange(r[0], r[1]) })
		m.clearRange(r[0], r[1])
		if got := dump(t, ctx, db); !got.equal(m) {
			t.Fatalf("after ClearRange(%q, %q): %d keys %v, want %d", r[0], r[1], len(got), got, len(m))
		}
	}
}

// testReadYourWrites runs random operations inside transactions and checks
// every read against a model of what the transaction has written so far.
func testReadYourWrites(t *testing.T, ctx context.Context, db kv.DB) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := append([][]byte{}, binaryKeys...)
	for i := 0; i < 10; i++ {
		keys = append(keys, fmt.Appendf(nil, "k%d", i))
	}
	pick := func() []byte { return keys[rng.IntN(len(keys))] }
	bound := func() []byte {
		if rng.IntN(6) == 0 {
			return nil
		}
		return bounds[rng.IntN(len(bounds))]
	}
	committed := model{}
	for round := 0; round < 8; round++ {
		// Precompute the operations so that a re-run of the body repeats
		// them exactly.
		type op struct {
			kind     int
			a, b     []byte
			opts     kv.RangeOptions
			checkAll bool
		}
		var ops []op
		for i := 0; i < 120; i++ {
			o := op{kind: rng.IntN(10), a: pick(), b: bound()}
			if o.kind == 5 {
				o.a = bound()
			}
			o.opts = kv.RangeOptions{Limit: rng.IntN(4), Reverse: rng.IntN(2) == 0}
			o.checkAll = i == 119
			ops = append(ops, o)
		}
		abort := round%4 == 3
		errAbort := errors.New("abort")
		var final model
		err := db.Update(ctx, func(tx kv.Txn) error {
			m := committed.clone()
			for i, o := range ops {
				switch o.kind {
				case 0, 1, 2:
					v := fmt.Appendf(nil, "r%d-%d", round, i)
					if i%7 == 0 {
						v = []byte{}
					}
					m[string(o.a)] = v
					if err := tx.Set(o.a, v); err != nil {
						return err
					}
				case 3:
					delete(m, string(o.a))
					if err := tx.Clear(o.a); err != nil {
						return err
					}
				case 4, 5:
					begin, end := o.a, o.b
					if len(end) > 0 && bytes.Compare(begin, end) >= 0 {
						begin, end = end, begin
					}
					m.clearRange(begin, end)
					if err := tx.ClearRange(begin, end); err != nil {
						return err
					}
				case 6, 7:
					v, err := tx.Get(o.a)
					if err != nil {
						return err
					}
					want, ok := m[string(o.a)]
					if ok != (v != nil) || !bytes.Equal(v, want) {
						return fmt.Errorf("round %d op %d: Get(%q) = %q, want %q (present %v)", round, i, o.a, v, want, ok)
					}
				default:
					got, err := tx.Range(o.a, o.b, o.opts)
					if err != nil {
						return err
					}
					if want := m.rangeOf(o.a, o.b, o.opts); !equalKVs(got, want) {
						return fmt.Errorf("round %d op %d: Range(%q, %q, %+v) = %s, want %s", round, i, o.a, o.b, o.opts, fmtKVs(got), fmtKVs(want))
					}
				}
				if o.checkAll {
					if err := checkRanges(tx, m, fmt.Sprintf("round %d op %d", round, i)); err != nil {
						return err
					}
				}
			}
			final = m
			if abort {
				return errAbort
			}
			return nil
		})
		if abort {
			mustErr(t, err, errAbort, "aborted round")
		} else {
			mustNil(t, err, fmt.Sprintf("round %d", round))
			committed = final
		}
		if got := dump(t, ctx, db); !got.equal(committed) {
			t.Fatalf("round %d: database holds %v, want %v", round, got, committed)
		}
	}
}

// testPrefetch: a Prefetch changes no Get's result, in a View or in an
// Update with its own writes, clears and cleared ranges, and skips keys
// that a Get refuses.
func testPrefetch(t *testing.T, ctx context.Context, db kv.DB) {
	update(t, ctx, db, func(tx kv.Txn) error {
		for _, k := range []string{"p/a", "p/b", "p/c", "p/d"} {
			if err := tx.Set([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return tx.Set([]byte("p/empty"), []byte{})
	})
	keys := func(ks ...string) [][]byte {
		out := make([][]byte, len(ks))
		for i, k := range ks {
			out[i] = []byte(k)
		}
		return out
	}
	all := keys("p/a", "p/b", "p/c", "p/d", "p/empty", "p/absent")
	expect := func(tx kv.ReadTxn, want model, what string) error {
		for _, k := range all {
			v, err := tx.Get(k)
			if err != nil {
				return fmt.Errorf("%s: Get %q: %w", what, k, err)
			}
			w, ok := want[string(k)]
			if ok != (v != nil) || !bytes.Equal(v, w) {
				return fmt.Errorf("%s: Get %q = %q (present %v), want %q (present %v)", what, k, v, v != nil, w, ok)
			}
		}
		return nil
	}
	m := model{"p/a": []byte("vp/a"), "p/b": []byte("vp/b"), "p/c": []byte("vp/c"), "p/d": []byte("vp/d"), "p/empty": []byte{}}
	mustNil(t, db.View(ctx, func(tx kv.ReadTxn) error {
		if err := kv.Prefetch(tx, append(all, []byte{}, make([]byte, kv.MaxKeySize+1), []byte("p/a"))...); err != nil {
			return err
		}
		if _, err := tx.Get([]byte{}); !errors.Is(err, kv.ErrEmptyKey) {
			return fmt.Errorf("Get of an empty key after a Prefetch of it: %v, want ErrEmptyKey", err)
		}
		return expect(tx, m, "View")
	}), "View with Prefetch")
	var seen model
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := kv.Prefetch(tx, keys("p/a", "p/b")...); err != nil {
			return err
		}
		if err := tx.Set([]byte("p/a"), []byte("new")); err != nil {
			return err
		}
		if err := tx.Clear([]byte("p/b")); err != nil {
			return err
		}
		if err := tx.ClearRange([]byte("p/c"), []byte("p/d")); err != nil {
			return err
		}
		if err := tx.Set([]byte("p/absent"), []byte("here")); err != nil {
			return err
		}
		// Prefetched before and after the writes: the writes win.
		if err := kv.Prefetch(tx, all...); err != nil {
			return err
		}
		seen = model{"p/a": []byte("new"), "p/d": []byte("vp/d"), "p/empty": []byte{}, "p/absent": []byte("here")}
		return expect(tx, seen, "Update")
	})
	if got := dump(t, ctx, db); !got.equal(seen) {
		t.Fatalf("after the Update with Prefetch: %v, want %v", got, seen)
	}
}

func testOwnership(t *testing.T, ctx context.Context, db kv.DB) {
	key, val := []byte("k1"), []byte("value")
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := tx.Set(key, val); err != nil {
			return err
		}
		// The caller may reuse its buffers as soon as Set returns.
		key[1], val[0] = '9', 'X'
		return tx.Set([]byte("k2"), []byte("other"))
	})
	if v := get(t, ctx, db, "k1"); string(v) != "value" {
		t.Fatalf("Get k1 = %q: Set kept a reference to the caller's buffer", v)
	}
	if v := get(t, ctx, db, "k9"); v != nil {
		t.Fatalf("k9 exists: Set kept a reference to the caller's key buffer")
	}
	mustNil(t, db.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("k1"))
		if err != nil {
			return err
		}
		copy(v, "XXXXX")
		kvs, err := tx.Range(nil, nil, kv.RangeOptions{})
		if err != nil {
			return err
		}
		for _, p := range kvs {
			copy(p.Key, "ZZ")
			copy(p.Value, "ZZZZZ")
		}
		return nil
	}), "scribbling on returned slices")
	if m := dump(t, ctx, db); string(m["k1"]) != "value" || string(m["k2"]) != "other" || len(m) != 2 {
		t.Fatalf("after scribbling on returned slices the database holds %v", m)
	}
	// Inside Update, returned slices must not alias the transaction's own
	// buffered writes either.
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("k3"), []byte("mine")); err != nil {
			return err
		}
		v, err := tx.Get([]byte("k3"))
		if err != nil {
			return err
		}
		copy(v, "XXXX")
		kvs, err := tx.Range([]byte("k3"), nil, kv.RangeOptions{})
		if err != nil {
			return err
		}
		for _, p := range kvs {
			copy(p.Value, "YYYY")
		}
		return nil
	})
	if v := get(t, ctx, db, "k3"); string(v) != "mine" {
		t.Fatalf("Get k3 = %q: a returned slice aliased the transaction's write", v)
	}
}

func seed(t *testing.T, ctx context.Context, db kv.DB) model {
	m := model{"a": []byte("1"), "b": []byte("2"), "c": []byte("3")}
	update(t, ctx, db, func(tx kv.Txn) error {
		for k, v := range m {
			if err := tx.Set([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	return m
}

func testErrorRollsBack(t *testing.T, ctx context.Context, db kv.DB) {
	m := seed(t, ctx, db)
	errBoom := errors.New("boom")
	err := db.Update(ctx, func(tx kv.Txn) error {
		for _, op := range []error{
			tx.Set([]byte("a"), []byte("changed")),
			tx.Set([]byte("new"), []byte("x")),
			tx.Clear([]byte("b")),
			tx.ClearRange([]byte("c"), nil),
		} {
			if op != nil {
				return op
			}
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	mustErr(t, err, errBoom, "failing body")
	if got := dump(t, ctx, db); !got.equal(m) {
		t.Fatalf("a failed Update left %v, want %v", got, m)
	}
	// A body that fails on a limit error and returns it also commits nothing.
	err = db.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set([]byte("a"), []byte("changed")); err != nil {
			return err
		}
		return tx.Set([]byte("big"), make([]byte, kv.MaxValueSize+1))
	})
	mustErr(t, err, kv.ErrValueTooLarge, "oversized value")
	if got := dump(t, ctx, db); !got.equal(m) {
		t.Fatalf("a failed Update left %v, want %v", got, m)
	}
	// A View's error comes back unchanged too.
	err = db.View(ctx, func(kv.ReadTxn) error { return errBoom })
	mustErr(t, err, errBoom, "failing View")
}

func testPanicRollsBack(t *testing.T, ctx context.Context, db kv.DB) {
	m := seed(t, ctx, db)
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the body's panic", r)
			}
		}()
		db.Update(ctx, func(tx kv.Txn) error {
			tx.Set([]byte("a"), []byte("changed"))
			tx.ClearRange(nil, nil)
			panic("boom")
		})
	}()
	if got := dump(t, ctx, db); !got.equal(m) {
		t.Fatalf("a panicking Update left %v, want %v", got, m)
	}
	// The database is still usable.
	update(t, ctx, db, func(tx kv.Txn) error { return tx.Set([]byte("d"), []byte("4")) })
	if v := get(t, ctx, db, "d"); string(v) != "4" {
		t.Fatalf("Get d = %q after a panic", v)
	}
}

func testKeyLimit(t *testing.T, ctx context.Context, db kv.DB) {
	max := bytes.Repeat([]byte{'k'}, kv.MaxKeySize)
	over := bytes.Repeat([]byte{'k'}, kv.MaxKeySize+1)
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := tx.Set(max, []byte("at the limit")); err != nil {
			return err
		}
		// A key error leaves the transaction usable; the bad op did nothing.
		for name, err := range map[string]error{
			"Set":            tx.Set(over, []byte("x")),
			"Clear":          tx.Clear(over),
			"ClearRange":     tx.ClearRange(over, nil),
			"ClearRange end": tx.ClearRange(nil, over),
			"Get":            func() error { _, err := tx.Get(over); return err }(),
			"Range":          func() error { _, err := tx.Range(over, nil, kv.RangeOptions{}); return err }(),
			"Range end":      func() error { _, err := tx.Range(nil, over, kv.RangeOptions{}); return err }(),
		} {
			if !errors.Is(err, kv.ErrKeyTooLarge) {
				return fmt.Errorf("%s with a %d-byte key: %v, want ErrKeyTooLarge", name, len(over), err)
			}
		}
		return tx.Set([]byte("after"), []byte("ok"))
	})
	if v := get(t, ctx, db, string(max)); string(v) != "at the limit" {
		t.Fatalf("key of MaxKeySize: Get = %q", v)
	}
	if v := get(t, ctx, db, "after"); string(v) != "ok" {
		t.Fatalf("write after a key error was lost: %q", v)
	}
	err := db.View(ctx, func(tx kv.ReadTxn) error { _, err := tx.Get(over); return err })
	mustErr(t, err, kv.ErrKeyTooLarge, "View Get of an oversized key")
	update(t, ctx, db, func(tx kv.Txn) error { return tx.Clear(max) })
	if v := get(t, ctx, db, string(max)); v != nil {
		t.Fatal("Clear of a MaxKeySize key did nothing")
	}
}

func testValueLimit(t *testing.T, ctx context.Context, db kv.DB) {
	max := bytes.Repeat([]byte{'v'}, kv.MaxValueSize)
	update(t, ctx, db, func(tx kv.Txn) error {
		if err := tx.Set([]byte("max"), max); err != nil {
			return err
		}
		err := tx.Set([]byte("over"), make([]byte, kv.MaxValueSize+1))
		if !errors.Is(err, kv.ErrValueTooLarge) {
			return fmt.Errorf("Set of a %d-byte value: %v, want ErrValueTooLarge", kv.MaxValueSize+1, err)
		}
		return nil // the transaction stays usable and commits the rest
	})
	if v := get(t, ctx, db, "max"); !bytes.Equal(v, max) {
		t.Fatalf("value of MaxValueSize came back with %d bytes", len(v))
	}
	if v := get(t, ctx, db, "over"); v != nil {
		t.Fatal("the oversized value was stored")
	}
}

// fillTxn sets values into tx until exactly total bytes are counted.
func fillTxn(tx kv.Txn, total int64) error {
	var used int64
	for i := 0; ; i++ {
		key := fmt.Appendf(nil, "big/%05d", i)
		room := total - used
		n := int64(kv.MaxValueSize)
		if full := kv.SetCost(len(key), kv.MaxValueSize); room < full {
			n = room - kv.SetCost(len(key), 0)
		}
		if n < 0 {
			return fmt.Errorf("cannot fill to %d exactly", total)
		}
		if err := tx.Set(key, make([]byte, n)); err != nil {
			return err
		}
		if used += kv.SetCost(len(key), int(n)); used == total {
			return nil
		}
	}
}

func testTxnSizeLimit(t *testing.T, ctx context.Context, db kv.DB) {
	// At the limit: commits.
	update(t, ctx, db, func(tx kv.Txn) error { return fillTxn(tx, kv.MaxTxnSize) })
	m := dump(t, ctx, db)
	var stored int64
	for k, v := range m {
		stored += kv.SetCost(len(k), len(v))
	}
	if stored != kv.MaxTxnSize {
		t.Fatalf("a transaction of exactly MaxTxnSize stored %d bytes (as counted), want %d", stored, kv.MaxTxnSize)
	}
	update(t, ctx, db, func(tx kv.Txn) error { return tx.ClearRange(nil, nil) })
	// One byte over: the Set that crosses fails, and so does Update even if
	// the body swallows the error. Nothing is committed.
	var crossErr error
	err := db.Update(ctx, func(tx kv.Txn) error {
		crossErr = fillTxn(tx, kv.MaxTxnSize+1)
		if err := tx.Set([]byte("after"), []byte("x")); !errors.Is(err, kv.ErrTxnTooLarge) {
			return fmt.Errorf("a Set after ErrTxnTooLarge: %v, want ErrTxnTooLarge (sticky)", err)
		}
		return nil
	})
	mustErr(t, crossErr, kv.ErrTxnTooLarge, "the Set crossing MaxTxnSize")
	mustErr(t, err, kv.ErrTxnTooLarge, "Update over MaxTxnSize")
	if m := dump(t, ctx, db); len(m) != 0 {
		t.Fatalf("an oversized transaction committed %d keys", len(m))
	}
}

func testTxnAgeLimitUpdate(t *testing.T, ctx context.Context, db kv.DB) {
	if testing.Short() {
		t.Skip("sleeps for kv.MaxTxnDuration")
	}
	var opErr error
	err := db.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set([]byte("early"), []byte("x")); err != nil {
			return err
		}
		time.Sleep(kv.MaxTxnDuration + 300*time.Millisecond)
		opErr = tx.Set([]byte("late"), []byte("x"))
		return nil // even if the body ignores it, nothing may commit
	})
	mustErr(t, opErr, kv.ErrTxnTooOld, "Set after MaxTxnDuration")
	mustErr(t, err, kv.ErrTxnTooOld, "Update running past MaxTxnDuration")
	if m := dump(t, ctx, db); len(m) != 0 {
		t.Fatalf("a transaction past its age limit committed %v", m)
	}
}

func testTxnAgeLimitView(t *testing.T, ctx context.Context, db kv.DB) {
	if testing.Short() {
		t.Skip("sleeps for kv.MaxTxnDuration")
	}
	var opErr error
	err := db.View(ctx, func(tx kv.ReadTxn) error {
		time.Sleep(kv.MaxTxnDuration + 300*time.Millisecond)
		_, opErr = tx.Get([]byte("k"))
		return nil
	})
	mustErr(t, opErr, kv.ErrTxnTooOld, "Get after MaxTxnDuration")
	mustErr(t, err, kv.ErrTxnTooOld, "View running past MaxTxnDuration")
}

func testContext(t *testing.T, ctx context.Context, db kv.DB) {
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err := db.Update(canceled, func(tx kv.Txn) error { ran = true; return nil })
	mustErr(t, err, context.Canceled, "Update with a canceled context")
	err = db.View(canceled, func(tx kv.ReadTxn) error { ran = true; return nil })
	mustErr(t, err, context.Canceled, "View with a canceled context")
	if ran {
		t.Fatal("a body ran with an already canceled context")
	}
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	err = db.Update(expired, func(tx kv.Txn) error { return nil })
	mustErr(t, err, context.DeadlineExceeded, "Update past its deadline")

	// Canceled while the body runs: operations fail, nothing commits.
	live, cancel3 := context.WithCancel(ctx)
	var opErr error
	err = db.Update(live, func(tx kv.Txn) error {
		if err := tx.Set([]byte("a"), []byte("x")); err != nil {
			return err
		}
		cancel3()
		opErr = tx.Set([]byte("b"), []byte("x"))
		return nil
	})
	mustErr(t, opErr, context.Canceled, "Set after cancel")
	mustErr(t, err, context.Canceled, "Update canceled mid-body")
	if m := dump(t, ctx, db); len(m) != 0 {
		t.Fatalf("a canceled Update committed %v", m)
	}
}

func testClosed(t *testing.T, ctx context.Context, db kv.DB) {
	update(t, ctx, db, func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte("v")) })
	mustNil(t, db.Close(), "Close")
	err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte("w")) })
	mustErr(t, err, kv.ErrClosed, "Update after Close")
	err = db.View(ctx, func(tx kv.ReadTxn) error { return nil })
	mustErr(t, err, kv.ErrClosed, "View after Close")
	mustNil(t, db.Close(), "second Close")
}
