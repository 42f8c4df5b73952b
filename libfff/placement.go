package libfff

import (
	"fmt"
	"io/fs"
	"math"
	"sort"

	"fff/internal/proto"
)

// Chunk placement (DESIGN §7): chunk index = offset / chunkSize, chain =
// layout.Chains[index % stripe], chunk id = (inode, index). These are pure
// functions of the layout and the routing info; meta is not asked per IO.

// piece is the part of a file range that falls in one chunk.
type piece struct {
	index uint64 // chunk index
	off   uint32 // offset in the chunk
	n     uint32 // length
	pos   int    // offset in the caller's buffer
}

// checkRange is the limit check every file IO passes before splitRange:
// op names the operation in the error. A range beyond proto.MaxFileSize
// would give chunk indices that wrap on the wire (ChunkRef.Index is a
// uint32) and land on the file's first chunks.
func checkRange(op, name string, off int64, n int) error {
	if err := proto.CheckFileRange(off, int64(n)); err != nil {
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

// splitRange cuts the file range [off, off+n) on chunk boundaries. The
// range must have passed checkRange; one that has not (or a chunk size of
// 0) gives no pieces rather than wrapped ones, so a caller that writes
// must check the range itself (as writeRange does) rather than take no
// pieces for nothing to do.
func splitRange(chunkSize uint32, off int64, n int) []piece {
	if n <= 0 || chunkSize == 0 || proto.CheckFileRange(off, int64(n)) != nil {
		return nil
	}
	cs := int64(chunkSize)
	out := make([]piece, 0, int((off+int64(n)-1)/cs-off/cs+1))
	pos := 0
	for pos < n {
		o := off + int64(pos)
		in := o % cs
		m := min(int64(n-pos), cs-in)
		out = append(out, piece{index: uint64(o / cs), off: uint32(in), n: uint32(m), pos: pos})
		pos += int(m)
	}
	return out
}

// route is where one chunk IO goes: the chunk reference (with the chain
// version and target the storage server checks) and the storage node's
// address.
type route struct {
	ref  proto.ChunkRef
	addr string
}

// chunkHash spreads the chunks of a file over a chain's replicas.
func chunkHash(ino, index uint64) uint64 {
	h := ino*0x9e3779b97f4a7c15 ^ index*0xc2b2ae3d27d4eb4f
	h ^= h >> 31
	h *= 0x94d049bb133111eb
	h ^= h >> 29
	return h
}

// chainOf returns the routing chain that holds chunk index of a file.
func chainOf(ri *proto.RoutingInfo, l *proto.Layout, index uint64) (*proto.Chain, error) {
	if l == nil || len(l.Chains) == 0 {
		return nil, proto.Errorf(proto.Unavailable, "the file has no chains (no storage was configured when it was created)")
	}
	id := l.ChainOf(index)
	ch := ri.Chain(id)
	if ch == nil || len(ch.Targets) == 0 {
		return nil, proto.Errorf(proto.Unavailable, "chain %d is unknown to routing version %d", id, ri.Version)
	}
	return ch, nil
}

// targetRoute returns the route to target tid of chain ch.
func targetRoute(ri *proto.RoutingInfo, ch *proto.Chain, tid uint32, ino, index uint64) (route, error) {
	t := ri.Target(tid)
	if t == nil {
		return route{}, proto.Errorf(proto.Unavailable, "target %d of chain %d is unknown", tid, ch.ID)
	}
	if index > math.MaxUint32 {
		// A last guard: checkRange keeps indices below 2^32; truncating
		// one would address chunk index mod 2^32 instead.
		return route{}, proto.Errorf(proto.EFBIG, "chunk index %d of inode %d does not fit the wire's uint32", index, ino)
	}
	n := ri.Node(t.NodeID)
	if n == nil || n.Addr == "" {
		return route{}, proto.Errorf(proto.Unavailable, "node %d of target %d has no address", t.NodeID, tid)
	}
	return route{
		ref:  proto.ChunkRef{Ino: ino, Index: uint32(index), ChainID: ch.ID, ChainVersion: ch.Version, TargetID: tid},
		addr: n.Addr,
	}, nil
}

// readRoute picks the replica that serves a read of chunk (ino, index): one
// of the chain's serving targets, chosen by a hash of the chunk id so that
// reads spread over the replicas; attempt > 0 moves to the next replica
// (after ChecksumMismatch or TargetNotServing). With near (nil: no
// preference), the first try goes to a replica on a node near reports on
// this host, where the client reads chunk files itself, if the chain has
// one (spread the same way over several).
func readRoute(ri *proto.RoutingInfo, l *proto.Layout, ino, index uint64, attempt int, near func(*proto.Node) bool) (route, error) {
	ch, err := chainOf(ri, l, index)
	if err != nil {
		return route{}, err
	}
	var serving [8]uint32
	ss := serving[:0]
	for _, tid := range ch.Targets {
		if t := ri.Target(tid); t != nil && t.State == proto.TargetServing {
			ss = append(ss, tid)
		}
	}
	if len(ss) == 0 {
		return route{}, proto.Errorf(proto.TargetNotServing, "chain %d has no serving target", ch.ID)
	}
	h := chunkHash(ino, index)
	first := int(h % uint64(len(ss)))
	if near != nil {
		var here [8]int
		hs := here[:0]
		for i, tid := range ss {
			if n := ri.Node(ri.Target(tid).NodeID); n != nil && near(n) {
				hs = append(hs, i)
			}
		}
		if len(hs) > 0 {
			first = hs[h%uint64(len(hs))]
		}
	}
	return targetRoute(ri, ch, ss[(first+attempt)%len(ss)], ino, index)
}

// tailRoute returns the last serving target of the chain of chunk (ino,
// index): the replica whose versions are all committed (CRAQ), where a
// read goes when another replica had a write of the chunk in flight.
func tailRoute(ri *proto.RoutingInfo, l *proto.Layout, ino, index uint64) (route, error) {
	ch, err := chainOf(ri, l, index)
	if err != nil {
		return route{}, err
	}
	for i := len(ch.Targets) - 1; i >= 0; i-- {
		if t := ri.Target(ch.Targets[i]); t != nil && t.State == proto.TargetServing {
			return targetRoute(ri, ch, t.ID, ino, index)
		}
	}
	return route{}, proto.Errorf(proto.TargetNotServing, "chain %d has no serving target", ch.ID)
}

// writeRoute returns the head of the chain of chunk (ino, index): writes go
// there (CRAQ).
func writeRoute(ri *proto.RoutingInfo, l *proto.Layout, ino, index uint64) (route, error) {
	ch, err := chainOf(ri, l, index)
	if err != nil {
		return route{}, err
	}
	head := ch.Targets[0]
	if t := ri.Target(head); t == nil || t.State != proto.TargetServing {
		return route{}, proto.Errorf(proto.TargetNotServing, "chain %d has no serving head", ch.ID)
	}
	return targetRoute(ri, ch, head, ino, index)
}

// seg is a chunk-bounded range to read into dst (len(dst) bytes at chunk
// offset off) on behalf of op (an index into the caller's requests).
type seg struct {
	r   route
	off uint32
	dst []byte
	op  int

	// What the route is computed from (again, when a retry re-routes).
	layout     *proto.Layout
	ino, index uint64
	caps       *fileCap // the file's capability, sent with the IO
	attempt    int
	renewed    bool // its capability was renewed after a refusal
	toTail     bool // a replica had a write in flight (ChunkPending): ask the tail
	err        error
	// sum is the CRC32C of dst when summed: set only by a local read that
	// delivered dst (computed over those bytes while verifying their
	// blocks), so a seg read again, or through the socket, never has it.
	sum    uint32
	summed bool
}

// rio is one ReadIO of a request: a range of one chunk whose data is
// scattered, in order, over the destinations of the segs it coalesces.
type rio struct {
	io   proto.ReadIO
	segs []*seg
}

// coalesce groups segs per storage node address and, within a node, sorts
// them by chunk and offset and merges ranges of one chunk that touch
// (end of one == start of the next) into one IO. Overlapping ranges are
// kept apart (each destination is filled from its own IO). The result
// maps address → IOs in (target, inode, chunk, offset) order.
func coalesce(segs []*seg) map[string][]rio {
	byAddr := map[string][]*seg{}
	for _, s := range segs {
		byAddr[s.r.addr] = append(byAddr[s.r.addr], s)
	}
	out := make(map[string][]rio, len(byAddr))
	for addr, ss := range byAddr {
		sort.SliceStable(ss, func(i, j int) bool {
			a, b := ss[i].r.ref, ss[j].r.ref
			if a.TargetID != b.TargetID {
				return a.TargetID < b.TargetID
			}
			if a.Ino != b.Ino {
				return a.Ino < b.Ino
			}
			if a.Index != b.Index {
				return a.Index < b.Index
			}
			return ss[i].off < ss[j].off
		})
		var ios []rio
		for _, s := range ss {
			if k := len(ios) - 1; k >= 0 {
				last := &ios[k]
				if last.io.Chunk == s.r.ref && last.io.Off+last.io.Len == s.off && uint64(last.io.Len)+uint64(len(s.dst)) <= 1<<31 {
					last.io.Len += uint32(len(s.dst))
					last.segs = append(last.segs, s)
					continue
				}
			}
			ios = append(ios, rio{io: proto.ReadIO{Chunk: s.r.ref, Off: s.off, Len: uint32(len(s.dst))}, segs: []*seg{s}})
		}
		out[addr] = ios
	}
	return out
}

// Request caps: a storage read request carries at most maxReqIOs IOs and
// maxReqBytes bytes of data (a single larger IO goes alone).
const (
	maxReqIOs   = 1024
	maxReqBytes = 16 << 20
)

// splitRequests cuts one node's IOs into requests within the caps.
func splitRequests(ios []rio, maxIOs, maxBytes int) [][]rio {
	var out [][]rio
	start, bytes := 0, 0
	for i, r := range ios {
		n := int(r.io.Len)
		if i > start && (i-start >= maxIOs || bytes+n > maxBytes) {
			out = append(out, ios[start:i])
			start, bytes = i, 0
		}
		bytes += n
	}
	if start < len(ios) {
		out = append(out, ios[start:])
	}
	return out
}

func (r route) String() string {
	return fmt.Sprintf("chunk %d/%d on target %d (chain %d v%d) at %s", r.ref.Ino, r.ref.Index, r.ref.TargetID, r.ref.ChainID, r.ref.ChainVersion, r.addr)
}

// near returns the test readRoute prefers replicas with: nodes whose
// address is one of this host's (where the client reads chunk files
// itself), or nil when the client does not read locally.
func (c *Client) near() func(*proto.Node) bool {
	if c.local == nil {
		return nil
	}
	return c.local.here
}
