package chunkengine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"fff/internal/proto"
	"fff/internal/uring"
	"fff/server/kv"
	"fff/server/kv/bboltkv"
)

// Defaults for Options.
const (
	DefaultCacheBytes   = 64 << 20
	DefaultMaxOpenFiles = 4096
)

// Options configure Open. The zero value is the production setting.
type Options struct {
	// Ring carries the engine's disk IO. Nil: the engine creates its own
	// (uring.DefaultEntries in flight) and closes it on Close. A shared
	// ring is left open.
	Ring *uring.Ring
	// CacheBytes bounds the in-memory cache of chunk metadata records
	// (about 4 bytes per 4 KiB block plus ~160 per chunk). Default 64 MiB,
	// enough for the checksums of ~60 GiB of 4 MiB chunks.
	CacheBytes int64
	// MaxOpenFiles bounds the data files kept open between IOs. Default 4096.
	MaxOpenFiles int
	// MaxChunkSize is the largest chunk: a write or truncate beyond it
	// fails with EINVAL. Default 4 MiB, at most MaxChunkSizeLimit; a
	// multiple of BlockSize.
	MaxChunkSize int64
	// CommitDelay is how long a metadata commit waits for others to share
	// its fsync. Default 0: bboltkv's group commit already gathers the
	// writers that arrive while a commit is under way, so a wait only
	// delays a lone writer (a small file written through the mount paid
	// 0.5 ms of its ~2 ms storage write for it).
	CommitDelay time.Duration
	// NoDirect forces buffered (page cache) IO even where O_DIRECT works.
	NoDirect bool
	// BallastSize is the room kept for removals on a full disk, a
	// preallocated file TARGET/chunks.db.ballast (bboltkv's ballast): a
	// removal whose commit finds the disk full releases it. Default
	// DefaultBallastSize (16 MiB); negative: none.
	BallastSize int64
	// Logger receives the engine's warnings; the zero Logger discards them.
	Logger zerolog.Logger
}

// Engine stores the chunks of one storage target: metadata in a bbolt file,
// data in one file per chunk, all IO through io_uring. It is safe for
// concurrent use. See the package documentation for the guarantees.
type Engine struct {
	dir      string
	dataDir  string
	db       kv.DB
	ring     *uring.Ring
	ownRing  bool
	direct   bool
	noDirect bool
	maxChunk int64
	log      zerolog.Logger

	meta    metaCache
	files   fileCache
	bufs    bufPool
	scratch sync.Pool // *readScratch
	dirs    sync.Map  // fan-out directories known to exist (durably)
	locks   [lockStripes]sync.Mutex

	genMu    sync.Mutex
	genNext  uint64
	genLimit uint64

	life   sync.RWMutex // read-held by every operation; Close takes it
	closed bool

	stats   counters // Stats
	orphans int      // data files removed by Open
}

// DefaultBallastSize is Options.BallastSize's default.
const DefaultBallastSize = 16 << 20

// lockStripes is the number of per-chunk write locks; chunks share a
// stripe by hashID.
const lockStripes = 1024

// genBlock file generations are reserved in the KV at a time.
const genBlock = 1 << 16

// KV file name inside the target directory.
const metaFileName = "chunks.db"

// ErrClosed is returned by every method after Close. It matches
// fs.ErrClosed (proto code EBADF).
var ErrClosed = fmt.Errorf("chunkengine: engine closed: %w", fs.ErrClosed)

