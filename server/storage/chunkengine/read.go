package chunkengine

import (
	"context"
	"errors"
	"io/fs"
	"unsafe"

	"fff/internal/crc32c"
	"fff/internal/proto"
	"fff/internal/uring"
)

// ReadReq is one read of a ReadBatch: Dst receives chunk ID's bytes from
// Off. ReadBatch sets N (bytes delivered; fewer than len(Dst) only where the
// chunk's committed length ends), Version (the committed version the bytes
// belong to) and Err.
type ReadReq struct {
	ID      ChunkID
	Off     int64
	Dst     []byte
	N       int
	Version uint64
	Err     error
}

// Read reads chunk id's committed bytes from off into dst and returns how
// many it delivered and the version they belong to. Like a file, it
// returns a short count (and no error) where the chunk ends: n is
// min(len(dst), length-off), 0 at or past the end. A missing chunk is
// ENOENT. Every block the read touches is verified against its CRC32C; a
// mismatch is a ChecksumMismatch error naming chunk and block, with n = 0
// and dst zeroed: damaged bytes are never delivered.
func (e *Engine) Read(ctx context.Context, id ChunkID, off int64, dst []byte) (n int, version uint64, err error) {
	req := [1]ReadReq{{ID: id, Off: off, Dst: dst}}
	if err := e.ReadBatch(ctx, req[:]); err != nil && req[0].Err == nil {
		return 0, 0, err
	}
	return req[0].N, req[0].Version, req[0].Err
}

// Location is where committed bytes of a chunk are on disk (see Locate).
type Location struct {
	Version uint64
	Length  int64
	// Path is the absolute path of the data file, which holds the chunk's
	// bytes at their chunk offsets.
	Path string
	// CRCs are the CRC32C of blocks FirstBlock, FirstBlock+1, ... of
	// BlockSize bytes (the last block's covering only bytes below Length).
	// CRCs is the committed record's own slice (records never change once
	// committed): read it, do not write it.
	FirstBlock int64
	CRCs       []uint32
}

// Locate returns where the committed bytes [off, off+n) of chunk id are,
// for a reader in another process on this host: the chunk's version and
// length, its data file, and the checksums of the blocks that cover the
// range below the length. A missing chunk is ENOENT. The file keeps that
// version's bytes until a later version replaces it (copy-on-write: the
// path then no longer exists) or shrinks it (the file is then short);
// appends never touch them. So a reader that gets a full read whose blocks
// match CRCs has exactly the bytes of Version, and one that does not must
// read through the engine (Read), which tells a change from damage.
func (e *Engine) Locate(ctx context.Context, id ChunkID, off, n int64) (Location, error) {
	if off < 0 || n < 0 {
		return Location{}, proto.Errorf(proto.EINVAL, "chunkengine: locate chunk %v: negative range %d+%d", id, off, n)
	}
	if err := e.enter(); err != nil {
		return Location{}, err
	}
	defer e.leave()
	rec, err := e.current(ctx, id)
	if err != nil {
		return Location{}, err
	}
	if rec == nil {
		return Location{}, notFound(id)
	}
	loc := Location{Version: rec.version, Length: rec.length, Path: e.filePath(id, rec.gen)}
	if end := min(off+n, rec.length); off < end {
		first, last := off/BlockSize, (end+BlockSize-1)/BlockSize
		loc.FirstBlock, loc.CRCs = first, rec.crcs[first:last:last]
	}
	return loc, nil
}

// maxReadAttempts bounds how often one request is re-planned because the
// chunk changed between its snapshot and its IO.
const maxReadAttempts = 10

// ReadBatch performs every read of reqs (as Read does), issuing all their
// IO in one ring submission. It reports per-request results in the
// requests and returns non-nil only when it could not finish (ctx ended,
// the engine or ring closed); requests without a result then carry that
// error.
//
// Reads take no lock that a write holds: each uses the committed record it
// found (from the cache or the KV) and the data file it names, which stays
// readable through the open descriptor even if a newer version replaces it.
// If the IO finds the file gone, short, or not matching the checksums, and
// the chunk has meanwhile committed a newer version, the read is redone
// against that version; otherwise the failure is reported.
func (e *Engine) ReadBatch(ctx context.Context, reqs []ReadReq) error {
	for i := range reqs {
		reqs[i].N, reqs[i].Version, reqs[i].Err = 0, 0, nil
	}
	if err := e.enter(); err != nil {
		for i := range reqs {
			reqs[i].Err = err
		}
		return err
	}
	defer e.leave()
	defer e.countReads(reqs)
	sc, _ := e.scratch.Get().(*readScratch)
	if sc == nil {
		sc = &readScratch{}
	}
	defer e.putScratch(sc)
	pending := sc.pending[:0]
	for i := range reqs {
		pending = append(pending, i)
	}
	for attempt := 1; len(pending) > 0; attempt++ {
		plans, ops := sc.plans[:0], sc.ops[:0]
		for _, i := range pending {
			if p, ok := e.plan(ctx, i, &reqs[i], &ops); ok {
				plans = append(plans, p)
			}
		}
		sc.plans, sc.ops = plans, ops
		if err := e.ring.Do(ctx, ops); err != nil {
			for k := range plans {
				p := &plans[k]
				if p.q.Err == nil {
					p.q.Err = ioError(p.q.ID, "read", err)
				}
				e.donePlan(p)
			}
			return err
		}
		pending = pending[:0]
		for k := range plans {
			if e.finish(ctx, &plans[k], ops, attempt < maxReadAttempts) {
				pending = append(pending, plans[k].idx)
			}
		}
	}
	sc.pending = pending
	return nil
}

