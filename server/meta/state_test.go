package meta

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
	"fff/server/kv/bboltkv"
)

func TestInodeBlocksNeverOverlap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		svcs := []*Service{
			newService(t, db, Options{InoBlock: 7}),
			newService(t, db, Options{InoBlock: 16}),
			newService(t, db, Options{}),
		}
		var mu sync.Mutex
		seen := map[uint64]bool{}
		var wg sync.WaitGroup
		for g := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := svcs[g%len(svcs)]
				for range 200 {
					ino, err := s.allocIno(ctx)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					if seen[ino] || ino < firstIno {
						t.Errorf("inode id %d handed out twice or reserved", ino)
					}
					seen[ino] = true
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
}

func TestTwoServicesOneKV(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		a := newService(t, db, Options{})
		b := newService(t, db, Options{})
		d := mkdir(t, a, Root, proto.RootIno, "d", 0o777)
		if got := must(b.Lookup(ctx, Root, proto.RootIno, "d"))(t); got.Ino != d.Ino {
			t.Fatal("b does not see a's mkdir")
		}
		o := must(b.Create(ctx, alice, d.Ino, "f", 0o644, proto.OpenWrite))(t)
		// a closes b's session: sessions live in the KV.
		must(a.Close(ctx, alice, o.Session, 77, true))(t)
		if n := must(b.Stat(ctx, alice, o.Inode.Ino))(t); n.Size != 77 {
			t.Fatalf("b sees size %d", n.Size)
		}
		if err := a.Rename(ctx, alice, d.Ino, "f", d.Ino, "g"); err != nil {
			t.Fatal(err)
		}
		if got := names(t, b, d.Ino); !slices.Equal(got, []string{"g"}) {
			t.Fatalf("b lists %v", got)
		}
		tok := must(a.AddUser(ctx, Root, "u", 5, nil, false))(t)
		if id := must(b.Authenticate(ctx, tok))(t); id.UID != 5 {
			t.Fatal("b does not know a's user")
		}
		must(b.SetLayout(ctx, Root, d.Ino, proto.DirLayout{ChainTable: 2}))(t)
		if o := must(a.Create(ctx, alice, d.Ino, "h", 0o644, 0))(t); o.Inode.Layout.ChainTable != 2 {
			t.Fatal("a ignores b's layout policy")
		}
		if err := b.Unlink(ctx, alice, d.Ino, "g"); err != nil {
			t.Fatal(err)
		}
		if len(gcRecords(t, a)) != 1 {
			t.Fatal("a does not see b's GC record")
		}
		sa, sb := must(a.StatFS(ctx, Root))(t), must(b.StatFS(ctx, Root))(t)
		if sa != sb || sa.Inodes != 3 {
			t.Fatalf("statfs %+v vs %+v", sa, sb)
		}
	})
}

func TestRestartPersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	open := func() (kv.DB, *Service) {
		db, err := bboltkv.Open(path, &bboltkv.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return db, newService(t, db, Options{})
	}
	db, s := open()
	d := mkdir(t, s, Root, proto.RootIno, "data", 0o750)
	o := must(s.Create(ctx, Root, d.Ino, "f", 0o640, proto.OpenWrite))(t)
	must(s.Close(ctx, Root, o.Session, 12345, true))(t)
	must(s.Symlink(ctx, Root, d.Ino, "sl", "f"))(t)
	open2 := must(s.Create(ctx, Root, d.Ino, "open", 0o644, proto.OpenWrite))(t)
	tok := must(s.EnsureAdmin(ctx))(t)
	must(s.SetLayout(ctx, Root, d.Ino, proto.DirLayout{ChunkSize: 1 << 20}))(t)
	before := must(s.StatFS(ctx, Root))(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, s = open()
	defer db.Close()
	n := must(s.StatPath(ctx, Root, "/data/sl", true))(t)
	if n.Ino != o.Inode.Ino || n.Size != 12345 || n.Mode != 0o640 || n.Layout == nil || len(n.Layout.Chains) != 8 {
		t.Fatalf("after restart: %+v", n)
	}
	if got := names(t, s, d.Ino); !slices.Equal(got, []string{"f", "open", "sl"}) {
		t.Fatalf("after restart: %v", got)
	}
	if after := must(s.StatFS(ctx, Root))(t); after != before {
		t.Fatalf("statfs %+v -> %+v", before, after)
	}
	if id, err := s.Authenticate(ctx, tok); err != nil || !id.Admin {
		t.Fatalf("admin token after restart: %+v %v", id, err)
	}
	if again := must(s.EnsureAdmin(ctx))(t); again != "" {
		t.Fatal("EnsureAdmin made a second admin token")
	}
	// The write session survived the restart.
	must(s.Close(ctx, Root, open2.Session, 9, true))(t)
	// New inode ids do not collide with the old ones.
	g := create(t, s, Root, d.Ino, "g", 0o644)
	if g.Ino <= open2.Inode.Ino || g.Layout.ChunkSize != 1<<20 {
		t.Fatalf("new file after restart: %+v", g)
	}
}

func TestRemoveAll(t *testing.T) {
	s := newMem(t)
	in := tree(t, s, "top", "a/", "a/b/", "a/b/c/", "a/b/c/f", "a/b/g", "a/h", "e/", "l@a", "x")
	o := must(s.Open(ctx, Root, in["a/b/g"].Ino, proto.OpenWrite))(t)
	n, err := s.RemoveAll(ctx, Root, in[""].Ino, "a")
	if err != nil || n != 6 {
		t.Fatalf("RemoveAll = %d, %v", n, err)
	}
	if got := names(t, s, in[""].Ino); !slices.Equal(got, []string{"e", "l", "x"}) {
		t.Fatalf("left %v", got)
	}
	// The open file lives on until its writer closes.
	must(s.Close(ctx, Root, o.Session, 0, false))(t)
	if n, err := s.RemoveAll(ctx, Root, in[""].Ino, "x"); err != nil || n != 1 {
		t.Fatalf("RemoveAll of a file = %d, %v", n, err)
	}
	_, err = s.RemoveAll(ctx, Root, in[""].Ino, "nope")
	wantCode(t, err, proto.ENOENT)
	// Permissions apply inside the tree.
	p := mkdir(t, s, alice, must(s.Mkdir(ctx, Root, proto.RootIno, "pub", 0o777))(t).Ino, "mine", 0o755)
	mkdir(t, s, Root, p.Ino, "roots", 0o755)
	create(t, s, Root, must(s.Lookup(ctx, Root, p.Ino, "roots"))(t).Ino, "f", 0o644)
	_, err = s.RemoveAll(ctx, alice, p.Parent, "mine")
	wantCode(t, err, proto.EACCES)
	if n, err := s.RemoveAll(ctx, Root, p.Parent, "mine"); err != nil || n != 3 {
		t.Fatalf("root RemoveAll = %d %v", n, err)
	}
	if st := must(s.StatFS(ctx, Root))(t); st.Inodes != 5 { // /, top, top/e, top/l, pub
		t.Fatalf("inodes = %d", st.Inodes)
	}
}

// TestRemoveAllLargerThanOneTxn removes a tree whose removal in one
// transaction exceeds the KV's 10 MB limit.
func TestRemoveAllLargerThanOneTxn(t *testing.T) {
	s := newMem(t)
	top := mkdir(t, s, Root, proto.RootIno, "big", 0o755)
	const subdirs, perDir = 4, 1000
	pad := strings.Repeat("p", 200)
	for i := range subdirs {
		d := mkdir(t, s, Root, top.Ino, fmt.Sprint("d", i), 0o755)
		// Create straight in the KV in big transactions: much faster than
		// one Create each, and the tree is the same.
		err := s.db.Update(ctx, func(tx kv.Txn) error {
			for j := range perDir {
				ino := uint64(1_000_000 + i*perDir + j)
				n := &proto.Inode{Ino: ino, Type: proto.TypeFile, Mode: 0o644, Nlink: 1, Layout: &proto.Layout{ChunkSize: 1 << 20, Stripe: 1, Chains: []uint32{1}}}
				if err := putDentry(tx, d.Ino, fmt.Sprintf("%s%04d", pad, j), n); err != nil {
					return err
				}
				if err := putInode(tx, n); err != nil {
					return err
				}
				if err := addCount(tx, ino, 1); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// Removing it all in one transaction is too large.
	var dirs []uint64
	for i := range subdirs {
		dirs = append(dirs, must(s.Lookup(ctx, Root, top.Ino, fmt.Sprint("d", i)))(t).Ino)
	}
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		for _, d := range dirs {
			b, e := prefixRange(dentryPrefix(d))
			kvs, err := tx.Range(b, e, kv.RangeOptions{})
			if err != nil {
				return err
			}
			for _, p := range kvs {
				var de dentry
				if err := unmarshal(p.Value, &de); err != nil {
					return err
				}
				n, err := loadInode(tx, de.Ino)
				if err != nil {
					return err
				}
				if err := tx.Clear(p.Key); err != nil {
					return err
				}
				// What release does, minus the session check (whose
				// range read over a large write buffer is slow in tests).
				if err := queueDelete(tx, n, 0); err != nil {
					return err
				}
				if err := tx.Clear(inodeKey(n.Ino)); err != nil {
					return err
				}
				if err := addCount(tx, n.Ino, -1); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if !errors.Is(err, kv.ErrTxnTooLarge) {
		t.Fatalf("one-transaction removal: %v, want kv.ErrTxnTooLarge", err)
	}
	n, err := s.RemoveAll(ctx, Root, proto.RootIno, "big")
	if err != nil || n != subdirs*perDir+subdirs+1 {
		t.Fatalf("RemoveAll = %d, %v", n, err)
	}
	if st := must(s.StatFS(ctx, Root))(t); st.Inodes != 1 {
		t.Fatalf("inodes left: %d", st.Inodes)
	}
	if recs := must(s.GCList(ctx, Root, nil, gcBatchMax))(t); len(recs) != subdirs*perDir {
		t.Fatalf("%d GC records, want %d", len(recs), subdirs*perDir)
	}
}
