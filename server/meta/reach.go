package meta

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"fff/internal/proto"
	"fff/server/kv"
)

// Reachability. A path call checks search (x) permission on every
// directory it walks; an inode-level call (Stat(ino), Open(ino),
// Mkdir(parent ino), …) names its inode directly, so it checks instead
// that the caller could have reached that inode by some path: x on every
// directory from the inode's directory up to the root, read in the
// operation's own transaction. A directory knows its parent
// (Inode.Parent); a file or symlink knows the directories holding its
// names (Inode.Links, one entry per name) and is reachable through any of
// them. A file without names (an anonymous CreateTemp file, or one
// unlinked while open) is reachable by its owner only. Root skips the
// walk. Without this, an inode number guessed inside another user's 0700
// directory would open, list, link out or chmod what it names.

// MaxLinks bounds the names of one file or symlink: Inode.Links keeps one
// entry per name, and an inode record must stay far below the KV's 100 KB
// value limit (4096 links take at most 37 KB).
const MaxLinks = 4096

// loadReachable reads inode ino for an inode-level call of id: EACCES if
// id could not reach it by a path (reachable).
func loadReachable(tx kv.ReadTxn, id Identity, ino uint64, op string) (*proto.Inode, error) {
	n, err := loadInode(tx, ino)
	if err != nil {
		return nil, err
	}
	if err := reachable(tx, id, n, op); err != nil {
		return nil, err
	}
	return n, nil
}

// loadReachableDir is loadReachable for a directory (ENOTDIR otherwise).
func loadReachableDir(tx kv.ReadTxn, id Identity, ino uint64, op string) (*proto.Inode, error) {
	n, err := loadDir(tx, ino)
	if err != nil {
		return nil, err
	}
	if err := reachable(tx, id, n, op); err != nil {
		return nil, err
	}
	return n, nil
}

// reachable checks that id could reach n by a path from the root (see
// the notes above): EACCES if not, EIO naming the inode for a damaged
// tree (a parent cycle, a missing or non-directory parent).
func reachable(tx kv.ReadTxn, id Identity, n *proto.Inode, op string) error {
	if id.IsRoot() || n.Ino == proto.RootIno {
		return nil
	}
	if n.Type == proto.TypeDir {
		p, err := loadParentDir(tx, n.Parent, n.Ino)
		if err != nil {
			return err
		}
		return searchable(tx, id, p, nil, op)
	}
	if len(n.Links) == 0 {
		if id.UID == n.UID {
			return nil
		}
		return proto.Errorf(proto.EACCES, "%s %d: a file without names is its owner's only", op, n.Ino)
	}
	// Usually one name. With several, remember the directories a failed
	// walk went through, so that shared ancestors are read once however
	// many names the file has.
	var failed map[uint64]bool
	if len(n.Links) > 1 {
		failed = map[uint64]bool{}
	}
	var worst error
	for i, l := range n.Links {
		if slices.Contains(n.Links[:i], l) || failed[l] {
			continue
		}
		d, err := loadParentDir(tx, l, n.Ino)
		if err == nil {
			if err = searchable(tx, id, d, failed, op); err == nil {
				return nil
			}
		}
		// Report a damaged tree rather than EACCES: only if no name is
		// reachable.
		if worst == nil || !errors.Is(err, proto.ErrPermissionDenied) {
			worst = err
		}
	}
	return worst
}

// dirPerm is what a walk needs of a directory: its permission fields and
// its parent.
type dirPerm struct {
	ino, parent    uint64
	typ            proto.FileType
	mode, uid, gid uint32
}

