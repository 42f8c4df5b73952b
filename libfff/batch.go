package libfff

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"slices"
	"sync"
	"time"

	"fff/ffrecord"
	"fff/internal/crc32c"
	"fff/internal/proto"
	"fff/internal/rpc"
)

// Batched reads (DESIGN §7): the heart of the data loader. Every read —
// File.ReadAt as much as Client.ReadBatch — goes through readSegs: the
// ranges are cut on chunk boundaries, routed to a serving replica of each
// chunk's chain, grouped per storage node, coalesced where ranges of one
// chunk touch, packed into requests of at most maxReqIOs IOs and
// maxReqBytes bytes, and the requests issued in parallel (pipelined over
// the node's pooled connections). Each response's payload lands in the
// callers' destinations.

// ReadOp is one read of a Client.ReadBatch: fill Dst from File at Off.
type ReadOp struct {
	File *File
	Off  int64
	Dst  []byte

	// N is set to the number of bytes read into Dst: len(Dst) unless the
	// file ends first or the read failed.
	N int
	// Err is set to nil, io.EOF when the file ends before Dst is full (N
	// bytes were read), or the failure (an *fs.PathError).
	Err error
	// Sum is the CRC32C of Dst when Summed. A read sets it when it
	// computed the checksum over the very bytes it delivered into Dst, as
	// local reads do while verifying the chunk's blocks: a caller that
	// checks its own checksums (an FFRecord reader) compares with Sum
	// instead of hashing Dst again. Reads through a socket leave Summed
	// false: the node's block checks ran on its side of the wire.
	Sum    uint32
	Summed bool
}

// readParallel bounds the storage read requests one batch has in flight.
const readParallel = 16

// ReadBatch performs many reads at once, across any number of files of
// this client, and completes each op in place (N and Err). Reads past a
// file's end are short with io.EOF, as ReadAt's. It returns a non-nil
// error only when the batch as a whole failed (ctx ended); per-op failures
// go into ReadOp.Err. Destinations must not overlap.
func (c *Client) ReadBatch(ctx context.Context, ops []ReadOp) error {
	start := time.Now()
	defer func() { c.countBatch(ops, time.Since(start)) }()
	var segs []*seg
	refreshed := map[*File]bool{}
	for k := range ops {
		op := &ops[k]
		op.N, op.Err = 0, nil
		f := op.File
		switch {
		case f == nil || f.c != c:
			op.Err = &fs.PathError{Op: "read", Path: "", Err: errorf(proto.EINVAL)}
			continue
		case op.Off < 0:
			op.Err = &fs.PathError{Op: "read", Path: f.name, Err: errorf(proto.EINVAL)}
			continue
		case op.Off > proto.MaxFileSize:
			op.Err = checkRange("read", f.name, op.Off, 0)
			continue
		}
		if err := f.readable(); err != nil {
			op.Err = err
			continue
		}
		if f.settle() {
			op.Err = f.errClosed("read")
			continue
		}
		// No file reaches past MaxFileSize: a longer read is short there
		// (io.EOF), like any read past the end, and cannot overflow.
		end := op.Off + min(int64(len(op.Dst)), proto.MaxFileSize-op.Off)
		size := f.Size()
		if end > size && !refreshed[f] {
			refreshed[f] = true
			if err := f.refreshSize(ctx); err != nil {
				op.Err = &fs.PathError{Op: "read", Path: f.name, Err: err}
				continue
			}
			size = f.Size()
		}
		n := int(max(0, min(end, size, proto.MaxFileSize)-op.Off))
		op.N = n
		if n < len(op.Dst) {
			op.Err = io.EOF
		}
		for _, p := range splitRange(f.layout.ChunkSize, op.Off, n) {
			segs = append(segs, &seg{off: p.off, dst: op.Dst[p.pos : p.pos+int(p.n)], op: k, layout: f.layout, ino: f.ino, index: p.index, caps: f.caps})
		}
	}
	c.readSegs(ctx, segs)
	for _, s := range segs {
		op := &ops[s.op]
		if s.err != nil && (op.Err == nil || op.Err == io.EOF) {
			op.N = 0
			op.Err = &fs.PathError{Op: "read", Path: op.File.name, Err: s.err}
		}
	}
	for k := range ops {
		ops[k].Sum, ops[k].Summed = 0, ops[k].Err == nil
	}
	for _, s := range segs { // an op's segs are in order
		if op := &ops[s.op]; op.Summed {
			op.Sum, op.Summed = crc32c.Combine(op.Sum, s.sum, int64(len(s.dst))), s.summed
		}
	}
	return ctx.Err()
}

