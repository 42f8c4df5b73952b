package meta

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
	"fff/server/kv"
)

// reachFixture is a namespace where alice's home /a is 0700 and holds
// objects that by their own modes bob could use: bob is kept out only by
// the search permission of /a, which a path walk would need.
//
//	/a        0700 alice
//	/a/sub    0777 alice   (sub/g 0666 file, sub/e empty dir 0777,
//	                        sub/l symlink, sub/t/u a small tree)
//	/a/bobf   0644 bob     (a file of bob's left in alice's home)
//	/a/bobd   0755 bob     (a directory of bob's there)
//	/pub      0777 root    (where everyone may create)
type reachFixture struct {
	a, sub, g, e, l, bobf, bobd, pub uint64
}

func newReachFixture(t *testing.T, s *Service) reachFixture {
	t.Helper()
	var f reachFixture
	f.a = mkdir(t, s, Root, proto.RootIno, "a", 0o700).Ino
	must(s.SetAttr(ctx, Root, f.a, proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: alice.UID, GID: alice.GIDs[0]}))(t)
	f.sub = mkdir(t, s, alice, f.a, "sub", 0o777).Ino
	f.g = create(t, s, alice, f.sub, "g", 0o666).Ino
	f.e = mkdir(t, s, alice, f.sub, "e", 0o777).Ino
	f.l = must(s.Symlink(ctx, alice, f.sub, "l", "g"))(t).Ino
	tr := mkdir(t, s, alice, f.sub, "t", 0o777).Ino
	create(t, s, alice, tr, "u", 0o666)
	f.bobf = create(t, s, Root, f.a, "bobf", 0o644).Ino
	must(s.SetAttr(ctx, Root, f.bobf, proto.SetAttr{Valid: proto.SetUID, UID: bob.UID}))(t)
	f.bobd = mkdir(t, s, Root, f.a, "bobd", 0o755).Ino
	must(s.SetAttr(ctx, Root, f.bobd, proto.SetAttr{Valid: proto.SetUID, UID: bob.UID}))(t)
	f.pub = mkdir(t, s, Root, proto.RootIno, "pub", 0o777).Ino
	return f
}

