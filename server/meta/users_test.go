package meta

import (
	"errors"
	"strings"
	"testing"

	"fff/internal/proto"
)

func TestUsers(t *testing.T) {
	s := newMem(t)
	tok := must(s.EnsureAdmin(ctx))(t)
	if len(tok) != 43 {
		t.Fatalf("admin token %q", tok)
	}
	if again := must(s.EnsureAdmin(ctx))(t); again != "" {
		t.Fatal("EnsureAdmin returned a token twice")
	}
	admin := must(s.Authenticate(ctx, tok))(t)
	if !admin.Admin || admin.UID != 0 || admin.Name != AdminUser || !admin.IsRoot() {
		t.Fatalf("admin identity %+v", admin)
	}

	atok := must(s.AddUser(ctx, admin, "alice", 1000, []uint32{1000, 500}, false))(t)
	if atok == tok {
		t.Fatal("tokens repeat")
	}
	a := must(s.Authenticate(ctx, atok))(t)
	if a.UID != 1000 || len(a.GIDs) != 2 || a.GIDs[1] != 500 || a.Admin || a.IsRoot() {
		t.Fatalf("alice = %+v", a)
	}
	_, err := s.AddUser(ctx, admin, "alice", 1, nil, false)
	wantCode(t, err, proto.EEXIST)
	_, err = s.AddUser(ctx, a, "mallory", 0, nil, true)
	wantCode(t, err, proto.EPERM)
	for _, bad := range []string{"", "a b", "x/y", strings.Repeat("n", 65)} {
		_, err = s.AddUser(ctx, admin, bad, 1, nil, false)
		wantCode(t, err, proto.EINVAL)
	}
	must(s.AddUser(ctx, admin, "ops", 0, nil, true))(t)

	us := must(s.ListUsers(ctx, admin))(t)
	if len(us) != 3 || us[0].Name != "admin" || us[1].Name != "alice" || us[2].Name != "ops" || us[1].UID != 1000 {
		t.Fatalf("users = %+v", us)
	}
	_, err = s.ListUsers(ctx, a)
	wantCode(t, err, proto.EPERM)

	for _, bad := range []string{"", "x", tok + "x", strings.ToUpper(atok)} {
		_, err := s.Authenticate(ctx, bad)
		if !errors.Is(err, proto.ErrUnauthenticated) {
			t.Fatalf("token %q: %v", bad, err)
		}
	}

	// Rotation invalidates the old token.
	ntok := must(s.RotateToken(ctx, admin, "alice"))(t)
	_, err = s.Authenticate(ctx, atok)
	if !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatal("old token still works")
	}
	if id := must(s.Authenticate(ctx, ntok))(t); id.UID != 1000 {
		t.Fatal("new token does not work")
	}
	_, err = s.RotateToken(ctx, admin, "nobody")
	wantCode(t, err, proto.ENOENT)
	_, err = s.RotateToken(ctx, a, "alice")
	wantCode(t, err, proto.EPERM)

	// Removal.
	wantCode(t, s.RemoveUser(ctx, a, "alice"), proto.EPERM)
	wantCode(t, s.RemoveUser(ctx, admin, "nobody"), proto.ENOENT)
	wantCode(t, s.RemoveUser(ctx, admin, "alice"), proto.OK)
	if _, err := s.Authenticate(ctx, ntok); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatal("removed user's token works")
	}
	wantCode(t, s.RemoveUser(ctx, admin, "ops"), proto.OK)
	wantCode(t, s.RemoveUser(ctx, admin, "admin"), proto.EPERM) // the last admin
}

// TestNonRootCannotWriteIntoOthersDirectory is the acceptance
// check, with identities from real tokens.
func TestNonRootCannotWriteIntoOthersDirectory(t *testing.T) {
	s := newMem(t)
	admin := must(s.Authenticate(ctx, must(s.EnsureAdmin(ctx))(t)))(t)
	u1 := must(s.Authenticate(ctx, must(s.AddUser(ctx, admin, "u1", 2001, []uint32{2001}, false))(t)))(t)
	u2 := must(s.Authenticate(ctx, must(s.AddUser(ctx, admin, "u2", 2002, []uint32{2002}, false))(t)))(t)
	home := mkdir(t, s, admin, proto.RootIno, "u1", 0o755)
	must(s.SetAttr(ctx, admin, home.Ino, proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: 2001, GID: 2001}))(t)
	create(t, s, u1, home.Ino, "mine", 0o644)
	_, err := s.Create(ctx, u2, home.Ino, "theirs", 0o644, 0)
	wantCode(t, err, proto.EACCES)
	_, err = s.Mkdir(ctx, u2, home.Ino, "d", 0o755)
	wantCode(t, err, proto.EACCES)
	wantCode(t, s.Unlink(ctx, u2, home.Ino, "mine"), proto.EACCES)
	wantCode(t, s.Rename(ctx, u2, home.Ino, "mine", home.Ino, "x"), proto.EACCES)
	_, err = s.Open(ctx, u2, must(s.Lookup(ctx, u2, home.Ino, "mine"))(t).Ino, proto.OpenWrite)
	wantCode(t, err, proto.EACCES)
	_, err = s.RemoveAll(ctx, u2, proto.RootIno, "u1")
	wantCode(t, err, proto.EACCES)
	create(t, s, admin, home.Ino, "by-admin", 0o644)
}
