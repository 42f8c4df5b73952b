package main

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"fff/internal/buildinfo"
	"fff/internal/metrics"
	"fff/internal/proto"
	"fff/internal/uring"
	"fff/server/kv"
	"fff/server/mgmtd"
	"fff/server/storage"
)

// MetricsConfig is the [metrics] section: where fffd serves Prometheus
// metrics (docs/operations.md).
type MetricsConfig struct {
	// Listen is the HTTP listener's address ("127.0.0.1:9500"; port 0
	// picks a free one, recorded in DATA/fffd.json). Default: a free
	// loopback port, so `fff status`, `fff top` and `fff admin dump` on
	// the node's host find them. "" or "off": no metrics.
	Listen string `toml:"listen"`
	// AllowRemote lets Listen be an address other hosts reach: metrics
	// say who reads which files how much, so this is opt-in.
	AllowRemote bool `toml:"allow_remote"`
}

// newMetrics makes the node's registry when metrics are on.
func (n *node) newMetrics(role string) {
	if l := n.cfg.Metrics.Listen; l == "" || l == "off" {
		return
	}
	n.metrics = metrics.NewRegistry(buildinfo.Version(), role)
	if n.db != nil {
		n.db = kv.Observed(n.db, kvMetrics(n.metrics))
	}
}

// startMetrics serves the registry; the RPC server exists by now.
func (n *node) startMetrics() error {
	if n.metrics == nil {
		return nil
	}
	ms, err := metrics.Listen(n.cfg.Metrics.Listen, n.cfg.Metrics.AllowRemote, n.metrics, n.log)
	if err != nil {
		return err
	}
	n.metricsSrv = ms
	return nil
}

// metricsAddr is the metrics listener's address ("" when off), for
// heartbeats: mgmtd shows it to `fff top`.
func (n *node) metricsAddr() string {
	if n.metricsSrv == nil {
		return ""
	}
	return n.metricsSrv.Addr().String()
}

// stopMetrics ends the metrics listener.
func (n *node) stopMetrics() {
	if n.metricsSrv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.metricsSrv.Close(ctx); err != nil {
		n.log.Warn().Err(err).Msg("metrics listener")
	}
}

// collect registers collectors when metrics are on.
func (n *node) collect(cs ...prometheus.Collector) {
	if n.metrics != nil {
		n.metrics.MustRegister(cs...)
	}
}

// kvMetrics counts the metadata KV's transactions: how many, how many
// times their bodies ran again (conflicts, retries), failures, latency.
func kvMetrics(r *metrics.Registry) func(*kv.TxnInfo) {
	txns := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "kv", Name: "transactions_total",
		Help: "Metadata KV transactions, by kind (update, view)."}, []string{"kind"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "kv", Name: "retries_total",
		Help: "Extra runs of transaction bodies: conflicts with other transactions (etcd, fdb) or a failed shared batch (bbolt)."}, []string{"kind"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Subsystem: "kv", Name: "failed_transactions_total",
		Help: "Transactions that returned an error (a caller's error, such as ENOENT, included)."}, []string{"kind"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metrics.Namespace, Subsystem: "kv", Name: "transaction_duration_seconds",
		Help: "Time of a transaction, its retries included.", Buckets: metrics.LatencyBuckets}, []string{"kind"})
	r.MustRegister(txns, retries, failed, latency)
	type kindMetrics struct {
		txns, retries, failed prometheus.Counter
		latency               prometheus.Observer
	}
	kinds := [2]kindMetrics{}
	for i, k := range []string{"view", "update"} {
		kinds[i] = kindMetrics{txns.WithLabelValues(k), retries.WithLabelValues(k), failed.WithLabelValues(k), latency.WithLabelValues(k)}
	}
	return func(t *kv.TxnInfo) {
		k := &kinds[0]
		if t.Update {
			k = &kinds[1]
		}
		k.txns.Inc()
		if t.Attempts > 1 {
			k.retries.Add(float64(t.Attempts - 1))
		}
		if t.Err != nil {
			k.failed.Inc()
		}
		k.latency.Observe(t.Duration.Seconds())
	}
}

