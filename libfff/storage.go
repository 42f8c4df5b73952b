package libfff

import (
	"context"
	"errors"
	"sync"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// The storage client: one rpc.Pool per storage node address (the meta
// pool when a node shares the cluster address, as in `fffd local`), chunk
// writes, truncates and removes sent to the head of the chunk's chain, and
// batched reads (batch.go) sent to serving replicas.

// storagePool returns the pool of the storage node at addr.
func (c *Client) storagePool(addr string) *rpc.Pool {
	if addr == c.addr {
		return c.metaPool
	}
	c.spMu.Lock()
	defer c.spMu.Unlock()
	if p := c.storagePools[addr]; p != nil {
		return p
	}
	if c.storagePools == nil {
		c.storagePools = map[string]*rpc.Pool{}
	}
	p := rpc.NewPool(addr, c.token, c.popts)
	c.storagePools[addr] = p
	return p
}

// cutStorage closes the connections to the storage node at addr, which
// mgmtd declared down (cluster.WatchDown): reads and writes waiting on a
// hung node fail at once and are retried on the new routing.
func (c *Client) cutStorage(addr string) {
	c.spMu.Lock()
	p := c.storagePools[addr]
	c.spMu.Unlock()
	if p != nil {
		c.log.Debug().Str("node", addr).Msg("storage node declared down: closing connections to it")
		p.Reset()
	}
}

func (c *Client) closeStoragePools() {
	c.spMu.Lock()
	defer c.spMu.Unlock()
	for _, p := range c.storagePools {
		p.Close()
	}
	c.storagePools = nil
}

// retryable reports whether a data-path error may go away after a routing
// refresh or on another replica: the chain changed (ChainVersionMismatch,
// NotHead), the target stopped serving, a replica's data was damaged, the
// chunk had a write in flight, or the node could not be reached.
func retryable(err error) bool {
	switch proto.CodeOf(err) {
	case proto.ChainVersionMismatch, proto.NotHead, proto.TargetNotServing,
		proto.ChecksumMismatch, proto.ChunkPending, proto.Unavailable:
		return true
	}
	return false
}

// maxAttempts bounds the tries of one chunk operation: the first and, after
// refreshing routing, up to two more.
const maxAttempts = 3

// refreshRouting fetches routing info newer than the cached one (errors
// are left to the retried call to report).
func (c *Client) refreshRouting(ctx context.Context, cause error) {
	if proto.CodeOf(cause) == proto.ChunkPending {
		return // the routing is right; the read goes to the chain's tail
	}
	if err := c.routing.Refresh(ctx); err != nil {
		c.log.Debug().Err(err).Msg("routing refresh after a storage error")
	}
}

// headCall sends a request about chunk (ino, index) of a file with layout l
// to the head of its chain, retrying after a routing refresh when the
// chain moved on, and once after renewing capability fc when storage
// refused it. mk builds the request for the chunk reference and
// capability.
func (c *Client) headCall(ctx context.Context, fc *fileCap, l *proto.Layout, ino, index uint64, method uint16, mk func(proto.ChunkRef, *proto.Capability) any, resp any, opts ...rpc.CallOption) error {
	var err error
	var o outage
	renewed := false
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			if c.again(ctx, &o, method, err) {
				attempt-- // an outage waited out is no failed try
			}
			c.refreshRouting(ctx, err)
		}
		var ri *proto.RoutingInfo
		if ri, err = c.Routing(ctx); err != nil {
			return err
		}
		var r route
		if r, err = writeRoute(ri, l, ino, index); err == nil {
			cur := fc.get(ctx)
			_, err = c.storagePool(r.addr).Call(ctx, method, mk(r.ref, cur), resp, opts...)
			if capRefused(err) && !renewed && ctx.Err() == nil {
				renewed = true
				if rerr := fc.renew(ctx, cur); rerr != nil {
					return rerr
				}
				attempt-- // a renewed capability is no failed try
				continue
			}
		}
		if err == nil || !retryable(err) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

// writeChunk writes data at offset off of chunk (ino, index).
func (c *Client) writeChunk(ctx context.Context, fc *fileCap, l *proto.Layout, ino, index uint64, off uint32, data []byte) error {
	c.stats.writes.Add(1)
	c.stats.writeBytes.Add(int64(len(data)))
	var resp proto.StorageWriteResp
	return c.headCall(ctx, fc, l, ino, index, proto.MethodStorageWrite, func(ref proto.ChunkRef, cp *proto.Capability) any {
		return &proto.StorageWriteReq{Chunk: ref, Off: off, ChunkSize: l.ChunkSize, Cap: cp}
	}, &resp, rpc.WithPayload(data))
}

// truncateChunk sets chunk (ino, index)'s length; length 0 removes it.
func (c *Client) truncateChunk(ctx context.Context, fc *fileCap, l *proto.Layout, ino, index uint64, length uint32) error {
	if length == 0 {
		return c.headCall(ctx, fc, l, ino, index, proto.MethodStorageRemove, func(ref proto.ChunkRef, cp *proto.Capability) any {
			return &proto.StorageRemoveReq{Chunk: ref, Cap: cp}
		}, nil)
	}
	var resp proto.StorageTruncateResp
	return c.headCall(ctx, fc, l, ino, index, proto.MethodStorageTruncate, func(ref proto.ChunkRef, cp *proto.Capability) any {
		return &proto.StorageTruncateReq{Chunk: ref, Length: length, Cap: cp}
	}, &resp)
}

// writeParallel is how many chunk writes of one large write run at once.
const writeParallel = 8

// writeRange writes p at file offset off of a file, split on chunk
// boundaries, the chunk writes in parallel.
func (c *Client) writeRange(ctx context.Context, fc *fileCap, l *proto.Layout, ino uint64, p []byte, off int64) error {
	if l == nil || l.ChunkSize == 0 || len(l.Chains) == 0 {
		if len(p) == 0 {
			return nil
		}
		return proto.Errorf(proto.Unavailable, "the file has no chains (no storage was configured when it was created)")
	}
	// splitRange gives no pieces for a range past proto.MaxFileSize: fail
	// rather than write nothing and report success.
	if err := proto.CheckFileRange(off, int64(len(p))); err != nil {
		return err
	}
	ps := splitRange(l.ChunkSize, off, len(p))
	if len(ps) == 1 {
		q := ps[0]
		return c.writeChunk(ctx, fc, l, ino, q.index, q.off, p[q.pos:q.pos+int(q.n)])
	}
	errs := make([]error, len(ps))
	sem := make(chan struct{}, writeParallel)
	var wg sync.WaitGroup
	for i, q := range ps {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[i] = c.writeChunk(ctx, fc, l, ino, q.index, q.off, p[q.pos:q.pos+int(q.n)])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// maxTruncateErrs is how many chunk errors truncateChunks keeps; it
// counts the rest.
const maxTruncateErrs = 8

// truncateChunks drops the bytes of a file at offsets >= size that an
// earlier length of oldSize may have left in storage: the chunk holding
// offset size is cut, the later ones (up to oldSize's chunk) removed. Meta
// queues the same work for storage's garbage collection; doing it at once
// keeps a truncate followed by an extension reading zeros.
//
// size must lie in [0, proto.MaxFileSize] (EFBIG, EINVAL otherwise: its
// chunk indices would not fit the wire); an oldSize past the limit (or
// wrapped negative from meta's uint64) is taken as the limit, since no
// chunk lies beyond it. The errors are collected as they occur, not in a
// slot per chunk index: a 16 TiB file has up to 2^32 chunks.
func (c *Client) truncateChunks(ctx context.Context, fc *fileCap, l *proto.Layout, ino uint64, size, oldSize int64) error {
	if err := proto.CheckFileRange(size, 0); err != nil {
		return err
	}
	if oldSize < 0 || oldSize > proto.MaxFileSize {
		oldSize = proto.MaxFileSize
	}
	if l == nil || l.ChunkSize == 0 || len(l.Chains) == 0 || oldSize <= size {
		return nil
	}
	cs := int64(l.ChunkSize)
	first, last := size/cs, (oldSize-1)/cs
	var (
		mu      sync.Mutex
		errs    []error
		dropped int64
	)
	sem := make(chan struct{}, writeParallel)
	var wg sync.WaitGroup
	for idx := first; idx <= last; idx++ {
		length := uint32(0)
		if idx == first {
			length = uint32(size % cs)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := c.truncateChunk(ctx, fc, l, ino, uint64(idx), length)
			if err != nil && !errors.Is(err, proto.ErrUnknownMethod) { // no storage service: GC's job
				mu.Lock()
				if len(errs) < maxTruncateErrs {
					errs = append(errs, err)
				} else {
					dropped++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if dropped > 0 {
		errs = append(errs, proto.Errorf(proto.CodeOf(errs[0]), "and %d more chunk truncates failed", dropped))
	}
	return errors.Join(errs...)
}
