package mgmtd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/server/kv"
	"fff/server/kv/memkv"
)

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// electorate is several Services over one KV, each campaigning until it is
// stopped; Dial reaches the others in process.
type electorate struct {
	t     *testing.T
	db    kv.DB
	clk   *fakeClock
	lease time.Duration
	mu    sync.Mutex
	svcs  map[string]*Service
	stops map[string]func()
}

func newElectorate(t *testing.T, n int, lease time.Duration) *electorate {
	e := &electorate{t: t, db: memkv.New(), clk: newFakeClock(), lease: lease, svcs: map[string]*Service{}, stops: map[string]func(){}}
	t.Cleanup(func() {
		for _, stop := range e.stops {
			stop()
		}
		e.db.Close()
	})
	for i := 1; i <= n; i++ {
		e.start(uint32(i))
	}
	return e
}

func (e *electorate) start(id uint32) *Service {
	addr := fmt.Sprintf("n%d", id)
	s, err := New(context.Background(), e.db, Options{
		HeartbeatTimeout: testTimeout, Clock: e.clk,
		Elect: &ElectOptions{NodeID: id, Addr: addr, Lease: e.lease, Dial: func(a string) (Remote, io.Closer) {
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.svcs[a], nopCloser{}
		}},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Campaign(ctx)
	}()
	e.mu.Lock()
	e.svcs[addr] = s
	e.stops[addr] = func() { cancel(); <-done }
	e.mu.Unlock()
	return s
}

// stop ends the campaign of the instance at addr (its death).
func (e *electorate) stop(addr string) {
	e.mu.Lock()
	stop := e.stops[addr]
	delete(e.stops, addr)
	e.mu.Unlock()
	stop()
}

// leader waits until exactly one live instance leads with a term above
// after and every live instance has seen its record (so followers forward
// to it), checking on every poll that no two lead at once.
func (e *electorate) leader(after uint64) (string, *Service, uint64) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var leaders []string
		var lead *Service
		var term uint64
		seen := map[uint64]int{}
		alive := 0
		e.mu.Lock()
		for addr, s := range e.svcs {
			if _, ok := e.stops[addr]; !ok {
				continue
			}
			alive++
			r, ok := s.Leader()
			seen[r.Term]++
			if ok {
				leaders = append(leaders, addr)
				lead, term = s, r.Term
			}
		}
		e.mu.Unlock()
		if len(leaders) > 1 {
			e.t.Fatalf("two leaders at once: %v", leaders)
		}
		if len(leaders) == 1 && term > after && seen[term] == alive {
			return leaders[0], lead, term
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.t.Fatalf("no leader with a term above %d within 20 s", after)
	return "", nil, 0
}

// TestElection: one leader; followers forward; a leader's death hands the
// lease to another within a bound, with a higher term; the new leader gives
// every node a full heartbeat timeout of grace.
func TestElection(t *testing.T) {
	ctx := context.Background()
	// The lease is long enough that a loaded machine (-race, 2 cores)
	// does not make the leader miss renewals between the steps below.
	e := newElectorate(t, 3, time.Second)
	addr, lead, term := e.leader(0)
	var follower *Service
	for a, s := range e.svcs {
		if a != addr {
			follower = s
		}
	}
	// A registration through a follower lands on the leader (and in the
	// KV); a heartbeat through it reaches the leader's memory.
	if _, err := follower.RegisterNode(ctx, proto.Node{ID: 7, Addr: "x:1", Roles: proto.RoleStorage}); err != nil {
		t.Fatal(err)
	}
	if lead.cur.Load().Node(7) == nil {
		t.Fatal("a registration through a follower did not reach the leader")
	}
	// The followers load it from the KV (Run's refresh), so their silence
	// clocks for node 7 start now.
	for a, s := range e.svcs {
		if a != addr {
			must[*proto.RoutingInfo](t)(s.reload(ctx))
		}
	}
	e.clk.Advance(testTimeout / 2)
	if _, err := follower.Heartbeat(ctx, proto.HeartbeatReq{NodeID: 7}); err != nil {
		t.Fatal(err)
	}
	if ri := must[*proto.RoutingInfo](t)(follower.GetRouting(ctx, 0)); ri.Node(7).LastHeartbeat.IsZero() {
		t.Fatal("a follower's routing lacks the leader's live heartbeat times")
	}

	// The leader dies; the others have not heard node 7's heartbeat, and
	// their clocks say it is 1.5 timeouts old by now.
	e.clk.Advance(testTimeout)
	e.stop(addr)
	_, lead2, _ := e.leader(term)
	if err := lead2.CheckHeartbeats(ctx); err != nil {
		t.Fatal(err)
	}
	if n := routing(t, lead2).Node(7); n.State != proto.NodeUp {
		t.Fatalf("node 7 is %v right after the take-over: the new leader did not give it grace", n.State)
	}
	e.clk.Advance(testTimeout + time.Second)
	if err := lead2.CheckHeartbeats(ctx); err != nil {
		t.Fatal(err)
	}
	if n := routing(t, lead2).Node(7); n.State != proto.NodeDown {
		t.Fatalf("node 7 is %v a heartbeat timeout after the take-over, want down", n.State)
	}
}

// TestElectionFence: a leader whose lease was taken in the KV (it has not
// noticed yet) can no longer change the routing.
func TestElectionFence(t *testing.T) {
	ctx := context.Background()
	e := newElectorate(t, 1, time.Hour) // the lease never runs out here
	_, lead, term := e.leader(0)
	if err := e.db.Update(ctx, func(tx kv.Txn) error {
		return writeLeader(tx, LeaderRecord{Term: term + 1, Node: 9, Addr: "n9"})
	}); err != nil {
		t.Fatal(err)
	}
	if _, ok := lead.Leader(); !ok {
		t.Fatal("the instance stopped leading on its own")
	}
	_, err := lead.RegisterNode(ctx, proto.Node{ID: 8, Addr: "y:1", Roles: proto.RoleStorage})
	if !errors.Is(err, errNotLeader) {
		t.Fatalf("a write of a deposed leader: %v, want errNotLeader", err)
	}
}
