package mgmtd

import (
	"sync/atomic"

	"fff/internal/proto"
)

// Counters is what an mgmtd instance reports about the cluster and itself
// (fffd's metrics).
type Counters struct {
	// Routing is this instance's routing state with its live fields
	// (heartbeats, usage, resync progress). A follower's lags the
	// leader's by up to its refresh interval.
	Routing *proto.RoutingInfo
	// Leading: this instance is the leader (always, without election);
	// Term is the leader's term as this instance last saw it (0 without
	// election).
	Leading bool
	Term    uint64
	// NodesMarkedDown counts the nodes this instance declared down after
	// missed heartbeats: each one takes its targets out of their chains.
	NodesMarkedDown int64
}

// counters are the atomic fields behind Counters.
type counters struct {
	nodesMarkedDown atomic.Int64
}

// Counters reports the instance's view of the cluster.
func (s *Service) Counters() Counters {
	rec, leading := s.Leader()
	return Counters{Routing: s.withLive(s.cur.Load()), Leading: leading, Term: rec.Term,
		NodesMarkedDown: s.counters.nodesMarkedDown.Load()}
}

// ChainHealth classifies a chain: "healthy" when every member serves,
// "degraded" when some serve and others do not (their data is at risk
// until they resync), "unavailable" when none serves.
func ChainHealth(ri *proto.RoutingInfo, c *proto.Chain) string {
	serving := 0
	for _, id := range c.Targets {
		if t := ri.Target(id); t != nil && t.State == proto.TargetServing {
			serving++
		}
	}
	switch {
	case serving == len(c.Targets):
		return "healthy"
	case serving > 0:
		return "degraded"
	}
	return "unavailable"
}
