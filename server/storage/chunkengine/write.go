package chunkengine

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"fff/internal/crc32c"
	"fff/internal/proto"
	"fff/internal/uring"
)

func alignDown(x int64) int64 { return x &^ (BlockSize - 1) }
func alignUp(x int64) int64   { return (x + BlockSize - 1) &^ (BlockSize - 1) }

// zeroBlock is read-only: CRCs over runs of zeros.
var zeroBlock [BlockSize]byte

func crcZeros(c uint32, n int64) uint32 {
	for n > 0 {
		k := min(n, BlockSize)
		c = crc32c.Update(c, zeroBlock[:k])
		n -= k
	}
	return c
}

// Write stores data at chunk offset off and returns the chunk's new
// version. It creates a missing chunk. Bytes between the old length and off
// read as zeros. The write is durable when Write returns nil, and a crash at
// any instant leaves the chunk at its old or its new version. An empty data
// commits a new version with unchanged content (creating an empty chunk if
// needed). A write ending beyond MaxChunkSize is EINVAL.
//
// Writes at or beyond the committed length go into the chunk's data file in
// place; writes that overwrite committed bytes copy the chunk into a new
// data file (see the package documentation).
func (e *Engine) Write(ctx context.Context, id ChunkID, off int64, data []byte) (v uint64, err error) {
	defer func() { e.countWrite(len(data), err) }()
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.leave()
	if off < 0 || off > e.maxChunk || int64(len(data)) > e.maxChunk-off {
		return 0, proto.Errorf(proto.EINVAL, "chunkengine: write chunk %v at %d+%d: outside [0, %d)",
			id, off, len(data), e.maxChunk)
	}
	mu := e.lockChunk(id)
	defer mu.Unlock()
	cur, err := e.current(ctx, id)
	if err != nil {
		return 0, err
	}
	return e.write(ctx, id, cur, off, data)
}

// Truncate sets chunk id's length and returns its new version. Growing
// appends zeros (like a write of zeros); shrinking is a metadata commit
// (with the last partial block's CRC recomputed from the data) after which
// the data file is truncated, or removed when the length is 0. A missing
// chunk is ENOENT; a length beyond MaxChunkSize is EINVAL.
func (e *Engine) Truncate(ctx context.Context, id ChunkID, length int64) (v uint64, err error) {
	defer func() { e.countWrite(0, err) }()
	if err := e.enter(); err != nil {
		return 0, err
	}
	defer e.leave()
	if length < 0 || length > e.maxChunk {
		return 0, proto.Errorf(proto.EINVAL, "chunkengine: truncate chunk %v to %d: outside [0, %d]", id, length, e.maxChunk)
	}
	mu := e.lockChunk(id)
	defer mu.Unlock()
	cur, err := e.current(ctx, id)
	if err != nil {
		return 0, err
	}
	if cur == nil {
		return 0, notFound(id)
	}
	L := cur.length
	switch {
	case length > L:
		z := e.bufs.get(int(length - L))
		defer e.bufs.put(z)
		clear(z.b[:length-L])
		return e.write(ctx, id, cur, L, z.b[:length-L])
	case length == L:
		return e.bump(ctx, id, cur)
	}
	crcs := append([]uint32(nil), cur.crcs[:nblocks(length)]...)
	h, err := e.acquire(id, cur.gen)
	if err != nil {
		return 0, dataLost(id, cur, err)
	}
	defer e.release(h)
	if length%BlockSize != 0 {
		b := length / BlockSize
		x := e.bufs.get(BlockSize)
		defer e.bufs.put(x)
		if err := e.readVerify(ctx, id, cur, h, b*BlockSize, x.b[:BlockSize], blockRange{b, b + 1}); err != nil {
			return 0, err
		}
		crcs[b] = crc32c.Checksum(x.b[:length-b*BlockSize])
	}
	next := &record{version: cur.version + 1, gen: cur.gen, length: length, high: cur.high, crcs: crcs}
	if length == 0 {
		next.gen, next.high = 0, 0
	}
	if err := e.commit(ctx, id, cur, next); err != nil {
		return 0, err
	}
	if length == 0 {
		e.retire(id, cur.gen)
		e.removeFile(id, cur.gen)
	} else if err := unix.Ftruncate(h.f.Fd(), length); err != nil {
		// Only space is lost: bytes beyond the length are never trusted.
		e.log.Warn().Err(err).Stringer("chunk", id).Msg("chunkengine: cannot shrink data file")
	}
	return next.version, nil
}

// write dispatches a write of data at off over committed state cur (nil:
// no chunk yet). The chunk's lock is held.
func (e *Engine) write(ctx context.Context, id ChunkID, cur *record, off int64, data []byte) (uint64, error) {
	if len(data) == 0 {
		return e.bump(ctx, id, cur)
	}
	if cur == nil || (off >= cur.length && cur.high == cur.length) {
		return e.writeInPlace(ctx, id, cur, off, data)
	}
	return e.writeCOW(ctx, id, cur, off, data)
}

