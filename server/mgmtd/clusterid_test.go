package mgmtd

import (
	"testing"

	"fff/server/kv/memkv"
)

// The cluster id is created once and survives restarts: target directories
// record it, so a new id on restart would make every target foreign.
func TestClusterIDStable(t *testing.T) {
	ctx := t.Context()
	db := memkv.New()
	ids := make([]string, 2)
	for i := range ids {
		s, err := New(ctx, db, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ri, err := s.GetRouting(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = ri.ClusterID
	}
	if ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("cluster ids across a restart: %q, %q; want one non-empty id", ids[0], ids[1])
	}
	other, err := New(ctx, memkv.New(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ri, _ := other.GetRouting(ctx, 0); ri.ClusterID == ids[0] {
		t.Fatalf("two clusters share the id %q", ids[0])
	}
}
