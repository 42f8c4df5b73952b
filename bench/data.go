package main

// The data suite: the data path of a real single-node cluster (`fffd local`
// on the disk under test) through libfff, next to fio on a plain file of the
// same size on the same disk and raw loopback TCP, in one run.
//
//   - sequential write of a -data-size file with -data-write-size writes
//     (libfff.File.Write, write-behind; the time includes Close), against fio
//     --rw=write --direct=1 --ioengine=io_uring with --end_fsync=1;
//   - sequential read of it, cache dropped, -data-readers goroutines each
//     issuing ReadAt of -data-read-size pieces (by default 16 x 4 MiB, the
//     same 64 MiB in flight as fio's), against fio --rw=read --bs=4M
//     --iodepth=16 --direct=1 --ioengine=io_uring, and the raw loopback TCP
//     stream of rpcbench (1 MiB messages on one connection);
//   - random sample reads at each -sizes and each -data-depths D/B: a
//     -file-size file of fixed-size samples, D reads in flight as D/B
//     goroutines each calling Client.ReadBatch with B random aligned ranges
//     into uring.Arena buffers, against the ffrecord suite's fio randread
//     (--iodepth=D --iomem=shmhuge) on a plain file of the same size on the
//     same disk. The targets compare each side's best depth: fio's is the
//     disk's limit for the pattern; fff's deeper setting is what a data
//     loader with a few batches prefetched keeps in flight.
//
// Reads are cold (page cache dropped before each); fff and fio alternate
// over -rounds rounds and the table shows each side's median.
//
// Targets (the issue): sequential read ≥ 80% of min(fio sequential read,
// loopback TCP); random reads ≥ 70% of fio's IOPS at 4 KiB and ≥ 80% of its
// bandwidth at 128 KiB and 1 MiB.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"fff/internal/rpc/rpcbench"
	"fff/internal/uring"
	"fff/libfff"
)

type dataConfig struct {
	size      string
	writeSize string
	readSize  string
	readers   int
	seq       bool
	depths    string
	pool      int
}

var dataCfg dataConfig

func init() {
	flag.StringVar(&dataCfg.size, "data-size", "4GiB", "data suite: size of the sequentially written and read file")
	flag.StringVar(&dataCfg.writeSize, "data-write-size", "4MiB", "data suite: size of each sequential Write")
	flag.StringVar(&dataCfg.readSize, "data-read-size", "4MiB", "data suite: size of each sequential ReadAt")
	flag.IntVar(&dataCfg.readers, "data-readers", 16, "data suite: goroutines reading the sequential file in parallel")
	flag.StringVar(&dataCfg.depths, "data-depths", "64/8,256/16,256/32", "data suite: random-read depths as IN_FLIGHT/BATCH pairs (fio runs --iodepth=IN_FLIGHT)")
	flag.IntVar(&dataCfg.pool, "data-pool", 0, "data suite: libfff connections per server (0: libfff's default)")
	flag.BoolVar(&dataCfg.seq, "data-seq", true, "data suite: measure sequential write and read (false: random sample reads only)")
}

const (
	dataSeqReadTarget = 0.80 // of min(fio sequential read, loopback TCP)
	dataIOPSTarget    = 0.70 // of fio's IOPS at 4 KiB
	dataBWTarget      = 0.80 // of fio's bandwidth at larger samples
	dataFioSeqBS      = 4 << 20
	dataFioSeqDepth   = 16
)

