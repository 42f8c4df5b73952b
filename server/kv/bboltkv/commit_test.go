package bboltkv

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"fff/server/kv"
)

// Tests of the group commit. None depends on timing: batches are built by
// holding a commit in the commit hook until the Updates that must join the
// next one are queued.

// commitLog records the commits the hook sees.
type commitLog struct {
	mu      sync.Mutex
	members []int  // members per commit attempt, in order
	wrote   []bool // whether the attempt wrote
}

func (l *commitLog) add(n int, wrote bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.members = append(l.members, n)
	l.wrote = append(l.wrote, wrote)
}

func (l *commitLog) get() ([]int, []bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.members...), append([]bool(nil), l.wrote...)
}

func (d *DB) queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue)
}

// inOneBatch runs fns as concurrent Updates that all join one commit, and
// returns their errors (and recovered panics). A first Update (writing key
// "hold") is kept in its commit until all of fns are queued behind it.
// The commit hook also logs to log; fail, if set, decides each attempt's
// commit error after the first.
func inOneBatch(t *testing.T, db *DB, log *commitLog, fail func(members int) error, fns ...func(kv.Txn) error) ([]error, []any) {
	t.Helper()
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	first.Store(true)
	db.hooks.commit = func(n int, wrote bool) error {
		log.add(n, wrote)
		if first.CompareAndSwap(true, false) {
			close(entered)
			<-release
			return nil
		}
		if fail != nil {
			return fail(n)
		}
		return nil
	}
	holdDone := make(chan error)
	go func() {
		holdDone <- db.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("hold"), []byte("x")) })
	}()
	<-entered
	errs := make([]error, len(fns))
	panics := make([]any, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = db.Update(ctx, fn)
		}()
	}
	for db.queued() < len(fns) {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if err := <-holdDone; err != nil {
		t.Fatalf("holding Update: %v", err)
	}
	return errs, panics
}

func keys(t *testing.T, db *DB) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := db.View(context.Background(), func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(nil, nil, kv.RangeOptions{})
		for _, p := range kvs {
			m[string(p.Key)] = string(p.Value)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestLoneUpdatesCommitAtOnce: with the default options an Update that
// finds no commit under way commits alone and never waits for company;
// each write gets its own commit, and an Update that writes nothing none.
func TestLoneUpdatesCommitAtOnce(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, &Options{})
	var log commitLog
	var waits atomic.Int64
	db.hooks.commit = func(n int, wrote bool) error { log.add(n, wrote); return nil }
	db.hooks.wait = func() { waits.Add(1) }
	for i := range 5 {
		if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set(fmt.Appendf(nil, "k%d", i), []byte("v")) }); err != nil {
			t.Fatal(err)
		}
	}
	txid := func() (id int) {
		db.bolt.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	before := txid()
	if err := db.Update(ctx, func(tx kv.Txn) error { _, err := tx.Get([]byte("k0")); return err }); err != nil {
		t.Fatal(err)
	}
	if after := txid(); after != before {
		t.Fatalf("an Update without writes committed (bbolt txid %d -> %d)", before, after)
	}
	members, wrote := log.get()
	if fmt.Sprint(members) != "[1 1 1 1 1 1]" || fmt.Sprint(wrote) != "[true true true true true false]" {
		t.Fatalf("commits: members %v, wrote %v; want six of one member, the last without writes", members, wrote)
	}
	if w := waits.Load(); w != 0 {
		t.Fatalf("a lone Update waited for company %d times", w)
	}
	if n := len(keys(t, db)); n != 5 {
		t.Fatalf("%d keys, want 5", n)
	}
}

// TestDelayWaitsForCompany: MaxBatchDelay (off by default) makes a leader
// wait; a full batch ends the wait without the timer (here an hour).
func TestDelayWaitsForCompany(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, &Options{NoSync: true, MaxBatchDelay: time.Hour, MaxBatchSize: 4})
	var log commitLog
	var waits atomic.Int64
	db.hooks.commit = func(n int, wrote bool) error { log.add(n, wrote); return nil }
	db.hooks.wait = func() { waits.Add(1) }
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set(fmt.Appendf(nil, "k%d", i), []byte("v")) }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if members, _ := log.get(); fmt.Sprint(members) != "[4]" {
		t.Fatalf("commits of %v members, want one of 4", members)
	}
	if waits.Load() != 1 {
		t.Fatalf("%d waits for company, want 1", waits.Load())
	}
}

