package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnsure: a new directory gets a CA and a node certificate (keys 0600
// in a 0700 directory) that verifies for every host; a second call keeps
// them; a new host reissues the node certificate under the same CA; a
// directory that lost its CA key is refused rather than given a new CA.
func TestEnsure(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	hosts := []string{"127.0.0.1", "::1", "localhost", "node1.example"}
	changed, err := Ensure(dir, hosts)
	if err != nil || !changed {
		t.Fatalf("first Ensure: %v %v", changed, err)
	}
	for name, mode := range map[string]os.FileMode{CAKey: 0o600, NodeKey: 0o600, CAFile: 0o644, NodeFile: 0o644, ".": 0o700 | os.ModeDir} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode() != mode {
			t.Fatalf("%s: mode %v, want %v (%v)", name, st.Mode(), mode, err)
		}
	}
	ca := readCert(t, filepath.Join(dir, CAFile))
	node := readCert(t, filepath.Join(dir, NodeFile))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, h := range hosts {
		if _, err := node.Verify(x509.VerifyOptions{Roots: pool, DNSName: h, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Fatalf("node certificate for %s: %v", h, err)
		}
	}
	if _, err := node.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Fatal("node certificate valid for a host it was not made for")
	}
	if !ca.IsCA || node.IsCA {
		t.Fatal("CA flags")
	}

	if changed, err := Ensure(dir, hosts); err != nil || changed {
		t.Fatalf("second Ensure: %v %v", changed, err)
	}
	if !bytes.Equal(readCert(t, filepath.Join(dir, NodeFile)).Raw, node.Raw) {
		t.Fatal("node certificate replaced without need")
	}

	if changed, err := Ensure(dir, append(hosts, "10.1.2.3")); err != nil || !changed {
		t.Fatalf("new host: %v %v", changed, err)
	}
	if !bytes.Equal(readCert(t, filepath.Join(dir, CAFile)).Raw, ca.Raw) {
		t.Fatal("CA replaced")
	}
	if err := readCert(t, filepath.Join(dir, NodeFile)).VerifyHostname("10.1.2.3"); err != nil {
		t.Fatal(err)
	}

	if err := os.Remove(filepath.Join(dir, CAKey)); err != nil {
		t.Fatal(err)
	}
	if _, err := Ensure(dir, hosts); !errors.Is(err, ErrNoCA) {
		t.Fatalf("without the CA key: %v", err)
	}
}

// TestConfigs: server, peer and client configurations load what Ensure
// made and pin the CA.
func TestConfigs(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(dir, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	f := func(n string) string { return filepath.Join(dir, n) }
	s, err := ServerConfig(f(NodeFile), f(NodeKey), f(CAFile), true)
	if err != nil || s.ClientCAs == nil || len(s.Certificates) != 1 {
		t.Fatalf("server: %v", err)
	}
	if _, err := PeerConfig(f(NodeFile), f(NodeKey), f(CAFile)); err != nil {
		t.Fatal(err)
	}
	ca, err := CAPEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := ClientConfig(ca, "", ""); err != nil || c.RootCAs == nil || len(c.Certificates) != 0 {
		t.Fatalf("client: %v", err)
	}
	if _, err := ClientConfig([]byte("not a certificate"), "", ""); err == nil {
		t.Fatal("a CA without a certificate accepted")
	}
	if _, err := ClientConfig(ca, f(NodeFile), ""); err == nil {
		t.Fatal("a client certificate without its key accepted")
	}
}
