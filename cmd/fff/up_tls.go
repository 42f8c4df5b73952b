package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"fff/internal/certs"
	"fff/internal/fileutil"
)

// TLS of a cluster started by `fff up --tls`: DATA/tls holds its CA and
// the node's certificate (internal/certs), and fffd's [tls] section that
// names them. The directory's CA is the record that the cluster uses TLS:
// every later `fff up` of the data directory keeps it on.
const (
	tlsDir     = "tls"
	tlsConfigF = "fffd.toml" // in tlsDir, passed to fffd with --config
)

// tlsConfigText is fffd's config for an `fff up --tls` cluster; relative
// paths are under the data directory.
const tlsConfigText = `# Written by 'fff up' at every start of a TLS cluster.
[tls]
cert = "tls/node.pem"
key = "tls/node.key"
ca = "tls/ca.pem"
`

// clusterUsesTLS reports whether the cluster of data was set up with TLS.
func clusterUsesTLS(data string) bool {
	_, err := os.Stat(filepath.Join(data, tlsDir, certs.CAFile))
	return err == nil
}

// upTLS decides whether the cluster of data runs with TLS: as recorded,
// or turned on by --tls. Turning it off is refused: clients pin the CA.
func upTLS(data string, o upOpts) (bool, error) {
	recorded := clusterUsesTLS(data)
	if o.tlsSet && !o.tls && recorded {
		return false, fmt.Errorf("the cluster in %s uses TLS (%s); to turn TLS off, stop it ('fff down') and remove that directory: its clients must then connect without the CA",
			data, filepath.Join(data, tlsDir))
	}
	return recorded || o.tls, nil
}

// prepareTLS makes or reuses the CA and a node certificate for the host
// of listen in DATA/tls, writes fffd's config there and returns its path.
func prepareTLS(data, listen string) (string, error) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("--listen %s: %w", listen, err)
	}
	dir := filepath.Join(data, tlsDir)
	if _, err := certs.Ensure(dir, certs.Hosts(host)); err != nil {
		if errors.Is(err, certs.ErrNoCA) {
			return "", fmt.Errorf("%w: restore %s and %s (clients pin that CA), or remove %s to make a new CA", err,
				certs.CAFile, certs.CAKey, dir)
		}
		return "", fmt.Errorf("TLS certificates: %w", err)
	}
	// fffd takes one config: DATA/local.toml (replication's manual
	// chains, an operator's settings) follows the [tls] section.
	text := tlsConfigText
	if b, err := os.ReadFile(filepath.Join(data, localConfig)); err == nil {
		text += "\n# From " + localConfig + ":\n" + string(b)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	path := filepath.Join(dir, tlsConfigF)
	if err := fileutil.WriteAtomic(path, []byte(text), 0o600); err != nil {
		return "", fmt.Errorf("TLS config: %w", err)
	}
	return path, nil
}

// readCA returns the PEM of the cluster's CA, "" for a cluster without TLS.
func readCA(data string) (string, error) {
	b, err := certs.CAPEM(filepath.Join(data, tlsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("the cluster's CA: %w", err)
	}
	return string(b), nil
}

// loopbackListen reports whether listen (host:port) binds loopback only.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