// loadParentDir reads directory ino, which child's record names as the
// directory holding it (its absence is damage, not ENOENT), for a walk:
// only the fields of dirPerm are decoded (decodeDirPerm).
func loadParentDir(tx kv.ReadTxn, ino, child uint64) (dirPerm, error) {
	v, err := tx.Get(inodeKey(ino))
	if err != nil {
		return dirPerm{}, err
	}
	if v == nil {
		return dirPerm{}, proto.Errorf(proto.EIO, "meta: inode %d: its directory %d does not exist (see fffd check)", child, ino)
	}
	d, ok := decodeDirPerm(v)
	if !ok {
		// Not a record the short decoder reads: decode it fully, which
		// names the damage if it is damaged.
		var n proto.Inode
		if err := unmarshal(v, &n); err != nil {
			return dirPerm{}, damagedf(err, "inode %d", ino)
		}
		d = dirPerm{ino: n.Ino, parent: n.Parent, typ: n.Type, mode: n.Mode, uid: n.UID, gid: n.GID}
	}
	if d.typ != proto.TypeDir || d.ino != ino {
		return dirPerm{}, proto.Errorf(proto.EIO, "meta: inode %d: its directory %d is not a directory (see fffd check)", child, ino)
	}
	return d, nil
}

// searchable checks x permission for id on directory d and on every
// directory above it up to the root: one inode read per ancestor, bounded
// by maxDepth, and a parent cycle (which no operation makes, but a damaged
// KV may hold) is found in a few times its length by Brent's method
// without allocating. failed, if not nil, holds directories known to be
// unreachable and receives those of this walk if it fails.
func searchable(tx kv.ReadTxn, id Identity, d dirPerm, failed map[uint64]bool, op string) error {
	first := d.ino
	var walked []uint64
	fail := func() error {
		for _, w := range walked {
			failed[w] = true
		}
		return proto.Errorf(proto.EACCES, "%s: no search permission on directory %d", op, d.ino)
	}
	// Brent: tortoise stays at one position for power steps, then jumps
	// to the walk's; the walk meets it once it has gone round a cycle.
	tortoise, power, steps := d.ino, 1, 0
	for depth := 0; ; depth++ {
		if failed != nil {
			if failed[d.ino] {
				return fail()
			}
			walked = append(walked, d.ino)
		}
		n := proto.Inode{Type: d.typ, Mode: d.mode, UID: d.uid, GID: d.gid}
		if access(id, &n, permX, op) != nil {
			return fail()
		}
		if d.ino == proto.RootIno {
			return nil
		}
		next := d.parent
		if next == tortoise {
			return proto.Errorf(proto.EIO, "meta: the parents of directory %d loop through directory %d (see fffd check)", first, next)
		}
		if depth >= maxDepth {
			return proto.Errorf(proto.EIO, "meta: the parents of directory %d go deeper than %d directories (see fffd check)", first, maxDepth)
		}
		if steps++; steps == power {
			tortoise, power, steps = next, power*2, 0
		}
		p, err := loadParentDir(tx, next, d.ino)
		if err != nil {
			return err
		}
		d = p
	}
}

// decodeDirPerm reads the fields of dirPerm out of an inode record
// (msgpack, a map keyed by proto.Inode's tags) without decoding the rest:
// every inode-level call of a non-root caller reads one record per
// ancestor, and decoding whole records by reflection cost more than the
// reads. It does not check the fields it skips. ok is false for anything
// it does not expect; the caller then decodes the record fully.
func decodeDirPerm(b []byte) (d dirPerm, ok bool) {
	const (
		fIno = iota
		fParent
		fType
		fMode
		fUID
		fGID
	)
	var f [6]uint64
	r := mpReader{b: b}
	n, ok := r.mapLen()
	if !ok {
		return d, false
	}
	for range n {
		k, ok := r.str()
		if !ok {
			return d, false
		}
		var i int
		switch string(k) { // compared in place, not converted
		case "ino":
			i = fIno
		case "parent":
			i = fParent
		case "type":
			i = fType
		case "mode":
			i = fMode
		case "uid":
			i = fUID
		case "gid":
			i = fGID
		default:
			if !r.skip(0) {
				return d, false
			}
			continue
		}
		if f[i], ok = r.uint(); !ok {
			return d, false
		}
	}
	if r.i != len(r.b) || f[fType] > math.MaxUint8 || max(f[fMode], f[fUID], f[fGID]) > math.MaxUint32 {
		return d, false
	}
	return dirPerm{ino: f[fIno], parent: f[fParent], typ: proto.FileType(f[fType]),
		mode: uint32(f[fMode]), uid: uint32(f[fUID]), gid: uint32(f[fGID])}, true
}