// collectStorage registers a storage service's figures: per target its
// chunk engine's counters and its disk's space, the io_uring ring, GC.
func (n *node) collectStorage(svc *storage.Service) {
	if n.metrics == nil {
		return
	}
	type TC = storage.TargetCounters
	perTarget := func() []metrics.Labeled[TC] {
		var out []metrics.Labeled[TC]
		for _, t := range svc.TargetCounters() {
			out = append(out, metrics.Labeled[TC]{Labels: []string{strconv.FormatUint(uint64(t.ID), 10)}, Stats: t})
		}
		return out
	}
	n.collect(metrics.NewSnapshots([]string{"target"}, perTarget,
		metrics.Family[TC]{Name: "chunk_reads_total", Help: "Chunk reads served by the target's engine (local reads by clients are counted by the clients).", Value: func(t TC) float64 { return float64(t.Engine.Reads) }},
		metrics.Family[TC]{Name: "chunk_read_bytes_total", Help: "Bytes of chunk reads served.", Value: func(t TC) float64 { return float64(t.Engine.ReadBytes) }},
		metrics.Family[TC]{Name: "chunk_writes_total", Help: "Chunk writes, truncates and whole-chunk replaces committed.", Value: func(t TC) float64 { return float64(t.Engine.Writes) }},
		metrics.Family[TC]{Name: "chunk_write_bytes_total", Help: "Bytes written by committed chunk writes and replaces.", Value: func(t TC) float64 { return float64(t.Engine.WriteBytes) }},
		metrics.Family[TC]{Name: "chunk_fsyncs_total", Help: "Syncs of data files and their directories.", Value: func(t TC) float64 { return float64(t.Engine.Fsyncs) }},
		metrics.Family[TC]{Name: "chunk_checksum_failures_total", Help: "Reads refused because stored bytes or records did not match their checksums (the chunk is repaired from another replica).", Value: func(t TC) float64 { return float64(t.Engine.ChecksumFailures) }},
		metrics.Family[TC]{Name: "chunk_read_retries_total", Help: "Reads re-planned after a concurrent commit.", Value: func(t TC) float64 { return float64(t.Engine.ReadRetries) }},
		metrics.Family[TC]{Name: "target_capacity_bytes", Gauge: true, Help: "Size of the target's filesystem.", Value: func(t TC) float64 { return float64(t.Usage.Capacity) }},
		metrics.Family[TC]{Name: "target_available_bytes", Gauge: true, Help: "Bytes still available on the target's filesystem.", Value: func(t TC) float64 { return float64(t.Usage.Available) }},
	))
	type C = storage.Counters
	n.collect(metrics.One(svc.Counters,
		metrics.Family[C]{Name: "gc_collected_total", Help: "GC records (files deleted or truncated) whose chunks this node removed.", Value: func(c C) float64 { return float64(c.GCCollected) }},
		metrics.Family[C]{Name: "gc_failures_total", Help: "GC passes that failed (retried on the next scan).", Value: func(c C) float64 { return float64(c.GCFailures) }},
		metrics.Family[C]{Name: "gc_backlog", Gauge: true, Help: "GC records left in the queue after this node's last whole scan.", Value: func(c C) float64 { return float64(c.GCBacklog) }},
		metrics.Family[C]{Name: "resyncs_running", Gauge: true, Help: "Resyncs this node is sending to a syncing target now.", Value: func(c C) float64 { return float64(c.ResyncsRunning) }},
	))
	type U = uring.Stats
	ring := func() U { return svc.Counters().Ring }
	n.collect(metrics.One(ring,
		metrics.Family[U]{Name: "uring_enters_total", Help: "io_uring_enter calls that submitted chunk IO.", Value: func(u U) float64 { return float64(u.Enters) }},
		metrics.Family[U]{Name: "uring_submissions_total", Help: "Chunk IO operations submitted to io_uring.", Value: func(u U) float64 { return float64(u.Submissions) }},
		metrics.Family[U]{Name: "uring_completions_total", Help: "io_uring completions reaped.", Value: func(u U) float64 { return float64(u.Completions) }},
		metrics.Family[U]{Name: "uring_in_flight", Gauge: true, Help: "Chunk IO operations in the kernel.", Value: func(u U) float64 { return float64(u.InFlight) }},
		metrics.Family[U]{Name: "uring_waiting", Gauge: true, Help: "Chunk IO calls waiting for a free ring slot (the ring's queue).", Value: func(u U) float64 { return float64(u.Waiting) }},
	))
	type R = proto.ResyncStats
	resyncs := func() []metrics.Labeled[R] {
		var out []metrics.Labeled[R]
		for _, r := range svc.Resyncs() {
			out = append(out, metrics.Labeled[R]{Labels: []string{strconv.FormatUint(uint64(r.Target), 10)}, Stats: r})
		}
		return out
	}
	n.collect(metrics.NewSnapshots([]string{"target"}, resyncs,
		metrics.Family[R]{Name: "resync_chunks_compared", Gauge: true, Help: "Chunks a running resync has compared so far, by syncing target.", Value: func(r R) float64 { return float64(r.Chunks) }},
		metrics.Family[R]{Name: "resync_chunks", Gauge: true, Help: "Chunks a running resync compares in all.", Value: func(r R) float64 { return float64(r.Total) }},
		metrics.Family[R]{Name: "resync_chunks_sent", Gauge: true, Help: "Chunks a running resync has sent.", Value: func(r R) float64 { return float64(r.Sent) }},
		metrics.Family[R]{Name: "resync_sent_bytes", Gauge: true, Help: "Bytes a running resync has sent (rate() of it is the resync's speed).", Value: func(r R) float64 { return float64(r.Bytes) }},
	))
}

