//go:build fdb

package fdbkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/apple/foundationdb/bindings/go/src/fdb"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
)

// APIVersion is the FoundationDB API version fdbkv selects (7.3).
const APIVersion = 730

// Defaults for Options.
const (
	DefaultRetryLimit = 100
	DefaultTimeout    = 30 * time.Second
)

// FoundationDB error codes fdbkv maps
// (https://apple.github.io/foundationdb/api-error-codes.html).
const (
	codeTransactionTooOld   = 1007
	codeNotCommitted        = 1020
	codeCancelled           = 1025
	codeTimedOut            = 1031
	codeTransactionTooLarge = 2101
	codeKeyTooLarge         = 2102
	codeValueTooLarge       = 2103
)

// Options tell Open which cluster and subspace to use.
type Options struct {
	// ClusterFile is the path of the cluster file; "" uses FoundationDB's
	// default (FDB_CLUSTER_FILE, then /etc/foundationdb/fdb.cluster).
	ClusterFile string
	// Prefix is prepended to every key: the DB's subspace. It must be
	// non-empty, at most kv.KeyPrefixReserve bytes, and must not start
	// with 0xFF (FoundationDB's system keys).
	Prefix []byte
	// RetryLimit is how many times a transaction is retried after a
	// retryable error (conflicts included) before Update or View gives up
	// (with kv.ErrConflict for a conflict). 0 means DefaultRetryLimit; a
	// negative value means no retries.
	RetryLimit int
	// Timeout bounds one Update or View, all retries included
	// (FoundationDB's transaction timeout option); a context deadline that
	// comes sooner wins. 0 means DefaultTimeout.
	Timeout time.Duration
}

// DB is a kv.DB stored in a FoundationDB cluster under a key prefix.
type DB struct {
	life       txnkit.Lifecycle
	conn       *conn
	prefix     []byte
	end        []byte // kv.PrefixEnd(prefix)
	retryLimit int64
	timeout    time.Duration
}

var _ kv.DB = (*DB)(nil)

// The bindings select the API version once per process and cache one
// fdb.Database per cluster file in an unsynchronized map whose Close
// destroys the handle for every user. So fdbkv selects the version once,
// guards the cache with a mutex and shares one handle per cluster file,
// closing it when its last DB closes.
var (
	apiOnce sync.Once
	apiErr  error

	connMu sync.Mutex
	conns  = map[string]*conn{}
)

type conn struct {
	clusterFile string
	db          fdb.Database
	refs        int
}

func acquire(clusterFile string) (*conn, error) {
	apiOnce.Do(func() { apiErr = fdb.APIVersion(APIVersion) })
	if apiErr != nil {
		return nil, fmt.Errorf("fdbkv: select API version %d (is libfdb_c 7.3 or newer installed?): %w", APIVersion, apiErr)
	}
	connMu.Lock()
	defer connMu.Unlock()
	c := conns[clusterFile]
	if c == nil {
		db, err := fdb.OpenDatabase(clusterFile)
		if err != nil {
			return nil, fmt.Errorf("fdbkv: open cluster file %q: %w", clusterFile, err)
		}
		c = &conn{clusterFile: clusterFile, db: db}
		conns[clusterFile] = c
	}
	c.refs++
	return c, nil
}

func (c *conn) release() {
	connMu.Lock()
	defer connMu.Unlock()
	c.refs--
	if c.refs == 0 {
		delete(conns, c.clusterFile)
		c.db.Close()
	}
}

