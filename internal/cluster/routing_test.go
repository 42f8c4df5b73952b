package cluster_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fff/internal/cluster"
	"fff/internal/proto"
)

// source serves the routing info it holds.
type source struct {
	mu sync.Mutex
	ri *proto.RoutingInfo
}

func (s *source) GetRouting(context.Context, uint64) (*proto.RoutingInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ri.Clone(), nil
}

func (s *source) set(v uint64, states ...proto.NodeState) {
	ri := &proto.RoutingInfo{Version: v}
	for i, st := range states {
		ri.Nodes = append(ri.Nodes, proto.Node{ID: uint32(i + 1), Addr: string(rune('a' + i)), State: st})
	}
	s.mu.Lock()
	s.ri = ri
	s.mu.Unlock()
}

// TestWatchDown: the nodes down in each new routing version are cut, and
// no node that is up.
func TestWatchDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := &source{}
	cache := cluster.NewRoutingCache(src, cluster.RoutingCacheOptions{})
	cuts := make(chan string, 16)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cluster.WatchDown(wctx, cache, func(addr string) { cuts <- addr }) }()

	up, down := proto.NodeUp, proto.NodeDown
	steps := []struct {
		states []proto.NodeState
		want   []string
	}{
		{[]proto.NodeState{up, down, up}, []string{"b"}},
		{[]proto.NodeState{up, down, down}, []string{"b", "c"}},
		{[]proto.NodeState{up, up, up}, nil},
		{[]proto.NodeState{down, down, up}, []string{"a", "b"}},
	}
	for i, st := range steps {
		src.set(uint64(i+1), st.states...)
		if err := cache.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		var got []string
		for range st.want {
			select {
			case a := <-cuts:
				got = append(got, a)
			case <-ctx.Done():
				t.Fatalf("step %d: cuts %v, want %v", i, got, st.want)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, st.want) {
			t.Fatalf("step %d: cuts %v, want %v", i, got, st.want)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-cuts:
		t.Fatalf("an extra cut of %s", a)
	default:
	}
}

// waitSource long-polls: it answers a caller that is up to date once set
// publishes a newer version.
type waitSource struct {
	source
	changed chan struct{}
	calls   atomic.Int64
}

func (w *waitSource) WaitRouting(ctx context.Context, since uint64, wait time.Duration) (*proto.RoutingInfo, bool, error) {
	w.calls.Add(1)
	for {
		w.mu.Lock()
		ri, ch := w.ri, w.changed
		w.mu.Unlock()
		if ri != nil && ri.Version != since {
			return ri.Clone(), true, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
}

func (w *waitSource) publish(v uint64) {
	w.set(v, proto.NodeUp)
	w.mu.Lock()
	close(w.changed)
	w.changed = make(chan struct{})
	w.mu.Unlock()
}

// TestRunLongPolls: over a source that long-polls, Run installs each new
// version as the source publishes it — no refresh interval involved (it
// is an hour here).
func TestRunLongPolls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src := &waitSource{changed: make(chan struct{})}
	src.publish(1)
	cache := cluster.NewRoutingCache(src, cluster.RoutingCacheOptions{Interval: time.Hour})
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cache.Run(rctx) }()
	for v := uint64(2); v <= 4; v++ {
		src.publish(v)
		ri, err := cache.Wait(ctx, v-1)
		if err != nil || ri.Version != v {
			t.Fatalf("after publishing version %d: %v, %v", v, ri, err)
		}
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := src.calls.Load(); n > 6 {
		t.Fatalf("%d requests for 4 versions: the long poll spins", n)
	}
}
