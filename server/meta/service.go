package meta

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"fff/internal/capability"
	"fff/internal/proto"
	"fff/server/kv"
)

// Defaults for Options.
const (
	DefaultChainTable uint32 = 1
	DefaultChunkSize  uint32 = 4 << 20
	DefaultMaxStripe  uint32 = 16
	DefaultInoBlock   uint64 = 1024
	DefaultRootMode   uint32 = 0o755

	// MaxStripe bounds a directory's stripe policy.
	MaxStripe uint32 = 1024

	// MaxNameLen is the longest entry name, in bytes.
	MaxNameLen = 255
	// MaxSymlinkLen is the longest symlink target, in bytes.
	MaxSymlinkLen = 4095
	// MaxSymlinkFollows bounds the symlinks followed while resolving a path.
	MaxSymlinkFollows = 40
	// DefaultReadDirLimit and MaxReadDirLimit bound one ReadDir page.
	DefaultReadDirLimit = 1000
	MaxReadDirLimit     = 10000

	// firstIno is the first inode id handed out; ids below are reserved
	// (1 is the root).
	firstIno uint64 = 16
)

// ChainTables gives the chains of a chain table (mgmtd implements it from
// its routing info). It is called outside transactions, once per Create or
// SetLayout, so it should answer from memory.
type ChainTables interface {
	ChainTable(ctx context.Context, id uint32) ([]uint32, error)
}

// StaticChainTables is a fixed ChainTables, for tests and single-node setups.
type StaticChainTables map[uint32][]uint32

// ChainTable implements ChainTables.
func (s StaticChainTables) ChainTable(_ context.Context, id uint32) ([]uint32, error) {
	t, ok := s[id]
	if !ok {
		return nil, proto.Errorf(proto.ENOENT, "chain table %d", id)
	}
	return slices.Clone(t), nil
}

// Capacity reports the storage capacity for StatFS (optional).
type Capacity interface {
	Capacity(ctx context.Context) (total, free uint64, err error)
}

// Options configure a Service. Zero fields take the defaults.
type Options struct {
	// ChainTables supplies the chains new files are striped over. Nil means
	// no storage: files are created with a layout without chains.
	ChainTables ChainTables
	// Capacity, if set, supplies StatFS's byte counts.
	Capacity Capacity
	// DefaultChainTable is the table for directories without a policy (1).
	DefaultChainTable uint32
	// ChunkSize is the chunk size for directories without a policy (4 MiB).
	ChunkSize uint32
	// MaxStripe: without a policy a file is striped over
	// min(chain table size, MaxStripe) chains (16).
	MaxStripe uint32
	// InoBlock is how many inode ids a Service takes from the KV counter at
	// once (1024).
	InoBlock uint64
	// RootMode is the root directory's mode when Init creates it (0755).
	RootMode uint32
	// Now is the clock (time.Now).
	Now func() time.Time
	// Capabilities signs the storage capabilities that opens, creates and
	// truncates hand out (caps.go). Nil: none are issued, and storage
	// serves such files' chunks to the admin only.
	Capabilities *capability.Key
	// CapabilityTTL is how long a capability lasts
	// (capability.DefaultTTL); clients renew theirs before.
	CapabilityTTL time.Duration
	// AdminToken, if set, runs inside the transaction that gives the admin
	// user a new token (RotateToken), with the token: fffd keeps the copy
	// that the nodes of a shared KV use to reach each other in step.
	AdminToken func(tx kv.Txn, token string) error
}

// Identity is the caller of an operation: its uid and groups (GIDs[0] is the
// primary group, given to new files). Admin, or uid 0, is root: it passes
// every permission check.
type Identity struct {
	UID   uint32
	GIDs  []uint32
	Admin bool
	Name  string
}

// Root is the identity of local administrative tools.
var Root = Identity{UID: 0, GIDs: []uint32{0}, Admin: true, Name: "root"}

// IsRoot reports whether id bypasses permission checks.
func (id Identity) IsRoot() bool { return id.Admin || id.UID == 0 }

func (id Identity) inGroup(gid uint32) bool { return slices.Contains(id.GIDs, gid) }

// primaryGID is the group of new files: GIDs[0], or the uid when the
// identity has no groups (user private groups).
func (id Identity) primaryGID() uint32 {
	if len(id.GIDs) > 0 {
		return id.GIDs[0]
	}
	return id.UID
}

