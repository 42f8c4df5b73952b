package etcdkv

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	"go.etcd.io/etcd/server/v3/embed"
)

// MemberConfig describes one etcd member run inside an fffd process.
type MemberConfig struct {
	// Name is the member's name, unique in its cluster.
	Name string
	// Dir is the member's data directory (its WAL and bbolt backend).
	Dir string
	// ClientURL and PeerURL are where the member listens for clients and
	// for the other members ("http://10.0.0.1:2379"); both are advertised
	// as given.
	ClientURL, PeerURL string
	// InitialCluster lists every member of a new cluster as
	// "name=peerURL,…"; empty means a cluster of this member alone. It is
	// read only when Dir holds no member yet.
	InitialCluster string
	// Join says the member joins an existing cluster (it was added with
	// `etcdctl member add` first) instead of forming a new one.
	Join bool
	// Token tells clusters apart on a shared network: members of one
	// cluster must have the same token.
	Token string
	// LogLevel is etcd's own log level on stderr ("error" if empty).
	LogLevel string
}

// Member is a running embedded etcd member.
type Member struct {
	e     *embed.Etcd
	cfg   MemberConfig
	close sync.Once
}

// StartMember starts a member; it is usable once Ready returns (the
// members of a new cluster wait for each other, so start them all first).
// It is configured for fff's transactions (RequiredRequestBytes,
// RequiredTxnOps), compacts history older than ten minutes and allows an 8
// GiB backend.
func StartMember(c MemberConfig) (*Member, error) {
	cu, err := url.Parse(c.ClientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: client URL: %w", c.Name, err)
	}
	pu, err := url.Parse(c.PeerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: peer URL: %w", c.Name, err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = c.Name, c.Dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = c.InitialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(c.Name)
	}
	cfg.ClusterState = embed.ClusterStateFlagNew
	if c.Join {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	if c.Token != "" {
		cfg.InitialClusterToken = c.Token
	}
	cfg.MaxRequestBytes = RequiredRequestBytes
	cfg.MaxTxnOps = RequiredTxnOps
	cfg.QuotaBackendBytes = 8 << 30
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "10m"
	cfg.Logger = "zap"
	cfg.LogLevel = c.LogLevel
	if cfg.LogLevel == "" {
		cfg.LogLevel = "error"
	}
	cfg.LogOutputs = []string{"stderr"}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd member %s: %w", c.Name, err)
	}
	return &Member{e: e, cfg: c}, nil
}

// Ready waits until the member has joined its cluster and serves clients.
func (m *Member) Ready(ctx context.Context) error {
	select {
	case <-m.e.Server.ReadyNotify():
		return nil
	case err := <-m.e.Err():
		return fmt.Errorf("etcd member %s: %w", m.cfg.Name, err)
	case <-ctx.Done():
		return fmt.Errorf("etcd member %s: waiting to join its cluster: %w", m.cfg.Name, ctx.Err())
	}
}

// Err reports a fatal error of the member's servers.
func (m *Member) Err() <-chan error { return m.e.Err() }

// ClientURL returns the URL clients reach the member at.
func (m *Member) ClientURL() string { return m.cfg.ClientURL }

// Close stops the member; it stays in the cluster's membership (removing
// it is `etcdctl member remove`). Close is idempotent.
func (m *Member) Close() { m.close.Do(m.e.Close) }
