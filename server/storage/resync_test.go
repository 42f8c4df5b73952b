package storage_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/server/storage/chunkengine"
)

// states is mgmtd's Synced over the test's routing: if the target's chain
// is at the resync's version, the target serves and the chain's version
// goes up.
type states struct{ e *env }

func (s states) Synced(ctx context.Context, id uint32, cv uint32) error {
	var err error
	s.e.routing.update(func(ri *proto.RoutingInfo) {
		// The tests' chains share targets: one of the target's chains
		// must be at the resync's version.
		if ri.Target(id).State != proto.TargetSyncing || !slices.ContainsFunc(ri.Chains, func(c proto.Chain) bool {
			return c.Version == cv && slices.Contains(c.Targets, id)
		}) {
			err = proto.Errorf(proto.ChainVersionMismatch, "target %d: no chain at version %d", id, cv)
			return
		}
		for i := range ri.Chains {
			if c := &ri.Chains[i]; slices.Contains(c.Targets, id) {
				c.Version++
			}
		}
		ri.Target(id).State = proto.TargetServing
	})
	return err
}

// TestResync: a syncing member gets, from its serving predecessor, every
// chunk it lacks or holds at another version or content, loses the chunks
// the chain does not have, keeps receiving the writes that arrive
// meanwhile, and is then made serving — with every replica equal.
func TestResync(t *testing.T) {
	e := newEnv(t)
	e.addChain(4, 10, 11, 12)
	models := map[uint32][]byte{}
	for idx := uint32(0); idx < 40; idx++ {
		models[idx] = pattern(uint64(idx), 1000+int(idx)*500)
		e.mustWrite(t, e.refOn(4, 10, 8, idx), 0, models[idx])
	}
	// Target 12 was away: it lacks chunks, has old versions and chunks
	// the chain removed.
	eng := e.svc.Engine(12)
	for idx := uint32(0); idx < 10; idx++ {
		if err := eng.Remove(e.ctx, chunkengine.ChunkID{Ino: 8, Index: idx}); err != nil {
			t.Fatal(err)
		}
	}
	for idx := uint32(10); idx < 20; idx++ {
		if _, err := eng.Write(e.ctx, chunkengine.ChunkID{Ino: 8, Index: idx}, 7, []byte("old")); err != nil {
			t.Fatal(err)
		}
	}
	for idx := uint32(20); idx < 25; idx++ { // the same version, other bytes
		if err := eng.Replace(e.ctx, chunkengine.ChunkID{Ino: 8, Index: idx}, 1, []byte("other bytes")); err != nil {
			t.Fatal(err)
		}
	}
	for idx := uint32(100); idx < 105; idx++ {
		if _, err := eng.Write(e.ctx, chunkengine.ChunkID{Ino: 8, Index: idx}, 0, []byte("removed since")); err != nil {
			t.Fatal(err)
		}
	}
	e.setState(4, 12, proto.TargetSyncing, 10, 11, 12)

	// Writes keep coming during the resync.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			idx := uint32(i % 40)
			data := pattern(uint64(1000+i), 300)
			if _, err := e.write(t, e.refOn(4, 10, 8, idx), 50, data); err != nil {
				if proto.CodeOf(err) == proto.ChainVersionMismatch {
					continue // the chain moved on (12 became serving): route again
				}
				t.Errorf("write during the resync: %v", err)
				return
			}
			mu.Lock()
			copy(models[idx][50:], data)
			mu.Unlock()
		}
	})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.RunResync(ctx, states{e}, 5*time.Millisecond) }()
	deadline := time.After(30 * time.Second) // a bound for failure only
	for e.routing.Get().Target(12).State != proto.TargetServing {
		select {
		case <-deadline:
			t.Fatalf("target 12 is still %v; resyncs running: %+v", e.routing.Get().Target(12).State, e.svc.Resyncs())
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(stop)
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for idx, m := range models {
		e.sameReplicas(t, "after the resync", 8, idx, m, 10, 11, 12)
	}
	for idx := uint32(100); idx < 105; idx++ {
		e.sameReplicas(t, "a chunk the chain removed", 8, idx, nil, 10, 11, 12)
	}
}