func runDataSuite(ctx context.Context, cfg config) error {
	size, err := parseSize(dataCfg.size)
	if err != nil {
		return err
	}
	wsize, err := parseSize(dataCfg.writeSize)
	if err != nil {
		return err
	}
	rsize, err := parseSize(dataCfg.readSize)
	if err != nil {
		return err
	}
	size = size / dataFioSeqBS * dataFioSeqBS
	if size == 0 || wsize <= 0 || rsize <= 0 || dataCfg.readers <= 0 {
		return errors.New("data: -data-size must be at least 4 MiB, sizes and readers positive")
	}
	p, c, cleanup, err := startDataCluster(ctx, cfg, "data")
	if err != nil {
		return err
	}
	defer cleanup()

	fmt.Printf("\n## Data path on a single-node cluster (fffd local)\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; fffd %s; clients and server on the same machine; cold cache before every read; fff and fio alternate over %d rounds (medians)\n\n",
		hostInfo(), runtime.NumCPU(), p.dir, p.cmd.Path, cfg.rounds)

	if dataCfg.seq {
		if err := dataSequential(ctx, cfg, p, c, size, wsize, rsize); err != nil {
			return err
		}
	}

	// Random sample reads, at each depth: the same number of reads in flight
	// for fio (at the disk) and fff (in ReadBatch calls).
	depths, err := parseDepths(dataCfg.depths)
	if err != nil {
		return err
	}
	fmt.Printf("\nRandom sample reads, %s file per sample size; at each depth D with batch B, fff runs D/B goroutines each calling ReadBatch of B random samples into uring.Arena buffers, fio runs --iodepth=D --iomem=shmhuge on a plain file of the same size\n\n",
		formatSize(cfg.fileSize))
	fmt.Println("| sample size | in flight (batch) | fff samples/s | fio IOPS | IOPS ratio | fff MiB/s | fio MiB/s | BW ratio | fff batch p50 | fff batch p99 | fff range | fio range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	type best struct {
		size     int64
		fff, fio result
		fffAt    string
		fioAt    string
	}
	var bests []best
	for _, ssize := range cfg.sizes {
		name := fmt.Sprintf("/bench/samples-%d", ssize)
		plain := filepath.Join(p.dir, fmt.Sprintf("fio-samples-%d", ssize))
		n := cfg.fileSize / ssize
		if n == 0 {
			return fmt.Errorf("data: -file-size %d is smaller than a sample of %d", cfg.fileSize, ssize)
		}
		total := n * ssize
		if _, err := dataSeqWrite(ctx, c, name, total, max(wsize/ssize, 1)*ssize); err != nil {
			return err
		}
		if err := writePlain(plain, total); err != nil {
			return err
		}
		b := best{size: ssize}
		for _, d := range depths {
			dc := cfg
			dc.qd, dc.batch = d.inFlight, d.batch
			fios, ours, err := alternate(dc,
				func() (result, error) { return runFio(ctx, dc, plain, ssize) },
				func() (result, error) { return dataRandomReads(ctx, dc, c, name, ssize, n) })
			if err != nil {
				return err
			}
			fr, or := spread(fios), spread(ours)
			fio, o := median(fios), median(ours)
			at := fmt.Sprintf("%d (%d)", d.inFlight, d.batch)
			fmt.Printf("| %s | %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %s | %s | %s | %s |\n", formatSize(ssize), at,
				o.iops, fio.iops, o.iops/fio.iops, o.mibps, fio.mibps, o.mibps/fio.mibps,
				fmtLatency(o.p50), fmtLatency(o.p99), or, fr)
			if o.iops > b.fff.iops {
				b.fff, b.fffAt = o, at
			}
			if fio.iops > b.fio.iops {
				b.fio, b.fioAt = fio, fmt.Sprintf("%d", d.inFlight)
			}
		}
		bests = append(bests, b)
		os.Remove(plain)
		c.Remove(ctx, name)
	}
	// The targets compare each side at its best depth: fio's best is the
	// disk's limit for the pattern, fff's best is what a data loader keeping
	// that many samples in flight gets.
	fmt.Printf("\nBest of each side over the depths above (fio's best is the disk's limit for the pattern)\n\n")
	fmt.Println("| sample size | fff samples/s (in flight) | fio IOPS (iodepth) | IOPS ratio | BW ratio | target |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, b := range bests {
		ratio := b.fff.iops / b.fio.iops
		target := fmt.Sprintf("IOPS ≥ %.2f %s", dataIOPSTarget, verdict(ratio >= dataIOPSTarget))
		if b.size > 4096 {
			target = fmt.Sprintf("BW ≥ %.2f %s", dataBWTarget, verdict(b.fff.mibps/b.fio.mibps >= dataBWTarget))
		}
		fmt.Printf("| %s | %.0f (%s) | %.0f (%s) | %.2f | %.2f | %s |\n", formatSize(b.size), b.fff.iops, b.fffAt,
			b.fio.iops, b.fioAt, ratio, b.fff.mibps/b.fio.mibps, target)
	}
	return nil
}

