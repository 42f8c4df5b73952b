package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"fff/libfff"
)

// metricsAddr reads the metrics listener's address from a node's
// fffd.json.
func metricsAddr(t *testing.T, dir string) string {
	t.Helper()
	var ri struct{ Metrics string }
	b, err := os.ReadFile(filepath.Join(dir, "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil || ri.Metrics == "" {
		t.Fatalf("%s/fffd.json names no metrics listener: %v %s", dir, err, b)
	}
	return ri.Metrics
}

// scrape fetches and parses a node's metrics with Prometheus's own text
// parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s/metrics: %s: %s", addr, resp.Status, b)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing %s/metrics: %v", addr, err)
	}
	return fams
}

// series finds the value of family name's series whose labels include
// want (a counter's or gauge's value, a histogram's sample count); ok is
// false when there is none. Values of several matching series add up.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, typ dto.MetricType, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, 0, false
	}
	for _, m := range f.Metric {
		match := true
		for k, w := range want {
			found := false
			for _, l := range m.Label {
				if l.GetName() == k && l.GetValue() == w {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		ok = true
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v += m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return v, f.GetType(), ok
}

// TestMetrics: every fffd role serves Prometheus metrics on its own HTTP
// listener. A replicated cluster (a control node running mgmtd, meta and
// storage, and two `fffd storage` nodes) is put under load; each node's
// endpoint is scraped during it with Prometheus's text parser, and the
// key series exist with their types and move: requests, bytes and
// latency counts per method, chunk writes and fsyncs, io_uring
// submissions, KV transactions, chain health.
func TestMetrics(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	upReplicated(t, env, data, 2, 10*time.Second)
	waitServing(t, env)
	nodes := map[string]string{"control": metricsAddr(t, data)}
	for _, id := range []int{2, 3} {
		nodes[fmt.Sprintf("storage %d", id)] = metricsAddr(t, nodeDir(data, id))
	}
	before := map[string]map[string]*dto.MetricFamily{}
	for n, addr := range nodes {
		before[n] = scrape(t, addr)
	}

	// Load: writers and readers through the native client until the
	// scrapes below are done.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, addr := nodeReady(t, data, 1)
	c, err := libfff.Connect(ctx, libfff.Options{Address: addr, Token: adminToken(t, data)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var loadErr error
	var errOnce sync.Once
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			buf := randData(rng, 256<<10)
			for i := 0; loadCtx.Err() == nil; i++ {
				name := fmt.Sprintf("/m-%d-%d", w, i%8)
				if err := writeAndRead(loadCtx, c, name, buf); err != nil && loadCtx.Err() == nil {
					errOnce.Do(func() { loadErr = err })
					return
				}
			}
		}()
	}
	// Scrape every node a few times under load: the endpoint answers while
	// the node is busy.
	var during map[string]map[string]*dto.MetricFamily
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		during = map[string]map[string]*dto.MetricFamily{}
		for n, addr := range nodes {
			during[n] = scrape(t, addr)
		}
	}
	stopLoad()
	wg.Wait()
	if loadErr != nil {
		t.Fatal(loadErr)
	}

	type want struct {
		node, name string
		labels     map[string]string
		typ        dto.MetricType
		moves      bool // grew between the scrape before the load and the last one during it
	}
	checks := []want{
		{"control", "fff_build_info", nil, dto.MetricType_GAUGE, false},
		{"control", "fff_rpc_server_requests_total", map[string]string{"method": "meta_create"}, dto.MetricType_COUNTER, true},
		{"control", "fff_rpc_server_request_duration_seconds", map[string]string{"method": "meta_open"}, dto.MetricType_HISTOGRAM, true},
		{"control", "fff_rpc_server_received_bytes_total", map[string]string{"method": "meta_create"}, dto.MetricType_COUNTER, true},
		{"control", "fff_rpc_server_sent_bytes_total", nil, dto.MetricType_COUNTER, true},
		{"control", "fff_rpc_server_requests_in_flight", nil, dto.MetricType_GAUGE, false},
		{"control", "fff_rpc_server_connections", nil, dto.MetricType_GAUGE, false},
		{"control", "fff_kv_transactions_total", map[string]string{"kind": "update"}, dto.MetricType_COUNTER, true},
		{"control", "fff_kv_transaction_duration_seconds", nil, dto.MetricType_HISTOGRAM, true},
		{"control", "fff_chunk_writes_total", nil, dto.MetricType_COUNTER, true},
		{"control", "fff_chunk_write_bytes_total", nil, dto.MetricType_COUNTER, true},
		{"control", "fff_chunk_fsyncs_total", nil, dto.MetricType_COUNTER, true},
		{"control", "fff_chunk_checksum_failures_total", nil, dto.MetricType_COUNTER, false},
		{"control", "fff_uring_submissions_total", nil, dto.MetricType_COUNTER, true},
		{"control", "fff_uring_completions_total", nil, dto.MetricType_COUNTER, true},
		{"control", "fff_gc_backlog", nil, dto.MetricType_GAUGE, false},
		{"control", "fff_mgmtd_chains", map[string]string{"health": "healthy"}, dto.MetricType_GAUGE, false},
		{"control", "fff_mgmtd_targets", map[string]string{"state": "serving"}, dto.MetricType_GAUGE, false},
		{"control", "fff_mgmtd_nodes", map[string]string{"state": "up"}, dto.MetricType_GAUGE, false},
		{"control", "fff_mgmtd_leader", nil, dto.MetricType_GAUGE, false},
		{"control", "fff_mgmtd_nodes_marked_down_total", nil, dto.MetricType_COUNTER, false},
		{"control", "fff_target_available_bytes", nil, dto.MetricType_GAUGE, false},
		{"control", "go_goroutines", nil, dto.MetricType_GAUGE, false},
		{"control", "process_resident_memory_bytes", nil, dto.MetricType_GAUGE, false},
	}
	for _, n := range []string{"storage 2", "storage 3"} {
		checks = append(checks,
			want{n, "fff_build_info", map[string]string{"roles": "storage"}, dto.MetricType_GAUGE, false},
			want{n, "fff_rpc_server_requests_total", nil, dto.MetricType_COUNTER, true},
			want{n, "fff_rpc_server_request_duration_seconds", nil, dto.MetricType_HISTOGRAM, true},
			want{n, "fff_rpc_server_received_bytes_total", nil, dto.MetricType_COUNTER, true},
			want{n, "fff_chunk_writes_total", nil, dto.MetricType_COUNTER, true},
			want{n, "fff_uring_submissions_total", nil, dto.MetricType_COUNTER, true},
		)
	}
	for _, w := range checks {
		v, typ, ok := series(during[w.node], w.name, w.labels)
		if !ok {
			t.Errorf("%s: no %s%v", w.node, w.name, w.labels)
			continue
		}
		if typ != w.typ {
			t.Errorf("%s: %s is a %v, want a %v", w.node, w.name, typ, w.typ)
		}
		if w.moves {
			v0, _, _ := series(before[w.node], w.name, w.labels)
			if v <= v0 {
				t.Errorf("%s: %s%v did not move under load: %v before, %v during", w.node, w.name, w.labels, v0, v)
			}
		}
	}
	// Replication 3 over the three nodes: every write reaches each node,
	// from the client at its chain's head (storage_write) or forwarded
	// down the chain (storage_forward).
	for n := range nodes {
		var v0, v float64
		for _, m := range []string{"storage_write", "storage_forward"} {
			a, _, _ := series(before[n], "fff_rpc_server_received_bytes_total", map[string]string{"method": m})
			b, _, _ := series(during[n], "fff_rpc_server_received_bytes_total", map[string]string{"method": m})
			v0, v = v0+a, v+b
		}
		if v-v0 < 1<<20 {
			t.Errorf("%s: %v bytes of storage_write and storage_forward under load, want the chunks written", n, v-v0)
		}
	}
	if v, _, _ := series(during["control"], "fff_mgmtd_chains", map[string]string{"health": "healthy"}); v < 1 {
		t.Errorf("control: fff_mgmtd_chains{health=healthy} = %v, want the chains of replication 3", v)
	}
	if v, _, _ := series(during["control"], "fff_rpc_server_errors_total", map[string]string{"method": "meta_create"}); v != 0 {
		t.Errorf("control: %v errors of meta_create under a load that had none", v)
	}

	// /healthz answers, and a scrape that is not loopback is refused by
	// default: checked in internal/metrics' tests.
	resp, err := http.Get("http://" + nodes["control"] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
}

// writeAndRead writes buf to name (replacing it), reads it back and
// compares.
func writeAndRead(ctx context.Context, c *libfff.Client, name string, buf []byte) error {
	f, err := c.Create(ctx, name)
	if err != nil {
		return err
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	g, err := c.Open(ctx, name, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer g.Close()
	got := make([]byte, len(buf))
	if _, err := g.ReadAtContext(ctx, got, 0); err != nil && err != io.EOF {
		return err
	}
	if string(got) != string(buf) {
		return fmt.Errorf("%s: read back other bytes", name)
	}
	return nil
}
