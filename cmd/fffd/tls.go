package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"

	"fff/internal/certs"
	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
)

// TLSConfig is the [tls] section: TLS on the node's TCP listener and on
// its calls to other nodes (docs/security.md#tls-and-the-handshake). The
// Unix socket stays plaintext: its file permissions guard it.
//
//	[tls]
//	cert = "tls/node.pem"   # the node's certificate; empty: no TLS
//	key = "tls/node.key"    # its private key
//	ca = "tls/ca.pem"       # the cluster's CA: other nodes' certificates must be signed by it
//	client_auth = false     # true: every TCP client must present a certificate signed by ca
//
// Relative paths are under node.data_dir. `fff up --tls` makes the files
// and passes the section.
type TLSConfig struct {
	Cert       string `toml:"cert"`
	Key        string `toml:"key"`
	CA         string `toml:"ca"`
	ClientAuth bool   `toml:"client_auth"`
}

// enabled reports whether the node serves TLS.
func (t TLSConfig) enabled() bool { return t.Cert != "" || t.Key != "" }

// resolve checks the section and makes its paths absolute under dataDir.
func (t *TLSConfig) resolve(dataDir string) error {
	if !t.enabled() {
		if t.CA != "" || t.ClientAuth {
			return fmt.Errorf("config: tls.ca and tls.client_auth need tls.cert and tls.key")
		}
		return nil
	}
	if t.Cert == "" || t.Key == "" || t.CA == "" {
		return fmt.Errorf("config: tls needs cert, key and ca (the node's certificate, its key and the cluster's CA)")
	}
	for _, p := range []*string{&t.Cert, &t.Key, &t.CA} {
		if !filepath.IsAbs(*p) {
			*p = filepath.Join(dataDir, *p)
		}
	}
	return nil
}

// nodeTLS is the node's TLS: what its server offers, what its pools to
// other nodes use. Both nil without TLS.
type nodeTLS struct {
	server, peer *tls.Config
}

// setupTLS loads the node's TLS material, and warns when the node is
// reachable from other hosts without TLS: the handshake hides the token,
// but requests, file data and a connection after its handshake are open
// to the network.
func (n *node) setupTLS() error {
	t := n.cfg.TLS
	if !t.enabled() {
		if a, ok := n.ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
			n.log.Warn().Str("address", n.addr).
				Msg("listening beyond loopback without TLS: file data and requests cross the network in clear, and a connection can be taken over after its handshake; configure [tls] (fff up --tls)")
		}
		return nil
	}
	var err error
	if n.tls.server, err = certs.ServerConfig(t.Cert, t.Key, t.CA, t.ClientAuth); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if n.tls.peer, err = certs.PeerConfig(t.Cert, t.Key, t.CA); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	n.log.Info().Str("cert", t.Cert).Bool("client_auth", t.ClientAuth).Msg("TLS on TCP")
	return nil
}

// poolOpts are the options of a pool to another node of size connections
// (0: the default): under TLS when the node has it.
func (n *node) poolOpts(size int) rpc.PoolOptions {
	return rpc.PoolOptions{Size: size, Client: rpc.ClientOptions{TLS: n.tls.peer}}
}

// control reaches role at the configured addresses (one, or several
// separated by commas) and, once routing has an answer, at the role's
// other nodes that are up: a node of a cluster over a shared KV keeps
// working when the control node it was given dies. close releases its
// connections.
func (n *node) control(addrs []string, token string, role proto.Roles, size int, routing func() *proto.RoutingInfo) (c *cluster.Failover, close func()) {
	first := rpc.NewPool(addrs[0], token, n.poolOpts(size))
	f := cluster.NewFailover(cluster.FailoverOptions{
		Role: role, First: first, Others: addrs[1:], Routing: routing, Logger: n.log,
		Dial: func(addr string) *rpc.Pool { return rpc.NewPool(addr, token, n.poolOpts(size)) },
	})
	return f, func() { f.Close(); first.Close() }
}
