package libfff

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fff/internal/certs"
	"fff/internal/proto"
)

// Environment variables that name the default cluster.
const (
	EnvCluster = "FFF_CLUSTER" // address host:port of a cluster's mgmtd/meta endpoint
	EnvToken   = "FFF_TOKEN"   // the token to authenticate with
	// EnvCA is the path of the PEM certificate of a TLS cluster's CA:
	// clients then connect with TLS and trust only that CA.
	EnvCA = "FFF_CA"
	// EnvCert and EnvKey are the paths of a client certificate and its
	// key, for clusters that require one (mutual TLS).
	EnvCert = "FFF_CERT"
	EnvKey  = "FFF_KEY"
)

// ClusterInfo says how to reach a cluster. `fff up` writes one for the local
// cluster it starts; the CLI, the Go API and Python read it.
type ClusterInfo struct {
	Address string `json:"address"`
	Token   string `json:"token"`
	DataDir string `json:"data_dir,omitempty"` // set for a local cluster started by `fff up`
	PID     int    `json:"pid,omitempty"`      // the local fffd process
	// CA is the PEM certificate of the cluster's CA when the cluster uses
	// TLS (`fff up --tls`): clients pin it. Empty: no TLS.
	CA string `json:"ca,omitempty"`
	// CertFile and KeyFile name a client certificate and key to present
	// (mutual TLS).
	CertFile string `json:"cert,omitempty"`
	KeyFile  string `json:"key,omitempty"`
}

// TLSConfig returns the client TLS configuration of the cluster: nil
// without a CA (no TLS), else one that trusts the CA alone and presents
// the client certificate if there is one.
func (i ClusterInfo) TLSConfig() (*tls.Config, error) {
	if i.CA == "" {
		if i.CertFile != "" {
			return nil, fmt.Errorf("libfff: a client certificate without the cluster's CA (%s): %w", EnvCA, proto.ErrInvalid)
		}
		return nil, nil
	}
	cfg, err := certs.ClientConfig([]byte(i.CA), i.CertFile, i.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("libfff: the cluster's TLS settings (%s, %s, %s or cluster.json): %w: %w", EnvCA, EnvCert, EnvKey, err, proto.ErrInvalid)
	}
	return cfg, nil
}

// applyTLSEnv overrides info's CA and client certificate with FFF_CA,
// FFF_CERT and FFF_KEY where set.
func applyTLSEnv(info *ClusterInfo) error {
	if p := os.Getenv(EnvCA); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return fmt.Errorf("libfff: %s: %w", EnvCA, err)
		}
		info.CA = string(b)
	}
	if p := os.Getenv(EnvCert); p != "" {
		info.CertFile = p
	}
	if p := os.Getenv(EnvKey); p != "" {
		info.KeyFile = p
	}
	return nil
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

// DefaultCluster resolves the default cluster: FFF_CLUSTER (and FFF_TOKEN,
// FFF_CA) when set, else the cluster file written by `fff up`. A token from
// FFF_TOKEN overrides the file's, and so do FFF_CA, FFF_CERT and FFF_KEY
// its TLS settings. FFF_CLUSTER naming the recorded cluster's address
// keeps the file's CA.
func DefaultCluster() (ClusterInfo, error) {
	var info ClusterInfo
	if addr := strings.TrimSpace(os.Getenv(EnvCluster)); addr != "" {
		info.Address = addr
		if rec, err := RecordedCluster(); err == nil && rec.Address == addr {
			info.CA, info.CertFile, info.KeyFile = rec.CA, rec.CertFile, rec.KeyFile
		}
	} else {
		var err error
		if info, err = RecordedCluster(); err != nil {
			return info, err
		}
	}
	if tok := os.Getenv(EnvToken); tok != "" {
		info.Token = tok
	}
	return info, applyTLSEnv(&info)
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