// depth is one random-read configuration: reads in flight, and samples per
// ReadBatch call on fff's side.
type depth struct{ inFlight, batch int }

// parseDepths parses "64/8,256/32" (in flight / batch).
func parseDepths(s string) ([]depth, error) {
	var out []depth
	for f := range strings.SplitSeq(s, ",") {
		var d depth
		if _, err := fmt.Sscanf(strings.TrimSpace(f), "%d/%d", &d.inFlight, &d.batch); err != nil || d.batch <= 0 || d.inFlight < d.batch || d.inFlight%d.batch != 0 {
			return nil, fmt.Errorf("data: -data-depths %q: want IN_FLIGHT/BATCH pairs with BATCH dividing IN_FLIGHT, e.g. 64/8,256/32", s)
		}
		out = append(out, d)
	}
	return out, nil
}

// startDataCluster starts a cluster for a data-path suite, connects a client
// (-data-pool connections per server) and makes /bench; cleanup closes the
// client and stops the cluster.
func startDataCluster(ctx context.Context, cfg config, suite string) (*fffdProc, *libfff.Client, func(), error) {
	p, stop, err := startCluster(ctx, cfg, suite)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := p.connect(ctx)
	if err == nil {
		if err = c.MkdirAll(ctx, "/bench", 0o755); err != nil {
			c.Close()
		}
	}
	if err != nil {
		stop()
		return nil, nil, nil, err
	}
	return p, c, func() { c.Close(); stop() }, nil
}

// connect returns a new client of the cluster p (-data-pool connections per
// server).
func (p *fffdProc) connect(ctx context.Context) (*libfff.Client, error) {
	return libfff.Connect(ctx, p.options())
}

// options are the client options of connect.
func (p *fffdProc) options() libfff.Options {
	return libfff.Options{Address: p.addr, Token: p.token, PoolSize: dataCfg.pool}
}

