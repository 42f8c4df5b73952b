// Package mgmtd is fff's cluster manager (DESIGN §5): the registry of nodes,
// storage targets, chains and chain tables, published as one versioned
// proto.RoutingInfo, and the heartbeats that decide which nodes are up.
//
// # State and versions
//
// The versioned state lives in the transactional KV (package kv, keys under
// KeyPrefix, listed in docs/cluster.md). Every mutation is one KV
// transaction that reads the whole state, changes it, writes back exactly
// the records whose encoding changed and, if any did, increments the
// routing version. So the routing version increases on every change and
// never otherwise; repeating an operation that changes nothing
// (re-registering a node with the same address, …) leaves it alone.
// Chains and chain tables carry their own versions, starting at 1.
//
// The Service keeps the last committed RoutingInfo in memory. GetRouting
// with the caller's version answers "unchanged" from memory without
// touching the KV; the in-memory copy is replaced after each of the
// service's own commits and refreshed from the KV when the KV's version key
// differs (checked every Options.RefreshInterval by Run, and whenever a
// caller claims a version newer than the cached one).
//
// # Live information
//
// Heartbeats do not write to the KV. The time of a node's last heartbeat
// and its targets' capacity and usage are kept in memory and reported in
// GetRouting answers (Node.LastHeartbeat, Target.Capacity/Used) without a
// version change. After a restart mgmtd knows no heartbeat yet: every node
// that is up in the KV gets a full HeartbeatTimeout of grace.
//
// # Failure detection
//
// Run checks every CheckInterval for nodes that are up but have not
// heartbeated (or registered) for HeartbeatTimeout. Such a node is marked
// down and its targets offline; an offline target moves to the end of its
// chain. Chains always list serving targets first, then syncing ones, then
// offline ones (stable within each group); a transaction that changes a
// chain's order or a member's state increments the chain's version once
// (and the routing version once, however many chains changed). When a down node heartbeats or registers again it is up, and
// each of its offline targets becomes
//
//   - serving, if it is the only target of its chain (replication 1: there
//     is nothing to resync from) or belongs to no chain;
//   - syncing otherwise, until the resync protocol or an admin
//     (SetTargetState) declares it serving.
//
// A node that registers while up restarted before the timeout noticed: its
// serving targets in chains with another serving member become syncing.
//
// # One active mgmtd
//
// The KV is the truth and every mutation is serializable, so several
// Service instances over one KV (etcd, FoundationDB) never corrupt the
// state. But heartbeat times live in the memory of the instance that
// receives them, so exactly one instance does failure detection and
// receives the heartbeats: the only one (bbolt), or the leader that
// instances with Options.Elect elect through the KV; the others forward
// their calls to it (leader.go).
package mgmtd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/proto"
	"fff/server/kv"
)

// Defaults of Options.
const (
	DefaultHeartbeatTimeout = 10 * time.Second
	DefaultRefreshInterval  = time.Second
)

// Clock is the service's time source; tests substitute a fake one.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

// Options configure a Service. The zero value of a field selects its default.
type Options struct {
	// HeartbeatTimeout is how long a node may stay silent before it is
	// marked down (default 10 s).
	HeartbeatTimeout time.Duration
	// CheckInterval is how often Run looks for silent nodes (default a
	// tenth of HeartbeatTimeout, between 10 ms and 1 s).
	CheckInterval time.Duration
	// RefreshInterval is how often Run compares the KV's routing version
	// with the cached one (default 1 s), to notice changes made by another
	// instance.
	RefreshInterval time.Duration
	// Clock is the time source (default the system clock).
	Clock Clock
	// Logger receives node and target state changes.
	Logger zerolog.Logger
	// Elect makes the service one of several over a shared KV, with a
	// leader elected through the KV (leader.go; run Campaign). Nil: the
	// only instance.
	Elect *ElectOptions
}

func (o *Options) normalize() {
	if o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = min(max(o.HeartbeatTimeout/10, 10*time.Millisecond), time.Second)
	}
	if o.RefreshInterval <= 0 {
		o.RefreshInterval = DefaultRefreshInterval
	}
	if o.Clock == nil {
		o.Clock = SystemClock()
	}
	if o.Elect != nil && o.Elect.Lease <= 0 {
		o.Elect.Lease = DefaultLease
	}
}