// mpReader reads msgpack from a byte slice, for decodeDirPerm: every
// method reports false on data it does not expect or that ends early.
type mpReader struct {
	b []byte
	i int
}

func (r *mpReader) next(n int) ([]byte, bool) {
	if n < 0 || n > len(r.b)-r.i {
		return nil, false
	}
	p := r.b[r.i : r.i+n]
	r.i += n
	return p, true
}

// be reads an n-byte big-endian unsigned number.
func (r *mpReader) be(n int) (uint64, bool) {
	p, ok := r.next(n)
	if !ok {
		return 0, false
	}
	var v uint64
	for _, c := range p {
		v = v<<8 | uint64(c)
	}
	return v, true
}

func (r *mpReader) code() (byte, bool) {
	p, ok := r.next(1)
	if !ok {
		return 0, false
	}
	return p[0], true
}

func (r *mpReader) mapLen() (int, bool) {
	c, ok := r.code()
	switch {
	case !ok:
		return 0, false
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), true
	case c == 0xde:
		v, ok := r.be(2)
		return int(v), ok
	case c == 0xdf:
		v, ok := r.be(4)
		return int(v), ok
	}
	return 0, false
}

func (r *mpReader) str() ([]byte, bool) {
	c, ok := r.code()
	var n uint64
	switch {
	case !ok:
		return nil, false
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9:
		n, ok = r.be(1)
	case c == 0xda:
		n, ok = r.be(2)
	case c == 0xdb:
		n, ok = r.be(4)
	default:
		return nil, false
	}
	if !ok {
		return nil, false
	}
	return r.next(int(n))
}

// uint reads a non-negative integer (nil is 0, as the full decoder has it).
func (r *mpReader) uint() (uint64, bool) {
	c, ok := r.code()
	switch {
	case !ok:
		return 0, false
	case c <= 0x7f:
		return uint64(c), true
	case c == 0xc0:
		return 0, true
	case c >= 0xcc && c <= 0xcf: // uint 8, 16, 32, 64
		return r.be(1 << (c - 0xcc))
	case c >= 0xd0 && c <= 0xd3: // int 8, 16, 32, 64: only if not negative
		n := 1 << (c - 0xd0)
		v, ok := r.be(n)
		if !ok || v>>(8*n-1) != 0 {
			return 0, false
		}
		return v, true
	}
	return 0, false
}

// skip passes over one value of any type (nesting at most 8 deep).
func (r *mpReader) skip(depth int) bool {
	if depth > 8 {
		return false
	}
	c, ok := r.code()
	if !ok {
		return false
	}
	var n uint64 // bytes to pass, or items of an array or map
	items := 0   // 1 for an array, 2 for a map
	switch {
	case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		return true // fixint, nil, bool
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c >= 0x90 && c <= 0x9f:
		n, items = uint64(c&0x0f), 1
	case c >= 0x80 && c <= 0x8f:
		n, items = uint64(c&0x0f), 2
	case c == 0xcc || c == 0xd0:
		n = 1
	case c == 0xcd || c == 0xd1:
		n = 2
	case c == 0xce || c == 0xd2 || c == 0xca:
		n = 4
	case c == 0xcf || c == 0xd3 || c == 0xcb:
		n = 8
	case c == 0xd9 || c == 0xc4:
		n, ok = r.be(1)
	case c == 0xda || c == 0xc5:
		n, ok = r.be(2)
	case c == 0xdb || c == 0xc6:
		n, ok = r.be(4)
	case c == 0xdc:
		n, ok = r.be(2)
		items = 1
	case c == 0xdd:
		n, ok = r.be(4)
		items = 1
	case c == 0xde:
		n, ok = r.be(2)
		items = 2
	case c == 0xdf:
		n, ok = r.be(4)
		items = 2
	case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16: type byte + data
		n = 1 + 1<<(c-0xd4)
	case c >= 0xc7 && c <= 0xc9: // ext 8, 16, 32: length, type byte, data
		n, ok = r.be(1 << (c - 0xc7))
		n++
	default:
		return false // 0xc1: never used
	}
	if !ok {
		return false
	}
	if items == 0 {
		_, ok = r.next(int(min(n, uint64(len(r.b)+1))))
		return ok
	}
	if n > uint64(len(r.b)-r.i) { // each item takes at least a byte
		return false
	}
	for range int(n) * items {
		if !r.skip(depth + 1) {
			return false
		}
	}
	return true
}

