package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"fff/internal/proto"
)

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		spec  string
		cur   uint32
		dir   bool
		want  uint32
		fails bool
	}{
		{spec: "755", want: 0o755},
		{spec: "1777", want: 0o1777},
		{spec: "0644", want: 0o644},
		{spec: "u+x", cur: 0o644, want: 0o744},
		{spec: "go-w", cur: 0o666, want: 0o644},
		{spec: "a=rX", cur: 0o700, want: 0o555},
		{spec: "a=rX", cur: 0o600, want: 0o444},
		{spec: "a=rX", cur: 0o600, dir: true, want: 0o555},
		{spec: "+t", cur: 0o777, want: 0o1777},
		{spec: "u+s,g+s", cur: 0o755, want: 0o6755},
		{spec: "o=", cur: 0o757, want: 0o750},
		{spec: "u=rwx,go=rx", cur: 0o777, want: 0o755},
		{spec: "+x", cur: 0o644, want: 0o755},
		{spec: "", fails: true},
		{spec: "9", fails: true},
		{spec: "17777", fails: true},
		{spec: "u", fails: true},
		{spec: "u*x", fails: true},
	} {
		got, err := parseMode(tc.spec, tc.cur, tc.dir)
		if (err != nil) != tc.fails || err == nil && got != tc.want {
			t.Errorf("parseMode(%q, %o) = %o, %v; want %o (fails %v)", tc.spec, tc.cur, got, err, tc.want, tc.fails)
		}
	}
}

func TestParseOwner(t *testing.T) {
	for _, tc := range []struct {
		spec     string
		uid, gid int
		fails    bool
	}{
		{spec: "1000", uid: 1000, gid: -1},
		{spec: "1000:5", uid: 1000, gid: 5},
		{spec: ":5", uid: -1, gid: 5},
		{spec: "7:", uid: 7, gid: -1},
		{spec: ":", fails: true},
		{spec: "alice", fails: true},
		{spec: "-1", fails: true},
	} {
		uid, gid, err := parseOwner(tc.spec)
		if (err != nil) != tc.fails || err == nil && (uid != tc.uid || gid != tc.gid) {
			t.Errorf("parseOwner(%q) = %d, %d, %v", tc.spec, uid, gid, err)
		}
	}
}

func TestLsMode(t *testing.T) {
	for _, tc := range []struct {
		n    proto.Inode
		want string
	}{
		{proto.Inode{Type: proto.TypeDir, Mode: 0o755}, "drwxr-xr-x"},
		{proto.Inode{Type: proto.TypeDir, Mode: 0o1777}, "drwxrwxrwt"},
		{proto.Inode{Type: proto.TypeDir, Mode: 0o1770}, "drwxrwx--T"},
		{proto.Inode{Type: proto.TypeFile, Mode: 0o4755}, "-rwsr-xr-x"},
		{proto.Inode{Type: proto.TypeFile, Mode: 0o2640}, "-rw-r-S---"},
		{proto.Inode{Type: proto.TypeSymlink, Mode: 0o777}, "lrwxrwxrwx"},
	} {
		if got := lsMode(&tc.n); got != tc.want {
			t.Errorf("lsMode(%v %o) = %s, want %s", tc.n.Type, tc.n.Mode, got, tc.want)
		}
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.Local)
	if got := lsTime(now.Add(-time.Hour), now); got != "Jun  1 11:00" {
		t.Errorf("recent: %q", got)
	}
	if got := lsTime(now.AddDate(-1, 0, 0), now); got != "Jun  1  2024" {
		t.Errorf("old: %q", got)
	}
}

// TestPrintLsEveryDay renders ls -l lines with the clock on every day of a
// month (days 1-9 are space-padded, 10-31 are not) and of a year ago, and
// checks the fields and the column alignment: the test that would have
// caught an end-to-end check that only passed on days 10-31.
func TestPrintLsEveryDay(t *testing.T) {
	for day := 1; day <= 31; day++ {
		now := time.Date(2026, 12, day, 12, 0, 0, 0, time.Local)
		for _, tc := range []struct {
			mtime time.Time
			when  string // the fields after the size
		}{
			{now.Add(-time.Minute), fmt.Sprintf("Dec %d 11:59", day)},
			{now.AddDate(-1, 0, 0), fmt.Sprintf("Dec %d 2025", day)},
		} {
			es := []lsEntry{
				{"a", &proto.Inode{Type: proto.TypeDir, Mode: 0o755, Nlink: 1, Mtime: tc.mtime.UnixNano()}},
				{"long-name", &proto.Inode{Type: proto.TypeFile, Mode: 0o644, Nlink: 12, UID: 1000, Size: 123456, Mtime: tc.mtime.UnixNano()}},
			}
			var b strings.Builder
			printLs(&b, es, true, false, now)
			lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("day %d: %d lines:\n%s", day, len(lines), b.String())
			}
			for i, want := range []string{
				"drwxr-xr-x 1 0 0 0 " + tc.when + " a",
				"-rw-r--r-- 12 1000 0 123456 " + tc.when + " long-name",
			} {
				if got := strings.Join(strings.Fields(lines[i]), " "); got != want {
					t.Errorf("day %d: line %d fields %q, want %q", day, i, got, want)
				}
			}
			if len(lines[0])-len("a") != len(lines[1])-len("long-name") {
				t.Errorf("day %d: columns not aligned:\n%s", day, b.String())
			}
		}
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		// As coreutils' ls -lh / du -h --apparent-size: rounded up.
		{0, "0"}, {1, "1"}, {1023, "1023"}, {1024, "1.0K"}, {1025, "1.1K"}, {1536, "1.5K"},
		{10189, "10K"}, {10240, "10K"}, {10241, "11K"}, {1048575, "1.0M"}, {1048576, "1.0M"},
		{5000000, "4.8M"}, {1 << 30, "1.0G"}, {1<<40 + 1, "1.1T"}, {1<<64 - 1, "16E"},
	} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestPrintLsHuman(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	es := []lsEntry{
		{"big", &proto.Inode{Type: proto.TypeFile, Mode: 0o644, Nlink: 1, Size: 5000000, Mtime: now.UnixNano()}},
		{"small", &proto.Inode{Type: proto.TypeFile, Mode: 0o644, Nlink: 1, Size: 12, Mtime: now.UnixNano()}},
	}
	var b strings.Builder
	printLs(&b, es, true, true, now)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 || strings.Fields(lines[0])[4] != "4.8M" || strings.Fields(lines[1])[4] != "12" {
		t.Fatalf("ls -lh:\n%s", b.String())
	}
	if strings.Index(lines[0], "4.8M")+4 != strings.Index(lines[1], "12")+2 {
		t.Errorf("sizes not right-aligned:\n%s", b.String())
	}
}

