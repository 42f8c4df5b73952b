package fusefs

import (
	"context"
	"sync"

	"fff/libfff"
)

// readBatcher gathers the reads that arrive while earlier ones are under
// way into Client.ReadBatch calls: a deep queue of small random reads (fio
// with O_DIRECT, a data loader's threads) then costs a few batched storage
// requests instead of one round trip each, as the native client's batches
// do. A read that finds fewer than maxBatches batches in flight goes out at
// once, alone: batching never adds latency to a shallow queue.
type readBatcher struct {
	c          *libfff.Client
	ctx        context.Context
	maxBatches int

	mu      sync.Mutex
	pending []*batchRead
	running int
}

type batchRead struct {
	op   libfff.ReadOp
	done chan struct{}
}

const (
	maxBatches  = 8
	maxBatchOps = 128
)

var batchReadPool = sync.Pool{New: func() any { return &batchRead{done: make(chan struct{}, 1)} }}

// read reads len(p) bytes of f at off (short at the end of the file, with
// io.EOF).
func (b *readBatcher) read(f *libfff.File, p []byte, off int64) (int, error) {
	r := batchReadPool.Get().(*batchRead)
	r.op = libfff.ReadOp{File: f, Off: off, Dst: p}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	if b.running < b.maxBatches {
		b.running++
		go b.run()
	}
	b.mu.Unlock()
	<-r.done
	n, err := r.op.N, r.op.Err
	r.op = libfff.ReadOp{}
	batchReadPool.Put(r)
	return n, err
}

// run sends batches of the pending reads until there are none.
func (b *readBatcher) run() {
	var batch []*batchRead
	var ops []libfff.ReadOp
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		k := min(len(b.pending), maxBatchOps)
		batch = append(batch[:0], b.pending[:k]...)
		b.pending = append(b.pending[:0], b.pending[k:]...)
		b.mu.Unlock()
		ops = ops[:0]
		for _, r := range batch {
			ops = append(ops, r.op)
		}
		err := b.c.ReadBatch(b.ctx, ops)
		for i, r := range batch {
			r.op = ops[i]
			if err != nil && r.op.Err == nil {
				r.op.Err = err
			}
			r.done <- struct{}{}
		}
	}
}
