package meta

import (
	"strconv"
	"strings"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
)

// garbage is a value no record decodes from (0xc1 is never used by
// msgpack).
var garbage = []byte{0xc1, 'g', 'a', 'r', 'b', 'a', 'g', 'e'}

// setRecord overwrites the record k of db with v.
func setRecord(t *testing.T, db kv.DB, k, v []byte) {
	t.Helper()
	if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Set(k, v) }); err != nil {
		t.Fatal(err)
	}
}

// populated is a service with a directory, two files (/a/x returned) and
// a user.
func populated(t *testing.T, db kv.DB) (*Service, proto.Inode) {
	t.Helper()
	s := newService(t, db, Options{})
	d := mkdir(t, s, Root, proto.RootIno, "a", 0o755)
	x := create(t, s, Root, d.Ino, "x", 0o644)
	create(t, s, Root, d.Ino, "y", 0o644)
	if _, err := s.AddUser(ctx, Root, "alice", 1000, []uint32{1000}, false); err != nil {
		t.Fatal(err)
	}
	return s, x
}

func TestCheckRecordsClean(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		populated(t, db)
		problems, n, err := CheckRecords(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 0 {
			t.Errorf("clean DB: problems %v", problems)
		}
		if n < 6 {
			t.Errorf("clean DB: %d records read, want at least 6", n)
		}
	})
}

func TestCheckRecordsDamaged(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		_, x := populated(t, db)
		y := inodeKey(x.Ino + 1000)
		setRecord(t, db, inodeKey(x.Ino), garbage)
		// A well-formed inode record under another inode's key.
		setRecord(t, db, y, marshal(&proto.Inode{Ino: x.Ino + 1, Type: proto.TypeFile}))
		unknown := []byte("Zzz")
		setRecord(t, db, unknown, []byte("v"))

		problems, _, err := CheckRecords(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			string(inodeKey(x.Ino)): "undecodable",
			string(y):               "under key of inode",
			string(unknown):         "unknown record kind",
		}
		for _, p := range problems {
			w, ok := want[string(p.Key)]
			if !ok {
				t.Errorf("unexpected problem %v", p)
				continue
			}
			if !strings.Contains(p.Reason, w) {
				t.Errorf("problem %v: reason does not say %q", p, w)
			}
			delete(want, string(p.Key))
		}
		for k := range want {
			t.Errorf("key %q not reported", k)
		}
	})
}

func TestCheckRecord(t *testing.T) {
	good := marshal(&proto.Inode{Ino: 7, Type: proto.TypeFile})
	for _, tc := range []struct {
		name string
		k, v []byte
		want string // "" or a part of the reason
	}{
		{"good inode", inodeKey(7), good, ""},
		{"garbage inode", inodeKey(7), garbage, "undecodable"},
		{"inode number disagrees", inodeKey(8), good, "inode record of inode 7 under key of inode 8"},
		{"unknown prefix", []byte("Zabc"), good, "unknown record kind"},
		{"empty key", nil, good, "empty key"},
		{"garbage dentry", dentryKey(1, "x"), garbage, "undecodable"},
		{"short counter", keyNextIno, []byte{1}, "want 8"},
	} {
		got := CheckRecord(tc.k, tc.v)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: CheckRecord = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestDamagedRecordEIO: a record that does not decode fails the operations
// that touch it with EIO naming it; the rest of the namespace works.
func TestDamagedRecordEIO(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s, x := populated(t, db)
		a := must(s.Lookup(ctx, Root, proto.RootIno, "a"))(t)
		setRecord(t, db, inodeKey(x.Ino), garbage)

		_, err := s.Lookup(ctx, Root, a.Ino, "x")
		wantCode(t, err, proto.EIO)
		if !strings.Contains(err.Error(), "inode "+strconv.FormatUint(x.Ino, 10)) {
			t.Errorf("error does not name the inode: %v", err)
		}
		_, err = s.Stat(ctx, Root, x.Ino)
		wantCode(t, err, proto.EIO)
		must(s.Lookup(ctx, Root, a.Ino, "y"))(t)

		es, _, err := s.ReadDir(ctx, Root, a.Ino, "", 0, true)
		if err != nil {
			t.Fatalf("readdir plus of a directory with a damaged entry: %v", err)
		}
		var got []string
		for _, e := range es {
			got = append(got, e.Name)
			if (e.Attr == nil) != (e.Name == "x") {
				t.Errorf("entry %q: attr %v", e.Name, e.Attr)
			}
		}
		if strings.Join(got, " ") != "x y" {
			t.Errorf("readdir: %v, want x y", got)
		}

		// An entry whose inode record is lost (as after a salvage).
		z := create(t, s, Root, a.Ino, "z", 0o644)
		if err := db.Update(ctx, func(tx kv.Txn) error { return tx.Clear(inodeKey(z.Ino)) }); err != nil {
			t.Fatal(err)
		}
		_, err = s.Lookup(ctx, Root, a.Ino, "z")
		wantCode(t, err, proto.ENOENT)
		es, _, err = s.ReadDir(ctx, Root, a.Ino, "", 0, true)
		if err != nil || len(es) != 3 || es[2].Attr != nil {
			t.Fatalf("readdir plus with a lost inode: %v, %v", es, err)
		}

		setRecord(t, db, dentryKey(a.Ino, "y"), garbage)
		_, err = s.Lookup(ctx, Root, a.Ino, "y")
		wantCode(t, err, proto.EIO)
		if !strings.Contains(err.Error(), `entry "y"`) {
			t.Errorf("error does not name the entry: %v", err)
		}
		_, _, err = s.ReadDir(ctx, Root, a.Ino, "", 0, false)
		wantCode(t, err, proto.EIO)

		setRecord(t, db, userKey("alice"), garbage)
		_, err = s.ListUsers(ctx, Root)
		wantCode(t, err, proto.EIO)
		if !strings.Contains(err.Error(), `user "alice"`) {
			t.Errorf("error does not name the user: %v", err)
		}
	})
}