// reachCalls is every inode-level call of the Service, each naming an
// object below /a/sub (or /a) by its inode number. A call may make what
// it needs of the caller's own in /pub first.
var reachCalls = []struct {
	name string
	call func(t *testing.T, s *Service, id Identity, f reachFixture) error
	// alice is what alice gets (not the owner of bob's objects); zero: OK.
	alice proto.Code
}{
	{name: "Lookup", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Lookup(ctx, id, f.sub, "g")
		return err
	}},
	{name: "Lookup dotdot", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Lookup(ctx, id, f.sub, "..")
		return err
	}},
	{name: "Stat file", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Stat(ctx, id, f.g)
		return err
	}},
	{name: "Stat directory", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Stat(ctx, id, f.sub)
		return err
	}},
	{name: "Stat symlink", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Stat(ctx, id, f.l)
		return err
	}},
	{name: "ReadDir", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, _, err := s.ReadDir(ctx, id, f.sub, "", 0, false)
		return err
	}},
	{name: "ReadDir plus", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, _, err := s.ReadDir(ctx, id, f.sub, "", 0, true)
		return err
	}},
	{name: "Mkdir", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Mkdir(ctx, id, f.sub, "new", 0o755)
		return err
	}},
	{name: "Create", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Create(ctx, id, f.sub, "new", 0o644, proto.OpenExcl|proto.OpenWrite)
		return err
	}},
	{name: "Create opens existing", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Create(ctx, id, f.sub, "g", 0o644, proto.OpenRead)
		return err
	}},
	{name: "Symlink", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Symlink(ctx, id, f.sub, "new", "g")
		return err
	}},
	{name: "CreateTemp", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.CreateTemp(ctx, id, f.sub, 0o644)
		return err
	}},
	{name: "Publish", call: func(t *testing.T, s *Service, id Identity, f reachFixture) error {
		o := must(s.CreateTemp(ctx, id, f.pub, 0o644))(t)
		_, err := s.Publish(ctx, id, proto.MetaPublishReq{Session: o.Session, Parent: f.sub, Name: "new"})
		return err
	}},
	{name: "Publish replacing", call: func(t *testing.T, s *Service, id Identity, f reachFixture) error {
		o := must(s.CreateTemp(ctx, id, f.pub, 0o644))(t)
		_, err := s.Publish(ctx, id, proto.MetaPublishReq{Session: o.Session, Parent: f.sub, Name: "g"})
		return err
	}},
	{name: "Unlink", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		return s.Unlink(ctx, id, f.sub, "g")
	}},
	{name: "Rmdir", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		return s.Rmdir(ctx, id, f.sub, "e")
	}},
	{name: "RemoveAll", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.RemoveAll(ctx, id, f.sub, "t")
		return err
	}},
	{name: "Rename out of", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		return s.Rename(ctx, id, f.sub, "g", f.pub, "g")
	}},
	{name: "Rename into", call: func(t *testing.T, s *Service, id Identity, f reachFixture) error {
		create(t, s, id, f.pub, "mine", 0o644)
		return s.Rename(ctx, id, f.pub, "mine", f.sub, "mine")
	}},
	{name: "Rename within", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		return s.Rename(ctx, id, f.sub, "g", f.sub, "g2")
	}},
	{name: "Link out of", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Link(ctx, id, f.g, f.pub, "g")
		return err
	}},
	{name: "Link into", call: func(t *testing.T, s *Service, id Identity, f reachFixture) error {
		mine := create(t, s, id, f.pub, "mine", 0o644)
		_, err := s.Link(ctx, id, mine.Ino, f.sub, "mine")
		return err
	}},
	{name: "SetAttr truncate", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.SetAttr(ctx, id, f.g, proto.SetAttr{Valid: proto.SetSize, Size: 1})
		return err
	}},
	{name: "SetAttr touch", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.SetAttr(ctx, id, f.g, proto.SetAttr{Valid: proto.SetMtimeNow})
		return err
	}},
	{name: "SetAttr chmod", alice: proto.EPERM, call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.SetAttr(ctx, id, f.bobf, proto.SetAttr{Valid: proto.SetMode, Mode: 0o666})
		return err
	}},
	{name: "SetLayout", alice: proto.EPERM, call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.SetLayout(ctx, id, f.bobd, proto.DirLayout{Stripe: 2})
		return err
	}},
	{name: "Readlink", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Readlink(ctx, id, f.l)
		return err
	}},
	{name: "Open read", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Open(ctx, id, f.g, proto.OpenRead)
		return err
	}},
	{name: "Open write", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Open(ctx, id, f.g, proto.OpenRead|proto.OpenWrite)
		return err
	}},
	{name: "Open bob's file", alice: proto.EACCES, call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Open(ctx, id, f.bobf, proto.OpenWrite)
		return err
	}},
	{name: "Access read", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Access(ctx, id, f.g, proto.OpenRead)
		return err
	}},
	{name: "Access write", call: func(_ *testing.T, s *Service, id Identity, f reachFixture) error {
		_, err := s.Access(ctx, id, f.g, proto.OpenWrite|proto.OpenTrunc)
		return err
	}},
}

// TestInodeCallsNeedReachability: every inode-level call of bob on an
// object inside alice's 0700 home is refused with EACCES, as the path
// walk to it would be; the same call succeeds for alice, for root, and
// for bob once the home is 0755.
func TestInodeCallsNeedReachability(t *testing.T) {
	cases := []struct {
		who  string
		id   Identity
		home uint32
	}{
		{"bob, home 0700", bob, 0o700},
		{"alice", alice, 0o700},
		{"root", Root, 0o700},
		{"bob, home 0755", bob, 0o755},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, rc := range reachCalls {
				for _, c := range cases {
					t.Run(rc.name+"/"+c.who, func(t *testing.T) {
						s := newService(t, b.open(t), Options{})
						f := newReachFixture(t, s)
						if c.home != 0o700 {
							must(s.SetAttr(ctx, Root, f.a, proto.SetAttr{Valid: proto.SetMode, Mode: c.home}))(t)
						}
						want := proto.OK
						switch {
						case c.id.UID == bob.UID && c.home == 0o700:
							want = proto.EACCES
						case c.id.UID == alice.UID:
							want = rc.alice
						}
						wantCode(t, rc.call(t, s, c.id, f), want)
						checkLinks(t, s)
					})
				}
			}
		})
	}
}

