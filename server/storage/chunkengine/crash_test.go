package chunkengine

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test: a child process (this test binary, TestCrashChild) runs a
// write load on crashChunks chunks; the parent SIGKILLs it at a random
// moment, reopens the engine and checks every chunk. Each write's effect is
// a pure function of (chunk, version) and the chunk's content before it
// (crashOp), so the parent can rebuild the exact content of any committed
// version by replaying versions 1..v.

const (
	crashEnv    = "FFF_CHUNKENGINE_CRASH_DIR"
	crashChunks = 16
	crashLimit  = 256 << 10
	crashRounds = 5
)

func crashID(c int) ChunkID { return ChunkID{Ino: 0xC0FFEE, Index: uint32(c)} }

type crashOpKind int

const (
	opWrite crashOpKind = iota
	opTruncate
)

type crashOp struct {
	kind crashOpKind
	off  int64 // write offset, or truncate length
	data []byte
}

// nextCrashOp is the write that takes chunk c from version v-1 (content
// of length L) to version v.
func nextCrashOp(c int, v uint64, L int64) crashOp {
	rng := rand.New(rand.NewPCG(uint64(c)<<32|v, 0xc4a5))
	seed := uint64(c)<<40 | v
	size := func(max int) int { return 1 + rng.IntN(max) }
	if v == 1 {
		return crashOp{kind: opWrite, data: pattern(seed, size(64<<10))}
	}
	switch k := rng.IntN(100); {
	case k < 40: // append, in place
		if d := pattern(seed, size(48<<10)); L+int64(len(d)) <= crashLimit {
			return crashOp{kind: opWrite, off: L, data: d}
		}
	case k < 70: // overwrite, copy-on-write
		if L > 0 {
			off := rng.Int64N(L)
			if d := pattern(seed, size(24<<10)); off+int64(len(d)) <= crashLimit {
				return crashOp{kind: opWrite, off: off, data: d}
			}
		}
	case k < 80: // write past the end, leaving a hole
		off := L + rng.Int64N(3*BlockSize)
		if d := pattern(seed, size(8<<10)); off+int64(len(d)) <= crashLimit {
			return crashOp{kind: opWrite, off: off, data: d}
		}
	case k < 90: // grow with zeros
		return crashOp{kind: opTruncate, off: min(crashLimit, L+rng.Int64N(16<<10))}
	}
	return crashOp{kind: opTruncate, off: rng.Int64N(L/2 + 1)} // shrink
}

func (op crashOp) apply(model []byte) []byte {
	if op.kind == opTruncate {
		return applyTruncate(model, op.off)
	}
	return applyWrite(model, op.off, op.data)
}

// crashContent replays chunk c's versions 1..v.
func crashContent(c int, v uint64) []byte {
	var m []byte
	for i := uint64(1); i <= v; i++ {
		m = nextCrashOp(c, i, int64(len(m))).apply(m)
	}
	return m
}

// TestCrashChild is the child's write load; it only runs when TestCrash
// starts it. It never returns on its own before its safety timeout.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("helper process of TestCrash")
	}
	ctx := context.Background()
	e, err := Open(ctx, filepath.Join(dir, "target"), Options{MaxChunkSize: crashLimit})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(2)
	}
	acks, err := os.OpenFile(filepath.Join(dir, "acks"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child acks:", err)
		os.Exit(2)
	}
	var ackMu sync.Mutex
	ack := func(c int, v uint64) {
		var rec [12]byte
		binary.LittleEndian.PutUint32(rec[:], uint32(c))
		binary.LittleEndian.PutUint64(rec[4:], v)
		ackMu.Lock()
		defer ackMu.Unlock()
		if _, err := acks.Write(rec[:]); err != nil {
			os.Exit(3)
		}
		if err := acks.Sync(); err != nil {
			os.Exit(3)
		}
	}
	// Rebuild every chunk's committed content before the load starts, so
	// the parent's kill timer measures load, not replay.
	type state struct {
		v uint64
		m []byte
	}
	states := make([]*state, crashChunks)
	for c := range states {
		states[c] = &state{}
		if info, err := e.Stat(ctx, crashID(c)); err == nil {
			states[c].v = info.Version
			states[c].m = crashContent(c, info.Version)
		}
	}
	fmt.Println("ready")
	const workers = 4
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				c := w + workers*(i%(crashChunks/workers))
				st := states[c]
				op := nextCrashOp(c, st.v+1, int64(len(st.m)))
				var v uint64
				var err error
				if op.kind == opTruncate {
					v, err = e.Truncate(ctx, crashID(c), op.off)
				} else {
					v, err = e.Write(ctx, crashID(c), op.off, op.data)
				}
				if err != nil || v != st.v+1 {
					fmt.Fprintf(os.Stderr, "child: chunk %d version %d: got %d, %v\n", c, st.v+1, v, err)
					os.Exit(4)
				}
				ack(c, v)
				st.v, st.m = v, op.apply(st.m)
			}
		})
	}
	time.Sleep(30 * time.Second) // safety net: the parent kills us long before
	os.Exit(5)
}

