package main

// The meta suite: metadata operation rates of a real `fffd local` through
// real RPC, next to the same meta.Service called in process over the same
// KV backend on the same disk (what the service costs without the wire).
//
//   - stat: StatPath of existing files (/bench/stat/dNN/fNNNN, 4096 files),
//     chosen at random.
//   - create: Create of new empty files (exclusive, no write session), each
//     client in its own directory; durable: bbolt's group commit fsyncs
//     before the answer, as in production.
//
// Each runs with 1 client (one connection), 64 clients (64 goroutines with a
// connection each, i.e. 64 separate clients), and 64 goroutines sharing one
// rpc.Pool (4 connections, what one process using libfff does), for a fixed
// duration after a short warm-up; with 16 clients too when the etcd part
// runs (meta_etcd.go compares both concurrencies with a 3-node cluster over
// etcd and with etcd's own rates, after this table). The table shows ops/s,
// per-operation p50 and p99, and the ratio to the targets (DESIGN §12: stat
// ≥ 30,000 and create ≥ 5,000 ops/s with 64 concurrent clients).
//
// A second table is one client through libfff, durable, against the same
// on the local disk next to fffd's data: Client.CreateFile of an empty file
// (target ≥ 2,000/s: a lone create pays one fsync, no group-commit timer)
// against open(O_CREAT|O_EXCL) + fsync of the file and of its directory +
// close; and a small file (Create, Write of -small-size, Close: durable at
// Close) against the same with a write.

import (
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv/bboltkv"
	"fff/server/meta"
)

// Targets for 64 concurrent clients, and for one client through libfff.
const (
	metaStatTarget       = 30000
	metaCreateTarget     = 5000
	metaLoneCreateTarget = 2000
)

const (
	metaStatDirs     = 16
	metaStatPerDir   = 256
	metaPoolSize     = rpc.DefaultPoolSize
	metaSetupClients = 64
)

// metaConfig holds the meta suite's flags.
type metaConfig struct {
	fffd     string
	duration time.Duration
	clients  int
	noLocal  bool
	noEtcd   bool
}

var metaCfg metaConfig

func init() {
	flag.StringVar(&metaCfg.fffd, "fffd", "", "fffd binary for the meta suite (default: next to this binary, else built from ./cmd/fffd, else bin/fffd or PATH)")
	flag.DurationVar(&metaCfg.duration, "meta-duration", 5*time.Second, "time per metadata measurement")
	flag.IntVar(&metaCfg.clients, "meta-clients", 64, "concurrent clients of the metadata measurements")
	flag.BoolVar(&metaCfg.noLocal, "meta-no-inprocess", false, "skip the in-process meta.Service reference")
	flag.BoolVar(&metaCfg.noEtcd, "meta-no-etcd", false, "skip the 3-node etcd cluster (fff up --nodes 3) and the raw etcd reference (meta_etcd.go)")
}

// metaOps is a way of calling meta: over RPC or in process.
type metaOps interface {
	mkdir(ctx context.Context, parent uint64, name string) (uint64, error)
	create(ctx context.Context, parent uint64, name string) error
	statPath(ctx context.Context, path string) error
}

type rpcOps struct {
	c interface {
		Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error)
	}
}

func (o rpcOps) mkdir(ctx context.Context, parent uint64, name string) (uint64, error) {
	var resp proto.MetaInodeResp
	_, err := o.c.Call(ctx, proto.MethodMetaMkdir, &proto.MetaMkdirReq{Parent: parent, Name: name, Mode: 0o755}, &resp)
	return resp.Inode.Ino, err
}

func (o rpcOps) create(ctx context.Context, parent uint64, name string) error {
	var resp proto.MetaOpenResp
	_, err := o.c.Call(ctx, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: parent, Name: name, Mode: 0o644, Flags: proto.OpenExcl}, &resp)
	return err
}

func (o rpcOps) statPath(ctx context.Context, path string) error {
	var resp proto.MetaInodeResp
	_, err := o.c.Call(ctx, proto.MethodMetaStatPath, &proto.MetaStatPathReq{Path: path}, &resp)
	return err
}

type localOps struct{ s *meta.Service }

func (o localOps) mkdir(ctx context.Context, parent uint64, name string) (uint64, error) {
	n, err := o.s.Mkdir(ctx, meta.Root, parent, name, 0o755)
	return n.Ino, err
}

func (o localOps) create(ctx context.Context, parent uint64, name string) error {
	_, err := o.s.Create(ctx, meta.Root, parent, name, 0o644, proto.OpenExcl)
	return err
}

