package tests

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fff/internal/certs"
	fffcluster "fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/tcptap"
	"fff/libfff"
)

// No secret in clear on the wire (docs/security.md#tls-and-the-handshake):
// a TLS cluster made by `fff up --tls` carries neither tokens nor file data
// in clear, refuses clients that do not speak TLS; without TLS the
// handshake still never shows the token and cannot be replayed.

// routeThrough makes the cluster at addr send clients to tap for its node
// 1 (every role of `fffd local`), so that their storage traffic crosses the
// tap too, not only their calls to the cluster address: the node's
// registered address becomes the tap's.
func routeThrough(t *testing.T, addr, token string, tcfg *tls.Config, tap string) {
	t.Helper()
	pool := rpc.NewPool(addr, token, rpc.PoolOptions{Size: 1, Client: rpc.ClientOptions{TLS: tcfg, TCPOnly: true}})
	defer pool.Close()
	mg := fffcluster.NewClient(pool)
	ctx := ctxFor(t)
	ri, err := mg.GetRouting(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := ri.Node(1)
	if n == nil {
		t.Fatal("no node 1")
	}
	if _, err := mg.RegisterNode(ctx, proto.Node{ID: n.ID, Roles: n.Roles, Addr: tap, Hostname: n.Hostname}); err != nil {
		t.Fatal(err)
	}
}

// secretContent is file data no protocol field could contain by chance.
func secretContent(tag string) []byte {
	return bytes.Repeat([]byte("fff-wire-secret-"+tag+"-0123456789abcdef|"), 4096)
}

// TestTLSCluster: `fff up --tls` makes a private CA and node certificate
// (keys 0600 in a 0700 directory) and records the CA in cluster.json;
// put and get through the CLI work; a capture of every TCP byte between
// a client and the node (through a recording proxy, with the node's
// address pointed at it) holds neither the token nor a file's content;
// a client without the CA, or pinning another CA, is refused at once with
// a message that says so; a later `fff up` keeps TLS on.
func TestTLSCluster(t *testing.T) {
	t.Parallel()
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	out := mustFFF(t, env, "up", "--tls", "--daemon", "--data", data)
	if !strings.Contains(out, "tls:") {
		t.Fatalf("fff up --tls printed:\n%s", out)
	}
	tlsDir := filepath.Join(data, "tls")
	for name, mode := range map[string]fs.FileMode{".": fs.ModeDir | 0o700, "ca.key": 0o600, "node.key": 0o600} {
		if st, err := os.Stat(filepath.Join(tlsDir, name)); err != nil || st.Mode() != mode {
			t.Fatalf("%s: %v %v, want mode %v", name, st.Mode(), err, mode)
		}
	}
	var info libfff.ClusterInfo
	b, err := os.ReadFile(filepath.Join(config, "fff", "cluster.json"))
	if err != nil || json.Unmarshal(b, &info) != nil || !strings.HasPrefix(info.CA, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("cluster.json records no CA: %s %v", b, err)
	}
	if !strings.Contains(mustFFF(t, env, "status"), "tls:          on") {
		t.Fatal("fff status does not say TLS is on")
	}

	// Put and get through the CLI (the default cluster, from cluster.json).
	local := t.TempDir()
	first, second := secretContent("first"), secretContent("second")
	for name, content := range map[string][]byte{"first": first, "second": second} {
		if err := os.WriteFile(filepath.Join(local, name), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	mustFFF(t, env, "put", filepath.Join(local, "first"), "fff:///first")
	if got := mustFFF(t, env, "cat", "fff:///first"); got != string(first) {
		t.Fatalf("cat /first: %d bytes, want %d", len(got), len(first))
	}

	// Every byte between a client and the node, through a tap.
	tcfg, err := info.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	tap := tcptap.Start(t, info.Address, nil)
	routeThrough(t, info.Address, info.Token, tcfg, tap.Addr)
	tapEnv := append(cleanEnv(), "XDG_CONFIG_HOME="+t.TempDir(), // no cluster.json: the CA comes from FFF_CA
		libfff.EnvCluster+"="+tap.Addr, libfff.EnvToken+"="+info.Token,
		libfff.EnvCA+"="+filepath.Join(tlsDir, "ca.pem"), libfff.EnvTCPOnly+"=1")
	mustFFF(t, tapEnv, "put", filepath.Join(local, "second"), "fff:///second")
	if got := mustFFF(t, tapEnv, "cat", "fff:///first"); got != string(first) {
		t.Fatalf("cat /first through the tap: %d bytes, want %d", len(got), len(first))
	}
	wire, conns := tap.All()
	if len(wire) < len(first)+len(second) {
		t.Fatalf("the tap saw %d bytes on %d connections: the data did not cross it", len(wire), conns)
	}
	for what, secret := range map[string][]byte{"the token": []byte(info.Token), "a file's content": first[:64], "an uploaded file's content": second[:64], "a path": []byte("/second")} {
		if bytes.Contains(wire, secret) {
			t.Errorf("%s crossed the wire in clear", what)
		}
	}
	if !t.Failed() {
		t.Logf("captured %d bytes on %d connections, none in clear", len(wire), conns)
	}

	// Clients that do not pin the cluster's CA.
	other := t.TempDir()
	if _, err := certs.Ensure(other, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, ca, says string
	}{
		{"no CA", "", "TLS connections only"},
		{"another CA", filepath.Join(other, "ca.pem"), "not trusted"},
	} {
		e := append(cleanEnv(), "XDG_CONFIG_HOME="+t.TempDir(), libfff.EnvCluster+"="+info.Address, libfff.EnvToken+"="+info.Token)
		if tc.ca != "" {
			e = append(e, libfff.EnvCA+"="+tc.ca)
		}
		start := time.Now()
		r := fff(t, e, "ls", "/")
		if r.code != 1 || !strings.Contains(r.stderr, tc.says) || strings.Contains(r.stdout, "first") {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 saying %q", tc.name, r.code, r.stdout, r.stderr, tc.says)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: refused after %v, not at once", tc.name, d)
		}
	}

	// A later start keeps TLS, and the certificates.
	ca, _ := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	mustFFF(t, env, "down", "--data", data)
	if r := fff(t, env, "up", "--tls=false", "--daemon", "--data", data); r.code == 0 || !strings.Contains(r.stderr, "uses TLS") {
		t.Errorf("fff up --tls=false on a TLS cluster: exit %d, stderr %q", r.code, r.stderr)
	}
	if out := mustFFF(t, env, "up", "--daemon", "--data", data); !strings.Contains(out, "tls:") {
		t.Fatalf("fff up after fff down printed:\n%s", out)
	}
	if again, _ := os.ReadFile(filepath.Join(tlsDir, "ca.pem")); !bytes.Equal(again, ca) {
		t.Fatal("the CA changed on restart")
	}
	if got := mustFFF(t, env, "cat", "fff:///second"); got != string(second) {
		t.Fatalf("cat /second after restart: %d bytes, want %d", len(got), len(second))
	}
	mustFFF(t, env, "down", "--data", data)
}

// TestHandshakeNoTokenInClear: on a cluster without TLS, a capture of a
// client's connection holds no token, and the client's recorded bytes
// replayed on a new connection are refused (Unauthenticated) without any
// request being served.
func TestHandshakeNoTokenInClear(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	tap := tcptap.Start(t, c.addr, nil)
	env := append(cleanEnv(), libfff.EnvCluster+"="+tap.Addr, libfff.EnvToken+"="+c.token, libfff.EnvTCPOnly+"=1")
	mustFFF(t, env, "mkdir", "/visible")
	wire, _ := tap.All()
	if bytes.Contains(wire, []byte(c.token)) {
		t.Fatal("the token crossed the wire in clear")
	}
	if !bytes.Contains(wire, []byte("visible")) {
		t.Fatal("the tap saw no request: it is not on the client's path")
	}

	// Replay the client's first connection: its hello, proof and calls.
	nc, err := net.Dial("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := nc.Write(tap.Sent(0)); err != nil {
		t.Fatal(err)
	}
	// The server's answers: a challenge (kind 6), then a refusal (a
	// welcome, kind 2, with status Unauthenticated) and the end.
	if k, _ := readWireFrame(t, nc); k != 6 {
		t.Fatalf("replay answered a frame of kind %d, want a challenge", k)
	}
	if k, status := readWireFrame(t, nc); k != 2 || status != proto.Unauthenticated {
		t.Fatalf("replayed handshake answered a frame of kind %d, status %v; want a welcome with Unauthenticated", k, status)
	}
	if rest, err := io.ReadAll(nc); err != nil || len(rest) != 0 {
		t.Fatalf("after the refusal: %d bytes, %v", len(rest), err)
	}
}

// readWireFrame reads one frame (docs/wire.md) and returns its kind and
// status.
func readWireFrame(t *testing.T, r io.Reader) (byte, proto.Code) {
	t.Helper()
	h := make([]byte, 32)
	if _, err := io.ReadFull(r, h); err != nil {
		t.Fatal(err)
	}
	n := int64(binary.LittleEndian.Uint32(h[16:])) + int64(binary.LittleEndian.Uint32(h[20:]))
	if _, err := io.CopyN(io.Discard, r, n); err != nil {
		t.Fatal(err)
	}
	return h[2], proto.Code(binary.LittleEndian.Uint16(h[6:]))
}

// TestPlaintextListenWarns: fffd listening beyond loopback without TLS
// says in its log that traffic is in clear, and `fff up` on such an
// address says so too; with TLS ([tls] in its config) fffd does not.
func TestPlaintextListenWarns(t *testing.T) {
	t.Parallel()
	const warning = "beyond loopback without TLS"
	config, data := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "XDG_CONFIG_HOME="+config)
	t.Cleanup(func() { killCluster(data) })
	if r := fff(t, env, "up", "--daemon", "--data", data, "--listen", "0.0.0.0:0"); r.code != 0 || !strings.Contains(r.stderr, "without TLS") {
		t.Errorf("fff up --listen 0.0.0.0:0: exit %d, stderr %q; want a warning", r.code, r.stderr)
	}
	mustFFF(t, env, "down", "--data", data)

	plain := &cluster{data: t.TempDir()}
	plain.startListen(t, "0.0.0.0:0")
	b, err := os.ReadFile(filepath.Join(plain.data, "fffd.log"))
	if err != nil || !strings.Contains(string(b), warning) {
		t.Fatalf("fffd log of a plaintext node on 0.0.0.0 lacks the warning: %v\n%s", err, lastLines(b, 10))
	}

	secure := &cluster{data: t.TempDir(), config: filepath.Join(t.TempDir(), "fffd.toml")}
	if _, err := certs.Ensure(filepath.Join(secure.data, "tls"), certs.Hosts("")); err != nil {
		t.Fatal(err)
	}
	cfg := "[tls]\ncert = \"tls/node.pem\"\nkey = \"tls/node.key\"\nca = \"tls/ca.pem\"\n"
	if err := os.WriteFile(secure.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	secure.startListen(t, "0.0.0.0:0")
	b, err = os.ReadFile(filepath.Join(secure.data, "fffd.log"))
	if err != nil || strings.Contains(string(b), warning) || !strings.Contains(string(b), "TLS on TCP") {
		t.Fatalf("fffd log of a TLS node on 0.0.0.0: %v\n%s", err, lastLines(b, 10))
	}
}
