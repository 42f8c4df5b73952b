package main

// The fuse suite: the FUSE mount (libfff/fusefs, mounted in this process
// on a real `fffd local`) next to the native client on the same cluster and
// fio on the local disk, in one run, cold cache before every measurement,
// the two fff sides alternating over -rounds rounds (medians):
//
//   - sequential write of a -data-size file: fio --rw=write --bs=1M
//     --ioengine=psync --end_fsync=1 on the mount (one stream, as cp
//     writes), against libfff File.Write of 1 MiB pieces (Close included)
//     and fio --direct=1 on the local disk (the data suite's reference);
//   - sequential read of it: fio --rw=read --bs=1M --ioengine=psync through
//     the page cache of the mount (one stream: the mount's readahead keeps
//     the window full), and the same write and read through a second mount
//     with --direct-io (no page cache), against the native client's best (the data suite's
//     -data-readers goroutines of -data-read-size ReadAt) and fio on the
//     local disk;
//   - random reads at 4 KiB and 128 KiB: fio --rw=randread --direct=1
//     --ioengine=io_uring --iodepth=D on the mount, against ReadBatch with D
//     reads in flight (D/B goroutines of batches of B) on the same file;
//   - small files: `cp -a` of a tree of -small-files files (-small-size on
//     average) into the mount, against `cp -a` of the same tree to a
//     directory on the local disk, with and without a `sync` after it.
//
// Every FUSE row is measured through each transport of -fuse-transports
// (dev: go-fuse over /dev/fuse; uring: FUSE over io_uring, turned on for
// the run where the kernel has it and the bench runs as root), in the same
// rotation, with the ratio uring / dev beside it.
//
// Targets: sequential read through FUSE ≥ 70% of the native client; 128
// KiB random reads ≥ 50% of the native client's ReadBatch rate; cp -a of
// small files into the mount ≥ 500 files/s; uring ≥ 1.5× dev for 4 KiB
// random reads one at a time, and no row with uring more than 5% below
// dev.

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"fff/internal/fileutil"
	"fff/libfff"
	"fff/libfff/fusefs"
)

var fuseCfg struct {
	depth string
	sizes string
	parts string

	smallFiles int
	smallSize  string
	smallDirs  int

	transports string
}

func init() {
	flag.IntVar(&fuseCfg.smallFiles, "small-files", 3000, "fuse suite: files in the small-file tree")
	flag.StringVar(&fuseCfg.smallSize, "small-size", "30KiB", "fuse suite: mean size of the small files (uniform from 1 byte to twice this)")
	flag.IntVar(&fuseCfg.smallDirs, "small-dirs", 30, "fuse suite: directories the small files are spread over")
	flag.StringVar(&fuseCfg.parts, "fuse-parts", "seq,rand,small", "fuse suite: what to measure: seq (sequential write and read), rand (random reads), small (cp -a of small files)")
	flag.StringVar(&fuseCfg.depth, "fuse-depth", "64/8", "fuse suite: random reads in flight as IN_FLIGHT/BATCH (fio --iodepth=IN_FLIGHT on the mount; ReadBatch of BATCH natively)")
	flag.StringVar(&fuseCfg.sizes, "fuse-sizes", "4KiB,128KiB", "fuse suite: random read sizes (4 KiB is also read one at a time)")
	flag.StringVar(&fuseCfg.transports, "fuse-transports", "dev,uring", "fuse suite: the mount's transports to measure side by side (dev, uring)")
}

const (
	fuseSeqReadTarget = 0.70 // of the native client's sequential read
	fuseRandTarget    = 0.50 // of ReadBatch at 128 KiB
	fuseBS            = 1 << 20
	fuseSmallTarget   = 500 // files/s of cp -a into the mount
	fuseURingD1Target = 1.5 // uring / dev, 4 KiB random reads one at a time
	fuseURingFloor    = 0.95
)

// fuseMounts are the three mounts of one transport.
type fuseMounts struct {
	tr             fusefs.Transport
	plain, dio, wb string
}

