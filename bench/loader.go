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
// Target (issue acceptance): fff without decode ≥ 3× ImageFolder without
// decode, each side at its best worker count of a small set.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	flag.StringVar(&ldCfg.modes, "loader-modes", "raw,decode", "loader suite: rows to measure (raw, decode)")
}

const loaderTarget = 3.0 // fff / ImageFolder without decode

type loaderSide struct {
	Rate    float64    `json:"rate"`
	Range   [2]float64 `json:"range"`
	Workers string     `json:"workers"`
	First   float64    `json:"first"`
}

type loaderRow struct {
	Mode        string             `json:"mode"`
	What        string             `json:"what"`
	FFF         *loaderSide        `json:"fff"`
	ImageFolder *loaderSide        `json:"imagefolder"`
	FFFBy       map[string]float64 `json:"fff_by_workers"`
	IFBy        map[string]float64 `json:"imagefolder_by_workers"`
	Ratio       *float64           `json:"ratio"`
}

type loaderReport struct {
	NumImages     int         `json:"num_images"`
	MeanKiB       float64     `json:"mean_kib"`
	BatchSize     int         `json:"batch_size"`
	CPUs          int         `json:"cpus"`
	Cold          bool        `json:"cold"`
	Repeat        int         `json:"repeat"`
	Epochs        int         `json:"epochs"`
	MaxBatches    int         `json:"max_batches"`
	DecodeBatches int         `json:"decode_max_batches"`
	DecodeWorkers int         `json:"decode_workers"`
	Transports    []string    `json:"if_transports"`
	Rows          []loaderRow `json:"rows"`
}

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
	fmt.Printf("machine: %s; %d CPUs; %d JPEGs of ~%.0f KiB in 10 classes, as FFRecord v2 shards in fff and as files on the same disk for ImageFolder (%s, kept between runs); batch %d, shuffled; %s; samples/s after the first batch; %d rounds with the two sides alternating, medians; no decode: %s per measurement, each side at its best worker count (fff of %s, ImageFolder of %s, its workers handing the files over as pickled bytes or one shared-memory tensor per batch: %s); decode (PIL + RandomResizedCrop(160) + flip + ToTensor): %s, %d workers each (torch_examples/imagenet_style.py)\n\n",
		hostInfo(), rep.CPUs, rep.NumImages, rep.MeanKiB, jpegs, rep.BatchSize, cache, rep.Repeat,
		limit(rep.MaxBatches), ldCfg.fffWorkers, ldCfg.ifWorkers, strings.Join(rep.Transports, ", "),
		limit(rep.DecodeBatches), rep.DecodeWorkers)
	fmt.Println("| pipeline | fff samples/s | ImageFolder samples/s | fff / ImageFolder | target | config (workers fff / ImageFolder) | fff MiB/s |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rep.Rows {
		if r.FFF == nil {
			continue
		}
		name := "no decode (raw bytes)"
		if r.Mode == "decode" {
			name = "decode + augmentation"
		}
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
		if len(r.FFFBy) > 1 || len(r.IFBy) > 1 {
			fmt.Printf("%s, medians by worker count: fff %s; ImageFolder %s\n\n", r.Mode, byWorkers(r.FFFBy), byWorkers(r.IFBy))
		}
	}
	return nil
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
