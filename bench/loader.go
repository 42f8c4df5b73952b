package main

// The loader suite: an epoch of shuffled reading through a PyTorch
// DataLoader, fff.torch.DataLoader over FFRecord shards in a real
// single-node cluster next to torchvision's ImageFolder over the same JPEGs
// on local disk, without decode (the raw bytes reach the training loop) and
// with PIL decode + augmentation, in one run with the page cache dropped
// before every measurement (DESIGN §12). The measuring is
// torch_examples/imagenet_style.py (generates and caches the JPEGs, packs
// them, alternates the two sides over -rounds rounds, medians), run with the
// -python interpreter (scripts/bootstrap.sh python demo); this file starts
// the cluster, passes it in FFF_CLUSTER/FFF_TOKEN and prints the table.
//
// Peers (-loader-peers): LitData, MosaicML Streaming and WebDataset read
// the same samples from their own formats on the same local disk, written
// once next to the JPEGs (torch_examples/peers.py; installed by
// scripts/bootstrap.sh bench, skipped with the reason when they do not
// import). Their table adds what each side costs the machine (CPU seconds
// per epoch, fffd included), the conversion time and size on disk, and what
// each verifies.
//
// Target (issue acceptance): fff without decode ≥ 3× ImageFolder without
// decode, each side at its best worker count of a small set.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"fff/libfff"
)

type loaderConfig struct {
	images        int
	epochs        int
	maxBatches    int
	decodeBatches int
	batch         int
	fffWorkers    string
	ifWorkers     string
	decodeWorkers int
	modes         string
	peers         string
	peerWorkers   string
}

var ldCfg loaderConfig

func init() {
	flag.IntVar(&ldCfg.images, "loader-images", 20000, "loader suite: JPEGs of ~100 KiB (generated once, cached in ~/.cache/fff-examples)")
	flag.IntVar(&ldCfg.epochs, "loader-epochs", 1, "loader suite: epochs per measurement")
	flag.IntVar(&ldCfg.maxBatches, "loader-batches", 0, "loader suite: stop each no-decode measurement after this many batches (0: whole epochs)")
	flag.IntVar(&ldCfg.decodeBatches, "loader-decode-batches", 100, "loader suite: stop each decode measurement after this many batches (0: whole epochs)")
	flag.IntVar(&ldCfg.batch, "loader-batch-size", 64, "loader suite: samples per batch (both sides)")
	flag.StringVar(&ldCfg.fffWorkers, "loader-fff-workers", "0,2,4", "loader suite: worker counts tried for fff without decode (the best is reported)")
	flag.StringVar(&ldCfg.ifWorkers, "loader-if-workers", "2,4,8", "loader suite: worker counts tried for ImageFolder without decode (the best is reported)")
	flag.IntVar(&ldCfg.decodeWorkers, "loader-decode-workers", 0, "loader suite: workers of both sides with decode (0: the CPU count)")
	flag.StringVar(&ldCfg.modes, "loader-modes", "raw,decode,batch", "loader suite: rows to measure (raw; decode: per-sample PIL decode + augmentation + ToTensor; batch: fff.vision.ImageBatchDecoder on whole batches, uint8)")
	flag.StringVar(&ldCfg.peers, "loader-peers", "litdata,streaming,webdataset", "loader suite: other loaders measured on the same samples (litdata, streaming, webdataset; \"none\" for none; scripts/bootstrap.sh bench installs them)")
	flag.StringVar(&ldCfg.peerWorkers, "loader-peer-workers", "0,2,4", "loader suite: worker counts tried for each peer without decode (the best is reported)")
}

const loaderTarget = 3.0 // fff / ImageFolder without decode

type loaderSide struct {
	Rate     float64    `json:"rate"`
	Range    [2]float64 `json:"range"`
	Workers  string     `json:"workers"`
	First    float64    `json:"first"`
	CPUEpoch *float64   `json:"cpu_epoch"` // CPU seconds (process, workers, fffd) scaled to one epoch
}

// loaderPeerSide is a peer's best configuration in a row.
type loaderPeerSide struct {
	loaderSide
	FFFRatio *float64 `json:"fff_ratio"` // fff's rate / the peer's
	// FFFRatioRounds: fff's rate / the peer's in each round (measured next
	// to each other).
	FFFRatioRounds []float64          `json:"fff_ratio_rounds"`
	By             map[string]float64 `json:"by_workers"`
}