// transportRatio is the "uring / dev" cell of a row whose values per
// transport are v (in the order of the mounts), with its verdict against
// the floor, or against target when it is above 0.
func transportRatio(ms []fuseMounts, v []float64, target float64) string {
	if len(ms) != 2 || ms[0].tr != fusefs.TransportDev || ms[1].tr != fusefs.TransportURing || v[0] == 0 {
		return ""
	}
	r := v[1] / v[0]
	if target > 0 {
		return fmt.Sprintf("%.2f (≥ %.2f %s)", r, target, verdict(r >= target))
	}
	return fmt.Sprintf("%.2f (≥ %.2f %s)", r, fuseURingFloor, verdict(r >= fuseURingFloor))
}

func runFuseSuite(ctx context.Context, cfg config) error {
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("fuse: /dev/fuse is missing: %w", err)
	}
	size, err := parseSize(dataCfg.size)
	if err != nil {
		return err
	}
	rsize, err := parseSize(dataCfg.readSize)
	if err != nil {
		return err
	}
	size = size / fuseBS * fuseBS
	depths, err := parseDepths(fuseCfg.depth)
	if err != nil {
		return err
	}
	d := depths[0]
	var sizes []int64
	for _, s := range splitList(fuseCfg.sizes) {
		v, err := parseSize(s)
		if err != nil {
			return err
		}
		sizes = append(sizes, v)
	}

	p, c, cleanup, err := startDataCluster(ctx, cfg, "fuse")
	if err != nil {
		return err
	}
	defer cleanup()
	// The mounts have their own client, as `fff mount` would.
	mc, err := libfff.Connect(ctx, fusefs.ClientOptions(p.options()))
	if err != nil {
		return err
	}
	defer mc.Close()
	var servers []*fusefs.Server
	defer func() {
		for _, srv := range servers {
			srv.Unmount()
			srv.Wait()
		}
	}()
	var trs []fusefs.Transport
	for _, t := range splitList(fuseCfg.transports) {
		tr, err := fusefs.ParseTransport(t)
		if err != nil || tr == fusefs.TransportAuto {
			return fmt.Errorf("fuse: -fuse-transports %q: want dev and/or uring", fuseCfg.transports)
		}
		trs = append(trs, tr)
	}
	if slices.Contains(trs, fusefs.TransportURing) {
		defer enableFUSEURing()()
	}
	mountAt := func(name string, o fusefs.Options) (string, error) {
		dir := filepath.Join(p.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", err
		}
		srv, err := fusefs.Mount(ctx, mc, dir, o)
		if err != nil {
			return "", err
		}
		servers = append(servers, srv)
		return dir, nil
	}
	var ms []fuseMounts
	for _, tr := range trs {
		m := fuseMounts{tr: tr}
		var err error
		if m.plain, err = mountAt("mnt-"+string(tr), fusefs.Options{Transport: tr}); err != nil {
			return err
		}
		// With --direct-io, for the sequential rows.
		if m.dio, err = mountAt("mnt-dio-"+string(tr), fusefs.Options{Transport: tr, DirectIO: true}); err != nil {
			return err
		}
		// With --writeback, for the small-file rows.
		if m.wb, err = mountAt("mnt-wb-"+string(tr), fusefs.Options{Transport: tr, Writeback: true}); err != nil {
			return err
		}
		ms = append(ms, m)
	}

	parts := map[string]bool{}
	for _, p := range splitList(fuseCfg.parts) {
		parts[p] = true
	}

	fmt.Printf("\n## FUSE mount on a single-node cluster (fffd local)\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; per transport (%s) a default mount, one with --direct-io and one with --writeback (in the bench process: 1 MiB max read/write, readahead up to 32 MiB); cold cache before every measurement; the transports and native alternate over %d rounds (medians)\n\n",
		hostInfo(), runtime.NumCPU(), p.dir, fuseCfg.transports, cfg.rounds)

	if parts["seq"] {
		if err := fuseSequential(ctx, cfg, p, c, ms, size, rsize); err != nil {
			return err
		}
	}
	if parts["rand"] {
		if err := fuseRandom(ctx, cfg, c, ms, d, sizes); err != nil {
			return err
		}
	}
	if parts["small"] {
		if err := fuseSmallFiles(ctx, cfg, p, c, ms); err != nil {
			return err
		}
	}
	return nil
}

