package kvtest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"fff/server/kv"
)

// The concurrency checks return an error describing the first violation
// they saw instead of failing a test, so that a test can also assert that
// they fail on a backend that is not serializable (see broken_test.go).
// Each expects an empty database and uses its own key prefix.

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func enc(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

// increment is a read-modify-write of a counter; it returns the value it
// wrote in the run that committed.
func increment(ctx context.Context, db kv.DB, key []byte, runs *atomic.Int64) (uint64, error) {
	var got uint64
	err := db.Update(ctx, func(tx kv.Txn) error {
		if runs != nil {
			runs.Add(1)
		}
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		n := u64(v) + 1
		got = n // assigned on every run: the committed run's value survives
		return tx.Set(key, enc(n))
	})
	return got, err
}

// CheckLostUpdates runs 8 goroutines that each increment one counter 25
// times by read-modify-write in Update. A serializable store ends at 200,
// and the values the committed runs wrote are exactly 1..200, each once
// (which also shows that results captured from the last run are the
// committed ones).
func CheckLostUpdates(ctx context.Context, db kv.DB) error {
	const workers, increments = 8, 25
	key := []byte("lost/counter")
	var (
		mu   sync.Mutex
		seen = map[uint64]int{}
		errs []error
		wg   sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments; i++ {
				n, err := increment(ctx, db, key, nil)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					seen[n]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("lost updates: %d increments failed: %w", len(errs), errors.Join(errs...))
	}
	var final uint64
	if err := db.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get(key)
		final = u64(v)
		return err
	}); err != nil {
		return fmt.Errorf("lost updates: reading the counter: %w", err)
	}
	if want := uint64(workers * increments); final != want {
		return fmt.Errorf("lost updates: counter is %d after %d committed increments", final, want)
	}
	for n := uint64(1); n <= workers*increments; n++ {
		if seen[n] != 1 {
			return fmt.Errorf("lost updates: value %d was returned by %d committed increments, want 1", n, seen[n])
		}
	}
	return nil
}

// CheckWriteSkew runs 60 rounds in which two transactions start together,
// each reads the range of its round's keys, and sets its own key only if
// the range is empty. Serializability allows exactly one of the two keys to
// exist afterwards; snapshot isolation without range conflicts allows both.
func CheckWriteSkew(ctx context.Context, db kv.DB) error {
	const rounds = 60
	for r := 0; r < rounds; r++ {
		prefix := fmt.Appendf(nil, "skew/%03d/", r)
		n, err := race(ctx, db, prefix, func(tx kv.Txn, key []byte, name string) error {
			kvs, err := tx.Range(prefix, kv.PrefixEnd(prefix), kv.RangeOptions{})
			if err != nil || len(kvs) > 0 {
				return err
			}
			return tx.Set(key, []byte(name))
		})
		if err != nil {
			return fmt.Errorf("write skew: round %d: %w", r, err)
		}
		if n != 1 {
			return fmt.Errorf("write skew: round %d: %d keys set, the invariant allows exactly 1", r, n)
		}
	}
	return nil
}

// CheckDeleteSkew is write skew through deletes (a phantom that leaves a
// range): in each of 60 rounds two keys exist under a prefix, and two
// transactions each read the whole range and delete "their" key only if
// the other one is still there. A serializable store keeps exactly one key;
// a store whose range reads do not notice a concurrent delete (etcd's
// per-key revisions, for one) ends with none.
func CheckDeleteSkew(ctx context.Context, db kv.DB) error {
	return removeSkew(ctx, db, "delete skew", "dskew", func(tx kv.Txn, prefix, _, _ []byte) (bool, error) {
		kvs, err := tx.Range(prefix, kv.PrefixEnd(prefix), kv.RangeOptions{})
		return len(kvs) == 2, err
	})
}

