package meta

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
)

func TestInitIdempotent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		d := mkdir(t, s, Root, proto.RootIno, "d", 0o755)
		for range 3 {
			if err := New(db, Options{}).Init(ctx); err != nil {
				t.Fatal(err)
			}
		}
		root := must(s.Stat(ctx, Root, proto.RootIno))(t)
		if root.Type != proto.TypeDir || root.Mode != 0o755 || root.UID != 0 || root.Parent != proto.RootIno {
			t.Fatalf("root = %+v", root)
		}
		if got := names(t, s, proto.RootIno); !slices.Equal(got, []string{"d"}) {
			t.Fatalf("root lists %v after re-Init", got)
		}
		if d.Ino < firstIno {
			t.Fatalf("first inode id %d is reserved", d.Ino)
		}
		st := must(s.StatFS(ctx, Root))(t)
		if st.Inodes != 2 {
			t.Fatalf("statfs inodes = %d, want 2", st.Inodes)
		}
	})
}

func TestOperations(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		home := mkdir(t, s, Root, proto.RootIno, "home", 0o755)
		if home.Parent != proto.RootIno || home.Nlink != 1 || home.DirLayout == nil {
			t.Fatalf("mkdir = %+v", home)
		}
		if _, err := s.SetAttr(ctx, Root, home.Ino, proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: alice.UID, GID: 1000}); err != nil {
			t.Fatal(err)
		}
		// Create with a write session, report, close.
		o := must(s.Create(ctx, alice, home.Ino, "a.txt", 0o644, proto.OpenWrite|proto.OpenExcl))(t)
		if !o.Created || o.Session.ID == 0 || o.Inode.UID != alice.UID || o.Inode.GID != 1000 || o.Inode.Mode != 0o644 || o.Inode.Nlink != 1 {
			t.Fatalf("create = %+v", o)
		}
		if l := o.Inode.Layout; l == nil || l.ChunkSize != DefaultChunkSize || l.Stripe != 8 || len(l.Chains) != 8 {
			t.Fatalf("layout = %+v", o.Inode.Layout)
		}
		n := must(s.ReportLength(ctx, alice, o.Session, 100, true))(t)
		if n.Size != 100 {
			t.Fatalf("size after report = %d", n.Size)
		}
		n = must(s.Close(ctx, alice, o.Session, 50, true))(t)
		if n.Size != 100 {
			t.Fatalf("size after smaller close = %d, want the max 100", n.Size)
		}
		_, err := s.Close(ctx, alice, o.Session, 50, false)
		wantCode(t, err, proto.EBADF)

		// Lookup, Stat, StatPath agree.
		l := must(s.Lookup(ctx, alice, home.Ino, "a.txt"))(t)
		st := must(s.Stat(ctx, alice, l.Ino))(t)
		sp := must(s.StatPath(ctx, alice, "/home/a.txt", true))(t)
		if l.Ino != o.Inode.Ino || st.Size != 100 || sp.Ino != l.Ino {
			t.Fatalf("lookup %+v stat %+v statpath %+v", l, st, sp)
		}
		if dot := must(s.Lookup(ctx, alice, home.Ino, "."))(t); dot.Ino != home.Ino {
			t.Fatal("lookup . is not the directory")
		}
		if dd := must(s.Lookup(ctx, alice, home.Ino, ".."))(t); dd.Ino != proto.RootIno {
			t.Fatal("lookup .. is not the parent")
		}

		// Open existing for read, and through Create without Excl.
		ro := must(s.Open(ctx, alice, l.Ino, proto.OpenRead))(t)
		if ro.Session.ID != 0 || ro.Inode.Size != 100 {
			t.Fatalf("read open = %+v", ro)
		}
		again := must(s.Create(ctx, alice, home.Ino, "a.txt", 0o600, proto.OpenRead))(t)
		if again.Created || again.Inode.Ino != l.Ino {
			t.Fatalf("create of existing = %+v", again)
		}
		// O_TRUNC through Create.
		tr := must(s.Create(ctx, alice, home.Ino, "a.txt", 0o600, proto.OpenWrite|proto.OpenTrunc))(t)
		if tr.Inode.Size != 0 || tr.Inode.TruncVer != 1 || tr.Session.ID == 0 {
			t.Fatalf("create+trunc = %+v", tr)
		}
		must(s.Close(ctx, alice, tr.Session, 7, true))(t)

		// Symlink, readlink.
		sl := must(s.Symlink(ctx, alice, home.Ino, "link", "a.txt"))(t)
		if sl.Type != proto.TypeSymlink || sl.Size != 5 || sl.Mode != 0o777 {
			t.Fatalf("symlink = %+v", sl)
		}
		if tgt := must(s.Readlink(ctx, alice, sl.Ino))(t); tgt != "a.txt" {
			t.Fatalf("readlink = %q", tgt)
		}
		if f := must(s.StatPath(ctx, alice, "/home/link", true))(t); f.Ino != l.Ino {
			t.Fatal("statpath does not follow the last symlink")
		}
		if f := must(s.StatPath(ctx, alice, "/home/link", false))(t); f.Ino != sl.Ino {
			t.Fatal("statpath without follow followed")
		}

		// Hard link.
		hl := must(s.Link(ctx, alice, l.Ino, home.Ino, "b.txt"))(t)
		if hl.Nlink != 2 {
			t.Fatalf("nlink after link = %d", hl.Nlink)
		}
		if err := s.Unlink(ctx, alice, home.Ino, "a.txt"); err != nil {
			t.Fatal(err)
		}
		if n := must(s.Stat(ctx, alice, l.Ino))(t); n.Nlink != 1 || n.Size != 7 {
			t.Fatalf("after unlinking one link: %+v", n)
		}
		if len(gcRecords(t, s)) != 1 { // the truncate of a.txt
			t.Fatalf("gc records: %+v", gcRecords(t, s))
		}

		// ReadDir with and without plus.
		es, more, err := s.ReadDir(ctx, alice, home.Ino, "", 0, true)
		if err != nil || more || len(es) != 2 {
			t.Fatalf("readdir = %+v %v %v", es, more, err)
		}
		if es[0].Name != "b.txt" || es[0].Type != proto.TypeFile || es[0].Attr == nil || es[0].Attr.Size != 7 ||
			es[1].Name != "link" || es[1].Type != proto.TypeSymlink || es[1].Attr.Target != "a.txt" {
			t.Fatalf("readdir plus = %+v %+v", es[0], es[1])
		}

		// Unlink the rest; rmdir.
		wantCode(t, s.Rmdir(ctx, Root, proto.RootIno, "home"), proto.ENOTEMPTY)
		for _, name := range []string{"b.txt", "link"} {
			if err := s.Unlink(ctx, alice, home.Ino, name); err != nil {
				t.Fatal(err)
			}
		}
		_, err = s.Stat(ctx, alice, l.Ino)
		wantCode(t, err, proto.ENOENT)
		if err := s.Rmdir(ctx, Root, proto.RootIno, "home"); err != nil {
			t.Fatal(err)
		}
		_, err = s.Stat(ctx, alice, home.Ino)
		wantCode(t, err, proto.ENOENT)
		if st := must(s.StatFS(ctx, Root))(t); st.Inodes != 1 {
			t.Fatalf("statfs inodes = %d, want 1", st.Inodes)
		}
	})
}