// Open connects to the cluster named by opts.ClusterFile and returns the
// DB under opts.Prefix. Connecting is lazy: an unreachable cluster shows
// as transactions that time out.
func Open(opts Options) (*DB, error) {
	switch {
	case len(opts.Prefix) == 0:
		return nil, errors.New("fdbkv: Options.Prefix is required")
	case len(opts.Prefix) > kv.KeyPrefixReserve:
		return nil, fmt.Errorf("fdbkv: prefix of %d bytes, max %d (kv.KeyPrefixReserve)", len(opts.Prefix), kv.KeyPrefixReserve)
	case opts.Prefix[0] == 0xFF:
		return nil, errors.New("fdbkv: prefix must not start with 0xFF (system keys)")
	}
	retries := int64(opts.RetryLimit)
	switch {
	case retries == 0:
		retries = DefaultRetryLimit
	case retries < 0:
		retries = 0
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c, err := acquire(opts.ClusterFile)
	if err != nil {
		return nil, err
	}
	prefix := bytes.Clone(opts.Prefix)
	return &DB{
		conn:       c,
		prefix:     prefix,
		end:        kv.PrefixEnd(prefix),
		retryLimit: retries,
		timeout:    timeout,
	}, nil
}

// Prefix returns the DB's key prefix.
func (d *DB) Prefix() []byte { return bytes.Clone(d.prefix) }

// Close implements kv.DB: it waits for running transactions and releases
// the cluster connection when no other DB uses it.
func (d *DB) Close() error {
	if d.life.Close() {
		d.conn.release()
	}
	return nil
}

// DropAll clears every key under the DB's prefix in one transaction (the
// cost of a range clear does not depend on how much it removes).
func (d *DB) DropAll(ctx context.Context) error {
	return d.Update(ctx, func(tx kv.Txn) error { return tx.ClearRange(nil, nil) })
}

// setOptions applies the per-transaction options. Setting them at every
// attempt is safe: since API 610 onError keeps them, and the timeout
// counts from the transaction's creation.
func (d *DB) setOptions(ctx context.Context, o fdb.TransactionOptions) error {
	timeout := d.timeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = left
		}
	}
	ms := timeout.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	if err := o.SetTimeout(ms); err != nil {
		return err
	}
	return o.SetRetryLimit(d.retryLimit)
}

// Update implements kv.DB with fdb's Database.Transact. A context canceled
// while the body runs cancels the transaction's outstanding reads; the
// commit itself is bounded by the timeout.
func (d *DB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	_, err := d.conn.db.Transact(func(tr fdb.Transaction) (any, error) {
		if err := d.setOptions(ctx, tr.Options()); err != nil {
			return nil, err
		}
		// Stop before the bindings commit: cancelling a commit in flight
		// leaves its outcome unknown.
		stop := context.AfterFunc(ctx, tr.Cancel)
		defer stop()
		g := txnkit.NewGuard(ctx, true)
		return nil, g.Finish(fn(g.Txn(&txn{d: d, r: tr, w: tr})))
	})
	return d.mapErr(ctx, err)
}

// View implements kv.DB with fdb's Database.ReadTransact: one read version,
// so one consistent snapshot.
func (d *DB) View(ctx context.Context, fn func(kv.ReadTxn) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	_, err := d.conn.db.ReadTransact(func(rt fdb.ReadTransaction) (any, error) {
		if err := d.setOptions(ctx, rt.Options()); err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, rt.Cancel)
		defer stop()
		g := txnkit.NewGuard(ctx, false)
		return nil, g.Finish(fn(g.ReadTxn(&txn{d: d, r: rt})))
	})
	return d.mapErr(ctx, err)
}

// mapErr turns what Transact/ReadTransact returned into kv errors. Errors
// that carry no fdb.Error (the body's own, kv limit errors) pass through
// unchanged.
func (d *DB) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var fe fdb.Error
	if !errors.As(err, &fe) {
		return err
	}
	if cerr := ctx.Err(); cerr != nil && (fe.Code == codeCancelled || fe.Code == codeTimedOut) {
		return fmt.Errorf("kv: transaction aborted: %w (%w)", cerr, err)
	}
	var sentinel error
	switch fe.Code {
	case codeNotCommitted:
		sentinel = kv.ErrConflict
	case codeTransactionTooOld, codeTimedOut:
		sentinel = kv.ErrTxnTooOld
	case codeTransactionTooLarge:
		sentinel = kv.ErrTxnTooLarge
	case codeKeyTooLarge:
		sentinel = kv.ErrKeyTooLarge
	case codeValueTooLarge:
		sentinel = kv.ErrValueTooLarge
	default:
		return fmt.Errorf("fdbkv: %w", err)
	}
	return fmt.Errorf("%w: %w", sentinel, err)
}