// Open opens (creating if needed) the chunk engine in dir: the metadata KV
// <dir>/chunks.db and the data files under <dir>/data. It removes data files
// that no committed record names (left by a crash) and probes O_DIRECT: if
// the filesystem refuses it, IO is buffered, Direct reports false and a
// warning is logged.
func Open(ctx context.Context, dir string, opts Options) (_ *Engine, err error) {
	// Absolute, because Locate hands data file paths to other processes.
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	e := &Engine{
		dir:      dir,
		dataDir:  filepath.Join(dir, dataDirName),
		noDirect: opts.NoDirect,
		maxChunk: opts.MaxChunkSize,
		log:      opts.Logger,
		ring:     opts.Ring,
	}
	ballast := opts.BallastSize
	if ballast == 0 {
		ballast = DefaultBallastSize
	}
	if e.maxChunk == 0 {
		e.maxChunk = DefaultMaxChunkSize
	}
	if e.maxChunk < 0 || e.maxChunk > MaxChunkSizeLimit || e.maxChunk%BlockSize != 0 {
		return nil, proto.Errorf(proto.EINVAL, "chunkengine: MaxChunkSize %d: want a multiple of %d up to %d",
			e.maxChunk, BlockSize, MaxChunkSizeLimit)
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = DefaultCacheBytes
	}
	maxOpen := opts.MaxOpenFiles
	if maxOpen <= 0 {
		maxOpen = DefaultMaxOpenFiles
	}
	e.meta.init(cacheBytes)
	e.files.init(maxOpen)

	if err := os.MkdirAll(e.dataDir, dirMode); err != nil {
		return nil, fmt.Errorf("chunkengine: %w", err)
	}
	// The fan-out directories below are narrowed by collectOrphans.
	if err := privateDir(dir, true); err != nil {
		return nil, err
	}
	if err := privateDir(e.dataDir, false); err != nil {
		return nil, err
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	if e.ring == nil {
		r, err := uring.NewRing(0)
		if err != nil {
			return nil, fmt.Errorf("chunkengine: %w", err)
		}
		e.ring, e.ownRing = r, true
	}
	defer func() {
		if err != nil && e.ownRing {
			e.ring.Close()
		}
	}()
	db, err := bboltkv.Open(filepath.Join(dir, metaFileName), &bboltkv.Options{MaxBatchDelay: opts.CommitDelay, BallastSize: ballast, Logger: opts.Logger})
	if err != nil {
		return nil, fmt.Errorf("chunkengine: %w", err)
	}
	e.db = db
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	if err := e.initKV(ctx); err != nil {
		return nil, err
	}
	removed, err := e.collectOrphans(ctx)
	if err != nil {
		return nil, err
	}
	e.orphans = removed
	if removed > 0 {
		e.log.Info().Int("files", removed).Str("dir", dir).Msg("chunkengine: removed orphan data files")
	}
	if err := e.probeDirect(); err != nil {
		return nil, err
	}
	if !e.direct && !e.noDirect {
		e.log.Warn().Str("dir", dir).Msg("chunkengine: the filesystem refuses O_DIRECT; using buffered IO (reads go through the page cache)")
	}
	return e, nil
}

// initKV checks or writes the format record and reserves the first block
// of file generations.
func (e *Engine) initKV(ctx context.Context) error {
	err := e.db.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(keyFormat)
		if err != nil {
			return err
		}
		if v != nil {
			if err := checkFormat(v); err != nil {
				return err
			}
			return nil
		}
		return tx.Set(keyFormat, encodeFormat())
	})
	if err != nil {
		return fmt.Errorf("chunkengine: %s: %w", filepath.Join(e.dir, metaFileName), err)
	}
	return e.reserveGens(ctx)
}

// reserveGens reserves the next genBlock file generations durably, so
// generations are never reused, not even across crashes. genMu held or
// called from Open.
func (e *Engine) reserveGens(ctx context.Context) error {
	var start uint64
	err := e.db.Update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(keyGen)
		if err != nil {
			return err
		}
		start = 1
		if len(v) == 8 {
			start = binary.LittleEndian.Uint64(v)
		}
		return tx.Set(keyGen, binary.LittleEndian.AppendUint64(nil, start+genBlock))
	})
	if err != nil {
		return fmt.Errorf("chunkengine: reserve file generations: %w", err)
	}
	e.genNext, e.genLimit = start, start+genBlock
	return nil
}

func (e *Engine) newGen(ctx context.Context) (uint64, error) {
	e.genMu.Lock()
	defer e.genMu.Unlock()
	if e.genNext >= e.genLimit {
		if err := e.reserveGens(ctx); err != nil {
			return 0, err
		}
	}
	g := e.genNext
	e.genNext++
	return g, nil
}

// probeDirect creates a scratch file in the data directory and asks uring
// whether O_DIRECT works on it.
func (e *Engine) probeDirect() error {
	path := filepath.Join(e.dataDir, ".direct-probe")
	f, err := uring.Open(path, e.ring, uring.Options{Write: true, Create: true, NoDirect: e.noDirect})
	if err != nil {
		return fmt.Errorf("chunkengine: probe O_DIRECT: %w", err)
	}
	e.direct = f.Direct()
	f.Close()
	os.Remove(path)
	return nil
}

// Direct reports whether data IO bypasses the page cache (O_DIRECT).
func (e *Engine) Direct() bool { return e.direct }

// Dir is the target directory given to Open.
func (e *Engine) Dir() string { return e.dir }

// MaxChunkSize is the chunk size limit.
func (e *Engine) MaxChunkSize() int64 { return e.maxChunk }

