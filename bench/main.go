// Command bench runs fff's benchmarks next to their references, in one run on
// the same data, and prints markdown tables with ratios (DESIGN §12).
//
//   - ffrecord: batch reads of random samples from a local dataset against fio
//     (io_uring, O_DIRECT, random reads) at the same block size and queue
//     depth on the same file, the page cache dropped before each measurement,
//     the two sides alternating over several rounds (medians reported).
//
//   - rpc: small-call rate and 1 MiB bulk transfer of the RPC layer against
//     raw loopback TCP.
//
//   - meta: stat and create rates of a real `fffd local` through RPC with 1
//     and 64 clients, next to the same service in process; one client
//     creating durable files through libfff against the local disk (meta.go);
//     the same stat and create with 16 and 64 clients on a 3-node cluster
//     over etcd (`fff up --nodes 3`), next to etcd's own Get and Txn rates on
//     the same members and the limit they set for fff (meta_etcd.go).
//
//   - data: sequential write/read of a big file and ReadBatch random sample
//     reads through libfff against a real `fffd local`, next to fio on the
//     same disk and raw loopback TCP (data.go).
//
//   - caps: ReadBatch of 4 KiB samples as an ordinary user, with storage's
//     capability checks against a cluster without them (caps.go).
//
//   - tls: bulk reads over loopback TCP with TLS against plaintext, from
//     fffd and from memory through the RPC layer (tls.go).
//
//   - fuse: the FUSE mount against the native client and fio on the local
//     disk: sequential write/read, random 4 KiB / 128 KiB reads; cp -a of
//     small files against the same copy to the local disk (fuse.go).
//
//   - loader: an epoch through fff.torch.DataLoader next to torchvision's
//     ImageFolder on local JPEGs, without and with decode (loader.go).
//
//   - replication: clusters of three fffd processes made by `fff up` with 3
//     copies of each chunk against 1: sequential write/read, write latency,
//     the write stall after a kill -9 of a storage node, and the resync rate
//     against fio sequential write (replication.go).
//
//     go run ./bench -dir /var/tmp/fff-bench -file-size 2GiB -duration 10s
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dustin/go-humanize"

	"fff/ffrecord"
	"fff/ffrecord/ffrfile"
	"fff/internal/rpc/rpcbench"
	"fff/internal/uring"
	"fff/libfff"
)

type config struct {
	dir       string
	fileSize  int64
	duration  time.Duration
	sizes     []int64
	qd        int
	batch     int
	keep      bool
	noDrop    bool
	fioBinary string
	rounds    int
	suites    map[string]bool
}