// TestUpdatesDuringACommitShareTheNext: the Updates that arrive while a
// commit is under way all go into the next commit, in arrival order: each
// body sees the writes of the ones before it.
func TestUpdatesDuringACommitShareTheNext(t *testing.T) {
	db := openTest(t, &Options{})
	var log commitLog
	const n = 20
	fns := make([]func(kv.Txn) error, n)
	for i := range fns {
		fns[i] = func(tx kv.Txn) error {
			// A counter in unary: one 'x' per increment.
			v, err := tx.Get([]byte("counter"))
			if err != nil {
				return err
			}
			return tx.Set([]byte("counter"), append(v, 'x'))
		}
	}
	errs, _ := inOneBatch(t, db, &log, nil, fns...)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
	}
	if members, _ := log.get(); fmt.Sprint(members) != fmt.Sprintf("[1 %d]", n) {
		t.Fatalf("commits of %v members, want [1 %d]", members, n)
	}
	if got := keys(t, db)["counter"]; len(got) != n {
		t.Fatalf("counter %q after %d increments in one batch", got, n)
	}
}

// TestFailingBodiesDoNotDisturbTheBatch: a failing body leaves nothing in
// the shared transaction, so the others commit in the same commit and
// every body runs exactly once.
func TestFailingBodiesDoNotDisturbTheBatch(t *testing.T) {
	db := openTest(t, &Options{})
	var log commitLog
	var runs atomic.Int64
	errFail := errors.New("fail")
	const n = 16
	fns := make([]func(kv.Txn) error, n)
	for i := range fns {
		fns[i] = func(tx kv.Txn) error {
			runs.Add(1)
			if err := tx.Set(fmt.Appendf(nil, "k%02d", i), []byte("v")); err != nil {
				return err
			}
			if i%2 == 1 {
				return fmt.Errorf("update %d: %w", i, errFail)
			}
			return nil
		}
	}
	errs, _ := inOneBatch(t, db, &log, nil, fns...)
	for i, err := range errs {
		if (i%2 == 1) != errors.Is(err, errFail) || (i%2 == 0 && err != nil) {
			t.Errorf("Update %d: %v", i, err)
		}
	}
	if r := runs.Load(); r != n {
		t.Fatalf("%d body runs for %d Updates", r, n)
	}
	if members, _ := log.get(); fmt.Sprint(members) != fmt.Sprintf("[1 %d]", n) {
		t.Fatalf("commits of %v members, want [1 %d]", members, n)
	}
	got := keys(t, db)
	for i := range n {
		if _, ok := got[fmt.Sprintf("k%02d", i)]; ok != (i%2 == 0) {
			t.Errorf("key k%02d present: %v", i, ok)
		}
	}
}

// TestPanicInBatch: a panicking body's panic reaches its own caller, and
// the other members of its batch commit.
func TestPanicInBatch(t *testing.T) {
	db := openTest(t, &Options{})
	var log commitLog
	fns := make([]func(kv.Txn) error, 8)
	for i := range fns {
		fns[i] = func(tx kv.Txn) error {
			tx.Set(fmt.Appendf(nil, "k%d", i), []byte("v"))
			if i == 3 {
				panic("boom")
			}
			return nil
		}
	}
	errs, panics := inOneBatch(t, db, &log, nil, fns...)
	for i := range fns {
		if errs[i] != nil || (i == 3) != (panics[i] == "boom") {
			t.Errorf("Update %d: error %v, panic %v", i, errs[i], panics[i])
		}
	}
	got := keys(t, db)
	if _, ok := got["k3"]; ok || len(got) != 8 { // 7 and "hold"
		t.Fatalf("keys after a panic in a batch: %v", got)
	}
}

// TestRefusedWritesRerunTheRest: if bbolt refuses a member's writes, that
// member fails and the others run again, in a fresh transaction without
// it; what they return and commit is from the run that committed.
func TestRefusedWritesRerunTheRest(t *testing.T) {
	db := openTest(t, &Options{})
	var log commitLog
	errRefused := errors.New("refused")
	var attempts atomic.Int64
	db.hooks.apply = func(i int) error {
		// The first batch attempt refuses its second member.
		if i == 1 && attempts.Add(1) == 1 {
			return errRefused
		}
		return nil
	}
	const n = 5
	runs := make([]atomic.Int64, n)
	seen := make([]string, n) // the counter each body saw, from its last run
	fns := make([]func(kv.Txn) error, n)
	for i := range fns {
		fns[i] = func(tx kv.Txn) error {
			runs[i].Add(1)
			v, err := tx.Get([]byte("counter"))
			if err != nil {
				return err
			}
			seen[i] = string(v)
			return tx.Set([]byte("counter"), append(v, 'x'))
		}
	}
	// The hold Update's batch applies index 0 only, so the refusal hits
	// the second member of the second batch.
	errs, _ := inOneBatch(t, db, &log, nil, fns...)
	var failed []int
	for i, err := range errs {
		if err != nil {
			if !errors.Is(err, errRefused) {
				t.Fatalf("Update %d: %v", i, err)
			}
			failed = append(failed, i)
		}
	}
	if len(failed) != 1 {
		t.Fatalf("Updates %v failed, want one", failed)
	}
	if got := keys(t, db)["counter"]; len(got) != n-1 {
		t.Fatalf("counter %q, want %d increments", got, n-1)
	}
	// Every successful body's last run saw a distinct count: one serial
	// order of the committed ones.
	counts := map[string]bool{}
	reran := 0
	for i := range n {
		if i == failed[0] {
			continue
		}
		counts[seen[i]] = true
		if runs[i].Load() > 1 {
			reran++
		}
	}
	if len(counts) != n-1 || reran == 0 {
		t.Fatalf("committed bodies saw %v (want %d distinct counts); %d re-ran (want at least one)", seen, n-1, reran)
	}
	if members, _ := log.get(); fmt.Sprint(members) != fmt.Sprintf("[1 %d]", n-1) {
		t.Fatalf("commit attempts of %v members, want [1 %d]", members, n-1)
	}
}

