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
// Targets (the issue): sequential read through FUSE ≥ 70% of the native
// client; 128 KiB random reads ≥ 50% of the native client's ReadBatch rate;
// cp -a of small files into the mount ≥ 500 files/s.

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
}

func init() {
	flag.IntVar(&fuseCfg.smallFiles, "small-files", 3000, "fuse suite: files in the small-file tree")
	flag.StringVar(&fuseCfg.smallSize, "small-size", "30KiB", "fuse suite: mean size of the small files (uniform from 1 byte to twice this)")
	flag.IntVar(&fuseCfg.smallDirs, "small-dirs", 30, "fuse suite: directories the small files are spread over")
	flag.StringVar(&fuseCfg.parts, "fuse-parts", "seq,rand,small", "fuse suite: what to measure: seq (sequential write and read), rand (random reads), small (cp -a of small files)")
	flag.StringVar(&fuseCfg.depth, "fuse-depth", "64/8", "fuse suite: random reads in flight as IN_FLIGHT/BATCH (fio --iodepth=IN_FLIGHT on the mount; ReadBatch of BATCH natively)")
	flag.StringVar(&fuseCfg.sizes, "fuse-sizes", "4KiB,128KiB", "fuse suite: random read sizes")
}

const (
	fuseSeqReadTarget = 0.70 // of the native client's sequential read
	fuseRandTarget    = 0.50 // of ReadBatch at 128 KiB
	fuseBS            = 1 << 20
	fuseSmallTarget   = 500 // files/s of cp -a into the mount
)

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
	mnt, err := mountAt("mnt", fusefs.Options{})
	if err != nil {
		return err
	}
	// With --direct-io, for the sequential rows.
	mntDIO, err := mountAt("mnt-dio", fusefs.Options{DirectIO: true})
	if err != nil {
		return err
	}
	// With --writeback, for the small-file rows.
	mntWB, err := mountAt("mnt-wb", fusefs.Options{Writeback: true})
	if err != nil {
		return err
	}

	parts := map[string]bool{}
	for _, p := range splitList(fuseCfg.parts) {
		parts[p] = true
	}

	fmt.Printf("\n## FUSE mount on a single-node cluster (fffd local)\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; mounts %s, with --direct-io %s, with --writeback %s (in the bench process: go-fuse, 1 MiB max read/write, readahead up to 32 MiB); cold cache before every measurement; FUSE and native alternate over %d rounds (medians)\n\n",
		hostInfo(), runtime.NumCPU(), p.dir, mnt, mntDIO, mntWB, cfg.rounds)

	if parts["seq"] {
		if err := fuseSequential(ctx, cfg, p, c, mnt, mntDIO, size, rsize); err != nil {
			return err
		}
	}
	if parts["rand"] {
		if err := fuseRandom(ctx, cfg, c, mnt, d, sizes); err != nil {
			return err
		}
	}
	if parts["small"] {
		if err := fuseSmallFiles(ctx, cfg, p, c, mnt, mntWB); err != nil {
			return err
		}
	}
	return nil
}

// fuseSequential writes, then reads, one big file through both mounts and
// natively.
func fuseSequential(ctx context.Context, cfg config, p *fffdProc, c *libfff.Client, mnt, mntDIO string, size, rsize int64) error {
	// Sequential write, then read: through the mount with the page cache,
	// through the --direct-io mount, and natively.
	seqName := "/bench/seq"
	seqMnt := filepath.Join(mnt, "bench", "fuse-seq")
	seqDIO := filepath.Join(mntDIO, "bench", "fuse-seq-dio")
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
	ws, err := rotate(cfg, fioWrite(seqMnt), fioWrite(seqDIO),
		func() (float64, error) {
			c.Remove(ctx, seqName)
			return dataSeqWrite(ctx, c, seqName, size, fuseBS)
		})
	if err != nil {
		return err
	}
	rs, err := rotate(cfg, fioRead(seqMnt), fioRead(seqDIO),
		func() (float64, error) { return dataSeqRead(ctx, c, seqName, size, rsize, dataCfg.readers) })
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
	os.Remove(seqMnt)
	os.Remove(seqDIO)
	c.Remove(ctx, seqName)
	mnw, mnr := medianF(ws[2]), medianF(rs[2])
	fmt.Printf("Sequential, %s file: FUSE = fio --bs=1M --ioengine=psync (one stream; write with --end_fsync=1) through the default mount (page cache) and through a --direct-io mount; native = libfff File.Write of 1 MiB (Close included) / %d readers x %s ReadAt; local disk = fio --bs=4M --iodepth=16 --direct=1 --ioengine=io_uring\n\n",
		formatSize(size), dataCfg.readers, formatSize(rsize))
	fmt.Println("| workload | mount | FUSE MiB/s | native MiB/s | local disk (fio) MiB/s | FUSE / native | target | FUSE range | native range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for k, mode := range []string{"page cache", "--direct-io"} {
		mfw, mfr := medianF(ws[k]), medianF(rs[k])
		fmt.Printf("| sequential write | %s | %.0f | %.0f | %.0f | %.2f | | %s | %s |\n", mode, mfw, mnw, fioW, mfw/mnw, spreadF(ws[k]), spreadF(ws[2]))
		fmt.Printf("| sequential read | %s | %.0f | %.0f | %.0f | %.2f | ≥ %.2f %s | %s | %s |\n", mode, mfr, mnr, fioR, mfr/mnr,
			fuseSeqReadTarget, verdict(mfr/mnr >= fuseSeqReadTarget), spreadF(rs[k]), spreadF(rs[2]))
	}

	return nil
}

