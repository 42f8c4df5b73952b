package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"fff/ffrecord"
	"fff/internal/proto"
	"fff/libfff"
)

// The chaos test of replication (docs/replication.md): real processes — a
// control node (mgmtd, meta and two targets) and four storage nodes, chains
// of three — under writers, ReadBatch readers and (when Python with torch is
// there) an fff.torch DataLoader, while a bounded chaos loop kill -9s and
// restarts random storage nodes and SIGSTOPs one for twice the heartbeat
// timeout. What it checks:
//
//   - no acknowledged write is lost or changed: after the chaos every file
//     holds, block by block, the last acknowledged write (its SHA-256 is
//     the one the writers' history predicts);
//   - no read returns wrong bytes, and none fails after the client's
//     retries (nor does a write);
//   - history: no read returns a version older than a write acknowledged
//     before the read began, nor one not yet written when it ended;
//   - every chain is back to full replication (all its targets serving)
//     within a bound after the chaos stops, and then all replicas of every
//     chunk are identical.
//
// Cutting a node off the network (network namespaces) is not part of it
// yet. `make test` runs the reduced form (8 rounds, one SIGSTOP, about a
// minute); FFF_CHAOS_LONG=1 (`make chaos`) runs the long form (140 rounds,
// a SIGSTOP every 10, about ten minutes). FFF_CHAOS_SEED=N replays another
// seed; FFF_CHAOS_NOSTOP=1 leaves out the SIGSTOPs; FFF_CHAOS_NOLOADER=1
// the DataLoader; FFF_CHAOS_KEEP=1 keeps the cluster's data directory (node
// logs, DATA/clients.log with the clients' logs). Timings never decide the
// outcome: the chaos is a fixed sequence of decisions drawn from the seed,
// and every time limit below is a bound for failure only.

// Data design. Files live in /chaos with 64 KiB chunks and are made of
// 16 KiB blocks (a block never straddles a chunk, so a write of a block is
// one chunk update, atomic on every replica). Every write of a file has a
// generation g (its index in the file's history; generation 0 is the
// create, covering every block) and covers a run of blocks; the bytes of
// block b written by generation g are a pure function of (file, b, g), so
// a read of any range says which generation of each block it saw.
const (
	chaosChunk = 64 << 10
	chaosBlock = 16 << 10
)

// chaosParams sizes one run.
type chaosParams struct {
	rounds    int           // chaos rounds (each one kill -9 and restart, or one SIGSTOP)
	stopEvery int           // every stopEvery-th round (from the 3rd) is a SIGSTOP; 0: none
	maxFiles  int           // files per writer
	writers   int           // writer goroutines
	readers   int           // reader goroutines per client (two clients)
	recover   time.Duration // bound for full replication after the chaos
}

// stopsIn reports whether round i is a SIGSTOP.
func (p chaosParams) stopsIn(i int) bool { return p.stopEvery > 0 && i%p.stopEvery == 2 }