// enableFUSEURing turns FUSE over io_uring on for the run where the
// kernel has it and it is off (as root), and returns what turns it off
// again.
func enableFUSEURing() (restore func()) {
	const param = "/sys/module/fuse/parameters/enable_uring"
	b, err := os.ReadFile(param)
	if err != nil || strings.TrimSpace(string(b)) == "Y" || os.WriteFile(param, []byte("Y"), 0) != nil {
		return func() {}
	}
	return func() { os.WriteFile(param, []byte("N"), 0) }
}

// fuseSequential writes, then reads, one big file through every mount
// (page cache and --direct-io, per transport) and natively.
func fuseSequential(ctx context.Context, cfg config, p *fffdProc, c *libfff.Client, ms []fuseMounts, size, rsize int64) error {
	seqName := "/bench/seq"
	plain := filepath.Join(p.dir, "fio-seq")
	fioWrite := func(path string) func() (float64, error) {
		return func() (float64, error) {
			os.Remove(path)
			r, err := fioJSON(ctx, cfg, "--name=seqwrite", "--filename="+path, "--rw=write", fmt.Sprintf("--bs=%d", fuseBS),
				"--ioengine=psync", fmt.Sprintf("--size=%d", size), "--end_fsync=1")
			return r.writeMiBps, err
		}
	}
	fioRead := func(path string) func() (float64, error) {
		return func() (float64, error) {
			r, err := fioJSON(ctx, cfg, "--name=seqread", "--filename="+path, "--rw=read", fmt.Sprintf("--bs=%d", fuseBS),
				"--ioengine=psync", "--readonly")
			return r.readMiBps, err
		}
	}
	// Sides: per mode (page cache, --direct-io), per transport; native last.
	var paths []string
	for _, dio := range []bool{false, true} {
		for _, m := range ms {
			if dio {
				paths = append(paths, filepath.Join(m.dio, "bench", "fuse-seq-dio-"+string(m.tr)))
			} else {
				paths = append(paths, filepath.Join(m.plain, "bench", "fuse-seq-"+string(m.tr)))
			}
		}
	}
	var writes, reads []func() (float64, error)
	for _, path := range paths {
		writes = append(writes, fioWrite(path))
		reads = append(reads, fioRead(path))
	}
	writes = append(writes, func() (float64, error) {
		c.Remove(ctx, seqName)
		return dataSeqWrite(ctx, c, seqName, size, fuseBS)
	})
	reads = append(reads, func() (float64, error) { return dataSeqRead(ctx, c, seqName, size, rsize, dataCfg.readers) })
	ws, err := rotate(cfg, writes...)
	if err != nil {
		return err
	}
	rs, err := rotate(cfg, reads...)
	if err != nil {
		return err
	}
	dropCaches(cfg)
	fioW, err := dataFioSeq(ctx, cfg, plain, size, "write")
	if err != nil {
		return err
	}
	dropCaches(cfg)
	fioR, err := dataFioSeq(ctx, cfg, plain, size, "read")
	if err != nil {
		return err
	}
	os.Remove(plain)
	for _, path := range paths {
		os.Remove(path)
	}
	c.Remove(ctx, seqName)
	nat := len(paths)
	mnw, mnr := medianF(ws[nat]), medianF(rs[nat])
	fmt.Printf("Sequential, %s file: FUSE = fio --bs=1M --ioengine=psync (one stream; write with --end_fsync=1) through the default mount (page cache) and through a --direct-io mount, per transport; native = libfff File.Write of 1 MiB (Close included) / %d readers x %s ReadAt; local disk = fio --bs=4M --iodepth=16 --direct=1 --ioengine=io_uring\n\n",
		formatSize(size), dataCfg.readers, formatSize(rsize))
	fmt.Println("| workload | mount | transport | FUSE MiB/s | native MiB/s | local disk (fio) MiB/s | FUSE / native | target | uring / dev | FUSE range | native range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for mi, mode := range []string{"page cache", "--direct-io"} {
		for _, kind := range []string{"write", "read"} {
			res, nm, fio := ws, mnw, fioW
			if kind == "read" {
				res, nm, fio = rs, mnr, fioR
			}
			var meds []float64
			for ti := range ms {
				meds = append(meds, medianF(res[mi*len(ms)+ti]))
			}
			for ti, m := range ms {
				k := mi*len(ms) + ti
				target, ratio := "", ""
				if kind == "read" {
					target = fmt.Sprintf("≥ %.2f %s", fuseSeqReadTarget, verdict(meds[ti]/nm >= fuseSeqReadTarget))
				}
				if ti == len(ms)-1 {
					ratio = transportRatio(ms, meds, 0)
				}
				fmt.Printf("| sequential %s | %s | %s | %.0f | %.0f | %.0f | %.2f | %s | %s | %s | %s |\n", kind, mode, m.tr, meds[ti], nm, fio,
					meds[ti]/nm, target, ratio, spreadF(res[k]), spreadF(res[nat]))
			}
		}
	}
	return nil
}

