package meta

import (
	"sync/atomic"
	"testing"
	"time"

	"fff/internal/proto"
)

func TestSessionsAndLength(t *testing.T) {
	s := newMem(t)
	d := mkdir(t, s, Root, proto.RootIno, "d", 0o777)
	o := must(s.Create(ctx, alice, d.Ino, "f", 0o644, proto.OpenWrite))(t)
	w2 := must(s.Open(ctx, alice, o.Inode.Ino, proto.OpenWrite))(t)
	if w2.Session.ID == 0 || w2.Session == o.Session {
		t.Fatalf("second session = %+v", w2.Session)
	}
	// Another user cannot use alice's session.
	_, err := s.Close(ctx, bob, o.Session, 10, true)
	wantCode(t, err, proto.EBADF)

	// Lengths: the maximum wins.
	must(s.ReportLength(ctx, alice, o.Session, 300, true))(t)
	must(s.ReportLength(ctx, alice, w2.Session, 200, true))(t)
	if n := must(s.Stat(ctx, alice, o.Inode.Ino))(t); n.Size != 300 || n.WriteVer != 2 {
		t.Fatalf("after reports: size %d writever %d", n.Size, n.WriteVer)
	}
	// A truncate makes earlier sessions' reports stale.
	must(s.SetAttr(ctx, alice, o.Inode.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 0}))(t)
	w3 := must(s.Open(ctx, alice, o.Inode.Ino, proto.OpenWrite))(t)
	must(s.Close(ctx, alice, o.Session, 1000, true))(t)
	if n := must(s.Stat(ctx, alice, o.Inode.Ino))(t); n.Size != 0 {
		t.Fatalf("stale report applied: size %d", n.Size)
	}
	must(s.Close(ctx, alice, w3.Session, 50, true))(t)
	if n := must(s.Stat(ctx, alice, o.Inode.Ino))(t); n.Size != 50 {
		t.Fatalf("fresh report lost: size %d", n.Size)
	}
	// Close without writing leaves mtime alone.
	before := must(s.Stat(ctx, alice, o.Inode.Ino))(t)
	must(s.Close(ctx, alice, w2.Session, 0, false))(t)
	if after := must(s.Stat(ctx, alice, o.Inode.Ino))(t); after.Mtime != before.Mtime || after.WriteVer != before.WriteVer {
		t.Fatal("a close without writes changed the file")
	}
	// Root may close anyone's session.
	w4 := must(s.Open(ctx, alice, o.Inode.Ino, proto.OpenWrite))(t)
	must(s.Close(ctx, Root, w4.Session, 0, false))(t)
}

func TestUnlinkWhileOpen(t *testing.T) {
	s := newMem(t)
	o := must(s.Create(ctx, Root, proto.RootIno, "f", 0o644, proto.OpenWrite))(t)
	if err := s.Unlink(ctx, Root, proto.RootIno, "f"); err != nil {
		t.Fatal(err)
	}
	// The name is gone, the inode lives on with nlink 0, no GC yet.
	_, err := s.Lookup(ctx, Root, proto.RootIno, "f")
	wantCode(t, err, proto.ENOENT)
	n := must(s.Stat(ctx, Root, o.Inode.Ino))(t)
	if n.Nlink != 0 {
		t.Fatalf("nlink = %d", n.Nlink)
	}
	if recs := gcRecords(t, s); len(recs) != 0 {
		t.Fatalf("gc while open: %+v", recs)
	}
	// It cannot be opened or linked again.
	_, err = s.Open(ctx, Root, o.Inode.Ino, proto.OpenRead)
	wantCode(t, err, proto.ENOENT)
	_, err = s.Link(ctx, Root, o.Inode.Ino, proto.RootIno, "again")
	wantCode(t, err, proto.ENOENT)
	// Reports still work; the last close deletes it.
	must(s.ReportLength(ctx, Root, o.Session, 4096, true))(t)
	must(s.Close(ctx, Root, o.Session, 8192, true))(t)
	_, err = s.Stat(ctx, Root, o.Inode.Ino)
	wantCode(t, err, proto.ENOENT)
	recs := gcRecords(t, s)
	if len(recs) != 1 || recs[0].Kind != proto.GCDelete || recs[0].ID.Ino != o.Inode.Ino || recs[0].Size != 8192 || len(recs[0].Layout.Chains) != 8 {
		t.Fatalf("gc after last close: %+v", recs)
	}
	if st := must(s.StatFS(ctx, Root))(t); st.Inodes != 1 {
		t.Fatalf("inodes = %d", st.Inodes)
	}
}

func TestPruneSessions(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s := newService(t, backends[0].open(t), Options{Now: func() time.Time { return time.Unix(0, clock.Load()) }})
	old := must(s.Create(ctx, Root, proto.RootIno, "old", 0o644, proto.OpenWrite))(t)
	orphan := must(s.Create(ctx, Root, proto.RootIno, "orphan", 0o644, proto.OpenWrite))(t)
	if err := s.Unlink(ctx, Root, proto.RootIno, "orphan"); err != nil {
		t.Fatal(err)
	}
	clock.Add(int64(time.Hour))
	fresh := must(s.Create(ctx, Root, proto.RootIno, "fresh", 0o644, proto.OpenWrite))(t)
	refreshed := must(s.Create(ctx, Root, proto.RootIno, "refreshed", 0o644, proto.OpenWrite))(t)
	clock.Add(int64(20 * time.Minute))
	must(s.ReportLength(ctx, Root, refreshed.Session, 1, true))(t)
	clock.Add(int64(20 * time.Minute))

	_, err := s.PruneSessions(ctx, alice, time.Minute)
	wantCode(t, err, proto.EPERM)
	n := must(s.PruneSessions(ctx, Root, 30*time.Minute))(t)
	if n != 3 { // old, orphan, fresh (refreshed 20 min ago stays)
		t.Fatalf("pruned %d sessions, want 3", n)
	}
	_, err = s.Close(ctx, Root, old.Session, 0, false)
	wantCode(t, err, proto.EBADF)
	_, err = s.Close(ctx, Root, fresh.Session, 0, false)
	wantCode(t, err, proto.EBADF)
	must(s.Close(ctx, Root, refreshed.Session, 0, false))(t)
	_, err = s.Stat(ctx, Root, orphan.Inode.Ino)
	wantCode(t, err, proto.ENOENT)
	recs := gcRecords(t, s)
	if len(recs) != 1 || recs[0].ID.Ino != orphan.Inode.Ino {
		t.Fatalf("gc = %+v", recs)
	}
}

