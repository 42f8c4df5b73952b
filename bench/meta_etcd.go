package main

// The meta suite's etcd part: the metadata on a replicated KV. After the
// bbolt table (meta.go) and with its fffd stopped, a cluster of three full
// nodes made by `fff up --daemon --nodes 3` (three `fffd local` processes on
// this machine and disk, each with an embedded etcd member, mgmtd, meta and
// storage) in a new directory under -dir, and in the same run:
//
//   - fff: stat (StatPath of /bench/stat/dNN/fNNNN) and create (an empty
//     file, exclusive, each client in its own directory) through node 1 as
//     the bbolt table does them (one RPC connection per client), with 16 and
//     -meta-clients clients, next to the same rows of the bbolt table.
//   - etcd itself: a go.etcd.io/etcd/client/v3 loop over the client URLs of
//     the same three members (from the nodes' configs, [etcd] client_url),
//     under a key prefix fff does not use (metaRawPrefix, removed
//     afterwards), at the same concurrencies: each kind of round trip the
//     fff operations make (metaStep): a linearizable or serializable Get
//     of one of 4,096 keys of metaRawValue bytes, a read-only Txn of 2 or
//     3 such Gets (kv.Prefetch), and a durable Txn (one compare, one Put
//     of metaRawValue bytes to a new key, as a metadata write). The reads
//     again through node 1's member alone: node 1's meta reaches etcd
//     through its own member only (cmd/fffd/kv.go).
//   - the limit the raw rates set for each fff operation: the etcd round
//     trips it needs (metaStatKV, metaCreateKV, counted in server/meta and
//     server/kv/etcdkv) take 1/rate each, in sequence, so at the same
//     concurrency the KV allows 1 / Σ(round trips / raw rate) operations
//     per second. Target: fff reaches ≥ metaEtcdTarget of that (with the
//     Gets over the three members; the table also shows the limit with
//     node 1's member's Get rates). The etcd
//     RPCs every measurement made are also counted from the members'
//     /metrics (grpc_server_handled_total), which checks the counts (and
//     shows conflict retries).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pelletier/go-toml/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"fff/internal/proto"
)

const (
	// metaEtcdTarget: fff's stat and create on etcd reach this share of
	// what the raw etcd rates allow for the KV operations each needs.
	metaEtcdTarget = 0.70
	metaEtcdNodes  = 3
	metaRawPrefix  = "bench/raw/" // fff's keys are under "fff/"
	metaRawValue   = 200          // bytes, about an inode record
	metaRawKeys    = 4096
)

// metaKey names a row of the bbolt table the etcd part compares with.
type metaKey struct {
	op string // "stat", "create"
	n  int    // clients
}

// metaEtcdClients are the concurrencies of the etcd comparison: 16 and
// -meta-clients.
func metaEtcdClients() []int {
	cs := []int{16, metaCfg.clients}
	slices.Sort(cs)
	return slices.Compact(cs)
}

// metaStep is one kind of etcd round trip (server/kv/etcdkv/doc.go: the
// first read of a transaction is linearizable and fixes its revision,
// later reads are serializable at that revision; kv.Prefetch reads several
// keys in one read-only Txn of Gets; a read-write transaction commits with
// one Txn).
type metaStep struct {
	commit bool // the commit Txn (one compare, one Put, durable)
	lin    bool // a linearizable read; else serializable
	gets   int  // keys read: 1 is a Get, more a read-only Txn of Gets
}

func (st metaStep) String() string {
	switch {
	case st.commit:
		return "Txn"
	case st.gets == 1 && st.lin:
		return "linearizable Get"
	case st.gets == 1:
		return "serializable Get"
	case st.lin:
		return fmt.Sprintf("linearizable Txn of %d Gets", st.gets)
	}
	return fmt.Sprintf("serializable Txn of %d Gets", st.gets)
}

// metaKV is what one fff operation asks of etcd: round trips in sequence,
// n of each step.
type metaKV []struct {
	step metaStep
	n    int
}