func (o localOps) statPath(ctx context.Context, path string) error {
	_, err := o.s.StatPath(ctx, meta.Root, path, false)
	return err
}

type metaResult struct {
	ops      int64
	opsPerS  float64
	p50, p99 time.Duration
}

// measure runs op in n goroutines (worker w uses ops(w)) for warm-up +
// d and reports the operations completed after the warm-up.
func measure(ctx context.Context, n int, d time.Duration, ops func(w int) metaOps, op func(ctx context.Context, o metaOps, w int, i int64, rng *rand.Rand) error) (metaResult, error) {
	warm := min(d/5, time.Second)
	start := time.Now()
	from, until := start.Add(warm), start.Add(warm+d)
	var count atomic.Int64
	var mu sync.Mutex
	var lats []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := ops(w)
			rng := rand.New(rand.NewPCG(uint64(w), 11))
			my := make([]time.Duration, 0, 4096)
			for i := int64(0); ; i++ {
				t0 := time.Now()
				if !t0.Before(until) {
					break
				}
				if err := op(ctx, o, w, i, rng); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				t1 := time.Now()
				if t0.After(from) && t1.Before(until) {
					my = append(my, t1.Sub(t0))
				}
			}
			count.Add(int64(len(my)))
			mu.Lock()
			lats = append(lats, my...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return metaResult{}, firstErr
	}
	slices.Sort(lats)
	pct := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))]
	}
	c := count.Load()
	return metaResult{ops: c, opsPerS: float64(c) / d.Seconds(), p50: pct(0.5), p99: pct(0.99)}, nil
}

// fffdProc is a running `fffd local`.
type fffdProc struct {
	cmd    *exec.Cmd
	addr   string
	token  string
	exited chan struct{}
	dir    string // the suite's directory (set by startCluster)
	// metrics is the node's metrics listener ("" with --metrics-listen off).
	metrics string
}