// API is what both a Service (in process) and a Client (over RPC) offer:
// code that registers, heartbeats or bootstraps takes an API and works
// either way. Errors are proto errors: EINVAL for invalid arguments, ENOENT
// for unknown ids, EEXIST for conflicting re-registrations, EPERM over RPC
// without the admin token.
type API interface {
	// GetRouting returns the routing info, or nil (and no error) if since
	// is non-zero and equal to the current version. The result is the
	// caller's to keep.
	GetRouting(ctx context.Context, since uint64) (*proto.RoutingInfo, error)
	// Heartbeat reports that a node is alive and its targets' usage, and
	// returns the current routing version.
	Heartbeat(ctx context.Context, req proto.HeartbeatReq) (proto.HeartbeatResp, error)
	// RegisterNode registers a node, or re-registers it after a restart.
	RegisterNode(ctx context.Context, n proto.Node) (proto.Node, error)
	// RegisterTargets registers targets of registered nodes.
	RegisterTargets(ctx context.Context, ts []proto.Target) ([]proto.Target, error)
	// CreateChain creates a chain over targets (head first) with a new id.
	CreateChain(ctx context.Context, targets []uint32) (proto.Chain, error)
	// SetChainTable creates or replaces chain table id (0: a new id).
	SetChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error)
	// AddToChainTable appends to table id the chains it does not list,
	// creating the table if needed, in one transaction: nodes joining at
	// once never lose each other's chains.
	AddToChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error)
	// SetTargetState sets a target's state.
	SetTargetState(ctx context.Context, id uint32, state proto.TargetState) error
}

// resyncReport is a resync's progress and the node that reported it.
type resyncReport struct {
	node  uint32
	stats proto.ResyncStats
}

// Service is the cluster manager over a kv.DB. It is safe for concurrent
// use. See the package documentation.
type Service struct {
	db   kv.DB
	opts Options
	log  zerolog.Logger

	cur      atomic.Pointer[proto.RoutingInfo] // last committed state; live fields zero; read-only
	counters counters                          // Counters
	pubMu    sync.Mutex                        // serializes publish
	changed  chan struct{}                     // closed and replaced by publish (under pubMu)
	ended    chan struct{}                     // closed when Run returns: long polls answer
	endOnce  sync.Once
	running  atomic.Bool // Run is running: long polls wait (see WaitRouting)

	mu      sync.Mutex
	live    map[uint32]*liveNode         // node id → heartbeat times
	stats   map[uint32]proto.TargetStats // target id → last reported usage
	resyncs map[uint32]resyncReport      // syncing target id → its resync's progress

	clusterID string // set by New, never changes

	elect *election // nil without Options.Elect
}

type liveNode struct {
	seen      time.Time // last heartbeat, registration, or mgmtd start (grace)
	heartbeat time.Time // last heartbeat or registration; zero if none
	metrics   string    // the metrics address of the last heartbeat
}

var _ API = (*Service)(nil)

// New loads the cluster state from db and returns a service over it. Call
// Run to start failure detection.
func New(ctx context.Context, db kv.DB, opts Options) (*Service, error) {
	opts.normalize()
	s := &Service{
		db:      db,
		opts:    opts,
		log:     opts.Logger.With().Str("component", "mgmtd").Logger(),
		live:    map[uint32]*liveNode{},
		stats:   map[uint32]proto.TargetStats{},
		resyncs: map[uint32]resyncReport{},
		changed: make(chan struct{}),
		ended:   make(chan struct{}),
	}
	if opts.Elect != nil {
		s.elect = &election{opts: *opts.Elect}
	}
	var ri *proto.RoutingInfo
	if err := db.View(ctx, func(tx kv.ReadTxn) error {
		ri = nil
		st, err := loadState(tx)
		if err != nil {
			return err
		}
		ri = st.routing()
		return nil
	}); err != nil {
		return nil, fmt.Errorf("mgmtd: load state: %w", err)
	}
	id, err := ensureClusterID(ctx, db)
	if err != nil {
		return nil, err
	}
	s.clusterID = id
	s.publish(ri)
	return s, nil
}

// ensureClusterID returns the cluster id, creating a random one on the
// first start. It is not versioned: it never changes once created.
func ensureClusterID(ctx context.Context, db kv.DB) (string, error) {
	var id string
	err := db.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(keyClusterID)
		if err != nil {
			return err
		}
		if len(v) > 0 {
			id = string(v)
			return nil
		}
		var b [16]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
		return tx.Set(keyClusterID, []byte(id))
	})
	if err != nil {
		return "", fmt.Errorf("mgmtd: cluster id: %w", err)
	}
	return id, nil
}

// Options returns the service's options, defaults filled in.
func (s *Service) Options() Options { return s.opts }

