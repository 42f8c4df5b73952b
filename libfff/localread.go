package libfff

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/rs/zerolog"

	"fff/internal/crc32c"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/uring"
)

// Local reads (short-circuit reads). When a storage node runs on this host
// and the client reaches it over the node's Unix socket, moving the bytes
// through the socket costs two copies and the socket's own work on cores
// that the disk's completions, the server and the training job all share.
// So the client asks the node only where the bytes are
// (proto.MethodStorageLocate: the chunk's committed version and length, the
// path of its data file, the CRC32C of the blocks it wants) and reads the
// data file itself through its own io_uring with O_DIRECT, straight into
// the destination when that is block-aligned, and verifies every block
// against the checksums before delivering a byte.
//
// The node keeps every guarantee it gives socket reads: it checks the chain
// and the target's state for each IO and answers from the committed record,
// and a data file never changes the committed bytes of a version in place
// (the chunk engine writes overwrites copy-on-write and appends beyond
// every committed length; a shrink only makes the file shorter). So a full
// read whose blocks match the checksums is exactly the version the node
// named. Whatever else the client finds — the file gone or short (a newer
// version replaced or shrank it), a checksum mismatch, an IO error — it
// hands that IO back to the socket read, where the node reads again and
// tells a change from damage (proto.ChecksumMismatch).
//
// Local reads need the client to be allowed to open the node's data files:
// true for `fff up` (one user runs the node and the jobs) and for root. A
// client that cannot (EACCES), or whose node does not serve Locate, reads
// through the socket from then on; Options.NoLocalRead and FFF_NO_LOCAL_READ
// turn local reads off. docs/wire.md describes the exchange.

// Open data files kept for local reads, and how long an unused one stays
// open: not long, since an open descriptor keeps a deleted or replaced
// chunk file's blocks allocated.
const (
	maxLocalFiles = 512
	localFileIdle = 3 * time.Second
	localRingSize = 128
)

// localReadMin is the smallest IO read locally. Below it the socket's copies
// cost less than the per-IO work of a local read (the location's path and
// checksums, a file lookup, a bounce buffer): 4 KiB samples read 2–5%
// faster through the socket in side-by-side runs, 128 KiB ones faster
// locally.
const localReadMin = 16 << 10

// localReads is a client's local-read state.
type localReads struct {
	log zerolog.Logger

	mu      sync.Mutex
	ring    *uring.Ring // created on first use
	files   map[string]*localFile
	off     map[string]bool // node addresses local reads gave up on
	allOff  bool            // no io_uring here, or closed
	sweeper *time.Timer
	blocks  *crc32c.Blocks // the checker for the last block size seen

	bytes, fallbacks atomic.Int64

	hostIPs func() map[string]bool // this host's addresses, listed once
}

type localFile struct {
	f    *uring.File
	refs int
	used time.Time
}

func newLocalReads(log zerolog.Logger) *localReads {
	return &localReads{log: log, files: map[string]*localFile{}, off: map[string]bool{}, hostIPs: sync.OnceValue(interfaceIPs)}
}

// interfaceIPs lists the addresses of this host's interfaces.
func interfaceIPs() map[string]bool {
	out := map[string]bool{}
	addrs, _ := net.InterfaceAddrs() // none: only loopback counts as here
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			out[n.IP.String()] = true
		}
	}
	return out
}

// here reports whether node n listens on this host: a loopback address or
// one of the host's, where its chunk files can be read directly.
func (l *localReads) here(n *proto.Node) bool {
	host, _, err := net.SplitHostPort(n.Addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || l.hostIPs()[ip.String()])
}

// usable returns the ring to read with, or nil when local reads are off for
// the node at addr.
func (l *localReads) usable(addr string) *uring.Ring {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.allOff || l.off[addr] {
		return nil
	}
	if l.ring == nil {
		r, err := uring.NewRing(localRingSize)
		if err != nil {
			l.allOff = true
			l.log.Info().Err(err).Msg("local reads off: reading through the storage nodes' sockets")
			return nil
		}
		l.ring = r
	}
	return l.ring
}

// checker returns the block checker for blocks of bs bytes.
func (l *localReads) checker(bs int) *crc32c.Blocks {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.blocks == nil || l.blocks.Size() != bs {
		l.blocks = crc32c.NewBlocks(bs)
	}
	return l.blocks
}

// disable stops local reads from the node at addr, for the reason err.
func (l *localReads) disable(addr string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.off[addr] {
		l.off[addr] = true
		l.log.Info().Err(err).Str("node", addr).Msg("local reads off for this node: reading through its socket")
	}
}

