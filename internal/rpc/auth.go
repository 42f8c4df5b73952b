package rpc

import (
	"context"
	"crypto/sha256"
	"slices"

	"fff/internal/proto"
)

// Identity is who a connection's token belongs to. Handlers receive it with
// every request and use it for permission checks.
type Identity struct {
	UID   uint32
	GIDs  []uint32
	Admin bool // the cluster admin: acts as root
	Name  string
}

// Clone returns a copy of i that shares no memory with it.
func (i Identity) Clone() Identity {
	i.GIDs = slices.Clone(i.GIDs)
	return i
}

// StoredKey is all a server keeps of a token: its SHA-256. The handshake
// proves knowledge of the token against it (docs/wire.md), so a copy of
// the server's keys does not let anyone connect.
type StoredKey [sha256.Size]byte

// KeyOf returns the StoredKey of token.
func KeyOf(token string) StoredKey { return sha256.Sum256([]byte(token)) }

// LookupID names a StoredKey in the hello without revealing it: the first
// 16 bytes of SHA-256("fff-id" || key). Servers index their keys by it.
type LookupID [16]byte

// LookupID returns k's lookup id.
func (k StoredKey) LookupID() LookupID {
	h := sha256.New()
	h.Write([]byte("fff-id"))
	h.Write(k[:])
	var id LookupID
	copy(id[:], h.Sum(nil))
	return id
}

// Authenticator finds the key a client claims in its hello. The server
// checks the client's proof against the key itself (nothing else learns
// the token) and then gives the connection the Identity.
type Authenticator interface {
	// Lookup returns the stored key and identity of the token whose key
	// has lookup id id, or an error (any error; proto.ErrUnauthenticated
	// for an unknown id is conventional). The server answers every refusal,
	// unknown id or wrong proof, with the same Unauthenticated status after
	// the same exchange, so nothing about the reason reaches the peer.
	Lookup(ctx context.Context, id LookupID) (StoredKey, Identity, error)
}

// StaticTokens is an Authenticator over a fixed token → Identity table, for
// tests and simple setups. It keeps only the tokens' StoredKeys.
type StaticTokens struct {
	entries map[LookupID]tokenEntry
}

type tokenEntry struct {
	key StoredKey
	id  Identity
}

// NewStaticTokens returns an Authenticator accepting exactly the tokens in m.
// The empty token is never accepted.
func NewStaticTokens(m map[string]Identity) *StaticTokens {
	s := &StaticTokens{entries: make(map[LookupID]tokenEntry, len(m))}
	for tok, id := range m {
		if tok == "" {
			continue
		}
		k := KeyOf(tok)
		s.entries[k.LookupID()] = tokenEntry{key: k, id: id.Clone()}
	}
	return s
}

// Lookup implements Authenticator. The lookup id is public (it travels in
// the hello), so a map lookup leaks nothing by its timing.
func (s *StaticTokens) Lookup(_ context.Context, id LookupID) (StoredKey, Identity, error) {
	e, ok := s.entries[id]
	if !ok {
		return StoredKey{}, Identity{}, proto.ErrUnauthenticated
	}
	return e.key, e.id.Clone(), nil
}
