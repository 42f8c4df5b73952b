package main

import (
	"context"
	"sync"
	"sync/atomic"
)

// The handle table maps the int64 handles C callers hold to Go objects.
// It is the C API's one piece of process-global state, and must be: a
// c-shared library cannot give C a Go pointer to keep (cgo's pointer
// rules), so every object C refers to lives here, found by number. Handles
// count up from 1 and are never reused, so a stale handle is always
// FFF_EBADF, never someone else's object.

type kind uint8

const (
	kindClient kind = iota + 1
	kindFile
	kindDataset
	kindWriter
	kindTicket
)

func (k kind) String() string {
	switch k {
	case kindClient:
		return "client"
	case kindFile:
		return "file"
	case kindDataset:
		return "dataset"
	case kindWriter:
		return "writer"
	case kindTicket:
		return "ticket"
	}
	return "handle"
}

// handle is one entry of the table. Calls on it hold mu shared for their
// duration (acquire/release); closing removes it from the table, cancels
// ctx (ending calls and tickets under way) and then takes mu exclusively,
// so the object is released only once no call uses it.
type handle struct {
	id     int64
	kind   kind
	parent *handle // the client handle it was opened through, or nil
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.RWMutex
	closed atomic.Bool
	obj    any
}

var table = struct {
	sync.RWMutex
	m    map[int64]*handle
	next int64
}{m: map[int64]*handle{}}

// register adds obj to the table.
func register(k kind, parent *handle, obj any) *handle {
	h := &handle{kind: k, parent: parent, obj: obj}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	table.Lock()
	table.next++
	h.id = table.next
	table.m[h.id] = h
	table.Unlock()
	return h
}

// lookup finds handle id of kind k (0: any kind).
func lookup(id int64, k kind) (*handle, error) {
	table.RLock()
	h := table.m[id]
	table.RUnlock()
	what := "handle"
	if k != 0 {
		what = k.String() + " handle"
	}
	switch {
	case id <= 0:
		return nil, errf(cEBADF, "%s %d: not a handle (handles are > 0)", what, id)
	case h == nil:
		return nil, errf(cEBADF, "%s %d is not open: it was closed, or never returned by fff", what, id)
	case k != 0 && h.kind != k:
		return nil, errf(cEBADF, "handle %d is a %s handle, not a %s handle", id, h.kind, k)
	}
	return h, nil
}

// acquire finds handle id of kind k and holds it for a call; release it
// with h.release().
func acquire(id int64, k kind) (*handle, error) {
	h, err := lookup(id, k)
	if err != nil {
		return nil, err
	}
	h.mu.RLock()
	if h.closed.Load() {
		h.mu.RUnlock()
		return nil, errf(cEBADF, "%s handle %d is closed", k, id)
	}
	if p := h.parent; p != nil && p.closed.Load() {
		h.mu.RUnlock()
		return nil, errf(cEBADF, "%s handle %d: the client handle %d it was opened through is closed (close the %s, reconnect and reopen it)", k, id, p.id, k)
	}
	return h, nil
}

func (h *handle) release() { h.mu.RUnlock() }

// unregister removes h from the table; false if it was gone already (a
// concurrent close or wait took it).
func unregister(h *handle) bool {
	table.Lock()
	defer table.Unlock()
	if table.m[h.id] != h {
		return false
	}
	delete(table.m, h.id)
	return true
}

// retire takes h out of use: out of the table, its context canceled, and
// once every call holding it has returned, marked closed. It reports false
// when someone else retired h first.
func retire(h *handle) bool {
	if !unregister(h) {
		return false
	}
	h.cancel()
	h.mu.Lock()
	h.closed.Store(true)
	h.mu.Unlock()
	return true
}

// openHandles counts the table's entries (tests).
func openHandles() int {
	table.RLock()
	defer table.RUnlock()
	return len(table.m)
}