// startFFFD starts `fffd local` on data with extra arguments (e.g.
// --config) and waits until it serves.
func startFFFD(ctx context.Context, bin, data string, extra ...string) (*fffdProc, error) {
	logf, err := os.Create(filepath.Join(data, "fffd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, append([]string{"local", "--data", data, "--listen", "127.0.0.1:0", "--log-level", "warn", "--log-format", "json"}, extra...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &fffdProc{cmd: cmd, exited: make(chan struct{})}
	go func() { cmd.Wait(); close(p.exited) }()
	deadline := time.After(60 * time.Second)
	for {
		var ri struct {
			PID     int    `json:"pid"`
			Address string `json:"address"`
			Metrics string `json:"metrics"`
		}
		if b, err := os.ReadFile(filepath.Join(data, "fffd.json")); err == nil && json.Unmarshal(b, &ri) == nil && ri.PID == cmd.Process.Pid {
			p.addr, p.metrics = ri.Address, ri.Metrics
			break
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("fffd exited before it was ready (see %s)", filepath.Join(data, "fffd.log"))
		case <-deadline:
			p.stop()
			return nil, errors.New("fffd did not come up within 60s")
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		p.stop()
		return nil, err
	}
	p.token = strings.TrimSpace(string(tok))
	return p, nil
}

func (p *fffdProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// findFFFD returns the fffd binary to run: the flag; fffd next to this
// binary; a fresh build of ./cmd/fffd (when run from the repository, e.g.
// `go run ./bench`); bin/fffd; PATH.
func findFFFD(tmp string) (string, error) {
	if metaCfg.fffd != "" {
		return metaCfg.fffd, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "fffd")
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	if _, err := os.Stat("cmd/fffd"); err == nil {
		if _, err := exec.LookPath("go"); err == nil {
			out := filepath.Join(tmp, "fffd")
			b := exec.Command("go", "build", "-o", out, "./cmd/fffd")
			b.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false -ldflags=-checklinkname=0")
			if msg, err := b.CombinedOutput(); err != nil {
				return "", fmt.Errorf("building fffd: %v\n%s", err, msg)
			}
			return out, nil
		}
	}
	if st, err := os.Stat("bin/fffd"); err == nil && st.Mode().IsRegular() {
		return "bin/fffd", nil
	}
	if p, err := exec.LookPath("fffd"); err == nil {
		return p, nil
	}
	return "", errors.New("fffd not found: run `make build` or pass -fffd")
}

// metaTree creates the stat tree and returns its file paths.
func metaTree(ctx context.Context, ops func(w int) metaOps) ([]string, error) {
	o := ops(0)
	bench, err := o.mkdir(ctx, proto.RootIno, "bench")
	if err != nil {
		return nil, err
	}
	statDir, err := o.mkdir(ctx, bench, "stat")
	if err != nil {
		return nil, err
	}
	paths := make([]string, 0, metaStatDirs*metaStatPerDir)
	dirs := make([]uint64, metaStatDirs)
	for d := range dirs {
		if dirs[d], err = o.mkdir(ctx, statDir, fmt.Sprintf("d%02d", d)); err != nil {
			return nil, err
		}
		for f := range metaStatPerDir {
			paths = append(paths, fmt.Sprintf("/bench/stat/d%02d/f%04d", d, f))
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, metaSetupClients)
	for w := range metaSetupClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := ops(w)
			for k := w; k < len(paths); k += metaSetupClients {
				if err := o.create(ctx, dirs[k/metaStatPerDir], fmt.Sprintf("f%04d", k%metaStatPerDir)); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return paths, errors.Join(errs...)
}

type metaRow struct {
	op, clients, conns string
	target             float64
	r                  metaResult
}

// metaVariant is one way of running the clients.
type metaVariant struct {
	name    string // for directory names
	clients string
	conns   string
	n       int
	ops     func(w int) metaOps
	target  bool // compare with the targets
	etcd    bool // kept for the comparison with etcd (meta_etcd.go)
}

// startCluster starts a real `fffd local` in a new directory under cfg.dir
// (the disk under test) for a suite; cleanup stops it and, unless -keep,
// removes its data.
func startCluster(ctx context.Context, cfg config, suite string, fffdArgs ...string) (p *fffdProc, cleanup func(), err error) {
	root, err := benchRoot(cfg)
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp(root, "fff-bench-"+suite+"-")
	if err != nil {
		return nil, nil, err
	}
	removeDir := func() {
		if !cfg.keep {
			os.RemoveAll(dir)
		}
	}
	bin, err := findFFFD(dir)
	if err != nil {
		removeDir()
		return nil, nil, err
	}
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		removeDir()
		return nil, nil, err
	}
	if p, err = startFFFD(ctx, bin, data, fffdArgs...); err != nil {
		removeDir()
		return nil, nil, err
	}
	p.dir = dir
	return p, func() { p.stop(); removeDir() }, nil
}

func runMetaSuite(ctx context.Context, cfg config) error {
	bbolt, err := runMetaLocal(ctx, cfg)
	if err != nil || metaCfg.noEtcd {
		return err
	}
	// fffd local is stopped by now: the etcd cluster has the machine.
	return runMetaEtcd(ctx, cfg, bbolt)
}

// runMetaLocal measures `fffd local` (bbolt) and prints its tables; it
// returns the rates of the variants the etcd part compares with.
func runMetaLocal(ctx context.Context, cfg config) (map[metaKey]metaResult, error) {
	p, cleanup, err := startCluster(ctx, cfg, "meta")
	if err != nil {
		return nil, err
	}
	defer cleanup()

	n := metaCfg.clients
	nconns := n
	if !metaCfg.noEtcd {
		nconns = max(n, slices.Max(metaEtcdClients()))
	}
	conns, err := dialConns(ctx, p.addr, p.token, nconns)
	if err != nil {
		return nil, err
	}
	defer closeConns(conns)
	pool := rpc.NewPool(p.addr, p.token, rpc.PoolOptions{Size: metaPoolSize})
	defer pool.Close()
	own := func(w int) metaOps { return rpcOps{conns[w%len(conns)]} }
	shared := func(int) metaOps { return rpcOps{pool} }
	variants := []metaVariant{{"rpc1", "1", "1", 1, own, false, false}}
	if !metaCfg.noEtcd {
		// The other concurrencies the etcd part compares with.
		for _, c := range metaEtcdClients() {
			if c != n {
				variants = append(variants, metaVariant{fmt.Sprintf("rpc%d", c), fmt.Sprint(c), fmt.Sprintf("%d (one each)", c), c, own, false, true})
			}
		}
	}
	variants = append(variants,
		metaVariant{"rpcN", fmt.Sprint(n), fmt.Sprintf("%d (one each)", n), n, own, true, true},
		metaVariant{"pool", fmt.Sprint(n), fmt.Sprintf("1 shared rpc.Pool (%d)", metaPoolSize), n, shared, false, false})
	var local func(int) metaOps
	if !metaCfg.noLocal {
		db, err := bboltkv.Open(filepath.Join(p.dir, "inprocess.db"), nil)
		if err != nil {
			return nil, err
		}
		defer db.Close()
		ms := meta.New(db, meta.Options{ChainTables: meta.StaticChainTables{1: {1, 2}}})
		if err := ms.Init(ctx); err != nil {
			return nil, err
		}
		local = func(int) metaOps { return localOps{ms} }
		variants = append(variants,
			metaVariant{"local1", "1", "in process (no RPC)", 1, local, false, false},
			metaVariant{"localN", fmt.Sprint(n), "in process (no RPC)", n, local, false, false})
	}

	fmt.Printf("\n## Metadata rates (fffd local, bbolt, durable)\n\n")
	fmt.Printf("machine: %s; %d CPUs; data dir %s; fffd %s; %s per measurement after a warm-up; clients and server on the same machine\n\n",
		hostInfo(), runtime.NumCPU(), p.dir, p.cmd.Path, metaCfg.duration)

	// The stat tree, in fffd and in the in-process service.
	paths, err := metaTree(ctx, own)
	if err != nil {
		return nil, fmt.Errorf("meta: creating the stat tree in fffd: %w", err)
	}
	if local != nil {
		if _, err := metaTree(ctx, local); err != nil {
			return nil, fmt.Errorf("meta: creating the stat tree in process: %w", err)
		}
	}

	kept := map[metaKey]metaResult{}
	var rows []metaRow
	for _, v := range variants {
		r, err := measure(ctx, v.n, metaCfg.duration, v.ops, func(ctx context.Context, o metaOps, _ int, _ int64, rng *rand.Rand) error {
			return o.statPath(ctx, paths[rng.IntN(len(paths))])
		})
		if err != nil {
			return nil, fmt.Errorf("meta: stat (%s): %w", v.name, err)
		}
		if v.etcd {
			kept[metaKey{"stat", v.n}] = r
		}
		row := metaRow{op: "stat (StatPath)", clients: v.clients, conns: v.conns, r: r}
		if v.target {
			row.target = metaStatTarget
		}
		rows = append(rows, row)
	}
	for _, v := range variants {
		// Each worker creates in its own directory.
		dirs := make([]uint64, v.n)
		o := v.ops(0)
		parent, err := o.mkdir(ctx, proto.RootIno, "create-"+v.name)
		if err != nil {
			return nil, err
		}
		for w := range dirs {
			if dirs[w], err = o.mkdir(ctx, parent, fmt.Sprintf("w%03d", w)); err != nil {
				return nil, err
			}
		}
		r, err := measure(ctx, v.n, metaCfg.duration, v.ops, func(ctx context.Context, o metaOps, w int, i int64, _ *rand.Rand) error {
			return o.create(ctx, dirs[w], fmt.Sprintf("f%08d", i))
		})
		if err != nil {
			return nil, fmt.Errorf("meta: create (%s): %w", v.name, err)
		}
		if v.etcd {
			kept[metaKey{"create", v.n}] = r
		}
		row := metaRow{op: "create (empty file, durable)", clients: v.clients, conns: v.conns, r: r}
		if v.target {
			row.target = metaCreateTarget
		}
		rows = append(rows, row)
	}

	fmt.Println("| operation | clients | connections | ops/s | p50 | p99 | target | vs target |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		target, ratio := "", ""
		if r.target > 0 {
			target = fmt.Sprintf("≥ %s", groupDigits(r.target))
			ratio = fmt.Sprintf("%.2f×", r.r.opsPerS/r.target)
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.op, r.clients, r.conns, groupDigits(r.r.opsPerS),
			fmtLatency(r.r.p50), fmtLatency(r.r.p99), target, ratio)
	}
	return kept, metaLone(ctx, p)
}

// metaLone measures one client creating files through libfff against the
// same on the local disk, each durable when it returns.
func metaLone(ctx context.Context, p *fffdProc) error {
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	size, err := parseSize(fuseCfg.smallSize)
	if err != nil {
		return err
	}
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	local := filepath.Join(p.dir, "lone-local")
	defer os.RemoveAll(local)
	none := func(int) metaOps { return nil }
	loop := func(op func(i int64) error) (metaResult, error) {
		return measure(ctx, 1, metaCfg.duration, none, func(_ context.Context, _ metaOps, _ int, i int64, _ *rand.Rand) error { return op(i) })
	}
	type row struct {
		op           string
		fff, ref     func(dir string, i int64) error
		target       float64
		fffR, localR metaResult
	}
	dirIno := map[string]uint64{}
	rows := []*row{
		{op: "create (empty file): CreateFile (by path: resolves the directory, then creates)",
			fff: func(dir string, i int64) error {
				_, err := c.CreateFile(ctx, fmt.Sprintf("%s/f%08d", dir, i), 0o644)
				return err
			},
			ref: func(dir string, i int64) error { return localCreate(dir, fmt.Sprintf("f%08d", i), nil) }},
		{op: "create (empty file): CreateIno (directory inode known, as the mount)", target: metaLoneCreateTarget,
			fff: func(dir string, i int64) error {
				f, err := c.CreateIno(ctx, dirIno[dir], fmt.Sprintf("f%08d", i), 0o644, os.O_RDONLY, true)
				if err != nil {
					return err
				}
				return f.Close()
			},
			ref: func(dir string, i int64) error { return localCreate(dir, fmt.Sprintf("f%08d", i), nil) }},
		{op: fmt.Sprintf("create, write %s, close", formatSize(size)),
			fff: func(dir string, i int64) error {
				f, err := c.Open(ctx, fmt.Sprintf("%s/f%08d", dir, i), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				if _, err := f.Write(data); err != nil {
					f.Close()
					return err
				}
				return f.Close()
			},
			ref: func(dir string, i int64) error { return localCreate(dir, fmt.Sprintf("f%08d", i), data) }},
	}
	for k, r := range rows {
		dir := fmt.Sprintf("/bench/lone-%d", k)
		if err := c.MkdirAll(ctx, dir, 0o755); err != nil {
			return err
		}
		st, err := c.Stat(ctx, dir)
		if err != nil {
			return err
		}
		dirIno[dir] = st.Ino()
		ldir := filepath.Join(local, fmt.Sprint(k))
		if err := os.MkdirAll(ldir, 0o755); err != nil {
			return err
		}
		if r.fffR, err = loop(func(i int64) error { return r.fff(dir, i) }); err != nil {
			return fmt.Errorf("meta: lone %s: %w", r.op, err)
		}
		if r.localR, err = loop(func(i int64) error { return r.ref(ldir, i) }); err != nil {
			return fmt.Errorf("meta: lone %s on the local disk: %w", r.op, err)
		}
	}
	fmt.Printf("\nOne client through libfff (Client.CreateFile, Client.CreateIno; Open, Write, Close), each file durable when the call returns, against the same on the local disk (%s: open O_CREAT|O_EXCL, write, fsync of the file and of its directory, close)\n\n", local)
	fmt.Println("| operation (1 client, durable) | fff ops/s | p50 | p99 | local disk ops/s | local p50 | fff / local | target |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		target := ""
		if r.target > 0 {
			target = fmt.Sprintf("≥ %s %s", groupDigits(r.target), verdict(r.fffR.opsPerS >= r.target))
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %.2f | %s |\n", r.op, groupDigits(r.fffR.opsPerS), fmtLatency(r.fffR.p50), fmtLatency(r.fffR.p99),
			groupDigits(r.localR.opsPerS), fmtLatency(r.localR.p50), r.fffR.opsPerS/r.localR.opsPerS, target)
	}
	return nil
}

// localCreate creates file name in dir with data, durably: the file and
// the directory entry are fsynced before it returns.
func localCreate(dir, name string, data []byte) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if len(data) > 0 {
		if _, err := f.Write(data); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// groupDigits formats a rate as an integer with thousands separators.
func groupDigits(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func fmtLatency(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}

// benchRoot returns the directory the suites make their data in (-dir,
// else /var/tmp: a real disk, not tmpfs), made if needed.
func benchRoot(cfg config) (string, error) {
	root := cfg.dir
	if root == "" {
		root = "/var/tmp"
	}
	return root, os.MkdirAll(root, 0o755)
}

// dialConns opens n connections to addr, one per benchmark client; on an
// error it closes those it opened.
func dialConns(ctx context.Context, addr, token string, n int) ([]*rpc.Conn, error) {
	conns := make([]*rpc.Conn, n)
	for i := range conns {
		c, err := rpc.Dial(ctx, addr, token, rpc.ClientOptions{})
		if err != nil {
			closeConns(conns)
			return nil, err
		}
		conns[i] = c
	}
	return conns, nil
}

func closeConns(conns []*rpc.Conn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
