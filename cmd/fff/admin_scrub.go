package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// scrubCallTimeout bounds one page of a scrub (up to 64 chunks read whole,
// and the repairs they need).
const scrubCallTimeout = 5 * time.Minute

// newAdminScrubCmd is `fff admin scrub`: every replica of every chunk read
// and checked against its checksums, each chain's replicas compared from
// its head, and what fails repaired from a good replica
// (docs/replication.md).
func newAdminScrubCmd() *cobra.Command {
	var dryRun bool
	var only uint32
	cmd := &cobra.Command{
		Use:   "scrub [--dry-run] [--target ID]",
		Short: "Verify every replica of every chunk and repair what is damaged (admin token only)",
		Long: `Read every chunk of every storage target in a chain and check it against its
checksums; on each chain's head, also compare the other serving replicas'
versions, lengths and checksums with the head's. A damaged or diverging
replica is rewritten from a good one through the chain's head (with --dry-run
only reported). Reads the data once per replica: it takes as long as reading
the cluster's disks, and runs alongside reads and writes.

Exit status 0 when every replica is (or was made) good, 1 otherwise.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := dialAdmin()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			rctx, cancel := context.WithTimeout(ctx, defaultAdminTimeout)
			ri, err := c.routing(rctx)
			cancel()
			if err != nil {
				return err
			}
			tcfg, err := c.info.TLSConfig()
			if err != nil {
				return &exitError{1, err}
			}
			pools := map[string]*rpc.Pool{}
			defer func() {
				for _, p := range pools {
					p.Close()
				}
			}()
			w := cmd.OutOrStdout()
			var total proto.StorageScrubResp
			targets := 0
			for _, tg := range ri.Targets {
				if tg.ChainID == 0 || only != 0 && tg.ID != only {
					continue
				}
				if tg.State != proto.TargetServing {
					fmt.Fprintf(w, "target %d (node %d): %v, skipped (resync makes it equal)\n", tg.ID, tg.NodeID, tg.State)
					continue
				}
				n := ri.Node(tg.NodeID)
				if n == nil || n.Addr == "" {
					return &exitError{1, fmt.Errorf("target %d: node %d has no address", tg.ID, tg.NodeID)}
				}
				p := pools[n.Addr]
				if p == nil {
					p = rpc.NewPool(n.Addr, c.info.Token, rpc.PoolOptions{Size: 1, Client: rpc.ClientOptions{TLS: tcfg}})
					pools[n.Addr] = p
				}
				sum, err := scrubTarget(ctx, p, tg, !dryRun)
				if err != nil {
					return c.explain(err)
				}
				printScrub(w, fmt.Sprintf("target %d (node %d, chain %d)", tg.ID, tg.NodeID, tg.ChainID), sum, dryRun)
				addScrub(&total, sum)
				targets++
			}
			if only != 0 && targets == 0 {
				return usageErrorf("target %d is not a serving target in a chain (see 'fff admin targets')", only)
			}
			printScrub(w, fmt.Sprintf("total (%d targets)", targets), total, dryRun)
			bad := len(total.Damaged) + len(total.Diverged)
			if len(total.Errors) > 0 || bad > total.Repaired {
				return &exitError{1, fmt.Errorf("scrub: %d chunks damaged or diverging, %d repaired, %d errors", bad, total.Repaired, len(total.Errors))}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report damaged and diverging replicas without repairing them")
	cmd.Flags().Uint32Var(&only, "target", 0, "scrub only this target")
	return cmd
}

// scrubTarget scrubs target tg page by page on its node, showing progress
// on a terminal.
func scrubTarget(ctx context.Context, p *rpc.Pool, tg proto.Target, repair bool) (proto.StorageScrubResp, error) {
	var sum proto.StorageScrubResp
	req := proto.StorageScrubReq{TargetID: tg.ID, Repair: repair}
	tty := isTerminal(os.Stderr)
	shown := time.Now()
	for {
		cctx, cancel := context.WithTimeout(ctx, scrubCallTimeout)
		var resp proto.StorageScrubResp
		_, err := p.Call(cctx, proto.MethodStorageScrub, &req, &resp)
		cancel()
		if err != nil {
			return sum, fmt.Errorf("scrub of target %d: %w", tg.ID, err)
		}
		addScrub(&sum, resp)
		if tty && time.Since(shown) > time.Second {
			shown = time.Now()
			fmt.Fprintf(os.Stderr, "\rscrubbing target %d: %d chunks, %s", tg.ID, sum.Chunks, humanize.IBytes(uint64(sum.Bytes)))
		}
		if !resp.More || resp.Last == nil {
			if tty {
				fmt.Fprint(os.Stderr, "\r\033[K")
			}
			return sum, nil
		}
		req.After = resp.Last
	}
}

func addScrub(sum *proto.StorageScrubResp, r proto.StorageScrubResp) {
	sum.Chunks += r.Chunks
	sum.Bytes += r.Bytes
	sum.Damaged = append(sum.Damaged, r.Damaged...)
	sum.Diverged = append(sum.Diverged, r.Diverged...)
	sum.Repaired += r.Repaired
	sum.Errors = append(sum.Errors, r.Errors...)
}

func printScrub(w io.Writer, what string, r proto.StorageScrubResp, dryRun bool) {
	fmt.Fprintf(w, "%s: %d chunks, %s verified; %d damaged, %d diverging", what, r.Chunks, humanize.IBytes(uint64(r.Bytes)), len(r.Damaged), len(r.Diverged))
	if !dryRun {
		fmt.Fprintf(w, ", %d repaired", r.Repaired)
	}
	fmt.Fprintln(w)
	for _, d := range r.Damaged {
		fmt.Fprintf(w, "  damaged: inode %d chunk %d\n", d.Ino, d.Index)
	}
	for _, d := range r.Diverged {
		fmt.Fprintf(w, "  diverging: inode %d chunk %d\n", d.Ino, d.Index)
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "  error: %s\n", e)
	}
}
