package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/capability"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/uring"
	"fff/server/storage/chunkengine"
)

// Routing provides the node's current routing info: a *cluster.RoutingCache.
type Routing interface {
	// Get returns the newest routing info (nil before the first refresh).
	Get() *proto.RoutingInfo
	// Refresh fetches the routing info now.
	Refresh(ctx context.Context) error
}

// TargetConfig is one storage target of the node: its id (from mgmtd) and
// directory.
type TargetConfig struct {
	ID   uint32
	Path string
}

// Options configure New.
type Options struct {
	// NodeID is this node's id.
	NodeID uint32
	// Targets are the node's targets; each gets a chunk engine.
	Targets []TargetConfig
	// Routing is checked on every request (chain versions, heads, states).
	Routing Routing
	// Ring carries the engines' disk IO; nil: the service creates one ring
	// that all its engines share (and closes it on Close), so the targets'
	// IOs are submitted together and one reaper serves them all.
	Ring *uring.Ring
	// Engine is the template of the engines' options (Ring and Logger are
	// set from the fields above).
	Engine chunkengine.Options
	// MaxPayload bounds a read response's payload; it should be the RPC
	// server's limit (default rpc.DefaultMaxPayload).
	MaxPayload int
	// Logger receives the service's logs.
	Logger zerolog.Logger
	// Capabilities checks the capability of every chunk request from a
	// caller other than the admin (docs/security.md#capabilities). Nil:
	// only the admin may use the node's chunks.
	Capabilities *capability.Key
	// Unchecked serves chunk requests without capabilities, as before
	// they existed: only for measuring what the checks cost (make bench).
	Unchecked bool
	// Forwarder reaches the successors of the node's targets on other
	// nodes (chain replication). Nil: only chains whose members are all
	// on this node replicate; forwarding to another node fails.
	Forwarder Forwarder
	// ForwardTimeout bounds how long an update waits for its successor
	// (DefaultForwardTimeout if 0).
	ForwardTimeout time.Duration
}

// Service is the storage service of one node.
type Service struct {
	nodeID     uint32
	routing    Routing
	maxPayload int
	log        zerolog.Logger
	targets    map[uint32]*target
	ids        []uint32    // sorted target ids
	bufs       bufPool     // read response buffers
	ownRing    *uring.Ring // the engines' shared ring, if the service made it
	ring       *uring.Ring // the engines' shared ring (Stats)
	caps       *capability.Key
	unchecked  bool
	fwd        Forwarder
	fwdTimeout time.Duration
	rs         resyncs
	rp         repairs
	gc         gcCounters
	bg         context.Context // ends on Close: background repairs
	stopBg     context.CancelFunc
	epoch      time.Time    // lease's clock origin (monotonic)
	lease      atomic.Int64 // lease end, ns after epoch; 0: none yet
	closeOnce  sync.Once
	closeErr   error
}

// repairs tracks the repairs reads asked for, one per chunk at a time.
type repairs struct {
	mu   sync.Mutex
	busy map[chunkengine.ChunkID]bool
	wg   sync.WaitGroup
}

type target struct {
	id    uint32
	path  string
	eng   *chunkengine.Engine
	locks chunkLocks // held by chain updates (chain.go)
	pend  pendingSet // chunks with an update not yet acknowledged downstream
}

// New opens a chunk engine per target.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Routing == nil {
		return nil, errors.New("storage: no routing")
	}
	s := &Service{
		nodeID:     opts.NodeID,
		routing:    opts.Routing,
		maxPayload: opts.MaxPayload,
		log:        opts.Logger,
		targets:    map[uint32]*target{},
		caps:       opts.Capabilities,
		unchecked:  opts.Unchecked,
		fwd:        opts.Forwarder,
		fwdTimeout: opts.ForwardTimeout,
		epoch:      time.Now(),
	}
	s.bg, s.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	if s.fwdTimeout <= 0 {
		s.fwdTimeout = DefaultForwardTimeout
	}
	if s.maxPayload <= 0 {
		s.maxPayload = rpc.DefaultMaxPayload
	}
	if opts.Ring == nil && len(opts.Targets) > 0 {
		r, err := uring.NewRing(0)
		if err != nil {
			return nil, fmt.Errorf("storage: %w", err)
		}
		s.ownRing, opts.Ring = r, r
	}
	s.ring = opts.Ring
	for _, tc := range opts.Targets {
		if _, dup := s.targets[tc.ID]; dup {
			s.Close()
			return nil, proto.Errorf(proto.EINVAL, "storage: target %d listed twice", tc.ID)
		}
		eo := opts.Engine
		eo.Ring = opts.Ring
		eo.Logger = opts.Logger.With().Uint32("target", tc.ID).Logger()
		eng, err := chunkengine.Open(ctx, tc.Path, eo)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("storage: target %d (%s): %w", tc.ID, tc.Path, err)
		}
		s.targets[tc.ID] = &target{id: tc.ID, path: tc.Path, eng: eng}
		s.ids = append(s.ids, tc.ID)
	}
	slices.Sort(s.ids)
	return s, nil
}

