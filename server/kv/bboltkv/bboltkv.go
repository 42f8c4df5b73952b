// Package bboltkv is the embedded kv.DB: one bbolt file, one bucket. It is
// fff's default metadata store (DESIGN §3, §6).
//
// bbolt has one writer at a time, so read-write transactions are trivially
// serializable, range reads included, and never conflict. Update goes
// through bbolt's DB.Batch, which groups concurrent Updates into one bbolt
// transaction and one fsync (group commit). Batch may run a body more than
// once, exactly like FoundationDB's retry loop, which is why kv's contract
// says bodies may re-run.
//
// A body's writes are buffered (txnkit.Buffer) and reach the bbolt
// transaction only when the body returns nil. A body that fails therefore
// leaves nothing in the shared batch transaction and does not force bbolt
// to roll back and re-run the rest of its batch; its error is returned to
// its caller unchanged. View runs in a bbolt read transaction and copies
// every key and value out of bbolt's mmap before handing it over.
//
// Commits are durable by default: bbolt fsyncs the file before Update
// returns. Options.NoSync turns that off for tests and benchmarks only.
package bboltkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

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
	DefaultMaxBatchDelay   = 2 * time.Millisecond
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
	// MaxBatchDelay is how long the first Update of a group commit waits
	// for others to join it. Default 2 ms (bbolt's own default is 10 ms):
	// a lone Update pays at most this much extra latency, about one fsync
	// on an SSD, while under load a batch collects what arrives during
	// roughly one commit, which is where group commit pays off.
	MaxBatchDelay time.Duration
	// MaxBatchSize ends a batch early when this many Updates have joined.
	// Default 128 (bbolt's is 1000): if a body fails inside bbolt itself
	// (a panic or a storage error), bbolt rolls the batch back and re-runs
	// every other member, so a smaller batch bounds that re-work and the
	// time the single writer lock is held, while 128 small metadata
	// transactions per fsync already amortize it well.
	MaxBatchSize int
	// InitialMmapSize is the initial size of bbolt's memory map (address
	// space, not disk). bbolt must remap to grow the file, and a remap waits
	// for every open read transaction; mapping 1 GiB up front (default)
	// keeps writers from waiting behind Views until the file is that large.
	InitialMmapSize int
}

// DB is a kv.DB stored in one bbolt file.
type DB struct {
	life txnkit.Lifecycle
	bolt *bolt.DB
	path string
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
	if o.MaxBatchDelay <= 0 {
		o.MaxBatchDelay = DefaultMaxBatchDelay
	}
	if o.MaxBatchSize <= 0 {
		o.MaxBatchSize = DefaultMaxBatchSize
	}
	if o.InitialMmapSize <= 0 {
		o.InitialMmapSize = DefaultInitialMmapSize
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{
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
		return nil, fmt.Errorf("bboltkv: open %s: %w", path, err)
	}
	b.MaxBatchDelay = o.MaxBatchDelay
	b.MaxBatchSize = o.MaxBatchSize
	if err := b.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	}); err != nil {
		b.Close()
		return nil, fmt.Errorf("bboltkv: open %s: %w", path, err)
	}
	return &DB{bolt: b, path: path}, nil
}

// Path returns the database file's path.
func (d *DB) Path() string { return d.path }

func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", kv.ErrClosed, err)
	}
	return fmt.Errorf("bboltkv: %w", err)
}

// Update implements kv.DB through bbolt's group commit (DB.Batch).
func (d *DB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	// result is the outcome of the body's last run; Batch may call the
	// closure several times (when another member of the batch fails inside
	// bbolt, or solo after a panic).
	var result error
	err := d.bolt.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		g := txnkit.NewGuard(ctx, true)
		buf := txnkit.NewBuffer(base{b})
		result = g.Finish(fn(g.Txn(buf)))
		if result != nil {
			// Nothing of this body is in tx: let the batch commit the others.
			return nil
		}
		return buf.Apply(
			func(begin, end []byte) error { return clearRange(b, begin, end) },
			b.Put,
			b.Delete,
		)
	})
	if err != nil {
		return mapErr(err)
	}
	return result
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

func (s base) Get(key []byte) ([]byte, error) {
	return s.b.Get(key), nil
}

func (s base) Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) error {
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