// Close waits for running operations, then closes the data files, the KV
// and the engine's own ring. It is idempotent.
func (e *Engine) Close() error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	e.closeFiles()
	err := e.db.Close()
	if e.ownRing {
		if rerr := e.ring.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

func (e *Engine) enter() error {
	e.life.RLock()
	if e.closed {
		e.life.RUnlock()
		return ErrClosed
	}
	return nil
}

func (e *Engine) leave() { e.life.RUnlock() }

func (e *Engine) lockChunk(id ChunkID) *sync.Mutex {
	mu := &e.locks[hashID(id)%lockStripes]
	mu.Lock()
	return mu
}

func notFound(id ChunkID) error { return proto.Errorf(proto.ENOENT, "chunkengine: chunk %v", id) }

// current returns id's committed record, nil if the chunk does not exist.
// The cache answers when it can, the KV otherwise.
func (e *Engine) current(ctx context.Context, id ChunkID) (*record, error) {
	rec, ok, seq := e.meta.get(id)
	if ok {
		return rec, nil
	}
	rec, err := e.load(ctx, id)
	if err != nil {
		return nil, err
	}
	e.meta.fill(id, rec, seq)
	return rec, nil
}

// load reads id's record from the KV.
func (e *Engine) load(ctx context.Context, id ChunkID) (*record, error) {
	var v []byte
	err := e.db.View(ctx, func(tx kv.ReadTxn) error {
		var err error
		v, err = tx.Get(chunkKey(id))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chunkengine: chunk %v: read metadata: %w", id, err)
	}
	if v == nil {
		return nil, nil
	}
	rec, err := decodeRecord(v)
	if err != nil {
		return nil, damagedRecord(id, err)
	}
	return rec, nil
}

// damagedRecord reports a record that fails its own checks. It is a
// ChecksumMismatch: the chunk cannot be trusted on this target, and the
// remedy (read another replica, repair by Remove and rewrite) is the same.
func damagedRecord(id ChunkID, err error) error {
	return proto.Errorf(proto.ChecksumMismatch, "chunkengine: chunk %v: %v", id, err)
}

// errConcurrentCommit means the KV holds a record other than the one the
// writer started from: a bug or a second process on the same target.
var errConcurrentCommit = errors.New("chunkengine: chunk record changed under its writer")

// commit replaces id's record prev (nil: absent) by next (nil: remove) in
// one durable KV transaction and then in the cache. The caller holds the
// chunk's lock, and the data next names is durable. On error the outcome
// may be unknown (a failed fsync), so the cache entry is dropped and the
// next access reads the KV.
func (e *Engine) commit(ctx context.Context, id ChunkID, prev, next *record) error {
	return e.commitWith(ctx, id, prev, next, e.db.Update)
}

// commitWith is commit through update (e.db.Update, or a removal's).
func (e *Engine) commitWith(ctx context.Context, id ChunkID, prev, next *record, update func(context.Context, func(kv.Txn) error) error) error {
	key := chunkKey(id)
	var val []byte
	if next != nil {
		val = next.encode()
	}
	err := update(ctx, func(tx kv.Txn) error {
		v, err := tx.Get(key)
		if err != nil {
			return err
		}
		if err := samePrev(v, prev); err != nil {
			return err
		}
		if next == nil {
			return tx.Clear(key)
		}
		return tx.Set(key, val)
	})
	if err != nil {
		e.meta.drop(id)
		return fmt.Errorf("chunkengine: chunk %v: commit: %w", id, err)
	}
	e.meta.put(id, next)
	return nil
}

// samePrev checks that the stored record v is prev (by version and
// generation; prev nil = absent). A damaged stored record matches a nil
// prev only through Remove (prevDamaged).
func samePrev(v []byte, prev *record) error {
	switch {
	case prev == prevDamaged:
		return nil
	case prev == nil && v == nil:
		return nil
	case prev == nil || v == nil:
		return errConcurrentCommit
	}
	if len(v) < recHeader || binary.LittleEndian.Uint64(v[8:]) != prev.version ||
		binary.LittleEndian.Uint64(v[16:]) != prev.gen {
		return errConcurrentCommit
	}
	return nil
}

// prevDamaged is commit's prev for removing a damaged record.
var prevDamaged = &record{}

// ChunkInfo describes a chunk's committed state.
type ChunkInfo struct {
	ID ChunkID
	// Version counts committed changes: 1 after the first write, +1 per
	// committed Write or Truncate.
	Version uint64
	// Length is the committed length in bytes.
	Length int64
	// Checksum is a CRC32C over the length and the block checksums: two
	// replicas with equal Length and Checksum hold the same bytes (with
	// CRC32C's confidence), found without reading data.
	Checksum uint32
}

func info(id ChunkID, r *record) ChunkInfo {
	return ChunkInfo{ID: id, Version: r.version, Length: r.length, Checksum: r.fingerprint()}
}

// Stat returns id's committed state, or ENOENT.
func (e *Engine) Stat(ctx context.Context, id ChunkID) (ChunkInfo, error) {
	if err := e.enter(); err != nil {
		return ChunkInfo{}, err
	}
	defer e.leave()
	rec, err := e.current(ctx, id)
	if err != nil {
		return ChunkInfo{}, err
	}
	if rec == nil {
		return ChunkInfo{}, notFound(id)
	}
	return info(id, rec), nil
}

// List returns the chunks of inode ino in index order (for garbage
// collection and resync). A damaged record fails the call.
func (e *Engine) List(ctx context.Context, ino uint64) ([]ChunkInfo, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.leave()
	var out []ChunkInfo
	p := inoPrefix(ino)
	err := e.db.View(ctx, func(tx kv.ReadTxn) error {
		kvs, err := tx.Range(p, kv.PrefixEnd(p), kv.RangeOptions{})
		if err != nil {
			return err
		}
		out, err = infos(kvs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("chunkengine: list inode %d: %w", ino, err)
	}
	return out, nil
}

// infos decodes chunk records (other keys are skipped); a damaged record
// is an error.
func infos(kvs []kv.KeyValue) ([]ChunkInfo, error) {
	out := make([]ChunkInfo, 0, len(kvs))
	for _, x := range kvs {
		id, ok := parseChunkKey(x.Key)
		if !ok {
			continue
		}
		rec, err := decodeRecord(x.Value)
		if err != nil {
			return nil, damagedRecord(id, err)
		}
		out = append(out, info(id, rec))
	}
	return out, nil
}

// Usage is the space of the filesystem holding the target.
type Usage struct {
	Capacity  uint64 // total bytes
	Used      uint64 // bytes in use (by anything on the filesystem)
	Available uint64 // bytes an unprivileged writer can still use
	// FSID identifies the filesystem on this machine: the st_dev of the
	// target directory. Every mounted filesystem has its own (tmpfs
	// included, where statfs's f_fsid is 0); bind mounts of one share it.
	// It is not stable across reboots or remounts, only within a running
	// system, which is all that comparing the targets of one node needs.
	FSID uint64
}

// Usage reports the target filesystem's space (statfs) and identity.
func (e *Engine) Usage() (Usage, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(e.dir, &st); err != nil {
		return Usage{}, fmt.Errorf("chunkengine: statfs %s: %w", e.dir, err)
	}
	var ds unix.Stat_t
	if err := unix.Stat(e.dir, &ds); err != nil {
		return Usage{}, fmt.Errorf("chunkengine: stat %s: %w", e.dir, err)
	}
	bs := uint64(st.Bsize)
	return Usage{
		Capacity:  st.Blocks * bs,
		Used:      (st.Blocks - st.Bfree) * bs,
		Available: st.Bavail * bs,
		FSID:      uint64(ds.Dev),
	}, nil
}

// Remove deletes chunk id: its record first (durably), then its data file.
// A missing chunk is ENOENT. A chunk whose record is damaged is removed
// too, with every data file it may have.
func (e *Engine) Remove(ctx context.Context, id ChunkID) error {
	if err := e.enter(); err != nil {
		return err
	}
	defer e.leave()
	mu := e.lockChunk(id)
	defer mu.Unlock()
	cur, err := e.current(ctx, id)
	if err != nil {
		if !errors.Is(err, proto.ErrChecksumMismatch) {
			return err
		}
		if err := e.commitRemoval(ctx, id, prevDamaged); err != nil {
			return err
		}
		e.removeAllFiles(id)
		return nil
	}
	if cur == nil {
		return notFound(id)
	}
	if err := e.commitRemoval(ctx, id, cur); err != nil {
		return err
	}
	e.retire(id, cur.gen)
	e.removeFile(id, cur.gen)
	return nil
}

// commitRemoval commits the deletion of chunk id's record; on a full disk
// it may use the KV's ballast (kv.UpdateFreeing): a removal must be able to
// free space.
func (e *Engine) commitRemoval(ctx context.Context, id ChunkID, prev *record) error {
	return e.commitWith(ctx, id, prev, nil, func(ctx context.Context, fn func(kv.Txn) error) error {
		return kv.UpdateFreeing(ctx, e.db, fn)
	})
}

// bufPool recycles Align-aligned buffers in power-of-two classes from
// BlockSize to MaxChunkSizeLimit.
type bufPool struct {
	classes [bufClasses]sync.Pool
}

const bufClasses = 15 // 4 KiB << 14 = 64 MiB

type abuf struct{ b []byte }

func bufClass(n int) int {
	if n <= BlockSize {
		return 0
	}
	return bits.Len(uint((n - 1) / BlockSize))
}

// get returns an aligned buffer of at least n bytes (contents undefined).
func (p *bufPool) get(n int) *abuf {
	c := bufClass(n)
	if c >= bufClasses {
		return &abuf{b: uring.AlignedBuffer(n)}
	}
	if x, _ := p.classes[c].Get().(*abuf); x != nil {
		return x
	}
	return &abuf{b: uring.AlignedBuffer(BlockSize << c)}
}

func (p *bufPool) put(x *abuf) {
	if x == nil {
		return
	}
	if c := bufClass(len(x.b)); c < bufClasses && len(x.b) == BlockSize<<c {
		p.classes[c].Put(x)
	}
}
