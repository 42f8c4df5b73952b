package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pelletier/go-toml/v2"

	"fff/internal/capability"
	"fff/internal/rpc"
	"fff/server/mgmtd"
)

// Config is fffd's configuration: a TOML file (--config) with flags on top.
// Every field has a default that suits `fffd local` on one machine.
//
//	[node]
//	id = 1
//	listen = "127.0.0.1:9400"
//	data_dir = "/var/lib/fff"
//
//	[log]
//	level = "info"        # debug, info, warn, error
//	format = "auto"       # auto (console on a TTY, else JSON), console, json
//
//	[kv]
//	backend = "bbolt"     # bbolt (embedded, default), etcd, or fdb (-tags fdb builds)
//	path = "meta.db"      # bbolt file, relative to data_dir
//	cluster_file = ""     # fdb cluster file
//	endpoints = []        # etcd client URLs; empty: the [etcd] member this node runs
//	prefix = "fff"        # etcd/fdb key prefix: one store can hold several fff clusters
//
//	[etcd]                # an etcd member inside this fffd (kv.backend = "etcd"); docs/kv.md
//	name = ""             # the member's name (empty: no embedded member)
//	client_url = "http://127.0.0.1:2379"
//	peer_url = "http://127.0.0.1:2380"
//	initial_cluster = ""  # "n1=http://10.0.0.1:2380,n2=…" for a new cluster; empty: this member alone
//	join = false          # true: join an existing cluster (after `etcdctl member add`)
//	token = "fff"         # tells clusters apart on a shared network
//	dir = "etcd"          # the member's data, relative to data_dir
//
//	[mgmtd]
//	address = ""          # where the meta/storage roles find mgmtd (empty in `local`);
//	                      # "a:9400,b:9400" names several (cluster.Failover)
//	heartbeat_timeout = "10s"
//	leader_lease = "3s"   # over a shared KV (etcd, fdb): the elected leader's lease
//
//	[meta]
//	chunk_size = 4194304
//	session_timeout = "30m"   # end write sessions of writers silent this long
//	address = ""              # the meta server storage nodes ask about users and
//	                          # take the GC queue from; empty: mgmtd.address
//	capability_ttl = "1h"     # lifetime of the storage capabilities meta hands out
//
//	[storage]
//	targets = []          # target directories; `local` defaults to 2 under data_dir/targets
//	unchecked_capabilities = false  # true: serve chunks without capabilities (benchmarks only)
//	credentials_ttl = "30s"  # how long the storage role trusts meta's answer about a token
//	chains = "single"     # single: each target a chain of its own in chain table 1;
//	                      # manual: targets join chains an admin makes (fff admin chain place|create)
//
//	[rpc]                 # the limits of the RPC server (docs/security.md)
//	max_conns = 4096
//	max_conn_bytes = 268435456    # request bytes held per connection
//	max_total_bytes = 1073741824  # large requests' bytes held by all connections
//	frame_timeout = "30s"         # a request's bytes must keep coming; "-1s": no limit
//	handshake_timeout = "10s"
//	idle_timeout = "10m"          # connections idle this long are sent a goaway; "-1s": never
//	slow_request = "1s"           # requests slower than this are logged with their stages; "-1s": never
//
//	[metrics]             # Prometheus metrics (docs/operations.md)
//	listen = "127.0.0.1:0"  # serve /metrics there (port 0: a free one, recorded in data_dir/fffd.json);
//	                        # set a fixed port for Prometheus; "" or "off": no metrics
//	allow_remote = false  # true: listen may be an address other hosts reach
//
//	[tls]                 # TLS on TCP (tls.go); empty: none
//	cert = ""             # the node's certificate, key, and the cluster's CA
//	key = ""
//	ca = ""
//	client_auth = false   # true: TCP clients must present a certificate signed by ca
type Config struct {
	Node    NodeConfig    `toml:"node"`
	Log     LogConfig     `toml:"log"`
	KV      KVConfig      `toml:"kv"`
	Mgmtd   MgmtdConfig   `toml:"mgmtd"`
	Meta    MetaConfig    `toml:"meta"`
	Storage StorageConfig `toml:"storage"`
	RPC     RPCConfig     `toml:"rpc"`
	TLS     TLSConfig     `toml:"tls"`
	Etcd    EtcdConfig    `toml:"etcd"`
	Metrics MetricsConfig `toml:"metrics"`
}