// dataSequential writes, then reads, one big file, alternating with fio on a plain file of the
// same size, and prints the sequential table.
func dataSequential(ctx context.Context, cfg config, p *fffdProc, c *libfff.Client, size, wsize, rsize int64) error {
	// Sequential write, then read, of one big file; fio on a plain file.
	seq := "/bench/seq"
	plainSeq := filepath.Join(p.dir, "fio-seq")
	// The read through fffd's socket too, by a client without local reads
	// (libfff/localread.go): what a client on another host gets, less the
	// network.
	so := p.options()
	so.NoLocalRead = true
	sock, err := libfff.Connect(ctx, so)
	if err != nil {
		return err
	}
	defer sock.Close()
	fioW, fffW, err := alternate(cfg,
		func() (float64, error) { return dataFioSeq(ctx, cfg, plainSeq, size, "write") },
		func() (float64, error) { return dataSeqWrite(ctx, c, seq, size, wsize) })
	if err != nil {
		return err
	}
	reads, err := rotate(cfg,
		func() (float64, error) { return dataFioSeq(ctx, cfg, plainSeq, size, "read") },
		func() (float64, error) { return dataSeqRead(ctx, c, seq, size, rsize, dataCfg.readers) },
		func() (float64, error) { return dataSeqRead(ctx, sock, seq, size, rsize, dataCfg.readers) })
	if err != nil {
		return err
	}
	fioR, fffR, sockR := reads[0], reads[1], reads[2]
	os.Remove(plainSeq)
	c.Remove(ctx, seq)
	tcp, err := dataLoopbackTCP(ctx, 3*time.Second)
	if err != nil {
		return err
	}
	mw, mfw, mr, mfr := medianF(fffW), medianF(fioW), medianF(fffR), medianF(fioR)
	ref := min(mfr, tcp)
	fmt.Printf("Sequential, %s file: fff %s writes (time includes Close), %d readers x %s ReadAt, reading fffd's data files directly (local reads, docs/wire.md) unless the row says otherwise; fio --bs=4M --iodepth=16 --direct=1 --ioengine=io_uring (write with --end_fsync=1)\n\n",
		formatSize(size), formatSize(wsize), dataCfg.readers, formatSize(rsize))
	fmt.Println("| workload | fff MiB/s | fio MiB/s | loopback TCP MiB/s | reference | fff / reference | target | fff range | fio range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	fmt.Printf("| sequential write | %.0f | %.0f | | fio | %.2f | | %s | %s |\n", mw, mfw, mw/mfw, spreadF(fffW), spreadF(fioW))
	fmt.Printf("| sequential read | %.0f | %.0f | %.0f | min(fio, TCP) = %.0f | %.2f | ≥ %.2f %s | %s | %s |\n",
		mr, mfr, tcp, ref, mr/ref, dataSeqReadTarget, verdict(mr/ref >= dataSeqReadTarget), spreadF(fffR), spreadF(fioR))
	ms := medianF(sockR)
	fmt.Printf("| sequential read, no local reads (through fffd's socket) | %.0f | | | min(fio, TCP) = %.0f | %.2f | | %s | |\n",
		ms, ref, ms/ref, spreadF(sockR))
	return nil
}

// fmtRatio shows a ratio compared with target with two decimals, three
// near the target (0.698 is not 0.70).
func fmtRatio(r, target float64) string {
	if d := r - target; d > -0.005 && d < 0.005 {
		return fmt.Sprintf("%.3f", r)
	}
	return fmt.Sprintf("%.2f", r)
}

func verdict(ok bool) string {
	if ok {
		return "(met)"
	}
	return "(missed)"
}

// dataSeqWrite writes size bytes of random data to a new fff file in
// pieces of wsize and returns MiB/s, Close included.
func dataSeqWrite(ctx context.Context, c *libfff.Client, name string, size, wsize int64) (float64, error) {
	buf := uring.AlignedBuffer(int(wsize))
	rand.NewChaCha8([32]byte{2}).Read(buf)
	t0 := time.Now()
	f, err := c.Create(ctx, name)
	if err != nil {
		return 0, err
	}
	for off := int64(0); off < size; off += wsize {
		b := buf[:min(wsize, size-off)]
		// Vary the content a little so no two pieces are the same.
		b[0], b[1] = byte(off>>20), byte(off>>28)
		if _, err := f.Write(b); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	return float64(size) / (1 << 20) / time.Since(t0).Seconds(), nil
}

// dataSeqRead reads the file with readers goroutines taking rsize pieces in
// order and returns MiB/s.
func dataSeqRead(ctx context.Context, c *libfff.Client, name string, size, rsize int64, readers int) (float64, error) {
	f, err := c.OpenFile(ctx, name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if f.Size() < size {
		return 0, fmt.Errorf("data: %s has %d bytes, want %d", name, f.Size(), size)
	}
	var next, got atomic.Int64
	errs := make([]error, readers)
	bufs := make([][]byte, readers)
	for i := range bufs {
		bufs[i] = uring.AlignedBuffer(int(rsize))
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				off := next.Add(rsize) - rsize
				if off >= size {
					return
				}
				n, err := f.ReadAtContext(ctx, bufs[w][:min(rsize, size-off)], off)
				got.Add(int64(n))
				if err != nil && !(errors.Is(err, io.EOF) && off+int64(n) == size) {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if got.Load() != size {
		return 0, fmt.Errorf("data: read %d bytes of %d", got.Load(), size)
	}
	return float64(size) / (1 << 20) / el, nil
}

// dataFioSeq runs fio sequentially (rw "read" or "write") over path and
// returns MiB/s.
func dataFioSeq(ctx context.Context, cfg config, path string, size int64, rw string) (float64, error) {
	args := []string{
		"--name=seq" + rw, "--filename=" + path, "--ioengine=io_uring", "--direct=1",
		"--rw=" + rw, fmt.Sprintf("--bs=%d", dataFioSeqBS), fmt.Sprintf("--iodepth=%d", dataFioSeqDepth),
		fmt.Sprintf("--size=%d", size),
	}
	if rw == "write" {
		args = append(args, "--end_fsync=1")
	} else {
		args = append(args, "--readonly")
	}
	if release, ok := reserveHugePages(dataFioSeqDepth*dataFioSeqBS/hugePageSize + 2); ok {
		defer release()
		args = append(args, "--iomem=shmhuge")
	}
	r, err := fioJSON(ctx, cfg, args...)
	if rw == "write" {
		return r.writeMiBps, err
	}
	return r.readMiBps, err
}

// dataFioCopy reads size bytes of src and writes as many to dst at once,
// each with dataFioSeq's blocks and depth (a copy within one disk, as a
// resync between two nodes on it is), and returns the bytes copied per
// second in MiB/s: size over the longer job's runtime.
func dataFioCopy(ctx context.Context, cfg config, src, dst string, size int64) (float64, error) {
	job := func(name, path, rw string) []string {
		a := []string{"--name=" + name, "--filename=" + path, "--ioengine=io_uring", "--direct=1",
			"--rw=" + rw, fmt.Sprintf("--bs=%d", dataFioSeqBS), fmt.Sprintf("--iodepth=%d", dataFioSeqDepth),
			fmt.Sprintf("--size=%d", size)}
		if rw == "write" {
			a = append(a, "--end_fsync=1")
		}
		return a
	}
	jobs, err := fioJobs(ctx, cfg, append(job("copyread", src, "read"), job("copywrite", dst, "write")...)...)
	if err != nil {
		return 0, err
	}
	if len(jobs) != 2 {
		return 0, fmt.Errorf("fio: %d jobs in its report of a copy, want 2", len(jobs))
	}
	took := max(jobs[0].JobRuntime, jobs[1].JobRuntime) / 1000
	if took <= 0 || jobs[1].Write.IOBytes < float64(size) {
		return 0, fmt.Errorf("fio: a copy wrote %.0f of %d bytes in %.3f s", jobs[1].Write.IOBytes, size, took)
	}
	return float64(size) / (1 << 20) / took, nil
}

// writePlain writes size bytes of random data to a local file and syncs it.
func writePlain(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 4<<20)
	rng := rand.NewChaCha8([32]byte{3})
	for off := int64(0); off < size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), size-off)]
		rng.Read(b)
		if _, err := f.Write(b); err != nil {
			return err
		}
	}
	return f.Sync()
}