// checkLinks fails t if the namespace's Links disagree with its entries.
func checkLinks(t testing.TB, s *Service) {
	t.Helper()
	problems, _, err := CheckRecords(ctx, s.db)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("fffd check: %v", p)
	}
}

// rawInode reads inode ino as stored, Links included.
func rawInode(t testing.TB, s *Service, ino uint64) proto.Inode {
	t.Helper()
	var n *proto.Inode
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		var err error
		n, err = loadInode(tx, ino)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return *n
}

func wantLinks(t testing.TB, s *Service, ino uint64, want ...uint64) {
	t.Helper()
	got := slices.Sorted(slices.Values(rawInode(t, s, ino).Links))
	if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("inode %d: links %v, want %v", ino, got, want)
	}
}

// TestReachLinks follows Links and reachability through hard links,
// renames, unlinks and replacements, step by step: bob may stat the file
// exactly when one of its names is in a directory he can reach.
func TestReachLinks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		f := newReachFixture(t, s)
		g := f.g
		steps := []struct {
			name  string
			do    func() error
			links []uint64 // of g
			bob   proto.Code
		}{
			{"created in sub", func() error { return nil }, []uint64{f.sub}, proto.EACCES},
			{"linked into pub", func() error { _, err := s.Link(ctx, alice, g, f.pub, "g"); return err }, []uint64{f.sub, f.pub}, proto.OK},
			{"second name in sub", func() error { _, err := s.Link(ctx, alice, g, f.sub, "g2"); return err }, []uint64{f.sub, f.sub, f.pub}, proto.OK},
			{"pub name removed", func() error { return s.Unlink(ctx, alice, f.pub, "g") }, []uint64{f.sub, f.sub}, proto.EACCES},
			{"one of two names in sub removed", func() error { return s.Unlink(ctx, alice, f.sub, "g2") }, []uint64{f.sub}, proto.EACCES},
			{"renamed to pub", func() error { return s.Rename(ctx, alice, f.sub, "g", f.pub, "g") }, []uint64{f.pub}, proto.OK},
			{"renamed within pub", func() error { return s.Rename(ctx, alice, f.pub, "g", f.pub, "h") }, []uint64{f.pub}, proto.OK},
			{"renamed back", func() error { return s.Rename(ctx, alice, f.pub, "h", f.sub, "g") }, []uint64{f.sub}, proto.EACCES},
			{"linked into bob's directory", func() error {
				must(s.SetAttr(ctx, Root, f.bobd, proto.SetAttr{Valid: proto.SetMode, Mode: 0o777}))(t)
				_, err := s.Link(ctx, alice, g, f.bobd, "g")
				return err
			}, []uint64{f.sub, f.bobd}, proto.EACCES}, // bobd is inside /a too
			{"bob's directory moved to pub", func() error { return s.Rename(ctx, Root, f.a, "bobd", f.pub, "bobd") }, []uint64{f.sub, f.bobd}, proto.OK},
			{"renamed onto itself", func() error { return s.Rename(ctx, alice, f.sub, "g", f.bobd, "g") }, []uint64{f.sub, f.bobd}, proto.OK},
			{"the sub name replaced by a rename", func() error {
				create(t, s, alice, f.sub, "x", 0o644)
				return s.Rename(ctx, alice, f.sub, "x", f.sub, "g")
			}, []uint64{f.bobd}, proto.OK},
			{"the bobd name replaced by a publish", func() error {
				o := must(s.CreateTemp(ctx, alice, f.sub, 0o644))(t)
				_, err := s.Publish(ctx, alice, proto.MetaPublishReq{Session: o.Session, Parent: f.bobd, Name: "g"})
				return err
			}, nil, proto.ENOENT},
		}
		for _, st := range steps {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			_, err := s.Stat(ctx, bob, g)
			if proto.CodeOf(err) != st.bob {
				t.Errorf("%s: bob's stat: %v, want %v", st.name, err, st.bob)
			}
			if st.bob != proto.ENOENT {
				wantLinks(t, s, g, st.links...)
			}
			checkLinks(t, s)
		}
	})
}

