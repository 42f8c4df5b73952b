package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"fff/internal/proto"
	"fff/internal/rpc"
)

func TestListenAddresses(t *testing.T) {
	r := NewRegistry("test", "local")
	for _, tc := range []struct {
		addr   string
		remote bool
		err    error // nil: serves
	}{
		{"127.0.0.1:0", false, nil},
		{"localhost:0", false, nil},
		{"[::1]:0", false, nil},
		{"0.0.0.0:0", false, ErrRemoteListen},
		{":0", false, ErrRemoteListen},
		{"192.0.2.1:0", false, ErrRemoteListen},
		{"0.0.0.0:0", true, nil},
	} {
		s, err := Listen(tc.addr, tc.remote, r, zerolog.Nop())
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Listen(%q, %v): %v, want %v", tc.addr, tc.remote, err, tc.err)
			}
			continue
		}
		if err != nil {
			if strings.Contains(err.Error(), "cannot assign") { // no IPv6 loopback here
				continue
			}
			t.Errorf("Listen(%q, %v): %v", tc.addr, tc.remote, err)
			continue
		}
		if err := s.Close(context.Background()); err != nil {
			t.Error(err)
		}
	}
	if _, err := Listen("nonsense", false, r, zerolog.Nop()); err == nil {
		t.Error("Listen of an address without a port succeeded")
	}
}

// TestRPCServerObserver: served calls become per-method series; unknown
// method numbers share one series, so callers cannot grow the label set.
func TestRPCServerObserver(t *testing.T) {
	r := NewRegistry("test", "storage")
	m := NewRPCServer(r, func() rpc.ServerStats { return rpc.ServerStats{Conns: 3, InFlight: 2} })
	m.Served(&rpc.CallInfo{Method: proto.MethodStorageRead, Status: proto.OK, In: 40, Out: 4136, Handler: time.Millisecond})
	m.Served(&rpc.CallInfo{Method: proto.MethodStorageRead, Status: proto.ChecksumMismatch, In: 40, Out: 60})
	for _, method := range []uint16{5000, 5001, 60000} {
		m.Served(&rpc.CallInfo{Method: method, Status: proto.UnknownMethod})
	}
	for _, tc := range []struct {
		got  float64
		want float64
		what string
	}{
		{testutil.ToFloat64(m.requests.WithLabelValues("storage_read")), 2, "storage_read requests"},
		{testutil.ToFloat64(m.out.WithLabelValues("storage_read")), 4196, "storage_read bytes out"},
		{testutil.ToFloat64(m.errors.WithLabelValues("storage_read", "ChecksumMismatch")), 1, "storage_read checksum errors"},
		{testutil.ToFloat64(m.requests.WithLabelValues("unknown")), 3, "unknown methods"},
		{float64(testutil.CollectAndCount(m.requests)), 2, "request series"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.what, tc.got, tc.want)
		}
	}
	// The gauges read the server's stats at scrape time.
	s, err := Listen("127.0.0.1:0", false, r, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	resp, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"fff_rpc_server_connections 3", "fff_rpc_server_requests_in_flight 2", `fff_build_info{roles="storage",version="test"} 1`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("no %q in the scrape", want)
		}
	}
}

func TestSnapshots(t *testing.T) {
	type s struct{ n int }
	snaps := []Labeled[s]{{Labels: []string{"1"}, Stats: s{5}}, {Labels: []string{"2"}, Stats: s{7}}}
	c := NewSnapshots([]string{"target"}, func() []Labeled[s] { return snaps },
		Family[s]{Name: "things_total", Help: "things", Value: func(x s) float64 { return float64(x.n) }},
		Family[s]{Name: "level", Help: "level", Gauge: true, Value: func(x s) float64 { return float64(2 * x.n) }})
	const want = `# HELP fff_level level
# TYPE fff_level gauge
fff_level{target="1"} 10
fff_level{target="2"} 14
# HELP fff_things_total things
# TYPE fff_things_total counter
fff_things_total{target="1"} 5
fff_things_total{target="2"} 7
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}
