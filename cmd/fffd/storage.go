package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/server/meta"
	"fff/server/storage"
	"fff/server/storage/chunkengine"
)

// startStorage opens the storage service over the node's target
// directories, whose ids it finds in the routing info (by node id and path:
// registerTargets registered them, recording their current paths).
func (n *node) startStorage(ctx context.Context, routing *cluster.RoutingCache, paths []string, fwd storage.Forwarder) (*storage.Service, error) {
	if err := routing.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("storage: routing: %w", err)
	}
	ri := routing.Get()
	var targets []storage.TargetConfig
	for _, p := range paths {
		p = filepath.Clean(p)
		found := false
		for _, t := range ri.Targets {
			if t.NodeID == n.cfg.Node.ID && filepath.Clean(t.Path) == p {
				targets = append(targets, storage.TargetConfig{ID: t.ID, Path: p})
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("storage: target %s of node %d is not registered with mgmtd", p, n.cfg.Node.ID)
		}
	}
	svc, err := storage.New(ctx, storage.Options{
		NodeID:  n.cfg.Node.ID,
		Targets: targets,
		Routing: routing,
		// Files choose their chunk size (up to 64 MiB); every write carries
		// it and is checked against it.
		Engine:       chunkengine.Options{MaxChunkSize: chunkengine.MaxChunkSizeLimit},
		Logger:       n.log,
		Capabilities: n.caps,
		Unchecked:    n.cfg.Storage.UncheckedCapabilities,
		Forwarder:    fwd,
	})
	if err != nil {
		return nil, err
	}
	ids := make([]uint32, len(targets))
	for i, t := range targets {
		ids[i] = t.ID
	}
	n.log.Info().Interface("targets", ids).Msg("storage targets open")
	if n.cfg.Storage.UncheckedCapabilities {
		n.log.Warn().Msg("storage.unchecked_capabilities is set: every user can read, write and remove every file's chunks (for benchmarks only)")
	}
	n.collectStorage(svc)
	return svc, nil
}

// makeTargetDirs creates the target directories.
func makeTargetDirs(paths []string) error {
	for _, t := range paths {
		if err := os.MkdirAll(t, 0o700); err != nil {
			return fmt.Errorf("target directory: %w", err)
		}
	}
	return nil
}

// runStorage runs a storage server: it registers its targets with mgmtd
// (one chain each, added to the default chain table), serves the storage
// methods and heartbeats with the targets' usage. It keeps no metadata: it
// asks meta about the tokens of the clients that connect to it
// (meta.RemoteAuthenticator, answers kept for storage.credentials_ttl), so
// users added later can use it at once.
//
// It collects garbage: it drains meta's GC queue over RPC (storage.RunGC).
// Every storage node runs this loop over the one queue; each record is
// applied whole by one node, the one holding the head of the file's first
// chain, which removes the chunks on other nodes' targets through them
// (storage.GCOnce explains why). Meta is at meta.address, else at
// mgmtd.address (a control node that runs both, as `fffd local` does).
// Every call to mgmtd, meta and other storage nodes uses the admin token
// from DATA/admin.token.
func runStorage(ctx context.Context, cfg Config) error {
	mgmtdAddrs := cluster.SplitAddrs(cfg.Mgmtd.Address)
	if len(mgmtdAddrs) == 0 {
		return fmt.Errorf("%w: storage needs mgmtd.address", errUsage)
	}
	if len(cfg.Storage.Targets) == 0 {
		return fmt.Errorf("%w: storage needs storage.targets", errUsage)
	}
	n, err := newNode(cfg, "storage", false)
	if err != nil {
		return err
	}
	path := filepath.Join(cfg.Node.DataDir, tokenFile)
	tok, err := os.ReadFile(path)
	if err != nil {
		return n.abort(fmt.Errorf("storage needs the admin token in %s to talk to mgmtd: %w", path, err))
	}
	if err := n.loadCapabilityKey(false); err != nil {
		return n.abort(fmt.Errorf("storage: %w", err))
	}
	if err := makeTargetDirs(cfg.Storage.Targets); err != nil {
		return n.abort(err)
	}
	admin := strings.TrimSpace(string(tok))
	var routing *cluster.RoutingCache // made below
	lastRouting := func() *proto.RoutingInfo { return routing.Get() }
	mgmtdCaller, closeMgmtd := n.control(mgmtdAddrs, admin, proto.RoleMgmtd, 0, lastRouting)
	defer closeMgmtd()
	client := cluster.NewClient(mgmtdCaller)
	if err := registerTargets(ctx, client, cfg.Node.ID, n.addr, proto.RoleStorage, cfg.Storage.Targets, cfg.Storage.Chains == "single"); err != nil {
		return n.abort(fmt.Errorf("registering with mgmtd: %w", err))
	}
	routing = cluster.NewRoutingCache(client, cluster.RoutingCacheOptions{Logger: n.log})
	peers := storage.NewRPCPeers(admin, n.poolOpts(0))
	defer peers.Close()
	svc, err := n.startStorage(ctx, routing, cfg.Storage.Targets, peers)
	if err != nil {
		return n.abort(err)
	}
	defer svc.Close()
	metaAddrs := cluster.SplitAddrs(cfg.Meta.Address)
	if len(metaAddrs) == 0 {
		metaAddrs = mgmtdAddrs
	}
	metaCaller, closeMeta := n.control(metaAddrs, admin, proto.RoleMeta, 1, lastRouting)
	defer closeMeta()
	auth := meta.NewRemoteAuthenticator(metaCaller, meta.RemoteAuthOptions{TTL: cfg.Storage.CredentialsTTL.Duration, Logger: n.log})
	gcq := storage.WithPeers(storage.RPCGC(metaCaller), peers)
	return n.serve(ctx, auth, svc.RegisterHandlers,
		routing.Run,
		func(ctx context.Context) error { return svc.RunGC(ctx, gcq, 0) },
		func(ctx context.Context) error { return svc.RunResync(ctx, client, 0) },
		func(ctx context.Context) error {
			return cluster.RunHeartbeats(ctx, client, cluster.HeartbeatOptions{
				NodeID: cfg.Node.ID, Stats: svc.Stats, Resyncs: svc.Resyncs, Metrics: n.metricsAddr, Cache: routing, Lease: svc.Lease, Logger: n.log,
			})
		},
		func(ctx context.Context) error { return cluster.WatchDown(ctx, routing, n.cutPeers(peers)) },
	)
}

// cutPeers closes the connections of peers to a node that mgmtd declared
// down (cluster.WatchDown), logging when there were any.
func (n *node) cutPeers(peers *storage.RPCPeers) func(addr string) {
	return func(addr string) {
		if k := peers.Cut(addr); k > 0 {
			n.log.Info().Str("peer", addr).Int("connections", k).Msg("storage: peer declared down; its connections closed")
		}
	}
}