// TestReachDirectories: a directory is reachable through its parents, and
// moving it moves its reachability with it (and everything below).
func TestReachDirectories(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		f := newReachFixture(t, s)
		deep := mkdir(t, s, alice, f.sub, "d1", 0o755)
		deeper := mkdir(t, s, alice, deep.Ino, "d2", 0o755)
		file := create(t, s, alice, deeper.Ino, "f", 0o644)
		// chmod returns a step's change of mode.
		chmod := func(id Identity, ino uint64, mode uint32) func() error {
			return func() error {
				_, err := s.SetAttr(ctx, id, ino, proto.SetAttr{Valid: proto.SetMode, Mode: mode})
				return err
			}
		}
		for _, step := range []struct {
			name string
			do   []func() error
			want proto.Code
		}{
			{"inside alice's home", nil, proto.EACCES},
			{"moved to pub", []func() error{func() error { return s.Rename(ctx, alice, f.sub, "d1", f.pub, "d1") }}, proto.OK},
			{"pub loses search for others", []func() error{chmod(Root, f.pub, 0o770)}, proto.EACCES},
			{"pub gets it back, d1 loses it", []func() error{chmod(Root, f.pub, 0o777), chmod(alice, deep.Ino, 0o754)}, proto.EACCES},
			{"the root loses it", []func() error{chmod(alice, deep.Ino, 0o755), chmod(Root, proto.RootIno, 0o750)}, proto.EACCES},
		} {
			for _, do := range step.do {
				if err := do(); err != nil {
					t.Fatalf("%s: %v", step.name, err)
				}
			}
			for _, ino := range []uint64{deeper.Ino, file.Ino} {
				_, err := s.Stat(ctx, bob, ino)
				if proto.CodeOf(err) != step.want {
					t.Errorf("%s: bob's stat of %d: %v, want %v", step.name, ino, err, step.want)
				}
			}
		}
		// The root itself is everyone's.
		must(s.Stat(ctx, bob, proto.RootIno))(t)
	})
}

// TestReachFilesWithoutNames: an anonymous file and a file unlinked while
// open have no Links: their owner (and root) reach them, nobody else.
func TestReachFilesWithoutNames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		f := newReachFixture(t, s)
		tmp := must(s.CreateTemp(ctx, bob, f.pub, 0o666))(t)
		w := must(s.Create(ctx, bob, f.pub, "w", 0o666, proto.OpenWrite))(t)
		wantCode(t, s.Unlink(ctx, bob, f.pub, "w"), proto.OK)
		for _, ino := range []uint64{tmp.Inode.Ino, w.Inode.Ino} {
			wantLinks(t, s, ino)
			for _, c := range []struct {
				id   Identity
				want proto.Code
			}{{bob, proto.OK}, {Root, proto.OK}, {carol, proto.EACCES}} {
				_, err := s.Stat(ctx, c.id, ino)
				wantCode(t, err, c.want)
				_, err = s.SetAttr(ctx, c.id, ino, proto.SetAttr{Valid: proto.SetMtimeNow})
				wantCode(t, err, c.want)
			}
		}
		must(s.Publish(ctx, bob, proto.MetaPublishReq{Session: tmp.Session, Parent: f.pub, Name: "t"}))(t)
		wantLinks(t, s, tmp.Inode.Ino, f.pub)
		must(s.Stat(ctx, carol, tmp.Inode.Ino))(t)
		checkLinks(t, s)
	})
}

// TestLinksNotReturned: Links are meta's bookkeeping, not sent to callers.
func TestLinksNotReturned(t *testing.T) {
	s := newMem(t)
	f := newReachFixture(t, s)
	n := must(s.Link(ctx, alice, f.g, f.pub, "g"))(t)
	got := []proto.Inode{n, must(s.Stat(ctx, alice, f.g))(t), must(s.Lookup(ctx, alice, f.pub, "g"))(t),
		must(s.StatPath(ctx, alice, "/pub/g", false))(t), must(s.Open(ctx, alice, f.g, proto.OpenRead))(t).Inode,
		must(s.Access(ctx, alice, f.g, proto.OpenRead))(t)}
	es, _, err := s.ReadDir(ctx, alice, f.pub, "", 0, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		got = append(got, *e.Attr)
	}
	for i, n := range got {
		if n.Links != nil {
			t.Errorf("result %d carries links %v", i, n.Links)
		}
	}
}