// EtcdConfig is an etcd member run inside fffd (etcdkv.MemberConfig).
type EtcdConfig struct {
	Name           string `toml:"name"`
	ClientURL      string `toml:"client_url"`
	PeerURL        string `toml:"peer_url"`
	InitialCluster string `toml:"initial_cluster"`
	Join           bool   `toml:"join"`
	Token          string `toml:"token"`
	Dir            string `toml:"dir"`
}

// RPCConfig bounds what clients can make the RPC server hold
// (rpc.ServerOptions).
type RPCConfig struct {
	MaxConns         int      `toml:"max_conns"`
	MaxConnBytes     int      `toml:"max_conn_bytes"`
	MaxTotalBytes    int      `toml:"max_total_bytes"`
	FrameTimeout     Duration `toml:"frame_timeout"`
	HandshakeTimeout Duration `toml:"handshake_timeout"`
	IdleTimeout      Duration `toml:"idle_timeout"`
	SlowRequest      Duration `toml:"slow_request"`
}

type NodeConfig struct {
	ID      uint32 `toml:"id"`
	Listen  string `toml:"listen"`
	DataDir string `toml:"data_dir"`
	// NoLocalSocket turns off the Unix socket DATA/fffd.sock that the node
	// serves besides TCP for clients on the same host (docs/wire.md).
	NoLocalSocket bool `toml:"no_local_socket"`
}

type LogConfig struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

type KVConfig struct {
	Backend     string   `toml:"backend"`
	Path        string   `toml:"path"`
	ClusterFile string   `toml:"cluster_file"`
	Endpoints   []string `toml:"endpoints"`
	Prefix      string   `toml:"prefix"`
}

// shared reports whether the KV is shared by several nodes (etcd, fdb):
// mgmtd then elects a leader and the cluster's secrets live in the KV.
func (c KVConfig) shared() bool { return c.Backend != "bbolt" }

type MgmtdConfig struct {
	Address          string   `toml:"address"`
	HeartbeatTimeout Duration `toml:"heartbeat_timeout"`
	// LeaderLease is the mgmtd leader's lease over a shared KV
	// (mgmtd.ElectOptions.Lease): a new leader takes over within about
	// 1.25 leases of the old one's death.
	LeaderLease Duration `toml:"leader_lease"`
}

type MetaConfig struct {
	ChunkSize int64 `toml:"chunk_size"`
	// SessionTimeout ends write sessions whose writer has not reported for
	// this long (a crashed client); live writers report far more often.
	SessionTimeout Duration `toml:"session_timeout"`
	// Address is the meta server `fffd storage` asks about the tokens of
	// its clients and drains the GC queue of (over RPC, with the admin
	// token). Empty: mgmtd's address (a control node that runs both, as
	// `fffd local` does).
	Address string `toml:"address"`
	// CapabilityTTL is how long the storage capabilities meta hands out
	// last; clients renew theirs at half of it, and a renewal checks the
	// caller's access again.
	CapabilityTTL Duration `toml:"capability_ttl"`
}

type StorageConfig struct {
	Targets []string `toml:"targets"`
	// UncheckedCapabilities serves chunks to any caller without a
	// capability, as before they existed: for measuring what the checks
	// cost, never for a cluster with users (fffd warns at start).
	UncheckedCapabilities bool `toml:"unchecked_capabilities"`
	// CredentialsTTL is how long a storage node uses meta's answer about a
	// token before asking again: a removed user or rotated token is
	// refused by new connections within it (meta.RemoteAuthenticator).
	CredentialsTTL Duration `toml:"credentials_ttl"`
	// Chains says how the node's new targets join chains: "single" (the
	// default) makes each one a chain of its own in chain table 1 (one
	// copy per chunk); "manual" leaves them unchained, for replicated
	// chains an admin makes over several nodes (`fff admin chain place`,
	// `fff admin chain create`; docs/replication.md).
	Chains string `toml:"chains"`
}

