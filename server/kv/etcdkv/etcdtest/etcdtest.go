// Package etcdtest starts real etcd clusters of embedded members for tests
// (on loopback, in the test's temporary directory) and opens etcdkv DBs on
// them under fresh prefixes.
package etcdtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"fff/server/kv/etcdkv"
)

// Cluster is a running etcd cluster of embedded members.
type Cluster struct {
	Members   []*etcdkv.Member
	Configs   []etcdkv.MemberConfig
	Endpoints []string
	// Client is connected to every member; Open's cleanup drops prefixes
	// through it.
	Client *clientv3.Client
}

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start starts a new cluster of n members and waits until every member
// serves; the members stop when the test ends.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{}
	var initial []string
	for i := range n {
		mc := etcdkv.MemberConfig{
			Name:      fmt.Sprintf("m%d", i),
			Dir:       t.TempDir(),
			ClientURL: "http://" + freeAddr(t),
			PeerURL:   "http://" + freeAddr(t),
			Token:     "etcdtest",
		}
		initial = append(initial, mc.Name+"="+mc.PeerURL)
		c.Configs = append(c.Configs, mc)
		c.Endpoints = append(c.Endpoints, mc.ClientURL)
	}
	for i := range c.Configs {
		c.Configs[i].InitialCluster = strings.Join(initial, ",")
		m, err := etcdkv.StartMember(c.Configs[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Close)
		c.Members = append(c.Members, m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, m := range c.Members {
		if err := m.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	c.Client = cli
	return c
}

// Open opens a DB on the cluster under a fresh random prefix (so tests can
// share a cluster), with opts' other fields; the DB's keys are dropped and
// the DB closed when the test ends.
func (c *Cluster) Open(t testing.TB, opts etcdkv.Options) *etcdkv.DB {
	t.Helper()
	var r [8]byte
	rand.Read(r[:])
	opts.Prefix = []byte("kvtest/" + hex.EncodeToString(r[:]) + "/")
	if opts.Client == nil && len(opts.Endpoints) == 0 {
		opts.Endpoints = c.Endpoints
	}
	db, err := etcdkv.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		p := string(opts.Prefix)
		if _, err := c.Client.Delete(ctx, p, clientv3.WithPrefix()); err != nil {
			t.Errorf("etcdtest: drop %q: %v", p, err)
		}
	})
	return db
}
