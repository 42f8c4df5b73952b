package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"fff/internal/buildinfo"
	"fff/internal/capability"
	"fff/internal/cluster"
	"fff/internal/logging"
	"fff/internal/metrics"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv"
	"fff/server/kv/etcdkv"
	"fff/server/meta"
	"fff/server/mgmtd"
	"fff/server/storage"
)

// Files in the data directory shared with `fff up` (cmd/fff/up.go).
const (
	readyFile = "fffd.json"   // written once the node serves: pid and address
	tokenFile = "admin.token" // the admin token (mode 0600)
)

type readyInfo struct {
	PID     int    `json:"pid"`
	Address string `json:"address"`
	Socket  string `json:"socket,omitempty"`  // the same-host Unix socket, if served
	Metrics string `json:"metrics,omitempty"` // the metrics listener's address, if served
	Version string `json:"version"`
}

// node is what every role shares: config, logger, KV, listener, RPC server.
type node struct {
	cfg    Config
	log    zerolog.Logger
	db     kv.DB          // nil for the storage role
	member *etcdkv.Member // the etcd member this node runs, or nil
	lock   *os.File       // the data directory's lock when no bbolt KV holds it
	// campaign stops mgmtd's election (startMgmtd) and waits for it.
	campaign func()
	ln       net.Listener
	uln      net.Listener // the same-host Unix socket, or nil
	srv      *rpc.Server
	addr     string
	caps     *capability.Key // the cluster's capability key (meta and storage roles)
	// adminToken is the cluster's admin token over a shared KV (secrets.go).
	adminToken string
	tls        nodeTLS           // TLS of the TCP listener and of pools to other nodes (tls.go)
	metrics    *metrics.Registry // nil: metrics off (metrics.go)
	metricsSrv *metrics.Server
}

// newNode prepares a node of role: logger, data directory, listeners and,
// with withKV, the metadata KV (every role but storage, which keeps no
// metadata of its own).
func newNode(cfg Config, role string, withKV bool) (*node, error) {
	log, err := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	log = log.With().Str("role", role).Uint32("node", cfg.Node.ID).Logger()
	if err := privateDataDir(cfg.Node.DataDir, log); err != nil {
		return nil, err
	}
	var db kv.DB
	var lock *os.File
	var member *etcdkv.Member
	// bbolt's file lock guards the data directory; other KVs need one.
	if !withKV || cfg.KV.Backend != "bbolt" {
		if lock, err = lockDataDir(cfg.Node.DataDir); err != nil {
			return nil, err
		}
	}
	if withKV {
		if db, member, err = openKV(cfg, log); err != nil {
			if lock != nil {
				lock.Close()
			}
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Node.Listen)
	if err != nil {
		if db != nil {
			db.Close()
		}
		if member != nil {
			member.Close()
		}
		if lock != nil {
			lock.Close()
		}
		return nil, fmt.Errorf("listen on %s: %w", cfg.Node.Listen, err)
	}
	n := &node{cfg: cfg, log: log, db: db, member: member, lock: lock, ln: ln, addr: ln.Addr().String()}
	n.newMetrics(role)
	if err := n.setupTLS(); err != nil {
		return nil, n.abort(err)
	}
	if !cfg.Node.NoLocalSocket {
		n.listenLocal()
	}
	return n, nil
}

// socketFile is the node's same-host Unix socket in its data directory.
const socketFile = "fffd.sock"

// listenLocal opens the same-host Unix socket. Clients on this host that
// reach the node over loopback TCP learn its path in the handshake and move
// to it (it costs about half the CPU per byte). The KV (or, without one,
// lockDataDir), taken first, locks the data directory, so a socket file
// already there is a dead node's.
// Failing here only costs speed: the node serves TCP alone.
func (n *node) listenLocal() {
	path := filepath.Join(n.cfg.Node.DataDir, socketFile)
	os.Remove(path)
	uln, err := net.Listen("unix", path)
	if err != nil {
		n.log.Warn().Err(err).Str("socket", path).Msg("no same-host Unix socket; clients on this host use TCP")
		return
	}
	n.uln = uln
}

// abort releases the node's KV and listeners after a failed start.
func (n *node) abort(err error) error {
	n.ln.Close()
	if n.uln != nil {
		n.uln.Close()
	}
	n.stopCampaign()
	if n.db != nil {
		n.db.Close()
	}
	if n.member != nil {
		n.member.Close()
	}
	if n.lock != nil {
		n.lock.Close()
	}
	return err
}

// lockFile is the data directory's lock of a node without a KV.
const lockFile = "fffd.lock"

// lockDataDir takes the lock of a data directory for as long as the
// returned file stays open: a second fffd on the same directory would
// remove the first's socket and open its targets again.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use (is another fffd using it?)", dir)
		}
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	return f, nil
}

