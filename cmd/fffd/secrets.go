package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"fff/internal/capability"
	"fff/server/kv"
	"fff/server/meta"
)

// Over a shared KV (etcd, FoundationDB) every node of the cluster runs
// meta and mgmtd and needs the same capability key and admin token. They
// live in the KV under keySecrets, written once by the first node that
// starts, so adding a node takes only its config: no files to copy. Each
// node also keeps them in its data directory (capability.key,
// admin.token), where `fff` and the operator find them.
//
// Whoever can read the KV can change every file's metadata and every
// user's token anyway; the secrets add nothing to what the KV's access
// control must protect (docs/kv.md: give etcd TLS and authentication
// beyond loopback).
var keySecrets = []byte("cluster/secrets")

type secrets struct {
	CapabilityKey []byte `json:"capability_key"`
	AdminToken    string `json:"admin_token"`
}

// secretsWait bounds how long a node waits for another one that created
// the admin user to publish the secrets.
const secretsWait = time.Minute

// shareSecrets loads the cluster's secrets from the shared KV, or makes
// and publishes them when this node is the first, and saves them in the
// data directory. It sets n.caps and n.adminToken.
func (n *node) shareSecrets(ctx context.Context) error {
	sec, err := n.readSecrets(ctx)
	if err != nil {
		return err
	}
	if sec == nil {
		if sec, err = n.makeSecrets(ctx); err != nil {
			return err
		}
	}
	return n.saveSecrets(*sec)
}

func (n *node) readSecrets(ctx context.Context) (*secrets, error) {
	var sec *secrets
	err := n.db.View(ctx, func(tx kv.ReadTxn) error {
		sec = nil
		v, err := tx.Get(keySecrets)
		if err != nil || v == nil {
			return err
		}
		sec = &secrets{}
		return json.Unmarshal(v, sec)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster secrets in the KV: %w", err)
	}
	return sec, nil
}

// makeSecrets creates the admin user and the capability key of a new
// cluster and publishes them. If another node created the admin user
// first, it waits for that node's secrets instead.
func (n *node) makeSecrets(ctx context.Context) (*secrets, error) {
	users := meta.New(n.db, meta.Options{ChunkSize: uint32(n.cfg.Meta.ChunkSize)})
	if err := users.Init(ctx); err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	tok, err := users.EnsureAdmin(ctx)
	if err != nil {
		return nil, fmt.Errorf("admin user: %w", err)
	}
	if tok == "" {
		n.log.Info().Msg("another node is creating the cluster; waiting for its secrets")
		deadline := time.Now().Add(secretsWait)
		for time.Now().Before(deadline) {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
			sec, err := n.readSecrets(ctx)
			if err != nil || sec != nil {
				return sec, err
			}
		}
		// The node that created the admin user died before publishing:
		// the operator may give this node the token and a key by hand.
		if sec, ok := n.localSecrets(); ok {
			n.log.Warn().Msg("publishing the admin token and capability key of this node's data directory as the cluster's")
			return sec, n.publishSecrets(ctx, sec)
		}
		return nil, errors.New("the cluster's admin user exists but no node published the cluster secrets (the node that created it died while starting): put the admin token in this node's admin.token and a capability key in its capability.key (a copy from a node that has one, or a new one: head -c32 /dev/urandom | base64 > capability.key; mode 0600), then start it again")
	}
	key, err := capability.Generate()
	if err != nil {
		return nil, err
	}
	sec := &secrets{CapabilityKey: key, AdminToken: tok}
	if err := n.publishSecrets(ctx, sec); err != nil {
		return nil, err
	}
	n.log.Info().Msg("made the cluster's admin token and capability key")
	return sec, nil
}

// publishSecrets stores sec as the cluster's secrets.
func (n *node) publishSecrets(ctx context.Context, sec *secrets) error {
	b, err := json.Marshal(sec)
	if err != nil {
		return err
	}
	if err := n.db.Update(ctx, func(tx kv.Txn) error { return tx.Set(keySecrets, b) }); err != nil {
		return fmt.Errorf("publishing the cluster secrets: %w", err)
	}
	return nil
}

// localSecrets reads the admin token and capability key files of the data
// directory, if both are there.
func (n *node) localSecrets() (*secrets, bool) {
	tok, err := os.ReadFile(filepath.Join(n.cfg.Node.DataDir, tokenFile))
	if err != nil || len(bytes.TrimSpace(tok)) == 0 {
		return nil, false
	}
	key, err := capability.LoadSecret(filepath.Join(n.cfg.Node.DataDir, capability.KeyFile))
	if err != nil {
		return nil, false
	}
	return &secrets{CapabilityKey: key, AdminToken: string(bytes.TrimSpace(tok))}, true
}

// rotatedAdmin keeps the cluster's secrets in step when the admin token is
// rotated (meta.Options.AdminToken): in the rotation's transaction.
func rotatedAdmin(tx kv.Txn, tok string) error {
	v, err := tx.Get(keySecrets)
	if err != nil || v == nil {
		return err
	}
	var sec secrets
	if err := json.Unmarshal(v, &sec); err != nil {
		return fmt.Errorf("cluster secrets: %w", err)
	}
	sec.AdminToken = tok
	b, err := json.Marshal(&sec)
	if err != nil {
		return err
	}
	return tx.Set(keySecrets, b)
}

// saveSecrets keeps the secrets in the data directory and in n. A
// capability key file that differs from the cluster's is refused (the
// directory belongs to another cluster); a different token file is
// replaced (the token was rotated).
func (n *node) saveSecrets(sec secrets) error {
	keyPath := filepath.Join(n.cfg.Node.DataDir, capability.KeyFile)
	if _, err := capability.Save(keyPath, sec.CapabilityKey); err != nil {
		return err
	}
	secret, err := capability.LoadSecret(keyPath)
	if err != nil {
		return err
	}
	if !bytes.Equal(secret, sec.CapabilityKey) {
		return fmt.Errorf("%s holds another cluster's capability key than the one in the KV: is this data directory another cluster's? (move it away to join this one)", keyPath)
	}
	if n.caps, err = capability.New(secret); err != nil {
		return err
	}
	tokPath := filepath.Join(n.cfg.Node.DataDir, tokenFile)
	if old, err := os.ReadFile(tokPath); err != nil || !bytes.Equal(bytes.TrimSpace(old), []byte(sec.AdminToken)) {
		if err := os.WriteFile(tokPath, []byte(sec.AdminToken+"\n"), 0o600); err != nil {
			return fmt.Errorf("saving the admin token: %w", err)
		}
	}
	n.adminToken = strings.TrimSpace(sec.AdminToken)
	return nil
}
