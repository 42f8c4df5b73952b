package main

import (
	"strings"
	"testing"
)

func TestFindFFFMount(t *testing.T) {
	const table = `22 1 0:21 / /proc rw,nosuid - proc proc rw
45 27 0:40 / /tmp/mnt rw,nosuid,nodev,relatime - fuse.fff fff:127.0.0.1:34853 rw,user_id=0,group_id=0
46 27 0:41 / /tmp/other rw,relatime shared:5 - fuse.sshfs host:/x rw
47 27 0:42 / /tmp/with\040space rw master:1 - fuse fff:10.0.0.1:8000 rw
48 27 0:43 / /tmp/stacked rw - fuse.fff fff:a:1 rw
49 48 0:44 / /tmp/stacked rw - tmpfs tmpfs rw
`
	for _, tc := range []struct {
		mnt, src string
		ok       bool
	}{
		{"/tmp/mnt", "fff:127.0.0.1:34853", true},
		{"/tmp/with space", "fff:10.0.0.1:8000", true}, // fstype "fuse" of an older fusermount
		{"/tmp/other", "", false},
		{"/proc", "", false},
		{"/tmp", "", false},
		{"/tmp/mn", "", false},
		{"/tmp/stacked", "", false}, // the top mount is what a lookup sees
	} {
		src, ok := findFFFMount(strings.NewReader(table), tc.mnt)
		if ok != tc.ok || ok && src != tc.src {
			t.Errorf("findFFFMount(%q) = %q, %v; want %q, %v", tc.mnt, src, ok, tc.src, tc.ok)
		}
	}
}