// metaStatKV is StatPath of a path of components names as admin
// (server/meta/namespace.go, resolve): one View (etcdkv.DB.View, no
// commit) that reads the root inode with the first entry (the
// linearizable read), then each directory's inode with its next entry,
// then the last component's inode (a file: nothing after it to prefetch).
func metaStatKV(components int) metaKV {
	return metaKV{
		{metaStep{lin: true, gets: 2}, 1},
		{metaStep{gets: 2}, components - 1},
		{metaStep{gets: 1}, 1},
	}
}

// metaCreateKV is Create of a new file as admin with proto.OpenExcl
// (server/meta/namespace.go: Service.Create): one Update (withTable; the
// chain table comes from mgmtd's memory) that reads the parent's inode,
// the entry and the inode-count shard together (prefetchCreate: the
// linearizable read; reachable returns at once for root), then one Txn of
// 3 Puts guarded by 4 compares (txn.go commit: the epoch key and the 3
// keys read). allocIno's own Update (a Get and a Txn) comes once per
// meta.DefaultInoBlock creates and is left out.
var metaCreateKV = metaKV{
	{metaStep{lin: true, gets: 3}, 1},
	{metaStep{commit: true}, 1},
}

func (k metaKV) String() string {
	var parts []string
	for _, x := range k {
		if x.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", x.n, x.step))
		}
	}
	return strings.Join(parts, " + ")
}

// limit is the rate the raw rates allow for k, with its arithmetic: with
// the reads over the three members, or (node1) through node 1's member.
func (k metaKV) limit(raw metaRaw, node1 bool) (float64, string) {
	var t float64
	var terms []string
	for _, x := range k {
		if x.n == 0 {
			continue
		}
		rate := raw.rate(x.step, node1)
		t += float64(x.n) / rate
		terms = append(terms, fmt.Sprintf("%d/%s", x.n, groupDigits(rate)))
	}
	return 1 / t, fmt.Sprintf("1 / (%s) = %s", strings.Join(terms, " + "), groupDigits(1/t))
}

// metaEtcdResult is a measurement with the etcd RPCs the three members
// handled meanwhile, per operation (warm-up included on both sides).
type metaEtcdResult struct {
	r             metaResult
	ranges, txns  float64
	countsUnknown bool
	// CPU time per operation (µs) of node 1's fffd, of nodes 2 and 3, of
	// this process; the machine's busy share meanwhile.
	cpuNode1, cpuOthers, cpuBench, busy float64
	cpuUnknown                          bool
}

func (r metaEtcdResult) cpu() string {
	if r.cpuUnknown {
		return "? | ?"
	}
	return fmt.Sprintf("%.0f / %.0f / %.0f | %.0f%%", r.cpuNode1, r.cpuOthers, r.cpuBench, 100*r.busy)
}

func (r metaEtcdResult) rpcs() string {
	if r.countsUnknown {
		return "?"
	}
	return fmt.Sprintf("%.2f + %.2f", r.ranges, r.txns)
}

// metaRaw is etcd's own rates at one concurrency, by step: reads over the
// three members, and through node 1's member alone (the one node 1's meta
// uses); the commit Txn over the three.
type metaRaw struct {
	all, node1 map[metaStep]metaEtcdResult
}

func (r metaRaw) rate(st metaStep, node1 bool) float64 {
	if node1 && !st.commit {
		return r.node1[st].r.opsPerS
	}
	return r.all[st].r.opsPerS
}

