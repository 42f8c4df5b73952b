package bboltkv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fff/server/kv"
	"fff/server/kv/kvtest"
)

func openTest(t *testing.T, opts *Options) *DB {
	t.Helper()
	if opts == nil {
		opts = &Options{NoSync: true}
	}
	db, err := Open(filepath.Join(t.TempDir(), "kv.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.DB { return openTest(t, nil) })
}

func TestDefaultsAreDurable(t *testing.T) {
	db := openTest(t, &Options{})
	if db.bolt.NoSync {
		t.Fatal("NoSync is on by default")
	}
	if db.bolt.MaxBatchDelay != DefaultMaxBatchDelay || db.bolt.MaxBatchSize != DefaultMaxBatchSize {
		t.Fatalf("batch tuning not applied: %v %d", db.bolt.MaxBatchDelay, db.bolt.MaxBatchSize)
	}
}

// TestReopen commits with fsync on, closes, reopens the file and finds the
// data; an uncommitted (failed) transaction left nothing.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kv.db")
	db, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Update(ctx, func(tx kv.Txn) error {
				return tx.Set(fmt.Appendf(nil, "k%02d", i), fmt.Appendf(nil, "v%d", i))
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	db.Update(ctx, func(tx kv.Txn) error {
		tx.Set([]byte("uncommitted"), []byte("x"))
		return errors.New("fail")
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(nil, nil, kv.RangeOptions{})
		if err != nil {
			return err
		}
		if len(kvs) != 20 {
			return fmt.Errorf("reopened database holds %d keys, want 20", len(kvs))
		}
		for i, p := range kvs {
			if string(p.Key) != fmt.Sprintf("k%02d", i) || string(p.Value) != fmt.Sprintf("v%d", i) {
				return fmt.Errorf("pair %d: %q=%q", i, p.Key, p.Value)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSecondOpenFailsFast: the file lock makes a second opener fail with
// ErrLocked after LockTimeout instead of hanging (flock is per open file,
// so this holds within one process as across processes).
func TestSecondOpenFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	db, err := Open(path, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	start := time.Now()
	_, err = Open(path, &Options{NoSync: true, LockTimeout: 100 * time.Millisecond})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %v", d)
	}
	t.Log(err)
	db.Close()
	db2, err := Open(path, &Options{NoSync: true, LockTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	db2.Close()
}

// TestFailingBodiesDoNotRerunTheBatch: because writes are buffered until a
// body succeeds, a failing body leaves the shared batch transaction clean,
// so bbolt never rolls the batch back and the other bodies run once.
func TestFailingBodiesDoNotRerunTheBatch(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, &Options{NoSync: true, MaxBatchDelay: 20 * time.Millisecond})
	var runs atomic.Int64
	var wg sync.WaitGroup
	errFail := errors.New("fail")
	const n = 32
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.Update(ctx, func(tx kv.Txn) error {
				runs.Add(1)
				if err := tx.Set(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
					return err
				}
				if i%2 == 1 {
					return errFail
				}
				return nil
			})
			if (i%2 == 1) != errors.Is(err, errFail) || (i%2 == 0 && err != nil) {
				t.Errorf("Update %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if r := runs.Load(); r != n {
		t.Fatalf("%d body runs for %d Updates", r, n)
	}
	var count int
	db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(nil, nil, kv.RangeOptions{})
		count = len(kvs)
		return err
	})
	if count != n/2 {
		t.Fatalf("%d keys committed, want %d", count, n/2)
	}
}

// TestPanicInBatch: a panicking body reaches its caller (bbolt re-runs it
// alone) and the other members of its batch still commit.
func TestPanicInBatch(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, &Options{NoSync: true, MaxBatchDelay: 20 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				r := recover()
				if (i == 3) != (r != nil) {
					t.Errorf("Update %d: recovered %v", i, r)
				}
			}()
			err := db.Update(ctx, func(tx kv.Txn) error {
				tx.Set(fmt.Appendf(nil, "k%d", i), []byte("v"))
				if i == 3 {
					panic("boom")
				}
				return nil
			})
			if err != nil {
				t.Errorf("Update %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	var count int
	db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(nil, nil, kv.RangeOptions{})
		count = len(kvs)
		return err
	})
	if count != 7 {
		t.Fatalf("%d keys committed, want 7", count)
	}
}