// loaderPeer is a peer's format on disk.
type loaderPeer struct {
	Name     string  `json:"name"`
	Version  string  `json:"version"`
	Format   string  `json:"format"`
	Dir      string  `json:"dir"`
	Seconds  float64 `json:"seconds"` // writing the format (when it was written; kept between runs)
	Bytes    int64   `json:"bytes"`
	Verifies string  `json:"verifies"`
	Shuffle  string  `json:"shuffle"`
}

type loaderRow struct {
	Mode        string                     `json:"mode"`
	What        string                     `json:"what"`
	FFF         *loaderSide                `json:"fff"`
	ImageFolder *loaderSide                `json:"imagefolder"`
	FFFBy       map[string]float64         `json:"fff_by_workers"`
	IFBy        map[string]float64         `json:"imagefolder_by_workers"`
	Ratio       *float64                   `json:"ratio"`
	Peers       map[string]*loaderPeerSide `json:"peers"`
	// Bound is the decode-only bound (decode row): the same decode of the
	// same samples already in memory, with fff's workers; FFFShare is fff's
	// rate over it.
	Bound *struct {
		loaderSide
		FFFShare       *float64  `json:"fff_share"`
		FFFShareRounds []float64 `json:"fff_share_rounds"`
	} `json:"bound"`
}

// With decode, fff reaches loaderBoundTarget of the decode-only bound and
// loaderPeerTarget times the best peer's rate (issue #17).
const (
	loaderBoundTarget = 0.95
	loaderPeerTarget  = 1.2
)

// pairedRatio is the median of per-round ratios when there are several
// rounds (each round measures both sides next to each other, so its ratio
// is free of the drift between rounds that a ratio of medians carries), else
// the ratio of the medians; and how the rounds went, for the report.
func pairedRatio(ofMedians float64, rounds []float64) (float64, string) {
	if len(rounds) < 2 {
		return ofMedians, ""
	}
	s := slices.Sorted(slices.Values(rounds))
	parts := make([]string, len(rounds))
	for i, r := range rounds {
		parts[i] = fmt.Sprintf("%.2f", r)
	}
	return s[len(s)/2], fmt.Sprintf(" (ratio of the medians %.2f; round by round %s)", ofMedians, strings.Join(parts, ", "))
}

// loaderRowName is how the tables name a row's pipeline.
func loaderRowName(mode string) string {
	switch mode {
	case "raw":
		return "no decode (raw bytes)"
	case "decode":
		return "decode + augmentation"
	case "batch":
		return "batch decode (uint8)"
	}
	return mode
}

type loaderReport struct {
	NumImages     int     `json:"num_images"`
	MeanKiB       float64 `json:"mean_kib"`
	BatchSize     int     `json:"batch_size"`
	CPUs          int     `json:"cpus"`
	Cold          bool    `json:"cold"`
	Repeat        int     `json:"repeat"`
	Epochs        int     `json:"epochs"`
	MaxBatches    int     `json:"max_batches"`
	DecodeBatches int     `json:"decode_max_batches"`
	DecodeWorkers int     `json:"decode_workers"`
	// DecodeCosts: CPU microseconds per sample of each decode, one thread,
	// samples in memory (ImageBatchDecoder's backends against the
	// per-sample pipeline).
	DecodeCosts  map[string]float64    `json:"decode_costs"`
	Transports   []string              `json:"if_transports"`
	Rows         []loaderRow           `json:"rows"`
	Peers        map[string]loaderPeer `json:"peers"`
	PeersSkipped map[string]string     `json:"peers_skipped"`
	CPUServer    bool                  `json:"cpu_includes_server"`
	PeerChunkMiB int                   `json:"peer_chunk_mib"`
}

// loaderPeerOrder is the order the peers' rows are printed in.
var loaderPeerOrder = []string{"litdata", "streaming", "webdataset"}

