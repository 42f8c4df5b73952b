package etcdkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
)

// Defaults for Options.
const (
	DefaultRetryLimit  = 100
	DefaultTimeout     = 30 * time.Second
	DefaultDialTimeout = 5 * time.Second
	DefaultGCInterval  = 30 * time.Second
)

// What etcd must accept for the largest kv transaction (Member sets both;
// an external etcd needs --max-request-bytes and --max-txn-ops at least
// this). A transaction of kv.MaxTxnSize as counted by the kv cost
// functions sends fewer bytes than that, and fewer than RequiredTxnOps
// guards and operations.
const (
	RequiredRequestBytes = 12 << 20
	RequiredTxnOps       = 1 << 17
)

// maxMsg bounds one gRPC message the client sends or receives: a full
// transaction, or a page of a range read (pageMax values of up to
// kv.MaxValueSize).
const maxMsg = 128 << 20

// Range pages grow from pageMin to pageMax keys.
const (
	pageMin = 64
	pageMax = 1024
)

// gcBatch is how many tombstones one collection Txn removes.
const gcBatch = 512

// Options tell Open which etcd and which key prefix to use.
type Options struct {
	// Endpoints are the etcd members' client URLs (http:// or https://).
	// Ignored when Client is set.
	Endpoints []string
	// TLS is the client TLS configuration for https endpoints.
	TLS *tls.Config
	// Username and Password authenticate to an etcd with auth enabled.
	Username, Password string
	// Client is an existing client to use instead of dialing Endpoints;
	// the DB does not close it.
	Client *clientv3.Client
	// Prefix is prepended to every key: the DB's part of the etcd keyspace.
	// It must be non-empty and at most kv.KeyPrefixReserve-1 bytes (one
	// byte is added for the key kind).
	Prefix []byte
	// RetryLimit is how many times a conflicting transaction is run again
	// before Update gives up with kv.ErrConflict. 0 means
	// DefaultRetryLimit; a negative value means no retries.
	RetryLimit int
	// Timeout bounds one Update or View, retries included; a context
	// deadline that comes sooner wins. 0 means DefaultTimeout.
	Timeout time.Duration
	// DialTimeout bounds connecting to the endpoints. 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// GCInterval is how often the DB collects tombstones (doc.go). 0 means
	// DefaultGCInterval; a negative value turns collection off (another DB
	// over the same prefix must then do it).
	GCInterval time.Duration
	// Logger receives the collector's warnings.
	Logger zerolog.Logger
}

// DB is a kv.DB stored in etcd under a key prefix.
type DB struct {
	life       txnkit.Lifecycle
	cli        *clientv3.Client
	ownsClient bool
	log        zerolog.Logger

	data, dataEnd   string // prefix+"d", its PrefixEnd
	index, indexEnd string // prefix+"t", its PrefixEnd
	epoch           string // prefix+"g"

	retryLimit int
	timeout    time.Duration

	stop context.CancelFunc
	wg   sync.WaitGroup
}

var _ kv.DB = (*DB)(nil)

// Open connects to etcd (lazily: an unreachable cluster shows as
// transactions that time out) and returns the DB under opts.Prefix.
func Open(opts Options) (*DB, error) {
	switch {
	case len(opts.Prefix) == 0:
		return nil, errors.New("etcdkv: Options.Prefix is required")
	case len(opts.Prefix) >= kv.KeyPrefixReserve:
		return nil, fmt.Errorf("etcdkv: prefix of %d bytes, max %d", len(opts.Prefix), kv.KeyPrefixReserve-1)
	}
	d := &DB{cli: opts.Client, log: opts.Logger, retryLimit: opts.RetryLimit, timeout: opts.Timeout}
	switch {
	case d.retryLimit == 0:
		d.retryLimit = DefaultRetryLimit
	case d.retryLimit < 0:
		d.retryLimit = 0
	}
	if d.timeout <= 0 {
		d.timeout = DefaultTimeout
	}
	if d.cli == nil {
		if len(opts.Endpoints) == 0 {
			return nil, errors.New("etcdkv: no endpoints")
		}
		dial := opts.DialTimeout
		if dial <= 0 {
			dial = DefaultDialTimeout
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:          opts.Endpoints,
			TLS:                opts.TLS,
			Username:           opts.Username,
			Password:           opts.Password,
			DialTimeout:        dial,
			MaxCallSendMsgSize: maxMsg,
			MaxCallRecvMsgSize: maxMsg,
			Logger:             zap.NewNop(),
		})
		if err != nil {
			return nil, fmt.Errorf("etcdkv: connect to %v: %w", opts.Endpoints, err)
		}
		d.cli, d.ownsClient = cli, true
	}
	p := string(opts.Prefix)
	d.data, d.index, d.epoch = p+"d", p+"t", p+"g"
	d.dataEnd, d.indexEnd = p+"e", p+"u"
	var ctx context.Context
	ctx, d.stop = context.WithCancel(context.Background())
	if opts.GCInterval >= 0 {
		every := opts.GCInterval
		if every == 0 {
			every = DefaultGCInterval
		}
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.runGC(ctx, every)
		}()
	}
	return d, nil
}

// Prefix returns the DB's key prefix.
func (d *DB) Prefix() []byte { return []byte(d.data[:len(d.data)-1]) }

// Client returns the etcd client the DB uses.
func (d *DB) Client() *clientv3.Client { return d.cli }

// Close implements kv.DB: it waits for running transactions, stops the
// collector and closes the client if Open dialed it.
func (d *DB) Close() error {
	if d.life.Close() {
		d.stop()
		d.wg.Wait()
		if d.ownsClient {
			return d.cli.Close()
		}
	}
	return nil
}