// collectMgmtd registers what an mgmtd instance knows of the cluster:
// nodes, targets and chains by state, the leader and its term, failovers.
func (n *node) collectMgmtd(mg *mgmtd.Service) {
	if n.metrics == nil {
		return
	}
	type M = mgmtd.Counters
	n.collect(metrics.One(mg.Counters,
		metrics.Family[M]{Name: "mgmtd_leader", Gauge: true, Help: "1 if this mgmtd instance is the leader (always, with one mgmtd).", Value: func(m M) float64 { return b2f(m.Leading) }},
		metrics.Family[M]{Name: "mgmtd_leader_term", Gauge: true, Help: "The leader's term (0 without election).", Value: func(m M) float64 { return float64(m.Term) }},
		metrics.Family[M]{Name: "mgmtd_nodes_marked_down_total", Help: "Nodes this instance declared down after missed heartbeats (failovers: their targets left their chains).", Value: func(m M) float64 { return float64(m.NodesMarkedDown) }},
		metrics.Family[M]{Name: "mgmtd_routing_version", Gauge: true, Help: "Version of the routing state.", Value: func(m M) float64 { return float64(m.Routing.Version) }},
	))
	type count = int
	byState := func(name, label, help string, states []string, tally func(*proto.RoutingInfo) map[string]int) prometheus.Collector {
		read := func() []metrics.Labeled[count] {
			c := tally(mg.Counters().Routing)
			out := make([]metrics.Labeled[count], 0, len(states))
			for _, s := range states {
				out = append(out, metrics.Labeled[count]{Labels: []string{s}, Stats: c[s]})
			}
			return out
		}
		return metrics.NewSnapshots([]string{label}, read, metrics.Family[count]{Name: name, Gauge: true, Help: help, Value: func(c count) float64 { return float64(c) }})
	}
	n.collect(
		byState("mgmtd_nodes", "state", "Nodes by state.", []string{"up", "down"}, func(ri *proto.RoutingInfo) map[string]int {
			m := map[string]int{}
			for _, x := range ri.Nodes {
				m[x.State.String()]++
			}
			return m
		}),
		byState("mgmtd_targets", "state", "Storage targets by state.", []string{"serving", "syncing", "offline"}, func(ri *proto.RoutingInfo) map[string]int {
			m := map[string]int{}
			for _, x := range ri.Targets {
				m[x.State.String()]++
			}
			return m
		}),
		byState("mgmtd_chains", "health", "Chains by health: healthy (every member serves), degraded (some do), unavailable (none does).", []string{"healthy", "degraded", "unavailable"}, func(ri *proto.RoutingInfo) map[string]int {
			m := map[string]int{}
			for i := range ri.Chains {
				m[mgmtd.ChainHealth(ri, &ri.Chains[i])]++
			}
			return m
		}),
	)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