// TestMaxLinks: a file takes at most MaxLinks names (its record must stay
// a small KV value).
func TestMaxLinks(t *testing.T) {
	s := newMem(t)
	d := mkdir(t, s, Root, proto.RootIno, "d", 0o777)
	g := create(t, s, alice, d.Ino, "g0", 0o644)
	for i := 1; i < MaxLinks; i++ {
		must(s.Link(ctx, alice, g.Ino, d.Ino, fmt.Sprint("g", i)))(t)
	}
	_, err := s.Link(ctx, alice, g.Ino, d.Ino, "one more")
	wantCode(t, err, proto.ENOSPC)
	if n := rawInode(t, s, g.Ino); len(n.Links) != MaxLinks || n.Nlink != MaxLinks {
		t.Fatalf("links %d, nlink %d, want %d", len(n.Links), n.Nlink, MaxLinks)
	}
	// A rename moves a name: allowed at the limit.
	wantCode(t, s.Rename(ctx, alice, d.Ino, "g0", d.Ino, "moved"), proto.OK)
}

// TestAccessIsOpensCheck: Access answers exactly as Open for every flag,
// identity and kind of inode, without opening a session.
func TestAccessIsOpensCheck(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		f := newReachFixture(t, s)
		ro := create(t, s, alice, f.pub, "ro", 0o640)
		gone := must(s.Create(ctx, alice, f.pub, "gone", 0o666, proto.OpenWrite))(t)
		wantCode(t, s.Unlink(ctx, alice, f.pub, "gone"), proto.OK)
		inos := map[string]uint64{
			"file in 0700": f.g, "dir in 0700": f.sub, "symlink": f.l, "0640 file": ro.Ino,
			"unlinked": gone.Inode.Ino, "pub": f.pub, "missing": 1 << 40,
		}
		for _, name := range slices.Sorted(maps.Keys(inos)) {
			for _, id := range []Identity{alice, bob, carol, Root} {
				for _, flags := range []proto.OpenFlags{proto.OpenRead, proto.OpenWrite, proto.OpenRead | proto.OpenTrunc, 0} {
					_, aerr := s.Access(ctx, id, inos[name], flags)
					_, oerr := s.Open(ctx, id, inos[name], flags)
					if proto.CodeOf(aerr) != proto.CodeOf(oerr) {
						t.Errorf("%s as %s, flags %v: Access %v, Open %v", name, id.Name, flags, aerr, oerr)
					}
				}
			}
		}
	})
}

