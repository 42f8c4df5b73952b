// Package kv is the transactional key-value store that every piece of fff
// metadata lives in (DESIGN §6).
//
// The interface is shaped after FoundationDB: a transaction is a function
// that the database runs, and may run more than once.
//
//	err := db.Update(ctx, func(tx kv.Txn) error {
//		v, err := tx.Get(key)
//		if err != nil {
//			return err
//		}
//		n := decode(v) + 1
//		result = n // assign captured results on every run: the last run wins
//		return tx.Set(key, encode(n))
//	})
//
// # Backends
//
// Every backend passes the one conformance suite in package kvtest:
//
//   - bboltkv: embedded, single file, the default (go.etcd.io/bbolt).
//   - etcdkv: etcd v3, for replicated clusters (several meta servers, no
//     single point of failure); an fffd node can embed an etcd member.
//   - fdbkv: FoundationDB, for large clusters; built only with -tags fdb.
//   - memkv: in memory, for fast unit tests of code that uses a kv.DB.
//
// Code above this package (meta, mgmtd) must not know which backend runs.
//
// # Transactions
//
// Update runs fn in a serializable read-write transaction: the committed
// history is equivalent to some serial order of the committed transactions,
// including range reads (no lost updates, no write skew, no phantoms).
// Reads inside fn see fn's own earlier writes (read-your-writes), including
// in Range. If fn returns an error, nothing it wrote is committed and Update
// returns that error unchanged (errors.Is/As work on it).
//
// The body of Update may run more than once (FoundationDB retries on
// conflicts; bbolt's group commit re-runs a batch when bbolt refuses one
// member's writes, and a ballast retry re-runs a body after ENOSPC). So a
// body must:
//
//   - have no side effects outside the transaction (no sends on channels,
//     no RPCs, no appends to captured slices that survive a re-run);
//   - assign its results to captured variables unconditionally on every run,
//     so that after Update returns nil they hold the values of the run that
//     committed;
//   - not start another transaction (no nested Update/View) and not Close
//     the DB.
//
// View runs fn in a read-only transaction that sees one consistent snapshot
// (it never observes part of a concurrent Update). It may also run more than
// once on backends that retry reads.
//
// A ReadTxn/Txn is valid only inside the function it was passed to and only
// on the goroutine running it.
//
// # Keys, values, ranges
//
// Keys are non-empty byte strings ordered bytewise (bytes.Compare); any byte
// value is allowed, including 0x00 and 0xFF. Values are arbitrary byte
// strings, possibly empty. Get returns (nil, nil) for an absent key and a
// non-nil slice (possibly of length 0) for a present one. Every slice
// returned to the caller is a fresh copy owned by the caller; slices passed
// to Set may be reused by the caller as soon as Set returns.
//
// A range [begin, end) includes begin and excludes end. A nil or empty end
// means "no upper bound"; a nil or empty begin means "from the first key".
// If begin >= end (and end is set) the range is empty: Range returns nothing
// and ClearRange does nothing. PrefixEnd(p) is the end of the range of keys
// that start with p.
//
// # Limits
//
// Every backend enforces the same limits, which are FoundationDB's, with
// room left for the key prefix a backend may add (fdbkv's per-database
// subspace). They are checked before a backend sees an operation, so every
// backend reports them with the same typed error at the same point:
//
//   - a key longer than MaxKeySize: ErrKeyTooLarge, from the operation that
//     used it (Get, Set, Clear, ClearRange, Range);
//   - a value longer than MaxValueSize: ErrValueTooLarge, from Set;
//   - a read-write transaction whose size (the sum of the *Cost functions
//     over its operations) would exceed MaxTxnSize:
//     ErrTxnTooLarge, from the operation that crosses the limit, and again
//     from Update even if fn swallowed it; nothing is committed;
//   - a transaction attempt older than MaxTxnDuration: ErrTxnTooOld, from
//     every operation issued after that, and from Update/View when fn
//     returns late; nothing is committed.
//
// A key or value error leaves the transaction usable (the offending
// operation had no effect); size and age errors are sticky.
//
// # Errors
//
// The sentinel errors below are matched with errors.Is; the errors returned
// wrap them with detail. ErrConflict is only returned after a backend has
// exhausted its retries (bbolt and memkv never conflict). ErrUnknownResult
// comes only from replicated backends (etcdkv) when a commit's answer was
// lost. A context that is canceled or past its deadline aborts a
// transaction with an error that wraps ctx.Err(); a backend checks the
// context before running fn and at every operation inside it.
package kv

import (
	"context"
	"errors"
	"time"
)

// DB is a transactional key-value store. It is safe for concurrent use.
type DB interface {
	// Update runs fn in a serializable read-write transaction and commits
	// it if fn returns nil. fn may run more than once; see the package
	// documentation for the contract.
	Update(ctx context.Context, fn func(tx Txn) error) error
	// View runs fn in a read-only transaction over a consistent snapshot.
	View(ctx context.Context, fn func(tx ReadTxn) error) error
	// Close waits for running transactions to finish and releases the
	// database. Calls after Close return ErrClosed; Close itself is
	// idempotent.
	Close() error
}