// publish makes ri the cached state if it is newer than the cached one.
func (s *Service) publish(ri *proto.RoutingInfo) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	if cur := s.cur.Load(); cur != nil && ri.Version <= cur.Version {
		return
	}
	s.cur.Store(ri)
	close(s.changed)
	s.changed = make(chan struct{})
	// Nodes that are up but unknown to this instance (loaded at start or
	// registered through another instance) get a full timeout of grace.
	now := s.opts.Clock.Now()
	s.mu.Lock()
	for _, n := range ri.Nodes {
		if n.State == proto.NodeUp && s.live[n.ID] == nil {
			s.live[n.ID] = &liveNode{seen: now}
		}
	}
	s.mu.Unlock()
}

// update runs fn in a KV transaction over the loaded state, saves what it
// changed and publishes the result. fn must follow kv's rules for bodies
// (it may run more than once; no side effects).
func (s *Service) update(ctx context.Context, fn func(st *state) error) (*proto.RoutingInfo, error) {
	var ri *proto.RoutingInfo
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		ri = nil
		if err := s.fence(tx); err != nil {
			return err
		}
		st, err := loadState(tx)
		if err != nil {
			return err
		}
		if err := fn(st); err != nil {
			return err
		}
		if _, err := st.save(tx); err != nil {
			return err
		}
		ri = st.routing()
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.publish(ri)
	return ri, nil
}

// reload refreshes the cached state from the KV if the KV's version
// differs, and returns the cached state.
func (s *Service) reload(ctx context.Context) (*proto.RoutingInfo, error) {
	cached := s.cur.Load()
	var ri *proto.RoutingInfo
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		ri = nil
		v, err := readVersion(tx)
		if err != nil || v == cached.Version {
			return err
		}
		st, err := loadState(tx)
		if err != nil {
			return err
		}
		ri = st.routing()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mgmtd: reload state: %w", err)
	}
	if ri != nil {
		s.publish(ri)
	}
	return s.cur.Load(), nil
}

