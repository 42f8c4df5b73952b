package txnkit

import (
	"sync"

	"fff/server/kv"
)

// Lifecycle tracks running transactions so that Close can wait for them and
// later calls fail with kv.ErrClosed. The zero value is open.
type Lifecycle struct {
	mu      sync.Mutex
	closed  bool
	running int
	idle    chan struct{}
}

// Enter registers a transaction; call Leave when it ends.
func (l *Lifecycle) Enter() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return kv.ErrClosed
	}
	l.running++
	return nil
}

// Leave ends a transaction registered by Enter.
func (l *Lifecycle) Leave() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running--
	if l.closed && l.running == 0 && l.idle != nil {
		close(l.idle)
		l.idle = nil
	}
}

// Close refuses new transactions and waits for the running ones. It
// returns false if the Lifecycle was already closed.
func (l *Lifecycle) Close() bool {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return false
	}
	l.closed = true
	var wait chan struct{}
	if l.running > 0 {
		wait = make(chan struct{})
		l.idle = wait
	}
	l.mu.Unlock()
	if wait != nil {
		<-wait
	}
	return true
}