func runLoaderSuite(ctx context.Context, cfg config) error {
	script, err := filepath.Abs("torch_examples/imagenet_style.py")
	if err != nil {
		return err
	}
	if _, err := os.Stat(script); err != nil {
		return fmt.Errorf("loader: run the benchmark from the repository root (%w)", err)
	}
	if _, err := exec.LookPath(pyCfg.python); err != nil {
		return fmt.Errorf("loader: no interpreter %s (run scripts/bootstrap.sh python demo, or pass -python): %w", pyCfg.python, err)
	}
	check := exec.CommandContext(ctx, pyCfg.python, "-c", "import fff, torch, torchvision, PIL")
	if out, err := check.CombinedOutput(); err != nil {
		// Not fatal: the other suites' tables stand; this one says what is missing.
		fmt.Printf("\n## DataLoader epoch: fff.torch.DataLoader vs torchvision ImageFolder\n\nskipped: %s cannot import fff, torch, torchvision and PIL (run scripts/bootstrap.sh python demo): %v: %s\n",
			pyCfg.python, err, lastLine(out))
		return nil
	}
	// The JPEGs live on the disk under test, next to the cluster's data (the
	// -dir root), and are kept between runs: generating 20,000 takes minutes.
	root := cfg.dir
	if root == "" {
		root = "/var/tmp"
	}
	jpegs := filepath.Join(root, fmt.Sprintf("fff-bench-loader-jpegs-%d", ldCfg.images))
	p, cleanup, err := startCluster(ctx, cfg, "loader")
	if err != nil {
		return err
	}
	defer cleanup()
	jsonPath := filepath.Join(p.dir, "loader.json")
	args := []string{script,
		"--num-images", fmt.Sprint(ldCfg.images),
		"--jpeg-dir", jpegs,
		"--dest", fmt.Sprintf("fff:///bench/imagenet-style-%d", ldCfg.images),
		"--epochs", fmt.Sprint(ldCfg.epochs),
		"--max-batches", fmt.Sprint(ldCfg.maxBatches),
		"--decode-max-batches", fmt.Sprint(ldCfg.decodeBatches),
		"--batch-size", fmt.Sprint(ldCfg.batch),
		"--fff-workers", ldCfg.fffWorkers,
		"--if-workers", ldCfg.ifWorkers,
		"--modes", ldCfg.modes,
		"--peers", ldCfg.peers,
		"--peer-workers", ldCfg.peerWorkers,
		"--server-pid", fmt.Sprint(p.cmd.Process.Pid),
		"--repeat", fmt.Sprint(cfg.rounds),
		"--json", jsonPath,
		"--no-progress",
	}
	if ldCfg.decodeWorkers > 0 {
		args = append(args, "--decode-workers", fmt.Sprint(ldCfg.decodeWorkers))
	}
	if cfg.noDrop {
		args = append(args, "--warm")
	}
	cmd := exec.CommandContext(ctx, pyCfg.python, args...)
	cmd.Env = append(os.Environ(), libfff.EnvCluster+"="+p.addr, libfff.EnvToken+"="+p.token)
	// The script's own log and table go to stderr: progress while it runs;
	// the suite's table (below) is the one on stdout.
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	fmt.Fprintf(os.Stderr, "loader: %s %s\n", pyCfg.python, strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("loader: %s: %w", filepath.Base(script), err)
	}
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		return fmt.Errorf("loader: the script wrote no results: %w", err)
	}
	var rep loaderReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return fmt.Errorf("loader: cannot parse %s: %w", jsonPath, err)
	}

	cache := "page cache dropped before each measurement"
	if !rep.Cold {
		cache = "WARM page cache (not root, or -no-drop-cache)"
	}
	limit := func(n int) string {
		if n == 0 {
			return fmt.Sprintf("%d epoch(s)", rep.Epochs)
		}
		return fmt.Sprintf("%d batches", n)
	}
	fmt.Printf("\n## DataLoader epoch: fff.torch.DataLoader vs torchvision ImageFolder (fffd local)\n\n")
	fmt.Printf("machine: %s; %d CPUs; %d JPEGs of ~%.0f KiB in 10 classes, as FFRecord v2 shards in fff and as files on the same disk for ImageFolder (%s, kept between runs); batch %d, shuffled; %s; samples/s after the first batch; %d rounds with the two sides alternating, medians; no decode: %s per measurement, each side at its best worker count (fff of %s, ImageFolder of %s, its workers handing the files over as pickled bytes or one shared-memory tensor per batch: %s); decode (PIL + RandomResizedCrop(160) + flip + ToTensor per sample) and batch decode (fff.vision.ImageBatchDecoder(160) on each batch, a uint8 batch; ImageFolder and the peers run it as their collate_fn, in their workers): %s, %d workers each (torch_examples/imagenet_style.py)\n\n",
		hostInfo(), rep.CPUs, rep.NumImages, rep.MeanKiB, jpegs, rep.BatchSize, cache, rep.Repeat,
		limit(rep.MaxBatches), ldCfg.fffWorkers, ldCfg.ifWorkers, strings.Join(rep.Transports, ", "),
		limit(rep.DecodeBatches), rep.DecodeWorkers)
	fmt.Println("| pipeline | fff samples/s | ImageFolder samples/s | fff / ImageFolder | target | config (workers fff / ImageFolder) | fff MiB/s |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rep.Rows {
		if r.FFF == nil {
			continue
		}
		name := loaderRowName(r.Mode)
		ifRate, ratio, cfgStr := "skipped", "", r.FFF.Workers+" / -"
		if r.ImageFolder != nil {
			ifRate = rangeStr(*r.ImageFolder, rep.Repeat)
			cfgStr = r.FFF.Workers + " / " + r.ImageFolder.Workers
		}
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2f", *r.Ratio)
		}
		target := ""
		if r.Mode == "raw" && r.Ratio != nil {
			target = fmt.Sprintf("≥ %.0f× %s", loaderTarget, verdict(*r.Ratio >= loaderTarget))
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %.0f |\n", name, rangeStr(*r.FFF, rep.Repeat), ifRate, ratio, target, cfgStr, r.FFF.Rate*rep.MeanKiB/1024)
	}
	fmt.Println()
	for _, r := range rep.Rows {
		if b := r.Bound; b != nil && b.FFFShare != nil {
			share, how := pairedRatio(*b.FFFShare, b.FFFShareRounds)
			fmt.Printf("%s: the decode-only bound (the same decode of the same samples already in memory: torch's DataLoader over one shared-memory buffer, %s workers) is %s samples/s; fff reaches %s of it%s; target ≥ %.2f %s\n\n",
				loaderRowName(r.Mode), b.Workers, rangeStr(b.loaderSide, rep.Repeat), fmtRatio(share, loaderBoundTarget), how, loaderBoundTarget, verdict(share >= loaderBoundTarget))
		}
	}
	for _, r := range rep.Rows {
		if r.Mode == "raw" {
			continue
		}
		best, bestKey := 0.0, ""
		for _, key := range loaderPeerOrder {
			if ps := r.Peers[key]; ps != nil && ps.FFFRatio != nil && (bestKey == "" || ps.Rate > best) {
				best, bestKey = ps.Rate, key
			}
		}
		if bestKey != "" {
			ps := r.Peers[bestKey]
			ratio, how := pairedRatio(*ps.FFFRatio, ps.FFFRatioRounds)
			ceiling := ""
			if b := r.Bound; b != nil && best > 0 {
				// No loader can beat the bound: it caps fff's lead here.
				ceiling = fmt.Sprintf("; the decode-only bound is %.2f× it, the most any loader can lead it by on this machine", b.Rate/best)
			}
			fmt.Printf("%s: the best peer is %s (%.0f samples/s); fff / it = %s%s, target ≥ %.1f× %s%s\n\n",
				loaderRowName(r.Mode), rep.Peers[bestKey].Name, best, fmtRatio(ratio, loaderPeerTarget), how, loaderPeerTarget, verdict(ratio >= loaderPeerTarget), ceiling)
		}
	}
	if len(rep.DecodeCosts) > 0 {
		names := slices.Sorted(maps.Keys(rep.DecodeCosts))
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = fmt.Sprintf("%s %.0f µs", k, rep.DecodeCosts[k])
		}
		fmt.Printf("decode + augmentation, CPU per sample on one thread, samples in memory: %s\n\n", strings.Join(parts, "; "))
	}
	for _, r := range rep.Rows {
		if len(r.FFFBy) > 1 || len(r.IFBy) > 1 {
			fmt.Printf("%s, medians by worker count: fff %s; ImageFolder %s\n\n", r.Mode, byWorkers(r.FFFBy), byWorkers(r.IFBy))
		}
	}
	printLoaderPeers(rep, jpegs)
	return nil
}