// readScratch is ReadBatch's reusable working memory.
type readScratch struct {
	pending []int
	plans   []readPlan
	ops     []uring.Op
}

func (e *Engine) putScratch(sc *readScratch) {
	if cap(sc.plans) > 1024 || cap(sc.ops) > 4096 {
		return // do not keep huge batches' memory around
	}
	clear(sc.plans[:cap(sc.plans)])
	clear(sc.ops[:cap(sc.ops)])
	e.scratch.Put(sc)
}

// readPlan is one request's IO: up to three pieces (a partially wanted
// first block, the wholly wanted blocks, a partially wanted last block),
// each an op reading whole blocks either into the caller's buffer or into
// an aligned bounce buffer.
type readPlan struct {
	idx     int
	q       *ReadReq
	rec     *record
	h       *handle
	openErr error
	end     int64 // end of the delivered range: min(Off+len(Dst), length)
	op0     int   // index of the first op in the batch
	n       int   // number of pieces
	pieces  [3]readPiece
}

type readPiece struct {
	foff   int64 // file offset of the op, block-aligned
	bounce *abuf // nil: the op reads straight into q.Dst
}

// plan snapshots the request's chunk and appends its ops. It returns false
// when the request is already finished (error, or nothing to read).
func (e *Engine) plan(ctx context.Context, idx int, q *ReadReq, ops *[]uring.Op) (readPlan, bool) {
	q.N, q.Version, q.Err = 0, 0, nil
	if q.Off < 0 {
		q.Err = proto.Errorf(proto.EINVAL, "chunkengine: read chunk %v at negative offset %d", q.ID, q.Off)
		return readPlan{}, false
	}
	rec, err := e.current(ctx, q.ID)
	if err != nil {
		q.Err = err
		return readPlan{}, false
	}
	if rec == nil {
		q.Err = notFound(q.ID)
		return readPlan{}, false
	}
	q.Version = rec.version
	off := q.Off
	if off >= rec.length || len(q.Dst) == 0 {
		return readPlan{}, false
	}
	end := min(rec.length, off+int64(len(q.Dst)))
	p := readPlan{idx: idx, q: q, rec: rec, end: end, op0: len(*ops)}
	p.h, err = e.acquire(q.ID, rec.gen)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			q.Err = ioError(q.ID, "open data file", err)
			return readPlan{}, false
		}
		p.openErr = err // replaced meanwhile, or lost: finish decides
		return p, true
	}
	direct := p.h.f.Direct()
	head := int64(-1)
	if off%BlockSize != 0 {
		head = off / BlockSize
		e.addBlock(&p, ops, head)
	}
	if m0, m1 := alignUp(off), alignDown(end); m0 < m1 {
		dst := p.q.Dst[m0-off : m1-off]
		if direct && uintptr(unsafe.Pointer(&dst[0]))%uring.Align != 0 {
			x := e.bufs.get(int(m1 - m0))
			p.add(ops, m0, x.b[:m1-m0], x)
		} else {
			p.add(ops, m0, dst, nil)
		}
	}
	if end%BlockSize != 0 {
		if tail := end / BlockSize; tail != head {
			e.addBlock(&p, ops, tail)
		}
	}
	return p, true
}

func (p *readPlan) add(ops *[]uring.Op, foff int64, buf []byte, bounce *abuf) {
	p.pieces[p.n] = readPiece{foff: foff, bounce: bounce}
	p.n++
	*ops = append(*ops, uring.Op{Kind: uring.OpRead, Fd: p.h.f.Fd(), Off: foff, Buf: buf})
}

// addBlock reads block b into a bounce buffer.
func (e *Engine) addBlock(p *readPlan, ops *[]uring.Op, b int64) {
	x := e.bufs.get(BlockSize)
	p.add(ops, b*BlockSize, x.b[:BlockSize], x)
}

