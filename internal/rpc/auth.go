package rpc

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
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

// Authenticator maps a handshake token to an Identity. It returns an error
// (any error; proto.ErrUnauthenticated is conventional) to refuse the token.
// The server answers every refusal with the same Unauthenticated status, so
// nothing about the reason reaches the peer.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// StaticTokens is an Authenticator over a fixed token → Identity table, for
// tests and simple setups. Lookups take the same time whichever token, if
// any, matches: the presented token is hashed with SHA-256 and compared with
// every entry's hash using crypto/subtle.
type StaticTokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	sum [sha256.Size]byte
	id  Identity
}

// NewStaticTokens returns an Authenticator accepting exactly the tokens in m.
// The empty token is never accepted.
func NewStaticTokens(m map[string]Identity) *StaticTokens {
	s := &StaticTokens{}
	for tok, id := range m {
		if tok == "" {
			continue
		}
		id.GIDs = slices.Clone(id.GIDs)
		s.entries = append(s.entries, tokenEntry{sum: sha256.Sum256([]byte(tok)), id: id})
	}
	return s
}

// Authenticate implements Authenticator.
func (s *StaticTokens) Authenticate(_ context.Context, token string) (Identity, error) {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(sum[:], s.entries[i].sum[:]) == 1 {
			found = i // no early exit: every entry is compared
		}
	}
	if found < 0 || token == "" {
		return Identity{}, proto.ErrUnauthenticated
	}
	id := s.entries[found].id
	id.GIDs = slices.Clone(id.GIDs)
	return id, nil
}