// Duration reads "10s"-style durations from TOML.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func defaultConfig() Config {
	return Config{
		Node:    NodeConfig{ID: 1, Listen: "127.0.0.1:9400"},
		Log:     LogConfig{Level: "info", Format: "auto"},
		Metrics: MetricsConfig{Listen: "127.0.0.1:0"},
		KV:      KVConfig{Backend: "bbolt", Path: "meta.db", Prefix: "fff"},
		Etcd:    EtcdConfig{ClientURL: "http://127.0.0.1:2379", PeerURL: "http://127.0.0.1:2380", Token: "fff", Dir: "etcd"},
		Mgmtd:   MgmtdConfig{HeartbeatTimeout: Duration{10 * time.Second}, LeaderLease: Duration{mgmtd.DefaultLease}},
		Meta:    MetaConfig{ChunkSize: 4 << 20, SessionTimeout: Duration{30 * time.Minute}, CapabilityTTL: Duration{capability.DefaultTTL}},
		RPC: RPCConfig{MaxConns: rpc.DefaultMaxConns, MaxConnBytes: rpc.DefaultMaxInFlightBytes, MaxTotalBytes: rpc.DefaultMaxTotalBytes,
			FrameTimeout: Duration{rpc.DefaultFrameTimeout}, HandshakeTimeout: Duration{rpc.DefaultHandshakeTimeout},
			IdleTimeout: Duration{rpc.DefaultIdleTimeout}, SlowRequest: Duration{rpc.DefaultSlowRequest}},
	}
}

// loadConfig reads path (if not empty) over the defaults.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		var sm *toml.StrictMissingError
		if errors.As(err, &sm) {
			return cfg, fmt.Errorf("config %s: unknown settings:\n%s", path, sm.String())
		}
		return cfg, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// validate checks the settings the roles need and resolves relative paths.
func (c *Config) validate() error {
	if c.Node.DataDir == "" {
		return errors.New("config: node.data_dir (or --data) is required")
	}
	abs, err := filepath.Abs(c.Node.DataDir)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	c.Node.DataDir = abs
	if c.KV.Path != "" && !filepath.IsAbs(c.KV.Path) {
		c.KV.Path = filepath.Join(abs, c.KV.Path)
	}
	for i, t := range c.Storage.Targets {
		if !filepath.IsAbs(t) {
			c.Storage.Targets[i] = filepath.Join(abs, t)
		}
	}
	if err := c.TLS.resolve(abs); err != nil {
		return err
	}
	switch c.Storage.Chains {
	case "":
		c.Storage.Chains = "single"
	case "single", "manual":
	default:
		return fmt.Errorf("config: storage.chains %q: use single or manual", c.Storage.Chains)
	}
	switch c.KV.Backend {
	case "bbolt", "fdb":
	case "etcd":
		if len(c.KV.Endpoints) == 0 && c.Etcd.Name == "" {
			return errors.New("config: kv.backend etcd needs kv.endpoints (an etcd cluster) or an [etcd] member (etcd.name)")
		}
	default:
		return fmt.Errorf("config: kv.backend %q: use bbolt, etcd or fdb", c.KV.Backend)
	}
	if c.Etcd.Dir != "" && !filepath.IsAbs(c.Etcd.Dir) {
		c.Etcd.Dir = filepath.Join(abs, c.Etcd.Dir)
	}
	if c.KV.shared() && (c.Mgmtd.LeaderLease.Duration <= 0 || c.Mgmtd.LeaderLease.Duration >= c.Mgmtd.HeartbeatTimeout.Duration) {
		return fmt.Errorf("config: mgmtd.leader_lease %v must be positive and shorter than mgmtd.heartbeat_timeout %v", c.Mgmtd.LeaderLease.Duration, c.Mgmtd.HeartbeatTimeout.Duration)
	}
	if c.Meta.SessionTimeout.Duration <= 0 {
		return fmt.Errorf("config: meta.session_timeout must be positive")
	}
	if c.RPC.MaxConns <= 0 || c.RPC.MaxConnBytes <= 0 || c.RPC.MaxTotalBytes <= 0 || c.RPC.HandshakeTimeout.Duration <= 0 || c.RPC.FrameTimeout.Duration == 0 || c.RPC.IdleTimeout.Duration == 0 {
		return fmt.Errorf("config: rpc.max_conns, max_conn_bytes, max_total_bytes and handshake_timeout must be positive, frame_timeout and idle_timeout not 0 (negative: no limit)")
	}
	if c.Meta.ChunkSize <= 0 || c.Meta.ChunkSize&(c.Meta.ChunkSize-1) != 0 {
		return fmt.Errorf("config: meta.chunk_size %d must be a power of two", c.Meta.ChunkSize)
	}
	return nil
}