// CheckPrefetchSkew is write skew through prefetched Gets: in each of 60
// rounds two keys exist, and two transactions each prefetch both, Get
// both and clear "their" key only if both are still there. Exactly one key
// must be left: a Prefetch is a read like a Get, and its keys guard the
// commit.
func CheckPrefetchSkew(ctx context.Context, db kv.DB) error {
	return removeSkew(ctx, db, "prefetch skew", "pskew", func(tx kv.Txn, _, a, b []byte) (bool, error) {
		if err := kv.Prefetch(tx, a, b); err != nil {
			return false, err
		}
		for _, k := range [][]byte{a, b} {
			if v, err := tx.Get(k); err != nil || v == nil {
				return false, err
			}
		}
		return true, nil
	})
}

// removeSkew runs 60 rounds in which the keys a and b exist under a new
// prefix and two transactions, one per key, each remove their key if both
// says both keys are still there; exactly one key must be left.
func removeSkew(ctx context.Context, db kv.DB, what, name string, both func(tx kv.Txn, prefix, a, b []byte) (bool, error)) error {
	const rounds = 60
	for r := 0; r < rounds; r++ {
		prefix := fmt.Appendf(nil, "%s/%03d/", name, r)
		a, b := append(slices.Clone(prefix), 'a'), append(slices.Clone(prefix), 'b')
		if err := db.Update(ctx, func(tx kv.Txn) error {
			if err := tx.Set(a, []byte("a")); err != nil {
				return err
			}
			return tx.Set(b, []byte("b"))
		}); err != nil {
			return fmt.Errorf("%s: round %d: %w", what, r, err)
		}
		n, err := race(ctx, db, prefix, func(tx kv.Txn, key []byte, _ string) error {
			ok, err := both(tx, prefix, a, b)
			if err != nil || !ok {
				return err
			}
			return tx.Clear(key)
		})
		if err != nil {
			return fmt.Errorf("%s: round %d: %w", what, r, err)
		}
		if n != 1 {
			return fmt.Errorf("%s: round %d: %d keys left, the invariant allows exactly 1", what, r, n)
		}
	}
	return nil
}

// race runs body for the keys prefix+"a" and prefix+"b" in two Updates
// started together, then returns how many keys are left under prefix.
func race(ctx context.Context, db kv.DB, prefix []byte, body func(tx kv.Txn, key []byte, name string) error) (int, error) {
	start := make(chan struct{})
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, name := range []string{"a", "b"} {
		key := append(slices.Clone(prefix), name...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = db.Update(ctx, func(tx kv.Txn) error { return body(tx, key, name) })
		}()
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	var n int
	err := db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(prefix, kv.PrefixEnd(prefix), kv.RangeOptions{})
		n = len(kvs)
		return err
	})
	return n, err
}

