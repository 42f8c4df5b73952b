package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"fff/internal/proto"
)

// Health states of `fff status`, and its exit statuses. 1 stays "cannot
// reach the cluster" and 2 a usage error, as for every command.
const (
	healthHealthy     = "healthy"     // exit 0
	healthDegraded    = "degraded"    // exit 3: serving, with less redundancy or headroom than configured
	healthUnavailable = "unavailable" // exit 4: some data or the namespace cannot be served

	exitDegraded    = 3
	exitUnavailable = 4

	// diskFullWarn is the share of a target's filesystem in use from
	// which status warns.
	diskFullWarn = 0.90
	// clockSkewWarn is the difference between this host's clock and
	// mgmtd's beyond which status warns (heartbeat times, leases and
	// write sessions assume the clocks agree to well under a second).
	clockSkewWarn = time.Second
)

// healthJSON is the summary at the top of `fff status`: a state and why,
// in words.
type healthJSON struct {
	State   string   `json:"state"`
	Reasons []string `json:"reasons"`
}

// resyncRate is the progress of one resync between two looks, for its
// ETA.
type resyncRate struct {
	chunksPerSec float64
	left         int64
}

// assessHealth judges st. rates are the resyncs' speeds by syncing target
// (may be empty); skew is this host's clock minus mgmtd's, if known.
func assessHealth(st *clusterStatus, rates map[uint32]resyncRate, skew *time.Duration) healthJSON {
	h := healthJSON{State: healthHealthy, Reasons: []string{}}
	worse := func(state, reason string) {
		if state == healthUnavailable || h.State == healthHealthy {
			h.State = state
		}
		h.Reasons = append(h.Reasons, reason)
	}
	ri := st.routing
	for _, n := range ri.Nodes {
		if n.State != proto.NodeUp {
			worse(healthDegraded, fmt.Sprintf("node %d (%s, %s) is down", n.ID, n.Roles, n.Addr))
		}
	}
	for _, c := range ri.Chains {
		var serving int
		var behind []string
		for _, id := range c.Targets {
			t := ri.Target(id)
			switch {
			case t == nil:
				behind = append(behind, fmt.Sprintf("target %d unknown", id))
			case t.State == proto.TargetServing:
				serving++
			case t.State == proto.TargetSyncing:
				behind = append(behind, fmt.Sprintf("target %d syncing%s", id, resyncProgress(t, rates[id])))
			default:
				behind = append(behind, fmt.Sprintf("target %d offline", id))
			}
		}
		switch {
		case serving == 0:
			worse(healthUnavailable, fmt.Sprintf("chain %d has no serving target: its data cannot be read or written (%s)", c.ID, strings.Join(behind, "; ")))
		case len(behind) > 0:
			worse(healthDegraded, fmt.Sprintf("chain %d has %d of %d copies (%s)", c.ID, serving, len(c.Targets), strings.Join(behind, "; ")))
		}
	}
	for _, t := range ri.Targets {
		if t.Capacity > 0 && float64(t.Used) >= diskFullWarn*float64(t.Capacity) {
			worse(healthDegraded, fmt.Sprintf("target %d (node %d) is %.0f%% full", t.ID, t.NodeID, 100*float64(t.Used)/float64(t.Capacity)))
		}
	}
	if st.StatFS != nil && st.StatFS.TotalBytes > 0 && float64(st.StatFS.FreeBytes) <= (1-diskFullWarn)*float64(st.StatFS.TotalBytes) {
		worse(healthDegraded, fmt.Sprintf("the cluster is %.0f%% full", 100*(1-float64(st.StatFS.FreeBytes)/float64(st.StatFS.TotalBytes))))
	}
	// A node without the meta role (UnknownMethod) says nothing about
	// the metadata service's health.
	if st.StatFSError != "" && !errors.Is(st.statFSErr, proto.ErrUnknownMethod) {
		worse(healthUnavailable, "the metadata service does not answer: "+st.StatFSError)
	}
	if electing(ri) && ri.Leader == 0 {
		worse(healthDegraded, "no mgmtd leader: failures are not handled until one is elected")
	}
	if skew != nil && (*skew > clockSkewWarn || *skew < -clockSkewWarn) {
		worse(healthDegraded, fmt.Sprintf("this host's clock and mgmtd's differ by %v", skew.Round(time.Millisecond)))
	}
	return h
}

func resyncProgress(t *proto.Target, r resyncRate) string {
	p := t.Resync
	if p == nil {
		return ", resync not started"
	}
	s := ""
	if p.Total > 0 {
		s = fmt.Sprintf(", resync %.0f%%", 100*float64(min(p.Chunks, p.Total))/float64(p.Total))
	}
	if r.chunksPerSec > 0 {
		s += fmt.Sprintf(", ETA %v", (time.Duration(float64(r.left) / r.chunksPerSec * float64(time.Second))).Round(time.Second))
	}
	return s
}

// electing reports whether the cluster runs several mgmtd instances,
// which elect a leader.
func electing(ri *proto.RoutingInfo) bool {
	n := 0
	for _, x := range ri.Nodes {
		if x.Roles.Has(proto.RoleMgmtd) {
			n++
		}
	}
	return n > 1
}

// resyncRates looks at the routing again after a second when resyncs run,
// to give each an ETA. It returns nothing if ctx ends first.
func resyncRates(ctx context.Context, c *adminConn, first *proto.RoutingInfo) map[uint32]resyncRate {
	before := map[uint32]proto.ResyncStats{}
	for _, t := range first.Targets {
		if t.State == proto.TargetSyncing && t.Resync != nil {
			before[t.ID] = *t.Resync
		}
	}
	if len(before) == 0 {
		return nil
	}
	start := time.Now()
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Second):
	}
	ri, err := c.mgmtd.GetRouting(ctx, 0)
	if err != nil {
		return nil
	}
	el := time.Since(start).Seconds()
	rates := map[uint32]resyncRate{}
	for _, t := range ri.Targets {
		b, ok := before[t.ID]
		if !ok || t.Resync == nil || t.Resync.Chunks <= b.Chunks {
			continue
		}
		rates[t.ID] = resyncRate{chunksPerSec: float64(t.Resync.Chunks-b.Chunks) / el, left: max(0, t.Resync.Total-t.Resync.Chunks)}
	}
	return rates
}

// clockSkew estimates this host's clock minus mgmtd's from the newest
// heartbeat mgmtd recorded (stamped with its clock when it arrived): a
// heartbeat "from the future" means mgmtd's clock runs ahead. Heartbeats
// come every second or so, so only a skew beyond that shows.
func clockSkew(ri *proto.RoutingInfo, now time.Time) *time.Duration {
	var newest time.Time
	for _, n := range ri.Nodes {
		if n.State == proto.NodeUp && n.LastHeartbeat.After(newest) {
			newest = n.LastHeartbeat
		}
	}
	if newest.IsZero() {
		return nil
	}
	d := now.Sub(newest)
	if d >= 0 && d < 3*clockSkewWarn {
		return nil // as fresh as heartbeats are: no measurable skew
	}
	if d > 0 {
		d -= 3 * clockSkewWarn // only what heartbeat intervals cannot explain
	}
	return &d
}