// withLive returns a private copy of ri with the live fields filled in.
func (s *Service) withLive(ri *proto.RoutingInfo) *proto.RoutingInfo {
	c := ri.Clone()
	c.ClusterID = s.clusterID
	if s.elect != nil {
		if term := s.elect.leading(time.Now()); term > 0 {
			c.Leader, c.LeaderTerm = s.elect.opts.NodeID, term
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range c.Nodes {
		if l := s.live[c.Nodes[i].ID]; l != nil {
			c.Nodes[i].LastHeartbeat, c.Nodes[i].Metrics = l.heartbeat, l.metrics
		}
	}
	for i := range c.Targets {
		if st, ok := s.stats[c.Targets[i].ID]; ok {
			c.Targets[i].Capacity, c.Targets[i].Used, c.Targets[i].FSID = st.Capacity, st.Used, st.FSID
		}
		if r, ok := s.resyncs[c.Targets[i].ID]; ok && c.Targets[i].State == proto.TargetSyncing {
			c.Targets[i].Resync = &r.stats
		}
	}
	return c
}

// Version returns the routing version of the cached state.
func (s *Service) Version() uint64 { return s.cur.Load().Version }

// GetRouting implements API. A caller that is up to date (since equals the
// cached version) gets nil from memory; since 0 always gets the full info.
// A since newer than the cached version makes the service reread the KV
// first.
func (s *Service) GetRouting(ctx context.Context, since uint64) (*proto.RoutingInfo, error) {
	if f, _ := s.forward(); f != nil {
		if ri, err := f.GetRouting(ctx, since); err == nil || ctx.Err() != nil {
			return ri, err
		}
	}
	return s.getRouting(ctx, since)
}

// getRouting is GetRouting from this instance's copy of the state.
func (s *Service) getRouting(ctx context.Context, since uint64) (*proto.RoutingInfo, error) {
	cur := s.cur.Load()
	if since > cur.Version {
		var err error
		if cur, err = s.reload(ctx); err != nil {
			return nil, err
		}
	}
	if since != 0 && since == cur.Version {
		return nil, nil
	}
	return s.withLive(cur), nil
}

// MaxRoutingWait caps a GetRouting long poll.
const MaxRoutingWait = time.Minute

// WaitRouting is GetRouting that, when since is the current version, waits
// up to wait (at most MaxRoutingWait) for a newer one, and answers nil
// (unchanged) if none came. It waits only while Run runs (waited says
// whether it did): Run's end is what releases waiting callers when the
// node stops, so an RPC server's graceful shutdown never waits for them; a
// service without Run (tests) answers at once, and its callers poll.
func (s *Service) WaitRouting(ctx context.Context, since uint64, wait time.Duration) (ri *proto.RoutingInfo, waited bool, err error) {
	if f, _ := s.forward(); f != nil {
		if ri, waited, err := f.WaitRouting(ctx, since, wait); err == nil || ctx.Err() != nil {
			return ri, waited, err
		}
	}
	if since == 0 || wait <= 0 || !s.running.Load() {
		ri, err := s.getRouting(ctx, since)
		return ri, false, err
	}
	t := time.NewTimer(min(wait, MaxRoutingWait))
	defer t.Stop()
	for {
		s.pubMu.Lock()
		ch := s.changed
		s.pubMu.Unlock()
		ri, err := s.getRouting(ctx, since)
		if err != nil || ri != nil {
			return ri, true, err
		}
		select {
		case <-ch:
		case <-t.C:
			return nil, true, nil
		case <-ctx.Done():
			return nil, true, nil // the caller went away, or the server stops
		case <-s.ended:
			return nil, true, nil
		}
	}
}

// ChainTable returns the chain ids of chain table id, in order (ENOENT if
// there is no such table). The meta service uses it to lay out files.
func (s *Service) ChainTable(ctx context.Context, id uint32) ([]uint32, error) {
	t := s.cur.Load().ChainTable(id)
	if t == nil {
		ri, err := s.reload(ctx)
		if err != nil {
			return nil, err
		}
		if t = ri.ChainTable(id); t == nil {
			return nil, proto.Errorf(proto.ENOENT, "mgmtd: chain table %d", id)
		}
	}
	return slices.Clone(t.Chains), nil
}

// touch records that node id was heard from at now.
func (s *Service) touch(id uint32, now time.Time) {
	s.mu.Lock()
	l := s.live[id]
	if l == nil {
		l = &liveNode{}
		s.live[id] = l
	}
	l.seen, l.heartbeat = now, now
	s.mu.Unlock()
}

// silentSince reports whether node id has not been heard from since
// deadline.
func (s *Service) silentSince(id uint32, deadline time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.live[id]
	return l != nil && l.seen.Before(deadline)
}

// RegisterNode implements API. n.ID must be non-zero, n.Addr non-empty and
// n.Roles a non-empty set of known roles (else EINVAL). Registering an
// unknown id creates the node, up. Registering a known id again (a restart)
// updates its address, roles and hostname if they changed (the id is the
// node's identity; the last registration wins) and counts as a heartbeat:
// a down node comes back up (see the package documentation for its
// targets). A node registers when its process starts, so a registration
// while up is a restart that the heartbeat timeout did not see: its
// targets in chains with another serving member become syncing
// (restarted). Otherwise registering with unchanged fields while up
// changes nothing.
func (s *Service) RegisterNode(ctx context.Context, n proto.Node) (proto.Node, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return proto.Node{}, err
		}
		return f.RegisterNode(ctx, n)
	}
	switch {
	case n.ID == 0:
		return proto.Node{}, proto.Errorf(proto.EINVAL, "mgmtd: register node: id 0")
	case n.Addr == "":
		return proto.Node{}, proto.Errorf(proto.EINVAL, "mgmtd: register node %d: empty address", n.ID)
	case n.Roles == 0 || n.Roles&^proto.RolesAll != 0:
		return proto.Node{}, proto.Errorf(proto.EINVAL, "mgmtd: register node %d: invalid roles %#x", n.ID, uint8(n.Roles))
	}
	now := s.opts.Clock.Now()
	// Heard from now: touch before the transaction so that a concurrent
	// check cannot take the node down again right after it comes up.
	s.touch(n.ID, now)
	var wasDown bool
	ri, err := s.update(ctx, func(st *state) error {
		wasDown = false
		ex := st.nodes[n.ID]
		if ex == nil {
			st.nodes[n.ID] = &proto.Node{ID: n.ID, Roles: n.Roles, Addr: n.Addr, Hostname: n.Hostname, State: proto.NodeUp}
			return nil
		}
		ex.Roles, ex.Addr, ex.Hostname = n.Roles, n.Addr, n.Hostname
		if ex.State != proto.NodeUp {
			wasDown = true
			st.revive(n.ID)
			return nil
		}
		st.restarted(n.ID)
		return nil
	})
	if err != nil {
		return proto.Node{}, err
	}
	if wasDown {
		s.log.Info().Uint32("node", n.ID).Str("addr", n.Addr).Msg("node is up again (registered)")
	}
	out := *ri.Node(n.ID)
	out.LastHeartbeat = now
	return out, nil
}

// revive marks node id up and its offline targets syncing, or serving when
// they have nothing to resync from: no chain, a chain of one, or a chain
// with no serving member of which the target served last (LastServing;
// the chain's other members then resync from it). A chain whose last
// serving member stays away stays unavailable: only that member surely
// holds every acknowledged write (docs/replication.md).
func (st *state) revive(id uint32) {
	st.nodes[id].State = proto.NodeUp
	for _, t := range st.targets {
		if t.NodeID != id || t.State != proto.TargetOffline {
			continue
		}
		t.State = proto.TargetSyncing
		if c := st.chains[t.ChainID]; c == nil || len(c.Targets) == 1 || c.LastServing == t.ID {
			t.State = proto.TargetServing
		}
	}
}