// DropAll deletes every key under the DB's prefix (data, tombstones and
// the epoch) in one etcd Txn.
func (d *DB) DropAll(ctx context.Context) error {
	p := d.data[:len(d.data)-1]
	_, err := d.cli.Delete(ctx, p, clientv3.WithRange(string(kv.PrefixEnd([]byte(p)))))
	if err != nil {
		return fmt.Errorf("etcdkv: drop %q: %w", p, err)
	}
	return nil
}

// Update implements kv.DB (doc.go: optimistic attempts, each guarded at
// commit by the revisions of what it read).
func (d *DB) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return d.run(ctx, true, func(t *txn, g *txnkit.Guard) error {
		buf := txnkit.NewBuffer(t)
		if err := t.settle(g.Finish(fn(g.Txn(buf)))); err != nil {
			return err
		}
		return t.commit(buf)
	})
}

// View implements kv.DB: every read of an attempt is at one revision.
func (d *DB) View(ctx context.Context, fn func(kv.ReadTxn) error) error {
	return d.run(ctx, false, func(t *txn, g *txnkit.Guard) error {
		return t.settle(g.Finish(fn(g.ReadTxn(txnkit.Reader{Base: t}))))
	})
}

// run runs attempts until one ends without a retryable error.
func (d *DB) run(ctx context.Context, write bool, attempt func(*txn, *txnkit.Guard) error) error {
	if err := d.life.Enter(); err != nil {
		return err
	}
	defer d.life.Leave()
	if err := txnkit.CtxErr(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	for n := 0; ; n++ {
		t := &txn{d: d, ctx: ctx, write: write}
		err := attempt(t, txnkit.NewGuard(ctx, write))
		var r *retry
		if !errors.As(err, &r) {
			return err
		}
		if n >= d.retryLimit {
			if r.conflict {
				return fmt.Errorf("%w: %d attempts", kv.ErrConflict, n+1)
			}
			return fmt.Errorf("etcdkv: %d attempts: %w", n+1, r.err)
		}
		if err := sleep(ctx, backoff(n)); err != nil {
			return err
		}
	}
}

// backoff is the pause before attempt n+1: exponential from 1 ms to 100 ms,
// with full jitter so that conflicting writers spread out.
func backoff(n int) time.Duration {
	ceil := time.Millisecond << min(n, 7)
	return time.Duration(rand.Int64N(int64(min(ceil, 100*time.Millisecond)))) + 100*time.Microsecond
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return txnkit.CtxErr(ctx)
	case <-t.C:
		return nil
	}
}

// retry marks an attempt that must run again: a failed commit guard
// (conflict) or a read that may succeed at a fresh revision.
type retry struct {
	conflict bool
	err      error
}

func (r *retry) Error() string {
	if r.conflict {
		return "etcdkv: conflict"
	}
	return "etcdkv: " + r.err.Error()
}

func (r *retry) Unwrap() error { return r.err }

// readErr classifies an error of a read: retryable in a new attempt, or
// final.
func (d *DB) readErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("kv: transaction aborted: %w (%w)", cerr, err)
	}
	switch {
	case errors.Is(err, rpctypes.ErrCompacted), errors.Is(err, rpctypes.ErrFutureRev),
		errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrLeaderChanged),
		errors.Is(err, rpctypes.ErrTimeout), errors.Is(err, rpctypes.ErrTooManyRequests),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrTimeoutWaitAppliedIndex), errors.Is(err, rpctypes.ErrStopped):
		return &retry{err: err}
	}
	return fmt.Errorf("etcdkv: read: %w", err)
}

// commitErr classifies an error of a commit: refused before it was
// proposed (retry or a limit), or sent with its outcome unknown.
func (d *DB) commitErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("%w: etcd refused the transaction's %s (raise its --max-txn-ops to %d): %w", kv.ErrTxnTooLarge, "operation count", RequiredTxnOps, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge):
		return fmt.Errorf("%w: etcd refused the transaction's %s (raise its --max-request-bytes to %d): %w", kv.ErrTxnTooLarge, "size", RequiredRequestBytes, err)
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTooManyRequests), errors.Is(err, rpctypes.ErrNotCapable):
		return &retry{err: err} // refused before the proposal
	case errors.Is(err, rpctypes.ErrNoSpace):
		return fmt.Errorf("etcdkv: etcd is out of space (its backend quota; compact and defragment it): %w", err)
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrDuplicateKey):
		return fmt.Errorf("etcdkv: commit: %w", err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w: kv: transaction aborted: %w (%w)", kv.ErrUnknownResult, cerr, err)
	}
	return fmt.Errorf("%w: %w", kv.ErrUnknownResult, err)
}

// Value encoding: one leading byte.
const (
	tombstone byte = 0
	live      byte = 1
)

// decode returns the user value of a stored one, nil for a tombstone.
func decode(key, v []byte) ([]byte, error) {
	switch {
	case len(v) == 0:
		return nil, fmt.Errorf("etcdkv: key %q: empty stored value (not written by etcdkv?)", key)
	case v[0] == tombstone:
		return nil, nil
	case v[0] == live:
		return v[1:], nil
	}
	return nil, fmt.Errorf("etcdkv: key %q: stored value starts with %#x (not written by etcdkv?)", key, v[0])
}

func encode(v []byte) string {
	b := make([]byte, 1+len(v))
	b[0] = live
	copy(b[1:], v)
	return string(b)
}