func TestReadDirPaging(t *testing.T) {
	s := newMem(t)
	d := mkdir(t, s, Root, proto.RootIno, "d", 0o755)
	var want []string
	for i := range 50 {
		name := fmt.Sprintf("f%03d", i)
		want = append(want, name)
		if i%5 == 0 {
			mkdir(t, s, Root, d.Ino, name, 0o755)
		} else {
			create(t, s, Root, d.Ino, name, 0o644)
		}
	}
	mkdir(t, s, Root, proto.RootIno, "e", 0o755) // an entry of another directory after d's
	if got := names(t, s, d.Ino); !slices.Equal(got, want) {
		t.Fatalf("paged listing = %v", got)
	}
	es, more, err := s.ReadDir(ctx, Root, d.Ino, "f047", 10, false)
	if err != nil || more || len(es) != 2 || es[0].Name != "f048" {
		t.Fatalf("after f047: %+v %v %v", es, more, err)
	}
	es, more, _ = s.ReadDir(ctx, Root, d.Ino, "", 50, false)
	if more || len(es) != 50 {
		t.Fatalf("exact page: %d %v", len(es), more)
	}
}

func TestErrors(t *testing.T) {
	s := newMem(t)
	d := mkdir(t, s, Root, proto.RootIno, "d", 0o755)
	f := create(t, s, Root, d.Ino, "f", 0o644)
	sub := mkdir(t, s, Root, d.Ino, "sub", 0o755)
	create(t, s, Root, sub.Ino, "x", 0o644)
	empty := mkdir(t, s, Root, d.Ino, "empty", 0o755)
	sl := must(s.Symlink(ctx, Root, d.Ino, "sl", "f"))(t)
	long := strings.Repeat("n", MaxNameLen+1)
	errOf := func(_ any, err error) error { return err }
	errOf3 := func(_ any, _ bool, err error) error { return err }

	cases := []struct {
		name string
		err  error
		want proto.Code
	}{
		{"lookup missing", errOf(s.Lookup(ctx, Root, d.Ino, "nope")), proto.ENOENT},
		{"lookup in file", errOf(s.Lookup(ctx, Root, f.Ino, "x")), proto.ENOTDIR},
		{"lookup in missing dir", errOf(s.Lookup(ctx, Root, 99999, "x")), proto.ENOENT},
		{"stat missing", errOf(s.Stat(ctx, Root, 99999)), proto.ENOENT},
		{"mkdir existing", errOf(s.Mkdir(ctx, Root, d.Ino, "f", 0o755)), proto.EEXIST},
		{"mkdir in file", errOf(s.Mkdir(ctx, Root, f.Ino, "x", 0o755)), proto.ENOTDIR},
		{"mkdir in missing", errOf(s.Mkdir(ctx, Root, 99999, "x", 0o755)), proto.ENOENT},
		{"mkdir dot", errOf(s.Mkdir(ctx, Root, d.Ino, ".", 0o755)), proto.EINVAL},
		{"mkdir dotdot", errOf(s.Mkdir(ctx, Root, d.Ino, "..", 0o755)), proto.EINVAL},
		{"mkdir empty name", errOf(s.Mkdir(ctx, Root, d.Ino, "", 0o755)), proto.EINVAL},
		{"mkdir slash", errOf(s.Mkdir(ctx, Root, d.Ino, "a/b", 0o755)), proto.EINVAL},
		{"mkdir nul", errOf(s.Mkdir(ctx, Root, d.Ino, "a\x00b", 0o755)), proto.EINVAL},
		{"mkdir long name", errOf(s.Mkdir(ctx, Root, d.Ino, long, 0o755)), proto.ENAMETOOLONG},
		{"create excl existing", errOf(s.Create(ctx, Root, d.Ino, "f", 0o644, proto.OpenExcl)), proto.EEXIST},
		{"create over dir", errOf(s.Create(ctx, Root, d.Ino, "sub", 0o644, proto.OpenWrite)), proto.EISDIR},
		{"create over symlink", errOf(s.Create(ctx, Root, d.Ino, "sl", 0o644, 0)), proto.EEXIST},
		{"create long name", errOf(s.Create(ctx, Root, d.Ino, long, 0o644, 0)), proto.ENAMETOOLONG},
		{"create in file", errOf(s.Create(ctx, Root, f.Ino, "x", 0o644, 0)), proto.ENOTDIR},
		{"unlink dir", s.Unlink(ctx, Root, d.Ino, "sub"), proto.EISDIR},
		{"unlink missing", s.Unlink(ctx, Root, d.Ino, "nope"), proto.ENOENT},
		{"rmdir file", s.Rmdir(ctx, Root, d.Ino, "f"), proto.ENOTDIR},
		{"rmdir non-empty", s.Rmdir(ctx, Root, d.Ino, "sub"), proto.ENOTEMPTY},
		{"rmdir missing", s.Rmdir(ctx, Root, d.Ino, "nope"), proto.ENOENT},
		{"rmdir dot", s.Rmdir(ctx, Root, d.Ino, "."), proto.EINVAL},
		{"readlink file", errOf(s.Readlink(ctx, Root, f.Ino)), proto.EINVAL},
		{"symlink empty target", errOf(s.Symlink(ctx, Root, d.Ino, "s2", "")), proto.ENOENT},
		{"symlink long target", errOf(s.Symlink(ctx, Root, d.Ino, "s2", strings.Repeat("t", MaxSymlinkLen+1))), proto.ENAMETOOLONG},
		{"symlink existing", errOf(s.Symlink(ctx, Root, d.Ino, "f", "x")), proto.EEXIST},
		{"link dir", errOf(s.Link(ctx, Root, sub.Ino, d.Ino, "l")), proto.EPERM},
		{"link existing", errOf(s.Link(ctx, Root, f.Ino, d.Ino, "sub")), proto.EEXIST},
		{"link missing", errOf(s.Link(ctx, Root, 99999, d.Ino, "l")), proto.ENOENT},
		{"open dir for write", errOf(s.Open(ctx, Root, sub.Ino, proto.OpenWrite)), proto.EISDIR},
		{"open symlink", errOf(s.Open(ctx, Root, sl.Ino, proto.OpenRead)), proto.ELOOP},
		{"truncate dir", errOf(s.SetAttr(ctx, Root, sub.Ino, proto.SetAttr{Valid: proto.SetSize})), proto.EISDIR},
		{"truncate symlink", errOf(s.SetAttr(ctx, Root, sl.Ino, proto.SetAttr{Valid: proto.SetSize})), proto.EINVAL},
		{"readdir file", errOf3(s.ReadDir(ctx, Root, f.Ino, "", 0, false)), proto.ENOTDIR},
		{"statpath missing", errOf(s.StatPath(ctx, Root, "/d/nope", true)), proto.ENOENT},
		{"statpath through file", errOf(s.StatPath(ctx, Root, "/d/f/x", true)), proto.ENOTDIR},
		{"rename missing", s.Rename(ctx, Root, d.Ino, "nope", d.Ino, "x"), proto.ENOENT},
		{"rename into file", s.Rename(ctx, Root, d.Ino, "f", f.Ino, "x"), proto.ENOTDIR},
		{"set layout of file", errOf(s.SetLayout(ctx, Root, f.Ino, proto.DirLayout{})), proto.ENOTDIR},
		{"set layout bad chunk", errOf(s.SetLayout(ctx, Root, d.Ino, proto.DirLayout{ChunkSize: 3 << 20})), proto.EINVAL},
		{"set layout small chunk", errOf(s.SetLayout(ctx, Root, d.Ino, proto.DirLayout{ChunkSize: 1024})), proto.EINVAL},
		{"set layout unknown table", errOf(s.SetLayout(ctx, Root, d.Ino, proto.DirLayout{ChainTable: 9})), proto.EINVAL},
		{"set layout huge stripe", errOf(s.SetLayout(ctx, Root, d.Ino, proto.DirLayout{Stripe: MaxStripe + 1})), proto.EINVAL},
		{"close unknown session", errOf(s.Close(ctx, Root, proto.Session{Ino: f.Ino, ID: 42}, 0, false)), proto.EBADF},
		{"report unknown session", errOf(s.ReportLength(ctx, Root, proto.Session{Ino: f.Ino, ID: 42}, 0, false)), proto.EBADF},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.err, c.want) })
	}
	// Nothing above changed the tree.
	if got := names(t, s, d.Ino); !slices.Equal(got, []string{"empty", "f", "sl", "sub"}) {
		t.Fatalf("tree changed: %v", got)
	}
	_ = empty
}