// TestReachDamagedTree: a parent cycle, a missing parent and a parent that
// is not a directory are EIO naming the inode, and a walk longer than
// maxDepth ends; none hangs.
func TestReachDamagedTree(t *testing.T) {
	for _, tc := range []struct {
		name string
		// damage rewrites the parents of the chain /c0/c1/…/c4 (dirs) and
		// returns the inode to stat.
		damage func(t *testing.T, s *Service, c []proto.Inode) uint64
		say    string
	}{
		{"self loop", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			setParent(t, s, c[2], c[2].Ino)
			return c[4].Ino
		}, "loop"},
		{"cycle of three", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			setParent(t, s, c[1], c[3].Ino)
			return c[4].Ino
		}, "loop"},
		{"cycle through the start", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			setParent(t, s, c[0], c[4].Ino)
			return c[4].Ino
		}, "loop"},
		{"missing parent", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			setParent(t, s, c[1], 1<<40)
			return c[4].Ino
		}, "does not exist"},
		{"parent not a directory", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			file := create(t, s, Root, c[0].Ino, "file", 0o644)
			setParent(t, s, c[1], file.Ino)
			return c[4].Ino
		}, "is not a directory"},
		{"file in a looping directory", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			file := create(t, s, Root, c[4].Ino, "file", 0o644)
			setParent(t, s, c[2], c[3].Ino)
			return file.Ino
		}, "loop"},
		{"deeper than maxDepth", func(t *testing.T, s *Service, c []proto.Inode) uint64 {
			// A chain of maxDepth+2 directory records above c[0], written
			// directly (no operation builds one so deep), in transactions
			// within the KV's limits.
			base := c[4].Ino + 1000
			for from := uint64(0); from <= maxDepth+1; from += 10000 {
				err := s.db.Update(ctx, func(tx kv.Txn) error {
					for i := from; i < from+10000 && i <= maxDepth+1; i++ {
						n := proto.Inode{Ino: base + i, Type: proto.TypeDir, Mode: 0o755, Parent: base + i + 1}
						if i == maxDepth+1 {
							n.Parent = proto.RootIno
						}
						if err := putInode(tx, &n); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			setParent(t, s, c[0], base)
			return c[4].Ino
		}, "deeper than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db kv.DB) {
				s := newService(t, db, Options{})
				var c []proto.Inode
				parent := uint64(proto.RootIno)
				for i := range 5 {
					c = append(c, mkdir(t, s, Root, parent, fmt.Sprint("c", i), 0o755))
					parent = c[i].Ino
				}
				ino := tc.damage(t, s, c)
				_, err := s.Stat(ctx, alice, ino)
				wantCode(t, err, proto.EIO)
				if !strings.Contains(err.Error(), tc.say) || !strings.Contains(err.Error(), "inode") && !strings.Contains(err.Error(), "directory") {
					t.Errorf("error %q does not say %q", err, tc.say)
				}
				// Root does not walk.
				must(s.Stat(ctx, Root, ino))(t)
			})
		})
	}
}

// setParent rewrites directory d's parent in the KV (damage no operation
// makes).
func setParent(t *testing.T, s *Service, d proto.Inode, parent uint64) {
	t.Helper()
	n := rawInode(t, s, d.Ino)
	n.Parent = parent
	if err := s.db.Update(ctx, func(tx kv.Txn) error { return putInode(tx, &n) }); err != nil {
		t.Fatal(err)
	}
}

// eachInode calls fn with every inode stored, in key order.
func eachInode(tx kv.ReadTxn, fn func(*proto.Inode) error) error {
	b, e := prefixRange([]byte{pInode})
	kvs, err := tx.Range(b, e, kv.RangeOptions{})
	if err != nil {
		return err
	}
	for _, p := range kvs {
		var n proto.Inode
		if err := unmarshal(p.Value, &n); err != nil {
			return err
		}
		if err := fn(&n); err != nil {
			return err
		}
	}
	return nil
}

// oldStyle turns s's namespace into what a schema 1 build left: no Links
// anywhere, schema version 1.
func oldStyle(t *testing.T, s *Service) {
	t.Helper()
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		err := eachInode(tx, func(n *proto.Inode) error {
			n.Links = nil
			return putInode(tx, n)
		})
		if err != nil {
			return err
		}
		return tx.Set(keyVersion, u64Bytes(1))
	})
	if err != nil {
		t.Fatal(err)
	}
}

