package meta

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv"
)

// publish is a Publish request for session o's file as name in parent.
func publish(o Opened, parent uint64, name string, length uint64) proto.MetaPublishReq {
	return proto.MetaPublishReq{Session: o.Session, Length: length, Wrote: true, Parent: parent, Name: name}
}

func inodesInUse(t testing.TB, s *Service) uint64 {
	t.Helper()
	return must(s.StatFS(ctx, Root))(t).Inodes
}

// TestCreateTempPublish walks an anonymous file through its life: nameless
// and unreachable while written, then linked with its final length in one
// step, then closed like any file.
func TestCreateTempPublish(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		d := mkdir(t, s, Root, proto.RootIno, "d", 0o777)
		o := must(s.CreateTemp(ctx, alice, d.Ino, 0o640))(t)
		n := o.Inode
		switch {
		case o.Session.ID == 0 || o.Session.Ino != n.Ino || !o.Created:
			t.Fatalf("CreateTemp = %+v", o)
		case n.Type != proto.TypeFile || n.Nlink != 0 || n.Mode != 0o640 || n.UID != alice.UID || n.GID != alice.GIDs[0]:
			t.Fatalf("anonymous inode = %+v", n)
		case n.Layout == nil || len(n.Layout.Chains) != 8:
			t.Fatalf("anonymous inode has layout %+v, want the 8 chains of table 1", n.Layout)
		}
		if got := names(t, s, d.Ino); len(got) != 0 {
			t.Fatalf("directory lists %v before publish", got)
		}
		if got := inodesInUse(t, s); got != 3 {
			t.Fatalf("inodes in use = %d, want 3 (root, d, the anonymous file)", got)
		}
		// Unreachable but for its session: no open, no link.
		_, err := s.Open(ctx, alice, n.Ino, proto.OpenRead)
		wantCode(t, err, proto.ENOENT)
		_, err = s.Link(ctx, alice, n.Ino, d.Ino, "sneak")
		wantCode(t, err, proto.ENOENT)
		must(s.ReportLength(ctx, alice, o.Session, 100, true))(t)

		p := must(s.Publish(ctx, alice, publish(o, d.Ino, "f", 4096)))(t)
		if p.Ino != n.Ino || p.Nlink != 1 || p.Size != 4096 || p.WriteVer == 0 {
			t.Fatalf("published inode = %+v", p)
		}
		if got := must(s.Lookup(ctx, alice, d.Ino, "f"))(t); got.Ino != n.Ino || got.Size != 4096 {
			t.Fatalf("lookup after publish = %+v", got)
		}
		// Once only.
		_, err = s.Publish(ctx, alice, publish(o, d.Ino, "g", 4096))
		wantCode(t, err, proto.EINVAL)
		// The session goes on as any write session; its close keeps the file.
		must(s.ReportLength(ctx, alice, o.Session, 5000, true))(t)
		c := must(s.Close(ctx, alice, o.Session, 5000, false))(t)
		if c.Nlink != 1 || c.Size != 5000 {
			t.Fatalf("after close: %+v", c)
		}
		if recs := gcRecords(t, s); len(recs) != 0 {
			t.Fatalf("gc records after publish and close: %+v", recs)
		}
		if got := inodesInUse(t, s); got != 3 {
			t.Fatalf("inodes in use = %d, want 3", got)
		}
	})
}