func TestStatPath(t *testing.T) {
	s := newMem(t)
	a := mkdir(t, s, Root, proto.RootIno, "a", 0o755)
	b := mkdir(t, s, Root, a.Ino, "b", 0o755)
	f := create(t, s, Root, b.Ino, "f", 0o644)
	must(s.Symlink(ctx, Root, a.Ino, "rel", "b"))(t)          // /a/rel -> b
	must(s.Symlink(ctx, Root, proto.RootIno, "abs", "/a"))(t) // /abs -> /a
	must(s.Symlink(ctx, Root, b.Ino, "up", "../rel/f"))(t)    // /a/b/up -> ../rel/f
	must(s.Symlink(ctx, Root, proto.RootIno, "loop1", "loop2"))(t)
	must(s.Symlink(ctx, Root, proto.RootIno, "loop2", "loop1"))(t)
	must(s.Symlink(ctx, Root, proto.RootIno, "dangling", "/nope"))(t)
	must(s.Symlink(ctx, Root, proto.RootIno, "self", "self/x"))(t)

	cases := []struct {
		path   string
		follow bool
		ino    uint64
		code   proto.Code
	}{
		{"", true, proto.RootIno, proto.OK},
		{"/", true, proto.RootIno, proto.OK},
		{"/a/b/f", true, f.Ino, proto.OK},
		{"a/b/f", true, f.Ino, proto.OK},
		{"//a/./b//f", true, f.Ino, proto.OK},
		{"/a/b/../b/f", true, f.Ino, proto.OK},
		{"/../../a", true, a.Ino, proto.OK},
		{"/a/rel/f", true, f.Ino, proto.OK},
		{"/abs/rel/f", true, f.Ino, proto.OK},
		{"/abs/b/up", true, f.Ino, proto.OK},
		{"/abs", true, a.Ino, proto.OK},
		{"/a/rel/..", true, a.Ino, proto.OK},
		{"/loop1", true, 0, proto.ELOOP},
		{"/loop1/x", false, 0, proto.ELOOP},
		{"/self", true, 0, proto.ELOOP},
		{"/dangling", true, 0, proto.ENOENT},
		{"/a/b/f/x", true, 0, proto.ENOTDIR},
		{"/a/" + strings.Repeat("x", 256), true, 0, proto.ENAMETOOLONG},
	}
	for _, c := range cases {
		n, err := s.StatPath(ctx, alice, c.path, c.follow)
		wantCode(t, err, c.code)
		if c.code == proto.OK && n.Ino != c.ino {
			t.Fatalf("%q resolved to %d, want %d", c.path, n.Ino, c.ino)
		}
	}
	// Without follow the last symlink itself is returned.
	if n := must(s.StatPath(ctx, alice, "/loop1", false))(t); n.Type != proto.TypeSymlink {
		t.Fatalf("lstat /loop1 = %+v", n)
	}
	// A directory without x for the caller stops the walk.
	must(s.SetAttr(ctx, Root, a.Ino, proto.SetAttr{Valid: proto.SetMode, Mode: 0o700}))(t)
	_, err := s.StatPath(ctx, alice, "/a/b/f", true)
	wantCode(t, err, proto.EACCES)
	if _, err := s.StatPath(ctx, Root, "/a/b/f", true); err != nil {
		t.Fatal(err)
	}
}

