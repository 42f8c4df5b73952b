// Package testcluster assembles a node in the test's own process — mgmtd,
// meta and (optionally) storage with real chunk engines, on one rpc.Server
// over loopback TCP, as `fffd local` assembles them — for the tests of
// packages that need a cluster to talk to without starting fffd (tests/
// starts the real binaries).
package testcluster

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/capability"
	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv"
	"fff/server/kv/memkv"
	"fff/server/meta"
	"fff/server/mgmtd"
	"fff/server/storage"
	"fff/server/storage/chunkengine"
)

// Options configure Start. The zero value is mgmtd and meta over an
// in-memory KV, with two targets known to mgmtd and no storage service.
type Options struct {
	// Targets is the number of storage targets (default 2).
	Targets int
	// WrapDB, if set, wraps the KV meta uses (a transaction counter).
	WrapDB func(kv.DB) kv.DB
	// Storage serves the targets with real chunk engines (Engine).
	Storage bool
	Engine  chunkengine.Options
	// Register adds services of the test's own (given the cluster manager).
	Register func(*rpc.Server, *mgmtd.Service)
	// Logger receives the server's and the services' logs.
	Logger zerolog.Logger
	// CapabilityTTL is the lifetime of meta's capabilities (an hour).
	CapabilityTTL time.Duration
	// PairedChains makes chains of two targets, head first: the first
	// half of the targets on node 1, the second half on a node 2 that this
	// same process serves (Targets must be even). Writes replicate from
	// head to tail inside the process (storage's chain updates between
	// local targets).
	PairedChains bool
}

// Cluster is a started node. Everything is closed when the test ends.
type Cluster struct {
	Addr       string // HOST:PORT of the node's rpc.Server
	AdminToken string
	Server     *rpc.Server
	Meta       *meta.Service
	Mgmtd      *mgmtd.Service
	Storage    *storage.Service // nil without Options.Storage
	// Caps is the cluster's capability key (meta signs, storage checks).
	Caps *capability.Key
}

// Start starts a node for tb.
func Start(tb testing.TB, o Options) *Cluster {
	tb.Helper()
	c, err := start(tb, o)
	if err != nil {
		tb.Fatalf("testcluster: %v", err)
	}
	return c
}

func start(tb testing.TB, o Options) (*Cluster, error) {
	ctx := context.Background()
	if o.Targets <= 0 {
		o.Targets = 2
	}
	raw := memkv.New()
	tb.Cleanup(func() { raw.Close() })
	var db kv.DB = raw
	if o.WrapDB != nil {
		db = o.WrapDB(raw)
	}
	mg, err := mgmtd.New(ctx, raw, mgmtd.Options{})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dir := tb.TempDir()
	var paths []string
	for i := range o.Targets {
		paths = append(paths, filepath.Join(dir, fmt.Sprintf("t%d", i)))
	}
	if o.PairedChains {
		err = pairChains(ctx, mg, l.Addr().String(), paths)
	} else {
		err = mgmtd.Bootstrap(ctx, mg, 1, l.Addr().String(), paths, 1)
	}
	if err != nil {
		return nil, err
	}
	secret, err := capability.Generate()
	if err != nil {
		return nil, err
	}
	caps, err := capability.New(secret)
	if err != nil {
		return nil, err
	}
	ms := meta.New(db, meta.Options{ChainTables: mg, Capabilities: caps, CapabilityTTL: o.CapabilityTTL})
	if err := ms.Init(ctx); err != nil {
		return nil, err
	}
	tok, err := ms.EnsureAdmin(ctx)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Addr: l.Addr().String(), AdminToken: tok, Meta: ms, Mgmtd: mg, Caps: caps}
	if o.Storage {
		routing := cluster.NewRoutingCache(mg, cluster.RoutingCacheOptions{})
		if err := routing.Refresh(ctx); err != nil {
			return nil, err
		}
		var tcs []storage.TargetConfig
		for _, tg := range routing.Get().Targets {
			tcs = append(tcs, storage.TargetConfig{ID: tg.ID, Path: tg.Path})
		}
		st, err := storage.New(ctx, storage.Options{NodeID: 1, Targets: tcs, Routing: routing, Engine: o.Engine, Logger: o.Logger, Capabilities: caps})
		if err != nil {
			return nil, err
		}
		tb.Cleanup(func() { st.Close() })
		c.Storage = st
	}
	c.Server = rpc.NewServer(rpc.ServerOptions{Auth: ms.Authenticator(), Logger: o.Logger})
	mgmtd.RegisterHandlers(c.Server, mg)
	meta.RegisterHandlers(c.Server, ms)
	if c.Storage != nil {
		c.Storage.RegisterHandlers(c.Server)
	}
	if o.Register != nil {
		o.Register(c.Server, mg)
	}
	go c.Server.Serve(l)
	tb.Cleanup(func() { c.Server.Close() })
	return c, nil
}

// pairChains registers nodes 1 and 2 at addr, the first half of paths as
// node 1's targets and the rest as node 2's, and makes chain table 1 of
// chains [node 1's i-th, node 2's i-th].
func pairChains(ctx context.Context, mg *mgmtd.Service, addr string, paths []string) error {
	if len(paths)%2 != 0 {
		return fmt.Errorf("PairedChains needs an even number of targets, not %d", len(paths))
	}
	for _, id := range []uint32{1, 2} {
		if _, err := mg.RegisterNode(ctx, proto.Node{ID: id, Roles: proto.RolesAll, Addr: addr}); err != nil {
			return err
		}
	}
	half := len(paths) / 2
	req := make([]proto.Target, len(paths))
	for i, p := range paths {
		req[i] = proto.Target{NodeID: uint32(1 + i/half), Path: p}
	}
	ts, err := mg.RegisterTargets(ctx, req)
	if err != nil {
		return err
	}
	var chains []uint32
	for i := range half {
		ch, err := mg.CreateChain(ctx, []uint32{ts[i].ID, ts[half+i].ID})
		if err != nil {
			return err
		}
		chains = append(chains, ch.ID)
	}
	_, err = mg.SetChainTable(ctx, mgmtd.BootstrapTable, chains)
	return err
}
