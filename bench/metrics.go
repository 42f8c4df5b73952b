package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"time"

	"fff/libfff"
)

// The metrics suite: what Prometheus metrics cost a node under load
// (issue 19: scraping under load costs < 2% of throughput). Two `fffd
// local` clusters on the same disk, one with metrics off (--metrics-listen
// off) and one as shipped, scraped every -metrics-scrape (1 s: 15 times
// as often as Prometheus's default) for the whole run. A client
// without local reads — every read goes through the server's RPC path,
// which the metrics instrument — reads random 4 KiB samples with ReadBatch
// at the data suite's first depth; the two sides alternate over -rounds
// rounds (medians).

const metricsTarget = 0.98 // samples/s with metrics scraped, of metrics off

func runMetricsSuite(ctx context.Context, cfg config, scrapeEvery time.Duration) error {
	const ssize = 4096
	depths, err := parseDepths(dataCfg.depths)
	if err != nil {
		return err
	}
	d := depths[0]
	type side struct {
		name string
		c    *libfff.Client
	}
	var sides []side
	var scrapes, scrapeBytes atomic.Int64
	sctx, stopScrape := context.WithCancel(ctx)
	defer stopScrape()
	for _, on := range []bool{false, true} {
		name, args := "metrics off", []string{"--metrics-listen", "off"}
		if on {
			name, args = "metrics on, scraped", nil
		}
		p, stop, err := startCluster(ctx, cfg, "metrics", args...)
		if err != nil {
			return err
		}
		defer stop()
		o := p.options()
		o.NoLocalRead = true
		c, err := libfff.Connect(ctx, o)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.MkdirAll(ctx, "/bench", 0o755); err != nil {
			return err
		}
		if on {
			if p.metrics == "" {
				return fmt.Errorf("metrics: the cluster's fffd.json names no metrics listener")
			}
			go scrapeLoop(sctx, "http://"+p.metrics+"/metrics", scrapeEvery, &scrapes, &scrapeBytes)
		}
		sides = append(sides, side{name, c})
	}
	n := cfg.fileSize / ssize
	rs, err := sideBySideSamples(ctx, cfg, d, ssize, sides[0].c, sides[1].c)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	stopScrape()
	off, on := median(rs[0]), median(rs[1])
	ratio := on.iops / off.iops
	k := scrapes.Load()
	fmt.Printf("\n## Metrics on the data path\n\n")
	fmt.Printf("machine: %s; %d CPUs; two fffd local on the same disk, one with --metrics-listen off, one as shipped and scraped every %v for the whole run (%d scrapes of %s on average); a client without local reads (every read through the server's RPC path) reads random %s samples of a %s file with ReadBatch, %d in flight in batches of %d; the sides alternate over %d rounds (medians)\n\n",
		hostInfo(), runtime.NumCPU(), scrapeEvery, k, formatSize(scrapeBytes.Load()/max(k, 1)), formatSize(ssize), formatSize(n*ssize), d.inFlight, d.batch, cfg.rounds)
	fmt.Println("| metrics on, scraped: samples/s | metrics off: samples/s | ratio | target | on range | off range |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| %.0f | %.0f | %.3f | ≥ %.2f %s | %s | %s |\n", on.iops, off.iops, ratio,
		metricsTarget, verdict(ratio >= metricsTarget), spread(rs[1]), spread(rs[0]))
	return nil
}

// scrapeLoop fetches url every interval until ctx ends, as Prometheus
// would, counting scrapes and bytes.
func scrapeLoop(ctx context.Context, url string, every time.Duration, n, nbytes *atomic.Int64) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			m, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			n.Add(1)
			nbytes.Add(m)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