func TestLayouts(t *testing.T) {
	s := newMem(t)
	// Default: table 1 (8 chains), stripe min(8, 16) = 8, 4 MiB chunks.
	seen := map[uint32]int{}
	for i := range 16 {
		n := create(t, s, Root, proto.RootIno, fmt.Sprintf("f%d", i), 0o644)
		l := n.Layout
		if l.ChainTable != 1 || l.ChunkSize != DefaultChunkSize || l.Stripe != 8 || len(l.Chains) != 8 || l.Seed == 0 {
			t.Fatalf("default layout = %+v", l)
		}
		got := slices.Clone(l.Chains)
		slices.Sort(got)
		if !slices.Equal(got, testTables[1]) {
			t.Fatalf("chains %v are not the table's", l.Chains)
		}
		seen[l.ChainOf(0)]++
	}
	if len(seen) < 4 {
		t.Fatalf("chunk 0 of 16 files on only %d chains: %v", len(seen), seen)
	}
	// A large table is capped at MaxStripe, round robin over the files.
	d := mkdir(t, s, Root, proto.RootIno, "wide", 0o755)
	must(s.SetLayout(ctx, Root, d.Ino, proto.DirLayout{ChainTable: 3}))(t)
	used := map[uint32]bool{}
	for i := range 10 {
		n := create(t, s, Root, d.Ino, fmt.Sprintf("f%d", i), 0o644)
		if n.Layout.Stripe != DefaultMaxStripe || n.Layout.ChainTable != 3 {
			t.Fatalf("wide layout = %+v", n.Layout)
		}
		for _, c := range n.Layout.Chains {
			used[c] = true
		}
	}
	if len(used) != 40 {
		t.Fatalf("10 files x 16 chains of a 40-chain table used %d chains", len(used))
	}
	// A policy is inherited by files and copied by new subdirectories.
	p := mkdir(t, s, Root, proto.RootIno, "p", 0o755)
	pol := proto.DirLayout{ChainTable: 2, ChunkSize: 1 << 20, Stripe: 5}
	must(s.SetLayout(ctx, Root, p.Ino, pol))(t)
	c := mkdir(t, s, Root, p.Ino, "child", 0o755)
	if *c.DirLayout != pol {
		t.Fatalf("subdirectory policy = %+v", c.DirLayout)
	}
	for _, dir := range []uint64{p.Ino, c.Ino} {
		n := create(t, s, Root, dir, "f", 0o644)
		if l := n.Layout; l.ChainTable != 2 || l.ChunkSize != 1<<20 || l.Stripe != 2 || len(l.Chains) != 2 {
			t.Fatalf("inherited layout = %+v", l)
		}
	}
	// Changing the parent's policy later does not change the child's.
	must(s.SetLayout(ctx, Root, p.Ino, proto.DirLayout{}))(t)
	if n := create(t, s, Root, c.Ino, "g", 0o644); n.Layout.ChainTable != 2 {
		t.Fatalf("child policy changed with the parent's: %+v", n.Layout)
	}
	// Non-owners may not set a policy.
	_, err := s.SetLayout(ctx, alice, p.Ino, proto.DirLayout{})
	wantCode(t, err, proto.EPERM)

	// Without chain tables files get an empty layout; an empty table is ENOSPC.
	s2 := New(backends[0].open(t), Options{})
	if err := s2.Init(ctx); err != nil {
		t.Fatal(err)
	}
	o := must(s2.Create(ctx, Root, proto.RootIno, "f", 0o644, 0))(t)
	if o.Inode.Layout == nil || o.Inode.Layout.Stripe != 0 || o.Inode.Layout.ChunkSize != DefaultChunkSize {
		t.Fatalf("layout without storage = %+v", o.Inode.Layout)
	}
	s3 := newService(t, backends[0].open(t), Options{ChainTables: StaticChainTables{1: {}}})
	_, err = s3.Create(ctx, Root, proto.RootIno, "f", 0o644, 0)
	wantCode(t, err, proto.ENOSPC)
	// ...but opening an existing file through Create needs no table.
	s4 := newService(t, s2.DB(), Options{ChainTables: StaticChainTables{}})
	if o := must(s4.Create(ctx, Root, proto.RootIno, "f", 0o644, proto.OpenWrite))(t); o.Created {
		t.Fatal("created again")
	}
}