// printLoaderPeers prints the peers' table: every side of every row with its
// CPU cost, the peers' formats and what each side verifies.
func printLoaderPeers(rep loaderReport, jpegs string) {
	if len(rep.Peers) == 0 && len(rep.PeersSkipped) == 0 {
		return
	}
	server := "fffd included"
	if !rep.CPUServer {
		server = "fffd NOT included"
	}
	fmt.Printf("### DataLoader epoch: peers (LitData, MosaicML Streaming, WebDataset)\n\n")
	fmt.Printf("The same samples (JPEG bytes + label) in each peer's own format on the same disk (%s-<peer>, chunks/shards of ~%d MiB, kept between runs), read with its own dataset and loader, shuffled, through torch DataLoader workers (forkserver), raw bytes and with the same decode; raw: each at its best of %s workers; alternating with fff and ImageFolder, medians as above. CPU-s / epoch: user+system seconds of the measuring process, its DataLoader workers (%s), from creating the loader to closing it, scaled to one epoch of %d samples. fff / peer > 1: fff is faster. Shuffle is not equal: fff and ImageFolder draw a uniform permutation, the peers read their chunks/shards near-sequentially.\n\n",
		jpegs, rep.PeerChunkMiB, ldCfg.peerWorkers, server, rep.NumImages)
	fmt.Println("| pipeline | loader | format (local disk) | samples/s | fff / it | workers | CPU-s / epoch | conversion | size on disk | verifies | shuffle |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	cpu := func(s *loaderSide) string {
		if s == nil || s.CPUEpoch == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f", *s.CPUEpoch)
	}
	for _, r := range rep.Rows {
		name := loaderRowName(r.Mode)
		if r.FFF != nil {
			fmt.Printf("| %s | fff.torch.DataLoader | FFRecord v2 in fff | %s | 1.00 | %s | %s | | | CRC32C of every sample, every read | uniform permutation |\n",
				name, rangeStr(*r.FFF, rep.Repeat), r.FFF.Workers, cpu(r.FFF))
		}
		if r.ImageFolder != nil {
			ratio := ""
			if r.Ratio != nil {
				ratio = fmt.Sprintf("%.2f", *r.Ratio)
			}
			fmt.Printf("| %s | ImageFolder | JPEG files | %s | %s | %s | %s | | | nothing | uniform permutation |\n",
				name, rangeStr(*r.ImageFolder, rep.Repeat), ratio, r.ImageFolder.Workers, cpu(r.ImageFolder))
		}
		for _, key := range loaderPeerOrder {
			if why, ok := rep.PeersSkipped[key]; ok {
				fmt.Printf("| %s | %s | skipped: %s | | | | | | | | |\n", name, key, why)
				continue
			}
			info, ok := rep.Peers[key]
			ps := r.Peers[key]
			if !ok || ps == nil {
				continue
			}
			ratio := ""
			if ps.FFFRatio != nil {
				ratio = fmt.Sprintf("%.2f", *ps.FFFRatio)
			}
			fmt.Printf("| %s | %s %s | %s | %s | %s | %s | %s | %.1fs | %.0f MiB | %s | %s |\n",
				name, info.Name, info.Version, info.Format, rangeStr(ps.loaderSide, rep.Repeat), ratio, ps.Workers,
				cpu(&ps.loaderSide), info.Seconds, float64(info.Bytes)/(1<<20), info.Verifies, info.Shuffle)
		}
	}
	fmt.Println()
	for _, r := range rep.Rows {
		for _, key := range loaderPeerOrder {
			if ps := r.Peers[key]; ps != nil && len(ps.By) > 1 {
				fmt.Printf("%s, %s medians by worker count: %s\n", r.Mode, rep.Peers[key].Name, byWorkers(ps.By))
			}
		}
	}
	fmt.Println()
}

func rangeStr(s loaderSide, rounds int) string {
	if rounds > 1 {
		return fmt.Sprintf("%.0f (%.0f–%.0f)", s.Rate, s.Range[0], s.Range[1])
	}
	return fmt.Sprintf("%.0f", s.Rate)
}

func byWorkers(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %.0f", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