// TestStatJSON checks stat --json's keys and words, and that its times do
// not depend on the local time zone.
func TestStatJSON(t *testing.T) {
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC).UnixNano()
	file := &proto.Inode{Ino: 7, Type: proto.TypeFile, Mode: 0o4755, Nlink: 2, UID: 5, GID: 6, Size: 3,
		Atime: mtime, Mtime: mtime, Ctime: mtime, WriteVer: 1,
		Layout: &proto.Layout{ChainTable: 1, ChunkSize: 4 << 20, Stripe: 2, Chains: []uint32{2, 1}, Seed: 0xabc}}
	dir := &proto.Inode{Ino: 1, Type: proto.TypeDir, Mode: 0o1777, Nlink: 1, Parent: 1}
	link := &proto.Inode{Ino: 9, Type: proto.TypeSymlink, Mode: 0o777, Nlink: 1, Size: 3, Target: "a/b"}
	for _, tz := range []string{"UTC", "Pacific/Kiritimati", "America/St_Johns"} {
		loc, err := time.LoadLocation(tz)
		if err != nil {
			t.Skipf("no zone data: %v", err)
		}
		saved := time.Local
		time.Local = loc
		got := map[string]string{}
		for p, n := range map[string]*proto.Inode{"/f": file, "/": dir, "/l": link} {
			b, err := json.Marshal(newStatJSON(p, n))
			if err != nil {
				t.Fatal(err)
			}
			got[p] = string(b)
		}
		time.Local = saved
		for p, want := range map[string]string{
			"/f": `{"path":"/f","type":"file","ino":7,"mode":"4755","perms":"-rwsr-xr-x","nlink":2,"uid":5,"gid":6,"size":3,` +
				`"atime":"2026-01-02T03:04:05.000000006Z","mtime":"2026-01-02T03:04:05.000000006Z","ctime":"2026-01-02T03:04:05.000000006Z",` +
				`"truncates":0,"writes":1,"layout":{"chain_table":1,"chunk_size":4194304,"stripe":2,"chains":[2,1],"seed":"0xabc"}}`,
			"/": `{"path":"/","type":"dir","ino":1,"mode":"1777","perms":"drwxrwxrwt","nlink":1,"uid":0,"gid":0,"size":0,` +
				`"atime":"1970-01-01T00:00:00.000000000Z","mtime":"1970-01-01T00:00:00.000000000Z","ctime":"1970-01-01T00:00:00.000000000Z",` +
				`"parent":1,"new_files":{"chain_table":0,"chunk_size":0,"stripe":0}}`,
			"/l": `{"path":"/l","type":"symlink","ino":9,"mode":"0777","perms":"lrwxrwxrwx","nlink":1,"uid":0,"gid":0,"size":3,` +
				`"atime":"1970-01-01T00:00:00.000000000Z","mtime":"1970-01-01T00:00:00.000000000Z","ctime":"1970-01-01T00:00:00.000000000Z",` +
				`"target":"a/b"}`,
		} {
			if got[p] != want {
				t.Errorf("TZ=%s: stat --json %s:\n got %s\nwant %s", tz, p, got[p], want)
			}
		}
	}
}

func TestJoinArg(t *testing.T) {
	for _, tc := range []struct{ dir, name, want string }{
		{"/", "a", "/a"}, {"/a", "b", "/a/b"}, {"/a/", "b", "/a/b"}, {"fff:///", "b", "fff:///b"}, {"fff://h:1/x", "y", "fff://h:1/x/y"},
	} {
		if got := joinArg(tc.dir, tc.name); got != tc.want {
			t.Errorf("joinArg(%q, %q) = %q, want %q", tc.dir, tc.name, got, tc.want)
		}
	}
}