// fuseRandom reads random samples through each transport's mount and
// natively: 4 KiB one at a time, and every size of -fuse-sizes at the
// -fuse-depth in flight.
func fuseRandom(ctx context.Context, cfg config, c *libfff.Client, ms []fuseMounts, d depth, sizes []int64) error {
	type row struct {
		size int64
		d    depth
	}
	rows := []row{{4 << 10, depth{inFlight: 1, batch: 1}}}
	for _, ssize := range sizes {
		rows = append(rows, row{ssize, d})
	}
	fmt.Printf("\nRandom reads, %s file per size: FUSE = fio --rw=randread --direct=1 --ioengine=io_uring --iodepth=D on the mount of each transport; native = D/B goroutines each calling ReadBatch of B (one at a time: one goroutine reading one sample per call)\n\n",
		formatSize(cfg.fileSize))
	fmt.Println("| read size | in flight | transport | FUSE IOPS | native samples/s | FUSE / native | FUSE MiB/s | target | uring / dev | FUSE range | native range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		ssize := r.size
		name := fmt.Sprintf("/bench/rand-%d", ssize)
		n := cfg.fileSize / ssize
		if n == 0 {
			return fmt.Errorf("fuse: -file-size %d is smaller than a read of %d", cfg.fileSize, ssize)
		}
		if _, err := dataSeqWrite(ctx, c, name, n*ssize, max(4<<20/ssize, 1)*ssize); err != nil {
			return err
		}
		dc := cfg
		dc.qd, dc.batch = r.d.inFlight, r.d.batch
		var sides []func() (result, error)
		for _, m := range ms {
			sides = append(sides, func() (result, error) {
				res, err := fioJSON(ctx, dc, "--name=randread", "--filename="+filepath.Join(m.plain, name), "--rw=randread",
					fmt.Sprintf("--bs=%d", ssize), "--direct=1", "--ioengine=io_uring", fmt.Sprintf("--iodepth=%d", r.d.inFlight),
					"--readonly", "--time_based", fmt.Sprintf("--runtime=%ds", max(1, int(dc.duration.Seconds()))),
					"--randrepeat=0", "--norandommap")
				return result{iops: res.readIOPS, mibps: res.readMiBps}, err
			})
		}
		sides = append(sides, func() (result, error) { return dataRandomReads(ctx, dc, c, name, ssize, n) })
		res, err := rotate(dc, sides...)
		if err != nil {
			return err
		}
		o := median(res[len(ms)])
		var iops []float64
		for ti := range ms {
			iops = append(iops, median(res[ti]).iops)
		}
		for ti, m := range ms {
			f := median(res[ti])
			target, ratio := "", ""
			if ssize == 128<<10 {
				target = fmt.Sprintf("≥ %.2f %s", fuseRandTarget, verdict(f.iops/o.iops >= fuseRandTarget))
			}
			if ti == len(ms)-1 {
				t := 0.0
				if r.d.inFlight == 1 {
					t = fuseURingD1Target
				}
				ratio = transportRatio(ms, iops, t)
			}
			fmt.Printf("| %s | %d | %s | %.0f | %.0f | %.2f | %.1f | %s | %s | %s | %s |\n", formatSize(ssize), r.d.inFlight, m.tr, f.iops, o.iops,
				f.iops/o.iops, f.mibps, target, ratio, spread(res[ti]), spread(res[len(ms)]))
		}
		c.Remove(ctx, name)
	}
	return nil
}