// metaSteps are the steps of kvs, each once, reads first.
func metaSteps(kvs ...metaKV) []metaStep {
	var out []metaStep
	for _, k := range kvs {
		for _, x := range k {
			if x.n > 0 && !slices.Contains(out, x.step) {
				out = append(out, x.step)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b metaStep) int {
		switch {
		case a.commit == b.commit:
			return 0
		case b.commit:
			return -1
		}
		return 1
	})
	return out
}

// metaEtcdCluster is the `fff up --nodes 3` cluster and a raw client of its
// members.
type metaEtcdCluster struct {
	rc        *replCluster
	addr      string
	token     string
	members   []metaMember // by node
	endpoints []string
	cli       *clientv3.Client // over every member
	cli1      *clientv3.Client // node 1's member only
	pids      []int            // node 1's fffd, the others', this process
}

type metaMember struct {
	node      int
	name, url string
}

func runMetaEtcd(ctx context.Context, cfg config, bbolt map[metaKey]metaResult) error {
	fffBin, err := findFFF()
	if err != nil {
		return err
	}
	root, err := benchRoot(cfg)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(root, "fff-bench-meta-etcd-")
	if err == nil {
		dir, err = filepath.Abs(dir) // replOwnProcess compares the nodes' absolute paths
	}
	if err != nil {
		return err
	}
	rc := &replCluster{name: "meta: etcd cluster", replicas: 1, root: dir, data: filepath.Join(dir, "data")}
	stop := sync.OnceFunc(func() { rc.stop(fffBin, cfg.keep) })
	defer stop()
	defer stopOnInterrupt("the etcd cluster of the meta suite", stop)()

	c, err := startMetaEtcdCluster(ctx, fffBin, rc)
	if err != nil {
		return err
	}
	defer c.cli.Close()
	defer c.cli1.Close()

	// One connection per client, as the bbolt table's rows.
	clients := metaEtcdClients()
	conns, err := dialConns(ctx, c.addr, c.token, slices.Max(clients))
	if err != nil {
		return err
	}
	defer closeConns(conns)
	own := func(w int) metaOps { return rpcOps{conns[w%len(conns)]} }
	if err := metaEtcdReady(ctx, own(0)); err != nil {
		return err
	}
	paths, err := metaTree(ctx, own)
	if err != nil {
		return fmt.Errorf("meta: creating the stat tree on the etcd cluster: %w", err)
	}
	statKV := metaStatKV(metaComponents(paths[0]))
	steps := metaSteps(statKV, metaCreateKV)

	// The raw keys: metaRawKeys to read; the Txns write new ones. All
	// under metaRawPrefix, removed whatever happens.
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.cli.Delete(cctx, metaRawPrefix, clientv3.WithPrefix()); err != nil {
			fmt.Fprintf(os.Stderr, "bench: removing the raw etcd keys under %q: %v\n", metaRawPrefix, err)
		}
	}()
	val := strings.Repeat("v", metaRawValue)
	for b := 0; b < metaRawKeys; b += 512 {
		var ops []clientv3.Op
		for k := b; k < min(b+512, metaRawKeys); k++ {
			ops = append(ops, clientv3.OpPut(metaRawGetKey(k), val))
		}
		if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("meta: writing the raw etcd keys: %w", err)
		}
	}

	type side struct {
		stat, create metaEtcdResult
		raw          metaRaw
	}
	sides := map[int]*side{}
	for _, n := range clients {
		s := &side{}
		sides[n] = s
		// fff and raw etcd alternate, reads then writes.
		if s.stat, err = c.measure(ctx, n, own, func(ctx context.Context, o metaOps, _ int, _ int64, rng *rand.Rand) error {
			return o.statPath(ctx, paths[rng.IntN(len(paths))])
		}); err != nil {
			return fmt.Errorf("meta: stat on etcd (%d clients): %w", n, err)
		}
		s.raw = metaRaw{all: map[metaStep]metaEtcdResult{}, node1: map[metaStep]metaEtcdResult{}}
		for _, st := range steps {
			if st.commit {
				continue // after the creates, below
			}
			for _, node1 := range []bool{false, true} {
				cli, raw, where := c.cli, s.raw.all, ""
				if node1 {
					cli, raw, where = c.cli1, s.raw.node1, " through node 1's member"
				}
				if raw[st], err = c.measure(ctx, n, nil, func(ctx context.Context, _ metaOps, _ int, _ int64, rng *rand.Rand) error {
					return c.rawRead(ctx, cli, rng, st)
				}); err != nil {
					return fmt.Errorf("meta: raw etcd %s%s (%d clients): %w", st, where, n, err)
				}
			}
		}
		dirs := make([]uint64, n)
		o := own(0)
		parent, err := o.mkdir(ctx, proto.RootIno, fmt.Sprintf("create-etcd%d", n))
		if err != nil {
			return err
		}
		for w := range dirs {
			if dirs[w], err = o.mkdir(ctx, parent, fmt.Sprintf("w%03d", w)); err != nil {
				return err
			}
		}
		if s.create, err = c.measure(ctx, n, own, func(ctx context.Context, o metaOps, w int, i int64, _ *rand.Rand) error {
			return o.create(ctx, dirs[w], fmt.Sprintf("f%08d", i))
		}); err != nil {
			return fmt.Errorf("meta: create on etcd (%d clients): %w", n, err)
		}
		if s.raw.all[metaStep{commit: true}], err = c.measure(ctx, n, nil, func(ctx context.Context, _ metaOps, w int, i int64, _ *rand.Rand) error {
			return c.rawTxn(ctx, fmt.Sprintf("%stxn/c%d/w%03d/%08d", metaRawPrefix, n, w, i), val)
		}); err != nil {
			return fmt.Errorf("meta: raw etcd Txn (%d clients): %w", n, err)
		}
	}

	var members []string
	for _, m := range c.members {
		members = append(members, fmt.Sprintf("node %d: %s %s", m.node, m.name, m.url))
	}
	fmt.Printf("\n## Metadata on etcd: a %d-node cluster against bbolt and against etcd's own rates\n\n", metaEtcdNodes)
	fmt.Printf("machine: %s; %d CPUs; data dir %s; `fff up --daemon --nodes %d`: %d fffd local processes on this machine and disk, each with an embedded etcd member (%s; leader %s); "+
		"the clients (one RPC connection each, as in the bbolt table) reach node 1 at %s, whose meta talks to its own member only; "+
		"raw etcd: one go.etcd.io/etcd/client/v3 client over the %d members' client URLs, keys under %q (removed afterwards), values of %d bytes; "+
		"%s per measurement after a warm-up; etcd RPCs per operation: Range + Txn calls the %d members handled during the measurement (grpc_server_handled_total), warm-up and background (heartbeats) included; CPU per op: user + system time of the processes (each fffd holds its etcd member; the bench process holds the clients) over the operations, warm-up included\n\n",
		hostInfo(), runtime.NumCPU(), rc.root, metaEtcdNodes, metaEtcdNodes, strings.Join(members, ", "), c.leader(ctx), c.addr,
		len(c.endpoints), metaRawPrefix, metaRawValue, metaCfg.duration, len(c.endpoints))

	fmt.Println("| operation | clients | bbolt (fffd local) ops/s | bbolt p50 | bbolt p99 | etcd (3 nodes) ops/s | etcd p50 | etcd p99 | etcd / bbolt | etcd RPCs per op (Range + Txn) | CPU µs per op: fffd node 1 / nodes 2+3 / bench | machine CPU busy |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, op := range []string{"stat", "create"} {
		for _, n := range clients {
			e := sides[n].stat
			name := "stat (StatPath)"
			if op == "create" {
				e, name = sides[n].create, "create (empty file, durable)"
			}
			b, ok := bbolt[metaKey{op, n}]
			bops, bp50, bp99, ratio := "", "", "", ""
			if ok {
				bops, bp50, bp99 = groupDigits(b.opsPerS), fmtLatency(b.p50), fmtLatency(b.p99)
				ratio = fmt.Sprintf("%.2f", e.r.opsPerS/b.opsPerS)
			}
			fmt.Printf("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, n, bops, bp50, bp99,
				groupDigits(e.r.opsPerS), fmtLatency(e.r.p50), fmtLatency(e.r.p99), ratio, e.rpcs(), e.cpu())
		}
	}

	fmt.Printf("\netcd's own rates on the same %d members (raw clientv3 loop, one client shared by the goroutines as fffd shares its own)\n\n", len(c.endpoints))
	fmt.Println("| etcd operation (raw) | clients | ops/s | p50 | p99 | etcd RPCs per op (Range + Txn) | CPU µs per op: fffd node 1 / nodes 2+3 / bench | machine CPU busy |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, n := range clients {
		raw := sides[n].raw
		type row struct {
			name string
			e    metaEtcdResult
		}
		var rows, rows1 []row
		for _, st := range steps {
			name := st.String()
			switch {
			case st.commit:
				rows = append(rows, row{fmt.Sprintf("Txn: 1 compare (new key) + 1 Put of %d bytes, durable", metaRawValue), raw.all[st]})
				continue
			case st.gets == 1:
				name += fmt.Sprintf(" of one of %s keys", groupDigits(metaRawKeys))
			default:
				name += fmt.Sprintf(" (%d of %s keys in one read-only Txn)", st.gets, groupDigits(metaRawKeys))
			}
			rows = append(rows, row{name, raw.all[st]})
			rows1 = append(rows1, row{st.String() + ", node 1's member only (as node 1's meta)", raw.node1[st]})
		}
		for _, r := range append(rows, rows1...) {
			fmt.Printf("| %s | %d | %s | %s | %s | %s | %s |\n", r.name, n, groupDigits(r.e.r.opsPerS), fmtLatency(r.e.r.p50), fmtLatency(r.e.r.p99), r.e.rpcs(), r.e.cpu())
		}
	}

	fmt.Printf("\nWhat the raw rates allow: each fff operation's etcd round trips, in sequence, take 1/rate each at the same concurrency, so the KV allows 1 / Σ(round trips / raw rate) of them per second (counts from server/meta and server/kv/etcdkv, as admin):\n\n")
	fmt.Printf("- stat of %s-like paths = %s (root inode with the first entry, each directory's inode with its next entry, the file's inode; %d components; a View, no commit)\n", paths[0], statKV, metaComponents(paths[0]))
	fmt.Printf("- create = %s (parent inode, entry and inode-count shard together; one commit: 4 compares, 3 Puts), and allocIno's Get + Txn once per 1,024 creates (left out)\n\n", metaCreateKV)
	fmt.Println("| operation | clients | etcd round trips | raw limit (ops/s), Gets over the 3 members | fff on etcd ops/s | fff / limit | target | raw limit, Gets through node 1's member only | fff / that |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	var summary []string
	for _, op := range []string{"stat", "create"} {
		for _, n := range clients {
			k, e := statKV, sides[n].stat
			if op == "create" {
				k, e = metaCreateKV, sides[n].create
			}
			lim, arith := k.limit(sides[n].raw, false)
			ratio := e.r.opsPerS / lim
			lim1, arith1 := k.limit(sides[n].raw, true)
			fmt.Printf("| %s | %d | %s | %s | %s | %s | ≥ %.2f %s | %s | %s |\n", op, n, k, arith, groupDigits(e.r.opsPerS), fmtRatio(ratio, metaEtcdTarget), metaEtcdTarget, verdict(ratio >= metaEtcdTarget),
				arith1, fmtRatio(e.r.opsPerS/lim1, metaEtcdTarget))
			if n == metaCfg.clients {
				summary = append(summary, fmt.Sprintf("%s = %s → raw limit allows %s %ss/s; fff reached %s = %s of it %s", op, k, groupDigits(lim), op, groupDigits(e.r.opsPerS), fmtRatio(ratio, metaEtcdTarget), verdict(ratio >= metaEtcdTarget)))
			}
		}
	}
	fmt.Printf("\nWith %d clients: %s (target ≥ %.2f).\n", metaCfg.clients, strings.Join(summary, "; "), metaEtcdTarget)
	return nil
}

