package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"fff/internal/proto"
)

func TestTargetIDFile(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := readTargetID(dir); ok || err != nil {
		t.Fatalf("no id file: ok %v, err %v; want neither", ok, err)
	}
	want := targetID{Cluster: "c1", Target: 7, Node: 1}
	if err := writeTargetID(dir, want); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, targetIDFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("id file mode %v, want 0600", fi.Mode().Perm())
	}
	got, ok, err := readTargetID(dir)
	if err != nil || !ok || got != want {
		t.Fatalf("read back %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if err := os.WriteFile(filepath.Join(dir, targetIDFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readTargetID(dir); !errors.Is(err, proto.ErrIO) {
		t.Fatalf("damaged id file: %v, want ErrIO", err)
	}
}

func TestCheckTargetID(t *testing.T) {
	ri := &proto.RoutingInfo{ClusterID: "c1", Targets: []proto.Target{{ID: 1, NodeID: 1}, {ID: 2, NodeID: 2}}}
	for _, tc := range []struct {
		name string
		id   targetID
		ok   bool
	}{
		{"ours", targetID{Cluster: "c1", Target: 1, Node: 1}, true},
		{"other cluster", targetID{Cluster: "c2", Target: 1, Node: 1}, false},
		{"unknown target", targetID{Cluster: "c1", Target: 9, Node: 1}, false},
		{"other node's target", targetID{Cluster: "c1", Target: 2, Node: 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkTargetID("/d/targets/0", tc.id, ri, 1)
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, errForeignTarget) || !strings.Contains(err.Error(), "/d/targets/0") {
				t.Fatalf("err %v: want errForeignTarget naming the directory", err)
			}
		})
	}
}