// TestCommitFailureFailsEveryMember: when the commit fails, every member
// gets the error, those whose bodies failed too, and nothing is kept.
func TestCommitFailureFailsEveryMember(t *testing.T) {
	db := openTest(t, &Options{})
	var log commitLog
	errDisk := errors.New("disk on fire")
	errBody := errors.New("body")
	fns := []func(kv.Txn) error{
		func(tx kv.Txn) error { return tx.Set([]byte("a"), nil) },
		func(tx kv.Txn) error { return errBody },
		func(tx kv.Txn) error { return tx.Set([]byte("b"), nil) },
	}
	errs, _ := inOneBatch(t, db, &log, func(int) error { return errDisk }, fns...)
	for i, err := range errs {
		if !errors.Is(err, errDisk) {
			t.Errorf("Update %d: %v, want the commit's error", i, err)
		}
	}
	if got := keys(t, db); len(got) != 1 {
		t.Fatalf("keys after a failed commit: %v, want only the hold key", got)
	}
	// The DB goes on.
	db.hooks.commit = nil
	if err := db.Update(context.Background(), func(tx kv.Txn) error { return tx.Set([]byte("c"), nil) }); err != nil {
		t.Fatal(err)
	}
}

// TestCanceledWhileQueued: an Update whose context ends while it waits in
// the queue fails with the context's error when its turn comes, and its
// body never runs.
func TestCanceledWhileQueued(t *testing.T) {
	db := openTest(t, &Options{})
	var log commitLog
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	first.Store(true)
	db.hooks.commit = func(n int, wrote bool) error {
		log.add(n, wrote)
		if first.CompareAndSwap(true, false) {
			close(entered)
			<-release
		}
		return nil
	}
	go db.Update(context.Background(), func(tx kv.Txn) error { return tx.Set([]byte("hold"), nil) })
	<-entered
	done := make(chan error)
	go func() {
		done <- db.Update(ctx, func(tx kv.Txn) error { ran.Store(true); return tx.Set([]byte("x"), nil) })
	}()
	for db.queued() < 1 {
		runtime.Gosched()
	}
	cancel()
	close(release)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Update: %v", err)
	}
	if ran.Load() {
		t.Fatal("the body of a canceled Update ran")
	}
}

// TestConcurrentUpdatesRace: many writers and readers at once (run with
// -race); every Update takes effect exactly once.
func TestConcurrentUpdatesRace(t *testing.T) {
	ctx := context.Background()
	db := openTest(t, &Options{})
	var wg sync.WaitGroup
	const workers, each = 8, 50
	for w := range workers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := db.Update(ctx, func(tx kv.Txn) error {
					v, err := tx.Get([]byte("n"))
					if err != nil {
						return err
					}
					if err := tx.Set(fmt.Appendf(nil, "w%d/%03d", w, i), nil); err != nil {
						return err
					}
					return tx.Set([]byte("n"), append(v, 'x'))
				}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range each {
				if err := db.View(ctx, func(tx kv.ReadTxn) error { _, err := tx.Get([]byte("n")); return err }); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got := keys(t, db)
	if len(got) != workers*each+1 || len(got["n"]) != workers*each {
		t.Fatalf("%d keys, counter %d; want %d and %d", len(got), len(got["n"]), workers*each+1, workers*each)
	}
}

// BenchmarkUpdate: durable Updates of one small key, from one caller and
// from 64 at once.
func BenchmarkUpdate(b *testing.B) {
	ctx := context.Background()
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			db, err := Open(filepath.Join(b.TempDir(), "kv.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var n atomic.Int64
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := n.Add(1)
						if i > int64(b.N) {
							return
						}
						k := fmt.Appendf(nil, "k%09d", i)
						if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set(k, k) }); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}