// TestPublishReplace: what Publish does to each kind of existing entry.
func TestPublishReplace(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(t *testing.T, s *Service, d uint64) // makes entry "x" in d
		noReplace bool
		want      proto.Code
		// gcOld: the old inode is deleted and queued for GC at once.
		gcOld bool
		// oldNlink: the old inode's nlink after a successful publish (-1: gone).
		oldNlink int
	}{
		{name: "absent", setup: func(*testing.T, *Service, uint64) {}, oldNlink: -1},
		{name: "file", setup: func(t *testing.T, s *Service, d uint64) { create(t, s, alice, d, "x", 0o644) }, gcOld: true, oldNlink: -1},
		{name: "file with another link", setup: func(t *testing.T, s *Service, d uint64) {
			x := create(t, s, alice, d, "x", 0o644)
			must(s.Link(ctx, alice, x.Ino, d, "other"))(t)
		}, oldNlink: 1},
		{name: "file open for writing", setup: func(t *testing.T, s *Service, d uint64) {
			must(s.Create(ctx, alice, d, "x", 0o644, proto.OpenWrite))(t)
		}, oldNlink: 0},
		{name: "symlink", setup: func(t *testing.T, s *Service, d uint64) { must(s.Symlink(ctx, alice, d, "x", "target"))(t) }, oldNlink: -1},
		{name: "directory", setup: func(t *testing.T, s *Service, d uint64) { mkdir(t, s, alice, d, "x", 0o755) }, want: proto.EISDIR},
		{name: "file, no replace", setup: func(t *testing.T, s *Service, d uint64) { create(t, s, alice, d, "x", 0o644) }, noReplace: true, want: proto.EEXIST},
		{name: "absent, no replace", setup: func(*testing.T, *Service, uint64) {}, noReplace: true, oldNlink: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db kv.DB) {
				s := newService(t, db, Options{})
				d := mkdir(t, s, Root, proto.RootIno, "d", 0o777).Ino
				tc.setup(t, s, d)
				var old *proto.Inode
				if n, err := s.Lookup(ctx, alice, d, "x"); err == nil {
					old = &n
				}
				before := inodesInUse(t, s)
				o := must(s.CreateTemp(ctx, alice, d, 0o644))(t)
				req := publish(o, d, "x", 7)
				req.NoReplace = tc.noReplace
				_, err := s.Publish(ctx, alice, req)
				wantCode(t, err, tc.want)
				got, lerr := s.Lookup(ctx, alice, d, "x")
				if tc.want != proto.OK {
					// Nothing changed, and the file can still be published
					// elsewhere.
					if lerr != nil || old == nil || got.Ino != old.Ino {
						t.Fatalf("after a refused publish, x = %+v, %v; want inode %+v", got, lerr, old)
					}
					must(s.Publish(ctx, alice, publish(o, d, "y", 7)))(t)
					return
				}
				if lerr != nil || got.Ino != o.Inode.Ino || got.Size != 7 {
					t.Fatalf("x = %+v, %v; want the published inode %d of size 7", got, lerr, o.Inode.Ino)
				}
				recs := gcRecords(t, s)
				if tc.gcOld != (len(recs) == 1) || tc.gcOld && recs[0].ID.Ino != old.Ino {
					t.Fatalf("gc records %+v (old inode %+v)", recs, old)
				}
				if old == nil {
					return
				}
				n, err := s.Stat(ctx, Root, old.Ino)
				switch {
				case tc.oldNlink < 0 && !isCode(err, proto.ENOENT):
					t.Fatalf("replaced inode: %+v, %v; want it deleted", n, err)
				case tc.oldNlink >= 0 && (err != nil || n.Nlink != uint32(tc.oldNlink)):
					t.Fatalf("replaced inode: %+v, %v; want nlink %d", n, err, tc.oldNlink)
				}
				want := before + 1
				if tc.oldNlink < 0 {
					want--
				}
				if got := inodesInUse(t, s); got != want {
					t.Fatalf("inodes in use = %d, want %d", got, want)
				}
			})
		})
	}
}