// readSegs reads every seg, setting seg.err for those that failed. Segs
// that fail with a retryable error are routed again (after a routing
// refresh, to the next replica) up to maxAttempts times.
func (c *Client) readSegs(ctx context.Context, segs []*seg) {
	pending := segs
	var o outage
	// round counts every pass (it moves reads to the next replica);
	// attempt only those that were not an outage or failover waited out.
	for round, attempt := 0, 0; attempt < maxAttempts && len(pending) > 0; round, attempt = round+1, attempt+1 {
		if attempt > 0 {
			cause := pending[0].err
			for _, s := range pending {
				if proto.CodeOf(s.err) != proto.ChunkPending {
					cause = s.err
					break
				}
			}
			if c.again(ctx, &o, proto.MethodStorageRead, cause) {
				attempt-- // an outage waited out is no failed try
			}
			c.refreshRouting(ctx, cause)
		}
		ri, err := c.Routing(ctx)
		if err != nil {
			for _, s := range pending {
				s.err = err
			}
			return
		}
		routed := make([]*seg, 0, len(pending))
		for _, s := range pending {
			s.attempt = round
			if s.toTail {
				s.r, s.err = tailRoute(ri, s.layout, s.ino, s.index)
			} else {
				s.r, s.err = readRoute(ri, s.layout, s.ino, s.index, round, c.near())
			}
			if s.err == nil {
				routed = append(routed, s)
			}
		}
		type request struct {
			addr string
			ios  []rio
		}
		var reqs []request
		for addr, ios := range coalesce(routed) {
			for _, r := range splitRequests(ios, maxReqIOs, requestBytes(ios)) {
				reqs = append(reqs, request{addr, r})
			}
		}
		if len(reqs) == 1 {
			c.readRequest(ctx, reqs[0].addr, reqs[0].ios)
		} else {
			sem := make(chan struct{}, readParallel)
			var wg sync.WaitGroup
			for _, r := range reqs {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer func() { <-sem; wg.Done() }()
					c.readRequest(ctx, r.addr, r.ios)
				}()
			}
			wg.Wait()
		}
		var again []*seg
		renewed := map[*fileCap]error{}
		for _, s := range pending {
			switch {
			case s.err == nil || ctx.Err() != nil:
			case capRefused(s.err) && !s.renewed && s.caps != nil:
				// Once per file and round, and once per seg: a seg
				// refused again keeps its error. A failed renewal is
				// the seg's error: meta's reason (EACCES once the file
				// may no longer be read) says more than storage's.
				err, done := renewed[s.caps]
				if !done {
					err = s.caps.renew(ctx, s.caps.current())
					renewed[s.caps] = err
				}
				s.renewed = true
				if err != nil {
					s.err = err
					continue
				}
				again = append(again, s)
			case proto.CodeOf(s.err) == proto.ChunkPending && !s.toTail:
				// A write is on its way down the chain: the last
				// serving replica has every committed version.
				s.toTail = true
				again = append(again, s)
			case retryable(s.err):
				again = append(again, s)
			}
		}
		pending = again
		c.stats.retries.Add(int64(len(again)))
	}
}

// capsOf returns the capabilities of the files ios read, one per inode.
func capsOf(ctx context.Context, ios []rio) []proto.Capability {
	var out []proto.Capability
	for _, r := range ios {
		fc := r.segs[0].caps
		if fc == nil || slices.ContainsFunc(out, func(c proto.Capability) bool { return c.Ino == fc.ino }) {
			continue
		}
		if cp := fc.get(ctx); cp != nil {
			out = append(out, *cp)
		}
	}
	return out
}