// startMgmtd opens the cluster manager over the node's KV. Over a shared
// KV several nodes run mgmtd and elect a leader (mgmtd/leader.go): the
// cluster's secrets are fetched or made first (secrets.go), since a
// follower reaches the leader with the admin token, then the campaign
// starts; it runs until the node stops.
func (n *node) startMgmtd(ctx context.Context) (*mgmtd.Service, error) {
	opts := mgmtd.Options{HeartbeatTimeout: n.cfg.Mgmtd.HeartbeatTimeout.Duration, Logger: n.log}
	shared := n.cfg.KV.shared()
	if shared {
		if err := n.shareSecrets(ctx); err != nil {
			return nil, err
		}
		opts.Elect = &mgmtd.ElectOptions{NodeID: n.cfg.Node.ID, Addr: n.addr, Lease: n.cfg.Mgmtd.LeaderLease.Duration, Dial: n.dialMgmtd}
	}
	mg, err := mgmtd.New(ctx, n.db, opts)
	if err != nil {
		return nil, fmt.Errorf("mgmtd: %w", err)
	}
	if shared {
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			mg.Campaign(cctx)
		}()
		n.campaign = func() { cancel(); <-done }
	}
	return mg, nil
}

// stopCampaign ends mgmtd's election, if it runs.
func (n *node) stopCampaign() {
	if n.campaign != nil {
		n.campaign()
		n.campaign = nil
	}
}

// dialMgmtd reaches the mgmtd leader at addr with the admin token
// (mgmtd.ElectOptions.Dial).
func (n *node) dialMgmtd(addr string) (mgmtd.Remote, io.Closer) {
	pool := rpc.NewPool(addr, n.adminToken, n.poolOpts(0))
	return cluster.NewClient(pool), pool
}

