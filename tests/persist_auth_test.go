package tests

import (
	"context"
	"errors"
	"io/fs"
	"reflect"
	"slices"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/libfff"
)

// snapshot walks the tree from the root and returns every path's inode.
func snapshot(t *testing.T, ctx context.Context, c *libfff.Client) map[string]proto.Inode {
	t.Helper()
	out := map[string]proto.Inode{}
	root, err := c.Lstat(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	out["/"] = root.Inode
	var walk func(dir string)
	walk = func(dir string) {
		es, err := c.ReadDir(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			p := dir + "/" + e.Name()
			if dir == "/" {
				p = "/" + e.Name()
			}
			if e.Attr() == nil {
				t.Fatalf("%s: no attributes", p)
			}
			out[p] = *e.Attr()
			if e.IsDir() {
				walk(p)
			}
		}
	}
	walk("/")
	return out
}

// TestRestartPersistence: a tree with every kind of entry and attribute
// survives SIGTERM and a new fffd on the same data directory, and so do
// the users and their tokens.
func TestRestartPersistence(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	c := cl.admin(t)
	userTok, err := c.UserAdd(ctx, "carol", 2000, []uint32{2000, 300}, false)
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.MkdirAll(ctx, "/ds/imagenet/train", 0o755))
	must(c.MkdirAll(ctx, "/ds/imagenet/val", 0o700))
	must(c.Mkdir(ctx, "/tmp", 0o777|fs.ModeSticky))
	must(c.SetDirLayout(ctx, "/ds/imagenet/val", proto.DirLayout{ChunkSize: 1 << 20, Stripe: 1}))
	for _, p := range []string{"/ds/imagenet/train/0.ffr", "/ds/imagenet/train/1.ffr", "/ds/imagenet/val/0.ffr"} {
		if _, err := c.CreateFile(ctx, p, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	must(c.Truncate(ctx, "/ds/imagenet/train/1.ffr", 123456789))
	must(c.Chown(ctx, "/ds/imagenet/train/1.ffr", 2000, 300))
	must(c.Chmod(ctx, "/ds/imagenet/train/1.ffr", 0o2640))
	must(c.Chtimes(ctx, "/ds/imagenet/train/0.ffr", time.Unix(1e9, 1), time.Unix(1.5e9, 2)))
	must(c.Symlink(ctx, "imagenet/train", "/ds/latest"))
	must(c.Link(ctx, "/ds/imagenet/train/0.ffr", "/ds/first.ffr"))
	must(c.Rename(ctx, "/ds/imagenet/val", "/ds/val"))
	before := snapshot(t, ctx, c)
	statBefore, err := c.StatFS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	cl.stop(t)
	oldAddr := cl.addr
	cl.start(t)
	t.Logf("restarted: %s → %s", oldAddr, cl.addr)

	c = cl.admin(t) // the admin token survives
	after := snapshot(t, ctx, c)
	if !reflect.DeepEqual(before, after) {
		for p, n := range before {
			if m, ok := after[p]; !ok || !reflect.DeepEqual(n, m) {
				t.Errorf("%s: before %+v, after %+v", p, n, m)
			}
		}
		for p := range after {
			if _, ok := before[p]; !ok {
				t.Errorf("%s: new after the restart", p)
			}
		}
		t.FailNow()
	}
	if len(before) != 11 {
		t.Fatalf("the tree has %d entries, want 11", len(before))
	}
	if st, err := c.StatFS(ctx); err != nil || st.Inodes != statBefore.Inodes {
		t.Fatalf("statfs after the restart: %+v (%v), before %+v", st, err, statBefore)
	}
	carol := cl.connect(t, userTok)
	if who, err := carol.WhoAmI(ctx); err != nil || who.UID != 2000 || !slices.Equal(who.GIDs, []uint32{2000, 300}) {
		t.Fatalf("carol after the restart: %+v, %v", who, err)
	}
	// New inodes do not reuse old ids.
	fi, err := c.CreateFile(ctx, "/new", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for p, n := range before {
		if n.Ino == fi.Ino() {
			t.Fatalf("new file got inode %d of %s", fi.Ino(), p)
		}
	}
}

// TestAuthentication: a wrong token and no token can do nothing.
func TestAuthentication(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	admin := cl.admin(t)
	if err := admin.Mkdir(ctx, "/keep", 0o755); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, ctx, admin)
	for _, tc := range []struct{ name, token string }{
		{"wrong token", "x" + cl.token[1:]},
		{"garbage token", "not-a-token"},
		{"no token", ""},
	} {
		c, err := libfff.Connect(ctx, libfff.Options{Address: cl.addr, Token: tc.token})
		if err == nil {
			// Connect may only fail on the first call; then nothing works.
			defer c.Close()
			err = c.Mkdir(ctx, "/intruder", 0o777)
			if err == nil {
				t.Fatalf("%s: mkdir succeeded", tc.name)
			}
		}
		if !errors.Is(err, proto.ErrUnauthenticated) {
			t.Fatalf("%s: %v, want Unauthenticated", tc.name, err)
		}
	}
	if after := snapshot(t, ctx, admin); !reflect.DeepEqual(before, after) {
		t.Fatalf("the tree changed: %v → %v", before, after)
	}
}

// TestUserPermissions: a user made by the admin works in a directory it
// owns and is refused elsewhere.
func TestUserPermissions(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	admin := cl.admin(t)
	tok, err := admin.UserAdd(ctx, "alice", 1000, []uint32{1000}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		admin.MkdirAll(ctx, "/home/alice", 0o755),
		admin.Chown(ctx, "/home/alice", 1000, 1000),
		admin.Mkdir(ctx, "/private", 0o700),
		admin.Mkdir(ctx, "/shared", 0o777|fs.ModeSticky),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	if _, err := admin.CreateFile(ctx, "/private/secret", 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateFile(ctx, "/shared/admins", 0o644); err != nil {
		t.Fatal(err)
	}
	alice := cl.connect(t, tok)
	who, err := alice.WhoAmI(ctx)
	if err != nil || who.UID != 1000 || who.Admin || who.Name != "alice" {
		t.Fatalf("alice = %+v, %v", who, err)
	}

	// In her own directory: anything.
	fi, err := alice.CreateFile(ctx, "/home/alice/mine", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Inode.UID != 1000 || fi.Inode.GID != 1000 {
		t.Fatalf("alice's file belongs to %d:%d", fi.Inode.UID, fi.Inode.GID)
	}
	if err := alice.MkdirAll(ctx, "/home/alice/a/b", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := alice.Rename(ctx, "/home/alice/mine", "/home/alice/a/b/mine"); err != nil {
		t.Fatal(err)
	}
	if err := alice.Chmod(ctx, "/home/alice/a/b/mine", 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.CreateFile(ctx, "/shared/alices", 0o644); err != nil {
		t.Fatal(err)
	}

	// Elsewhere: refused, with EACCES (fs.ErrPermission) for the
	// permission bits and EPERM for owner-only operations.
	denied := func(what string, err error) {
		t.Helper()
		wantErr(t, what, err, proto.ErrPermissionDenied, fs.ErrPermission)
	}
	_, err = alice.CreateFile(ctx, "/home/x", 0o644)
	denied("create in a directory she does not own", err)
	denied("mkdir in /", alice.Mkdir(ctx, "/alice", 0o755))
	denied("mkdir in /home", alice.Mkdir(ctx, "/home/bob", 0o755))
	denied("symlink in /home", alice.Symlink(ctx, "x", "/home/l"))
	denied("rename out of /home", alice.Rename(ctx, "/home/alice", "/home/alice2"))
	denied("remove from /", alice.RemoveAll(ctx, "/private"))
	_, err = alice.Stat(ctx, "/private/secret")
	denied("stat in a 0700 directory", err)
	_, err = alice.ReadDir(ctx, "/private")
	denied("readdir of a 0700 directory", err)
	denied("truncate another's file", alice.Truncate(ctx, "/shared/admins", 0))
	wantErr(t, "chmod another's directory", alice.Chmod(ctx, "/home", 0o777), proto.ErrNotPermitted, fs.ErrPermission)
	wantErr(t, "give her file away", alice.Chown(ctx, "/home/alice/a/b/mine", 0, -1), proto.ErrNotPermitted, fs.ErrPermission)
	wantErr(t, "remove another's file in a sticky directory", alice.Remove(ctx, "/shared/admins"), proto.ErrNotPermitted, fs.ErrPermission)
	if _, err := alice.UserList(ctx); !errors.Is(err, proto.ErrNotPermitted) {
		t.Fatalf("alice lists users: %v", err)
	}
	if _, err := alice.UserAdd(ctx, "mallory", 0, nil, true); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("alice adds a user: %v", err)
	}

	// Removing the user closes the door for new connections.
	if err := admin.UserRemove(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := libfff.Connect(ctx, libfff.Options{Address: cl.addr, Token: tok}); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("removed user's token: %v", err)
	}
	users, err := admin.UserList(ctx)
	if err != nil || len(users) != 1 || users[0].Name != "admin" {
		t.Fatalf("users = %+v, %v", users, err)
	}
}