// TestTempPermissions: CreateTemp checks what Create checks, Publish what
// Rename checks, and the new inode's owner and group are a create's.
func TestTempPermissions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		top := mkdir(t, s, Root, proto.RootIno, "top", 0o777).Ino
		bobs := mkdir(t, s, bob, top, "bobs", 0o755)  // alice may not write
		open := mkdir(t, s, Root, top, "open", 0o777) // anyone may
		sticky := mkdir(t, s, Root, top, "sticky", 0o1777)
		noX := mkdir(t, s, alice, top, "nox", 0o600)
		sgid := mkdir(t, s, Root, top, "sgid", 0o2777)
		must(s.SetAttr(ctx, Root, sgid.Ino, proto.SetAttr{Valid: proto.SetGID, GID: 4242}))(t)
		create(t, s, bob, sticky.Ino, "bobfile", 0o666)
		create(t, s, bob, open.Ino, "bobfile", 0o666)
		f := create(t, s, alice, open.Ino, "file", 0o644)

		for _, tc := range []struct {
			name   string
			parent uint64
			want   proto.Code
		}{
			{"no write on the directory", bobs.Ino, proto.EACCES},
			{"no search on the directory", noX.Ino, proto.EACCES},
			{"not a directory", f.Ino, proto.ENOTDIR},
			{"missing directory", 999999, proto.ENOENT},
			{"writable directory", open.Ino, proto.OK},
		} {
			_, err := s.CreateTemp(ctx, alice, tc.parent, 0o644)
			if !isCode(err, tc.want) && !(tc.want == proto.OK && err == nil) {
				t.Errorf("CreateTemp in %s: %v, want %v", tc.name, err, tc.want)
			}
		}

		// Owner and group as a create's, in a setgid directory too.
		g := must(s.CreateTemp(ctx, alice, sgid.Ino, 0o2755))(t).Inode
		if g.UID != alice.UID || g.GID != 4242 || g.Mode != 0o755 {
			t.Errorf("anonymous file in a setgid directory: uid %d gid %d mode %o; want %d, 4242, 755 (setgid dropped: alice is not in group 4242)", g.UID, g.GID, g.Mode, alice.UID)
		}

		for _, tc := range []struct {
			name   string
			parent uint64
			dst    string
			want   proto.Code
		}{
			{"into a directory without write", bobs.Ino, "x", proto.EACCES},
			{"into a directory without search", noX.Ino, "x", proto.EACCES},
			{"onto another's file in a sticky directory", sticky.Ino, "bobfile", proto.EPERM},
			{"invalid name", open.Ino, "a/b", proto.EINVAL},
			{"into a file", f.Ino, "x", proto.ENOTDIR},
			{"onto another's file in a writable directory", open.Ino, "bobfile", proto.OK},
			{"new name in a sticky directory", sticky.Ino, "mine", proto.OK},
		} {
			o := must(s.CreateTemp(ctx, alice, open.Ino, 0o644))(t)
			_, err := s.Publish(ctx, alice, publish(o, tc.parent, tc.dst, 1))
			if !isCode(err, tc.want) && !(tc.want == proto.OK && err == nil) {
				t.Errorf("publish %s: %v, want %v", tc.name, err, tc.want)
			}
		}
	})
}

// TestPublishOnlyByItsSession: only the session CreateTemp returned
// publishes, and only once.
func TestPublishOnlyByItsSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		d := mkdir(t, s, Root, proto.RootIno, "d", 0o777).Ino
		o := must(s.CreateTemp(ctx, alice, d, 0o644))(t)

		// Another user holding alice's session id.
		_, err := s.Publish(ctx, bob, publish(o, d, "f", 1))
		wantCode(t, err, proto.EBADF)
		// A made-up session of the same inode.
		forged := o
		forged.Session.ID++
		_, err = s.Publish(ctx, alice, publish(forged, d, "f", 1))
		wantCode(t, err, proto.EBADF)
		// An ordinary write session.
		w := must(s.Create(ctx, alice, d, "w", 0o644, proto.OpenWrite))(t)
		_, err = s.Publish(ctx, alice, publish(w, d, "f", 1))
		wantCode(t, err, proto.EINVAL)
		// An ordinary write session of a file unlinked while open: nlink 0
		// like an anonymous file, but not one.
		if err := s.Unlink(ctx, alice, d, "w"); err != nil {
			t.Fatal(err)
		}
		_, err = s.Publish(ctx, alice, publish(w, d, "f", 1))
		wantCode(t, err, proto.EINVAL)
		if _, err := s.Lookup(ctx, alice, d, "f"); !isCode(err, proto.ENOENT) {
			t.Fatalf("a refused publish made an entry: %v", err)
		}
		// Root may use any session, as with Close.
		must(s.Publish(ctx, Root, publish(o, d, "f", 1)))(t)
		// A closed anonymous file's session is gone.
		o2 := must(s.CreateTemp(ctx, alice, d, 0o644))(t)
		must(s.Close(ctx, alice, o2.Session, 0, false))(t)
		_, err = s.Publish(ctx, alice, publish(o2, d, "g", 1))
		wantCode(t, err, proto.EBADF)
	})
}