func TestPruneManySessions(t *testing.T) {
	s := newService(t, backends[0].open(t), Options{})
	f := create(t, s, Root, proto.RootIno, "f", 0o644)
	for range 3*pruneBatch + 5 {
		must(s.Open(ctx, Root, f.Ino, proto.OpenWrite))(t)
	}
	if n := must(s.PruneSessions(ctx, Root, -time.Hour))(t); n != 3*pruneBatch+5 {
		t.Fatalf("pruned %d", n)
	}
}

func TestGCQueue(t *testing.T) {
	s := newMem(t)
	a := create(t, s, Root, proto.RootIno, "a", 0o644)
	b := must(s.Create(ctx, Root, proto.RootIno, "b", 0o644, proto.OpenWrite))(t)
	must(s.Close(ctx, Root, b.Session, 3<<20, true))(t)
	c := create(t, s, Root, proto.RootIno, "c", 0o644)

	// a: deleted. b: truncated twice, then written. c: truncated with a
	// writer open, then the writer closes without writing.
	if err := s.Unlink(ctx, Root, proto.RootIno, "a"); err != nil {
		t.Fatal(err)
	}
	must(s.SetAttr(ctx, Root, b.Inode.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 2 << 20}))(t)
	must(s.SetAttr(ctx, Root, b.Inode.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 1 << 20}))(t)
	must(s.SetAttr(ctx, Root, c.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 100}))(t) // grows: nothing to collect
	cw := must(s.Open(ctx, Root, c.Ino, proto.OpenWrite))(t)
	must(s.SetAttr(ctx, Root, c.Ino, proto.SetAttr{Valid: proto.SetSize, Size: 10}))(t)

	recs := gcRecords(t, s)
	// c's truncate is held back while its writer is open.
	if len(recs) != 3 {
		t.Fatalf("records = %+v", recs)
	}
	if r := recs[0]; r.ID.Ino != a.Ino || r.Kind != proto.GCDelete || r.Obsolete {
		t.Fatalf("a's record = %+v", r)
	}
	if r := recs[1]; r.ID != (proto.GCID{Ino: b.Inode.Ino, Seq: 1}) || r.Kind != proto.GCTruncate || r.From != 2<<20 || r.Size != 3<<20 || r.Obsolete {
		t.Fatalf("b's first truncate = %+v", r)
	}
	if r := recs[2]; r.ID.Seq != 2 || r.From != 1<<20 || r.Obsolete {
		t.Fatalf("b's second truncate = %+v", r)
	}
	must(s.Close(ctx, Root, cw.Session, 0, false))(t)
	if recs := gcRecords(t, s); len(recs) != 4 || recs[3].ID.Ino != c.Ino || recs[3].Obsolete {
		t.Fatalf("after c's writer closed: %+v", recs)
	}
	// A write after the truncate makes b's records obsolete.
	w := must(s.Open(ctx, Root, b.Inode.Ino, proto.OpenWrite))(t)
	must(s.Close(ctx, Root, w.Session, 5<<20, true))(t)
	recs = gcRecords(t, s)
	if len(recs) != 4 || !recs[1].Obsolete || !recs[2].Obsolete || recs[0].Obsolete || recs[3].Obsolete {
		t.Fatalf("after writing b: %+v", recs)
	}
	// Limits, paging and acknowledgement.
	if recs := must(s.GCList(ctx, Root, nil, 2))(t); len(recs) != 2 {
		t.Fatalf("limit 2 gave %d", len(recs))
	}
	for k := range recs {
		page := must(s.GCList(ctx, Root, &recs[k].ID, 10))(t)
		if len(page) != len(recs)-k-1 || len(page) > 0 && page[0].ID != recs[k+1].ID {
			t.Fatalf("after record %d (%+v): %d records, want the %d behind it", k, recs[k].ID, len(page), len(recs)-k-1)
		}
	}
	_, err := s.GCList(ctx, alice, nil, 10)
	wantCode(t, err, proto.EPERM)
	wantCode(t, s.GCDone(ctx, alice, nil), proto.EPERM)
	wantCode(t, s.GCDone(ctx, Root, make([]proto.GCID, gcBatchMax+1)), proto.EINVAL)
	if err := s.GCDone(ctx, Root, []proto.GCID{recs[0].ID, recs[1].ID, {Ino: 1, Seq: 1}}); err != nil {
		t.Fatal(err)
	}
	if recs := gcRecords(t, s); len(recs) != 2 {
		t.Fatalf("after done: %+v", recs)
	}
	// Deleting a truncated file makes its truncate records obsolete.
	if err := s.Unlink(ctx, Root, proto.RootIno, "c"); err != nil {
		t.Fatal(err)
	}
	recs = gcRecords(t, s)
	if len(recs) != 3 || !recs[1].Obsolete || recs[2].Kind != proto.GCDelete || recs[2].ID.Ino != c.Ino {
		t.Fatalf("after deleting c: %+v", recs)
	}
}
