package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"fff/server/kv"
	"fff/server/kv/bboltkv"
	"fff/server/kv/etcdkv"

	"github.com/rs/zerolog"
)

// metaBallast is the room bbolt's meta.db keeps on its disk for deletes.
const metaBallast = 16 << 20

// openKV opens the configured metadata KV, starting the node's etcd member
// first if it runs one (returned, to be closed after the KV).
func openKV(cfg Config, log zerolog.Logger) (kv.DB, *etcdkv.Member, error) {
	if cfg.KV.Backend != "etcd" {
		db, err := openLocalKV(cfg.KV, log)
		return db, nil, err
	}
	var m *etcdkv.Member
	endpoints := cfg.KV.Endpoints
	if e := cfg.Etcd; e.Name != "" {
		var err error
		m, err = etcdkv.StartMember(etcdkv.MemberConfig{Name: e.Name, Dir: e.Dir, ClientURL: e.ClientURL, PeerURL: e.PeerURL,
			InitialCluster: e.InitialCluster, Join: e.Join, Token: e.Token})
		if err != nil {
			return nil, nil, fmt.Errorf("kv: %w", err)
		}
		log.Info().Str("member", e.Name).Str("client_url", e.ClientURL).Str("peer_url", e.PeerURL).Msg("etcd member started; waiting for its cluster")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		err = m.Ready(ctx)
		cancel()
		if err != nil {
			m.Close()
			return nil, nil, fmt.Errorf("kv: %w (are the other members of etcd.initial_cluster started?)", err)
		}
		if len(endpoints) == 0 {
			endpoints = []string{e.ClientURL}
		}
	}
	db, err := etcdkv.Open(etcdkv.Options{Endpoints: endpoints, Prefix: []byte(cfg.KV.Prefix + "/"), Logger: log})
	if err != nil {
		if m != nil {
			m.Close()
		}
		return nil, nil, fmt.Errorf("kv: %w", err)
	}
	return db, m, nil
}

// openLocalKV opens a bbolt or FoundationDB KV.
func openLocalKV(c KVConfig, log zerolog.Logger) (kv.DB, error) {
	switch c.Backend {
	case "bbolt":
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return nil, fmt.Errorf("kv: %w", err)
		}
		// The ballast lets unlinks and renames through on a full disk
		// (docs/security.md, "Disk full").
		db, err := bboltkv.Open(c.Path, &bboltkv.Options{BallastSize: metaBallast, Logger: log})
		if errors.Is(err, bboltkv.ErrLocked) {
			return nil, fmt.Errorf("kv %s: %w (is another fffd using this data directory?)", c.Path, err)
		}
		if err != nil {
			// ErrCorrupt's message names the file and says what to do.
			return nil, fmt.Errorf("kv: %w", err)
		}
		return db, nil
	case "fdb":
		return openFDB(c)
	}
	return nil, fmt.Errorf("kv: unknown backend %q", c.Backend)
}