// fuseRandom reads random samples through the mount and natively.
func fuseRandom(ctx context.Context, cfg config, c *libfff.Client, mnt string, d depth, sizes []int64) error {
	// Random reads.
	fmt.Printf("\nRandom reads, %s file per size, %d in flight: FUSE = fio --rw=randread --direct=1 --ioengine=io_uring --iodepth=%d on the mount; native = %d goroutines each calling ReadBatch of %d\n\n",
		formatSize(cfg.fileSize), d.inFlight, d.inFlight, d.inFlight/d.batch, d.batch)
	fmt.Println("| read size | FUSE IOPS | native samples/s | FUSE / native | FUSE MiB/s | native MiB/s | target | FUSE range | native range |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, ssize := range sizes {
		name := fmt.Sprintf("/bench/rand-%d", ssize)
		n := cfg.fileSize / ssize
		if n == 0 {
			return fmt.Errorf("fuse: -file-size %d is smaller than a read of %d", cfg.fileSize, ssize)
		}
		if _, err := dataSeqWrite(ctx, c, name, n*ssize, max(4<<20/ssize, 1)*ssize); err != nil {
			return err
		}
		dc := cfg
		dc.qd, dc.batch = d.inFlight, d.batch
		fuses, nats, err := alternate(dc,
			func() (result, error) {
				r, err := fioJSON(ctx, dc, "--name=randread", "--filename="+filepath.Join(mnt, name), "--rw=randread",
					fmt.Sprintf("--bs=%d", ssize), "--direct=1", "--ioengine=io_uring", fmt.Sprintf("--iodepth=%d", d.inFlight),
					"--readonly", "--time_based", fmt.Sprintf("--runtime=%ds", max(1, int(dc.duration.Seconds()))),
					"--randrepeat=0", "--norandommap")
				return result{iops: r.readIOPS, mibps: r.readMiBps}, err
			},
			func() (result, error) { return dataRandomReads(ctx, dc, c, name, ssize, n) })
		if err != nil {
			return err
		}
		f, o := median(fuses), median(nats)
		target := ""
		if ssize == 128<<10 {
			target = fmt.Sprintf("≥ %.2f %s", fuseRandTarget, verdict(f.iops/o.iops >= fuseRandTarget))
		}
		fmt.Printf("| %s | %.0f | %.0f | %.2f | %.1f | %.1f | %s | %s | %s |\n", formatSize(ssize), f.iops, o.iops, f.iops/o.iops,
			f.mibps, o.mibps, target, spread(fuses), spread(nats))
		c.Remove(ctx, name)
	}
	return nil
}

// fuseSmallFiles copies a tree of small files with `cp -a` into the mount
// and to a directory next to the cluster's data on the local disk (with
// and without a `sync` after it), in rotation, cold cache before each copy.
// The first copy into the mount is compared with the source (content,
// size, mode and mtime of every file).
func fuseSmallFiles(ctx context.Context, cfg config, p *fffdProc, c *libfff.Client, mnt, mntWB string) error {
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
	res, err := rotate(cfg,
		into(mnt, ""),
		into(mntWB, "dir"),
		into(mntWB, ""),
		func() (float64, error) {
			nl++
			return cp(filepath.Join(local, fmt.Sprintf("cp-%d", nl)), "")
		},
		func() (float64, error) {
			ns++
			return cp(filepath.Join(local, fmt.Sprintf("cp-sync-%d", ns)), "all")
		})
	if err != nil {
		return err
	}
	// The first round's copies, as another client sees them (through the
	// plain mount, once the write-back mount's closes landed).
	if err := fileutil.SyncDir(mntWB); err != nil {
		return err
	}
	for i, name := range copies {
		if i < 3 {
			if err := sameTree(src, filepath.Join(mnt, "bench", name)); err != nil {
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
	fmt.Println("| copy | files/s | MiB/s | seconds | mount / this | target | range (files/s) |")
	fmt.Println("|---|---|---|---|---|---|---|")
	mt := medianF(res[0])
	rows := []struct {
		name string
		t    []float64
	}{
		{"cp -a into the mount (each file durable at close)", res[0]},
		{"cp -a into a --writeback mount, then `sync DIR` (all durable at the end)", res[1]},
		{"cp -a into a --writeback mount (close returns before the data is on storage)", res[2]},
		{"cp -a to the local disk", res[3]},
		{"cp -a to the local disk, then sync", res[4]},
	}
	for i, r := range rows {
		t := medianF(r.t)
		target := ""
		if i <= 1 {
			target = fmt.Sprintf("≥ %d files/s %s", fuseSmallTarget, verdict(nf/t >= fuseSmallTarget))
		}
		fmt.Printf("| %s | %.0f | %.1f | %.2f | %.2f | %s | %.0f–%.0f |\n", r.name, nf/t, float64(total)/(1<<20)/t, t, t/mt, target,
			nf/slices.Max(r.t), nf/slices.Min(r.t))
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