// open returns the open data file at path, taking a reference.
func (l *localReads) open(ring *uring.Ring, path string) (*localFile, error) {
	l.mu.Lock()
	if lf := l.files[path]; lf != nil {
		lf.refs++
		l.mu.Unlock()
		return lf, nil
	}
	l.mu.Unlock()
	f, err := uring.Open(path, ring, uring.Options{})
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.allOff {
		f.Close()
		return nil, uring.ErrClosed
	}
	if lf := l.files[path]; lf != nil { // opened by another read meanwhile
		f.Close()
		lf.refs++
		return lf, nil
	}
	lf := &localFile{f: f, refs: 1}
	l.files[path] = lf
	if len(l.files) > maxLocalFiles {
		l.closeIdle(time.Time{}) // the unused ones, however recent
	}
	if l.sweeper == nil {
		l.sweeper = time.AfterFunc(localFileIdle, l.sweep)
	}
	return lf, nil
}

// release drops a reference taken by open.
func (l *localReads) release(lf *localFile) {
	l.mu.Lock()
	lf.refs--
	lf.used = time.Now()
	l.mu.Unlock()
}

// sweep closes the files unused for localFileIdle and runs again while
// any stay open.
func (l *localReads) sweep() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closeIdle(time.Now().Add(-localFileIdle))
	l.sweeper = nil
	if len(l.files) > 0 && !l.allOff {
		l.sweeper = time.AfterFunc(localFileIdle, l.sweep)
	}
}

// closeIdle closes the unreferenced files last used before t (any, for
// the zero t). l.mu is held.
func (l *localReads) closeIdle(t time.Time) {
	for path, lf := range l.files {
		if lf.refs == 0 && (t.IsZero() || lf.used.Before(t)) {
			lf.f.Close()
			delete(l.files, path)
		}
	}
}

// close closes the files and the ring; later reads use the sockets.
func (l *localReads) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.allOff = true
	if l.sweeper != nil {
		l.sweeper.Stop()
		l.sweeper = nil
	}
	for path, lf := range l.files {
		lf.f.Close()
		delete(l.files, path)
	}
	if l.ring != nil {
		l.ring.Close()
		l.ring = nil
	}
}

// localIO is the local read of one IO of a request.
type localIO struct {
	k       int // index in the request's IOs
	lf      *localFile
	buf     uring.Buffer // zero when reading straight into the destination
	lo, end int64        // read [lo, lo+size) of the file; data ends at end
	size    int          // whole blocks up to end
	need    int          // bytes the checksums cover from lo
	loc     *proto.ChunkLocation
}