// finish verifies and delivers one planned request after its IO. It
// returns true if the request must be planned again (the chunk changed
// under it and retry allows it).
func (e *Engine) finish(ctx context.Context, p *readPlan, ops []uring.Op, retry bool) bool {
	defer e.donePlan(p)
	q, rec := p.q, p.rec
	fail := func(err error) bool {
		if retry && e.stale(ctx, q.ID, rec) {
			e.stats.readRetries.Add(1)
			return true
		}
		q.N, q.Err = 0, err
		clear(q.Dst)
		return false
	}
	if p.openErr != nil {
		return fail(dataLost(q.ID, rec, p.openErr))
	}
	for k := range p.n {
		op, pc := &ops[p.op0+k], &p.pieces[k]
		if op.Err != nil {
			return fail(ioError(q.ID, "read", op.Err))
		}
		need := int(min(pc.foff+int64(len(op.Buf)), rec.length) - pc.foff)
		if op.N < need {
			return fail(proto.Errorf(proto.ChecksumMismatch,
				"chunkengine: chunk %v version %d: data file ends at %d, committed length %d",
				q.ID, rec.version, pc.foff+int64(op.N), rec.length))
		}
		if err := verify(q.ID, rec, pc.foff, op.Buf[:need]); err != nil {
			return fail(err)
		}
	}
	for k := range p.n {
		op, pc := &ops[p.op0+k], &p.pieces[k]
		if pc.bounce == nil {
			continue
		}
		lo, hi := max(pc.foff, q.Off), min(pc.foff+int64(len(op.Buf)), p.end)
		copy(q.Dst[lo-q.Off:hi-q.Off], op.Buf[lo-pc.foff:hi-pc.foff])
	}
	q.N = int(p.end - q.Off)
	return false
}

// donePlan releases what plan took. Idempotent.
func (e *Engine) donePlan(p *readPlan) {
	for k := range p.n {
		e.bufs.put(p.pieces[k].bounce)
		p.pieces[k].bounce = nil
	}
	p.n = 0
	e.release(p.h)
	p.h = nil
}

// stale reports whether chunk id committed a change after snapshot rec.
func (e *Engine) stale(ctx context.Context, id ChunkID, rec *record) bool {
	cur, err := e.current(ctx, id)
	return err == nil && (cur == nil || cur.version != rec.version || cur.gen != rec.gen)
}

// blockRange is the blocks [lo, hi) of a chunk.
type blockRange struct{ lo, hi int64 }

// readVerify reads the given blocks of rec's data file h into buf, where
// buf[i] holds file offset base+i, and verifies every committed byte. It is
// the writer's read: rec is current (the chunk's lock is held).
func (e *Engine) readVerify(ctx context.Context, id ChunkID, rec *record, h *handle, base int64, buf []byte, ranges ...blockRange) error {
	ops := make([]uring.Op, 0, len(ranges))
	for _, r := range ranges {
		if r.lo < r.hi {
			s, t := r.lo*BlockSize, r.hi*BlockSize
			ops = append(ops, uring.Op{Kind: uring.OpRead, Fd: h.f.Fd(), Off: s, Buf: buf[s-base : t-base]})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	if err := e.ring.Do(ctx, ops); err != nil {
		return ioError(id, "read", err)
	}
	for i := range ops {
		op := &ops[i]
		if op.Err != nil {
			return ioError(id, "read", op.Err)
		}
		need := int(min(op.Off+int64(len(op.Buf)), rec.length) - op.Off)
		if op.N < need {
			return proto.Errorf(proto.ChecksumMismatch,
				"chunkengine: chunk %v version %d: data file ends at %d, committed length %d",
				id, rec.version, op.Off+int64(op.N), rec.length)
		}
		if err := verify(id, rec, op.Off, op.Buf[:need]); err != nil {
			return err
		}
	}
	return nil
}

// verify checks data, the committed bytes of rec's file from the
// block-aligned offset foff, block by block.
func verify(id ChunkID, rec *record, foff int64, data []byte) error {
	for i := 0; i < len(data); i += BlockSize {
		blk := data[i:min(i+BlockSize, len(data))]
		b := (foff + int64(i)) / BlockSize
		if got := crc32c.Checksum(blk); got != rec.crcs[b] {
			return proto.Errorf(proto.ChecksumMismatch,
				"chunkengine: chunk %v version %d block %d (bytes %d-%d): crc32c %08x, stored %08x",
				id, rec.version, b, b*BlockSize, b*BlockSize+int64(len(blk)), got, rec.crcs[b])
		}
	}
	return nil
}

// dataLost reports a data file that a committed record names but that
// cannot be opened. A missing file is a ChecksumMismatch (the chunk's bytes
// are gone from this target; another replica has them).
func dataLost(id ChunkID, rec *record, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return proto.Errorf(proto.ChecksumMismatch, "chunkengine: chunk %v version %d: data file missing: %v",
			id, rec.version, err)
	}
	return ioError(id, "open data file", err)
}
