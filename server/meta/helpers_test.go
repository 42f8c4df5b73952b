package meta

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv"
	"fff/server/kv/bboltkv"
	"fff/server/kv/memkv"
)

var (
	alice = Identity{UID: 1000, GIDs: []uint32{1000, 500}, Name: "alice"}
	bob   = Identity{UID: 1001, GIDs: []uint32{1001, 500}, Name: "bob"}
	carol = Identity{UID: 1002, GIDs: []uint32{1002}, Name: "carol"}
)

// testTables: table 1 has 8 chains, table 2 has 2, table 3 has 40.
var testTables = StaticChainTables{
	1: {11, 12, 13, 14, 15, 16, 17, 18},
	2: {21, 22},
	3: func() []uint32 {
		t := make([]uint32, 40)
		for i := range t {
			t[i] = uint32(300 + i)
		}
		return t
	}(),
}

// backend opens a fresh kv.DB of one kind.
type backend struct {
	name string
	open func(t testing.TB) kv.DB
}

var backends = []backend{
	{"memkv", func(t testing.TB) kv.DB {
		db := memkv.New()
		t.Cleanup(func() { db.Close() })
		return db
	}},
	{"bbolt", func(t testing.TB) kv.DB {
		db, err := bboltkv.Open(filepath.Join(t.TempDir(), "meta.db"), &bboltkv.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, db kv.DB)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, b.open(t))
		})
	}
}

func newService(t testing.TB, db kv.DB, opts Options) *Service {
	t.Helper()
	if opts.ChainTables == nil {
		opts.ChainTables = testTables
	}
	s := New(db, opts)
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func newMem(t testing.TB) *Service { return newService(t, backends[0].open(t), Options{}) }

var ctx = context.Background()

func wantCode(t testing.TB, err error, c proto.Code) {
	t.Helper()
	if c == proto.OK {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want %v", c)
	}
	if !errors.Is(err, c.Err()) {
		t.Fatalf("got %v (code %v), want %v", err, proto.CodeOf(err), c)
	}
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func mkdir(t testing.TB, s *Service, id Identity, parent uint64, name string, mode uint32) proto.Inode {
	t.Helper()
	return must(s.Mkdir(ctx, id, parent, name, mode))(t)
}

func create(t testing.TB, s *Service, id Identity, parent uint64, name string, mode uint32) proto.Inode {
	t.Helper()
	return must(s.Create(ctx, id, parent, name, mode, proto.OpenExcl))(t).Inode
}

// names lists directory ino (as root) completely, by paging.
func names(t testing.TB, s *Service, ino uint64) []string {
	t.Helper()
	var out []string
	after := ""
	for {
		es, more, err := s.ReadDir(ctx, Root, ino, after, 7, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			out = append(out, e.Name)
		}
		if !more {
			return out
		}
		after = es[len(es)-1].Name
	}
}

func gcRecords(t testing.TB, s *Service) []proto.GCRecord {
	t.Helper()
	return must(s.GCList(ctx, Root, nil, 0))(t)
}

func isCode(err error, c proto.Code) bool { return errors.Is(err, c.Err()) }

// serveRPC serves s's methods on a loopback rpc server, authenticating
// with s's users, until the test ends; it returns the server and address.
func serveRPC(t *testing.T, s *Service) (*rpc.Server, string) {
	t.Helper()
	srv := rpc.NewServer(rpc.ServerOptions{Auth: s.Authenticator()})
	s.Register(srv)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return srv, l.Addr().String()
}