// restarted handles the registration of node id while it is up: its
// process restarted before the heartbeat timeout noticed. What its targets
// knew in memory (writes in flight down their chains) is gone, so each
// target of a chain that has another serving member goes through resync
// (syncing). The only serving member of its chain stays serving: nobody
// holds newer data.
func (st *state) restarted(id uint32) {
	for _, t := range st.targets {
		if t.NodeID != id || t.State != proto.TargetServing {
			continue
		}
		c := st.chains[t.ChainID]
		if c == nil {
			continue
		}
		for _, o := range c.Targets {
			if ot := st.targets[o]; o != t.ID && ot != nil && ot.State == proto.TargetServing {
				t.State = proto.TargetSyncing
				break
			}
		}
	}
}

// markDown marks node id down and its targets offline.
func (st *state) markDown(id uint32) {
	st.nodes[id].State = proto.NodeDown
	for _, t := range st.targets {
		if t.NodeID == id {
			t.State = proto.TargetOffline
		}
	}
}

// RegisterTargets implements API. For each target, NodeID must name a
// registered node (ENOENT) and Path be non-empty (EINVAL); a path is unique
// per node. With ID 0 the target registered on that node with that path is
// returned, or a new one with the next free id is created; with a non-zero
// ID, that target is created, or updated if it exists on the same node
// (its path may change; EEXIST if it belongs to another node or the path
// to another target). A new target is serving if its node is up, offline
// otherwise, and belongs to no chain. All targets are registered in one
// transaction: all or none.
func (s *Service) RegisterTargets(ctx context.Context, ts []proto.Target) ([]proto.Target, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return nil, err
		}
		return f.RegisterTargets(ctx, ts)
	}
	for _, t := range ts {
		if t.NodeID == 0 || t.Path == "" {
			return nil, proto.Errorf(proto.EINVAL, "mgmtd: register target %d: node id and path are required", t.ID)
		}
	}
	ids := make([]uint32, len(ts))
	ri, err := s.update(ctx, func(st *state) error {
		for i, t := range ts {
			n := st.nodes[t.NodeID]
			if n == nil {
				return proto.Errorf(proto.ENOENT, "mgmtd: register target %q: node %d is not registered", t.Path, t.NodeID)
			}
			var byPath *proto.Target
			for _, o := range st.targets {
				if o.NodeID == t.NodeID && o.Path == t.Path {
					byPath = o
				}
			}
			id := t.ID
			switch ex := st.targets[id]; {
			case id == 0 && byPath != nil:
				id = byPath.ID
			case ex != nil && ex.NodeID != t.NodeID:
				return proto.Errorf(proto.EEXIST, "mgmtd: register target %d: it belongs to node %d, not %d", id, ex.NodeID, t.NodeID)
			case byPath != nil && byPath.ID != id:
				return proto.Errorf(proto.EEXIST, "mgmtd: register target %d: node %d path %q is target %d", id, t.NodeID, t.Path, byPath.ID)
			case ex != nil:
				ex.Path = t.Path
			default:
				if id == 0 {
					var err error
					if id, err = nextID(st.targets); err != nil {
						return err
					}
				}
				ts := proto.TargetServing
				if n.State != proto.NodeUp {
					ts = proto.TargetOffline
				}
				st.targets[id] = &proto.Target{ID: id, NodeID: t.NodeID, Path: t.Path, State: ts}
			}
			ids[i] = id
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ri = s.withLive(ri)
	out := make([]proto.Target, len(ids))
	for i, id := range ids {
		out[i] = *ri.Target(id)
	}
	return out, nil
}

// CreateChain implements API. The chain gets the next free chain id and
// version 1. targets must be non-empty, distinct, registered (ENOENT), on
// distinct nodes and in no other chain (EINVAL otherwise). They are kept in
// the given order, except that non-serving targets go after the serving
// ones as always.
func (s *Service) CreateChain(ctx context.Context, targets []uint32) (proto.Chain, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return proto.Chain{}, err
		}
		return f.CreateChain(ctx, targets)
	}
	if len(targets) == 0 {
		return proto.Chain{}, proto.Errorf(proto.EINVAL, "mgmtd: create chain: no targets")
	}
	var id uint32
	ri, err := s.update(ctx, func(st *state) error {
		id = 0
		nodes := map[uint32]uint32{} // node → target
		seen := map[uint32]bool{}
		for _, tid := range targets {
			t := st.targets[tid]
			switch {
			case seen[tid]:
				return proto.Errorf(proto.EINVAL, "mgmtd: create chain: target %d listed twice", tid)
			case t == nil:
				return proto.Errorf(proto.ENOENT, "mgmtd: create chain: no target %d", tid)
			case t.ChainID != 0:
				return proto.Errorf(proto.EINVAL, "mgmtd: create chain: target %d already belongs to chain %d", tid, t.ChainID)
			}
			if o, dup := nodes[t.NodeID]; dup {
				return proto.Errorf(proto.EINVAL, "mgmtd: create chain: targets %d and %d are both on node %d", o, tid, t.NodeID)
			}
			seen[tid], nodes[t.NodeID] = true, tid
		}
		var err error
		if id, err = nextID(st.chains); err != nil {
			return err
		}
		c := &proto.Chain{ID: id, Version: 1, Targets: slices.Clone(targets)}
		for _, tid := range targets {
			st.targets[tid].ChainID = id
		}
		st.chains[id] = c // ordered by save
		return nil
	})
	if err != nil {
		return proto.Chain{}, err
	}
	c := *ri.Chain(id)
	return c, nil
}

