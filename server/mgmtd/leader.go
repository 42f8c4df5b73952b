package mgmtd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
	"fff/server/kv"
)

// Leader election (several mgmtd over one shared KV, docs/cluster.md).
//
// The leader holds a lease recorded in the KV under keyLeader: its term,
// node, address and a beat counter it increments every Lease/3. The lease
// needs no synchronized clocks, only clocks that run at the same rate: a
// candidate takes over only after it has seen the same record (term and
// beat) for a whole Lease on its own clock, by a transaction that still
// finds that record, and the leader counts its lease from the *start* of
// its last successful renewal, ending it LeaseMargin early. So the old
// leader has stopped acting before a new one can win, even when the old
// one is partitioned away and cannot tell.
//
// The term also fences every write: while elections run, each mgmtd
// transaction checks in the KV that the record still names this instance
// with its term (update), so a deposed leader that has not noticed yet
// cannot change the routing.
//
// A new leader knows no heartbeat yet: every node that is up gets a full
// HeartbeatTimeout of grace from the take-over (publish), so none is marked
// down for the silence of the election. Followers forward every API call to
// the leader (Options.Elect.Dial); without a reachable leader GetRouting
// answers from the follower's copy of the KV state and the rest fail with
// proto.Unavailable, which callers retry.

// keyLeader is outside KeyPrefix on purpose: loadState ranges over the
// kinds under KeyPrefix, and renewals must not conflict with every mgmtd
// transaction.
var keyLeader = []byte("election/mgmtd")

// Defaults of ElectOptions.
const (
	DefaultLease = 3 * time.Second
)

// ElectOptions make a Service one of several over a shared KV.
type ElectOptions struct {
	// NodeID and Addr are this instance's node and RPC address, recorded
	// in the lease and given to followers.
	NodeID uint32
	Addr   string
	// Lease is how long a leader's lease lasts without renewal (default
	// DefaultLease); a take-over happens within about Lease plus a quarter
	// of it after the leader dies. It must be shorter than the heartbeat
	// timeout.
	Lease time.Duration
	// Dial returns the API of the mgmtd at addr (a cluster.Client with the
	// admin token) and how to release it.
	Dial func(addr string) (Remote, io.Closer)
}

// Remote is the leader's API as a follower reaches it (cluster.Client).
type Remote interface {
	API
	WaitRouting(ctx context.Context, since uint64, wait time.Duration) (*proto.RoutingInfo, bool, error)
	PlaceChains(ctx context.Context, table uint32, replicas int) (proto.PlaceChainsResp, error)
	Synced(ctx context.Context, id uint32, cv uint32) error
}

// LeaderRecord is the lease in the KV.
type LeaderRecord struct {
	Term uint64 `msgpack:"term"`
	Node uint32 `msgpack:"node"`
	Addr string `msgpack:"addr"`
	Beat uint64 `msgpack:"beat"`
}

func readLeader(tx kv.ReadTxn) (LeaderRecord, error) {
	var r LeaderRecord
	v, err := tx.Get(keyLeader)
	if err != nil || v == nil {
		return r, err
	}
	if err := msgpack.Unmarshal(v, &r); err != nil {
		return r, fmt.Errorf("mgmtd: corrupt leader record: %w (%w)", err, proto.ErrIO)
	}
	return r, nil
}

func writeLeader(tx kv.Txn, r LeaderRecord) error {
	b, err := msgpack.Marshal(&r)
	if err != nil {
		return err
	}
	return tx.Set(keyLeader, b)
}

// election is a Service's view of the election.
type election struct {
	opts ElectOptions

	mu      sync.Mutex
	term    uint64 // this instance leads with term while > 0
	until   time.Time
	leader  LeaderRecord // the last record seen
	remote  Remote
	rclose  io.Closer
	remAddr string
}

// errNotLeader fences a write of a deposed leader.
var errNotLeader = errors.New("mgmtd: this instance is not the leader")

// leading returns the term this instance leads with, 0 if it does not (or
// its lease may have run out).
func (e *election) leading(now time.Time) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.term > 0 && now.Before(e.until) {
		return e.term
	}
	return 0
}

