package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	"fff/internal/proto"
)

func newTopCmd() *cobra.Command {
	var interval time.Duration
	var count int
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show what each node of the default cluster is doing, every second",
		Long: `Show, for every node of the default cluster, what its RPC server did over the
last interval: requests/s, errors/s, MiB/s in and out, mean and 99th
percentile latency, requests in flight, and its disk queue (chunk IO in the
kernel and waiting for a ring slot), with the cluster's health on top.

The figures come from each node's Prometheus metrics listener, whose address
the node reports in its heartbeats (fffd.json on its host; [metrics] listen
in its config). A node whose metrics cannot be read (off, or loopback on
another host) shows why.

On a terminal the screen is redrawn each interval until Ctrl-C; through a
pipe each interval prints a new table with its time. --count stops after N
tables.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval < 100*time.Millisecond {
				return usageErrorf("--interval %v: at least 100ms", interval)
			}
			c, err := dialAdmin()
			if err != nil {
				return err
			}
			defer c.Close()
			tty := false
			if f, ok := cmd.OutOrStdout().(*os.File); ok {
				tty = isTerminal(f)
			}
			return runTop(cmd.Context(), c, cmd.OutOrStdout(), interval, count, tty)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "time between refreshes")
	cmd.Flags().IntVar(&count, "count", 0, "stop after this many tables (0: until interrupted)")
	return cmd
}

// nodeSample is one scrape of a node's metrics, summed over methods.
type nodeSample struct {
	at               time.Time
	requests, errors float64
	in, out          float64
	latSum, latCount float64
	buckets          map[float64]float64 // cumulative latency bucket counts by upper bound
	inFlight         float64
	diskQueue        float64
	err              error
}

func runTop(ctx context.Context, c *adminConn, w io.Writer, interval time.Duration, count int, tty bool) error {
	prev := map[uint32]nodeSample{}
	client := &http.Client{Timeout: max(interval, time.Second)}
	for shown := 0; count == 0 || shown < count; {
		ri, err := c.routing(ctx)
		if err != nil {
			return err
		}
		cur := scrapeNodes(ctx, client, ri)
		if len(prev) > 0 {
			var b strings.Builder
			if tty {
				b.WriteString("\x1b[H\x1b[2J")
			}
			writeTop(&b, ri, prev, cur, interval)
			if _, err := io.WriteString(w, b.String()); err != nil {
				return err
			}
			shown++
		}
		prev = cur
		if count > 0 && shown >= count {
			break
		}
		select {
		case <-ctx.Done():
			return nil // Ctrl-C ends a live view: not an error
		case <-time.After(interval):
		}
	}
	return nil
}

// scrapeNodes reads every node's metrics at once.
func scrapeNodes(ctx context.Context, client *http.Client, ri *proto.RoutingInfo) map[uint32]nodeSample {
	out := map[uint32]nodeSample{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range ri.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := scrapeNode(ctx, client, n)
			mu.Lock()
			out[n.ID] = s
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

func scrapeNode(ctx context.Context, client *http.Client, n proto.Node) nodeSample {
	s := nodeSample{at: time.Now()}
	switch {
	case n.State != proto.NodeUp:
		s.err = fmt.Errorf("down")
		return s
	case n.Metrics == "":
		s.err = fmt.Errorf("no metrics listener reported")
		return s
	}
	b, err := fetch(ctx, client, "http://"+n.Metrics+"/metrics")
	if err != nil {
		s.err = fmt.Errorf("metrics at %s unreachable", n.Metrics)
		return s
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		s.err = fmt.Errorf("metrics at %s: %v", n.Metrics, err)
		return s
	}
	sum := func(name string) float64 {
		var v float64
		if f := fams[name]; f != nil {
			for _, m := range f.Metric {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return v
	}
	s.requests, s.errors = sum("fff_rpc_server_requests_total"), sum("fff_rpc_server_errors_total")
	s.in, s.out = sum("fff_rpc_server_received_bytes_total"), sum("fff_rpc_server_sent_bytes_total")
	s.inFlight = sum("fff_rpc_server_requests_in_flight")
	s.diskQueue = sum("fff_uring_in_flight") + sum("fff_uring_waiting")
	s.buckets = map[float64]float64{}
	if f := fams["fff_rpc_server_request_duration_seconds"]; f != nil {
		for _, m := range f.Metric {
			h := m.GetHistogram()
			s.latSum += h.GetSampleSum()
			s.latCount += float64(h.GetSampleCount())
			addBuckets(s.buckets, h.GetBucket())
		}
	}
	return s
}

func addBuckets(into map[float64]float64, bs []*dto.Bucket) {
	for _, b := range bs {
		into[b.GetUpperBound()] += float64(b.GetCumulativeCount())
	}
}

// quantile estimates the q-quantile of the requests between two samples
// from their cumulative buckets: the upper bound of the bucket it falls in.
func quantile(q float64, a, b nodeSample) float64 {
	total := b.latCount - a.latCount
	if total <= 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(b.buckets))
	for ub := range b.buckets {
		bounds = append(bounds, ub)
	}
	slices.Sort(bounds)
	for _, ub := range bounds {
		if b.buckets[ub]-a.buckets[ub] >= q*total {
			return ub
		}
	}
	return math.Inf(1)
}

func writeTop(w io.Writer, ri *proto.RoutingInfo, prev, cur map[uint32]nodeSample, interval time.Duration) {
	h := assessHealth(&clusterStatus{routing: ri}, nil, nil)
	fmt.Fprintf(w, "fff top  %s  every %v  health: %s", time.Now().Format("15:04:05"), interval, h.State)
	if len(h.Reasons) > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(h.Reasons, "; "))
	}
	fmt.Fprintf(w, "\n\n%-5s %-19s %-5s %9s %7s %9s %9s %8s %8s %8s %6s\n",
		"node", "roles", "state", "req/s", "err/s", "in MiB/s", "out MiB/s", "mean ms", "p99 ms", "inflight", "diskq")
	for _, n := range ri.Nodes {
		a, b := prev[n.ID], cur[n.ID]
		fmt.Fprintf(w, "%-5d %-19s %-5s ", n.ID, n.Roles, n.State)
		if b.err != nil || a.err != nil || a.at.IsZero() {
			why := b.err
			if why == nil {
				why = a.err
			}
			if why == nil {
				why = fmt.Errorf("first sample")
			}
			fmt.Fprintf(w, "(%v)\n", why)
			continue
		}
		dt := b.at.Sub(a.at).Seconds()
		rate := func(x, y float64) float64 { return max(0, y-x) / dt }
		mean := math.NaN()
		if d := b.latCount - a.latCount; d > 0 {
			mean = (b.latSum - a.latSum) / d
		}
		fmt.Fprintf(w, "%9.0f %7.0f %9.1f %9.1f %8s %8s %8.0f %6.0f\n",
			rate(a.requests, b.requests), rate(a.errors, b.errors),
			rate(a.in, b.in)/(1<<20), rate(a.out, b.out)/(1<<20),
			ms(mean), ms(quantile(0.99, a, b)), b.inFlight, b.diskQueue)
	}
}

// ms formats seconds as milliseconds; "-" for no requests.
func ms(s float64) string {
	switch {
	case math.IsNaN(s):
		return "-"
	case math.IsInf(s, 1):
		return ">10000"
	}
	return fmt.Sprintf("%.2f", 1e3*s)
}
