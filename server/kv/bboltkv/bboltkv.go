// Package bboltkv is the embedded kv.DB: one bbolt file, one bucket. It is
// fff's default metadata store (DESIGN §3, §6).
//
// bbolt has one writer at a time, so read-write transactions are trivially
// serializable, range reads included, and never conflict.
//
// # Group commit
//
// Update does not use bbolt's DB.Batch, whose first caller always sleeps
// for MaxBatchDelay waiting for company: a lone client paid that timer
// (2 ms) on every commit, although a commit (two fdatasyncs) takes about
// 0.3 ms on the disks we measure (docs/performance.md). Instead the DB
// commits as databases commit their write-ahead log (leader/follower):
//
//   - an Update joins a queue; if no commit is under way, its caller becomes
//     the leader at once and commits, with no wait;
//   - Updates that arrive while a commit (its fsync) is under way wait in
//     the queue; when the commit ends, the leader hands the lead to the
//     oldest of them, which commits everything queued by then (at most
//     MaxBatchSize) in one bbolt transaction and one commit, and so on.
//
// Batches thus grow with the load by themselves: one member when the
// callers are alone, as many as arrived during the previous commit under
// load. Each leader commits one batch, the one holding its own Update, so
// no caller waits for more than the commits queued ahead of it. A timer
// (Options.MaxBatchDelay) is still available to callers that want bigger
// batches at the price of latency; it is off by default.
//
// In a batch the leader runs the bodies one after the other in the shared
// bbolt transaction, each seeing the writes of those before it (the
// serial order is the queue order). A body's writes are buffered
// (txnkit.Buffer) and reach the bbolt transaction only when the body
// returns nil, so a body that fails or panics leaves nothing in it: the
// others commit and run once, and the failing caller gets its error (or
// its panic, re-raised in its own goroutine). Only if bbolt itself fails
// while taking a body's writes is the transaction rolled back; that member
// gets the error and the batch runs again without it, re-running the
// other bodies (kv's contract allows re-runs). If the commit fails, every
// member gets the commit error, those whose bodies failed included (their
// errors may rest on writes that were never committed). A batch in which
// no body wrote anything is rolled back instead of committed: there is
// nothing to make durable, and no fsync.
//
// View runs in a bbolt read transaction and copies every key and value out
// of bbolt's mmap before handing it over. Views never wait for commits.
//
// Commits are durable by default: bbolt fsyncs (fdatasync, twice: data
// pages, then the meta page) before Update returns. Options.NoSync turns
// that off for tests and benchmarks only.
package bboltkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/rs/zerolog"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
)

// ErrLocked is returned by Open when another process (or another open DB
// in this process) holds the file.
var ErrLocked = errors.New("bboltkv: database file is locked by another user")

// Defaults for Options. See Options for the reasoning.
const (
	DefaultLockTimeout     = time.Second
	DefaultMaxBatchSize    = 128
	DefaultInitialMmapSize = 1 << 30
)

// Options tune Open. The zero value (or a nil *Options) is the production
// setting.
type Options struct {
	// NoSync skips the fsync at commit. A crash or power loss can then lose
	// committed transactions or corrupt the file. For tests and benchmarks
	// only.
	NoSync bool
	// LockTimeout bounds the wait for the file lock, so that a second
	// process opening the same file fails with ErrLocked instead of
	// hanging. Default DefaultLockTimeout.
	LockTimeout time.Duration
	// MaxBatchDelay, if positive, makes a leader wait for company until
	// this long after the oldest Update of its batch arrived (or until
	// MaxBatchSize joined), as bbolt's DB.Batch does. Default 0: no wait.
	// Group commit needs no timer (see the package documentation); a delay
	// only pays where callers arrive spread over it and an fsync costs far
	// more than it, and it costs every lone caller its full length.
	MaxBatchDelay time.Duration
	// MaxBatchSize bounds the Updates of one commit. Default 128: if bbolt
	// itself fails while taking a body's writes, the batch is rolled back
	// and re-run, so this bounds that re-work and the time the single
	// writer lock is held, while 128 small metadata transactions per fsync
	// already amortize it well.
	MaxBatchSize int
	// InitialMmapSize is the initial size of bbolt's memory map (address
	// space, not disk). bbolt must remap to grow the file, and a remap waits
	// for every open read transaction; mapping 1 GiB up front (default)
	// keeps writers from waiting behind Views until the file is that large.
	InitialMmapSize int
	// BallastSize is the room kept on the file's disk for transactions
	// that free space (UpdateReserved; ballast.go): a preallocated file
	// PATH.ballast of this size. Default 0: none.
	BallastSize int64
	// Logger receives the ballast's warnings; the zero Logger discards
	// them.
	Logger zerolog.Logger
}

