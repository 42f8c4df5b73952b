package meta

import (
	"testing"

	"fff/internal/proto"
)

func TestAccessMatrix(t *testing.T) {
	// A file owned by alice, group 500 (bob is in it, carol is not).
	for _, c := range []struct {
		mode uint32
		who  Identity
		want uint32 // bits allowed
	}{
		{0o640, alice, permR | permW},
		{0o640, bob, permR},
		{0o640, carol, 0},
		{0o604, carol, permR},
		{0o460, bob, permR | permW}, // the group's bits, though others' are empty
		{0o046, alice, 0},           // the owner gets the owner's bits only
		{0o000, Root, permR | permW},
		{0o100, Root, permR | permW | permX},
		{0o777, Identity{UID: 0}, permR | permW | permX}, // uid 0 is root without the admin flag
	} {
		n := &proto.Inode{Type: proto.TypeFile, Mode: c.mode, UID: alice.UID, GID: 500}
		for _, bit := range []uint32{permR, permW, permX} {
			err := access(c.who, n, bit, "test")
			if ok := err == nil; ok != (c.want&bit != 0) {
				t.Errorf("mode %o uid %d bit %d: allowed=%v, want %v", c.mode, c.who.UID, bit, ok, c.want&bit != 0)
			}
		}
	}
}

func TestPermissions(t *testing.T) {
	s := newMem(t)
	// Non-root users cannot write into the root-owned 0755 root directory.
	_, err := s.Mkdir(ctx, alice, proto.RootIno, "x", 0o755)
	wantCode(t, err, proto.EACCES)
	_, err = s.Create(ctx, alice, proto.RootIno, "x", 0o644, 0)
	wantCode(t, err, proto.EACCES)
	_, err = s.Symlink(ctx, alice, proto.RootIno, "x", "y")
	wantCode(t, err, proto.EACCES)

	// alice's home: 0750, group 500.
	home := mkdir(t, s, Root, proto.RootIno, "alice", 0o750)
	must(s.SetAttr(ctx, Root, home.Ino, proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: alice.UID, GID: 500}))(t)
	f := must(s.Create(ctx, alice, home.Ino, "f", 0o640, proto.OpenExcl))(t).Inode
	if f.GID != 1000 {
		t.Fatalf("new file's group = %d, want alice's primary group", f.GID)
	}
	must(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 500}))(t)

	errOf := func(_ any, err error) error { return err }
	cases := []struct {
		name string
		err  error
		want proto.Code
	}{
		// bob: group member (r-x on the dir, r-- on the file).
		{"group lookup", errOf(s.Lookup(ctx, bob, home.Ino, "f")), proto.OK},
		{"group readdir", errOf(s.Lookup(ctx, bob, home.Ino, ".")), proto.OK},
		{"group create", errOf(s.Create(ctx, bob, home.Ino, "g", 0o644, 0)), proto.EACCES},
		{"group mkdir", errOf(s.Mkdir(ctx, bob, home.Ino, "g", 0o755)), proto.EACCES},
		{"group unlink", s.Unlink(ctx, bob, home.Ino, "f"), proto.EACCES},
		{"group rename", s.Rename(ctx, bob, home.Ino, "f", home.Ino, "g"), proto.EACCES},
		{"group link", errOf(s.Link(ctx, bob, f.Ino, home.Ino, "g")), proto.EACCES},
		{"group open read", errOf(s.Open(ctx, bob, f.Ino, proto.OpenRead)), proto.OK},
		{"group open write", errOf(s.Open(ctx, bob, f.Ino, proto.OpenWrite)), proto.EACCES},
		{"group truncate", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetSize})), proto.EACCES},
		{"group open trunc", errOf(s.Open(ctx, bob, f.Ino, proto.OpenRead|proto.OpenTrunc)), proto.EACCES},
		{"group chmod", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetMode, Mode: 0o777})), proto.EPERM},
		{"group utimes", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetMtime, Mtime: 1})), proto.EPERM},
		{"group touch", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetMtimeNow})), proto.EACCES},
		// carol: other (no access to the dir at all).
		{"other lookup", errOf(s.Lookup(ctx, carol, home.Ino, "f")), proto.EACCES},
		{"other readdir", errOf3(s.ReadDir(ctx, carol, home.Ino, "", 0, false)), proto.EACCES},
		{"other statpath", errOf(s.StatPath(ctx, carol, "/alice/f", true)), proto.EACCES},
		{"other create", errOf(s.Create(ctx, carol, home.Ino, "g", 0o644, 0)), proto.EACCES},
		{"other open", errOf(s.Open(ctx, carol, f.Ino, proto.OpenRead)), proto.EACCES},
		// alice: owner.
		{"owner chown", errOf(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetUID, UID: bob.UID})), proto.EPERM},
		{"owner chgrp foreign", errOf(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 1001})), proto.EPERM},
		{"owner chgrp own group", errOf(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 500})), proto.OK},
		{"owner chown to self", errOf(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetUID, UID: alice.UID})), proto.OK},
		{"owner chmod", errOf(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetMode, Mode: 0o660})), proto.OK},
		{"owner readdir", errOf3(s.ReadDir(ctx, alice, home.Ino, "", 0, true)), proto.OK},
		// Now group-writable: bob may write and touch, not set explicit times.
		{"group open write 660", errOf(s.Open(ctx, bob, f.Ino, proto.OpenRead|proto.OpenWrite)), proto.OK},
		{"group touch 660", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetMtimeNow | proto.SetAtimeNow})), proto.OK},
		{"group utimes 660", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetAtime})), proto.EPERM},
		{"group truncate 660", errOf(s.SetAttr(ctx, bob, f.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 3})), proto.OK},
		// Root passes everything.
		{"root create", errOf(s.Create(ctx, Root, home.Ino, "r", 0o600, 0)), proto.OK},
		{"root open 000", errOf(s.Open(ctx, Root, f.Ino, proto.OpenRead|proto.OpenWrite)), proto.OK},
		{"root chown", errOf(s.SetAttr(ctx, Root, f.Ino, proto.SetAttr{Valid: proto.SetUID, UID: carol.UID})), proto.OK},
		{"non-owner non-root chown", errOf(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 500})), proto.EPERM},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.want) })
	}
}

