package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"fff/internal/certs"
	"fff/internal/cluster"
	"fff/internal/fileutil"
	"fff/internal/proto"
	"fff/internal/rpc"
)

// `fff up --storage-nodes N --replicas R`: the cluster's targets — the
// control node's and one per storage node — register in no chain
// (storage.chains = "manual"), and once every node is up fff up makes
// chains of R targets on distinct nodes from them (mgmtd's PlaceChains) in
// chain table 1. R is chosen when the cluster is made and recorded in
// DATA/replicas; later starts place the targets of nodes added since.

const (
	replicasFile = "replicas"
	// localConfig is the control node's config under a replicated
	// cluster: its targets wait for placement too.
	localConfig  = "local.toml"
	manualChains = "[storage]\nchains = \"manual\"\n"
)

// upReplicas returns the cluster's replication: the one recorded in data,
// or, for a cluster not made yet, want (0: 1), which it records. A
// different want for a made cluster is a usage error.
func upReplicas(data string, want, nodes int) (int, error) {
	if want < 0 {
		return 0, usageErrorf("--replicas %d: want 1 or more", want)
	}
	b, err := os.ReadFile(filepath.Join(data, replicasFile))
	switch {
	case err == nil:
		r, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr != nil || r < 1 {
			return 0, fmt.Errorf("%s: not a replica count: %q", filepath.Join(data, replicasFile), b)
		}
		if want != 0 && want != r {
			return 0, usageErrorf("--replicas %d: the cluster in %s was made with %d replicas (chosen when a cluster is made)", want, data, r)
		}
		return r, nil
	case !os.IsNotExist(err):
		return 0, err
	}
	made := fileExists(filepath.Join(data, "meta.db"))
	if want <= 1 {
		return 1, nil
	}
	if made {
		return 0, usageErrorf("--replicas %d: the cluster in %s was made with one copy per chunk (replicas are chosen when a cluster is made)", want, data)
	}
	if nodes+1 < want {
		return 0, usageErrorf("--replicas %d needs %d nodes: the control node and at least --storage-nodes %d", want, want, want-1)
	}
	if err := fileutil.WriteAtomic(filepath.Join(data, localConfig), []byte("# written by fff up --replicas\n"+manualChains), 0o600); err != nil {
		return 0, err
	}
	if err := fileutil.WriteAtomic(filepath.Join(data, replicasFile), []byte(strconv.Itoa(want)+"\n"), 0o600); err != nil {
		return 0, err
	}
	return want, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// placeChains makes chains of r targets from the unchained ones through the
// control node at addr and reports them.
func placeChains(ctx context.Context, out io.Writer, data, addr string, r int) error {
	tok, err := os.ReadFile(filepath.Join(data, tokenFile))
	if err != nil {
		return err
	}
	var popts rpc.PoolOptions
	if ca, err := readCA(data); err != nil {
		return err
	} else if ca != "" {
		if popts.Client.TLS, err = certs.ClientConfig([]byte(ca), "", ""); err != nil {
			return err
		}
	}
	popts.Size = 1
	pool := rpc.NewPool(addr, strings.TrimSpace(string(tok)), popts)
	defer pool.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := cluster.NewClient(pool).PlaceChains(ctx, 1, r)
	if proto.CodeOf(err) == proto.EINVAL {
		fmt.Fprintf(out, "replicas: %v\n", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("placing chains of %d replicas: %w", r, err)
	}
	if len(resp.Chains) > 0 || len(resp.Unplaced) > 0 {
		printPlaced(out, resp)
	}
	return nil
}
