package main

// The python suite: random batched sample reads of an FFRecord dataset stored
// in a real single-node cluster, through the Python package (fff.ffrecord.Reader
// .submit over libfff.so; bench/python_reads.py), next to the Go client reading
// the same dataset the same way (ffrecord.Reader.ReadBatch over libfff, the
// path the C API runs) and fio on a plain file of the same size on the same
// disk, in one run: the page cache dropped before each measurement, the three
// rotating order over -rounds rounds, medians.
//
// Target (issue #5): Python ≥ 85% of Go's rate at 128 KiB.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"fff/internal/uring"
	"fff/libfff"
	"fff/libfff/dataset"
)

type pythonConfig struct {
	python string
	depth  string
}

var pyCfg pythonConfig

func init() {
	flag.StringVar(&pyCfg.python, "python", ".venv/bin/python", "python suite: the interpreter with the fff package installed (scripts/bootstrap.sh python)")
	flag.StringVar(&pyCfg.depth, "python-depth", "256/32", "python suite: IN_FLIGHT/BATCH for all three sides (fio --iodepth=IN_FLIGHT)")
}

const pythonTarget = 0.85 // of Go's rate at 128 KiB

func runPythonSuite(ctx context.Context, cfg config) error {
	ds, err := parseDepths(pyCfg.depth)
	if err != nil || len(ds) != 1 {
		return fmt.Errorf("python: -python-depth %q: want one IN_FLIGHT/BATCH pair", pyCfg.depth)
	}
	d := ds[0]
	script, err := filepath.Abs("bench/python_reads.py")
	if err != nil {
		return err
	}
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("python: run the benchmark from the repository root (%w)", err)
	}
	if _, err := exec.LookPath(pyCfg.python); err != nil {
		return fmt.Errorf("python: no interpreter %s (run scripts/bootstrap.sh python, or pass -python): %w", pyCfg.python, err)
	}
	p, c, cleanup, err := startDataCluster(ctx, cfg, "python")
	if err != nil {
		return err
	}
	defer cleanup()
	dc := cfg
	dc.qd, dc.batch = d.inFlight, d.batch

	fmt.Printf("\n## Python batched random reads (fffd local)\n\n")
	fmt.Printf("machine: %s; a %s FFRecord v2 dataset (samples aligned to 4 KiB) per sample size in fff; %d samples in flight: Python keeps %d batches of %d in flight with Reader.submit (bench/python_reads.py), Go runs %d goroutines each calling ffrecord.Reader.ReadBatch of %d over libfff, fio --iodepth=%d on a plain file; checksums verified by fff; cold cache; %d rounds, medians\n\n",
		hostInfo(), formatSize(cfg.fileSize), d.inFlight, d.inFlight/d.batch, d.batch, d.inFlight/d.batch, d.batch, d.inFlight, cfg.rounds)
	fmt.Println("| sample size | Python samples/s | Go samples/s | fio IOPS | Python / Go | Python / fio | Python MiB/s | Python batch p50 | Python batch p99 | target |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, ssize := range cfg.sizes {
		n := cfg.fileSize / ssize
		if n == 0 {
			return fmt.Errorf("python: -file-size %d is smaller than a sample of %d", cfg.fileSize, ssize)
		}
		name := fmt.Sprintf("/bench/py-%d.ffr", ssize)
		if err := writeSampleDataset(ctx, c, name, ssize, n); err != nil {
			return err
		}
		plain := filepath.Join(p.dir, fmt.Sprintf("fio-py-%d", ssize))
		if err := writePlain(plain, n*ssize); err != nil {
			return err
		}
		rs, err := rotate(cfg,
			func() (result, error) { return runFio(ctx, dc, plain, ssize) },
			func() (result, error) { return goDatasetReads(ctx, dc, c, "fff://"+name) },
			func() (result, error) { return pythonReads(ctx, dc, p, script, "fff://"+name) })
		if err != nil {
			return err
		}
		fio, g, py := median(rs[0]), median(rs[1]), median(rs[2])
		target := ""
		if ssize == 128<<10 {
			target = fmt.Sprintf("Python / Go ≥ %.2f %s", pythonTarget, verdict(py.iops/g.iops >= pythonTarget))
		}
		fmt.Printf("| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.1f | %s | %s | %s |\n", formatSize(ssize),
			py.iops, g.iops, fio.iops, py.iops/g.iops, py.iops/fio.iops, py.mibps, fmtLatency(py.p50), fmtLatency(py.p99), target)
		os.Remove(plain)
		c.Remove(ctx, name)
	}
	return nil
}

