package ffrecord

import (
	"bytes"
	"context"
	"io"
	"sync"
	"testing"
)

// memFile is an in-memory io.WriterAt / io.ReaderAt.
type memFile struct {
	mu sync.Mutex
	b  []byte
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	copy(m.b[off:], p)
	return len(p), nil
}

func openBytes(t testing.TB, name string, b []byte, opts ReaderOptions) *Reader {
	t.Helper()
	r, err := Open(context.Background(), []Source{{Name: name, R: bytes.NewReader(b), Size: int64(len(b))}}, opts)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	return r
}

// readAll reads every sample of r one batch at a time.
func readAll(t testing.TB, r *Reader) ([][]byte, error) {
	t.Helper()
	idx := make([]int64, r.Len())
	dsts := make([][]byte, r.Len())
	for i := range idx {
		idx[i] = int64(i)
		n, err := r.Size(int64(i))
		if err != nil {
			return nil, err
		}
		dsts[i] = make([]byte, n)
	}
	return dsts, r.ReadBatch(context.Background(), idx, dsts)
}

var _ io.WriterAt = (*memFile)(nil)
