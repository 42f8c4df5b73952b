//go:build fdb

package fdbkv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"

	"fff/server/kv"
	"fff/server/kv/kvtest"
)

// clusterFile returns FDB_CLUSTER_FILE or skips: the suite needs a real
// cluster (make test-fdb, docs/kv.md).
func clusterFile(t *testing.T) string {
	t.Helper()
	cf := os.Getenv("FDB_CLUSTER_FILE")
	if cf == "" {
		t.Skip("FDB_CLUSTER_FILE is not set: no FoundationDB cluster to test against (see docs/kv.md, make test-fdb)")
	}
	return cf
}

// openTest opens a DB under a fresh random prefix and drops the prefix when
// the test ends.
func openTest(t *testing.T, opts Options) *DB {
	t.Helper()
	opts.ClusterFile = clusterFile(t)
	var r [8]byte
	rand.Read(r[:])
	opts.Prefix = []byte("fffkvtest/" + hex.EncodeToString(r[:]) + "/")
	db, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The suite closes db; drop the prefix through a second handle.
		d2, err := Open(opts)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer d2.Close()
		if err := d2.DropAll(context.Background()); err != nil {
			t.Errorf("cleanup: drop %q: %v", opts.Prefix, err)
		}
	})
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	clusterFile(t)
	kvtest.Run(t, func(t *testing.T) kv.DB { return openTest(t, Options{}) })
}

// TestConflictSurfaces: with no retries, a read-modify-write that loses a
// race reports kv.ErrConflict (FoundationDB's not_committed).
func TestConflictSurfaces(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, Options{RetryLimit: -1})
	key := []byte("k")
	read, written := make(chan struct{}), make(chan error, 1)
	go func() {
		<-read
		written <- db.Update(ctx, func(tx kv.Txn) error { return tx.Set(key, []byte("b")) })
	}()
	err := db.Update(ctx, func(tx kv.Txn) error {
		if _, err := tx.Get(key); err != nil {
			return err
		}
		close(read) // runs once: RetryLimit -1 means no retries
		if err := <-written; err != nil {
			return err
		}
		return tx.Set(key, []byte("a"))
	})
	if !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("losing read-modify-write: %v, want kv.ErrConflict", err)
	}
}

// TestPrefixValidation needs no cluster: bad prefixes fail before Open
// touches the C library.
func TestPrefixValidation(t *testing.T) {
	for _, p := range [][]byte{nil, {0xff, 'a'}, make([]byte, kv.KeyPrefixReserve+1)} {
		if db, err := Open(Options{Prefix: p}); err == nil {
			db.Close()
			t.Fatalf("Open accepted prefix %q", p)
		}
	}
}
