package storage

import (
	"fff/internal/uring"
	"fff/server/storage/chunkengine"
)

// Counters is what a storage node counts about itself (fffd's metrics;
// Stats is the usage heartbeats carry, TargetCounters the per-target
// figures).
type Counters struct {
	// Ring is the engines' io_uring; HasRing is false on a node without
	// targets.
	Ring    uring.Stats
	HasRing bool
	// GC: records collected (applied and acknowledged), passes that
	// failed, and records left in the queue after the last whole scan.
	GCCollected, GCFailures, GCBacklog int64
	// ResyncsRunning counts the resyncs this node sends now (Resyncs has
	// each one's progress).
	ResyncsRunning int
}

// TargetCounters are one target's engine counters and filesystem space.
type TargetCounters struct {
	ID       uint32
	Engine   chunkengine.Stats
	Usage    chunkengine.Usage // zero if statfs failed (UsageErr)
	UsageErr error
}

// Counters reports the node's counters; it touches no disk.
func (s *Service) Counters() Counters {
	st := Counters{
		GCCollected: s.gc.collected.Load(),
		GCFailures:  s.gc.failures.Load(),
		GCBacklog:   s.gc.backlog.Load(),
	}
	if s.ring != nil {
		st.Ring, st.HasRing = s.ring.Stats(), true
	}
	s.rs.mu.Lock()
	st.ResyncsRunning = len(s.rs.run)
	s.rs.mu.Unlock()
	return st
}

// TargetCounters reports each target's engine counters and its
// filesystem's space (a statfs per target).
func (s *Service) TargetCounters() []TargetCounters {
	out := make([]TargetCounters, 0, len(s.ids))
	for _, id := range s.ids {
		t := s.targets[id]
		ts := TargetCounters{ID: id, Engine: t.eng.Stats()}
		ts.Usage, ts.UsageErr = t.eng.Usage()
		out = append(out, ts)
	}
	return out
}
