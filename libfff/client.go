package libfff

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
)

// Options configure Connect. The zero value connects to the default
// cluster.
type Options struct {
	// Address is the HOST:PORT of the cluster's mgmtd (in `fffd local`
	// every service shares it). Empty: the default cluster
	// (DefaultCluster: FFF_CLUSTER and FFF_TOKEN, else the cluster file
	// `fff up` wrote), with its token.
	Address string
	// Token authenticates the client. Empty with an Address: FFF_TOKEN if
	// set, else the token of the cluster file if it records the same
	// address, else none (and the cluster refuses the connection).
	Token string
	// PoolSize is the number of connections kept per server (default
	// rpc.DefaultPoolSize).
	PoolSize int
	// CallTimeout is the deadline of calls whose context has none (default
	// 60 s).
	CallTimeout time.Duration
	// Logger receives the client's logs (routing refresh failures, …); the
	// zero Logger discards them.
	Logger zerolog.Logger
	// WriteBuffer bounds the write-behind of each file open for writing:
	// the bytes of background writes under way (default two chunks of the
	// file, at least one chunk); at most one more chunk is being filled.
	// A single write of WriteBuffer bytes or more is sent at once.
	WriteBuffer int
	// RetryTimeout bounds how long a call waits for a cluster that cannot
	// be reached (a restart, a reboot) before it fails with
	// proto.ErrUnavailable: reads, lookups and chunk writes are tried again
	// with backoff meanwhile (outage.go). Default DefaultRetryTimeout;
	// negative: fail at once.
	RetryTimeout time.Duration
	// LengthReportInterval is how often the length of a file open for
	// writing is reported to meta (default 1 minute; DESIGN §6: periodically
	// for long writes); it also keeps the write session from being pruned as
	// a dead writer's.
	LengthReportInterval time.Duration
	// TLS, if set, connects with TLS with this configuration (RootCAs:
	// the cluster's CA). Nil: the TLS of the cluster resolved as for the
	// token (DefaultCluster: FFF_CA, else the cluster file's CA when it
	// records the same address), else none.
	TLS *tls.Config
	// TCPOnly keeps connections to servers on this host on loopback TCP.
	// By default a client that reaches a server over loopback TCP moves to
	// the Unix socket the server announces, which moves bulk data for about
	// half the CPU (docs/wire.md). The environment variable FFF_TCP_ONLY=1
	// sets it too.
	TCPOnly bool
	// NoLocalRead reads through the storage nodes' sockets even from a
	// node on this host whose data files this process may open. By default
	// such reads go to the files directly (localread.go, docs/wire.md). The
	// environment variable FFF_NO_LOCAL_READ=1 sets it too, and so does
	// TCPOnly.
	NoLocalRead bool
}

// EnvNoLocalRead, set to 1, turns local reads off in every client
// (Options.NoLocalRead).
const EnvNoLocalRead = "FFF_NO_LOCAL_READ"

// EnvTCPOnly, set to 1, makes every client keep same-host connections on
// loopback TCP (Options.TCPOnly).
const EnvTCPOnly = "FFF_TCP_ONLY"

// Client is a connection to one fff cluster. It is safe for concurrent use;
// Close it when done.
//
// Namespace methods take cluster paths: "/a/b", or "fff:///a/b" (the
// default cluster), or "fff://HOST:PORT/a/b" naming the cluster this client
// is connected to. Paths are cleaned lexically and relative ones start at
// the root. Errors are *fs.PathError (*os.LinkError for two-path
// operations) wrapping an error that satisfies errors.Is with the proto
// sentinel of its code (proto.ErrNotFound, …) and with the io/fs error of
// the same meaning (fs.ErrNotExist, fs.ErrExist, fs.ErrPermission,
// fs.ErrInvalid).
type Client struct {
	addr string
	log  zerolog.Logger
	// waitLog receives the "waiting for the cluster" warnings: one per
	// few seconds, however many calls wait (a failover makes thousands).
	waitLog zerolog.Logger

	// One pool per service address: mgmtd's and meta's are the same pool
	// while both roles share an address (fffd local).
	mgmtdPool, metaPool *rpc.Pool
	ctl, mctl           *cluster.Failover // meta and mgmtd calls, with failover
	token               string
	popts               rpc.PoolOptions
	writeBuffer         int
	reportEvery         time.Duration // Options.LengthReportInterval
	retryTimeout        time.Duration // Options.RetryTimeout; 0: off

	// Storage pools, one per storage node address (storage.go).
	spMu         sync.Mutex
	storagePools map[string]*rpc.Pool
	local        *localReads // nil: local reads off (localread.go)
	stats        clientCounters

	// Files open for writing, whose lengths are reported periodically
	// (file.go).
	wmu       sync.Mutex
	writers   map[*File]struct{}
	reporting bool

	routing *cluster.RoutingCache
	bg      context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup

	mu         sync.Mutex
	closed     bool
	refreshing bool // the routing refresh loop runs
}

