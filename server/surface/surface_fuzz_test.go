// Package surface_test fuzzes the RPC surface of a whole node: mgmtd, meta
// and storage registered on one rpc.Server as `fffd local` registers them
// (issue 14, item 8), called by an authenticated user who is not an admin.
package surface_test

import (
	"context"
	"errors"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/internal/testcluster"
	"fff/server/meta"
	"fff/server/storage/chunkengine"
)

// heapCeiling is the memory ceiling: the heap of this process (client and
// server) after any one call.
const heapCeiling = 1 << 30

// node is a node's services on one rpc.Server, a non-admin user's
// connection to it and the admin's, and a count of handler panics.
type node struct {
	srv     *rpc.Server
	user    *rpc.Conn
	admin   *rpc.Conn
	panics  atomic.Int64
	methods []uint16
}

func startNode(t testing.TB) *node {
	t.Helper()
	ctx := context.Background()
	n := &node{}
	// Handler panics are recovered by the server and logged: count them.
	log := zerolog.New(zerolog.Nop()).Hook(zerolog.HookFunc(func(_ *zerolog.Event, _ zerolog.Level, msg string) {
		if strings.Contains(msg, "panicked") {
			n.panics.Add(1)
		}
	}))
	tc := testcluster.Start(t, testcluster.Options{Storage: true, Logger: log,
		Engine: chunkengine.Options{NoDirect: true, BallastSize: -1}})
	userTok, err := tc.Meta.AddUser(ctx, meta.Identity{Admin: true}, "fuzzer", 4242, []uint32{4242}, false)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = tc.Server
	n.methods = n.srv.Methods()
	for _, c := range []struct {
		conn **rpc.Conn
		tok  string
	}{{&n.user, userTok}, {&n.admin, tc.AdminToken}} {
		conn, err := rpc.Dial(ctx, tc.Addr, c.tok, rpc.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		*c.conn = conn
	}
	return n
}

// alive checks that the node still serves the admin (a lookup of the root).
func (n *node) alive(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var resp proto.MetaInodeResp
	if _, err := n.admin.Call(ctx, proto.MethodMetaStat, &proto.MetaStatReq{Ino: proto.RootIno}, &resp); err != nil {
		t.Fatalf("the node stopped serving: %v", err)
	}
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// FuzzServerSurface calls random methods (mostly registered ones) with
// random msgpack bodies and payloads as an ordinary user. No handler may
// panic, the node must keep serving, and the heap must stay under
// heapCeiling. Errors are expected: most inputs are refused.
func FuzzServerSurface(f *testing.F) {
	n := startNode(f)
	for _, m := range n.methods {
		for _, body := range [][]byte{nil, {0x80}, {0xc0}, {0x81, 0xa1, 'x', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
			f.Add(m, body, []byte(nil))
		}
		f.Add(m, []byte{0x80}, []byte("payload"))
	}
	f.Fuzz(func(t *testing.T, method uint16, body, payload []byte) {
		if len(n.methods) > 0 && method&0x8000 == 0 {
			// Mostly methods that exist; the others are refused at once.
			method = n.methods[int(method)%len(n.methods)]
		}
		if method == proto.MethodMetaStat && len(body) == 0 {
			return // the liveness check itself
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var opts []rpc.CallOption
		if len(payload) > 0 {
			opts = append(opts, rpc.WithPayload(payload))
		}
		_, err := n.user.Call(ctx, method, msgpack.RawMessage(body), nil, opts...)
		if errors.Is(err, proto.ErrUnavailable) {
			t.Fatalf("method %d: the connection failed: %v", method, err)
		}
		if p := n.panics.Load(); p > 0 {
			t.Fatalf("method %d with body %x: a handler panicked", method, body)
		}
		n.alive(t)
		if h := heapBytes(); h > heapCeiling {
			t.Fatalf("method %d with body %x: heap %d MiB after the call, ceiling %d MiB", method, body, h>>20, heapCeiling>>20)
		}
	})
}