// readLocal serves all, the IOs of one read request to the storage node at
// addr, by local reads where it can, and returns the IOs left for the
// socket: all of them when local reads are off for the node or the
// connection is not its Unix socket, IOs under localReadMin, and each IO
// whose local read failed.
func (c *Client) readLocal(ctx context.Context, addr string, pool *rpc.Pool, all []rio) []rio {
	var ios, rest []rio
	for _, r := range all {
		if r.io.Len >= localReadMin {
			ios = append(ios, r)
		} else {
			rest = append(rest, r)
		}
	}
	if len(ios) == 0 {
		return all
	}
	l := c.local
	ring := l.usable(addr)
	if ring == nil {
		return all
	}
	conn, err := pool.Get(ctx)
	if err != nil {
		// The node cannot be reached (or was declared down and its
		// connections cut): a read through its socket would dial it
		// again and wait, so every IO fails now and is routed again.
		failAll(all, err)
		return nil
	}
	if conn.Transport() != "unix" {
		return all
	}
	req := proto.StorageLocateReq{IOs: make([]proto.ReadIO, len(ios)), Caps: capsOf(ctx, ios)}
	for k := range ios {
		req.IOs[k] = ios[k].io
	}
	var resp proto.StorageLocateResp
	if _, err := conn.Call(ctx, proto.MethodStorageLocate, &req, &resp); err != nil {
		switch proto.CodeOf(err) {
		case proto.UnknownMethod, proto.EPERM:
			l.disable(addr, err)
		case proto.Unavailable, proto.Timeout, proto.Canceled:
			failAll(all, err) // as above: the node is gone or hung
			return nil
		}
		return all
	}
	if len(resp.Results) != len(ios) {
		return all
	}
	jobs := make([]localIO, 0, len(ios))
	ops := make([]uring.Op, 0, len(ios))
	for k := range ios {
		io, loc := ios[k].io, &resp.Results[k]
		if loc.Code != proto.OK {
			setSegErr(ios[k].segs, &proto.Error{Code: loc.Code, Msg: loc.Msg})
			continue
		}
		end := min(int64(io.Off)+int64(io.Len), int64(loc.Length))
		if loc.Path == "" || end <= int64(io.Off) {
			deliver(ios[k].segs, 0, 0, nil, 0) // a hole, or past the chunk's end: zeros
			continue
		}
		j, ok := planLocal(io, loc, end)
		if !ok {
			rest = append(rest, ios[k])
			continue
		}
		lf, err := l.open(ring, loc.Path)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) {
				l.disable(addr, err)
			}
			rest = append(rest, ios[k])
			continue
		}
		j.k, j.lf = k, lf
		var dst []byte
		if segs := ios[k].segs; len(segs) == 1 && j.lo == int64(io.Off) && len(segs[0].dst) == j.size && aligned(segs[0].dst) {
			dst = segs[0].dst
		} else {
			j.buf = ring.GetBuffer(j.size)
			dst = j.buf.Bytes(j.size)
		}
		jobs = append(jobs, j)
		ops = append(ops, uring.Op{Kind: uring.OpRead, Fd: lf.f.Fd(), Off: j.lo, Buf: dst})
	}
	err = ring.Do(ctx, ops)
	var ranges []crc32c.Range
	var sums []uint32
	for i := range jobs {
		j, op := &jobs[i], &ops[i]
		segs, off := ios[j.k].segs, int64(ios[j.k].io.Off)
		ranges = sumRanges(ranges[:0], segs, off-j.lo, j.end-j.lo)
		if cap(sums) < len(ranges) {
			sums = make([]uint32, len(ranges))
		}
		ok := err == nil && op.Err == nil && op.N >= j.need &&
			l.checker(int(j.loc.BlockSize)).Verify(op.Buf[:j.need], j.loc.CRCs, ranges, sums[:len(ranges)])
		if ok {
			if j.buf == (uring.Buffer{}) {
				clear(op.Buf[j.end-j.lo:]) // past the committed length
			} else {
				deliver(segs, off, j.end, op.Buf, j.lo)
			}
			l.bytes.Add(j.end - off)
			setSegErr(segs, nil)
			for k, s := range segs[:len(ranges)] {
				s.sum, s.summed = sums[k], true
			}
		} else {
			l.fallbacks.Add(1)
			rest = append(rest, ios[j.k])
		}
		l.release(j.lf)
		ring.PutBuffer(j.buf)
	}
	return rest
}

// planLocal checks a location against its IO and returns the read's file
// range; false if the location does not describe what the IO asks.
func planLocal(io proto.ReadIO, loc *proto.ChunkLocation, end int64) (localIO, bool) {
	bs := int64(loc.BlockSize)
	if bs < uring.Align || bs%uring.Align != 0 || bs&(bs-1) != 0 {
		return localIO{}, false
	}
	first, last := int64(io.Off)/bs, (end+bs-1)/bs
	if int64(loc.FirstBlock) != first || int64(len(loc.CRCs)) != last-first {
		return localIO{}, false
	}
	lo, hi := first*bs, last*bs
	return localIO{lo: lo, end: end, size: int(hi - lo), need: int(min(hi, int64(loc.Length)) - lo), loc: loc}, true
}

// sumRanges appends to ranges the byte range of each of segs — which hold,
// in order, the bytes from off on of a read buffer — up to the first seg
// that reaches past end (the committed length: the zeros after it are not
// read, so that seg and the ones after it go without a sum).
func sumRanges(ranges []crc32c.Range, segs []*seg, off, end int64) []crc32c.Range {
	for _, s := range segs {
		n := int64(len(s.dst))
		if off+n > end {
			break
		}
		ranges = append(ranges, crc32c.Range{Off: int(off), Len: int(n)})
		off += n
	}
	return ranges
}

// deliver fills segs, which hold the IO's bytes from chunk offset off in
// order, with the data of [off, end) — found in buf, which holds the chunk
// from offset base — and zeros after end.
func deliver(segs []*seg, off, end int64, buf []byte, base int64) {
	for _, s := range segs {
		n := 0
		if off < end {
			n = copy(s.dst, buf[off-base:end-base])
		}
		clear(s.dst[n:])
		off += int64(len(s.dst))
	}
}

func setSegErr(segs []*seg, err error) {
	for _, s := range segs {
		s.err = err
	}
}

func aligned(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(&b[0]))%uring.Align == 0
}

// failAll fails every seg of ios with err.
func failAll(ios []rio, err error) {
	for _, r := range ios {
		setSegErr(r.segs, err)
	}
}
