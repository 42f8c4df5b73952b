package kvtest_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
	"fff/server/kv/kvtest"
	"fff/server/kv/memkv"
)

// brokenDB is deliberately not serializable: each read takes the lock on
// its own and reads the latest committed value (no snapshot), and a commit
// applies its writes one at a time with no conflict check, pausing between
// them to widen every race. Each operation is still race-free for the Go
// memory model, so -race does not mask the transactional bugs.
type brokenDB struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newBroken() *brokenDB { return &brokenDB{m: map[string][]byte{}} }

func pause() { time.Sleep(100 * time.Microsecond) }

func (d *brokenDB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	g := txnkit.NewGuard(ctx, true)
	buf := txnkit.NewBuffer(brokenBase{d})
	if err := g.Finish(fn(g.Txn(buf))); err != nil {
		return err
	}
	return buf.Apply(
		func(begin, end []byte) error {
			for _, k := range d.keys(begin, end) {
				pause()
				d.mu.Lock()
				delete(d.m, k)
				d.mu.Unlock()
			}
			return nil
		},
		func(k, v []byte) error {
			pause()
			d.mu.Lock()
			d.m[string(k)] = v
			d.mu.Unlock()
			return nil
		},
		func(k []byte) error {
			pause()
			d.mu.Lock()
			delete(d.m, string(k))
			d.mu.Unlock()
			return nil
		},
	)
}

func (d *brokenDB) View(ctx context.Context, fn func(kv.ReadTxn) error) error {
	g := txnkit.NewGuard(ctx, false)
	return g.Finish(fn(g.ReadTxn(txnkit.Reader{Base: brokenBase{d}})))
}

func (d *brokenDB) Close() error { return nil }

func (d *brokenDB) keys(begin, end []byte) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys []string
	for k := range d.m {
		if k >= string(begin) && (len(end) == 0 || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

type brokenBase struct{ d *brokenDB }

func (b brokenBase) Get(key []byte) ([]byte, error) {
	pause()
	b.d.mu.Lock()
	defer b.d.mu.Unlock()
	return b.d.m[string(key)], nil
}

func (b brokenBase) Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	keys := b.d.keys(begin, end)
	if reverse {
		slices.Reverse(keys)
	}
	for _, k := range keys {
		v, _ := b.Get([]byte(k))
		if v != nil && !fn([]byte(k), v) {
			return nil
		}
	}
	return nil
}

// TestChecksFailOnBrokenBackend proves the suite can fail: every
// concurrency check reports a violation on brokenDB, and passes on memkv
// (the control) and, through kvtest.Run, on every real backend.
func TestChecksFailOnBrokenBackend(t *testing.T) {
	checks := []struct {
		name  string
		check func(context.Context, kv.DB) error
	}{
		{"LostUpdates", kvtest.CheckLostUpdates},
		{"WriteSkew", kvtest.CheckWriteSkew},
		{"DeleteSkew", kvtest.CheckDeleteSkew},
		{"PrefetchSkew", kvtest.CheckPrefetchSkew},
		{"Isolation", kvtest.CheckIsolation},
		{"RetriedBodies", kvtest.CheckRetriedBodies},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			err := c.check(ctx, newBroken())
			if err == nil {
				t.Fatalf("%s passed on a backend that is not serializable: the check cannot fail", c.name)
			}
			t.Logf("fails on the broken backend as it must: %.300v", err)
			if err := c.check(ctx, memkv.New()); err != nil {
				t.Fatalf("control: %s fails on memkv: %v", c.name, err)
			}
		})
	}
}

// The broken backend is otherwise a plausible store: it passes the
// non-concurrent checks, so the failures above are about serializability.
func TestBrokenBackendIsOtherwiseCorrect(t *testing.T) {
	ctx := context.Background()
	db := newBroken()
	err := db.Update(ctx, func(tx kv.Txn) error {
		if err := tx.Set([]byte("a"), []byte("1")); err != nil {
			return err
		}
		v, err := tx.Get([]byte("a"))
		if err != nil || string(v) != "1" {
			t.Errorf("read-your-writes: %q, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get([]byte("a"))
		if string(v) != "1" {
			t.Errorf("committed value: %q", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
