package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"fff/internal/proto"
	"fff/internal/uring"
	"fff/libfff"
)

// `fff bench` measures a cluster's data path from this client: a
// sequential write of one file, a sequential read of it, then random
// batched sample reads (libfff.Client.ReadBatch, the data loader's path)
// for each sample size, and prints one table.

type benchOpts struct {
	dir      string
	size     string
	samples  string
	batch    int
	inflight int
	duration time.Duration
	keep     bool
}

// benchRow is one line of the result table; zero fields print as "-".
type benchRow struct {
	test          string
	block         int64
	bytes         int64
	elapsed       time.Duration
	samples       int64
	p50, p90, p99 time.Duration
}

func newBenchCmd() *cobra.Command {
	var o benchOpts
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure a cluster's read and write throughput",
		Long: `Measure the data path of a cluster from this machine: write one file of --size
sequentially, read it back sequentially (MiB/s), then for each --sample-size
issue ReadBatch calls of --batch random ranges (aligned to 4 KiB) with
--inflight batches in flight for --duration (samples/s, MiB/s and the
p50/p90/p99 latency of a batch). The file is written under --dir and removed
at the end, with the directories of --dir that bench created, also when
interrupted, unless --keep is given. A progress bar is shown when stderr is a
terminal.` + "\n" + nsPathHelp,
		Example: `  fff bench
  fff bench --size 4GiB --sample-size 64KiB --batch 32 --inflight 16 --duration 30s
  fff bench --dir fff://10.0.0.5:8000/tmp/bench --keep`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			size, err := parseSize(o.size)
			if err != nil {
				return usageErrorf("--size: %v", err)
			}
			if size < uring.Align {
				return usageErrorf("--size %s: give at least 4KiB", o.size)
			}
			var sampleSizes []int64
			for _, s := range strings.Split(o.samples, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				n, err := parseSize(s)
				if err != nil || n < 1 {
					return usageErrorf("--sample-size %q: give sizes such as 4KiB,128KiB,1MiB", s)
				}
				if n > 1<<30 {
					return usageErrorf("--sample-size %s: at most 1GiB", s)
				}
				sampleSizes = append(sampleSizes, n)
			}
			switch {
			case o.batch < 1:
				return usageErrorf("--batch %d: give 1 or more", o.batch)
			case o.inflight < 1:
				return usageErrorf("--inflight %d: give 1 or more", o.inflight)
			case o.duration <= 0:
				return usageErrorf("--duration %v: give a positive duration", o.duration)
			}
			return nsRun(cmd, func(s *nsSession) error {
				rows, err := runBench(s, o, size, sampleSizes)
				if len(rows) > 0 {
					printBench(cmd.OutOrStdout(), rows)
				}
				if err != nil {
					if s.ctx.Err() != nil {
						return s.ctx.Err()
					}
					return &exitError{1, err}
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", "fff:///bench", "cluster directory for the benchmark file (created if missing)")
	f.StringVar(&o.size, "size", "1GiB", "size of the file written and read")
	f.StringVar(&o.samples, "sample-size", "4KiB,128KiB,1MiB", "comma-separated sample sizes of the random reads")
	f.IntVar(&o.batch, "batch", 8, "samples per ReadBatch call")
	f.IntVar(&o.inflight, "inflight", 8, "ReadBatch calls in flight")
	f.DurationVar(&o.duration, "duration", 10*time.Second, "how long each sample size is read")
	f.BoolVar(&o.keep, "keep", false, "keep the benchmark file")
	return cmd
}

// runBench runs the phases and returns the rows of those that completed.
func runBench(s *nsSession, o benchOpts, size int64, sampleSizes []int64) (rows []benchRow, err error) {
	ctx := s.ctx
	t, err := s.resolve(o.dir)
	if err != nil {
		return nil, err
	}
	c := t.c
	// What bench makes it removes at the end, after an interrupt too (the
	// removal outlives ctx), unless --keep: the file, then the directories
	// of --dir it created, deepest first. A directory that another bench
	// has filled meanwhile stays (ENOTEMPTY).
	var made []string
	for p := t.path; p != "/"; p = path.Dir(p) {
		if _, serr := c.Lstat(ctx, p); !errors.Is(serr, fs.ErrNotExist) {
			break
		}
		made = append(made, p)
	}
	if err := c.MkdirAll(ctx, t.path, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %s", o.dir, nsErrText(err))
	}
	host, _ := os.Hostname()
	name := path.Join(t.path, fmt.Sprintf("bench-%s-%d", host, os.Getpid()))
	created := false
	defer func() {
		if o.keep {
			if created {
				fmt.Fprintf(s.cmd.ErrOrStderr(), "kept %s\n", name)
			}
			return
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, p := range append([]string{name}, made...) {
			rerr := c.Remove(rctx, p)
			if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && !errors.Is(rerr, proto.ErrNotEmpty) && err == nil {
				err = fmt.Errorf("removing %s: %s", p, nsErrText(rerr))
			}
		}
	}()

	// Sequential write, in chunk-sized writes.
	f, err := c.Create(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("create %s: %s", name, nsErrText(err))
	}
	created = true
	bs := int64(f.Layout().ChunkSize)
	if bs <= 0 || bs > 64<<20 {
		bs = 4 << 20
	}
	buf := uring.AlignedBuffer(int(bs))
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	prog := newProgress("write", size, 0)
	start := time.Now()
	var written int64
	for written < size && err == nil {
		n := min(bs, size-written)
		_, err = f.Write(buf[:n])
		written += n
		prog.Add(n, 0)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	prog.Finish(err == nil)
	if err != nil {
		return nil, fmt.Errorf("write %s: %s", name, nsErrText(err))
	}
	rows = append(rows, benchRow{test: "seq write", block: bs, bytes: size, elapsed: time.Since(start)})

	// Sequential read.
	f, err = c.OpenFile(ctx, name)
	if err != nil {
		return rows, fmt.Errorf("open %s: %s", name, nsErrText(err))
	}
	defer f.Close()
	prog = newProgress("read", size, 0)
	start = time.Now()
	var read int64
	for {
		n, rerr := io.ReadFull(f, buf)
		read += int64(n)
		prog.Add(int64(n), 0)
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
		if cerr := ctx.Err(); cerr != nil {
			err = cerr
			break
		}
	}
	prog.Finish(err == nil && read == size)
	if err == nil && read != size {
		err = fmt.Errorf("read %d bytes, wrote %d", read, size)
	}
	if err != nil {
		return rows, fmt.Errorf("read %s: %s", name, nsErrText(err))
	}
	rows = append(rows, benchRow{test: "seq read", block: bs, bytes: size, elapsed: time.Since(start)})

	// Random batched sample reads.
	for _, ss := range sampleSizes {
		if ss > size {
			fmt.Fprintf(s.cmd.ErrOrStderr(), "skipping sample size %s: larger than --size\n", humanBytes(ss))
			continue
		}
		row, err := benchSamples(ctx, c, f, size, ss, o)
		if err != nil {
			return rows, fmt.Errorf("random reads of %s: %s", humanBytes(ss), nsErrText(err))
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// benchSamples runs o.inflight workers, each issuing ReadBatch calls of
// o.batch random ranges of ss bytes, for o.duration.
func benchSamples(ctx context.Context, c *libfff.Client, f *libfff.File, size, ss int64, o benchOpts) (benchRow, error) {
	var arena uring.Arena
	slots := (size-ss)/uring.Align + 1 // offsets: multiples of Align with off+ss <= size
	var (
		mu      sync.Mutex
		lats    []time.Duration
		samples int64
		firstEr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for w := range o.inflight {
		ops := make([]libfff.ReadOp, o.batch)
		for i := range ops {
			ops[i] = libfff.ReadOp{File: f, Dst: arena.Alloc(int(ss))}
		}
		r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
		wg.Go(func() {
			var my []time.Duration
			var n int64
			defer func() {
				mu.Lock()
				lats = append(lats, my...)
				samples += n
				mu.Unlock()
			}()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				for i := range ops {
					ops[i].Off = r.Int64N(slots) * uring.Align
				}
				t0 := time.Now()
				err := c.ReadBatch(ctx, ops)
				lat := time.Since(t0)
				if err == nil {
					for i := range ops {
						if ops[i].Err != nil || ops[i].N != len(ops[i].Dst) {
							err = ops[i].Err
							if err == nil {
								err = fmt.Errorf("short read at %d: %d of %d bytes", ops[i].Off, ops[i].N, len(ops[i].Dst))
							}
							break
						}
					}
				}
				if err != nil {
					mu.Lock()
					if firstEr == nil {
						firstEr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				my = append(my, lat)
				n += int64(len(ops))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstEr != nil {
		return benchRow{}, firstEr
	}
	if err := ctx.Err(); err != nil && len(lats) == 0 {
		return benchRow{}, err
	}
	if len(lats) == 0 {
		return benchRow{}, errors.New("no batch completed")
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration { return lats[min(len(lats)-1, int(p*float64(len(lats))))] }
	return benchRow{
		test:    fmt.Sprintf("random x%d/%d", o.batch, o.inflight),
		block:   ss,
		bytes:   samples * ss,
		elapsed: elapsed,
		samples: samples,
		p50:     pct(0.50),
		p90:     pct(0.90),
		p99:     pct(0.99),
	}, nil
}

// benchHeader is the result table's header.
var benchHeader = []string{"TEST", "BLOCK", "BYTES", "TIME", "MiB/s", "SAMPLES/s", "P50", "P90", "P99"}

func printBench(w io.Writer, rows []benchRow) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(benchHeader, "\t"))
	dash := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return fmtLatency(d)
	}
	for _, r := range rows {
		secs := max(r.elapsed.Seconds(), 1e-9)
		sps := "-"
		if r.samples > 0 {
			sps = fmt.Sprintf("%.0f", float64(r.samples)/secs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2fs\t%.1f\t%s\t%s\t%s\t%s\n", r.test, humanBytes(r.block), humanBytes(r.bytes), r.elapsed.Seconds(),
			float64(r.bytes)/(1<<20)/secs, sps, dash(r.p50), dash(r.p90), dash(r.p99))
	}
	tw.Flush()
}

// fmtLatency prints d with 3 significant digits in µs or ms.
func fmtLatency(d time.Duration) string {
	us := float64(d) / float64(time.Microsecond)
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 10000:
		return fmt.Sprintf("%.2fms", us/1000)
	default:
		return fmt.Sprintf("%.1fms", us/1000)
	}
}
