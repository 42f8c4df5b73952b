package meta

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
)

// tree builds, under a fresh directory of root, the entries named in spec:
// "x/" is a directory, "x@t" a symlink to t, anything else a file. It
// returns the inode of every path (relative to the fresh directory, "" for
// itself).
func tree(t testing.TB, s *Service, top string, spec ...string) map[string]proto.Inode {
	t.Helper()
	out := map[string]proto.Inode{"": mkdir(t, s, Root, proto.RootIno, top, 0o777)}
	for _, p := range spec {
		dir, name := "", p
		if i := lastSlash(p[:len(p)-1]); i >= 0 {
			dir, name = p[:i], p[i+1:]
		}
		parent := out[dir].Ino
		switch {
		case name[len(name)-1] == '/':
			out[p[:len(p)-1]] = mkdir(t, s, Root, parent, name[:len(name)-1], 0o777)
		case slices.Contains([]byte(name), '@'):
			i := slices.Index([]byte(name), '@')
			out[dir+pathSep(dir)+name[:i]] = must(s.Symlink(ctx, Root, parent, name[:i], name[i+1:]))(t)
		default:
			out[p] = create(t, s, Root, parent, name, 0o666)
		}
	}
	return out
}

func lastSlash(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return i
		}
	}
	return -1
}

func pathSep(dir string) string {
	if dir == "" {
		return ""
	}
	return "/"
}

func TestRenameMatrix(t *testing.T) {
	spec := []string{"f", "g", "d/", "d/x", "e/", "e/sub/", "e/sub/deep/", "empty/", "empty2/", "h", "sl@f"}
	cases := []struct {
		name     string
		src, dst string // paths relative to the test's directory
		code     proto.Code
		gone     string // path expected to be gone afterwards
		replaced bool   // dst's old inode must be gone
	}{
		{name: "file rename", src: "f", dst: "f2", gone: "f"},
		{name: "file into dir", src: "f", dst: "d/f", gone: "f"},
		{name: "file over file", src: "f", dst: "g", gone: "f", replaced: true},
		{name: "file over symlink", src: "f", dst: "sl", gone: "f", replaced: true},
		{name: "symlink rename", src: "sl", dst: "d/sl", gone: "sl"},
		{name: "file over dir", src: "f", dst: "empty", code: proto.EISDIR},
		{name: "dir rename", src: "d", dst: "d2", gone: "d"},
		{name: "dir over empty dir", src: "d", dst: "empty", gone: "d", replaced: true},
		{name: "dir over non-empty dir", src: "empty", dst: "d", code: proto.ENOTEMPTY},
		{name: "dir over file", src: "d", dst: "f", code: proto.ENOTDIR},
		{name: "dir into itself", src: "e", dst: "e/e", code: proto.EINVAL},
		{name: "dir into own subtree", src: "e", dst: "e/sub/deep/e", code: proto.EINVAL},
		{name: "dir into own child", src: "e", dst: "e/sub/e", code: proto.EINVAL},
		{name: "ancestor over descendant", src: "e/sub", dst: "e/sub/deep", code: proto.EINVAL},
		{name: "descendant over ancestor", src: "e/sub/deep", dst: "e", code: proto.ENOTEMPTY},
		{name: "dir up one level", src: "e/sub/deep", dst: "deep", gone: "e/sub/deep"},
		{name: "dir to cousin", src: "e/sub", dst: "d/sub", gone: "e/sub"},
		{name: "onto itself", src: "f", dst: "f"},
		{name: "dir onto itself", src: "e", dst: "e"},
		{name: "missing source", src: "nope", dst: "x", code: proto.ENOENT},
		{name: "into missing dir", src: "f", dst: "nope/f", code: proto.ENOENT},
		{name: "empty dir over empty dir", src: "empty", dst: "empty2", gone: "empty", replaced: true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newMem(t)
			top := fmt.Sprintf("t%d", i)
			in := tree(t, s, top, spec...)
			src, dst := in[c.src], in[c.dst]
			sdir, sname := split(c.src)
			ddir, dname := split(c.dst)
			dparent := in[ddir].Ino
			if ddir == "nope" {
				dparent = 999999
			}
			before := must(s.StatFS(ctx, Root))(t).Inodes
			err := s.Rename(ctx, Root, in[sdir].Ino, sname, dparent, dname)
			wantCode(t, err, c.code)
			if c.code != proto.OK {
				for p, n := range in { // nothing changed
					got, err := s.StatPath(ctx, Root, top+"/"+p, false)
					if err != nil || got.Ino != n.Ino {
						t.Fatalf("%s changed by a failed rename: %v", p, err)
					}
				}
				return
			}
			got := must(s.StatPath(ctx, Root, top+"/"+c.dst, false))(t)
			if got.Ino != src.Ino {
				t.Fatalf("dst is inode %d, want %d", got.Ino, src.Ino)
			}
			if c.gone != "" {
				_, err := s.StatPath(ctx, Root, top+"/"+c.gone, false)
				wantCode(t, err, proto.ENOENT)
			}
			after := must(s.StatFS(ctx, Root))(t).Inodes
			if c.replaced {
				_, err := s.Stat(ctx, Root, dst.Ino)
				wantCode(t, err, proto.ENOENT)
				if after != before-1 {
					t.Fatalf("inodes %d -> %d after replacing", before, after)
				}
			} else if after != before {
				t.Fatalf("inodes %d -> %d", before, after)
			}
			if got.Type == proto.TypeDir {
				if got.Parent != dparent {
					t.Fatalf("moved dir's parent = %d, want %d", got.Parent, dparent)
				}
				if dd := must(s.Lookup(ctx, Root, got.Ino, ".."))(t); dd.Ino != dparent {
					t.Fatal(".. of the moved dir is wrong")
				}
			}
		})
	}
}