// Service is the meta service over a kv.DB. It keeps no state that could
// make two Services over one KV answer differently: only a block of inode
// ids that it alone hands out. It is safe for concurrent use.
type Service struct {
	db   kv.DB
	opts Options

	idMu    sync.Mutex
	nextIno uint64 // next id of the current block
	endIno  uint64 // end of the current block (exclusive)
}

// New returns a Service over db. Call Init once before using it (Init is
// idempotent; every Service over one KV may call it).
func New(db kv.DB, opts Options) *Service {
	if opts.DefaultChainTable == 0 {
		opts.DefaultChainTable = DefaultChainTable
	}
	if opts.ChunkSize == 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.MaxStripe == 0 {
		opts.MaxStripe = DefaultMaxStripe
	}
	if opts.InoBlock == 0 {
		opts.InoBlock = DefaultInoBlock
	}
	if opts.RootMode == 0 {
		opts.RootMode = DefaultRootMode
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CapabilityTTL <= 0 {
		opts.CapabilityTTL = capability.DefaultTTL
	}
	return &Service{db: db, opts: opts}
}

// DB returns the KV the service runs over.
func (s *Service) DB() kv.DB { return s.db }

func (s *Service) now() int64 { return s.opts.Now().UnixNano() }

// Init creates the root directory (owned by uid 0, gid 0, Options.RootMode)
// and the counters if they do not exist yet, and brings an older schema up
// to date (migrateLinks). It is idempotent, and an interrupted Init goes on
// where it stopped.
func (s *Service) Init(ctx context.Context) error {
	if err := s.initRoot(ctx); err != nil {
		return err
	}
	if err := s.indexTokenIDs(ctx); err != nil {
		return err
	}
	return s.migrateLinks(ctx)
}

// initRoot creates the root and the counters; a new KV starts at schema
// version 1, which migrateLinks then raises.
func (s *Service) initRoot(ctx context.Context) error {
	now := s.now()
	return s.db.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(keyVersion)
		if err != nil {
			return err
		}
		if v != nil && u64(v) > schemaVersion {
			return fmt.Errorf("meta: KV holds schema version %d, this build knows %d", u64(v), schemaVersion)
		}
		root, err := tx.Get(inodeKey(proto.RootIno))
		if err != nil {
			return err
		}
		if root == nil {
			ino := &proto.Inode{
				Ino: proto.RootIno, Type: proto.TypeDir, Mode: s.opts.RootMode & proto.ModeMask,
				Nlink: 1, Atime: now, Mtime: now, Ctime: now, Parent: proto.RootIno,
				DirLayout: &proto.DirLayout{},
			}
			if err := putInode(tx, ino); err != nil {
				return err
			}
			if err := addCount(tx, proto.RootIno, 1); err != nil {
				return err
			}
		}
		next, err := tx.Get(keyNextIno)
		if err != nil {
			return err
		}
		if next == nil {
			if err := tx.Set(keyNextIno, u64Bytes(firstIno)); err != nil {
				return err
			}
		}
		if v == nil {
			return tx.Set(keyVersion, u64Bytes(1))
		}
		return nil
	})
}

// allocIno returns a fresh inode id. Ids come from the KV counter C"ino" in
// blocks of Options.InoBlock; taking a block is its own small transaction,
// so Services sharing a KV never hand out the same id. Ids of failed
// operations are not reused (the space is 2^64).
func (s *Service) allocIno(ctx context.Context) (uint64, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.nextIno >= s.endIno {
		var start uint64
		block := s.opts.InoBlock
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			v, err := tx.Get(keyNextIno)
			if err != nil {
				return err
			}
			start = max(u64(v), firstIno)
			return tx.Set(keyNextIno, u64Bytes(start+block))
		})
		if err != nil {
			return 0, err
		}
		s.nextIno, s.endIno = start, start+block
	}
	ino := s.nextIno
	s.nextIno++
	return ino, nil
}

// addCount adds d to the inode-count shard of ino.
func addCount(tx kv.Txn, ino uint64, d int64) error {
	k := countKey(ino)
	v, err := tx.Get(k)
	if err != nil {
		return err
	}
	return tx.Set(k, u64Bytes(uint64(int64(u64(v))+d)))
}

// loadInode reads inode ino; ENOENT if it does not exist.
func loadInode(tx kv.ReadTxn, ino uint64) (*proto.Inode, error) {
	v, err := tx.Get(inodeKey(ino))
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, proto.Errorf(proto.ENOENT, "inode %d", ino)
	}
	var n proto.Inode
	if err := unmarshal(v, &n); err != nil {
		return nil, damagedf(err, "inode %d", ino)
	}
	return &n, nil
}