// bump commits a new version with unchanged content.
func (e *Engine) bump(ctx context.Context, id ChunkID, cur *record) (uint64, error) {
	next := &record{version: 1}
	if cur != nil {
		c := *cur
		next = &c
		next.version++
	}
	if err := e.commit(ctx, id, cur, next); err != nil {
		return 0, err
	}
	return next.version, nil
}

// writeInPlace writes data at off >= the committed length L into the
// current data file (creating the chunk's first file if it has none), makes
// it durable, then commits. Only bytes at or beyond L change, and no
// snapshot of this file ever covered them (L == high), so a crash before
// the commit leaves the old version readable and concurrent readers of the
// old version never see a changed byte.
func (e *Engine) writeInPlace(ctx context.Context, id ChunkID, cur *record, off int64, data []byte) (uint64, error) {
	var L int64
	var gen, version uint64
	var crcs []uint32
	if cur != nil {
		L, gen, version, crcs = cur.length, cur.gen, cur.version, cur.crcs
	}
	end := off + int64(len(data))
	var h *handle
	var dir string
	created := false
	if gen == 0 {
		g, err := e.newGen(ctx)
		if err != nil {
			return 0, err
		}
		h, dir, err = e.createFile(id, g)
		if err != nil {
			return 0, ioError(id, "create data file", err)
		}
		gen, created = g, true
	} else {
		var err error
		if h, err = e.acquire(id, gen); err != nil {
			return 0, dataLost(id, cur, err)
		}
	}
	fail := func(err error, maybeCommitted bool) (uint64, error) {
		if created {
			e.discardNew(id, h, maybeCommitted)
		} else {
			e.release(h)
		}
		return 0, err
	}
	if err := e.writeTail(ctx, id, cur, h, L, off, data); err != nil {
		return fail(err, false)
	}
	if err := e.syncData(ctx, id, h, dir, created); err != nil {
		return fail(err, false)
	}
	next := &record{
		version: version + 1,
		gen:     gen,
		length:  end,
		high:    end,
		crcs:    extendCRCs(crcs, L, off, data),
	}
	if err := e.commit(ctx, id, cur, next); err != nil {
		return fail(err, true)
	}
	if created {
		e.adopt(h)
	}
	e.release(h)
	return next.version, nil
}

// writeTail writes zeros over [L, off) and data at off into h's file. With
// O_DIRECT the write is widened to whole blocks: the committed bytes of the
// block holding L are read (and verified) and written back unchanged, so
// even a torn write leaves them intact.
func (e *Engine) writeTail(ctx context.Context, id ChunkID, cur *record, h *handle, L, off int64, data []byte) error {
	end := off + int64(len(data))
	var op uring.Op
	if h.f.Direct() {
		a0, a1 := alignDown(L), alignUp(end)
		x := e.bufs.get(int(a1 - a0))
		defer e.bufs.put(x)
		buf := x.b[:a1-a0]
		if L > a0 {
			b := a0 / BlockSize
			if err := e.readVerify(ctx, id, cur, h, a0, buf[:BlockSize], blockRange{b, b + 1}); err != nil {
				return err
			}
		}
		clear(buf[L-a0:])
		copy(buf[off-a0:], data)
		op = uring.Op{Kind: uring.OpWrite, Fd: h.f.Fd(), Off: a0, Buf: buf}
	} else if off > L {
		x := e.bufs.get(int(end - L))
		defer e.bufs.put(x)
		buf := x.b[:end-L]
		clear(buf[:off-L])
		copy(buf[off-L:], data)
		op = uring.Op{Kind: uring.OpWrite, Fd: h.f.Fd(), Off: L, Buf: buf}
	} else {
		op = uring.Op{Kind: uring.OpWrite, Fd: h.f.Fd(), Off: off, Buf: data}
	}
	return e.do(ctx, id, "write", op)
}

// extendCRCs returns the block CRCs after zeros over [L, off) and data at
// off were appended to a chunk of length L with CRCs old. The CRC of the old
// partial last block is continued, not recomputed: CRC32C(a||b) is
// crc32.Update(CRC32C(a), b).
func extendCRCs(old []uint32, L, off int64, data []byte) []uint32 {
	end := off + int64(len(data))
	crcs := make([]uint32, nblocks(end))
	copy(crcs, old[:L/BlockSize])
	for b := L / BlockSize; b < int64(len(crcs)); b++ {
		bs, be := b*BlockSize, min((b+1)*BlockSize, end)
		var c uint32
		from := bs
		if bs < L {
			c, from = old[b], L
		}
		if z := min(be, off) - from; z > 0 {
			c = crcZeros(c, z)
		}
		if ds := max(from, off); be > ds {
			c = crc32c.Update(c, data[ds-off:be-off])
		}
		crcs[b] = c
	}
	return crcs
}

