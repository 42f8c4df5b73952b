package bboltkv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
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
	if db.delay != 0 || db.maxBatch != DefaultMaxBatchSize {
		t.Fatalf("batch tuning: delay %v, max %d; want no delay and %d", db.delay, db.maxBatch, DefaultMaxBatchSize)
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