// minSplit is the request size below which a node's reads are not spread
// over several requests.
const minSplit = 1 << 20

// requestBytes is the request size cap for a node's IOs: maxReqBytes, or
// less so that a large read of a few chunks goes out as up to four
// requests in parallel.
func requestBytes(ios []rio) int {
	total := 0
	for _, r := range ios {
		total += int(r.io.Len)
	}
	return min(maxReqBytes, max(minSplit, (total+3)/4))
}

// readRequest sends one storage read request and completes its segs.
func (c *Client) readRequest(ctx context.Context, addr string, ios []rio) {
	pool := c.storagePool(addr)
	if c.local != nil {
		if ios = c.readLocal(ctx, addr, pool, ios); len(ios) == 0 {
			return
		}
	}
	req := proto.StorageReadReq{IOs: make([]proto.ReadIO, len(ios)), Caps: capsOf(ctx, ios)}
	for k := range ios {
		req.IOs[k] = ios[k].io
	}
	into, total := receive(ios)
	var resp proto.StorageReadResp
	n, err := pool.Call(ctx, proto.MethodStorageRead, &req, &resp, into)
	if err == nil && (len(resp.Results) != len(ios) || n != total) {
		err = proto.Errorf(proto.EIO, "storage %s answered %d results and %d bytes for %d reads of %d bytes", addr, len(resp.Results), n, len(ios), total)
	}
	if err != nil {
		for _, r := range ios {
			for _, s := range r.segs {
				s.err = err
			}
		}
		return
	}
	for k, res := range resp.Results {
		var err error
		if res.Code != proto.OK {
			err = &proto.Error{Code: res.Code, Msg: res.Msg}
		}
		for _, s := range ios[k].segs {
			s.err = err
		}
	}
}

// receive returns the call option that lands a read response's payload
// (for each IO in order, its Len bytes) straight from the socket in the
// destinations of ios, without a copy, and the payload size to expect.
func receive(ios []rio) (rpc.CallOption, int) {
	dsts := destinations(ios)
	total := 0
	for _, d := range dsts {
		total += len(d)
	}
	return rpc.IntoBuffers(dsts...), total
}

// destinations lists the destination slices of ios in payload order.
func destinations(ios []rio) [][]byte {
	n := 0
	for _, r := range ios {
		n += len(r.segs)
	}
	out := make([][]byte, 0, n)
	for _, r := range ios {
		for _, s := range r.segs {
			out = append(out, s.dst)
		}
	}
	return out
}

// Batcher returns an ffrecord.Batcher that serves reads of *File sources
// of this client with ReadBatch (so FFRecord datasets stored in fff are
// read by batched, coalesced storage requests) and any other io.ReaderAt
// with concurrent ReadAt calls.
func (c *Client) Batcher() ffrecord.Batcher { return batcher{c} }

type batcher struct{ c *Client }

func (b batcher) ReadBatch(ctx context.Context, reads []ffrecord.BatchRead) error {
	var ops []ReadOp
	var idx []int
	var other []ffrecord.BatchRead
	var otherIdx []int
	for k, rd := range reads {
		if f, ok := rd.Src.(*File); ok && f.c == b.c {
			ops = append(ops, ReadOp{File: f, Off: rd.Off, Dst: rd.Buf})
			idx = append(idx, k)
		} else {
			other = append(other, rd)
			otherIdx = append(otherIdx, k)
		}
	}
	var errOther error
	var wg sync.WaitGroup
	if len(other) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errOther = ffrecord.ReadAtBatch(ctx, other, 64)
		}()
	}
	err := b.c.ReadBatch(ctx, ops)
	wg.Wait()
	for j, op := range ops {
		e := op.Err
		if e == io.EOF {
			e = io.ErrUnexpectedEOF
		}
		reads[idx[j]].Err = e
		reads[idx[j]].CRC32C, reads[idx[j]].Summed = op.Sum, op.Summed
	}
	for j, rd := range other {
		reads[otherIdx[j]].Err = rd.Err
	}
	return errors.Join(err, errOther)
}