// addLink records a new name of file or symlink n in directory dir.
func addLink(n *proto.Inode, dir uint64) error {
	if len(n.Links) >= MaxLinks {
		return proto.Errorf(proto.ENOSPC, "link inode %d: it has %d names, at most %d", n.Ino, len(n.Links), MaxLinks)
	}
	n.Links = append(n.Links, dir)
	return nil
}

// removeLink forgets one name of n in directory dir.
func removeLink(n *proto.Inode, dir uint64) {
	if i := slices.Index(n.Links, dir); i >= 0 {
		n.Links = slices.Delete(n.Links, i, i+1)
	}
	if len(n.Links) == 0 {
		n.Links = nil
	}
}

// public is n as callers see it: Links is meta's own bookkeeping (up to
// MaxLinks directory ids, some perhaps unreachable to the caller).
func public(n *proto.Inode) proto.Inode {
	out := *n
	out.Links = nil
	return out
}

// Migration. Namespaces of schema version 1 have no Links: Init fills
// them from the directory entries, in transactions of at most
// migratePage entries (or migrateBytes of written inodes), each recording
// how far it got in keyLinksProgress, so that an interrupted Init goes on
// where it stopped and concurrent Inits over one KV share the work (their
// transactions conflict on the key). The last one sets the schema
// version, which an older build refuses to run on.

// Bounds of one migration transaction: far below the KV's 10 MB and 5 s.
const (
	migratePage  = 1000
	migrateBytes = 2 << 20
)

// migrateLinks fills Links from the entries if the schema is older than
// schemaVersion. It is idempotent and restartable.
func (s *Service) migrateLinks(ctx context.Context) error {
	for {
		var done bool
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			var err error
			done, err = migrateLinksPage(tx, migratePage)
			return err
		})
		if err != nil {
			return fmt.Errorf("meta: recording file links (schema %d): %w", schemaVersion, err)
		}
		if done {
			return nil
		}
	}
}

// migrateLinksPage migrates up to limit entries; done once the schema is
// current.
func migrateLinksPage(tx kv.Txn, limit int) (done bool, err error) {
	v, err := tx.Get(keyVersion)
	if err != nil {
		return false, err
	}
	if u64(v) >= schemaVersion {
		return true, nil
	}
	begin, end := prefixRange([]byte{pDentry})
	from, err := tx.Get(keyLinksProgress)
	if err != nil {
		return false, err
	}
	if from != nil {
		begin = from
	}
	kvs, err := tx.Range(begin, end, kv.RangeOptions{Limit: limit})
	if err != nil {
		return false, err
	}
	written := 0
	for _, p := range kvs {
		begin = kv.KeyAfter(p.Key)
		if len(p.Key) < 10 {
			return false, proto.Errorf(proto.EIO, "meta: entry key %q too short (see fffd check)", p.Key)
		}
		var de dentry
		if err := unmarshal(p.Value, &de); err != nil {
			return false, damagedf(err, "entry %q of directory %d", p.Key[9:], u64(p.Key[1:9]))
		}
		if proto.FileType(de.Type) == proto.TypeDir {
			continue
		}
		n, err := loadInode(tx, de.Ino)
		if errors.Is(err, proto.ErrNotFound) {
			continue // an entry without its inode (a salvage): nothing to record
		}
		if err != nil {
			return false, err
		}
		if n.Type == proto.TypeDir {
			continue
		}
		n.Links = append(n.Links, u64(p.Key[1:9]))
		rec := marshal(n)
		if err := tx.Set(inodeKey(n.Ino), rec); err != nil {
			return false, err
		}
		if written += len(rec); written >= migrateBytes {
			break
		}
	}
	if len(kvs) == limit || written >= migrateBytes {
		return false, tx.Set(keyLinksProgress, begin)
	}
	if err := tx.Clear(keyLinksProgress); err != nil {
		return false, err
	}
	return true, tx.Set(keyVersion, u64Bytes(schemaVersion))
}
