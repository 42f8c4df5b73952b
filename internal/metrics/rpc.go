package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// LatencyBuckets are the RPC latency histograms' bucket bounds, in
// seconds: 50 µs (a cached read over a Unix socket) to 10 s (a request
// that waited out a failover).
var LatencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// RPCServer is the rpc.Observer of an fffd's RPC server: per method,
// requests, errors, latency and bytes, and the server's connections and
// requests in flight at scrape time.
type RPCServer struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	stage    *prometheus.HistogramVec
	in, out  *prometheus.CounterVec

	mu      sync.RWMutex
	methods map[uint16]*methodMetrics // the children of each method, looked up once
}

type methodMetrics struct {
	name              string // the method label
	requests, in, out prometheus.Counter
	latency           prometheus.Observer
	queued, write     prometheus.Observer
}

// NewRPCServer registers the RPC metrics in r. stats reports the server's
// connections and requests in flight (rpc.Server.Stats) at scrape time.
func NewRPCServer(r *Registry, stats func() rpc.ServerStats) *RPCServer {
	m := &RPCServer{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "rpc_server", Name: "requests_total",
			Help: "Requests served, by method (those that ended in an error included).",
		}, []string{"method"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "rpc_server", Name: "errors_total",
			Help: "Requests answered with an error, by method and error code.",
		}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "rpc_server", Name: "request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its response's write, by method.",
			Buckets: LatencyBuckets,
		}, []string{"method"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Subsystem: "rpc_server", Name: "stage_duration_seconds",
			Help:    "Time a request spent waiting to run (queued) and having its response written (write), by method.",
			Buckets: LatencyBuckets,
		}, []string{"method", "stage"}),
		in: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "rpc_server", Name: "received_bytes_total",
			Help: "Bytes of request frames received (header, body, payload), by method.",
		}, []string{"method"}),
		out: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Subsystem: "rpc_server", Name: "sent_bytes_total",
			Help: "Bytes of response frames sent, by method.",
		}, []string{"method"}),
		methods: map[uint16]*methodMetrics{},
	}
	r.MustRegister(m.requests, m.errors, m.latency, m.stage, m.in, m.out)
	gauge := func(name, help string, v func(rpc.ServerStats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Subsystem: "rpc_server", Name: name, Help: help},
			func() float64 { return v(stats()) })
	}
	r.MustRegister(
		gauge("connections", "Client connections being served.", func(s rpc.ServerStats) float64 { return float64(s.Conns) }),
		gauge("requests_in_flight", "Requests received and not yet answered.", func(s rpc.ServerStats) float64 { return float64(s.InFlight) }),
		gauge("held_bytes", "Request bytes held in memory by all connections (rpc.max_total_bytes bounds the large ones).",
			func(s rpc.ServerStats) float64 { return float64(s.HeldBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "rpc_server", Name: "refused_connections_total",
			Help: "Connections refused because rpc.max_conns were being served."},
			func() float64 { return float64(stats().RefusedConns) }),
	)
	return m
}

// unknownMethod keys the series of method numbers no method has.
const unknownMethod = 0

// Served is rpc.Observer.
func (m *RPCServer) Served(c *rpc.CallInfo) {
	mm := m.method(c.Method)
	mm.requests.Inc()
	mm.in.Add(float64(c.In))
	mm.out.Add(float64(c.Out))
	mm.latency.Observe(c.Total().Seconds())
	mm.queued.Observe(c.Queued.Seconds())
	mm.write.Observe(c.Write.Seconds())
	if c.Status != proto.OK {
		m.errors.WithLabelValues(mm.name, c.Status.String()).Inc()
	}
}

func (m *RPCServer) method(id uint16) *methodMetrics {
	if !proto.MethodKnown(id) {
		id = unknownMethod // one series for all: callers choose the numbers
	}
	m.mu.RLock()
	mm := m.methods[id]
	m.mu.RUnlock()
	if mm != nil {
		return mm
	}
	name := proto.MethodName(id)
	if id == unknownMethod {
		name = "unknown"
	}
	mm = &methodMetrics{
		name:     name,
		requests: m.requests.WithLabelValues(name),
		in:       m.in.WithLabelValues(name),
		out:      m.out.WithLabelValues(name),
		latency:  m.latency.WithLabelValues(name),
		queued:   m.stage.WithLabelValues(name, "queued"),
		write:    m.stage.WithLabelValues(name, "write"),
	}
	m.mu.Lock()
	if prev := m.methods[id]; prev != nil {
		mm = prev
	} else {
		m.methods[id] = mm
	}
	m.mu.Unlock()
	return mm
}