func main() {
	var cfg config
	var sizes, fileSize string
	flag.StringVar(&cfg.dir, "dir", "", "directory on the disk under test (default: a new directory under /var/tmp)")
	flag.StringVar(&fileSize, "file-size", "1GiB", "size of each generated dataset")
	flag.DurationVar(&cfg.duration, "duration", 8*time.Second, "time per measurement")
	flag.StringVar(&sizes, "sizes", "4KiB,128KiB,1MiB", "sample sizes")
	flag.IntVar(&cfg.qd, "qd", 64, "reads in flight (fio iodepth; batch size x concurrent batches for fff)")
	flag.IntVar(&cfg.batch, "batch", 8, "samples per ReadBatch call (several calls stay in flight, as in a data loader)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the generated datasets")
	flag.BoolVar(&cfg.noDrop, "no-drop-cache", false, "do not drop the page cache before measurements")
	flag.StringVar(&cfg.fioBinary, "fio", "fio", "fio binary")
	flag.IntVar(&cfg.rounds, "rounds", 3, "alternating fio/fff rounds per size; the table shows medians")
	suites := flag.String("suites", "ffrecord,rpc,meta,data,caps,metrics,tls,fuse,python,loader,replication", "benchmarks to run: ffrecord (batch reads vs fio), rpc (RPC vs raw TCP), meta (metadata rates of fffd local, and of a 3-node cluster over etcd vs raw etcd), data (libfff data path of fffd local vs fio and loopback TCP), caps (ReadBatch of 4 KiB samples with storage's capability checks vs without), metrics (the same through the server's RPC path, with its Prometheus metrics scraped vs off), tls (bulk reads with TLS vs plaintext over loopback TCP), fuse (the FUSE mount vs the native client and fio), python (the Python package's batched reads vs Go and fio), loader (fff.torch.DataLoader vs ImageFolder, an epoch with and without decode), replication (3 copies vs 1 on clusters made by fff up: throughput, write latency, the stall after a kill -9, resync vs fio)")
	metricsScrape := flag.Duration("metrics-scrape", time.Second, "metrics suite: how often the metrics side is scraped")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the fff measurements to this file")
	tcpOnly := flag.Bool("tcp-only", false, "clients reach fffd over loopback TCP instead of its same-host Unix socket (sets FFF_TCP_ONLY=1 for this process and the ones it starts)")
	flag.Parse()
	if *tcpOnly {
		os.Setenv(libfff.EnvTCPOnly, "1")
	}
	transport := "fff clients on this host use fffd's Unix socket (docs/wire.md; -tcp-only for loopback TCP)"
	if os.Getenv(libfff.EnvTCPOnly) == "1" {
		transport = "fff clients use loopback TCP (" + libfff.EnvTCPOnly + "=1)"
	}
	fmt.Printf("transport: %s\n", transport)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	var err error
	if cfg.fileSize, err = parseSize(fileSize); err != nil {
		fatal(err)
	}
	for _, s := range strings.Split(sizes, ",") {
		v, err := parseSize(s)
		if err != nil {
			fatal(err)
		}
		cfg.sizes = append(cfg.sizes, v)
	}
	cfg.suites = map[string]bool{}
	for _, s := range strings.Split(*suites, ",") {
		cfg.suites[strings.TrimSpace(s)] = true
	}
	if cfg.qd%cfg.batch != 0 {
		fatal(fmt.Errorf("-qd %d must be a multiple of -batch %d", cfg.qd, cfg.batch))
	}
	ctx := context.Background()
	if cfg.suites["ffrecord"] {
		if err := runFFRecord(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["rpc"] {
		fmt.Printf("\n## RPC vs raw loopback TCP\n\n")
		if err := rpcbench.Run(ctx, os.Stdout, 3*time.Second); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["meta"] {
		if err := runMetaSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["data"] {
		if err := runDataSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["caps"] {
		if err := runCapsSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["metrics"] {
		if err := runMetricsSuite(ctx, cfg, *metricsScrape); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["tls"] {
		if err := runTLSSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["fuse"] {
		if err := runFuseSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["python"] {
		if err := runPythonSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["loader"] {
		if err := runLoaderSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
	if cfg.suites["replication"] {
		if err := runReplicationSuite(ctx, cfg); err != nil {
			fatal(err)
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

type result struct {
	iops, mibps float64
	p50, p99    time.Duration
}

func runFFRecord(ctx context.Context, cfg config) error {
	if cfg.dir == "" {
		d, err := os.MkdirTemp("/var/tmp", "fff-bench-")
		if err != nil {
			return err
		}
		cfg.dir = d
		if !cfg.keep {
			defer os.RemoveAll(cfg.dir)
		}
	} else if err := os.MkdirAll(cfg.dir, 0o755); err != nil {
		return err // a -dir of the user's: only the datasets made here are removed
	}
	fmt.Printf("## FFRecord batch reads vs fio (random reads, cold cache)\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; %s per dataset; %s per measurement; queue depth %d (fff: %d concurrent ReadBatch calls of %d samples); both sides read into huge-page-backed buffers (fio: --iomem=shmhuge)\n\n",
		hostInfo(), runtime.NumCPU(), cfg.dir, formatSize(cfg.fileSize), cfg.duration, cfg.qd, cfg.qd/cfg.batch, cfg.batch)
	fmt.Println("| sample size | fio IOPS | fff IOPS | IOPS ratio | fio MiB/s | fff MiB/s | BW ratio | fff batch p50 | fff batch p99 | fio IOPS range | fff IOPS range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, size := range cfg.sizes {
		path := filepath.Join(cfg.dir, fmt.Sprintf("samples-%d.ffr", size))
		if err := generate(path, size, cfg.fileSize); err != nil {
			return err
		}
		// The disk's speed drifts (a virtual disk shares its host), so the two
		// sides alternate and the table shows each side's median.
		fios, ourss, err := alternate(cfg,
			func() (result, error) { return runFio(ctx, cfg, path, size) },
			func() (result, error) { return runBatchReads(ctx, cfg, path) })
		if err != nil {
			return err
		}
		fioRange, oursRange := spread(fios), spread(ourss)
		fio, ours := median(fios), median(ourss)
		fmt.Printf("| %s | %.0f | %.0f | %.2f | %.1f | %.1f | %.2f | %s | %s | %s | %s |\n", formatSize(size),
			fio.iops, ours.iops, ours.iops/fio.iops, fio.mibps, ours.mibps, ours.mibps/fio.mibps,
			ours.p50.Round(time.Microsecond), ours.p99.Round(time.Microsecond), fioRange, oursRange)
		if !cfg.keep {
			os.Remove(path)
		}
	}
	return nil
}

// generate writes a v2 dataset of fixed-size random samples aligned to 4 KiB,
// so fio's aligned random reads and fff's sample reads touch the same blocks.
func generate(path string, size, total int64) error {
	if st, err := os.Stat(path); err == nil && st.Size() >= total {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w, err := ffrecord.NewWriter(f, ffrecord.WriterOptions{Alignment: 4096, Name: path})
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{1})
	buf := make([]byte, size)
	for n := total / size; n > 0; n-- {
		rng.Read(buf)
		if err := w.Write(buf); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return f.Sync()
}

func dropCaches(cfg config) {
	if cfg.noDrop {
		return
	}
	exec.Command("sync").Run()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
		fmt.Fprintf(os.Stderr, "bench: cannot drop the page cache (%v); cold-cache figures are not cold\n", err)
	}
}

func runFio(ctx context.Context, cfg config, path string, size int64) (result, error) {
	args := []string{
		"--name=randread", "--filename=" + path, "--readonly", "--ioengine=io_uring", "--direct=1",
		"--rw=randread", fmt.Sprintf("--bs=%d", size), fmt.Sprintf("--iodepth=%d", cfg.qd),
		"--time_based", fmt.Sprintf("--runtime=%ds", int(cfg.duration.Seconds())),
		"--randrepeat=0", "--norandommap",
	}
	// fio's buffers come from malloc and are physically scattered to a
	// varying degree, which on a virtual disk moved its rate between 1.2 and
	// 3 GB/s from run to run (each contiguous run is one scatter-gather
	// segment, and 1 MiB in scattered 4 KiB pages is split into two
	// requests). fff reads into huge-page-backed uring.Arena memory,
	// so fio gets huge pages too when we can reserve them.
	if release, ok := reserveHugePages(cfg.qd*int(size)/hugePageSize + 2); ok {
		defer release()
		args = append(args, "--iomem=shmhuge")
	}
	r, err := fioJSON(ctx, cfg, args...)
	return result{iops: r.readIOPS, mibps: r.readMiBps}, err
}

// fioResult is what fioJSON reads from fio's JSON report.
type fioResult struct {
	readMiBps, readIOPS, writeMiBps float64
}

// fioJSON runs fio with args (one job) and returns its rates; a write's
// rate counts the job's whole runtime (a final fsync included).
func fioJSON(ctx context.Context, cfg config, args ...string) (fioResult, error) {
	jobs, err := fioJobs(ctx, cfg, args...)
	if err != nil {
		return fioResult{}, err
	}
	j := jobs[0]
	r := fioResult{readMiBps: j.Read.BWBytes / (1 << 20), readIOPS: j.Read.IOPS, writeMiBps: j.Write.BWBytes / (1 << 20)}
	if j.Write.IOBytes > 0 && j.JobRuntime > 0 {
		r.writeMiBps = j.Write.IOBytes / (1 << 20) / (j.JobRuntime / 1000)
	}
	return r, nil
}

// fioJob is one job of fio's JSON report.
type fioJob struct {
	Read struct {
		IOPS    float64 `json:"iops"`
		IOBytes float64 `json:"io_bytes"`
		BWBytes float64 `json:"bw_bytes"`
	} `json:"read"`
	Write struct {
		IOBytes float64 `json:"io_bytes"`
		BWBytes float64 `json:"bw_bytes"`
	} `json:"write"`
	JobRuntime float64 `json:"job_runtime"` // ms
}

// fioJobs runs fio with args (one or more jobs) and returns its report's
// jobs.
func fioJobs(ctx context.Context, cfg config, args ...string) ([]fioJob, error) {
	out, err := exec.CommandContext(ctx, cfg.fioBinary, append(args, "--output-format=json")...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("fio: %v: %s", err, ee.Stderr)
		}
		return nil, fmt.Errorf("fio (install it with scripts/bootstrap.sh bench): %w", err)
	}
	// fio prints notes such as "Laying out IO file" before the report.
	if i := bytes.IndexByte(out, '{'); i > 0 {
		out = out[i:]
	}
	var rep struct {
		Jobs []fioJob `json:"jobs"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || len(rep.Jobs) == 0 {
		return nil, fmt.Errorf("fio: cannot parse its JSON output: %v", err)
	}
	return rep.Jobs, nil
}

const (
	hugePageSize = 2 << 20
	nrHugePages  = "/proc/sys/vm/nr_hugepages"
)

var hugePagesWarned bool

// reserveHugePages adds n free hugetlb pages to the pool (root only) and
// returns a function restoring the previous pool size.
func reserveHugePages(n int) (release func(), ok bool) {
	old, err := os.ReadFile(nrHugePages)
	var cur int
	if err == nil {
		_, err = fmt.Sscan(strings.TrimSpace(string(old)), &cur)
	}
	if err == nil {
		err = os.WriteFile(nrHugePages, []byte(fmt.Sprint(cur+n)), 0)
	}
	release = func() { os.WriteFile(nrHugePages, old, 0) }
	if err == nil && freeHugePages() < n {
		// A busy machine's free memory is fragmented: compact it and ask
		// again (the kernel allocates huge pages only from free 2 MiB runs).
		if os.WriteFile("/proc/sys/vm/compact_memory", []byte("1"), 0) == nil {
			err = os.WriteFile(nrHugePages, []byte(fmt.Sprint(cur+n)), 0)
		}
	}
	if err == nil && freeHugePages() < n {
		err = fmt.Errorf("only %d of %d huge pages could be reserved", freeHugePages(), n)
	}
	if err != nil {
		if old != nil {
			release()
		}
		if !hugePagesWarned {
			hugePagesWarned = true
			fmt.Fprintf(os.Stderr, "bench: fio reads into malloc memory, not huge pages (%v); its rate will vary with that memory's fragmentation\n", err)
		}
		return nil, false
	}
	return release, true
}

func freeHugePages() int {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "HugePages_Free:"); ok {
			var n int
			fmt.Sscan(strings.TrimSpace(v), &n)
			return n
		}
	}
	return 0
}

// runBatchReads keeps qd reads in flight as qd/batch goroutines, each issuing
// ReadBatch calls of random indices into aligned buffers, for the duration.
func runBatchReads(ctx context.Context, cfg config, path string) (result, error) {
	ds, err := ffrfile.Open(ctx, path, ffrfile.Options{})
	if err != nil {
		return result{}, err
	}
	defer ds.Close()
	n := ds.Len()
	maxSize := slices.Max(ds.Sizes())
	return measureBatches(cfg, func(g int) batchFunc {
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		idx := make([]int64, cfg.batch)
		dsts := make([][]byte, cfg.batch)
		var arena uring.Arena
		for k := range dsts {
			dsts[k] = arena.Alloc(int(maxSize))
		}
		return func() (int64, int64, error) {
			var nb int64
			for k := range idx {
				idx[k] = rng.Int64N(n)
				s, _ := ds.Size(idx[k])
				nb += s
			}
			return int64(len(idx)), nb, ds.ReadBatch(ctx, idx, dsts)
		}
	})
}

// batchFunc performs one batch and returns its samples and bytes.
type batchFunc func() (samples, bytes int64, err error)

// measureBatches runs cfg.qd/cfg.batch workers, each calling the batch
// function newWorker(g) returns until cfg.duration has passed, and reports
// samples/s, MiB/s and the batch latency percentiles.
func measureBatches(cfg config, newWorker func(g int) batchFunc) (result, error) {
	var samples, bytes atomic.Int64
	var mu sync.Mutex
	var lats []time.Duration
	var firstErr error
	workers := make([]batchFunc, cfg.qd/cfg.batch)
	for g := range workers {
		workers[g] = newWorker(g) // buffers are allocated outside the timed window
	}
	deadline := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	start := time.Now()
	for _, batch := range workers {
		wg.Go(func() {
			var my []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				ns, nb, err := batch()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				my = append(my, time.Since(t0))
				samples.Add(ns)
				bytes.Add(nb)
			}
			mu.Lock()
			lats = append(lats, my...)
			mu.Unlock()
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	if firstErr != nil {
		return result{}, firstErr
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	return result{
		iops: float64(samples.Load()) / el, mibps: float64(bytes.Load()) / el / (1 << 20),
		p50: pct(0.5), p99: pct(0.99),
	}, nil
}

// rotate measures each side in turn for cfg.rounds rounds, dropping the page
// cache before each measurement and starting every round with the next side:
// the disk's speed drifts (a virtual disk shares its host), so callers
// report each side's median. out[i] holds side i's results.
func rotate[T any](cfg config, sides ...func() (T, error)) ([][]T, error) {
	out := make([][]T, len(sides))
	for round := range cfg.rounds {
		for k := range sides {
			i := (round + k) % len(sides)
			dropCaches(cfg)
			r, err := sides[i]()
			if err != nil {
				return nil, err
			}
			out[i] = append(out[i], r)
		}
	}
	return out, nil
}

// alternate is rotate of a reference and fff.
func alternate[T any](cfg config, ref, fff func() (T, error)) (refs, ffs []T, err error) {
	rs, err := rotate(cfg, ref, fff)
	if err != nil {
		return nil, nil, err
	}
	return rs[0], rs[1], nil
}

// spread shows the lowest and highest IOPS of the rounds.
func spread(rs []result) string {
	lo := slices.MinFunc(rs, func(a, b result) int { return cmp.Compare(a.iops, b.iops) })
	hi := slices.MaxFunc(rs, func(a, b result) int { return cmp.Compare(a.iops, b.iops) })
	return fmt.Sprintf("%.0f–%.0f", lo.iops, hi.iops)
}

// median picks the result with the median IOPS.
func median(rs []result) result {
	slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.iops, b.iops) })
	return rs[len(rs)/2]
}

func hostInfo() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.GOOS
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return runtime.GOOS
}

func parseSize(s string) (int64, error) {
	v, err := humanize.ParseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	return int64(v), nil
}

func formatSize(n int64) string { return humanize.IBytes(uint64(n)) }
