package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"fff/server/kv"
	"fff/server/kv/etcdkv"
	"fff/server/kv/etcdkv/etcdtest"
	"fff/server/kv/kvtest"
)

func TestConformance(t *testing.T) {
	c := etcdtest.Start(t, 3)
	kvtest.Run(t, func(t *testing.T) kv.DB { return c.Open(t, etcdkv.Options{}) })
}

// other opens a second DB over db's keys, through c's client.
func other(t *testing.T, c *etcdtest.Cluster, db *etcdkv.DB) *etcdkv.DB {
	t.Helper()
	o, err := etcdkv.Open(etcdkv.Options{Client: c.Client, Prefix: db.Prefix(), GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

func set(t *testing.T, db kv.DB, k, v string) {
	t.Helper()
	if err := db.Update(context.Background(), func(tx kv.Txn) error { return tx.Set([]byte(k), []byte(v)) }); err != nil {
		t.Fatal(err)
	}
}

func TestEtcd(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := context.Background()

	// With no retries, a read-modify-write that loses a race reports
	// kv.ErrConflict.
	t.Run("ConflictSurfaces", func(t *testing.T) {
		db := c.Open(t, etcdkv.Options{RetryLimit: -1})
		err := db.Update(ctx, func(tx kv.Txn) error {
			if _, err := tx.Get([]byte("k")); err != nil {
				return err
			}
			set(t, other(t, c, db), "k", "b")
			return tx.Set([]byte("k"), []byte("a"))
		})
		if !errors.Is(err, kv.ErrConflict) {
			t.Fatalf("losing read-modify-write: %v, want kv.ErrConflict", err)
		}
	})

	// A tombstone collected while a transaction that read the live key
	// runs: the transaction must not commit (the epoch guard), although
	// the key's own revision no longer shows the delete.
	t.Run("CollectAbortsEarlierReaders", func(t *testing.T) {
		db := c.Open(t, etcdkv.Options{RetryLimit: -1, GCInterval: -1})
		set(t, db, "k", "v")
		o := other(t, c, db)
		err := db.Update(ctx, func(tx kv.Txn) error {
			v, err := tx.Get([]byte("k"))
			if err != nil || v == nil {
				return fmt.Errorf("read k: %q, %v", v, err)
			}
			if err := o.Update(ctx, func(tx kv.Txn) error { return tx.Clear([]byte("k")) }); err != nil {
				return err
			}
			if n, err := o.Collect(ctx); err != nil || n != 1 {
				return fmt.Errorf("collect: %d tombstones, %v; want 1", n, err)
			}
			return tx.Set([]byte("copy"), v)
		})
		if !errors.Is(err, kv.ErrConflict) {
			t.Fatalf("a transaction that read a key deleted and collected since: %v, want kv.ErrConflict", err)
		}
	})

	// Clears leave tombstones that Collect removes from etcd, and only
	// those: keys written again stay.
	t.Run("Collect", func(t *testing.T) {
		db := c.Open(t, etcdkv.Options{GCInterval: -1})
		for i := range 700 { // more than one batch
			set(t, db, fmt.Sprintf("k%03d", i), "v")
		}
		if err := db.Update(ctx, func(tx kv.Txn) error {
			for i := range 700 {
				if err := tx.Clear(fmt.Appendf(nil, "k%03d", i)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		set(t, db, "k005", "again")
		raw := func() int {
			resp, err := c.Client.Get(ctx, string(db.Prefix()), clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				t.Fatal(err)
			}
			return int(resp.Count)
		}
		if n := raw(); n != 2*700 {
			t.Fatalf("%d keys in etcd before collection, want 1400 (700 data keys, 700 index entries)", n)
		}
		n, err := db.Collect(ctx)
		if err != nil || n != 699 {
			t.Fatalf("Collect: %d, %v; want 699", n, err)
		}
		if n := raw(); n != 2 { // k005 and the epoch key
			t.Fatalf("%d keys in etcd after collection, want 2", n)
		}
		var got []kv.KeyValue
		if err := db.View(ctx, func(tx kv.ReadTxn) error {
			var err error
			got, err = tx.Range(nil, nil, kv.RangeOptions{})
			return err
		}); err != nil || len(got) != 1 || string(got[0].Value) != "again" {
			t.Fatalf("after collection: %q, %v", got, err)
		}
	})

	// A ClearRange with keys set inside it in the same transaction: etcd
	// refuses a Txn whose DeleteRange covers one of its Puts, so the range
	// is split around them.
	t.Run("ClearRangeAroundSets", func(t *testing.T) {
		db := c.Open(t, etcdkv.Options{})
		for _, k := range []string{"a", "b", "c", "d"} {
			set(t, db, k, "old")
		}
		if err := db.Update(ctx, func(tx kv.Txn) error {
			if err := tx.ClearRange(nil, nil); err != nil {
				return err
			}
			if err := tx.Set([]byte("b"), []byte("new")); err != nil {
				return err
			}
			if err := tx.Clear([]byte("c")); err != nil {
				return err
			}
			return tx.Set([]byte("e"), []byte("new"))
		}); err != nil {
			t.Fatal(err)
		}
		var got []kv.KeyValue
		if err := db.View(ctx, func(tx kv.ReadTxn) error {
			var err error
			got, err = tx.Range(nil, nil, kv.RangeOptions{})
			return err
		}); err != nil || fmt.Sprintf("%s", got) != "[{b new} {e new}]" {
			t.Fatalf("after ClearRange and sets: %s, %v", got, err)
		}
	})

	// A value etcdkv did not write is reported, and an Update that read it
	// cannot commit even if its body swallows the error.
	t.Run("ForeignValue", func(t *testing.T) {
		db := c.Open(t, etcdkv.Options{})
		if _, err := c.Client.Put(ctx, string(db.Prefix())+"dx", "\x07junk"); err != nil {
			t.Fatal(err)
		}
		err := db.Update(ctx, func(tx kv.Txn) error {
			tx.Get([]byte("x"))
			return tx.Set([]byte("y"), []byte("z"))
		})
		if err == nil || !strings.Contains(err.Error(), "not written by etcdkv") {
			t.Fatalf("Update over a foreign value: %v", err)
		}
		if got := get(t, db, "y"); got != nil {
			t.Fatalf("the Update committed y=%q", got)
		}
	})

	t.Run("PrefixValidation", func(t *testing.T) {
		for _, p := range [][]byte{nil, make([]byte, kv.KeyPrefixReserve)} {
			if db, err := etcdkv.Open(etcdkv.Options{Client: c.Client, Prefix: p}); err == nil {
				db.Close()
				t.Fatalf("Open accepted prefix %q", p)
			}
		}
	})
}

func get(t *testing.T, db kv.DB, k string) []byte {
	t.Helper()
	var v []byte
	if err := db.View(context.Background(), func(tx kv.ReadTxn) error {
		var err error
		v, err = tx.Get([]byte(k))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestMemberLoss: counters incremented by read-modify-write while one of
// three members (the first, whichever role it has) stops and a new
// election may run. Every acknowledged increment is counted; an increment
// whose outcome was lost (kv.ErrUnknownResult) may or may not be.
func TestMemberLoss(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx := context.Background()
	// The DB's client knows only the members that stay.
	db := c.Open(t, etcdkv.Options{Endpoints: c.Endpoints[1:]})
	const workers, each = 4, 60
	var acked, unknown atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if w == 0 && i == each/3 {
					c.Members[0].Close()
				}
				err := db.Update(ctx, func(tx kv.Txn) error {
					v, err := tx.Get([]byte("n"))
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(v))
					return tx.Set([]byte("n"), strconv.AppendInt(nil, int64(n+1), 10))
				})
				switch {
				case err == nil:
					acked.Add(1)
				case errors.Is(err, kv.ErrUnknownResult):
					unknown.Add(1)
				default:
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(string(get(t, db, "n")))
	if int64(n) < acked.Load() || int64(n) > acked.Load()+unknown.Load() {
		t.Fatalf("counter %d after %d acknowledged and %d unknown increments", n, acked.Load(), unknown.Load())
	}
	t.Logf("counter %d: %d acknowledged, %d unknown", n, acked.Load(), unknown.Load())
}
