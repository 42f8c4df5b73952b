package chunkengine

import (
	"context"
	"errors"
	"fmt"

	"fff/internal/crc32c"
	"fff/internal/proto"
	"fff/internal/uring"
	"fff/server/kv"
)

// Replace makes chunk id exactly data at committed version version,
// whatever it held before (nothing, another version, a damaged record): a
// chain's full-chunk replace, which resync and repair send to a replica
// that may hold an old base. Like a copy-on-write write it writes data to a
// new data file, makes it durable, commits the record naming it and then
// unlinks the old file, so a crash leaves the old or the new chunk. version
// must be positive and data at most MaxChunkSize (EINVAL).
func (e *Engine) Replace(ctx context.Context, id ChunkID, version uint64, data []byte) (err error) {
	defer func() {
		if err == nil {
			e.countWrite(len(data), nil)
		}
	}()
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	if version == 0 || int64(len(data)) > e.maxChunk {
		return proto.Errorf(proto.EINVAL, "chunkengine: replace chunk %v with %d bytes at version %d: want a positive version and at most %d bytes",
			id, len(data), version, e.maxChunk)
	}
	mu := e.lockChunk(id)
	defer mu.Unlock()
	cur, err := e.current(ctx, id)
	damaged := false
	if err != nil {
		if !errors.Is(err, proto.ErrChecksumMismatch) {
			return err
		}
		cur, damaged = prevDamaged, true // a damaged record is what a replace repairs
	}
	next := &record{version: version}
	var h *handle
	if len(data) > 0 {
		n := int64(len(data))
		a := alignUp(n)
		x := e.bufs.get(int(a))
		defer e.bufs.put(x)
		buf := x.b[:a]
		copy(buf, data)
		clear(buf[n:])
		crcs := make([]uint32, nblocks(n))
		for b := range crcs {
			crcs[b] = crc32c.Checksum(data[int64(b)*BlockSize : min(int64(b+1)*BlockSize, n)])
		}
		gen, err := e.newGen(ctx)
		if err != nil {
			return err
		}
		var dir string
		if h, dir, err = e.createFile(id, gen); err != nil {
			return ioError(id, "create data file", err)
		}
		wbuf := buf[:n]
		if h.f.Direct() {
			wbuf = buf
		}
		if err := e.do(ctx, id, "write", uring.Op{Kind: uring.OpWrite, Fd: h.f.Fd(), Buf: wbuf}); err != nil {
			e.discardNew(id, h, false)
			return err
		}
		if err := e.syncData(ctx, id, h, dir, true); err != nil {
			e.discardNew(id, h, false)
			return err
		}
		next.gen, next.length, next.high, next.crcs = gen, n, n, crcs
	}
	if err := e.commit(ctx, id, cur, next); err != nil {
		if h != nil {
			e.discardNew(id, h, true)
		}
		return err
	}
	if h != nil {
		e.adopt(h)
		e.release(h)
	}
	switch {
	case damaged:
		e.removeFilesExcept(id, next.gen)
	case cur != nil && cur.gen != 0 && cur.gen != next.gen:
		e.retire(id, cur.gen)
		e.removeFile(id, cur.gen)
	}
	return nil
}

// Scan returns up to limit chunks after chunk after (nil: from the first)
// in id order, and whether more follow: a dump of the target for resync
// and scrub. A damaged record fails the call.
func (e *Engine) Scan(ctx context.Context, after *ChunkID, limit int) ([]ChunkInfo, bool, error) {
	if err := e.enter(); err != nil {
		return nil, false, err
	}
	defer e.leave()
	if limit <= 0 {
		limit = 1024
	}
	begin := []byte{keyChunkPrefix}
	if after != nil {
		begin = append(chunkKey(*after), 0)
	}
	var out []ChunkInfo
	more := false
	err := e.db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(begin, []byte{keyChunkPrefix + 1}, kv.RangeOptions{Limit: limit + 1})
		if err != nil {
			return err
		}
		more = len(kvs) > limit
		out, err = infos(kvs[:min(len(kvs), limit)])
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("chunkengine: scan: %w", err)
	}
	return out, more, nil
}