func TestSetAttr(t *testing.T) {
	s := newMem(t)
	f := create(t, s, Root, proto.RootIno, "f", 0o4755)
	must(s.SetAttr(ctx, Root, f.Ino, proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: alice.UID, GID: 1000}))(t)
	n := must(s.Stat(ctx, Root, f.Ino))(t)
	if n.UID != alice.UID || n.GID != 1000 || n.Mode != 0o755 {
		t.Fatalf("after chown: %+v (setuid must be cleared)", n)
	}
	n = must(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetMode | proto.SetAtime | proto.SetMtime, Mode: 0o640, Atime: 1e9, Mtime: 2e9}))(t)
	if n.Mode != 0o640 || n.Atime != 1e9 || n.Mtime != 2e9 || n.Ctime <= 2e9 {
		t.Fatalf("after chmod/utimes: %+v", n)
	}
	n = must(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 500}))(t)
	if n.GID != 500 {
		t.Fatal("owner could not chgrp to its own group")
	}
	n = must(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 1 << 30}))(t)
	if n.Size != 1<<30 || n.TruncVer != 1 {
		t.Fatalf("after extend: %+v", n)
	}
	if len(gcRecords(t, s)) != 0 {
		t.Fatal("an extension queued GC")
	}
	n = must(s.SetAttr(ctx, alice, f.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 10}))(t)
	if n.Size != 10 || n.TruncVer != 2 {
		t.Fatalf("after shrink: %+v", n)
	}
	recs := gcRecords(t, s)
	if len(recs) != 1 || recs[0].Kind != proto.GCTruncate || recs[0].From != 10 || recs[0].Size != 1<<30 || recs[0].ID != (proto.GCID{Ino: f.Ino, Seq: 2}) || recs[0].Obsolete {
		t.Fatalf("gc after shrink: %+v", recs)
	}
}
