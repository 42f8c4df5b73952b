package libfff

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Environment variables that name the default cluster.
const (
	EnvCluster = "FFF_CLUSTER" // address host:port of a cluster's mgmtd/meta endpoint
	EnvToken   = "FFF_TOKEN"   // the token to authenticate with
)

// ClusterInfo says how to reach a cluster. `fff up` writes one for the local
// cluster it starts; the CLI, the Go API and Python read it.
type ClusterInfo struct {
	Address string `json:"address"`
	Token   string `json:"token"`
	DataDir string `json:"data_dir,omitempty"` // set for a local cluster started by `fff up`
	PID     int    `json:"pid,omitempty"`      // the local fffd process
}

// ErrNoCluster: no cluster is configured.
var ErrNoCluster = errors.New("no fff cluster configured: run `fff up` to start a local one, or set FFF_CLUSTER and FFF_TOKEN")

// ClusterFile is where `fff up` records the local cluster:
// $XDG_CONFIG_HOME/fff/cluster.json, or ~/.config/fff/cluster.json.
func ClusterFile() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("libfff: cannot locate the config directory: %w", err)
	}
	return filepath.Join(dir, "fff", "cluster.json"), nil
}

// DefaultCluster resolves the default cluster: FFF_CLUSTER (and FFF_TOKEN)
// when set, else the cluster file written by `fff up`. A token from FFF_TOKEN
// overrides the file's.
func DefaultCluster() (ClusterInfo, error) {
	var info ClusterInfo
	if addr := strings.TrimSpace(os.Getenv(EnvCluster)); addr != "" {
		info.Address = addr
	} else {
		var err error
		if info, err = RecordedCluster(); err != nil {
			return info, err
		}
	}
	if tok := os.Getenv(EnvToken); tok != "" {
		info.Token = tok
	}
	return info, nil
}

// RecordedCluster reads the cluster file alone (no environment): the
// cluster `fff up` recorded as the default, ErrNoCluster if none.
func RecordedCluster() (ClusterInfo, error) {
	var info ClusterInfo
	path, err := ClusterFile()
	if err != nil {
		return info, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return info, ErrNoCluster
	}
	if err != nil {
		return info, fmt.Errorf("libfff: reading %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &info); err != nil || info.Address == "" {
		return info, fmt.Errorf("libfff: %s is damaged (%v): run `fff up` again or set FFF_CLUSTER", path, err)
	}
	return info, nil
}

// SaveClusterFile records info as the default cluster (file mode 0600: it
// holds a token).
func SaveClusterFile(info ClusterInfo) error {
	path, err := ClusterFile()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("libfff: %w", err)
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("libfff: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("libfff: %w", err)
	}
	return nil
}