func split(p string) (string, string) {
	if i := lastSlash(p); i >= 0 {
		return p[:i], p[i+1:]
	}
	return "", p
}

func TestRenameHardLinksOfOneInode(t *testing.T) {
	s := newMem(t)
	f := create(t, s, Root, proto.RootIno, "a", 0o644)
	must(s.Link(ctx, Root, f.Ino, proto.RootIno, "b"))(t)
	if err := s.Rename(ctx, Root, proto.RootIno, "a", proto.RootIno, "b"); err != nil {
		t.Fatal(err)
	}
	// POSIX: nothing happens, both names stay.
	if got := names(t, s, proto.RootIno); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("names = %v", got)
	}
	if n := must(s.Stat(ctx, Root, f.Ino))(t); n.Nlink != 2 {
		t.Fatalf("nlink = %d", n.Nlink)
	}
	// Replacing one link of a multiply linked file keeps the inode.
	g := create(t, s, Root, proto.RootIno, "g", 0o644)
	if err := s.Rename(ctx, Root, proto.RootIno, "g", proto.RootIno, "a"); err != nil {
		t.Fatal(err)
	}
	if n := must(s.Stat(ctx, Root, f.Ino))(t); n.Nlink != 1 {
		t.Fatalf("nlink after replacing a link = %d", n.Nlink)
	}
	if n := must(s.Lookup(ctx, Root, proto.RootIno, "a"))(t); n.Ino != g.Ino {
		t.Fatal("a is not g")
	}
}