// CreateChainTable creates a chain table with the next free id; see
// SetChainTable.
func (s *Service) CreateChainTable(ctx context.Context, chains []uint32) (proto.ChainTable, error) {
	return s.SetChainTable(ctx, 0, chains)
}

// SetChainTable implements API. chains must be non-empty, distinct
// (EINVAL) and exist (ENOENT). id 0 creates a table with the next free id.
// A new table has version 1; replacing the list of an existing table
// increments its version; setting the list it already has changes nothing.
// Chains may be added to, reordered in or removed from a table: file
// layouts record the chain ids they use, not positions in the table.
func (s *Service) SetChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return proto.ChainTable{}, err
		}
		return f.SetChainTable(ctx, id, chains)
	}
	if len(chains) == 0 {
		return proto.ChainTable{}, proto.Errorf(proto.EINVAL, "mgmtd: chain table %d: no chains", id)
	}
	var tid uint32
	ri, err := s.update(ctx, func(st *state) error {
		tid = id
		if err := st.checkChainList(id, chains); err != nil {
			return err
		}
		if tid == 0 {
			var err error
			if tid, err = nextID(st.tables); err != nil {
				return err
			}
		}
		t := st.tables[tid]
		switch {
		case t == nil:
			st.tables[tid] = &proto.ChainTable{ID: tid, Version: 1, Chains: slices.Clone(chains)}
		case !slices.Equal(t.Chains, chains):
			t.Chains = slices.Clone(chains)
			t.Version++
		}
		return nil
	})
	if err != nil {
		return proto.ChainTable{}, err
	}
	return *ri.ChainTable(tid), nil
}

// AddToChainTable implements API. id must be non-zero and chains distinct
// (EINVAL) and existing (ENOENT). Chains the table lists keep their places;
// the others are appended in the given order. A new table has version 1;
// appending increments the version; adding only listed chains changes
// nothing. Unlike a GetRouting followed by SetChainTable, nothing another
// caller adds in between is lost.
func (s *Service) AddToChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return proto.ChainTable{}, err
		}
		return f.AddToChainTable(ctx, id, chains)
	}
	if id == 0 {
		return proto.ChainTable{}, proto.Errorf(proto.EINVAL, "mgmtd: add to chain table: table id 0")
	}
	if len(chains) == 0 {
		return proto.ChainTable{}, proto.Errorf(proto.EINVAL, "mgmtd: add to chain table %d: no chains", id)
	}
	ri, err := s.update(ctx, func(st *state) error {
		if err := st.checkChainList(id, chains); err != nil {
			return err
		}
		st.addToTable(id, chains)
		return nil
	})
	if err != nil {
		return proto.ChainTable{}, err
	}
	return *ri.ChainTable(id), nil
}

// addToTable appends to table id the chains it does not list (creating it
// at version 1), version +1 if any was added.
func (st *state) addToTable(id uint32, chains []uint32) {
	t := st.tables[id]
	if t == nil {
		st.tables[id] = &proto.ChainTable{ID: id, Version: 1, Chains: slices.Clone(chains)}
		return
	}
	n := len(t.Chains)
	for _, c := range chains {
		if !slices.Contains(t.Chains[:n], c) {
			t.Chains = append(t.Chains, c)
		}
	}
	if len(t.Chains) > n {
		t.Version++
	}
}