// untilLeader runs a call that goes to the mgmtd leader until one is
// elected (proto.Unavailable), for at most two minutes.
func untilLeader(ctx context.Context, log zerolog.Logger, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	for logged := false; ; {
		err := f()
		if !errors.Is(err, proto.ErrUnavailable) {
			return err
		}
		if !logged {
			log.Info().Err(err).Msg("waiting for an mgmtd leader")
			logged = true
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startMeta opens the meta service over the node's KV and initializes it.
func (n *node) startMeta(ctx context.Context, opts meta.Options) (*meta.Service, error) {
	opts.ChunkSize = uint32(n.cfg.Meta.ChunkSize)
	opts.Capabilities, opts.CapabilityTTL = n.caps, n.cfg.Meta.CapabilityTTL.Duration
	if n.cfg.KV.shared() {
		opts.AdminToken = rotatedAdmin
	}
	ms := meta.New(n.db, opts)
	if err := ms.Init(ctx); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	return ms, nil
}

// serve runs the RPC server and the given background loops until ctx ends,
// then shuts down gracefully.
func (n *node) serve(ctx context.Context, auth rpc.Authenticator, register func(*rpc.Server), loops ...func(context.Context) error) error {
	r := n.cfg.RPC
	opts := rpc.ServerOptions{Auth: auth, Logger: n.log, MaxConns: r.MaxConns, MaxInFlightBytes: r.MaxConnBytes,
		MaxTotalBytes: r.MaxTotalBytes, FrameTimeout: r.FrameTimeout.Duration, HandshakeTimeout: r.HandshakeTimeout.Duration,
		IdleTimeout: r.IdleTimeout.Duration, TLS: n.tls.server, SlowRequest: r.SlowRequest.Duration}
	if n.metrics != nil {
		opts.Observer = metrics.NewRPCServer(n.metrics, func() rpc.ServerStats { return n.srv.Stats() })
	}
	if n.uln != nil {
		opts.LocalSocket = n.uln.Addr().String()
	}
	n.srv = rpc.NewServer(opts)
	register(n.srv)
	if err := n.startMetrics(); err != nil {
		return n.abort(err)
	}
	defer n.stopMetrics()
	g, gctx := errgroup.WithContext(ctx)
	for _, l := range []net.Listener{n.ln, n.uln} {
		if l == nil {
			continue
		}
		g.Go(func() error {
			if err := n.srv.Serve(l); err != nil && !errors.Is(err, rpc.ErrServerClosed) {
				return fmt.Errorf("rpc server: %w", err)
			}
			return nil
		})
	}
	for _, loop := range loops {
		g.Go(func() error { return loop(gctx) })
	}
	if err := n.writeReady(); err != nil {
		return err
	}
	n.log.Info().Str("address", n.addr).Str("data", n.cfg.Node.DataDir).Msg("serving")
	<-gctx.Done()
	os.Remove(filepath.Join(n.cfg.Node.DataDir, readyFile))
	if n.uln != nil {
		os.Remove(n.uln.Addr().String())
	}
	n.log.Info().Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(sctx); err != nil {
		n.log.Warn().Err(err).Msg("shutdown")
	}
	err := g.Wait()
	n.stopCampaign()
	if n.db != nil {
		if cerr := n.db.Close(); err == nil {
			err = cerr
		}
	}
	if n.member != nil {
		n.member.Close()
	}
	return err
}

func (n *node) writeReady() error {
	ri := readyInfo{PID: os.Getpid(), Address: n.addr, Version: buildinfo.Version()}
	if n.uln != nil {
		ri.Socket = n.uln.Addr().String()
	}
	if n.metricsSrv != nil {
		ri.Metrics = n.metricsSrv.Addr().String()
	}
	b, _ := json.Marshal(ri)
	path := filepath.Join(n.cfg.Node.DataDir, readyFile)
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// ensureAdminToken creates the admin user on a new cluster and saves its
// token; when the token file was lost, it issues a new token (this process
// has the KV, so it is the tool that may).
func (n *node) ensureAdminToken(ctx context.Context, ms *meta.Service) error {
	path := filepath.Join(n.cfg.Node.DataDir, tokenFile)
	tok, err := ms.EnsureAdmin(ctx)
	if err != nil {
		return fmt.Errorf("admin user: %w", err)
	}
	if tok == "" {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		n.log.Warn().Str("file", path).Msg("admin token file missing: issuing a new admin token")
		if tok, err = ms.RotateToken(ctx, meta.Root, meta.AdminUser); err != nil {
			return fmt.Errorf("admin token: %w", err)
		}
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return fmt.Errorf("saving the admin token: %w", err)
	}
	return nil
}

// runLocal runs mgmtd, meta and storage in one process over one KV,
// bootstrapping a single-node cluster on first start.
func runLocal(ctx context.Context, cfg Config) error {
	n, err := newNode(cfg, "local", true)
	if err != nil {
		return err
	}
	mg, err := n.startMgmtd(ctx)
	if err != nil {
		return n.abort(err)
	}
	if !cfg.KV.shared() {
		if err := n.loadCapabilityKey(true); err != nil {
			return n.abort(err)
		}
	}
	targets := cfg.Storage.Targets
	if len(targets) == 0 {
		targets = []string{filepath.Join(cfg.Node.DataDir, "targets", "0"), filepath.Join(cfg.Node.DataDir, "targets", "1")}
	}
	if err := makeTargetDirs(targets); err != nil {
		return n.abort(err)
	}
	if err := untilLeader(ctx, n.log, func() error {
		return registerTargets(ctx, mg, cfg.Node.ID, n.addr, proto.RolesAll, targets, cfg.Storage.Chains == "single")
	}); err != nil {
		return n.abort(fmt.Errorf("bootstrap: %w", err))
	}
	ms, err := n.startMeta(ctx, meta.Options{ChainTables: mg, Capacity: mg})
	if err != nil {
		return n.abort(err)
	}
	if !cfg.KV.shared() {
		if err := n.ensureAdminToken(ctx, ms); err != nil {
			return n.abort(err)
		}
	}
	routing := cluster.NewRoutingCache(mg, cluster.RoutingCacheOptions{Logger: n.log})
	// Storage nodes that joined this one are reached with the admin token:
	// chain updates to their targets, GC of chunks of deleted files on
	// them (see runStorage).
	tok, err := os.ReadFile(filepath.Join(cfg.Node.DataDir, tokenFile))
	if err != nil {
		return n.abort(fmt.Errorf("admin token: %w", err))
	}
	peers := storage.NewRPCPeers(strings.TrimSpace(string(tok)), n.poolOpts(0))
	defer peers.Close()
	st, err := n.startStorage(ctx, routing, targets, peers)
	if err != nil {
		return n.abort(err)
	}
	defer st.Close()
	n.collectMgmtd(mg)
	gcq := storage.WithPeers(storage.MetaGC(ms), peers)
	return n.serve(ctx, ms.Authenticator(),
		func(s *rpc.Server) {
			mgmtd.RegisterHandlers(s, mg)
			meta.RegisterHandlers(s, ms)
			st.RegisterHandlers(s)
		},
		mg.Run,
		routing.Run,
		func(ctx context.Context) error {
			return cluster.RunHeartbeats(ctx, mg, cluster.HeartbeatOptions{
				NodeID: cfg.Node.ID, Stats: st.Stats, Resyncs: st.Resyncs, Metrics: n.metricsAddr, Cache: routing, Logger: n.log,
			})
		},
		n.pruneSessions(ms),
		func(ctx context.Context) error { return st.RunGC(ctx, gcq, 0) },
		func(ctx context.Context) error { return st.RunResync(ctx, mg, 0) },
		func(ctx context.Context) error { return cluster.WatchDown(ctx, routing, n.cutPeers(peers)) },
	)
}

// pruneSessions ends write sessions whose writers stopped reporting (crashed
// clients), so their files' lengths settle and unlinked files get collected.
func (n *node) pruneSessions(ms *meta.Service) func(context.Context) error {
	return func(ctx context.Context) error {
		maxAge := n.cfg.Meta.SessionTimeout.Duration
		t := time.NewTicker(max(maxAge/10, time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				ended, err := ms.PruneSessions(ctx, meta.Root, maxAge)
				if err != nil && ctx.Err() == nil {
					n.log.Warn().Err(err).Msg("pruning write sessions")
				} else if ended > 0 {
					n.log.Info().Uint64("sessions", ended).Msg("ended write sessions of silent writers")
				}
			}
		}
	}
}

// runMgmtd runs the cluster manager alone. Tokens are checked against the
// users in the shared KV.
func runMgmtd(ctx context.Context, cfg Config) error {
	n, err := newNode(cfg, "mgmtd", true)
	if err != nil {
		return err
	}
	mg, err := n.startMgmtd(ctx)
	if err != nil {
		return n.abort(err)
	}
	// mgmtd's node creates the cluster: it makes the key meta and storage
	// nodes are given a copy of (over a shared KV, startMgmtd did).
	if !cfg.KV.shared() {
		if err := n.loadCapabilityKey(true); err != nil {
			return n.abort(err)
		}
	}
	users, err := n.startMeta(ctx, meta.Options{})
	if err != nil {
		return n.abort(err)
	}
	if !cfg.KV.shared() {
		if err := n.ensureAdminToken(ctx, users); err != nil {
			return n.abort(err)
		}
	}
	n.collectMgmtd(mg)
	return n.serve(ctx, users.Authenticator(), func(s *rpc.Server) { mgmtd.RegisterHandlers(s, mg) }, mg.Run)
}

// runMeta runs a meta server; it learns chain tables from mgmtd.
func runMeta(ctx context.Context, cfg Config) error {
	mgmtdAddrs := cluster.SplitAddrs(cfg.Mgmtd.Address)
	if len(mgmtdAddrs) == 0 {
		return fmt.Errorf("%w: meta needs mgmtd.address", errUsage)
	}
	n, err := newNode(cfg, "meta", true)
	if err != nil {
		return err
	}
	var tok string
	if cfg.KV.shared() {
		// The cluster's secrets are in the shared KV.
		if err := n.shareSecrets(ctx); err != nil {
			return n.abort(err)
		}
		tok = n.adminToken
	} else {
		path := filepath.Join(cfg.Node.DataDir, tokenFile)
		b, err := os.ReadFile(path)
		if err != nil {
			return n.abort(fmt.Errorf("meta needs the admin token in %s to talk to mgmtd: %w", path, err))
		}
		tok = strings.TrimSpace(string(b))
		if err := n.loadCapabilityKey(false); err != nil {
			return n.abort(fmt.Errorf("meta: %w", err))
		}
	}
	var routing *cluster.RoutingCache // made below
	caller, closeMgmtd := n.control(mgmtdAddrs, tok, proto.RoleMgmtd, 0, func() *proto.RoutingInfo { return routing.Get() })
	defer closeMgmtd()
	client := cluster.NewClient(caller)
	routing = cluster.NewRoutingCache(client, cluster.RoutingCacheOptions{Logger: n.log})
	ms, err := n.startMeta(ctx, meta.Options{ChainTables: routing})
	if err != nil {
		return n.abort(err)
	}
	loops := []func(context.Context) error{routing.Run, n.pruneSessions(ms)}
	if cfg.KV.shared() {
		// Over a shared KV every meta server serves the same namespace:
		// it registers (role meta) and heartbeats, so clients find it in
		// the routing info and fail over to it. Over bbolt a separate
		// meta has a namespace of its own and must not be offered.
		if err := untilLeader(ctx, n.log, func() error {
			_, err := client.RegisterNode(ctx, proto.Node{ID: cfg.Node.ID, Addr: n.addr, Roles: proto.RoleMeta})
			return err
		}); err != nil {
			return n.abort(fmt.Errorf("registering with mgmtd: %w", err))
		}
		loops = append(loops, func(ctx context.Context) error {
			return cluster.RunHeartbeats(ctx, client, cluster.HeartbeatOptions{NodeID: cfg.Node.ID, Metrics: n.metricsAddr, Cache: routing, Logger: n.log})
		})
	}
	return n.serve(ctx, ms.Authenticator(), func(s *rpc.Server) { meta.RegisterHandlers(s, ms) }, loops...)
}