// DB is a kv.DB stored in one bbolt file.
type DB struct {
	life     txnkit.Lifecycle
	bolt     *bolt.DB
	path     string
	maxBatch int
	delay    time.Duration
	ballast  ballast
	log      zerolog.Logger

	mu      sync.Mutex
	queue   []*call       // Updates waiting for a commit, oldest first
	leading bool          // a leader is committing (queue non-empty ⇒ leading)
	full    chan struct{} // closed when the queue reaches maxBatch while a leader waits for company

	hooks hooks
}

// hooks let tests observe and steer the committer; nil fields do nothing.
// They are set before the first Update and never changed.
type hooks struct {
	// commit runs after a batch's bodies, before its commit, with the
	// number of members that ran and whether any wrote; a non-nil error
	// fails the commit as a failed fsync would.
	commit func(members int, wrote bool) error
	// apply can fail the handing of member i's writes to bbolt.
	apply func(i int) error
	// wait runs when a leader waits for company (MaxBatchDelay > 0).
	wait func()
}

var _ kv.DB = (*DB)(nil)

var bucketName = []byte("kv")

// Open opens (creating if needed) the database file at path.
func Open(path string, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.MaxBatchDelay < 0 {
		o.MaxBatchDelay = 0
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = DefaultMaxBatchSize
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = DefaultInitialMmapSize
	}
	// Validate the header before bbolt maps the file and trusts it.
	if _, err := CheckFile(path); err != nil {
		return nil, err
	}
	b, err := openBolt(path, &bolt.Options{
		Timeout:         o.LockTimeout,
		NoSync:          o.NoSync,
		InitialMmapSize: o.InitialMmapSize,
		// As etcd does: the hashmap freelist stays fast on large, fragmented
		// files, and not writing the freelist makes each commit smaller (it
		// is rebuilt by a scan at open).
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s: file lock not acquired within %v (is another fffd using it?)", ErrLocked, path, o.LockTimeout)
	}
	if err != nil {
		return nil, openErr(path, err)
	}
	// The first write transaction rebuilds the freelist by walking every
	// page (NoFreelistSync), and bbolt panics on a damaged one.
	if err := guardedUpdate(b, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	}); err != nil {
		b.Close()
		return nil, openErr(path, err)
	}
	d := &DB{bolt: b, path: path, maxBatch: o.MaxBatchSize, delay: o.MaxBatchDelay, log: o.Logger,
		ballast: ballast{path: path + ".ballast", size: o.BallastSize}}
	if _, err := d.ballast.ensure(); err != nil {
		d.log.Warn().Err(err).Str("file", d.ballast.path).Msg("bboltkv: cannot make the ballast (room kept for removals on a full disk)")
	}
	return d, nil
}

// Path returns the database file's path.
func (d *DB) Path() string { return d.path }

func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", kv.ErrClosed, err)
	}
	return fmt.Errorf("bboltkv: %w", err)
}

// View implements kv.DB with a bbolt read transaction.
func (d *DB) View(ctx context.Context, fn func(kv.ReadTxn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	var result error
	ran := false
	err := d.bolt.View(func(tx *bolt.Tx) error {
		ran = true
		g := txnkit.NewGuard(ctx, false)
		result = g.Finish(fn(g.ReadTxn(txnkit.Reader{Base: base{tx.Bucket(bucketName)}})))
		return nil
	})
	if err != nil && !ran {
		return mapErr(err)
	}
	if result != nil {
		return result
	}
	if err != nil {
		return mapErr(err)
	}
	return nil
}

// Close implements kv.DB: it waits for running transactions, then closes
// the file (releasing its lock).
func (d *DB) Close() error {
	if !d.life.Close() {
		return nil
	}
	if err := d.bolt.Close(); err != nil {
		return fmt.Errorf("bboltkv: close %s: %w", d.path, err)
	}
	return nil
}

// clearRange deletes [begin, end) (end nil = no upper bound) from b.
func clearRange(b *bolt.Bucket, begin, end []byte) error {
	var keys [][]byte
	err := base{b}.Scan(begin, end, false, func(k, _ []byte) bool {
		keys = append(keys, append([]byte{}, k...))
		return true
	})
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// base reads one bbolt bucket; slices point into bbolt's memory.
type base struct{ b *bolt.Bucket }

func (s base) Get(key []byte) (_ []byte, err error) {
	defer guard(&err, debug.SetPanicOnFault(true))
	return s.b.Get(key), nil
}

func (s base) Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) (err error) {
	defer guard(&err, debug.SetPanicOnFault(true))
	c := s.b.Cursor()
	var k, v []byte
	if !reverse {
		if len(begin) == 0 {
			k, v = c.First()
		} else {
			k, v = c.Seek(begin)
		}
		for ; k != nil; k, v = c.Next() {
			if len(end) > 0 && bytes.Compare(k, end) >= 0 {
				return nil
			}
			if !fn(k, v) {
				return nil
			}
		}
		return nil
	}
	if len(end) == 0 {
		k, v = c.Last()
	} else if k, v = c.Seek(end); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	for ; k != nil; k, v = c.Prev() {
		if bytes.Compare(k, begin) < 0 {
			return nil
		}
		if !fn(k, v) {
			return nil
		}
	}
	return nil
}