// checkChainList checks the chains given for table id: distinct (EINVAL)
// and existing (ENOENT).
func (st *state) checkChainList(id uint32, chains []uint32) error {
	seen := map[uint32]bool{}
	for _, c := range chains {
		if seen[c] {
			return proto.Errorf(proto.EINVAL, "mgmtd: chain table %d: chain %d listed twice", id, c)
		}
		if st.chains[c] == nil {
			return proto.Errorf(proto.ENOENT, "mgmtd: chain table %d: no chain %d", id, c)
		}
		seen[c] = true
	}
	return nil
}

// SetTargetState implements API: an admin's (and later the resync
// protocol's) way to change a target's state. Any target may be set
// offline; serving or syncing needs its node up (EINVAL otherwise). The
// target's chain is reordered and its version incremented as for any
// state change; setting the current state changes nothing.
func (s *Service) SetTargetState(ctx context.Context, id uint32, ts proto.TargetState) error {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return err
		}
		return f.SetTargetState(ctx, id, ts)
	}
	return s.setTargetState(ctx, id, ts, 0)
}

// Synced ends the resync of target id: it becomes serving if it is
// syncing and its chain is still at version cv, in the same transaction
// (ChainVersionMismatch otherwise: the chain changed while the resync ran,
// which must start over).
func (s *Service) Synced(ctx context.Context, id uint32, cv uint32) error {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return err
		}
		return f.Synced(ctx, id, cv)
	}
	return s.setTargetState(ctx, id, proto.TargetServing, cv)
}

func (s *Service) setTargetState(ctx context.Context, id uint32, ts proto.TargetState, cv uint32) error {
	if !ts.Valid() {
		return proto.Errorf(proto.EINVAL, "mgmtd: target %d: invalid state %d", id, ts)
	}
	_, err := s.update(ctx, func(st *state) error {
		t := st.targets[id]
		if t == nil {
			return proto.Errorf(proto.ENOENT, "mgmtd: no target %d", id)
		}
		if ts != proto.TargetOffline && st.nodes[t.NodeID].State != proto.NodeUp {
			return proto.Errorf(proto.EINVAL, "mgmtd: target %d cannot be %v: node %d is down", id, ts, t.NodeID)
		}
		if cv != 0 {
			c := st.chains[t.ChainID]
			if t.State != proto.TargetSyncing || c == nil || c.Version != cv {
				return proto.Errorf(proto.ChainVersionMismatch, "mgmtd: target %d is %v in chain %d; the resync that ends was of chain version %d",
					id, t.State, t.ChainID, cv)
			}
		}
		t.State = ts
		return nil
	})
	return err
}

// Heartbeat implements API. The node must be registered (ENOENT). Stats of
// targets that do not belong to the node are ignored. A heartbeat from a
// node that is down brings it back up (see the package documentation);
// otherwise a heartbeat touches only memory.
func (s *Service) Heartbeat(ctx context.Context, req proto.HeartbeatReq) (proto.HeartbeatResp, error) {
	if f, err := s.forward(); f != nil || err != nil {
		if err != nil {
			return proto.HeartbeatResp{}, err
		}
		return f.Heartbeat(ctx, req)
	}
	cur := s.cur.Load()
	n := cur.Node(req.NodeID)
	if n == nil {
		var err error
		if cur, err = s.reload(ctx); err != nil {
			return proto.HeartbeatResp{}, err
		}
		if n = cur.Node(req.NodeID); n == nil {
			return proto.HeartbeatResp{}, proto.Errorf(proto.ENOENT, "mgmtd: heartbeat: node %d is not registered", req.NodeID)
		}
	}
	now := s.opts.Clock.Now()
	s.touch(req.NodeID, now)
	s.mu.Lock()
	s.live[req.NodeID].metrics = req.Metrics
	for _, ts := range req.Targets {
		if t := cur.Target(ts.ID); t != nil && t.NodeID == req.NodeID {
			s.stats[ts.ID] = ts
		}
	}
	for id, r := range s.resyncs {
		if r.node == req.NodeID {
			delete(s.resyncs, id)
		}
	}
	for _, rs := range req.Resyncs {
		s.resyncs[rs.Target] = resyncReport{node: req.NodeID, stats: rs}
	}
	s.mu.Unlock()
	if n.State != proto.NodeUp {
		var revived bool
		_, err := s.update(ctx, func(st *state) error {
			revived = false
			if n := st.nodes[req.NodeID]; n != nil && n.State != proto.NodeUp {
				revived = true
				st.revive(req.NodeID)
			}
			return nil
		})
		if err != nil {
			return proto.HeartbeatResp{}, err
		}
		if revived {
			s.log.Info().Uint32("node", req.NodeID).Msg("node is up again (heartbeat)")
		}
	}
	return proto.HeartbeatResp{RoutingVersion: s.cur.Load().Version, LeaseMillis: uint32(s.opts.HeartbeatTimeout.Milliseconds())}, nil
}