// Connect connects to the cluster opts names and authenticates: a refused
// token fails with an error satisfying errors.Is(err,
// proto.ErrUnauthenticated), an unreachable cluster with
// proto.ErrUnavailable, no configured cluster with ErrNoCluster.
func Connect(ctx context.Context, opts Options) (*Client, error) {
	addr, token, tcfg := strings.TrimSpace(opts.Address), opts.Token, opts.TLS
	// The cluster's TLS is resolved with its address: a CA belongs to
	// one cluster.
	var tinfo ClusterInfo
	if addr == "" {
		info, err := DefaultCluster()
		if err != nil {
			return nil, err
		}
		addr, tinfo = info.Address, info
		if token == "" {
			token = info.Token
		}
	} else {
		if info, err := DefaultCluster(); err == nil && info.Address == addr {
			tinfo = info
		} else if err := applyTLSEnv(&tinfo); err != nil {
			return nil, err
		}
		if token == "" {
			if tok := os.Getenv(EnvToken); tok != "" {
				token = tok
			} else {
				token = tinfo.Token
			}
		}
	}
	if tcfg == nil {
		var err error
		if tcfg, err = tinfo.TLSConfig(); err != nil {
			return nil, err
		}
	}
	tcpOnly := opts.TCPOnly || os.Getenv(EnvTCPOnly) == "1"
	popts := rpc.PoolOptions{Size: opts.PoolSize, Client: rpc.ClientOptions{Logger: opts.Logger, DefaultTimeout: opts.CallTimeout, TCPOnly: tcpOnly, TLS: tcfg}}
	if opts.LengthReportInterval <= 0 {
		opts.LengthReportInterval = time.Minute
	}
	switch {
	case opts.RetryTimeout == 0:
		opts.RetryTimeout = DefaultRetryTimeout
	case opts.RetryTimeout < 0:
		opts.RetryTimeout = 0
	}
	c := &Client{addr: addr, log: opts.Logger, waitLog: opts.Logger.Sample(&zerolog.BurstSampler{Burst: 1, Period: 5 * time.Second}), token: token, popts: popts, writeBuffer: opts.WriteBuffer, reportEvery: opts.LengthReportInterval, retryTimeout: opts.RetryTimeout}
	if !tcpOnly && !opts.NoLocalRead && os.Getenv(EnvNoLocalRead) != "1" {
		c.local = newLocalReads(opts.Logger)
	}
	c.mgmtdPool = rpc.NewPool(addr, token, popts)
	c.metaPool = c.mgmtdPool
	// mgmtd and meta are reached at the cluster address, and at the other
	// nodes of their role in the routing info (cluster.Failover).
	// Meta calls spread over the meta servers; mgmtd calls stay with the
	// given node (a follower forwards them to the leader either way).
	control := func(role proto.Roles, spread bool) *cluster.Failover {
		return cluster.NewFailover(cluster.FailoverOptions{
			Role: role, First: c.mgmtdPool, Spread: spread, Logger: opts.Logger,
			Routing: func() *proto.RoutingInfo { return c.routing.Get() }, // nil until made below
			Dial:    func(addr string) *rpc.Pool { return rpc.NewPool(addr, token, popts) },
		})
	}
	c.ctl = control(proto.RoleMeta, true)
	c.mctl = control(proto.RoleMgmtd, false)
	c.routing = cluster.NewRoutingCache(cluster.NewClient(c.mctl), cluster.RoutingCacheOptions{Logger: opts.Logger})
	c.bg, c.stop = context.WithCancel(context.Background())
	// Dial one connection now: it checks that the cluster is there and
	// accepts the token.
	if _, err := c.metaPool.Get(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("libfff: connect to %s: %w", addr, err)
	}
	return c, nil
}