// writeCOW builds the chunk's new content (the old bytes not overwritten,
// read and verified, plus data) in memory, writes it to a new data file,
// makes file and directory entry durable, commits the record naming the new
// file, and only then unlinks the old one. A crash before the commit leaves
// an orphan file that Open removes; readers holding the old file keep
// reading it.
func (e *Engine) writeCOW(ctx context.Context, id ChunkID, cur *record, off int64, data []byte) (uint64, error) {
	L := cur.length
	end := off + int64(len(data))
	newLen := max(L, end)
	a := alignUp(newLen)
	x := e.bufs.get(int(a))
	defer e.bufs.put(x)
	buf := x.b[:a]

	// Old blocks to carry over: all but those data covers entirely.
	nOld := nblocks(L)
	fullLo, fullHi := (off+BlockSize-1)/BlockSize, end/BlockSize
	var ranges []blockRange
	if fullLo >= fullHi {
		ranges = append(ranges, blockRange{0, nOld})
	} else {
		ranges = append(ranges, blockRange{0, min(fullLo, nOld)}, blockRange{fullHi, nOld})
	}
	old, err := e.acquire(id, cur.gen)
	if err != nil {
		return 0, dataLost(id, cur, err)
	}
	err = e.readVerify(ctx, id, cur, old, 0, buf, ranges...)
	e.release(old)
	if err != nil {
		return 0, err
	}
	clear(buf[L:])
	copy(buf[off:], data)

	crcs := make([]uint32, nblocks(newLen))
	copy(crcs, cur.crcs)
	cs, ce := off, end
	if newLen > L {
		cs, ce = min(cs, L), newLen
	}
	for b := cs / BlockSize; b*BlockSize < ce; b++ {
		crcs[b] = crc32c.Checksum(buf[b*BlockSize : min((b+1)*BlockSize, newLen)])
	}

	gen, err := e.newGen(ctx)
	if err != nil {
		return 0, err
	}
	h, dir, err := e.createFile(id, gen)
	if err != nil {
		return 0, ioError(id, "create data file", err)
	}
	wbuf := buf[:newLen]
	if h.f.Direct() {
		wbuf = buf
	}
	if err := e.do(ctx, id, "write", uring.Op{Kind: uring.OpWrite, Fd: h.f.Fd(), Buf: wbuf}); err != nil {
		e.discardNew(id, h, false)
		return 0, err
	}
	if err := e.syncData(ctx, id, h, dir, true); err != nil {
		e.discardNew(id, h, false)
		return 0, err
	}
	next := &record{version: cur.version + 1, gen: gen, length: newLen, high: newLen, crcs: crcs}
	if err := e.commit(ctx, id, cur, next); err != nil {
		e.discardNew(id, h, true)
		return 0, err
	}
	e.adopt(h)
	e.release(h)
	e.retire(id, cur.gen)
	e.removeFile(id, cur.gen)
	return next.version, nil
}

// syncData makes h's data durable: fdatasync for a file that already
// existed (its size change is covered), fsync plus an fsync of its
// directory for a new one, so the entry survives a crash too.
func (e *Engine) syncData(ctx context.Context, id ChunkID, h *handle, dir string, created bool) error {
	kind := uring.OpFdatasync
	if created {
		kind = uring.OpFsync
	}
	e.stats.fsyncs.Add(1)
	if err := e.do(ctx, id, kind.String(), uring.Op{Kind: kind, Fd: h.f.Fd()}); err != nil {
		return err
	}
	if created {
		e.stats.fsyncs.Add(1)
		return syncDir(dir)
	}
	return nil
}

// discardNew drops a data file created for a write that failed. If the
// commit may have happened (an error from the KV after its fsync), the KV
// decides whether the file is now the chunk's.
func (e *Engine) discardNew(id ChunkID, h *handle, maybeCommitted bool) {
	gen := h.gen
	e.release(h)
	if maybeCommitted {
		rec, err := e.load(context.Background(), id)
		if err != nil || (rec != nil && rec.gen == gen) {
			return // committed after all, or unknown: Open's orphan scan decides
		}
	}
	e.removeFile(id, gen)
}

// do runs one IO op and returns its error, wrapped with the chunk.
func (e *Engine) do(ctx context.Context, id ChunkID, what string, op uring.Op) error {
	ops := [1]uring.Op{op}
	err := e.ring.Do(ctx, ops[:])
	if err == nil {
		err = ops[0].Err
	}
	if err == nil && op.Kind <= uring.OpWrite && ops[0].N != len(op.Buf) {
		err = fmt.Errorf("short %s: %d of %d bytes", what, ops[0].N, len(op.Buf))
	}
	if err != nil {
		return ioError(id, what, err)
	}
	return nil
}

// ioError wraps an IO failure; running out of space becomes proto's
// ENOSPC so that callers can match it with errors.Is.
func ioError(id ChunkID, what string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return proto.Errorf(proto.ENOSPC, "chunkengine: chunk %v: %s: %v", id, what, err)
	}
	return fmt.Errorf("chunkengine: chunk %v: %s: %w", id, what, err)
}