// CheckHeartbeats marks down every node that is up and has not been heard
// from for HeartbeatTimeout, with the consequences described in the package
// documentation, in one transaction. Run calls it every CheckInterval; it
// is exported for tests and tools.
func (s *Service) CheckHeartbeats(ctx context.Context) error {
	now := s.opts.Clock.Now()
	deadline := now.Add(-s.opts.HeartbeatTimeout)
	var silent []uint32
	for _, n := range s.cur.Load().Nodes {
		if n.State == proto.NodeUp && s.silentSince(n.ID, deadline) {
			silent = append(silent, n.ID)
		}
	}
	if len(silent) == 0 {
		return nil
	}
	var down []uint32
	_, err := s.update(ctx, func(st *state) error {
		down = down[:0]
		for _, id := range silent {
			// Re-check against the KV (another instance or a
			// registration may have changed it) and against a heartbeat
			// that arrived meanwhile.
			if n := st.nodes[id]; n != nil && n.State == proto.NodeUp && s.silentSince(id, deadline) {
				st.markDown(id)
				down = append(down, id)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mgmtd: check heartbeats: %w", err)
	}
	s.counters.nodesMarkedDown.Add(int64(len(down)))
	for _, id := range down {
		s.log.Warn().Uint32("node", id).Dur("timeout", s.opts.HeartbeatTimeout).Msg("node missed its heartbeats: down, its targets offline")
	}
	return nil
}

// Run performs failure detection (CheckHeartbeats every CheckInterval) and
// refreshes the cached state from the KV every RefreshInterval, until ctx
// ends. Errors are logged and retried at the next tick. It returns nil
// when ctx ends. Without Options.Elect, run only one instance per cluster
// (see the package documentation); with it, failure detection is the
// elected leader's (Campaign).
func (s *Service) Run(ctx context.Context) error {
	// The node is stopping: long polls answer now, so the RPC server's
	// graceful shutdown does not wait for them.
	s.running.Store(true)
	defer s.endOnce.Do(func() { close(s.ended) })
	check := time.NewTicker(s.opts.CheckInterval)
	defer check.Stop()
	refresh := time.NewTicker(s.opts.RefreshInterval)
	defer refresh.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-check.C:
			if s.elect != nil {
				continue // the leader checks, in Campaign
			}
			if err := s.CheckHeartbeats(ctx); err != nil && ctx.Err() == nil {
				s.log.Error().Err(err).Msg("heartbeat check failed")
			}
		case <-refresh.C:
			if _, err := s.reload(ctx); err != nil && ctx.Err() == nil {
				s.log.Error().Err(err).Msg("routing refresh failed")
			}
		}
	}
}

// Capacity reports the cluster's storage capacity and free bytes from the
// targets' last heartbeat stats (the meta service's StatFS). Each chain
// counts once, as its smallest member (its data is on every member);
// targets in no chain, and chains without stats, are not counted. Targets
// that share a filesystem (same node and FSID) share its space: a chain
// whose members' filesystems were all counted with earlier chains adds
// nothing.
func (s *Service) Capacity(ctx context.Context) (total, free uint64, err error) {
	f, err := s.forward()
	if err != nil {
		return 0, 0, err
	}
	var ri *proto.RoutingInfo
	if f != nil {
		if ri, err = f.GetRouting(ctx, 0); err != nil {
			return 0, 0, err
		}
	} else {
		ri = s.withLive(s.cur.Load())
	}
	total, free = capacityOf(ri)
	return total, free, nil
}

// capacityOf is Capacity over routing info with its live fields.
func capacityOf(ri *proto.RoutingInfo) (total, free uint64) {
	type fsKey struct {
		node uint32
		fsid uint64
	}
	counted := map[fsKey]bool{}
	for _, c := range ri.Chains {
		var ctotal, cfree uint64
		var fss []fsKey
		fresh := false
		for i, id := range c.Targets {
			t := ri.Target(id)
			if t == nil || t.Capacity == 0 {
				ctotal, cfree, fresh = 0, 0, false
				break
			}
			k := fsKey{t.NodeID, t.FSID}
			fresh = fresh || t.FSID == 0 || !counted[k]
			if t.FSID != 0 {
				fss = append(fss, k)
			}
			f := t.Capacity - min(t.Used, t.Capacity)
			if i == 0 || t.Capacity < ctotal {
				ctotal = t.Capacity
			}
			if i == 0 || f < cfree {
				cfree = f
			}
		}
		if !fresh {
			continue
		}
		for _, k := range fss {
			counted[k] = true
		}
		total += ctotal
		free += cfree
	}
	return total, free
}
