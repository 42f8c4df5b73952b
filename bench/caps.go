package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"fff/libfff"
)

// The caps suite: what storage's capability checks cost the data loader's
// hot path (issue 14: at most 3% of ReadBatch 4 KiB samples/s). Two `fffd
// local` clusters on the same disk, one as shipped and one with
// [storage] unchecked_capabilities (the build with checks off); an
// ordinary user — the admin needs no capability — reads random 4 KiB
// samples of a file in each with ReadBatch at the data suite's first depth,
// the two sides alternating over -rounds rounds (medians).

const capsTarget = 0.97 // checked samples/s of unchecked

func runCapsSuite(ctx context.Context, cfg config) error {
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
	for _, unchecked := range []bool{false, true} {
		var args []string
		name := "checked"
		if unchecked {
			name = "unchecked"
			conf := filepath.Join(os.TempDir(), fmt.Sprintf("fff-bench-caps-%d.toml", os.Getpid()))
			if err := os.WriteFile(conf, []byte("[storage]\nunchecked_capabilities = true\n"), 0o600); err != nil {
				return err
			}
			defer os.Remove(conf)
			args = []string{"--config", conf}
		}
		p, stop, err := startCluster(ctx, cfg, "caps-"+name, args...)
		if err != nil {
			return err
		}
		defer stop()
		c, err := userClient(ctx, p)
		if err != nil {
			return err
		}
		defer c.Close()
		sides = append(sides, side{name, c})
	}
	n := cfg.fileSize / ssize
	rs, err := sideBySideSamples(ctx, cfg, d, ssize, sides[0].c, sides[1].c)
	if err != nil {
		return fmt.Errorf("caps: %w", err)
	}
	checked, unchecked := median(rs[0]), median(rs[1])
	ratio := checked.iops / unchecked.iops
	fmt.Printf("\n## Capability checks on the data path\n\n")
	fmt.Printf("machine: %s; %d CPUs; two fffd local on the same disk, one with [storage] unchecked_capabilities; an ordinary user reads random %s samples of a %s file with ReadBatch, %d in flight in batches of %d; the sides alternate over %d rounds (medians)\n\n",
		hostInfo(), runtime.NumCPU(), formatSize(ssize), formatSize(n*ssize), d.inFlight, d.batch, cfg.rounds)
	fmt.Println("| checked samples/s | unchecked samples/s | ratio | target | checked range | unchecked range |")
	fmt.Println("|---|---|---|---|---|---|")
	fmt.Printf("| %.0f | %.0f | %.3f | ≥ %.2f %s | %s | %s |\n", checked.iops, unchecked.iops, ratio,
		capsTarget, verdict(ratio >= capsTarget), spread(rs[0]), spread(rs[1]))
	return nil
}

// sideBySideSamples writes a file of cfg.fileSize in each of two
// clusters and reads random samples of ssize bytes from both with
// ReadBatch at depth d, the two alternating over cfg.rounds rounds: the
// results of a and of b.
func sideBySideSamples(ctx context.Context, cfg config, d depth, ssize int64, a, b *libfff.Client) ([][]result, error) {
	n := cfg.fileSize / ssize
	for _, c := range []*libfff.Client{a, b} {
		if _, err := dataSeqWrite(ctx, c, "/bench/samples", n*ssize, 4<<20); err != nil {
			return nil, err
		}
	}
	dc := cfg
	dc.qd, dc.batch = d.inFlight, d.batch
	return rotate(dc,
		func() (result, error) { return dataRandomReads(ctx, dc, a, "/bench/samples", ssize, n) },
		func() (result, error) { return dataRandomReads(ctx, dc, b, "/bench/samples", ssize, n) })
}

// userClient adds an ordinary user to cluster p, gives it /bench and
// returns its client.
func userClient(ctx context.Context, p *fffdProc) (*libfff.Client, error) {
	admin, err := p.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	tok, err := admin.UserAdd(ctx, "bench", 1000, nil, false)
	if err != nil {
		return nil, err
	}
	if err := admin.MkdirAll(ctx, "/bench", 0o755); err != nil {
		return nil, err
	}
	if err := admin.Chown(ctx, "/bench", 1000, 1000); err != nil {
		return nil, err
	}
	o := p.options()
	o.Token = tok
	return libfff.Connect(ctx, o)
}