func chaosConfig(t *testing.T) (chaosParams, uint64) {
	p := chaosParams{rounds: 8, stopEvery: 1000, maxFiles: 12, writers: 3, readers: 2, recover: 90 * time.Second}
	if os.Getenv("FFF_CHAOS_LONG") == "1" {
		p = chaosParams{rounds: 140, stopEvery: 10, maxFiles: 40, writers: 4, readers: 3, recover: 3 * time.Minute}
	}
	if os.Getenv("FFF_CHAOS_NOSTOP") == "1" {
		p.stopEvery = 0
	}
	seed := uint64(1)
	if s := os.Getenv("FFF_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FFF_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	return p, seed
}

// chaosBytes fills dst with bytes [off, off+len(dst)) of block blk of file
// fid as generation gen writes it.
func chaosBytes(dst []byte, fid, blk, gen, off int) {
	key := splitmix(uint64(fid)<<42 ^ uint64(blk)<<24 ^ uint64(gen))
	for i := 0; i < len(dst); {
		w := (off + i) / 8
		var word [8]byte
		binary.LittleEndian.PutUint64(word[:], splitmix(key+uint64(w)))
		i += copy(dst[i:], word[(off+i)%8:])
	}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// chaosWrite is one write of a file's history.
type chaosWrite struct {
	first, end int       // blocks [first, end)
	start      time.Time // taken before the write was issued
	ack        time.Time // taken when it was acknowledged (Sync returned); zero: not (yet)
	failed     bool
}

type chaosFile struct {
	id      int
	name    string
	nblocks int
	writes  []chaosWrite // by generation; guarded by chaosHistory.mu
}

func (f *chaosFile) size() int { return f.nblocks * chaosBlock }

// chaosHistory is every file whose create was acknowledged, with its writes.
type chaosHistory struct {
	mu    sync.Mutex
	files []*chaosFile
}

// checkRead checks bytes got read at off of f by a read that began at
// start and ended at end: each block's bytes must be exactly those of a
// generation that had started before end and that no write acknowledged
// before start had superseded. It returns "" or what is wrong. Call with
// h.mu held.
func (f *chaosFile) checkRead(got []byte, off int, start, end time.Time) string {
	var want []byte
	for pos := 0; pos < len(got); {
		blk, in := (off+pos)/chaosBlock, (off+pos)%chaosBlock
		n := min(chaosBlock-in, len(got)-pos)
		piece := got[pos : pos+n]
		want = slices.Grow(want[:0], n)[:n]
		// lo: the newest generation of this block acknowledged before
		// the read began (the create was, before the file was published).
		lo := 0
		for g, w := range f.writes {
			if w.first <= blk && blk < w.end && !w.ack.IsZero() && w.ack.Before(start) {
				lo = g
			}
		}
		ok := false
		for g := lo; g < len(f.writes) && !ok; g++ {
			w := f.writes[g]
			if w.first <= blk && blk < w.end && w.start.Before(end) {
				chaosBytes(want, f.id, blk, g, in)
				ok = bytes.Equal(piece, want)
			}
		}
		if !ok {
			return fmt.Sprintf("block %d [%d, %d): %s; allowed generations >= %d (acknowledged before the read began), of %d", blk, in, in+n, f.whichGen(piece, blk, in), lo, len(f.writes))
		}
		pos += n
	}
	return ""
}

// whichGen describes which write of block blk bytes piece (at in) are.
func (f *chaosFile) whichGen(piece []byte, blk, in int) string {
	want := make([]byte, len(piece))
	var gens []string
	for g, w := range f.writes {
		if w.first <= blk && blk < w.end {
			chaosBytes(want, f.id, blk, g, in)
			if bytes.Equal(piece, want) {
				gens = append(gens, fmt.Sprintf("%d (started %s, acknowledged %s)", g, fmtT(w.start), fmtT(w.ack)))
			}
		}
	}
	switch {
	case len(gens) > 0:
		return "got generation " + strings.Join(gens, " or ")
	case len(bytes.TrimLeft(piece, "\x00")) == 0:
		return "got zeros"
	}
	return fmt.Sprintf("got bytes of no write (%x…)", piece[:min(16, len(piece))])
}

// chaosT0 is the test's start, for timestamps in messages.
var chaosT0 time.Time

func fmtT(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return fmt.Sprintf("%.3fs", t.Sub(chaosT0).Seconds())
}

// chaosFailures collects what went wrong, per kind.
type chaosFailures struct {
	mu      sync.Mutex
	count   map[string]int
	samples map[string][]string
}

func (c *chaosFailures) add(kind, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.count == nil {
		c.count, c.samples = map[string]int{}, map[string][]string{}
	}
	c.count[kind]++
	if len(c.samples[kind]) < 10 {
		c.samples[kind] = append(c.samples[kind], fmt.Sprintf("[%s] ", fmtT(time.Now()))+fmt.Sprintf(format, args...))
	}
}

func (c *chaosFailures) report(t *testing.T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kinds := make([]string, 0, len(c.count))
	for k := range c.count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Errorf("%s: %d, the first:\n  %s", k, c.count[k], strings.Join(c.samples[k], "\n  "))
	}
}

// chaosStats counts what the workers did.
type chaosStats struct {
	creates, writes, writeFails atomic.Int64
	batches, reads, readBytes   atomic.Int64
	readFails, wrongReads       atomic.Int64
	maxWrite, maxRead           atomic.Int64 // ns
	slowReads                   atomic.Int64 // batches of more than a second
	loaderSamples, loaderEpochs atomic.Int64
	loaderFails, maxEpoch       atomic.Int64
}

func maxInto(a *atomic.Int64, d time.Duration) {
	for {
		old := a.Load()
		if int64(d) <= old || a.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

func (s *chaosStats) String() string {
	return fmt.Sprintf("creates %d, writes %d (failed %d, slowest %v); read batches %d, reads %d (%d MiB, failed %d, wrong %d, slowest batch %v, %d over 1s); DataLoader epochs %d",
		s.creates.Load(), s.writes.Load(), s.writeFails.Load(), time.Duration(s.maxWrite.Load()).Round(time.Millisecond),
		s.batches.Load(), s.reads.Load(), s.readBytes.Load()>>20, s.readFails.Load(), s.wrongReads.Load(), time.Duration(s.maxRead.Load()).Round(time.Millisecond), s.slowReads.Load(), s.loaderEpochs.Load())
}

func TestChaos(t *testing.T) {
	chaosT0 = time.Now()
	p, seed := chaosConfig(t)
	var stops []int
	for i := range p.rounds {
		if p.stopsIn(i) {
			stops = append(stops, i)
		}
	}
	t.Logf("chaos: seed %d (FFF_CHAOS_SEED), %d rounds, SIGSTOP in rounds %v", seed, p.rounds, stops)

	prep := prepareChaosLoader(t)
	config, data := t.TempDir(), t.TempDir()
	if os.Getenv("FFF_CHAOS_KEEP") == "1" { // for a look at the logs afterwards
		d, err := os.MkdirTemp("", "fff-chaos-")
		if err != nil {
			t.Fatal(err)
		}
		data = d
		t.Logf("chaos: data directory %s (FFF_CHAOS_KEEP=1: left there)", data)
	}
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	// Registered first, so it runs last: after the workers stopped.
	t.Cleanup(func() {
		if t.Failed() {
			chaosLogTails(t, data)
		}
		killCluster(data)
	})
	const heartbeat = 2 * time.Second
	upReplicated(t, env, data, 4, heartbeat)
	chained := waitServing(t, env)
	chains := map[uint32][]targetRow{}
	for _, tg := range chained {
		chains[tg.ChainID] = append(chains[tg.ChainID], tg)
	}
	if len(chains) != 2 || len(chained) != 6 {
		t.Fatalf("targets in chains: %+v, want two chains of 3", chained)
	}
	storageNodes := []int{2, 3, 4, 5}

	var info libfff.ClusterInfo
	if b, err := os.ReadFile(filepath.Join(config, "fff", "cluster.json")); err != nil || json.Unmarshal(b, &info) != nil {
		t.Fatalf("cluster file: %v", err)
	}
	// The clients' logs (their waits for failovers, …) go to DATA/clients.log.
	clog, err := os.OpenFile(filepath.Join(data, "clients.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { clog.Close() })
	connect := func(name string, noLocal bool) *libfff.Client {
		logger := zerolog.New(zerolog.SyncWriter(clog)).With().Timestamp().Str("client", name).Logger().Level(zerolog.InfoLevel)
		c, err := libfff.Connect(ctxFor(t), libfff.Options{Address: info.Address, Token: info.Token, NoLocalRead: noLocal, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Writers; readers with local reads (the default on this host) and
	// readers through the nodes' sockets.
	wc, rcLocal, rcSock := connect("writer", false), connect("reader-local", false), connect("reader-socket", true)
	ctx, cancel := context.WithCancel(context.Background())
	if err := wc.MkdirAll(ctx, "/chaos", 0o777); err != nil {
		t.Fatal(err)
	}
	if err := wc.SetDirLayout(ctx, "/chaos", proto.DirLayout{ChunkSize: chaosChunk}); err != nil {
		t.Fatal(err)
	}

	var (
		hist  chaosHistory
		fails chaosFailures
		stats chaosStats
		stop  atomic.Bool
		wg    sync.WaitGroup
	)
	stopWorkers := sync.OnceFunc(func() {
		stop.Store(true)
		wg.Wait()
	})
	t.Cleanup(func() {
		// On a failure of the test goroutine: end blocked calls too.
		cancel()
		for _, c := range []*libfff.Client{wc, rcLocal, rcSock} {
			c.Close()
		}
		stopWorkers()
	})
	var nextID atomic.Int64
	for w := range p.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chaosWriter(ctx, wc, w, seed, p.maxFiles, &hist, &nextID, &stop, &fails, &stats)
		}()
	}
	// Per client: p.readers closed-loop readers and one open-loop one.
	for r := range 2 * (p.readers + 1) {
		c := rcLocal
		if r%2 == 1 {
			c = rcSock
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			chaosReader(ctx, c, r, seed, r >= 2*p.readers, &hist, &stop, &fails, &stats)
		}()
	}
	loader := prep.start(t, ctx, wc, info, &fails, &stats)

	time.Sleep(2 * time.Second) // let the files and the reads get going
	t.Logf("[%s] chaos starts: %s", fmtT(time.Now()), &stats)
	chaosLoop(t, env, data, storageNodes, p, seed, heartbeat, &stats)
	t.Logf("[%s] chaos over: %s", fmtT(time.Now()), &stats)

	// Full replication again, within a bound; the workers go on meanwhile
	// (the last resyncs run under writes).
	chaosEnd := time.Now()
	for {
		all, states := true, []string{}
		for _, tg := range targetsOf(t, env) {
			if tg.ChainID != 0 {
				all = all && tg.State == "serving"
				states = append(states, fmt.Sprintf("%d:%s", tg.ID, tg.State))
			}
		}
		if all {
			t.Logf("[%s] every chain fully replicated %v after the chaos", fmtT(time.Now()), time.Since(chaosEnd).Round(time.Millisecond))
			break
		}
		if time.Since(chaosEnd) > p.recover {
			fails.add("chains not back to full replication", "%v after the chaos: %s", p.recover, strings.Join(states, " "))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if loader != nil {
		loader.finish(t)
	}
	stopWorkers()
	t.Logf("[%s] workers stopped: %s", fmtT(time.Now()), &stats)
	if loader != nil {
		t.Logf("DataLoader: %d epochs, %d samples checked, slowest epoch %v", stats.loaderEpochs.Load(), stats.loaderSamples.Load(), time.Duration(stats.maxEpoch.Load()).Round(time.Millisecond))
		if stats.loaderEpochs.Load() == 0 {
			fails.add("DataLoader", "no epoch completed")
		}
	}

	// Every acknowledged write is there: the final content of every file,
	// through both clients.
	hist.mu.Lock()
	files := slices.Clone(hist.files)
	hist.mu.Unlock()
	vctx, vcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer vcancel()
	for _, c := range []*libfff.Client{rcLocal, rcSock} {
		exact := chaosVerifyFinal(vctx, c, files, &fails)
		t.Logf("final content (%s): %d files checked, %d of them (every write acknowledged) by SHA-256", map[bool]string{true: "local reads", false: "socket reads"}[c == rcLocal], len(files), exact)
	}

	// The cluster's own check: every replica of every chunk read against
	// its checksums and compared with its chain's head. Nothing may need
	// repair (--dry-run: a repair would hide a divergence).
	if r := fff(t, env, "admin", "scrub", "--dry-run"); r.code != 0 || !strings.Contains(r.stdout, "0 damaged, 0 diverging") {
		fails.add("scrub", "fff admin scrub --dry-run: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// All replicas of every chunk identical (the targets' data files).
	for _, tgs := range chains {
		base := replicaChunks(t, tgs[0].Path)
		for _, tg := range tgs[1:] {
			other := replicaChunks(t, tg.Path)
			for name, b := range base {
				if o, ok := other[name]; !ok {
					fails.add("replicas differ", "chain %d: chunk %s on target %d, not on target %d", tg.ChainID, name, tgs[0].ID, tg.ID)
				} else if !bytes.Equal(o, b) {
					fails.add("replicas differ", "chain %d: chunk %s differs between targets %d and %d", tg.ChainID, name, tgs[0].ID, tg.ID)
				}
			}
			for name := range other {
				if _, ok := base[name]; !ok {
					fails.add("replicas differ", "chain %d: chunk %s on target %d, not on target %d", tg.ChainID, name, tg.ID, tgs[0].ID)
				}
			}
		}
		t.Logf("chain %d: %d chunks on each of targets %v", tgs[0].ChainID, len(base), chaosIDs(tgs))
	}
	fails.report(t)
	if r := fff(t, env, "down", "--data", data); r.code != 0 {
		t.Errorf("fff down after the chaos: exit %d: %s", r.code, r.stderr)
	}
	t.Logf("[%s] done", fmtT(time.Now()))
}

func chaosIDs(tgs []targetRow) []uint32 {
	var ids []uint32
	for _, tg := range tgs {
		ids = append(ids, tg.ID)
	}
	return ids
}

// chaosLoop runs the rounds: in each, a storage node drawn from the seed is
// killed (-9) and, after a downtime drawn from the seed (some shorter than
// the heartbeat timeout, some longer), restarted with `fff up`; or, every
// stopEvery-th round, stopped (SIGSTOP) for twice the heartbeat timeout and
// continued. At most one node is down or stopped at a time.
func chaosLoop(t *testing.T, env []string, data string, nodes []int, p chaosParams, seed uint64, heartbeat time.Duration, stats *chaosStats) {
	rng := rand.New(rand.NewPCG(seed, 0xc4a05))
	for i := range p.rounds {
		node := nodes[rng.IntN(len(nodes))]
		down := time.Duration(300+rng.IntN(4000)) * time.Millisecond
		pause := time.Duration(500+rng.IntN(3000)) * time.Millisecond
		pid := chaosPID(t, data, node)
		if p.stopsIn(i) {
			t.Logf("[%s] round %d: SIGSTOP node %d (pid %d) for %v", fmtT(time.Now()), i, node, pid, 2*heartbeat)
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * heartbeat)
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			t.Logf("[%s] round %d: SIGCONT node %d", fmtT(time.Now()), i, node)
		} else {
			t.Logf("[%s] round %d: kill -9 node %d (pid %d), down %v", fmtT(time.Now()), i, node, pid, down)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); !zombie(pid); {
				if time.Now().After(deadline) {
					t.Fatalf("node %d (pid %d) still there 10s after SIGKILL", node, pid)
				}
				time.Sleep(10 * time.Millisecond)
			}
			time.Sleep(down)
			mustFFF(t, env, "up", "--daemon", "--data", data)
			t.Logf("[%s] round %d: node %d restarted (pid %d)", fmtT(time.Now()), i, node, chaosPID(t, data, node))
		}
		if i < p.rounds-1 { // after the last: how long full replication takes
			time.Sleep(pause)
		}
		t.Logf("[%s] after round %d: %s", fmtT(time.Now()), i, stats)
	}
}

func chaosPID(t *testing.T, data string, node int) int {
	t.Helper()
	var ri struct{ PID int }
	b, err := os.ReadFile(filepath.Join(data, "nodes", strconv.Itoa(node), "fffd.json"))
	if err != nil || json.Unmarshal(b, &ri) != nil || ri.PID <= 0 {
		t.Fatalf("storage node %d: fffd.json %s %v", node, b, err)
	}
	return ri.PID
}

// chaosWriter creates files (up to maxFiles) and overwrites runs of blocks
// of them, one write at a time, each acknowledged by Sync.
func chaosWriter(ctx context.Context, c *libfff.Client, w int, seed uint64, maxFiles int, h *chaosHistory, nextID *atomic.Int64, stop *atomic.Bool, fails *chaosFailures, stats *chaosStats) {
	rng := rand.New(rand.NewPCG(seed, uint64(100+w)))
	type mine struct {
		f *chaosFile
		h *libfff.File
	}
	var files []*mine
	defer func() {
		for _, m := range files {
			if m.h != nil {
				m.h.Close()
			}
		}
	}()
	var buf []byte
	for !stop.Load() {
		if len(files) == 0 || (len(files) < maxFiles && rng.IntN(10) == 0) {
			id := int(nextID.Add(1))
			f := &chaosFile{id: id, name: fmt.Sprintf("/chaos/w%d-%d", w, id), nblocks: 4 + rng.IntN(37)}
			f.writes = []chaosWrite{{first: 0, end: f.nblocks, start: time.Now()}}
			buf = slices.Grow(buf[:0], f.size())[:f.size()]
			for b := range f.nblocks {
				chaosBytes(buf[b*chaosBlock:(b+1)*chaosBlock], f.id, b, 0, 0)
			}
			start := time.Now()
			fh, err := c.Create(ctx, f.name)
			if err == nil {
				if _, err = fh.Write(buf); err == nil {
					err = fh.Sync()
				}
				if err != nil {
					fh.Close()
				}
			}
			if stop.Load() {
				if err == nil {
					fh.Close()
				}
				return
			}
			maxInto(&stats.maxWrite, time.Since(start))
			if err != nil {
				stats.writeFails.Add(1)
				fails.add("writes failed", "create %s (%d bytes): %v", f.name, f.size(), err)
				continue
			}
			h.mu.Lock()
			f.writes[0].ack = time.Now()
			h.files = append(h.files, f)
			h.mu.Unlock()
			stats.creates.Add(1)
			files = append(files, &mine{f: f, h: fh})
			continue
		}
		m := files[rng.IntN(len(files))]
		f := m.f
		first := rng.IntN(f.nblocks)
		end := first + 1 + rng.IntN(min(4, f.nblocks-first))
		if m.h == nil {
			fh, err := c.Open(ctx, f.name, os.O_RDWR, 0)
			if err != nil {
				if !stop.Load() {
					stats.writeFails.Add(1)
					fails.add("writes failed", "open %s for writing: %v", f.name, err)
					time.Sleep(100 * time.Millisecond)
				}
				continue
			}
			m.h = fh
		}
		h.mu.Lock()
		g := len(f.writes)
		f.writes = append(f.writes, chaosWrite{first: first, end: end, start: time.Now()})
		start := f.writes[g].start
		h.mu.Unlock()
		n := (end - first) * chaosBlock
		buf = slices.Grow(buf[:0], n)[:n]
		for b := first; b < end; b++ {
			chaosBytes(buf[(b-first)*chaosBlock:(b-first+1)*chaosBlock], f.id, b, g, 0)
		}
		_, err := m.h.WriteAt(buf, int64(first*chaosBlock))
		if err == nil {
			err = m.h.Sync()
		}
		h.mu.Lock()
		if err == nil {
			f.writes[g].ack = time.Now()
		} else {
			f.writes[g].failed = true
		}
		h.mu.Unlock()
		if stop.Load() && err != nil {
			return
		}
		maxInto(&stats.maxWrite, time.Since(start))
		if err != nil {
			stats.writeFails.Add(1)
			fails.add("writes failed", "%s generation %d, blocks [%d, %d), started %s: %v", f.name, g, first, end, fmtT(start), err)
			m.h.Close() // the File is broken now: open it again
			m.h = nil
			continue
		}
		stats.writes.Add(1)
	}
}

// chaosReader reads random ranges of published files with ReadBatch and
// checks every read against the history. A closed-loop reader issues one
// batch after the other. An open-loop one starts a small batch every few
// milliseconds whatever the earlier ones do (up to a bound in flight): when
// a node hangs (SIGSTOP), reads that begin after writes were acknowledged
// without it still reach it, until the client's routing moves on, and what
// it answers them when it wakes is checked.
func chaosReader(ctx context.Context, c *libfff.Client, r int, seed uint64, openLoop bool, h *chaosHistory, stop *atomic.Bool, fails *chaosFailures, stats *chaosStats) {
	rng := rand.New(rand.NewPCG(seed, uint64(200+r)))
	maxOps, maxLen, inflight := 8, 3*chaosBlock, 1
	if openLoop {
		maxOps, maxLen, inflight = 3, chaosBlock, 400
	}
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	handles := map[*chaosFile]*libfff.File{}
	defer func() {
		wg.Wait()
		for _, fh := range handles {
			fh.Close()
		}
	}()
	type read struct {
		f   *chaosFile
		off int
	}
	for !stop.Load() {
		h.mu.Lock()
		files := h.files
		h.mu.Unlock()
		if len(files) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n := 1 + rng.IntN(maxOps)
		ops := make([]libfff.ReadOp, 0, n)
		reads := make([]read, 0, n)
		for range n {
			f := files[rng.IntN(len(files))]
			fh := handles[f]
			if fh == nil {
				var err error
				if fh, err = c.OpenFile(ctx, f.name); err != nil {
					if !stop.Load() {
						stats.readFails.Add(1)
						fails.add("reads failed", "open %s: %v", f.name, err)
					}
					continue
				}
				handles[f] = fh
			}
			off := rng.IntN(f.size())
			ln := 1 + rng.IntN(min(maxLen, f.size()-off))
			ops = append(ops, libfff.ReadOp{File: fh, Off: int64(off), Dst: make([]byte, ln)})
			reads = append(reads, read{f, off})
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			start := time.Now()
			err := c.ReadBatch(ctx, ops)
			end := time.Now()
			if stop.Load() && (err != nil || ctx.Err() != nil) {
				return
			}
			maxInto(&stats.maxRead, end.Sub(start))
			stats.batches.Add(1)
			if end.Sub(start) > time.Second {
				stats.slowReads.Add(1)
			}
			if err != nil {
				stats.readFails.Add(1)
				fails.add("reads failed", "ReadBatch of %d reads, started %s: %v", len(ops), fmtT(start), err)
				return
			}
			for k, op := range ops {
				rd := reads[k]
				stats.reads.Add(1)
				if op.Err != nil || op.N != len(op.Dst) {
					stats.readFails.Add(1)
					fails.add("reads failed", "%s [%d, +%d) (reader %d, batch started %s, ended %s): %d bytes, %v", rd.f.name, rd.off, len(op.Dst), r, fmtT(start), fmtT(end), op.N, op.Err)
					continue
				}
				stats.readBytes.Add(int64(op.N))
				h.mu.Lock()
				bad := rd.f.checkRead(op.Dst, rd.off, start, end)
				h.mu.Unlock()
				if bad != "" {
					stats.wrongReads.Add(1)
					fails.add("reads returned wrong bytes", "%s [%d, +%d) (reader %d, batch started %s, ended %s): %s", rd.f.name, rd.off, len(op.Dst), r, fmtT(start), fmtT(end), bad)
				}
			}
		}()
		if openLoop {
			time.Sleep(3 * time.Millisecond)
		}
	}
}

// chaosVerifyFinal reads every file whole through c and checks each block
// against the last acknowledged write (or a later failed one, which may
// have landed); a file whose every write was acknowledged must have the
// SHA-256 of its expected content. It returns the number of those.
func chaosVerifyFinal(ctx context.Context, c *libfff.Client, files []*chaosFile, fails *chaosFailures) int {
	exact := 0
	for _, f := range files {
		fh, err := c.OpenFile(ctx, f.name)
		if err != nil {
			fails.add("acknowledged writes lost or changed", "open %s: %v", f.name, err)
			continue
		}
		got := make([]byte, f.size())
		n, err := fh.ReadAt(got, 0)
		fh.Close()
		if err != nil || n != len(got) {
			fails.add("acknowledged writes lost or changed", "read %s: %d of %d bytes, %v", f.name, n, len(got), err)
			continue
		}
		clean := !slices.ContainsFunc(f.writes, func(w chaosWrite) bool { return w.failed })
		if clean {
			want := make([]byte, f.size())
			for b := range f.nblocks {
				g := 0
				for i, w := range f.writes {
					if w.first <= b && b < w.end {
						g = i
					}
				}
				chaosBytes(want[b*chaosBlock:(b+1)*chaosBlock], f.id, b, g, 0)
			}
			if sha256.Sum256(got) == sha256.Sum256(want) {
				exact++
				continue
			}
		}
		// Block by block: reads that began after every write ended.
		now := time.Now()
		if bad := f.checkRead(got, 0, now, now); bad != "" {
			fails.add("acknowledged writes lost or changed", "%s (%d writes, clean %v): %s", f.name, len(f.writes), clean, bad)
		} else if clean {
			fails.add("acknowledged writes lost or changed", "%s: SHA-256 differs from the expected content, yet every block checks", f.name)
		}
	}
	return exact
}

// chaosLogTails logs the end of every node's log.
func chaosLogTails(t *testing.T, data string) {
	logs, _ := filepath.Glob(filepath.Join(data, "nodes", "*", "fffd.log"))
	for _, l := range append([]string{filepath.Join(data, "fffd.log"), filepath.Join(data, "clients.log")}, logs...) {
		if b, err := os.ReadFile(l); err == nil {
			t.Logf("%s (last lines):\n%s", l, lastLines(b, 30))
		}
	}
}

// The fff.torch DataLoader part: a Python process iterates epochs of an
// FFRecord dataset in the cluster with fff.torch.DataLoader (two
// forkserver workers, shuffled) through the chaos and checks every sample
// (each starts with the SHA-256 of the rest, then its index) and that an
// epoch yields every sample once. It needs a Python with torch and numpy
// (.venv from `make test-python`, or the system's python3-torch); without
// one this part is left out and the test says so. FFF_CHAOS_NOLOADER=1
// leaves it out too.
const (
	chaosLoaderSamples = 1200
	chaosLoaderScript  = `
import hashlib, json, os, sys, time

import numpy as np
from fff.torch import DataLoader, FFRecordDataset


def emit(**kw):
    print(json.dumps(kw), flush=True)


def main():
    path, stop, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ds = FFRecordDataset(path)
    if len(ds) != n:
        emit(error=f"{path}: {len(ds)} samples, want {n}")
        return 1
    loader = DataLoader(ds, batch_size=32, shuffle=True, seed=7, num_workers=2)
    epoch, failed = 0, 0
    try:
        while not os.path.exists(stop) and failed < 3:
            loader.set_epoch(epoch)
            t0 = time.monotonic()
            seen = np.zeros(n, dtype=np.int64)
            try:
                for batch in loader:
                    for s in batch:
                        b = s.numpy().tobytes()
                        idx = int.from_bytes(b[32:40], "little") if len(b) >= 40 else -1
                        if idx < 0 or idx >= n or hashlib.sha256(b[32:]).digest() != b[:32]:
                            emit(error=f"epoch {epoch}: a sample of {len(b)} bytes (index {idx}) fails its SHA-256")
                        else:
                            seen[idx] += 1
            except Exception as e:  # a read that failed after the client's retries
                emit(error=f"epoch {epoch}, at {time.monotonic() - t0:.3f}s: {type(e).__name__}: {e}")
                epoch, failed = epoch + 1, failed + 1
                continue
            failed = 0
            bad = np.nonzero(seen != 1)[0]
            if len(bad):
                emit(error=f"epoch {epoch}: samples {bad[:10].tolist()} seen {seen[bad[:10]].tolist()} times")
            emit(epoch=epoch, samples=int(seen.sum()), seconds=round(time.monotonic() - t0, 3))
            epoch += 1
    finally:
        loader.close()
    emit(done=failed == 0)
    return 0


if __name__ == "__main__":  # the workers (forkserver) import this script
    sys.exit(main())
`
)

// chaosSample returns sample i of the loader's dataset.
func chaosSample(i int) []byte {
	rest := make([]byte, 8+int(splitmix(uint64(i))%(24<<10)))
	binary.LittleEndian.PutUint64(rest, uint64(i))
	chaosBytes(rest[8:], 1<<20+i, 0, 0, 0)
	sum := sha256.Sum256(rest)
	return append(sum[:], rest...)
}

// chaosLoader is the running DataLoader process.
type chaosLoader struct {
	stopFile string
	done     chan struct{} // closed when its output ended and it exited
	err      error         // its exit
	stderr   string
	fails    *chaosFailures
	epochs   atomic.Int64
	finished atomic.Bool // it said done
}

// chaosPython returns a Python that imports torch and numpy, or "".
func chaosPython() string {
	cands := []string{"../.venv/bin/python", "/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		cands = append(cands, p)
	}
	for _, py := range cands {
		if abs, err := filepath.Abs(py); err == nil {
			py = abs
		}
		cmd := exec.Command(py, "-c", "import torch, numpy")
		cmd.Env = cleanEnv()
		if cmd.Run() == nil {
			return py
		}
	}
	return ""
}

// chaosLoaderPrep finds the Python and builds libfff.so, in the background
// while the cluster starts.
type chaosLoaderPrep struct {
	done     chan struct{}
	py, lib  string
	skip     string // why the DataLoader is left out
	buildErr error
}

func prepareChaosLoader(t *testing.T) *chaosLoaderPrep {
	p := &chaosLoaderPrep{done: make(chan struct{})}
	if os.Getenv("FFF_CHAOS_NOLOADER") == "1" {
		p.skip = "FFF_CHAOS_NOLOADER=1"
		close(p.done)
		return p
	}
	dir := t.TempDir()
	go func() {
		defer close(p.done)
		if p.py = chaosPython(); p.py == "" {
			p.skip = "no Python here imports torch and numpy (`make test-python` makes .venv)"
			return
		}
		if p.lib = os.Getenv("FFF_LIBRARY"); p.lib != "" {
			return
		}
		p.lib = filepath.Join(dir, "libfff.so")
		build := exec.Command("go", "build", "-buildmode=c-shared", "-o", p.lib, "./libfff/capi")
		build.Dir = ".."
		build.Env = append(os.Environ(), "GOFLAGS="+goflags(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			p.buildErr = fmt.Errorf("building libfff.so: %v\n%s", err, out)
		}
	}()
	t.Cleanup(func() { <-p.done })
	return p
}

// start writes the dataset and starts the DataLoader process; nil if the
// DataLoader is left out.
func (p *chaosLoaderPrep) start(t *testing.T, ctx context.Context, c *libfff.Client, info libfff.ClusterInfo, fails *chaosFailures, stats *chaosStats) *chaosLoader {
	t.Helper()
	<-p.done
	if p.skip != "" {
		t.Logf("DataLoader: left out: %s", p.skip)
		return nil
	}
	if p.buildErr != nil {
		t.Fatal(p.buildErr)
	}
	py, lib, dir := p.py, p.lib, t.TempDir()
	pybind, err := filepath.Abs("../pybind")
	if err != nil {
		t.Fatal(err)
	}

	const name = "/chaos/dataset.ffr"
	fh, err := c.Create(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	w, err := ffrecord.NewWriter(fh, ffrecord.WriterOptions{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	for i := range chaosLoaderSamples {
		if err := w.Write(chaosSample(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}

	script := filepath.Join(dir, "loader.py")
	if err := os.WriteFile(script, []byte(chaosLoaderScript), 0o600); err != nil {
		t.Fatal(err)
	}
	l := &chaosLoader{stopFile: filepath.Join(dir, "stop"), done: make(chan struct{}), fails: fails}
	cmd := exec.Command(py, script, "fff://"+name, l.stopFile, strconv.Itoa(chaosLoaderSamples))
	cmd.Env = append(cleanEnv(), libfff.EnvCluster+"="+info.Address, libfff.EnvToken+"="+info.Token,
		"FFF_LIBRARY="+lib, "PYTHONPATH="+pybind, "PYTHONUNBUFFERED=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(-pid, syscall.SIGKILL)
		<-l.done
	})
	go func() {
		defer close(l.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev struct {
				Epoch   *int64
				Samples int64
				Seconds float64
				Error   string
				Done    bool
			}
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				fails.add("DataLoader", "unexpected output: %s", sc.Text())
				continue
			}
			switch {
			case ev.Error != "":
				stats.loaderFails.Add(1)
				fails.add("DataLoader", "%s", ev.Error)
			case ev.Done:
				l.finished.Store(true)
			case ev.Epoch != nil:
				stats.loaderEpochs.Add(1)
				stats.loaderSamples.Add(ev.Samples)
				maxInto(&stats.maxEpoch, time.Duration(ev.Seconds*float64(time.Second)))
			}
		}
		l.err = cmd.Wait()
		l.stderr = stderr.String()
	}()
	t.Logf("DataLoader: %s over %s (%d samples), libfff.so %s", py, name, chaosLoaderSamples, lib)
	return l
}

// finish asks the DataLoader to stop after its epoch and waits for it.
func (l *chaosLoader) finish(t *testing.T) {
	if err := os.WriteFile(l.stopFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.done:
	case <-time.After(2 * time.Minute): // a bound for failure only
		l.fails.add("DataLoader", "still running 2m after it was asked to stop")
		return
	}
	if l.err != nil || !l.finished.Load() {
		l.fails.add("DataLoader", "exit %v, done %v; stderr:\n%s", l.err, l.finished.Load(), lastLines([]byte(l.stderr), 30))
	}
}

// TestChaosChecker checks the history checker of TestChaos on made-up
// histories: it must accept exactly the reads the rule allows.
func TestChaosChecker(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	f := &chaosFile{id: 7, name: "/f", nblocks: 4, writes: []chaosWrite{
		{first: 0, end: 4, start: at(0), ack: at(10)},
		{first: 1, end: 3, start: at(20), ack: at(30)},  // gen 1: blocks 1, 2
		{first: 2, end: 3, start: at(40), failed: true}, // gen 2: block 2, never acknowledged
		{first: 2, end: 4, start: at(50), ack: at(60)},  // gen 3: blocks 2, 3
		{first: 0, end: 1, start: at(70)},               // gen 4: block 0, under way
	}}
	// content returns what a read of [off, off+n) returns when block b
	// holds generation gens[b].
	content := func(gens [4]int, off, n int) []byte {
		out := make([]byte, n)
		for pos := 0; pos < n; {
			blk, in := (off+pos)/chaosBlock, (off+pos)%chaosBlock
			k := min(chaosBlock-in, n-pos)
			chaosBytes(out[pos:pos+k], f.id, blk, gens[blk], in)
			pos += k
		}
		return out
	}
	for _, c := range []struct {
		gens       [4]int
		off, n     int
		start, end int // ms
		ok         bool
	}{
		{[4]int{0, 0, 0, 0}, 0, 4 * chaosBlock, 15, 19, true},
		{[4]int{0, 0, 0, 0}, 0, 4 * chaosBlock, 15, 25, true},  // gen 1 under way: the old version is fine
		{[4]int{0, 1, 1, 0}, 0, 4 * chaosBlock, 15, 25, true},  // and so is the new
		{[4]int{0, 1, 0, 0}, 0, 4 * chaosBlock, 15, 25, true},  // blocks are checked one by one
		{[4]int{0, 1, 1, 0}, 0, 4 * chaosBlock, 15, 19, false}, // gen 1 had not started when the read ended
		{[4]int{0, 0, 1, 0}, 0, 4 * chaosBlock, 35, 36, false}, // block 1: gen 0 after gen 1 was acknowledged
		{[4]int{0, 0, 1, 0}, 2*chaosBlock - 5, 3, 35, 36, false},
		{[4]int{0, 1, 0, 0}, chaosBlock + 100, 1000, 35, 36, true},
		{[4]int{0, 1, 2, 0}, 0, 4 * chaosBlock, 45, 46, true},  // the failed write may have landed
		{[4]int{0, 1, 1, 0}, 0, 4 * chaosBlock, 45, 46, true},  // or not
		{[4]int{0, 1, 2, 0}, 0, 4 * chaosBlock, 65, 66, false}, // but gen 3 supersedes it
		{[4]int{0, 1, 3, 3}, 0, 4 * chaosBlock, 65, 66, true},
		{[4]int{4, 1, 3, 3}, 0, 4 * chaosBlock, 65, 80, true},
		{[4]int{4, 1, 3, 3}, 0, 4 * chaosBlock, 65, 66, false},
		{[4]int{0, 1, 3, 1}, 3 * chaosBlock, 10, 65, 66, false}, // block 3 never had gen 1
	} {
		got := content(c.gens, c.off, c.n)
		if bad := f.checkRead(got, c.off, at(c.start), at(c.end)); (bad == "") != c.ok {
			t.Errorf("gens %v [%d, +%d) read %d..%d ms: ok %v, want %v (%s)", c.gens, c.off, c.n, c.start, c.end, bad == "", c.ok, bad)
		}
	}
	zeros := make([]byte, 100)
	if bad := f.checkRead(zeros, 5, at(65), at(66)); !strings.Contains(bad, "zeros") {
		t.Errorf("zeros: %q", bad)
	}
	got := content([4]int{0, 0, 0, 0}, 0, chaosBlock)
	if bad := f.checkRead(got, 0, at(15), at(15)); bad != "" {
		t.Errorf("gen 0 of block 0: %s", bad)
	}
	got[100] ^= 1
	if bad := f.checkRead(got, 0, at(15), at(15)); !strings.Contains(bad, "no write") {
		t.Errorf("a flipped bit: %q", bad)
	}
}