// fuseSmallFiles copies a tree of small files with `cp -a` into the mount
// and to a directory next to the cluster's data on the local disk (with
// and without a `sync` after it), in rotation, cold cache before each copy.
// The first copy into the mount is compared with the source (content,
// size, mode and mtime of every file).
func fuseSmallFiles(ctx context.Context, cfg config, p *fffdProc, c *libfff.Client, ms []fuseMounts) error {
	mean, err := parseSize(fuseCfg.smallSize)
	if err != nil {
		return err
	}
	if fuseCfg.smallFiles <= 0 || fuseCfg.smallDirs <= 0 || mean <= 0 {
		return fmt.Errorf("fuse: -small-files, -small-dirs and -small-size must be positive")
	}
	src := filepath.Join(p.dir, "small-src")
	total, err := makeSmallTree(src, fuseCfg.smallFiles, fuseCfg.smallDirs, mean)
	if err != nil {
		return fmt.Errorf("fuse: making the small-file tree: %w", err)
	}
	local := filepath.Join(p.dir, "small-local")
	if err := os.MkdirAll(local, 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(local)
	// sync: none; "all" runs sync(1) (the local disk); "dir" runs
	// `sync DST`, an fsync of the copy's directory, which on a write-back
	// mount waits for every background close.
	cp := func(dst, sync string) (float64, error) {
		start := time.Now()
		if out, err := exec.CommandContext(ctx, "cp", "-a", src, dst).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("fuse: cp -a %s %s: %v: %s", src, dst, err, out)
		}
		var args []string
		switch sync {
		case "all":
			args = []string{"sync"}
		case "dir":
			args = []string{"sync", dst}
		}
		if args != nil {
			if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
				return 0, fmt.Errorf("fuse: %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		return time.Since(start).Seconds(), nil
	}
	var copies []string // in the cluster, to compare and remove
	n := 0
	into := func(m, sync string) func() (float64, error) {
		return func() (float64, error) {
			n++
			name := fmt.Sprintf("small-%d", n)
			copies = append(copies, name)
			return cp(filepath.Join(m, "bench", name), sync)
		}
	}
	var nl, ns int
	type side struct {
		name string
		tr   fusefs.Transport
		wb   bool // counts against the target
		run  func() (float64, error)
	}
	var sides []side
	for _, m := range ms {
		sides = append(sides,
			side{"cp -a into the mount (each file durable at close)", m.tr, true, into(m.plain, "")},
			side{"cp -a into a --writeback mount, then `sync DIR` (all durable at the end)", m.tr, true, into(m.wb, "dir")},
			side{"cp -a into a --writeback mount (close returns before the data is on storage)", m.tr, false, into(m.wb, "")})
	}
	sides = append(sides,
		side{"cp -a to the local disk", "", false, func() (float64, error) {
			nl++
			return cp(filepath.Join(local, fmt.Sprintf("cp-%d", nl)), "")
		}},
		side{"cp -a to the local disk, then sync", "", false, func() (float64, error) {
			ns++
			return cp(filepath.Join(local, fmt.Sprintf("cp-sync-%d", ns)), "all")
		}})
	var runs []func() (float64, error)
	for _, sd := range sides {
		runs = append(runs, sd.run)
	}
	res, err := rotate(cfg, runs...)
	if err != nil {
		return err
	}
	// The first round's copies, as another client sees them (through a
	// plain mount, once the write-back mounts' closes landed).
	for _, m := range ms {
		if err := fileutil.SyncDir(m.wb); err != nil {
			return err
		}
	}
	for i, name := range copies {
		if i < len(ms)*3 {
			if err := sameTree(src, filepath.Join(ms[0].plain, "bench", name)); err != nil {
				return fmt.Errorf("fuse: the copy %s differs from the source: %w", name, err)
			}
		}
		if err := c.RemoveAll(ctx, "/bench/"+name); err != nil {
			return err
		}
	}
	nf := float64(fuseCfg.smallFiles)
	fmt.Printf("\nSmall files: cp -a of %d files (%s, %s on average, in %d directories) into the mount and to a directory on the local disk (%s); cold cache before each copy; %d rounds in rotation, medians\n\n",
		fuseCfg.smallFiles, formatSize(total), formatSize(total/int64(fuseCfg.smallFiles)), fuseCfg.smallDirs, local, cfg.rounds)
	fmt.Println("| copy | transport | files/s | MiB/s | seconds | first mount / this | target | uring / dev | range (files/s) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	mt := medianF(res[0])
	for i, sd := range sides {
		t := medianF(res[i])
		target, ratio := "", ""
		if sd.wb {
			target = fmt.Sprintf("≥ %d files/s %s", fuseSmallTarget, verdict(nf/t >= fuseSmallTarget))
		}
		if sd.tr != "" && i >= 3 { // the second transport's row: the first's is 3 before it
			ratio = transportRatio(ms, []float64{nf / medianF(res[i-3]), nf / t}, 0)
		}
		fmt.Printf("| %s | %s | %.0f | %.1f | %.2f | %.2f | %s | %s | %.0f–%.0f |\n", sd.name, sd.tr, nf/t, float64(total)/(1<<20)/t, t, t/mt, target, ratio,
			nf/slices.Max(res[i]), nf/slices.Min(res[i]))
	}
	return nil
}

// makeSmallTree writes files files of random content, sizes uniform in
// [1, 2*mean), round robin over dirs directories under root, and returns
// their total size.
func makeSmallTree(root string, files, dirs int, mean int64) (int64, error) {
	if err := os.RemoveAll(root); err != nil {
		return 0, err
	}
	rng := rand.New(rand.NewPCG(13, 5))
	buf := make([]byte, 2*mean)
	var total int64
	for d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, fmt.Sprintf("d%03d", d)), 0o755); err != nil {
			return 0, err
		}
	}
	for i := range files {
		n := 1 + rng.Int64N(2*mean-1)
		for j := range buf[:n] {
			buf[j] = byte(rng.Uint32())
		}
		name := filepath.Join(root, fmt.Sprintf("d%03d", i%dirs), fmt.Sprintf("f%05d.bin", i))
		if err := os.WriteFile(name, buf[:n], 0o644); err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

// sameTree checks that every regular file under a has a copy under b with
// the same content, size, permissions and modification time.
func sameTree(a, b string) error {
	return filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(a, path)
		other := filepath.Join(b, rel)
		sa, err := os.Stat(path)
		if err != nil {
			return err
		}
		sb, err := os.Stat(other)
		if err != nil {
			return err
		}
		if sa.Size() != sb.Size() || sa.Mode() != sb.Mode() || !sa.ModTime().Equal(sb.ModTime()) {
			return fmt.Errorf("%s: size %d mode %v mtime %v; the copy: size %d mode %v mtime %v", rel,
				sa.Size(), sa.Mode(), sa.ModTime(), sb.Size(), sb.Mode(), sb.ModTime())
		}
		x, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		y, err := os.ReadFile(other)
		if err != nil {
			return err
		}
		if !bytes.Equal(x, y) {
			return fmt.Errorf("%s: content differs", rel)
		}
		return nil
	})
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
