// Package metrics exposes what an fffd process does as Prometheus metrics
// (docs/operations.md lists them, with the dashboard built from them).
//
// The parts of fffd keep their own counters (atomic integers, no
// Prometheus types on their hot paths) and report them through small
// Stats methods; the collectors here read those at scrape time. Only the
// RPC latency histograms are kept here, fed by rpc.Server's Observer.
//
// Every process has its own Registry: nothing is registered in
// Prometheus's global default registry.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Namespace prefixes every metric of fff.
const Namespace = "fff"

// Registry holds one process's metrics.
type Registry struct {
	reg *prometheus.Registry
}

// NewRegistry returns a registry with the Go runtime's and the process's
// own metrics (go_*, process_*) and fff_build_info{version, roles}.
func NewRegistry(version, roles string) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   Namespace,
		Name:        "build_info",
		Help:        "Always 1; the labels say which fffd version runs which roles.",
		ConstLabels: prometheus.Labels{"version": version, "roles": roles},
	})
	info.Set(1)
	reg.MustRegister(info)
	return &Registry{reg: reg}
}

// MustRegister adds collectors; it panics on a duplicate metric, which is
// a programming error.
func (r *Registry) MustRegister(cs ...prometheus.Collector) { r.reg.MustRegister(cs...) }

// Gatherer is the registry for gathering (tests, fff admin dump).
func (r *Registry) Gatherer() prometheus.Gatherer { return r.reg }

// Handler serves the registry in Prometheus's text format (and the
// OpenMetrics format to scrapers that ask for it).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		EnableOpenMetrics:   true,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// ErrRemoteListen refuses a metrics listener on an address that is not
// loopback when the operator did not ask for it (Listen's allowRemote).
var ErrRemoteListen = errors.New("metrics: not a loopback address")

// Server is a running metrics listener.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// Listen serves r on addr ("host:port"): /metrics, and /healthz, which
// answers 200 while the process serves. A host that is not loopback (or
// an empty host, every interface) is refused with ErrRemoteListen unless
// allowRemote: metrics tell who uses which files how much.
func Listen(addr string, allowRemote bool, r *Registry, log zerolog.Logger) (*Server, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen %q: %w", addr, err)
	}
	if !allowRemote && !isLoopback(host) {
		return nil, fmt.Errorf("metrics.listen %q: %w (set metrics.allow_remote = true to serve metrics to other hosts)", addr, ErrRemoteListen)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	s := &Server{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          nil,
		},
		addr: l.Addr(),
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(l)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	log.Info().Str("address", s.addr.String()).Msg("serving metrics on /metrics")
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the listener, waiting up to ctx for scrapes in progress.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; err == nil {
		err = serr
	}
	return err
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
