// Package certs makes and loads a cluster's TLS material: a private CA, node
// certificates signed by it, and the tls.Configs of servers and clients that
// pin that CA (docs/security.md#tls-and-the-handshake).
//
// `fff up --tls` keeps the material in DATA/tls (Ensure); fffd loads it
// from the paths of its [tls] config (ServerConfig, PeerConfig); clients get
// the CA's PEM from cluster.json or FFF_CA (ClientConfig).
package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fff/internal/fileutil"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The files of a TLS directory (Ensure).
const (
	CAFile   = "ca.pem"   // the CA's certificate: what clients pin
	CAKey    = "ca.key"   // the CA's private key (0600)
	NodeFile = "node.pem" // the node's certificate, signed by the CA
	NodeKey  = "node.key" // the node's private key (0600)
)

const (
	caLifetime   = 20 * 365 * 24 * time.Hour
	nodeLifetime = 5 * 365 * 24 * time.Hour
	// renewBefore: a node certificate this close to its end is reissued.
	renewBefore = 30 * 24 * time.Hour
	// backdate covers clocks of other hosts a little behind this one.
	backdate = time.Hour
)

// ErrNoCA: the CA's certificate or key is missing from a TLS directory
// that has the other; a new CA would lock out every client pinning the old
// one, so Ensure does not make one.
var ErrNoCA = errors.New("certs: the CA's certificate or key is missing")

// Ensure makes dir (mode 0700) hold a CA and a node certificate signed by
// it that covers every name and address in hosts, reusing what is there:
// the CA is made only when dir has neither its certificate nor its key,
// the node certificate is reissued (same CA) when it lacks a host, expires
// within 30 days or is not the CA's. It reports whether it wrote anything.
func Ensure(dir string, hosts []string) (changed bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("certs: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, fmt.Errorf("certs: %w", err)
	}
	caCert, caKey, err := loadPair(filepath.Join(dir, CAFile), filepath.Join(dir, CAKey))
	switch {
	case errors.Is(err, fs.ErrNotExist) && !exists(filepath.Join(dir, CAFile)) && !exists(filepath.Join(dir, CAKey)):
		if caCert, caKey, err = newCA(); err != nil {
			return false, err
		}
		if err := writePair(dir, CAFile, CAKey, caCert, caKey); err != nil {
			return false, err
		}
		changed = true
	case errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("%w in %s", ErrNoCA, dir)
	case err != nil:
		return false, err
	}
	node, _, err := loadPair(filepath.Join(dir, NodeFile), filepath.Join(dir, NodeKey))
	if err == nil && covers(node, caCert, hosts) {
		return changed, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return changed, err
	}
	cert, key, err := issueNode(caCert, caKey, hosts)
	if err != nil {
		return changed, err
	}
	return true, writePair(dir, NodeFile, NodeKey, cert, key)
}

// covers reports whether node is signed by ca, good for renewBefore more
// and valid for every host.
func covers(node, ca *x509.Certificate, hosts []string) bool {
	if node.CheckSignatureFrom(ca) != nil || time.Until(node.NotAfter) < renewBefore {
		return false
	}
	for _, h := range hosts {
		if node.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func newKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: generating a key: %w", err)
	}
	return k, nil
}

func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return new(big.Int).SetBytes(b)
}

func newCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	sn := serial()
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("fff cluster CA %x", sn.Bytes()[:4]), Organization: []string{"fff"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: making the CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	return cert, key, nil
}

// issueNode signs a certificate for a node at hosts (names and addresses),
// good for serving and, with mutual TLS, for calling other nodes.
func issueNode(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	end := now.Add(nodeLifetime)
	if ca.NotAfter.Before(end) {
		end = ca.NotAfter
	}
	cn, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "fff node " + cn, Organization: []string{"fff"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     end,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: signing the node certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: %w", err)
	}
	return cert, key, nil
}

// writePair writes a certificate (0644) and its key (0600) into dir, each
// through a temporary file renamed into place.
func writePair(dir, certName, keyName string, cert *x509.Certificate, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := writeFile(filepath.Join(dir, keyName), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, certName), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

func writeFile(path string, b []byte, mode os.FileMode) error {
	if err := fileutil.WriteAtomic(path, b, mode); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}

// loadPair reads a certificate and its ECDSA key (as Ensure writes them).
func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("certs: %s, %s: %w", certPath, keyPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("certs: %s: not an ECDSA key", keyPath)
	}
	return pair.Leaf, key, nil
}

// Pool parses PEM certificates (a CA's) into a pool.
func Pool(caPEM []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("certs: no PEM certificate in the CA")
	}
	return pool, nil
}

// ServerConfig is the configuration of a server with the certificate and
// key in certFile and keyFile. With clientAuth, every client must present
// a certificate signed by the CA in caFile (mutual TLS).
func ServerConfig(certFile, keyFile, caFile string, clientAuth bool) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %s, %s: %w", certFile, keyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{pair}}
	if clientAuth {
		pool, err := readPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pool
	}
	return cfg, nil
}

// PeerConfig is the client configuration of a node calling other nodes:
// it trusts the CA in caFile and presents its own certificate (for servers
// that require one).
func PeerConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: %s, %s: %w", certFile, keyFile, err)
	}
	pool, err := readPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool, Certificates: []tls.Certificate{pair}}, nil
}

// ClientConfig is the configuration of a client that trusts the CA in
// caPEM only; with certFile and keyFile it presents that certificate.
func ClientConfig(caPEM []byte, certFile, keyFile string) (*tls.Config, error) {
	pool, err := Pool(caPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: pool}
	if certFile != "" || keyFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("certs: client certificate %s, %s: %w", certFile, keyFile, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func readPool(caFile string) (*x509.CertPool, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("certs: CA: %w", err)
	}
	pool, err := Pool(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, caFile)
	}
	return pool, nil
}

// Hosts returns the names a node listening on host must be reachable by:
// host itself (every address of this machine when it is empty or
// unspecified, as in 0.0.0.0), the loopback addresses, "localhost" and
// the host name.
func Hosts(host string) []string {
	out := []string{"127.0.0.1", "::1", "localhost"}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		out = append(out, hn)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					out = append(out, n.IP.String())
				}
			}
		}
	} else {
		out = append(out, host)
	}
	return dedup(out)
}

func dedup(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// CAPEM reads the CA certificate of a TLS directory.
func CAPEM(dir string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(b, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("certs: %s holds no PEM certificate", filepath.Join(dir, CAFile))
	}
	return b, nil
}
