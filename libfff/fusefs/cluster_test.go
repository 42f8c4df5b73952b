package fusefs

import (
	"context"
	"sync/atomic"
	"testing"

	"fff/internal/rpc"
	"fff/internal/testcluster"
	"fff/libfff"
	"fff/server/kv"
	"fff/server/meta"
	"fff/server/storage/chunkengine"
)

// countingDB counts meta's committed transactions that wrote something:
// each is an fsync on a durable backend, the unit the mount's costs are
// counted in.
type countingDB struct {
	kv.DB
	writes atomic.Int64
}

func (d *countingDB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	var wrote bool
	err := d.DB.Update(ctx, func(tx kv.Txn) error {
		wrote = false
		return fn(writeSpy{tx, &wrote})
	})
	if err == nil && wrote {
		d.writes.Add(1)
	}
	return err
}

// writeSpy notes whether a transaction body wrote.
type writeSpy struct {
	kv.Txn
	wrote *bool
}

func (w writeSpy) Set(k, v []byte) error        { *w.wrote = true; return w.Txn.Set(k, v) }
func (w writeSpy) Clear(k []byte) error         { *w.wrote = true; return w.Txn.Clear(k) }
func (w writeSpy) ClearRange(b, e []byte) error { *w.wrote = true; return w.Txn.ClearRange(b, e) }

// testCluster is mgmtd, meta and storage (two targets, real chunk
// engines) in this process, as `fffd local` assembles them, with meta's
// transactions counted.
type testCluster struct {
	c    *libfff.Client
	meta *meta.Service
	db   *countingDB
	srv  *rpc.Server
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	var db *countingDB
	tc := testcluster.Start(t, testcluster.Options{
		WrapDB:  func(raw kv.DB) kv.DB { db = &countingDB{DB: raw}; return db },
		Storage: true,
		Engine:  chunkengine.Options{MaxChunkSize: chunkengine.MaxChunkSizeLimit, NoDirect: true},
	})
	c, err := libfff.Connect(context.Background(), ClientOptions(libfff.Options{Address: tc.Addr, Token: tc.AdminToken}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testCluster{c: c, meta: tc.Meta, db: db, srv: tc.Server}
}
