package main

import (
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
			printLs(&b, es, true, now)
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