// loadDir reads directory ino: ENOENT if absent, ENOTDIR if not a directory.
func loadDir(tx kv.ReadTxn, ino uint64) (*proto.Inode, error) {
	n, err := loadInode(tx, ino)
	if err != nil {
		return nil, err
	}
	if n.Type != proto.TypeDir {
		return nil, proto.Errorf(proto.ENOTDIR, "inode %d", ino)
	}
	return n, nil
}

func putInode(tx kv.Txn, n *proto.Inode) error { return tx.Set(inodeKey(n.Ino), marshal(n)) }

// loadDentry reads the entry name of parent; ok is false if absent.
func loadDentry(tx kv.ReadTxn, parent uint64, name string) (d dentry, ok bool, err error) {
	v, err := tx.Get(dentryKey(parent, name))
	if err != nil || v == nil {
		return d, false, err
	}
	if err := unmarshal(v, &d); err != nil {
		return d, false, damagedf(err, "entry %q of directory %d", name, parent)
	}
	return d, true, nil
}

func putDentry(tx kv.Txn, parent uint64, name string, n *proto.Inode) error {
	return tx.Set(dentryKey(parent, name), marshal(dentry{Ino: n.Ino, Type: uint8(n.Type)}))
}

// dirEmpty reports whether directory ino has no entries.
func dirEmpty(tx kv.ReadTxn, ino uint64) (bool, error) {
	b, e := prefixRange(dentryPrefix(ino))
	kvs, err := tx.Range(b, e, kv.RangeOptions{Limit: 1})
	return len(kvs) == 0, err
}

// hasSessions reports whether file ino has open write sessions.
func hasSessions(tx kv.ReadTxn, ino uint64) (bool, error) {
	b, e := prefixRange(sessionPrefix(ino))
	kvs, err := tx.Range(b, e, kv.RangeOptions{Limit: 1})
	return len(kvs) > 0, err
}

// Permission bits asked of access.
const (
	permR = 4
	permW = 2
	permX = 1
)

// access checks that id may do want (a mask of permR/W/X) on n, by POSIX
// rules: the owner's bits if id owns n, else the group's if n's group is
// one of id's, else the others'. Root passes, except that it may execute a
// file only if some execute bit is set.
func access(id Identity, n *proto.Inode, want uint32, what string) error {
	if id.IsRoot() {
		if want&permX != 0 && n.Type == proto.TypeFile && n.Mode&0o111 == 0 {
			return proto.Errorf(proto.EACCES, "%s", what)
		}
		return nil
	}
	var bits uint32
	switch {
	case id.UID == n.UID:
		bits = n.Mode >> 6 & 7
	case id.inGroup(n.GID):
		bits = n.Mode >> 3 & 7
	default:
		bits = n.Mode & 7
	}
	if bits&want != want {
		return proto.Errorf(proto.EACCES, "%s", what)
	}
	return nil
}

// stickyOK checks the sticky-directory rule: in a directory with the sticky
// bit, only the owner of an entry, the owner of the directory, or root may
// remove or rename the entry.
func stickyOK(id Identity, dir, child *proto.Inode, what string) error {
	if dir.Mode&proto.ModeSticky == 0 || id.IsRoot() || id.UID == dir.UID || id.UID == child.UID {
		return nil
	}
	return proto.Errorf(proto.EPERM, "%s: sticky directory", what)
}

// checkName validates an entry name: not empty, not "." or "..", no '/'
// or NUL, at most MaxNameLen bytes.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return proto.Errorf(proto.EINVAL, "invalid name %q", name)
	case len(name) > MaxNameLen:
		return proto.Errorf(proto.ENAMETOOLONG, "name of %d bytes", len(name))
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return proto.Errorf(proto.EINVAL, "invalid name %q", name)
		}
	}
	return nil
}

// needTable is returned by a create body that needs a chain table other
// than the one fetched before the transaction.
type needTable struct{ id uint32 }

func (e *needTable) Error() string { return fmt.Sprintf("meta: need chain table %d", e.id) }

// tableFor returns the chain table id a directory's policy selects.
func (s *Service) tableFor(dir *proto.Inode) uint32 {
	if dir.DirLayout != nil && dir.DirLayout.ChainTable != 0 {
		return dir.DirLayout.ChainTable
	}
	return s.opts.DefaultChainTable
}

