package rpc

import (
	"bufio"
	"net"
	"sync"
)

// tlsTransport is the TCP connection under a tls.Conn. crypto/tls moves
// one record (16 KiB at most) per read and per write system call, which
// made TLS bulk transfer cost several times the CPU of plaintext. So reads
// go through a buffer (several records per read), and the records of a
// batch of frames (frameWriter.flush) are gathered and written together.
// The server also peeks at a connection's first byte through it, to tell a
// plaintext client from a TLS one.
type tlsTransport struct {
	net.Conn
	r *bufio.Reader

	mu   sync.Mutex
	pool *bufPool
	wb   *[]byte // while a batch is written: what was gathered
}

const (
	tlsReadBuffer = 64 << 10
	// tlsGather bounds the bytes gathered before they are written.
	tlsGather = 256 << 10
)

func newTLSTransport(nc net.Conn) *tlsTransport {
	return &tlsTransport{Conn: nc, r: bufio.NewReaderSize(nc, tlsReadBuffer)}
}

func (t *tlsTransport) Read(p []byte) (int, error) { return t.r.Read(p) }

// Write writes p, or gathers it while a batch is being written.
func (t *tlsTransport) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.wb == nil {
		return t.Conn.Write(p)
	}
	if len(*t.wb)+len(p) > cap(*t.wb) {
		if err := t.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(*t.wb) {
			return t.Conn.Write(p)
		}
	}
	*t.wb = append(*t.wb, p...)
	return len(p), nil
}

// gather starts gathering writes into a buffer of pool; release writes
// what was gathered and stops. Writes from elsewhere meanwhile (crypto/tls
// answering its peer) join the batch in order.
func (t *tlsTransport) gather(pool *bufPool) {
	b := pool.get(tlsGather)
	*b = (*b)[:0]
	t.mu.Lock()
	t.wb, t.pool = b, pool
	t.mu.Unlock()
}

func (t *tlsTransport) release() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	err := t.flushLocked()
	t.pool.put(t.wb)
	t.wb = nil
	return err
}

func (t *tlsTransport) flushLocked() error {
	if len(*t.wb) == 0 {
		return nil
	}
	_, err := t.Conn.Write(*t.wb)
	*t.wb = (*t.wb)[:0]
	return err
}
