package libfff

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/testcluster"
	"fff/server/meta"
)

// The client against mgmtd and meta served in process over real loopback
// RPC (tests/ drives real fffd processes).

type testCluster struct {
	addr, adminToken string
}

func startCluster(t *testing.T) testCluster {
	t.Helper()
	c := testcluster.Start(t, testcluster.Options{})
	return testCluster{addr: c.Addr, adminToken: c.AdminToken}
}

func connect(t *testing.T, addr, token string) *Client {
	t.Helper()
	c, err := Connect(context.Background(), Options{Address: addr, Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Path
		err  bool
	}{
		{in: "/a/b", want: Path{Path: "/a/b"}},
		{in: "rel/x", want: Path{Path: "rel/x"}},
		{in: "fff:///a/b", want: Path{Remote: true, Path: "/a/b"}},
		{in: "fff:///", want: Path{Remote: true, Path: "/"}},
		{in: "fff://", want: Path{Remote: true, Path: "/"}},
		{in: "fff:///a//b/../c/", want: Path{Remote: true, Path: "/a/c"}},
		{in: "fff://10.0.0.1:9000/x", want: Path{Remote: true, Cluster: "10.0.0.1:9000", Path: "/x"}},
		{in: "fff://[::1]:9000", want: Path{Remote: true, Cluster: "[::1]:9000", Path: "/"}},
		{in: "fff://host/x", err: true},
		{in: "fff://u@h:1/x", err: true},
		{in: "", err: true},
	} {
		got, err := ParsePath(tc.in)
		if (err != nil) != tc.err || err == nil && got != tc.want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && got.Remote {
			if again, _ := ParsePath(got.String()); again != got {
				t.Errorf("ParsePath(%q).String() = %q does not round-trip", tc.in, got.String())
			}
		}
	}
	for _, tc := range [][3]string{{"/", "/", ""}, {"/a", "/", "a"}, {"/a/b", "/a", "b"}} {
		if d, n := splitPath(tc[0]); d != tc[1] || n != tc[2] {
			t.Errorf("splitPath(%q) = %q, %q", tc[0], d, n)
		}
	}
}

func TestModes(t *testing.T) {
	for _, m := range []fs.FileMode{0o755, fs.ModeSticky | 0o777, 0o1777, fs.ModeSetuid | fs.ModeSetgid | 0o750, 0o6750} {
		u := unixMode(m)
		n := proto.Inode{Type: proto.TypeDir, Mode: u}
		back := FileMode(&n)
		if unixMode(back) != u || back&fs.ModeDir == 0 {
			t.Errorf("mode %v → %o → %v", m, u, back)
		}
	}
	if unixMode(fs.ModeSticky|0o777) != 0o1777 || unixMode(0o4755) != 0o4755 {
		t.Error("unixMode maps the special bits wrong")
	}
}

func TestClientNamespace(t *testing.T) {
	t.Parallel()
	tc := startCluster(t)
	c := connect(t, tc.addr, tc.adminToken)
	ctx := context.Background()

	if err := c.MkdirAll(ctx, "/a/b/c", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.MkdirAll(ctx, "fff:///a/b/c", 0o755); err != nil {
		t.Fatalf("MkdirAll of an existing directory: %v", err)
	}
	fi, err := c.CreateFile(ctx, "/a/b/f", 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Name() != "f" || fi.Mode() != 0o640 || fi.IsDir() || fi.Inode.Layout == nil || fi.Inode.Layout.Stripe != 2 {
		t.Fatalf("created %+v (mode %v)", fi.Inode, fi.Mode())
	}
	if _, err := c.CreateFile(ctx, "/a/b/f", 0o640); !errors.Is(err, fs.ErrExist) || !errors.Is(err, proto.ErrExist) {
		t.Fatalf("create existing: %v", err)
	}
	var pe *fs.PathError
	if err := c.Mkdir(ctx, "/a", 0o755); !errors.As(err, &pe) || pe.Path != "/a" || err.Error() != "mkdir /a: file exists" {
		t.Fatalf("mkdir existing: %v", err)
	}
	if err := c.Mkdir(ctx, "/a/b/f/x", 0o755); !errors.Is(err, proto.ErrNotDir) {
		t.Fatalf("mkdir below a file: %v", err)
	}
	if err := c.MkdirAll(ctx, "/a/b/f/x", 0o755); !errors.Is(err, proto.ErrNotDir) {
		t.Fatalf("MkdirAll below a file: %v", err)
	}
	if err := c.Mkdir(ctx, "fff://"+tc.addr+"/a/d", 0o700); err != nil {
		t.Fatalf("mkdir with this cluster's address: %v", err)
	}
	if err := c.Mkdir(ctx, "fff://127.0.0.1:1/a/e", 0o700); !errors.Is(err, proto.ErrCrossDevice) {
		t.Fatalf("mkdir in another cluster: %v", err)
	}

	// Paged listing: more entries than one page.
	const n = readDirPage*2 + 17
	if err := c.Mkdir(ctx, "/big", 0o755); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := c.CreateFile(ctx, fmt.Sprintf("/big/f%05d", i), 0o644); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	es, err := c.ReadDir(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n {
		t.Fatalf("listed %d entries, want %d", len(es), n)
	}
	for i, e := range es {
		if e.Name() != fmt.Sprintf("f%05d", i) || e.IsDir() || e.Attr() == nil || e.Attr().Ino != e.Ino() {
			t.Fatalf("entry %d = %+v", i, e)
		}
	}
	if err := c.RemoveAll(ctx, "/big"); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveAll(ctx, "/big"); err != nil {
		t.Fatalf("RemoveAll of a missing path: %v", err)
	}

	// Rename, symlink, link, attributes.
	if err := c.Rename(ctx, "/a/b/f", "/a/g"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename(ctx, "/a", "/a/b/c/a"); !errors.Is(err, proto.ErrInvalid) {
		t.Fatalf("rename into own subtree: %v", err)
	}
	var le interface{ Unwrap() error }
	if err := c.Rename(ctx, "/nope", "/x"); !errors.As(err, &le) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("rename missing: %v", err)
	}
	if err := c.Symlink(ctx, "b/c", "/a/l"); err != nil {
		t.Fatal(err)
	}
	if tgt, err := c.Readlink(ctx, "/a/l"); err != nil || tgt != "b/c" {
		t.Fatalf("readlink = %q, %v", tgt, err)
	}
	if fi, err := c.Stat(ctx, "/a/l"); err != nil || !fi.IsDir() {
		t.Fatalf("stat through symlink: %v", err)
	}
	if fi, err := c.Lstat(ctx, "/a/l"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("lstat of symlink: %v", err)
	}
	if err := c.Link(ctx, "/a/g", "/a/l/h"); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "/a/b/c/h"); err != nil || fi.Inode.Nlink != 2 {
		t.Fatalf("hard link: %+v %v", fi, err)
	}
	if err := c.Chmod(ctx, "/a/g", 0o600|fs.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := c.Chown(ctx, "/a/g", 42, -1); err != nil {
		t.Fatal(err)
	}
	if err := c.Truncate(ctx, "/a/g", 1234); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := c.Chtimes(ctx, "/a/g", time.Time{}, mt); err != nil {
		t.Fatal(err)
	}
	fi, err = c.Stat(ctx, "/a/g")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o600|fs.ModeSetgid || fi.Inode.UID != 42 || fi.Inode.GID != 0 || !fi.ModTime().Equal(mt) || fi.Size() != 1234 {
		t.Fatalf("attributes: %+v mode %v", fi.Inode, fi.Mode())
	}
	before := fi.Inode.Mtime
	if err := c.Touch(ctx, "/a/g"); err != nil {
		t.Fatal(err)
	}
	if err := c.Touch(ctx, "/a/new"); err != nil {
		t.Fatal(err)
	}
	if fi, err := c.Stat(ctx, "/a/g"); err != nil || fi.Inode.Mtime <= before {
		t.Fatalf("touch did not move mtime: %v", err)
	}
	if fi, err := c.Stat(ctx, "/a/new"); err != nil || fi.Mode() != TouchMode || fi.Size() != 0 {
		t.Fatalf("touch did not create: %v", err)
	}
	if err := c.Remove(ctx, "/a/b"); !errors.Is(err, proto.ErrNotEmpty) {
		t.Fatalf("remove non-empty dir: %v", err)
	}
	if err := c.Remove(ctx, "/a/b/c/h"); err != nil {
		t.Fatal(err)
	}
	if err := c.Remove(ctx, "/a/b/c"); err != nil {
		t.Fatalf("remove empty dir: %v", err)
	}
	if err := c.Remove(ctx, "/"); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("remove /: %v", err)
	}
	st, err := c.StatFS(ctx)
	if err != nil || st.Inodes == 0 {
		t.Fatalf("statfs = %+v, %v", st, err)
	}
	ri, err := c.Routing(ctx)
	if err != nil || len(ri.ChainTables) == 0 {
		t.Fatalf("routing = %+v, %v", ri, err)
	}
}

func TestClientUsersAndAuth(t *testing.T) {
	t.Parallel()
	tc := startCluster(t)
	ctx := context.Background()
	admin := connect(t, tc.addr, tc.adminToken)
	who, err := admin.WhoAmI(ctx)
	if err != nil || !who.Admin || who.Name != meta.AdminUser {
		t.Fatalf("whoami = %+v, %v", who, err)
	}
	tok, err := admin.UserAdd(ctx, "bob", 1001, []uint32{1001}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UserAdd(ctx, "bob", 1001, nil, false); !errors.Is(err, proto.ErrExist) {
		t.Fatalf("adding bob twice: %v", err)
	}
	bob := connect(t, tc.addr, tok)
	if who, err := bob.WhoAmI(ctx); err != nil || who.UID != 1001 || who.Admin {
		t.Fatalf("bob = %+v, %v", who, err)
	}
	if _, err := bob.UserList(ctx); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("bob lists users: %v", err)
	}
	if err := bob.Mkdir(ctx, "/bob", 0o755); !errors.Is(err, proto.ErrPermissionDenied) {
		t.Fatalf("bob mkdir in /: %v", err)
	}
	users, err := admin.UserList(ctx)
	if err != nil || !slices.ContainsFunc(users, func(u proto.User) bool { return u.Name == "bob" }) {
		t.Fatalf("users = %+v, %v", users, err)
	}
	tok2, err := admin.UserRotateToken(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, Options{Address: tc.addr, Token: tok}); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("old token: %v", err)
	}
	connect(t, tc.addr, tok2)
	if err := admin.UserRemove(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := Connect(ctx, Options{Address: tc.addr, Token: tok2}); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("removed user's token: %v", err)
	}
	// Unreachable cluster.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	if _, err := Connect(ctx, Options{Address: dead, Token: "x"}); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("connect to nothing: %v", err)
	}
	// Calls after Close fail, Close twice is fine.
	c := connect(t, tc.addr, tc.adminToken)
	c.Close()
	c.Close()
	if _, err := c.Stat(ctx, "/"); !errors.Is(err, proto.ErrUnavailable) {
		t.Fatalf("stat after close: %v", err)
	}
}

// TestConcurrentCreate: many goroutines on many clients create one name.
func TestConcurrentCreate(t *testing.T) {
	t.Parallel()
	tc := startCluster(t)
	ctx := context.Background()
	clients := make([]*Client, 4)
	for i := range clients {
		clients[i] = connect(t, tc.addr, tc.adminToken)
	}
	for round := 0; round < 5; round++ {
		name := fmt.Sprintf("/n%d", round)
		var wins, exists atomic.Int32
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if round%2 == 0 {
					_, err = clients[g%len(clients)].CreateFile(ctx, name, 0o644)
				} else {
					err = clients[g%len(clients)].Mkdir(ctx, name, 0o755)
				}
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, fs.ErrExist):
					exists.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || exists.Load() != 31 {
			t.Fatalf("round %d: %d wins, %d EEXIST", round, wins.Load(), exists.Load())
		}
	}
}

// TestRoutingAndClose: Routing starts a refresh loop that Close stops, also
// when both race.
func TestRoutingAndClose(t *testing.T) {
	t.Parallel()
	tc := startCluster(t)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		c := connect(t, tc.addr, tc.adminToken)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if ri, err := c.Routing(ctx); err == nil && ri.Version == 0 {
					t.Error("routing info without a version")
				}
			}()
		}
		c.Close()
		wg.Wait()
	}
}
