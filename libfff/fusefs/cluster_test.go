package fusefs

import (
	"context"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"

	"fff/internal/cluster"
	"fff/internal/rpc"
	"fff/libfff"
	"fff/server/kv"
	"fff/server/kv/memkv"
	"fff/server/meta"
	"fff/server/mgmtd"
	"fff/server/storage"
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
	ctx := context.Background()
	raw := memkv.New()
	t.Cleanup(func() { raw.Close() })
	db := &countingDB{DB: raw}
	mg, err := mgmtd.New(ctx, raw, mgmtd.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	paths := []string{filepath.Join(dir, "t0"), filepath.Join(dir, "t1")}
	if err := mgmtd.Bootstrap(ctx, mg, 1, l.Addr().String(), paths, 1); err != nil {
		t.Fatal(err)
	}
	ms := meta.New(db, meta.Options{ChainTables: mg})
	if err := ms.Init(ctx); err != nil {
		t.Fatal(err)
	}
	tok, err := ms.EnsureAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	routing := cluster.NewRoutingCache(mg, cluster.RoutingCacheOptions{})
	if err := routing.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var tcs []storage.TargetConfig
	for _, tg := range routing.Get().Targets {
		tcs = append(tcs, storage.TargetConfig{ID: tg.ID, Path: tg.Path})
	}
	st, err := storage.New(ctx, storage.Options{NodeID: 1, Targets: tcs, Routing: routing,
		Engine: chunkengine.Options{MaxChunkSize: chunkengine.MaxChunkSizeLimit, NoDirect: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := rpc.NewServer(rpc.ServerOptions{Auth: ms.Authenticator()})
	mgmtd.RegisterHandlers(srv, mg)
	meta.RegisterHandlers(srv, ms)
	st.RegisterHandlers(srv)
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := libfff.Connect(ctx, ClientOptions(libfff.Options{Address: l.Addr().String(), Token: tok}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &testCluster{c: c, meta: ms, db: db, srv: srv}
}