// TestTempGC: an anonymous file never published is deleted, its chunks
// queued for GC, when its writer closes it and when its dead writer's
// session is pruned; a published one is kept.
func TestTempGC(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		var clock atomic.Int64
		clock.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
		s := newService(t, db, Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
		d := mkdir(t, s, Root, proto.RootIno, "d", 0o777).Ino

		abandoned := must(s.CreateTemp(ctx, alice, d, 0o644))(t)
		crashed := must(s.CreateTemp(ctx, alice, d, 0o644))(t)
		published := must(s.CreateTemp(ctx, alice, d, 0o644))(t)
		must(s.ReportLength(ctx, alice, crashed.Session, 3<<20, true))(t)
		must(s.Publish(ctx, alice, publish(published, d, "p", 10)))(t)
		if got := inodesInUse(t, s); got != 5 {
			t.Fatalf("inodes in use = %d, want 5", got)
		}

		must(s.Close(ctx, alice, abandoned.Session, 1<<20, true))(t)
		_, err := s.Stat(ctx, Root, abandoned.Inode.Ino)
		wantCode(t, err, proto.ENOENT)

		clock.Add(int64(time.Hour))
		if n := must(s.PruneSessions(ctx, Root, 30*time.Minute))(t); n != 2 { // crashed, published
			t.Fatalf("pruned %d sessions, want 2", n)
		}
		_, err = s.Stat(ctx, Root, crashed.Inode.Ino)
		wantCode(t, err, proto.ENOENT)
		if n := must(s.Lookup(ctx, alice, d, "p"))(t); n.Ino != published.Inode.Ino || n.Size != 10 {
			t.Fatalf("published file after pruning: %+v", n)
		}
		recs := gcRecords(t, s)
		var got []uint64
		for _, r := range recs {
			if r.Kind != proto.GCDelete || len(r.Layout.Chains) == 0 {
				t.Fatalf("gc record %+v: want a delete with the file's chains", r)
			}
			got = append(got, r.ID.Ino)
		}
		want := []uint64{abandoned.Inode.Ino, crashed.Inode.Ino}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("gc records for inodes %v, want %v", got, want)
		}
		if got := inodesInUse(t, s); got != 3 {
			t.Fatalf("inodes in use = %d, want 3", got)
		}
		_, err = s.Publish(ctx, alice, publish(crashed, d, "late", 1))
		wantCode(t, err, proto.EBADF)
	})
}

// TestConcurrentPublishOneName: many writers publish to one name at once;
// the name ends up on exactly one of their files, and every other file is
// deleted once closed.
func TestConcurrentPublishOneName(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		d := mkdir(t, s, Root, proto.RootIno, "d", 0o777).Ino
		const writers = 16
		inos := map[uint64]bool{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				o, err := s.CreateTemp(ctx, alice, d, 0o644)
				if err == nil {
					_, err = s.Publish(ctx, alice, publish(o, d, "f", uint64(i)))
				}
				if err == nil {
					_, err = s.Close(ctx, alice, o.Session, uint64(i), false)
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inos[o.Inode.Ino] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		n := must(s.Lookup(ctx, alice, d, "f"))(t)
		if !inos[n.Ino] || n.Nlink != 1 {
			t.Fatalf("f is %+v, not one of the published files", n)
		}
		if got := names(t, s, d); !slices.Equal(got, []string{"f"}) {
			t.Fatalf("directory lists %v", got)
		}
		if recs := gcRecords(t, s); len(recs) != writers-1 {
			t.Fatalf("%d gc records, want %d", len(recs), writers-1)
		}
		if got := inodesInUse(t, s); got != 3 {
			t.Fatalf("inodes in use = %d, want 3", got)
		}
	})
}

// TestTempRPC: the two methods are served.
func TestTempRPC(t *testing.T) {
	s := newMem(t)
	tok := must(s.EnsureAdmin(ctx))(t)
	_, addr := serveRPC(t, s)
	c, err := rpc.Dial(ctx, addr, tok, rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	var o proto.MetaOpenResp
	if _, err := c.Call(ctx, proto.MethodMetaCreateTemp, proto.MetaCreateTempReq{Parent: proto.RootIno, Mode: 0o600}, &o); err != nil {
		t.Fatal(err)
	}
	if o.Session.ID == 0 || o.Inode.Nlink != 0 || o.Inode.Mode != 0o600 {
		t.Fatalf("CreateTemp answered %+v", o)
	}
	var p proto.MetaInodeResp
	req := proto.MetaPublishReq{Session: o.Session, Length: 3, Wrote: true, Parent: proto.RootIno, Name: "f"}
	if _, err := c.Call(ctx, proto.MethodMetaPublish, req, &p); err != nil {
		t.Fatal(err)
	}
	if p.Inode.Ino != o.Inode.Ino || p.Inode.Nlink != 1 || p.Inode.Size != 3 {
		t.Fatalf("Publish answered %+v", p)
	}
	req.NoReplace = true
	if _, err := c.Call(ctx, proto.MethodMetaPublish, req, &p); !isCode(err, proto.EINVAL) {
		t.Fatalf("second publish: %v, want EINVAL", err)
	}
}