func readAcks(t *testing.T, path string) map[int]uint64 {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[int]uint64{}
	for ; len(b) >= 12; b = b[12:] {
		c, v := int(binary.LittleEndian.Uint32(b)), binary.LittleEndian.Uint64(b[4:])
		out[c] = max(out[c], v)
	}
	return out
}

// TestCrash is the acceptance test of crash atomicity and durability.
func TestCrash(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the child")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	last := map[int]uint64{}
	prevAcks, orphans := 0, 0
	for round := 1; round <= crashRounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		ready := make(chan bool, 1)
		go func() {
			sc := bufio.NewScanner(out)
			ok := false
			for sc.Scan() {
				if sc.Text() == "ready" {
					ok = true
					break
				}
			}
			ready <- ok
			for sc.Scan() {
			}
		}()
		select {
		case ok := <-ready:
			if !ok {
				cmd.Wait()
				t.Fatalf("round %d: child exited before ready: %s", round, stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: child not ready: %s", round, stderr.String())
		}
		delay := time.Duration(50+rng.IntN(451)) * time.Millisecond
		time.Sleep(delay)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("round %d: kill: %v", round, err)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("round %d: child did not die by SIGKILL (%v): %s", round, err, stderr.String())
		}

		acks := readAcks(t, filepath.Join(dir, "acks"))
		nacks := 0
		for _, v := range acks {
			nacks += int(v)
		}
		e := openEngine(t, filepath.Join(dir, "target"), Options{MaxChunkSize: crashLimit})
		orphans += e.orphans
		ahead, files := 0, 0
		for c := range crashChunks {
			id := crashID(c)
			info, err := e.Stat(context.Background(), id)
			var v uint64
			if err == nil {
				v = info.Version
			} else if acks[c] > 0 {
				t.Fatalf("round %d: chunk %d: %v, but version %d was acknowledged", round, c, err, acks[c])
			}
			if v < acks[c] {
				t.Fatalf("round %d: chunk %d at version %d, but version %d was acknowledged", round, c, v, acks[c])
			}
			if v < last[c] {
				t.Fatalf("round %d: chunk %d went back from version %d to %d", round, c, last[c], v)
			}
			if v > acks[c] {
				ahead++ // committed, killed before the ack was logged
			}
			if v > 0 {
				checkChunk(t, e, id, crashContent(c, v), v)
				if mustRecord(t, e, id).gen != 0 {
					files++
				}
			}
			last[c] = v
		}
		// Open removed every orphan: one data file per chunk that has data.
		n := 0
		filepath.WalkDir(filepath.Join(dir, "target", dataDirName), func(_ string, d os.DirEntry, _ error) error {
			if d != nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		if n != files {
			t.Fatalf("round %d: %d data files for %d chunks with data", round, n, files)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		total := uint64(0)
		for _, v := range last {
			total += v
		}
		t.Logf("round %d: killed after %v; %d writes acknowledged this round; all %d chunks verified (%d versions in all); %d chunks committed beyond their last ack; %d orphan files removed by Open",
			round, delay, nacks-prevAcks, crashChunks, total, ahead, e.orphans)
		prevAcks = nacks
	}
	t.Logf("%d rounds, %d acknowledged writes; %d orphan files (crashed copy-on-write) collected", crashRounds, prevAcks, orphans)
	if prevAcks < crashRounds {
		t.Fatalf("only %d writes acknowledged in %d rounds: the load did not run", prevAcks, crashRounds)
	}
}
