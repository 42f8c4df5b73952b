package fusefs

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"fff/internal/proto"
)

// fakeMeta answers the queue's calls one at a time, when the test lets it.
type fakeMeta struct {
	mu    sync.Mutex
	calls []proto.SetAttr
	fail  map[int]error // by call number
	gate  chan struct{} // one receive per call
	node  proto.Inode
}

func (m *fakeMeta) set(ctx context.Context, ino uint64, a proto.SetAttr) (proto.Inode, error) {
	<-m.gate
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, a)
	if err := m.fail[len(m.calls)]; err != nil {
		return proto.Inode{}, err
	}
	applyAttr(&m.node, a, 1)
	return m.node, nil
}

// inflight waits until the queue of ino has a call under way.
func inflight(q *attrQueue, ino uint64) {
	for {
		q.mu.Lock()
		busy := q.inos[ino] != nil && q.inos[ino].inflight != nil
		q.mu.Unlock()
		if busy {
			return
		}
		runtime.Gosched()
	}
}

// TestAttrQueueOrderAndMerge: changes go to meta in order; the ones queued
// behind a call under way are merged, except a mode or owner change after
// an owner change (meta applies the mode first, and an owner change clears
// setuid).
func TestAttrQueueOrderAndMerge(t *testing.T) {
	m := &fakeMeta{gate: make(chan struct{}), node: proto.Inode{Ino: 7, Type: proto.TypeFile, Mode: 0o600}}
	q := newAttrQueue(m.set)
	q.add(7, proto.SetAttr{Valid: proto.SetMtime | proto.SetAtime, Mtime: 5, Atime: 5}, nil)
	inflight(q, 7) // the first call is under way, held at the gate
	q.add(7, proto.SetAttr{Valid: proto.SetMode, Mode: 0o4755}, nil)
	q.add(7, proto.SetAttr{Valid: proto.SetMtimeNow}, nil)
	q.add(7, proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: 1, GID: 2}, nil)
	q.add(7, proto.SetAttr{Valid: proto.SetMode, Mode: 0o4750}, nil)
	n := q.base(proto.Inode{Ino: 7, Type: proto.TypeFile, Mode: 0o600})
	if n.Mode != 0o4750 || n.UID != 1 || n.GID != 2 || n.Atime != 5 {
		t.Fatalf("base: mode %o uid %d gid %d atime %d; want 4750, 1, 2, 5", n.Mode, n.UID, n.GID, n.Atime)
	}
	go func() {
		for range 3 {
			m.gate <- struct{}{}
		}
	}()
	if err := q.wait(7); err != nil {
		t.Fatal(err)
	}
	want := []proto.SetAttr{
		{Valid: proto.SetMtime | proto.SetAtime, Mtime: 5, Atime: 5},
		{Valid: proto.SetMode | proto.SetMtimeNow | proto.SetUID | proto.SetGID, Mode: 0o4755, UID: 1, GID: 2},
		{Valid: proto.SetMode, Mode: 0o4750},
	}
	if fmt.Sprint(m.calls) != fmt.Sprint(want) {
		t.Fatalf("calls %+v, want %+v", m.calls, want)
	}
	if m.node.Mode != 0o4750 || m.node.UID != 1 {
		t.Fatalf("meta ends with mode %o uid %d", m.node.Mode, m.node.UID)
	}
}

// TestAttrQueueErrors: a refused change undoes its side effects, wait
// returns the first error once, and the queue goes on.
func TestAttrQueueErrors(t *testing.T) {
	errNo := errors.New("refused")
	m := &fakeMeta{gate: make(chan struct{}, 10), fail: map[int]error{1: errNo, 2: errors.New("second")}, node: proto.Inode{Ino: 3}}
	for range 10 {
		m.gate <- struct{}{}
	}
	q := newAttrQueue(m.set)
	undone := 0
	q.add(3, proto.SetAttr{Valid: proto.SetMtime, Mtime: 1}, []func(){func() { undone++ }})
	if err := q.wait(3); !errors.Is(err, errNo) || undone != 1 {
		t.Fatalf("wait: %v, %d undone; want the refusal and one undo", err, undone)
	}
	if err := q.wait(3); err != nil {
		t.Fatalf("second wait: %v, want nil (the error was returned)", err)
	}
	q.add(3, proto.SetAttr{Valid: proto.SetMode, Mode: 0o644}, nil)
	q.add(3, proto.SetAttr{Valid: proto.SetMode, Mode: 0o600}, nil)
	err := q.forget(3)
	if err == nil || err.Error() != "second" {
		t.Fatalf("forget: %v, want the second call's error", err)
	}
	q.mu.Lock()
	left := len(q.inos)
	q.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d queues left after forget", left)
	}
}

// TestApplyAttrOwnerClearsSetuid: the answer to an owner change follows
// meta's rule.
func TestApplyAttrOwnerClearsSetuid(t *testing.T) {
	for _, c := range []struct {
		mode, want uint32
		a          proto.SetAttr
		typ        proto.FileType
	}{
		{0o6755, 0o0755, proto.SetAttr{Valid: proto.SetUID, UID: 9}, proto.TypeFile},          // group-executable: both go
		{0o6745, 0o2745, proto.SetAttr{Valid: proto.SetGID, GID: 9}, proto.TypeFile},          // setgid without group x stays
		{0o6755, 0o6755, proto.SetAttr{Valid: proto.SetUID, UID: 0}, proto.TypeFile},          // no change: nothing cleared
		{0o6755, 0o6755, proto.SetAttr{Valid: proto.SetUID, UID: 9}, proto.TypeDir},           // directories keep them
		{0o0600, 0o4711, proto.SetAttr{Valid: proto.SetMode, Mode: 0o104711}, proto.TypeFile}, // type bits dropped
	} {
		n := proto.Inode{Type: c.typ, Mode: c.mode}
		applyAttr(&n, c.a, 1)
		if n.Mode != c.want || n.Ctime != 1 {
			t.Errorf("%o %+v: mode %o ctime %d, want %o and 1", c.mode, c.a, n.Mode, n.Ctime, c.want)
		}
	}
}

// TestSettleWaitsForQueuedChanges: a read that starts after a change was
// queued starts only once meta has answered it, whichever file it reads.
func TestSettleWaitsForQueuedChanges(t *testing.T) {
	m := &fakeMeta{gate: make(chan struct{}), node: proto.Inode{Ino: 4}}
	q := newAttrQueue(m.set)
	q.add(4, proto.SetAttr{Valid: proto.SetMode, Mode: 0o640}, nil)
	inflight(q, 4)
	seen := make(chan int)
	go func() {
		q.settle()
		m.mu.Lock()
		defer m.mu.Unlock()
		seen <- len(m.calls)
	}()
	for range 100 {
		runtime.Gosched() // a settle that does not wait returns meanwhile
	}
	m.gate <- struct{}{}
	if n := <-seen; n != 1 {
		t.Fatalf("settle returned after %d calls to meta, want 1", n)
	}
	q.settle() // nothing queued: returns at once
}
