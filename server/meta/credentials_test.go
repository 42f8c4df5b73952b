package meta

import (
	"errors"
	"testing"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv"
)

// TestCredentials: the handshake's lookup by key id finds a user's token
// hash, follows rotation and removal, and works for users made before the
// id index existed once Init has run.
func TestCredentials(t *testing.T) {
	s := newMem(t)
	admin := must(s.Authenticate(ctx, must(s.EnsureAdmin(ctx))(t)))(t)
	tok := must(s.AddUser(ctx, admin, "bob", 1001, []uint32{1001}, false))(t)
	lookup := func(tok string) (Identity, error) {
		k := rpc.KeyOf(tok)
		id := k.LookupID()
		sum, who, err := s.Credentials(ctx, id[:])
		if err == nil && rpc.StoredKey(sum) != k {
			t.Fatalf("Credentials returned another hash for %q", tok)
		}
		return who, err
	}
	if who, err := lookup(tok); err != nil || who.UID != 1001 || who.Name != "bob" {
		t.Fatalf("bob: %+v %v", who, err)
	}
	for _, bad := range []string{"", "x", tok + "x"} {
		if _, err := lookup(bad); !errors.Is(err, proto.ErrUnauthenticated) {
			t.Fatalf("token %q: %v", bad, err)
		}
	}
	if _, _, err := s.Credentials(ctx, []byte("short")); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("short id: %v", err)
	}

	// A KV from before the index: Init adds it.
	k := rpc.KeyOf(tok)
	err := s.db.Update(ctx, func(tx kv.Txn) error { return tx.Clear(tokenIDKey(k[:])) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lookup(tok); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("without the index entry: %v", err)
	}
	if err := s.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := lookup(tok); err != nil {
		t.Fatalf("after Init: %v", err)
	}

	ntok := must(s.RotateToken(ctx, admin, "bob"))(t)
	if _, err := lookup(tok); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("old token after rotation: %v", err)
	}
	if _, err := lookup(ntok); err != nil {
		t.Fatalf("new token: %v", err)
	}
	wantCode(t, s.RemoveUser(ctx, admin, "bob"), proto.OK)
	if _, err := lookup(ntok); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("removed user: %v", err)
	}
}