// dataLoopbackTCP measures rpcbench's raw TCP stream of 1 MiB messages on
// one connection for d after a short warm-up, best of three, in MiB/s.
func dataLoopbackTCP(ctx context.Context, d time.Duration) (float64, error) {
	e, err := rpcbench.NewEnv()
	if err != nil {
		return 0, err
	}
	defer e.Close()
	if _, _, err := e.BulkRaw(ctx, rpcbench.Limit{Until: time.Now().Add(d / 10)}); err != nil {
		return 0, err
	}
	var best float64
	for range 3 {
		n, el, err := e.BulkRaw(ctx, rpcbench.Limit{Until: time.Now().Add(d / 3)})
		if err != nil {
			return 0, err
		}
		best = max(best, float64(n)/el.Seconds()) // 1 MiB messages
	}
	return best, nil
}

// dataRandomReads keeps cfg.qd reads in flight as cfg.qd/cfg.batch
// goroutines calling ReadBatch of cfg.batch random samples for cfg.duration.
func dataRandomReads(ctx context.Context, cfg config, c *libfff.Client, name string, ssize, n int64) (result, error) {
	f, err := c.OpenFile(ctx, name)
	if err != nil {
		return result{}, err
	}
	defer f.Close()
	var arena uring.Arena
	return measureBatches(cfg, func(g int) batchFunc {
		rng := rand.New(rand.NewPCG(uint64(g), 9))
		ops := make([]libfff.ReadOp, cfg.batch)
		for k := range ops {
			ops[k] = libfff.ReadOp{File: f, Dst: arena.Alloc(int(ssize))}
		}
		return func() (int64, int64, error) {
			for k := range ops {
				ops[k].Off = rng.Int64N(n) * ssize
			}
			if err := c.ReadBatch(ctx, ops); err != nil {
				return 0, 0, err
			}
			var nb int64
			for k := range ops {
				if ops[k].Err != nil {
					return 0, 0, ops[k].Err
				}
				nb += int64(ops[k].N)
			}
			return int64(len(ops)), nb, nil
		}
	})
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func spreadF(v []float64) string {
	return fmt.Sprintf("%.0f–%.0f", slices.Min(v), slices.Max(v))
}