// fetchTable returns the chains of table id (nil without ChainTables).
func (s *Service) fetchTable(ctx context.Context, id uint32) ([]uint32, error) {
	if s.opts.ChainTables == nil {
		return nil, nil
	}
	t, err := s.opts.ChainTables.ChainTable(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("meta: chain table %d: %w", id, err)
	}
	if len(t) == 0 {
		return nil, proto.Errorf(proto.ENOSPC, "chain table %d has no chains", id)
	}
	return t, nil
}

// withTable runs an Update body that may need the chain table of the
// directory it creates a file in: it fetches the default table first and,
// if the body asks for another one (needTable), fetches that and runs the
// transaction again. So the chain table source is never called inside a
// transaction.
func (s *Service) withTable(ctx context.Context, fn func(tx kv.Txn, tableID uint32, table []uint32) error) error {
	tableID := s.opts.DefaultChainTable
	var table []uint32
	var fetchErr error
	if s.opts.ChainTables != nil {
		table, fetchErr = s.fetchTable(ctx, tableID)
	}
	for attempt := 0; ; attempt++ {
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			return fn(tx, tableID, table)
		})
		var nt *needTable
		if !errors.As(err, &nt) {
			return err
		}
		if nt.id == tableID && fetchErr != nil {
			return fetchErr
		}
		if attempt >= 3 || nt.id == tableID {
			return fmt.Errorf("meta: chain table %d keeps changing: %w", nt.id, proto.ErrIO)
		}
		tableID = nt.id
		table, fetchErr = s.fetchTable(ctx, tableID)
	}
}

// fileLayout chooses the layout of new file ino created in dir. The body
// calling it returns needTable if tableID is not the table dir selects (or
// was not fetched yet: table == nil with ChainTables set).
func (s *Service) fileLayout(dir *proto.Inode, ino uint64, tableID uint32, table []uint32) (*proto.Layout, error) {
	want := s.tableFor(dir)
	if s.opts.ChainTables != nil && (want != tableID || table == nil) {
		return nil, &needTable{id: want}
	}
	pol := proto.DirLayout{}
	if dir.DirLayout != nil {
		pol = *dir.DirLayout
	}
	l := &proto.Layout{ChainTable: want, ChunkSize: s.opts.ChunkSize}
	if pol.ChunkSize != 0 {
		l.ChunkSize = pol.ChunkSize
	}
	n := uint32(len(table))
	if n == 0 {
		return l, nil
	}
	stripe := min(n, s.opts.MaxStripe)
	if pol.Stripe != 0 {
		stripe = min(pol.Stripe, n)
	}
	// Round robin: consecutive inode ids take consecutive windows of stripe
	// chains of the table (shifted by one each time the windows wrap around,
	// so that a file striped over the whole table still starts at a
	// different chain); the window is then shuffled per file.
	l.Seed = mix64(ino)
	l.Stripe = stripe
	l.Chains = make([]uint32, stripe)
	k := ino * uint64(stripe)
	off := (k + k/uint64(n)) % uint64(n)
	for i := range l.Chains {
		l.Chains[i] = table[(off+uint64(i))%uint64(n)]
	}
	r := rand.New(rand.NewPCG(l.Seed, ino))
	r.Shuffle(len(l.Chains), func(i, j int) { l.Chains[i], l.Chains[j] = l.Chains[j], l.Chains[i] })
	return l, nil
}

// mix64 is splitmix64's finalizer: a per-file seed from the inode id.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// checkDirLayout validates a directory layout policy.
func (s *Service) checkDirLayout(ctx context.Context, p proto.DirLayout) error {
	if c := p.ChunkSize; c != 0 && (bits.OnesCount32(c) != 1 || c < proto.MinChunkSize || c > proto.MaxChunkSize) {
		return proto.Errorf(proto.EINVAL, "chunk size %d: want a power of two in [%d, %d]", c, proto.MinChunkSize, proto.MaxChunkSize)
	}
	if p.Stripe > MaxStripe {
		return proto.Errorf(proto.EINVAL, "stripe %d: at most %d", p.Stripe, MaxStripe)
	}
	if p.ChainTable != 0 && s.opts.ChainTables != nil {
		t, err := s.opts.ChainTables.ChainTable(ctx, p.ChainTable)
		if err != nil {
			return proto.Errorf(proto.EINVAL, "chain table %d: %v", p.ChainTable, err)
		}
		if len(t) == 0 {
			return proto.Errorf(proto.EINVAL, "chain table %d has no chains", p.ChainTable)
		}
	}
	return nil
}