// Address returns the cluster address the client is connected to.
func (c *Client) Address() string { return c.addr }

// Close stops the client's background work and closes its connections.
// Calls made after Close fail with proto.ErrUnavailable.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
	c.ctl.Close()
	c.mctl.Close()
	c.mgmtdPool.Close()
	if c.metaPool != c.mgmtdPool {
		c.metaPool.Close()
	}
	c.closeStoragePools()
	if c.local != nil {
		c.local.close()
	}
	return nil
}

// Routing returns the cluster's routing info (nodes, targets, chains, chain
// tables). The first call starts keeping it fresh in the background
// (cluster.RoutingCache, refreshed every few seconds until Close) and waits
// for the first answer; later calls return the cached info.
func (c *Client) Routing(ctx context.Context) (*proto.RoutingInfo, error) {
	c.mu.Lock()
	if !c.closed && !c.refreshing {
		c.refreshing = true
		c.wg.Add(2)
		go func() {
			defer c.wg.Done()
			c.routing.Run(c.bg)
		}()
		go func() {
			defer c.wg.Done()
			cluster.WatchDown(c.bg, c.routing, c.cutStorage)
		}()
	}
	c.mu.Unlock()
	if ri := c.routing.Get(); ri != nil {
		return ri, nil
	}
	var o outage
	for {
		err := c.routing.Refresh(ctx)
		if err == nil {
			break
		}
		if !c.again(ctx, &o, proto.MgmtdGetRouting, err) {
			return nil, fmt.Errorf("libfff: %w", err)
		}
	}
	if ri := c.routing.Get(); ri != nil {
		return ri, nil
	}
	return nil, fmt.Errorf("libfff: routing info: %w", proto.ErrUnavailable)
}

// metaCall calls a meta method, waiting out an unreachable cluster where
// the call may be repeated (outage.go).
func (c *Client) metaCall(ctx context.Context, method uint16, req, resp any) error {
	var o outage
	for {
		_, err := c.ctl.Call(ctx, method, req, resp)
		if err == nil || !c.again(ctx, &o, method, err) {
			return err
		}
	}
}

// clusterPath turns a path argument into a cleaned cluster path: "/a/b",
// "a/b" (from the root), "fff:///a/b" or "fff://ADDR/a/b" with this
// client's address.
func (c *Client) clusterPath(p string) (string, error) {
	if !strings.HasPrefix(p, Scheme) {
		return CleanPath(p), nil
	}
	pp, err := ParsePath(p)
	if err != nil {
		return "", &proto.Error{Code: proto.EINVAL, Msg: err.Error()}
	}
	if pp.Cluster != "" && pp.Cluster != c.addr {
		return "", &proto.Error{Code: proto.EXDEV, Msg: fmt.Sprintf("names the cluster at %s; this client is connected to %s", pp.Cluster, c.addr)}
	}
	return pp.Path, nil
}

// describe returns the short description of a code ("file exists").
func describe(c proto.Code) string {
	_, d, _ := strings.Cut(c.Err().Error(), ": ")
	return d
}

// compact returns err for a path error: the namespace errors a server sends
// (ENOENT, EEXIST, …) become a *proto.Error whose message is the code's
// short description, as the os package's errors read ("file exists"); the
// server's longer message names inode numbers, which the path replaces.
// Other errors (unreachable cluster, timeouts, …) keep their text.
func compact(err error) error {
	c := proto.CodeOf(err)
	if c > proto.OK && c < proto.ChainVersionMismatch {
		return &proto.Error{Code: c, Msg: describe(c)}
	}
	return err
}

func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: p, Err: compact(err)}
}

func linkErr(op, oldp, newp string, err error) error {
	if err == nil {
		return nil
	}
	return &os.LinkError{Op: op, Old: oldp, New: newp, Err: compact(err)}
}

func errorf(c proto.Code) error { return &proto.Error{Code: c, Msg: describe(c)} }