// links returns every inode's Links as stored, sorted.
func allLinks(t *testing.T, s *Service) map[uint64][]uint64 {
	t.Helper()
	out := map[uint64][]uint64{}
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		return eachInode(tx, func(n *proto.Inode) error {
			out[n.Ino] = slices.Sorted(slices.Values(n.Links))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// migrationNamespace builds a namespace with every kind of name: files in
// several directories, hard links across and within directories,
// symlinks, an anonymous file, a file unlinked while open, and more
// entries than a few pages. It returns the Links every inode must have.
func migrationNamespace(t *testing.T, s *Service) map[uint64][]uint64 {
	t.Helper()
	f := newReachFixture(t, s)
	must(s.Link(ctx, alice, f.g, f.pub, "g"))(t)
	must(s.Link(ctx, alice, f.g, f.sub, "g2"))(t)
	must(s.Link(ctx, alice, f.l, f.pub, "l"))(t)
	must(s.CreateTemp(ctx, bob, f.pub, 0o644))(t)
	must(s.Create(ctx, bob, f.pub, "w", 0o666, proto.OpenWrite))(t)
	wantCode(t, s.Unlink(ctx, bob, f.pub, "w"), proto.OK)
	many := mkdir(t, s, Root, proto.RootIno, "many", 0o755)
	for i := range 40 {
		create(t, s, Root, many.Ino, fmt.Sprint("f", i), 0o644)
	}
	return allLinks(t, s)
}

// TestMigrateLinks: Init fills the Links of a schema 1 namespace from its
// entries, in pages, restartably and idempotently, and concurrent Inits
// over one KV share the work without recording a name twice.
func TestMigrateLinks(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before runs on the old-style namespace before Init.
		before func(t *testing.T, s *Service)
		inits  int
	}{
		{"one Init", func(*testing.T, *Service) {}, 1},
		{"interrupted after a few pages", func(t *testing.T, s *Service) {
			for range 5 {
				var done bool
				err := s.db.Update(ctx, func(tx kv.Txn) error {
					var err error
					done, err = migrateLinksPage(tx, 3)
					return err
				})
				if err != nil || done {
					t.Fatalf("page: done %v, %v", done, err)
				}
			}
		}, 1},
		{"Init twice", func(*testing.T, *Service) {}, 2},
		{"four Inits at once", func(*testing.T, *Service) {}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db kv.DB) {
				s := newService(t, db, Options{})
				want := migrationNamespace(t, s)
				checkLinks(t, s)
				oldStyle(t, s)
				for ino, l := range allLinks(t, s) {
					if len(l) > 0 {
						t.Fatalf("old style: inode %d has links", ino)
					}
				}
				tc.before(t, s)
				var wg sync.WaitGroup
				errs := make([]error, tc.inits)
				for i := range tc.inits {
					wg.Add(1)
					go func() {
						defer wg.Done()
						errs[i] = New(db, Options{}).Init(ctx)
					}()
				}
				wg.Wait()
				for _, err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				got := allLinks(t, s)
				for ino, w := range want {
					if !slices.Equal(got[ino], w) {
						t.Errorf("inode %d: links %v, want %v", ino, got[ino], w)
					}
				}
				checkLinks(t, s)
				err := db.View(ctx, func(tx kv.ReadTxn) error {
					v, err := tx.Get(keyVersion)
					if u64(v) != schemaVersion {
						t.Errorf("schema version %d, want %d", u64(v), schemaVersion)
					}
					if p, _ := tx.Get(keyLinksProgress); p != nil {
						t.Errorf("progress key left: %q", p)
					}
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestMigratePageBounds: one migration transaction handles at most its
// page of entries.
func TestMigratePageBounds(t *testing.T) {
	s := newMem(t)
	d := mkdir(t, s, Root, proto.RootIno, "d", 0o755)
	for i := range 10 {
		create(t, s, Root, d.Ino, fmt.Sprint("f", i), 0o644)
	}
	oldStyle(t, s)
	var pages int
	for done := false; !done; pages++ {
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			var err error
			done, err = migrateLinksPage(tx, 4)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if pages > 10 {
			t.Fatal("migration does not end")
		}
	}
	// 11 entries (d and its 10 files) in pages of 4: 3 pages.
	if pages != 3 {
		t.Errorf("%d pages, want 3", pages)
	}
	checkLinks(t, s)
}

// TestInitRefusesNewerSchema: a KV of a later schema is refused, as this
// build's KV is by builds that know schema 1 only.
func TestInitRefusesNewerSchema(t *testing.T) {
	s := newMem(t)
	setRecord(t, s.db, keyVersion, u64Bytes(schemaVersion+1))
	err := New(s.db, Options{}).Init(ctx)
	if err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Fatalf("Init on a newer schema: %v", err)
	}
}

// dirPermSamples are inode records as meta writes them and as other
// msgpack encoders could (wide integers, unknown fields of every kind).
func dirPermSamples() [][]byte {
	out := [][]byte{
		marshal(recordSamples()[0]),
		marshal(&proto.Inode{Ino: 7, Type: proto.TypeDir, Mode: 0o1777, UID: 1 << 31, GID: 5, Parent: 1,
			DirLayout: &proto.DirLayout{ChainTable: 2, ChunkSize: 1 << 20, Stripe: 3}}),
		marshal(&proto.Inode{Ino: 1 << 62, Type: proto.TypeSymlink, Mode: 0o777, UID: math.MaxUint32,
			GID: math.MaxUint32, Target: strings.Repeat("t", 300), Links: []uint64{1, 1 << 40, 3}}),
		marshal(&proto.Inode{Ino: proto.RootIno, Type: proto.TypeDir, Mode: 0o755, Parent: proto.RootIno}),
	}
	wide, err := msgpack.Marshal(&proto.Inode{Ino: 99, Type: proto.TypeDir, Mode: 0o700, UID: 3, GID: 4, Parent: 9})
	if err != nil {
		panic(err)
	}
	odd, err := msgpack.Marshal(map[string]any{
		"ino": int64(5), "type": uint64(proto.TypeDir), "mode": int8(0o55), "uid": nil, "gid": uint16(7), "parent": int32(1),
		"f": 1.5, "g": float32(2), "b": []byte{1, 2}, "t": true, "a": []any{1, "x", []any{map[string]any{"y": nil}}},
		"m": map[string]any{"z": -3, "w": int64(-1 << 40)}, "e": msgpack.RawMessage{0xd4, 1, 2},
		"s": strings.Repeat("s", 70000),
	})
	if err != nil {
		panic(err)
	}
	return append(out, wide, odd)
}

// TestDecodeDirPerm: the walk's short decoder reads what the full decoder
// reads, for records as written and for random inodes.
func TestDecodeDirPerm(t *testing.T) {
	samples := dirPermSamples()
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := proto.Inode{Ino: r.Uint64() >> r.IntN(64), Type: proto.FileType(r.IntN(4)), Mode: r.Uint32() & proto.ModeMask,
			UID: r.Uint32() >> r.IntN(32), GID: r.Uint32() >> r.IntN(32), Parent: r.Uint64() >> r.IntN(64),
			Size: r.Uint64(), Nlink: r.Uint32(), Target: strings.Repeat("x", r.IntN(40))}
		for range r.IntN(3) {
			n.Links = append(n.Links, r.Uint64()>>r.IntN(64))
		}
		samples = append(samples, marshal(&n))
	}
	for i, b := range samples {
		d, ok := decodeDirPerm(b)
		if !ok {
			t.Fatalf("sample %d (%x): not decoded", i, b[:min(len(b), 64)])
		}
		if want := fullDirPerm(t, b); d != want {
			t.Fatalf("sample %d: %+v, want %+v", i, d, want)
		}
	}
	for _, bad := range [][]byte{nil, {0x80 | 1}, {0x81, 0xa3, 'i', 'n', 'o'}, {0x81, 0xa3, 'i', 'n', 'o', 0xd0, 0xff},
		{0x81, 0xa4, 't', 'y', 'p', 'e', 0xcd, 1, 0}, {0x81, 0xa1, 'x', 0xc1}, {0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff},
		append(marshal(recordSamples()[0]), 0)} {
		if d, ok := decodeDirPerm(bad); ok {
			t.Errorf("%x decoded as %+v", bad, d)
		}
	}
}

func fullDirPerm(t *testing.T, b []byte) dirPerm {
	t.Helper()
	var n proto.Inode
	if err := unmarshal(b, &n); err != nil {
		t.Fatal(err)
	}
	return dirPerm{ino: n.Ino, parent: n.Parent, typ: n.Type, mode: n.Mode, uid: n.UID, gid: n.GID}
}

// FuzzDecodeDirPerm: on any bytes the short decoder never panics, and
// what it reads from a record the full decoder accepts is what the full
// decoder reads.
func FuzzDecodeDirPerm(f *testing.F) {
	for _, b := range dirPermSamples() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, ok := decodeDirPerm(b)
		var n proto.Inode
		if !ok || unmarshal(b, &n) != nil {
			return
		}
		if want := (dirPerm{ino: n.Ino, parent: n.Parent, typ: n.Type, mode: n.Mode, uid: n.UID, gid: n.GID}); d != want {
			t.Fatalf("%x: %+v, full decoder %+v", b, d, want)
		}
	})
}