// key maps a user key into the DB's subspace.
func (d *DB) key(k []byte) fdb.Key {
	out := make([]byte, 0, len(d.prefix)+len(k))
	return append(append(out, d.prefix...), k...)
}

// rangeKeys maps a user range (empty end = no upper bound) into the
// subspace.
func (d *DB) rangeKeys(begin, end []byte) fdb.KeyRange {
	e := fdb.Key(d.end)
	if len(end) > 0 {
		e = d.key(end)
	}
	return fdb.KeyRange{Begin: d.key(begin), End: e}
}

// txn is the raw transaction under the kv guard. FoundationDB gives
// read-your-writes (Range included) and copies keys and values in and out
// of the C library, so slices are owned on both sides. Errors wrap the
// fdb.Error so that the bindings' retry loop sees it.
type txn struct {
	d *DB
	r fdb.ReadTransaction
	w fdb.Transaction // zero in View
	// ahead holds the reads Prefetch started, until a Get takes them or a
	// write of the same key makes them stale.
	ahead map[string]fdb.FutureByteSlice
}

// Prefetch implements kv.Prefetcher: FDB reads are futures, so starting
// them all before waiting for any makes them one round trip.
func (t *txn) Prefetch(keys ...[]byte) error {
	for _, k := range keys {
		if _, ok := t.ahead[string(k)]; ok {
			continue
		}
		if t.ahead == nil {
			t.ahead = make(map[string]fdb.FutureByteSlice, len(keys))
		}
		t.ahead[string(k)] = t.r.Get(t.d.key(k))
	}
	return nil
}

// stale forgets the prefetched reads that a write of [begin, end) makes
// stale (a future started before a write resolves to the value before it).
func (t *txn) stale(begin, end []byte) {
	for k := range t.ahead {
		if k >= string(begin) && (len(end) == 0 || k < string(end)) {
			delete(t.ahead, k)
		}
	}
}

func (t *txn) Get(key []byte) ([]byte, error) {
	f, ok := t.ahead[string(key)]
	if ok {
		delete(t.ahead, string(key))
	} else {
		f = t.r.Get(t.d.key(key))
	}
	v, err := f.Get()
	if err != nil {
		return nil, fmt.Errorf("fdbkv: get: %w", err)
	}
	return v, nil
}

func (t *txn) Range(begin, end []byte, opts kv.RangeOptions) ([]kv.KeyValue, error) {
	kvs, err := t.r.GetRange(t.d.rangeKeys(begin, end), fdb.RangeOptions{
		Limit:   opts.Limit,
		Reverse: opts.Reverse,
	}).GetSliceWithError()
	if err != nil {
		return nil, fmt.Errorf("fdbkv: range: %w", err)
	}
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make([]kv.KeyValue, len(kvs))
	n := len(t.d.prefix)
	for i, p := range kvs {
		out[i] = kv.KeyValue{Key: p.Key[n:], Value: p.Value}
	}
	return out, nil
}

func (t *txn) Set(key, value []byte) error {
	delete(t.ahead, string(key))
	t.w.Set(t.d.key(key), value)
	return nil
}

func (t *txn) Clear(key []byte) error {
	delete(t.ahead, string(key))
	t.w.Clear(t.d.key(key))
	return nil
}

func (t *txn) ClearRange(begin, end []byte) error {
	t.stale(begin, end)
	t.w.ClearRange(t.d.rangeKeys(begin, end))
	return nil
}