// Close closes the engines.
func (s *Service) Close() error {
	s.closeOnce.Do(func() {
		s.stopBg()
		s.rp.wg.Wait()
		for _, t := range s.targets {
			if err := t.eng.Close(); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
		}
		if s.ownRing != nil {
			if err := s.ownRing.Close(); err != nil && s.closeErr == nil {
				s.closeErr = err
			}
		}
	})
	return s.closeErr
}

// Targets returns the ids of the node's targets, sorted.
func (s *Service) Targets() []uint32 { return slices.Clone(s.ids) }

// Engine returns target id's chunk engine, or nil (for tests and tools).
func (s *Service) Engine(id uint32) *chunkengine.Engine {
	if t := s.targets[id]; t != nil {
		return t.eng
	}
	return nil
}

// Stats reports the targets' usage, for heartbeats, with the identity of
// each target's filesystem (targets on one filesystem share its space).
// Targets whose statfs fails are left out (and logged).
func (s *Service) Stats() []proto.TargetStats {
	out := make([]proto.TargetStats, 0, len(s.ids))
	for _, id := range s.ids {
		u, err := s.targets[id].eng.Usage()
		if err != nil {
			s.log.Warn().Err(err).Uint32("target", id).Msg("target usage")
			continue
		}
		out = append(out, proto.TargetStats{ID: id, Capacity: u.Capacity, Used: u.Used, FSID: u.FSID})
	}
	return out
}

// op is what a request does to a chunk, for the routing checks.
type op int

const (
	opRead op = iota
	opWrite
)

// check validates ref against the routing info (see the package
// documentation) and returns its target. *refreshed says whether the
// routing was already refreshed for this request; check refreshes it (once)
// when the caller knows a newer chain version or a chain the node does not.
func (s *Service) check(ctx context.Context, ref proto.ChunkRef, o op, refreshed *bool) (*target, error) {
	t := s.targets[ref.TargetID]
	if t == nil {
		return nil, proto.Errorf(proto.EINVAL, "storage: node %d: target %d: not my target", s.nodeID, ref.TargetID)
	}
	if err := s.fenced(); err != nil {
		return nil, err
	}
	ri, chain, err := s.chainAt(ctx, ref, refreshed)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(chain.Targets, ref.TargetID) {
		return nil, proto.Errorf(proto.EINVAL, "storage: target %d is not in chain %d", ref.TargetID, ref.ChainID)
	}
	if o == opWrite && chain.Targets[0] != ref.TargetID {
		return nil, proto.Errorf(proto.NotHead, "storage: target %d is not the head of chain %d (%d is)",
			ref.TargetID, ref.ChainID, chain.Targets[0])
	}
	// Reads need a serving target; so do writes, which only a serving head
	// takes (a head that is not serving heads a chain with no serving
	// member: nothing may be acknowledged).
	if ti := ri.Target(ref.TargetID); ti == nil || ti.State != proto.TargetServing {
		state := "unknown"
		if ti != nil {
			state = ti.State.String()
		}
		return nil, proto.Errorf(proto.TargetNotServing, "storage: target %d is %s", ref.TargetID, state)
	}
	return t, nil
}

// Lease records until when the node may serve on its routing info
// (cluster.HeartbeatOptions.Lease: a heartbeat got through). Until the
// first lease the node is not fenced (tests, and a node without mgmtd's
// leases).
func (s *Service) Lease(until time.Time) {
	s.lease.Store(max(int64(until.Sub(s.epoch)), 1))
}

// fenced refuses requests once the node's lease ran out: mgmtd may have
// declared it down (a stopped process, a cut link, a stalled disk) and
// given its chains to others, so its routing may be stale and its data
// too. A heartbeat that gets through renews the lease with fresh routing.
func (s *Service) fenced() error {
	end := s.lease.Load()
	if end == 0 {
		return nil
	}
	if over := time.Since(s.epoch) - time.Duration(end); over > 0 {
		return proto.Errorf(proto.TargetNotServing, "storage: node %d has not reached mgmtd for longer than its lease (%v over): fenced until a heartbeat gets through", s.nodeID, over.Round(time.Millisecond))
	}
	return nil
}

func chunkID(ref proto.ChunkRef) chunkengine.ChunkID {
	return chunkengine.ChunkID{Ino: ref.Ino, Index: ref.Index}
}

func isNotFound(err error) bool { return proto.CodeOf(err) == proto.ENOENT }