func errOf3(_ any, _ bool, err error) error { return err }

func TestSticky(t *testing.T) {
	s := newMem(t)
	tmp := mkdir(t, s, Root, proto.RootIno, "tmp", 0o1777)
	must(s.Create(ctx, alice, tmp.Ino, "a", 0o666, 0))(t)
	must(s.Mkdir(ctx, alice, tmp.Ino, "ad", 0o777))(t)
	must(s.Create(ctx, bob, tmp.Ino, "b", 0o666, 0))(t)
	wantCode(t, s.Unlink(ctx, bob, tmp.Ino, "a"), proto.EPERM)
	wantCode(t, s.Rmdir(ctx, bob, tmp.Ino, "ad"), proto.EPERM)
	wantCode(t, s.Rename(ctx, bob, tmp.Ino, "a", tmp.Ino, "c"), proto.EPERM)
	wantCode(t, s.Rename(ctx, bob, tmp.Ino, "b", tmp.Ino, "a"), proto.EPERM) // replacing alice's file
	wantCode(t, s.Rename(ctx, alice, tmp.Ino, "a", tmp.Ino, "a2"), proto.OK)
	wantCode(t, s.Unlink(ctx, bob, tmp.Ino, "b"), proto.OK)
	wantCode(t, s.Unlink(ctx, Root, tmp.Ino, "a2"), proto.OK)
	// Without the sticky bit anyone with write permission may remove.
	must(s.SetAttr(ctx, Root, tmp.Ino, proto.SetAttr{Valid: proto.SetMode, Mode: 0o777}))(t)
	wantCode(t, s.Rmdir(ctx, bob, tmp.Ino, "ad"), proto.OK)
}

func TestSetgidDirectory(t *testing.T) {
	s := newMem(t)
	d := mkdir(t, s, Root, proto.RootIno, "shared", 0o2777)
	must(s.SetAttr(ctx, Root, d.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 777}))(t)
	f := create(t, s, alice, d.Ino, "f", 0o644)
	sub := mkdir(t, s, alice, d.Ino, "sub", 0o755)
	if f.GID != 777 || sub.GID != 777 || sub.Mode&proto.ModeSetgid == 0 {
		t.Fatalf("setgid dir: file gid %d, subdir gid %d mode %o", f.GID, sub.GID, sub.Mode)
	}
}

func TestRenameDirNeedsWriteOnIt(t *testing.T) {
	s := newMem(t)
	a := mkdir(t, s, Root, proto.RootIno, "a", 0o777)
	b := mkdir(t, s, Root, proto.RootIno, "b", 0o777)
	mkdir(t, s, Root, a.Ino, "ro", 0o555) // root's, not writable by alice
	wantCode(t, s.Rename(ctx, alice, a.Ino, "ro", b.Ino, "ro"), proto.EACCES)
	wantCode(t, s.Rename(ctx, alice, a.Ino, "ro", a.Ino, "ro2"), proto.OK) // same parent: ".." unchanged
}