// startMetaEtcdCluster runs `fff up --daemon --nodes 3` for rc and connects
// a raw etcd client to its members.
func startMetaEtcdCluster(ctx context.Context, fffBin string, rc *replCluster) (*metaEtcdCluster, error) {
	// Its own config directory: the cluster file `fff up` writes goes
	// there, not over the user's.
	home := filepath.Join(rc.root, "config")
	env, err := isolatedEnv(home)
	if err != nil {
		return nil, err
	}
	rc.env = env
	if _, err := rc.fff(ctx, fffBin, 3*time.Minute, "up", "--daemon", "--nodes", strconv.Itoa(metaEtcdNodes), "--data", rc.data); err != nil {
		return nil, err
	}
	c := &metaEtcdCluster{rc: rc}
	pids := replPIDs(rc.data)
	if c.addr, c.token, err = rc.credentials(); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	for node := 1; node <= metaEtcdNodes; node++ {
		path := filepath.Join(rc.data, "local.toml")
		if node > 1 {
			path = filepath.Join(rc.data, "nodes", strconv.Itoa(node), "fffd.toml")
		}
		var conf struct {
			Etcd struct {
				Name      string `toml:"name"`
				ClientURL string `toml:"client_url"`
			} `toml:"etcd"`
		}
		b, err := os.ReadFile(path)
		if err == nil {
			err = toml.Unmarshal(b, &conf)
		}
		if err == nil && conf.Etcd.ClientURL == "" {
			err = errors.New("no [etcd] client_url")
		}
		if err != nil {
			return nil, fmt.Errorf("meta: %s: %w", path, err)
		}
		c.members = append(c.members, metaMember{node: node, name: conf.Etcd.Name, url: conf.Etcd.ClientURL})
		c.pids = append(c.pids, pids[filepath.Dir(path)])
		c.endpoints = append(c.endpoints, conf.Etcd.ClientURL)
	}
	c.pids = append(c.pids, os.Getpid())
	if c.cli, err = clientv3.New(clientv3.Config{Endpoints: c.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		return nil, fmt.Errorf("meta: etcd client of %v: %w", c.endpoints, err)
	}
	if c.cli1, err = clientv3.New(clientv3.Config{Endpoints: c.endpoints[:1], DialTimeout: 5 * time.Second, Logger: zap.NewNop()}); err != nil {
		c.cli.Close()
		return nil, fmt.Errorf("meta: etcd client of %s: %w", c.endpoints[0], err)
	}
	return c, nil
}

// metaEtcdReady waits until the cluster creates files (its chain table is
// known to node 1's meta once its targets are registered).
func metaEtcdReady(ctx context.Context, o metaOps) error {
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		err := o.create(ctx, proto.RootIno, fmt.Sprintf("ready-%d", i))
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("meta: the etcd cluster does not create files after 2 minutes: %w", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// measure is measure (meta.go) counting the etcd RPCs the members handle
// meanwhile; ops nil is a raw etcd loop.
func (c *metaEtcdCluster) measure(ctx context.Context, n int, ops func(w int) metaOps, op func(ctx context.Context, o metaOps, w int, i int64, rng *rand.Rand) error) (metaEtcdResult, error) {
	if ops == nil {
		ops = func(int) metaOps { return nil }
	}
	var done atomic.Int64
	c0, cerr0 := sampleCPU(c.pids)
	r0, t0, err0 := etcdRPCs(ctx, c.endpoints)
	r, err := measure(ctx, n, metaCfg.duration, ops, func(ctx context.Context, o metaOps, w int, i int64, rng *rand.Rand) error {
		err := op(ctx, o, w, i, rng)
		if err == nil {
			done.Add(1)
		}
		return err
	})
	if err != nil {
		return metaEtcdResult{}, err
	}
	r1, t1, err1 := etcdRPCs(ctx, c.endpoints)
	c1, cerr1 := sampleCPU(c.pids)
	nops := float64(done.Load())
	out := metaEtcdResult{r: r, countsUnknown: err0 != nil || err1 != nil || nops == 0, cpuUnknown: cerr0 != nil || cerr1 != nil || nops == 0}
	if !out.countsUnknown {
		out.ranges, out.txns = (r1-r0)/nops, (t1-t0)/nops
	}
	if !out.cpuUnknown {
		us := func(i int) float64 { return (c1.procs[i] - c0.procs[i]) * 1e6 / nops }
		out.cpuNode1, out.cpuBench = us(0), us(len(c.pids)-1)
		for i := 1; i < len(c.pids)-1; i++ {
			out.cpuOthers += us(i)
		}
		if c1.total > c0.total {
			out.busy = (c1.busy - c0.busy) / (c1.total - c0.total)
		}
	}
	return out, nil
}

// metaComponents counts the components of an absolute path without "."
// or "..".
func metaComponents(path string) int {
	return len(strings.FieldsFunc(path, func(r rune) bool { return r == '/' }))
}

func metaRawGetKey(k int) string { return fmt.Sprintf("%sget/%04d", metaRawPrefix, k) }

// rawRead reads random raw keys as read step st does: one Get, or a
// read-only Txn of st.gets Gets.
func (c *metaEtcdCluster) rawRead(ctx context.Context, cli *clientv3.Client, rng *rand.Rand, st metaStep) error {
	var opts []clientv3.OpOption
	if !st.lin {
		opts = append(opts, clientv3.WithSerializable())
	}
	if st.gets == 1 {
		resp, err := cli.Get(ctx, metaRawGetKey(rng.IntN(metaRawKeys)), opts...)
		if err == nil && len(resp.Kvs) != 1 {
			err = errors.New("raw key missing")
		}
		return err
	}
	ops := make([]clientv3.Op, st.gets)
	for i := range ops {
		ops[i] = clientv3.OpGet(metaRawGetKey(rng.IntN(metaRawKeys)), opts...)
	}
	resp, err := cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	for _, r := range resp.Responses {
		if len(r.GetResponseRange().Kvs) != 1 {
			return errors.New("raw key missing")
		}
	}
	return nil
}

// rawTxn writes key, new, guarded by its absence: one compare, one Put.
func (c *metaEtcdCluster) rawTxn(ctx context.Context, key, val string) error {
	resp, err := c.cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(key), "=", 0)).Then(clientv3.OpPut(key, val)).Commit()
	if err == nil && !resp.Succeeded {
		err = fmt.Errorf("raw Txn on %s: key exists", key)
	}
	return err
}

// leader names the etcd leader and its node.
func (c *metaEtcdCluster) leader(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := c.cli.Status(ctx, c.endpoints[0])
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	ml, err := c.cli.MemberList(ctx)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, m := range ml.Members {
		if m.ID == st.Leader {
			for _, mm := range c.members {
				if mm.name == m.Name {
					return fmt.Sprintf("%s, node %d", m.Name, mm.node)
				}
			}
			return m.Name
		}
	}
	return fmt.Sprintf("member %x", st.Leader)
}

// etcdRPCs returns the Range and Txn calls the members at urls have
// handled (grpc_server_handled_total of etcdserverpb.KV, every code, from
// each member's /metrics on its client URL).
func etcdRPCs(ctx context.Context, urls []string) (ranges, txns float64, err error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, u := range urls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(u, "/")+"/metrics", nil)
		if err != nil {
			return 0, 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, 0, err
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l := sc.Text()
			if !strings.HasPrefix(l, "grpc_server_handled_total{") || !strings.Contains(l, `grpc_service="etcdserverpb.KV"`) {
				continue
			}
			v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err != nil {
				continue
			}
			switch {
			case strings.Contains(l, `grpc_method="Range"`):
				ranges += v
			case strings.Contains(l, `grpc_method="Txn"`):
				txns += v
			}
		}
		err = sc.Err()
		resp.Body.Close()
		if err != nil {
			return 0, 0, err
		}
	}
	return ranges, txns, nil
}

// cpuSample is the CPU time (seconds) of some processes, and the machine's
// busy and total time (clock ticks, /proc/stat).
type cpuSample struct {
	procs       []float64
	busy, total float64
}

// clockTicks is USER_HZ, 100 on every Linux architecture fff runs on.
const clockTicks = 100

// sampleCPU reads the user + system time of pids and of the machine.
func sampleCPU(pids []int) (cpuSample, error) {
	var s cpuSample
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return s, err
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 13 {
			return s, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
		}
		u, err1 := strconv.ParseFloat(f[11], 64)
		st, err2 := strconv.ParseFloat(f[12], 64)
		if err := errors.Join(err1, err2); err != nil {
			return s, err
		}
		s.procs = append(s.procs, (u+st)/clockTicks)
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s, errors.New("/proc/stat: unexpected format")
	}
	for k, v := range f[1:] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return s, err
		}
		if k >= 8 { // guest time is counted in user time already
			break
		}
		s.total += x
		if k != 3 && k != 4 { // idle, iowait
			s.busy += x
		}
	}
	return s, nil
}
