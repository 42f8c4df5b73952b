package meta

import (
	"errors"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// TestRemoteAuthenticator: a node without the user database asks meta over
// RPC: known tokens get their user (a fresh answer after the TTL, so a
// removed user is refused), unknown ones are refused, and while meta is
// unreachable a known token is accepted from a stale answer only within
// MaxStale.
func TestRemoteAuthenticator(t *testing.T) {
	s := newMem(t)
	adminTok := must(s.EnsureAdmin(ctx))(t)
	aliceTok := must(s.AddUser(ctx, Root, "alice", 1000, []uint32{1000, 7}, false))(t)
	srv, addr := serveRPC(t, s)
	pool := rpc.NewPool(addr, adminTok, rpc.PoolOptions{Size: 1, Client: rpc.ClientOptions{DefaultTimeout: 5 * time.Second}})
	t.Cleanup(func() { pool.Close() })

	alice := rpc.KeyOf(aliceTok).LookupID()
	fresh := NewRemoteAuthenticator(pool, RemoteAuthOptions{TTL: time.Nanosecond, MaxStale: -1})
	stale := NewRemoteAuthenticator(pool, RemoteAuthOptions{TTL: time.Nanosecond, MaxStale: time.Hour})
	for name, a := range map[string]*RemoteAuthenticator{"fresh": fresh, "stale": stale} {
		key, id, err := a.Lookup(ctx, alice)
		if err != nil || key != rpc.KeyOf(aliceTok) || id.UID != 1000 || id.Name != "alice" || id.Admin || len(id.GIDs) != 2 {
			t.Fatalf("%s: alice: %x %+v %v", name, key, id, err)
		}
	}
	if _, _, err := fresh.Lookup(ctx, rpc.KeyOf("nobody's").LookupID()); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("unknown token: %v", err)
	}

	// A user's own token cannot ask meta for credentials.
	mine := NewRemoteAuthenticator(rpc.NewPool(addr, aliceTok, rpc.PoolOptions{Size: 1}), RemoteAuthOptions{})
	if _, _, err := mine.Lookup(ctx, alice); !errors.Is(err, proto.ErrNotPermitted) {
		t.Fatalf("credentials asked with a user's token: %v", err)
	}

	// Rotated: the old token's answer is not used again.
	newTok := must(s.RotateToken(ctx, Root, "alice"))(t)
	if _, _, err := fresh.Lookup(ctx, alice); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("rotated-away token: %v", err)
	}
	if _, _, err := stale.Lookup(ctx, rpc.KeyOf(newTok).LookupID()); err != nil {
		t.Fatal(err)
	}

	// Meta unreachable: only an answer within MaxStale is used.
	srv.Close()
	pool.Close()
	if _, id, err := stale.Lookup(ctx, rpc.KeyOf(newTok).LookupID()); err != nil || id.Name != "alice" {
		t.Fatalf("stale answer while meta is down: %+v %v", id, err)
	}
	if _, _, err := fresh.Lookup(ctx, rpc.KeyOf(newTok).LookupID()); err == nil {
		t.Fatal("a token never asked about was accepted while meta is down")
	}
}