// forward returns the leader's API, nil when this instance leads.
func (s *Service) forward() (Remote, error) {
	e := s.elect
	if e == nil || e.leading(time.Now()) > 0 {
		return nil, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	l := e.leader
	if l.Term == 0 || l.Node == e.opts.NodeID || l.Addr == "" {
		return nil, proto.Errorf(proto.Unavailable, "mgmtd: no leader elected yet; retry")
	}
	if e.remAddr != l.Addr {
		if e.rclose != nil {
			e.rclose.Close()
		}
		e.remote, e.rclose = e.opts.Dial(l.Addr)
		e.remAddr = l.Addr
	}
	return e.remote, nil
}

// Leader returns the last leader record this instance saw and whether it
// is this instance (with a live lease).
func (s *Service) Leader() (LeaderRecord, bool) {
	if s.elect == nil {
		return LeaderRecord{}, true
	}
	e := s.elect
	lead := e.leading(time.Now()) > 0
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leader, lead
}

// fence checks inside a transaction that this instance still holds the
// lease with its term.
func (s *Service) fence(tx kv.ReadTxn) error {
	if s.elect == nil {
		return nil
	}
	term := s.elect.leading(time.Now())
	if term == 0 {
		return errNotLeader
	}
	r, err := readLeader(tx)
	if err != nil {
		return err
	}
	if r.Term != term || r.Node != s.elect.opts.NodeID {
		return errNotLeader
	}
	return nil
}

// Campaign runs the election until ctx ends (Options.Elect; without it,
// it returns at once): it follows, takes over an expired or missing lease,
// and while it leads renews the lease and runs failure detection. Start it
// before anything calls the service: until a leader is known, calls that
// must go to the leader fail with proto.Unavailable.
func (s *Service) Campaign(ctx context.Context) error {
	e := s.elect
	if e == nil {
		return nil
	}
	defer func() {
		e.mu.Lock()
		if e.rclose != nil {
			e.rclose.Close()
		}
		e.remote, e.rclose, e.remAddr = nil, nil, ""
		e.mu.Unlock()
	}()
	poll := e.opts.Lease / 4
	var seen LeaderRecord
	var seenAt time.Time
	for {
		var rec LeaderRecord
		err := s.db.View(ctx, func(tx kv.ReadTxn) error {
			var err error
			rec, err = readLeader(tx)
			return err
		})
		now := time.Now()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn().Err(err).Msg("reading the leader lease")
			}
		case rec != seen || seenAt.IsZero():
			seen, seenAt = rec, now
			e.mu.Lock()
			e.leader = rec
			e.mu.Unlock()
			if rec.Term == 0 {
				s.takeOver(ctx, rec)
			}
		case now.Sub(seenAt) >= e.opts.Lease:
			s.log.Info().Uint32("leader", rec.Node).Uint64("term", rec.Term).Msg("the mgmtd leader's lease ran out; taking over")
			s.takeOver(ctx, rec)
			seenAt = time.Time{}
		}
		// Run refreshes the routing on its own ticks; followers need the
		// KV's state for GetRouting when the leader is unreachable.
		if err := sleepCtx(ctx, poll); err != nil {
			return nil
		}
	}
}

// takeOver tries to replace the lease record old by one naming this
// instance with the next term, and leads if it succeeds.
func (s *Service) takeOver(ctx context.Context, old LeaderRecord) {
	e := s.elect
	start := time.Now()
	next := LeaderRecord{Term: old.Term + 1, Node: e.opts.NodeID, Addr: e.opts.Addr}
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		cur, err := readLeader(tx)
		if err != nil {
			return err
		}
		if cur != old {
			return errNotLeader
		}
		return writeLeader(tx, next)
	})
	if err != nil {
		if !errors.Is(err, errNotLeader) && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("taking the mgmtd lease")
		}
		return
	}
	s.lead(ctx, next, start)
}

// leaseMargin is how much earlier than its lease a leader stops acting,
// for clock rate differences and scheduling delays.
func leaseMargin(lease time.Duration) time.Duration { return lease / 5 }

// lead renews the lease and runs failure detection until the lease is
// lost or ctx ends.
func (s *Service) lead(ctx context.Context, rec LeaderRecord, start time.Time) {
	e := s.elect
	margin := leaseMargin(e.opts.Lease)
	e.mu.Lock()
	e.term, e.until, e.leader = rec.Term, start.Add(e.opts.Lease-margin), rec
	e.mu.Unlock()
	// A full timeout of grace for every node: the heartbeats of the
	// election went nowhere.
	s.graceAll()
	if _, err := s.reload(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn().Err(err).Msg("loading the routing after taking the lease")
	}
	s.log.Info().Uint64("term", rec.Term).Msg("mgmtd leader")
	defer func() {
		e.mu.Lock()
		e.term = 0
		e.mu.Unlock()
		s.log.Info().Uint64("term", rec.Term).Msg("no longer the mgmtd leader")
	}()
	renew := time.NewTicker(e.opts.Lease / 3)
	defer renew.Stop()
	check := time.NewTicker(s.opts.CheckInterval)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-renew.C:
			start := time.Now()
			err := s.db.Update(ctx, func(tx kv.Txn) error {
				cur, err := readLeader(tx)
				if err != nil {
					return err
				}
				if cur.Term != rec.Term || cur.Node != rec.Node {
					return errNotLeader
				}
				cur.Beat++
				return writeLeader(tx, cur)
			})
			switch {
			case errors.Is(err, errNotLeader):
				return
			case err != nil:
				if ctx.Err() == nil {
					s.log.Warn().Err(err).Msg("renewing the mgmtd lease")
				}
				if e.leading(time.Now()) == 0 {
					return
				}
			default:
				e.mu.Lock()
				e.until = start.Add(e.opts.Lease - margin)
				e.mu.Unlock()
			}
		case <-check.C:
			if e.leading(time.Now()) == 0 {
				return
			}
			if err := s.CheckHeartbeats(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, errNotLeader) {
				s.log.Error().Err(err).Msg("heartbeat check failed")
			}
		}
	}
}

// graceAll restarts the silence clock of every node at now.
func (s *Service) graceAll() {
	now := s.opts.Clock.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.live {
		s.live[id].seen = now
	}
	for _, n := range s.cur.Load().Nodes {
		if s.live[n.ID] == nil {
			s.live[n.ID] = &liveNode{seen: now}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