// writeSampleDataset writes an FFRecord v2 file of n random samples of ssize
// bytes, aligned to 4 KiB (so O_DIRECT reads of local copies need no bounce).
func writeSampleDataset(ctx context.Context, c *libfff.Client, name string, ssize, n int64) error {
	w, err := dataset.Create(ctx, c, "fff://"+name, dataset.WriterOptions{Alignment: 4096})
	if err != nil {
		return err
	}
	sample := make([]byte, ssize)
	rng := rand.New(rand.NewPCG(uint64(ssize), 3))
	for i := range n {
		for k := 0; k+8 <= len(sample); k += 4096 {
			binary.LittleEndian.PutUint64(sample[k:], rng.Uint64()^uint64(i))
		}
		if err := w.Write(sample); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit(ctx)
}

// goDatasetReads keeps cfg.qd samples in flight as cfg.qd/cfg.batch goroutines
// each calling ffrecord.Reader.ReadBatch of cfg.batch random samples.
func goDatasetReads(ctx context.Context, cfg config, c *libfff.Client, path string) (result, error) {
	ds, err := dataset.Open(ctx, c, path, dataset.Options{Verify: true})
	if err != nil {
		return result{}, err
	}
	defer ds.Close()
	r := ds.Reader()
	n := r.Len()
	size, err := r.Size(0)
	if err != nil {
		return result{}, err
	}
	var arena uring.Arena
	return measureBatches(cfg, func(g int) batchFunc {
		rng := rand.New(rand.NewPCG(uint64(g), 11))
		idx := make([]int64, cfg.batch)
		dsts := make([][]byte, cfg.batch)
		for k := range dsts {
			dsts[k] = arena.Alloc(int(size))
		}
		return func() (int64, int64, error) {
			for k := range idx {
				idx[k] = rng.Int64N(n)
			}
			if err := r.ReadBatch(ctx, idx, dsts); err != nil {
				return 0, 0, err
			}
			return int64(len(idx)), int64(len(idx)) * size, nil
		}
	})
}

// pythonReads runs bench/python_reads.py against the cluster of p.
func pythonReads(ctx context.Context, cfg config, p *fffdProc, script, path string) (result, error) {
	cmd := exec.CommandContext(ctx, pyCfg.python, script, path,
		"--batch", fmt.Sprint(cfg.batch), "--inflight", fmt.Sprint(cfg.qd/cfg.batch),
		"--duration", fmt.Sprint(cfg.duration.Seconds()))
	cmd.Env = append(os.Environ(), libfff.EnvCluster+"="+p.addr, libfff.EnvToken+"="+p.token)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, fmt.Errorf("python: %s: %w: %s", filepath.Base(script), err, stderr.Bytes())
	}
	var rep struct {
		SamplesPerS float64 `json:"samples_per_s"`
		MiBPerS     float64 `json:"mib_per_s"`
		P50         float64 `json:"p50_s"`
		P99         float64 `json:"p99_s"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &rep); err != nil {
		return result{}, errors.Join(fmt.Errorf("python: cannot parse %q", out), err)
	}
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	return result{iops: rep.SamplesPerS, mibps: rep.MiBPerS, p50: sec(rep.P50), p99: sec(rep.P99)}, nil
}