// ReadTxn reads inside a transaction.
type ReadTxn interface {
	// Get returns the value of key, or (nil, nil) if key is absent.
	Get(key []byte) ([]byte, error)
	// Range returns the pairs with begin <= key < end in key order (or
	// reverse key order), at most opts.Limit of them if Limit > 0. With
	// Reverse and a limit, it returns the last Limit pairs of the range,
	// highest key first.
	Range(begin, end []byte, opts RangeOptions) ([]KeyValue, error)
}

// Txn reads and writes inside a read-write transaction.
type Txn interface {
	ReadTxn
	// Set sets key to value.
	Set(key, value []byte) error
	// Clear removes key; clearing an absent key is not an error.
	Clear(key []byte) error
	// ClearRange removes every key in [begin, end).
	ClearRange(begin, end []byte) error
}

// RangeOptions controls Range.
type RangeOptions struct {
	// Limit is the maximum number of pairs returned; 0 (or less) means no
	// limit.
	Limit int
	// Reverse returns pairs in descending key order.
	Reverse bool
}

// KeyValue is one pair returned by Range. Both slices are owned by the
// caller.
type KeyValue struct {
	Key   []byte
	Value []byte
}

// Limits, identical on every backend (see the package documentation).
const (
	// KeyPrefixReserve is the room kept below FoundationDB's 10,000-byte
	// key limit for a key prefix that a backend adds (fdbkv's subspace);
	// fdbkv refuses a longer prefix.
	KeyPrefixReserve = 100
	// MaxKeySize is the largest key, in bytes: FoundationDB's 10,000 less
	// KeyPrefixReserve.
	MaxKeySize = 10_000 - KeyPrefixReserve
	// MaxValueSize is the largest value, in bytes (FoundationDB's).
	MaxValueSize = 100_000
	// MaxTxnSize is the largest read-write transaction, in bytes as counted
	// by the *Cost functions (FoundationDB's transaction size limit).
	MaxTxnSize = 10_000_000
	// MaxTxnDuration is the age at which a transaction attempt fails with
	// ErrTxnTooOld (FoundationDB's 5 s MVCC window).
	MaxTxnDuration = 5 * time.Second
)

// Sentinel errors; match them with errors.Is.
var (
	ErrKeyTooLarge   = errors.New("kv: key too large")
	ErrValueTooLarge = errors.New("kv: value too large")
	ErrTxnTooLarge   = errors.New("kv: transaction too large")
	ErrTxnTooOld     = errors.New("kv: transaction too old")
	ErrConflict      = errors.New("kv: transaction conflict, retries exhausted")
	ErrClosed        = errors.New("kv: database closed")
	ErrEmptyKey      = errors.New("kv: empty key")
	// ErrUnknownResult: the commit was sent but its outcome is unknown (the
	// connection or the store's leader was lost before the answer came). The
	// transaction may or may not have committed; only a caller that knows
	// its body is idempotent may run it again.
	ErrUnknownResult = errors.New("kv: transaction outcome unknown")
)

// PrefixEnd returns the smallest key greater than every key that starts
// with prefix, so that [prefix, PrefixEnd(prefix)) is exactly the keys with
// that prefix. It returns nil ("no upper bound") if prefix is empty or all
// 0xFF bytes.
func PrefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] != 0xFF {
			end := make([]byte, i+1)
			copy(end, prefix[:i+1])
			end[i]++
			return end
		}
	}
	return nil
}

// Prefetcher is implemented by the transactions of backends whose reads
// are network round trips (etcdkv, fdbkv). Prefetch reads keys from the
// attempt's snapshot at once (one round trip) and answers the attempt's
// later Gets of them from what it read. It changes no result: a Get
// returns what it would have returned without it.
type Prefetcher interface {
	Prefetch(keys ...[]byte) error
}

// Prefetch tells tx that its body is about to Get keys, whose names it
// knows before it has the values of the reads before them: a backend with
// remote reads fetches them together instead of one round trip each. On
// other backends it does nothing. Empty or oversized keys are skipped (the
// Get of such a key reports them). Its error is one a Get of those keys
// would have returned.
func Prefetch(tx ReadTxn, keys ...[]byte) error {
	if p, ok := tx.(Prefetcher); ok {
		return p.Prefetch(keys...)
	}
	return nil
}

// KeyAfter returns the smallest key greater than key (key + 0x00): the
// exclusive end of the single-key range [key, KeyAfter(key)).
func KeyAfter(key []byte) []byte {
	k := make([]byte, len(key)+1)
	copy(k, key)
	return k
}

// Reserved is implemented by engines that keep room on a local disk for
// transactions that free space (bboltkv's ballast): UpdateReserved is
// Update, except that on a full disk it may use that room.
type Reserved interface {
	UpdateReserved(ctx context.Context, fn func(Txn) error) error
}

// UpdateFreeing runs fn, a transaction that frees space (deletes), with
// db's reserved room where db keeps any (Reserved), else as Update.
func UpdateFreeing(ctx context.Context, db DB, fn func(Txn) error) error {
	if r, ok := db.(Reserved); ok {
		return r.UpdateReserved(ctx, fn)
	}
	return db.Update(ctx, fn)
}
