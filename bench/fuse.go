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
//     reads in flight (D/B goroutines of batches of B) on the same file.
//
// Targets (the issue): sequential read through FUSE ≥ 70% of the native
// client; 128 KiB random reads ≥ 50% of the native client's ReadBatch rate.

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"fff/libfff"
	"fff/libfff/fusefs"
)

var fuseCfg struct {
	depth string
	sizes string
}

func init() {
	flag.StringVar(&fuseCfg.depth, "fuse-depth", "64/8", "fuse suite: random reads in flight as IN_FLIGHT/BATCH (fio --iodepth=IN_FLIGHT on the mount; ReadBatch of BATCH natively)")
	flag.StringVar(&fuseCfg.sizes, "fuse-sizes", "4KiB,128KiB", "fuse suite: random read sizes")
}

const (
	fuseSeqReadTarget = 0.70 // of the native client's sequential read
	fuseRandTarget    = 0.50 // of ReadBatch at 128 KiB
	fuseBS            = 1 << 20
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
	mnt := filepath.Join(p.dir, "mnt")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	// The mount has its own client, as `fff mount` would.
	mc, err := libfff.Connect(ctx, fusefs.ClientOptions(p.options()))
	if err != nil {
		return err
	}
	defer mc.Close()
	srv, err := fusefs.Mount(ctx, mc, mnt, fusefs.Options{})
	if err != nil {
		return err
	}
	defer func() {
		srv.Unmount()
		srv.Wait()
	}()
	// A second mount with --direct-io, for the sequential rows.
	mntDIO := filepath.Join(p.dir, "mnt-dio")
	if err := os.MkdirAll(mntDIO, 0o755); err != nil {
		return err
	}
	srvDIO, err := fusefs.Mount(ctx, mc, mntDIO, fusefs.Options{DirectIO: true})
	if err != nil {
		return err
	}
	defer func() {
		srvDIO.Unmount()
		srvDIO.Wait()
	}()

	fmt.Printf("\n## FUSE mount on a single-node cluster (fffd local)\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; mounts %s and, with --direct-io, %s (in the bench process: go-fuse, 1 MiB max read/write, readahead up to 32 MiB); cold cache before every measurement; FUSE and native alternate over %d rounds (medians)\n\n",
		hostInfo(), runtime.NumCPU(), p.dir, mnt, mntDIO, cfg.rounds)

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

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