// CheckIsolation runs a writer that sets 8 keys to the same round number
// in each of 40 Updates, while two readers repeatedly read them in Views
// (one by Range, one by Gets). A reader must always see all 8 keys with one
// value: never part of an Update.
func CheckIsolation(ctx context.Context, db kv.DB) error {
	const keys, rounds, minViews, maxExtra = 8, 40, 200, 5 * time.Second
	prefix := []byte("iso/")
	key := func(i int) []byte { return fmt.Appendf(nil, "iso/%02d", i) }
	write := func(round uint64) error {
		return db.Update(ctx, func(tx kv.Txn) error {
			for i := 0; i < keys; i++ {
				if err := tx.Set(key(i), enc(round)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := write(0); err != nil {
		return fmt.Errorf("isolation: %w", err)
	}
	var (
		done  atomic.Bool
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		views atomic.Int64
	)
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	check := func(vals [][]byte) error {
		if len(vals) != keys {
			return fmt.Errorf("isolation: a View saw %d of the %d keys", len(vals), keys)
		}
		for i, v := range vals {
			if v == nil || u64(v) != u64(vals[0]) {
				return fmt.Errorf("isolation: a View saw key %d at round %d and key 0 at round %d: part of an Update", i, u64(v), u64(vals[0]))
			}
		}
		return nil
	}
	readers := []func(tx kv.ReadTxn) ([][]byte, error){
		func(tx kv.ReadTxn) ([][]byte, error) {
			kvs, err := tx.Range(prefix, kv.PrefixEnd(prefix), kv.RangeOptions{})
			vals := make([][]byte, len(kvs))
			for i, p := range kvs {
				vals[i] = p.Value
			}
			return vals, err
		},
		func(tx kv.ReadTxn) ([][]byte, error) {
			vals := make([][]byte, keys)
			for i := range vals {
				v, err := tx.Get(key(i))
				if err != nil {
					return nil, err
				}
				vals[i] = v
			}
			return vals, nil
		},
	}
	for _, read := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				var vals [][]byte
				err := db.View(ctx, func(tx kv.ReadTxn) error {
					var err error
					vals, err = read(tx)
					return err
				})
				if err == nil {
					err = check(vals)
				}
				views.Add(1)
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	// At least rounds Updates, and more until the readers have made
	// minViews Views between them (within maxExtra): on a loaded machine
	// the readers may not run at all during the first rounds, and a check
	// that saw no Update in progress proves nothing.
	start := time.Now()
	for r := uint64(1); r <= rounds || (views.Load() < minViews && time.Since(start) < maxExtra); r++ {
		if err := write(r); err != nil {
			fail(fmt.Errorf("isolation: writer: %w", err))
			break
		}
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
	}
	done.Store(true)
	wg.Wait()
	return first
}

// CheckRetriedBodies runs 6 goroutines that each make 20 Updates; every
// third fails on purpose after writing. A body counts its runs in a
// captured variable, which may exceed the number of Updates (a backend may
// re-run bodies), but every successful Update must have taken effect
// exactly once and no failed one at all.
func CheckRetriedBodies(ctx context.Context, db kv.DB) error {
	const workers, calls = 6, 20
	errPlanned := errors.New("planned failure")
	var (
		runs    atomic.Int64
		wg      sync.WaitGroup
		mu      sync.Mutex
		okIDs   []string
		unknown []error
	)
	counter := []byte("retry/counter")
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				id := fmt.Sprintf("%02d-%02d", w, i)
				fails := i%3 == 2
				err := db.Update(ctx, func(tx kv.Txn) error {
					runs.Add(1)
					v, err := tx.Get(counter)
					if err != nil {
						return err
					}
					if err := tx.Set(counter, enc(u64(v)+1)); err != nil {
						return err
					}
					if err := tx.Set([]byte("retry/log/"+id), nil); err != nil {
						return err
					}
					if fails {
						return fmt.Errorf("update %s: %w", id, errPlanned)
					}
					return nil
				})
				mu.Lock()
				switch {
				case err == nil && !fails:
					okIDs = append(okIDs, id)
				case fails && errors.Is(err, errPlanned):
				default:
					unknown = append(unknown, fmt.Errorf("update %s: got error %v", id, err))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(unknown) > 0 {
		return fmt.Errorf("retried bodies: %w", errors.Join(unknown...))
	}
	if r := runs.Load(); r < workers*calls {
		return fmt.Errorf("retried bodies: bodies ran %d times for %d Updates", r, workers*calls)
	}
	var (
		final  uint64
		logged []string
	)
	err := db.View(ctx, func(tx kv.ReadTxn) error {
		v, err := tx.Get(counter)
		if err != nil {
			return err
		}
		final = u64(v)
		kvs, err := tx.Range([]byte("retry/log/"), kv.PrefixEnd([]byte("retry/log/")), kv.RangeOptions{})
		logged = logged[:0]
		for _, p := range kvs {
			logged = append(logged, string(p.Key[len("retry/log/"):]))
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("retried bodies: %w", err)
	}
	if final != uint64(len(okIDs)) {
		return fmt.Errorf("retried bodies: counter is %d after %d successful Updates", final, len(okIDs))
	}
	sort.Strings(okIDs)
	if fmt.Sprint(logged) != fmt.Sprint(okIDs) {
		return fmt.Errorf("retried bodies: committed log %v, successful Updates %v", logged, okIDs)
	}
	return nil
}
