package rpcbench

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	var buf bytes.Buffer
	if err := Run(context.Background(), &buf, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Count(out, "\n| ") != 7 || !strings.Contains(out, "RPC / raw") {
		t.Fatalf("unexpected table:\n%s", out)
	}
}

func benchEnv(b *testing.B) *Env {
	e, err := NewEnv()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	return e
}

func report(b *testing.B, n int64, el time.Duration, err error, unit string) {
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/el.Seconds(), unit)
}

func BenchmarkSmall(b *testing.B) {
	e := benchEnv(b)
	for _, conc := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("rpc/inflight=%d", conc), func(b *testing.B) {
			n, el, err := e.SmallRPC(context.Background(), conc, Limit{N: int64(b.N)})
			report(b, n, el, err, "calls/s")
		})
		b.Run(fmt.Sprintf("raw/inflight=%d", conc), func(b *testing.B) {
			n, el, err := e.SmallRaw(context.Background(), conc, Limit{N: int64(b.N)})
			report(b, n, el, err, "calls/s")
		})
	}
}

func BenchmarkBulk(b *testing.B) {
	e := benchEnv(b)
	for _, conc := range []int{1, bulkFlight} {
		b.Run(fmt.Sprintf("rpc-read/inflight=%d", conc), func(b *testing.B) {
			b.SetBytes(bulkSize)
			n, el, err := e.BulkRPC(context.Background(), conc, false, Limit{N: int64(b.N)})
			report(b, n, el, err, "MiB/s")
		})
		b.Run(fmt.Sprintf("rpc-write/inflight=%d", conc), func(b *testing.B) {
			b.SetBytes(bulkSize)
			n, el, err := e.BulkRPC(context.Background(), conc, true, Limit{N: int64(b.N)})
			report(b, n, el, err, "MiB/s")
		})
	}
	b.Run("raw-stream", func(b *testing.B) {
		b.SetBytes(bulkSize)
		n, el, err := e.BulkRaw(context.Background(), Limit{N: int64(b.N)})
		report(b, n, el, err, "MiB/s")
	})
}