// TestCheckLinks: CheckRecords (and so fffd check) reports inodes whose
// names disagree with the directory entries; a schema 1 namespace, whose
// links Init has not recorded yet, is not compared.
func TestCheckLinks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(n *proto.Inode, other uint64)
		want   string // "" or a part of the one reason
		v1     string // the same in a schema 1 namespace
	}{
		{"clean", func(*proto.Inode, uint64) {}, "", ""},
		{"a link too many", func(n *proto.Inode, other uint64) { n.Links = append(n.Links, other) }, "names recorded in directories", ""},
		{"a link missing", func(n *proto.Inode, _ uint64) { n.Links = nil }, "names recorded in directories", ""},
		{"the wrong directory", func(n *proto.Inode, other uint64) { n.Links = []uint64{other} }, "but its entries are in", ""},
		{"nlink", func(n *proto.Inode, _ uint64) { n.Nlink = 2 }, "nlink 2, but 1 entries", "nlink 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, db kv.DB) {
				s, x := populated(t, db)
				n := rawInode(t, s, x.Ino)
				tc.damage(&n, x.Ino+7)
				setRecord(t, db, inodeKey(x.Ino), marshal(&n))
				for _, v := range []struct {
					version uint64
					want    string
				}{{schemaVersion, tc.want}, {1, tc.v1}} {
					setRecord(t, db, keyVersion, u64Bytes(v.version))
					problems, _, err := CheckRecords(ctx, db)
					if err != nil {
						t.Fatal(err)
					}
					switch {
					case v.want == "" && len(problems) > 0:
						t.Errorf("schema %d: problems %v, want none", v.version, problems)
					case v.want != "" && (len(problems) != 1 || !strings.Contains(problems[0].Reason, v.want) ||
						string(problems[0].Key) != string(inodeKey(x.Ino))):
						t.Errorf("schema %d: problems %v, want one of inode %d saying %q", v.version, problems, x.Ino, v.want)
					}
				}
			})
		})
	}
}

// TestCheckDirectoryParent: a directory whose parent is not the directory
// holding its entry is reported.
func TestCheckDirectoryParent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s, _ := populated(t, db)
		b := mkdir(t, s, Root, proto.RootIno, "b", 0o755)
		c := mkdir(t, s, Root, b.Ino, "c", 0o755)
		n := rawInode(t, s, c.Ino)
		n.Parent = proto.RootIno
		setRecord(t, db, inodeKey(c.Ino), marshal(&n))
		problems, _, err := CheckRecords(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if len(problems) != 1 || !strings.Contains(problems[0].Reason, "parent 1, but its entries are in ["+strconv.FormatUint(b.Ino, 10)+"]") {
			t.Fatalf("problems %v", problems)
		}
	})
}