func TestConcurrentCreateSameName(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		s2 := newService(t, db, Options{}) // a second meta over the same KV
		for _, kind := range []string{"create", "mkdir", "symlink", "link"} {
			t.Run(kind, func(t *testing.T) {
				d := mkdir(t, s, Root, proto.RootIno, kind, 0o777)
				if kind == "link" {
					for i := range 64 {
						create(t, s, Root, d.Ino, fmt.Sprint("src", i), 0o644)
					}
				}
				var wg sync.WaitGroup
				errs := make([]error, 64)
				for i := range 64 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						svc := s
						if i%2 == 1 {
							svc = s2
						}
						switch kind {
						case "create":
							_, errs[i] = svc.Create(ctx, alice, d.Ino, "same", 0o644, proto.OpenExcl|proto.OpenWrite)
						case "mkdir":
							_, errs[i] = svc.Mkdir(ctx, alice, d.Ino, "same", 0o755)
						case "symlink":
							_, errs[i] = svc.Symlink(ctx, alice, d.Ino, "same", "t")
						case "link":
							var n proto.Inode
							n, errs[i] = svc.Lookup(ctx, alice, d.Ino, fmt.Sprint("src", i))
							if errs[i] == nil {
								_, errs[i] = svc.Link(ctx, alice, n.Ino, d.Ino, "same")
							}
						}
					}()
				}
				wg.Wait()
				wins := 0
				for _, err := range errs {
					if err == nil {
						wins++
					} else if !isCode(err, proto.EEXIST) {
						t.Fatalf("unexpected error %v", err)
					}
				}
				if wins != 1 {
					t.Fatalf("%d winners, want exactly 1", wins)
				}
				es, _, err := s.ReadDir(ctx, Root, d.Ino, "", 0, false)
				if err != nil {
					t.Fatal(err)
				}
				if kind != "link" && len(es) != 1 {
					t.Fatalf("directory holds %d entries", len(es))
				}
			})
		}
	})
}

// TestConcurrentRenames shuffles files between directories, and
// directories between parents, from many goroutines and two Services; the
// final tree must hold every file exactly once and still be a tree.
func TestConcurrentRenames(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s1 := newService(t, db, Options{})
		s2 := newService(t, db, Options{})
		const ndirs, nfiles, workers, ops = 6, 60, 16, 60
		top := mkdir(t, s1, Root, proto.RootIno, "top", 0o777)
		dirs := make([]uint64, ndirs)
		for i := range dirs {
			dirs[i] = mkdir(t, s1, Root, top.Ino, fmt.Sprint("d", i), 0o777).Ino
		}
		want := map[string]bool{}
		for i := range nfiles {
			name := fmt.Sprintf("f%03d", i)
			want[name] = true
			create(t, s1, Root, dirs[i%ndirs], name, 0o644)
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(uint64(w), 7))
				s := s1
				if w%2 == 1 {
					s = s2
				}
				for range ops {
					if r.IntN(4) == 0 {
						// Move a directory under another one (loops refused).
						a, b := r.IntN(ndirs), r.IntN(ndirs)
						da := must(s.Stat(ctx, Root, dirs[a]))(t)
						err := s.Rename(ctx, Root, da.Parent, fmt.Sprint("d", a), dirs[b], fmt.Sprint("d", a))
						if err != nil && !isCode(err, proto.EINVAL) && !isCode(err, proto.ENOENT) {
							t.Error(err)
							return
						}
						continue
					}
					name := fmt.Sprintf("f%03d", r.IntN(nfiles))
					from, to := dirs[r.IntN(ndirs)], dirs[r.IntN(ndirs)]
					err := s.Rename(ctx, Root, from, name, to, name)
					if err != nil && !isCode(err, proto.ENOENT) {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		// Walk the tree from top: every directory exactly once, parent
		// pointers consistent, every file exactly once.
		got := map[string]int{}
		seenDirs := map[uint64]bool{}
		var walk func(ino uint64)
		walk = func(ino uint64) {
			if seenDirs[ino] {
				t.Fatalf("directory %d reached twice", ino)
			}
			seenDirs[ino] = true
			es, _, err := s1.ReadDir(ctx, Root, ino, "", MaxReadDirLimit, true)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				if e.Type == proto.TypeDir {
					if e.Attr.Parent != ino {
						t.Fatalf("dir %s has parent %d, listed in %d", e.Name, e.Attr.Parent, ino)
					}
					walk(e.Ino)
				} else {
					got[e.Name]++
				}
			}
		}
		walk(top.Ino)
		if len(seenDirs) != ndirs+1 {
			t.Fatalf("reached %d directories, want %d (a loop detached some)", len(seenDirs), ndirs+1)
		}
		for name, n := range got {
			if n != 1 || !want[name] {
				t.Fatalf("file %s appears %d times", name, n)
			}
		}
		if len(got) != nfiles {
			t.Fatalf("%d files, want %d", len(got), nfiles)
		}
	})
}
