package meta

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Defaults of RemoteAuthOptions.
const (
	DefaultCredentialsTTL      = 30 * time.Second
	DefaultCredentialsMaxStale = 5 * time.Minute
	defaultCredentialsEntries  = 10_000
)

// RemoteAuthOptions configure a RemoteAuthenticator.
type RemoteAuthOptions struct {
	// TTL is how long an answer of meta's is used without asking again
	// (default 30 s): a removed user or a rotated token is refused by the
	// node's new connections within it.
	TTL time.Duration
	// MaxStale is how long past its TTL an answer is still used while
	// meta cannot be reached (default 5 min), so that a meta restart does
	// not lock known users out of the storage nodes. Negative: never.
	MaxStale time.Duration
	// Logger is told when a stale answer is used.
	Logger zerolog.Logger
}

// Caller is what a RemoteAuthenticator asks meta through: an *rpc.Pool or
// an *rpc.Conn authenticated as the admin.
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error)
}

// RemoteAuthenticator is the rpc.Authenticator of nodes that do not hold
// the user database (storage nodes): it asks a meta server for a token's
// stored key and user (MethodMetaCredentials) and remembers the answer for
// TTL. So users added after the node started can use it at once, and a
// user removed, or a token rotated, is refused within TTL. Only positive
// answers are kept: an unknown token costs a round trip to meta per
// handshake, which is what an unknown token's handshake costs anyway.
type RemoteAuthenticator struct {
	c    Caller
	opts RemoteAuthOptions

	mu    sync.Mutex
	cache map[rpc.LookupID]credEntry
}

type credEntry struct {
	key rpc.StoredKey
	id  rpc.Identity
	at  time.Time
}

// NewRemoteAuthenticator returns an authenticator asking meta through c.
func NewRemoteAuthenticator(c Caller, opts RemoteAuthOptions) *RemoteAuthenticator {
	if opts.TTL <= 0 {
		opts.TTL = DefaultCredentialsTTL
	}
	if opts.MaxStale == 0 {
		opts.MaxStale = DefaultCredentialsMaxStale
	}
	return &RemoteAuthenticator{c: c, opts: opts, cache: map[rpc.LookupID]credEntry{}}
}

// Lookup implements rpc.Authenticator.
func (a *RemoteAuthenticator) Lookup(ctx context.Context, lid rpc.LookupID) (rpc.StoredKey, rpc.Identity, error) {
	now := time.Now()
	a.mu.Lock()
	e, cached := a.cache[lid]
	a.mu.Unlock()
	if cached && now.Sub(e.at) < a.opts.TTL {
		return e.key, e.id.Clone(), nil
	}
	var resp proto.MetaCredentialsResp
	_, err := a.c.Call(ctx, proto.MethodMetaCredentials, &proto.MetaCredentialsReq{ID: lid[:]}, &resp)
	if err == nil && len(resp.Key) != len(rpc.StoredKey{}) {
		err = proto.Errorf(proto.EIO, "meta: credentials: a %d-byte key", len(resp.Key))
	}
	switch {
	case err == nil:
		e = credEntry{id: rpc.Identity{UID: resp.UID, GIDs: resp.GIDs, Admin: resp.Admin, Name: resp.Name}, at: now}
		copy(e.key[:], resp.Key)
		a.store(lid, e)
		return e.key, e.id.Clone(), nil
	case errors.Is(err, proto.ErrUnauthenticated):
		// Unknown to meta (removed, rotated): forget it.
		a.mu.Lock()
		delete(a.cache, lid)
		a.mu.Unlock()
		return rpc.StoredKey{}, rpc.Identity{}, err
	case cached && a.opts.MaxStale > 0 && now.Sub(e.at) < a.opts.TTL+a.opts.MaxStale:
		a.opts.Logger.Warn().Err(err).Str("user", e.id.Name).Dur("age", now.Sub(e.at)).Msg("meta unreachable: authenticating from a stale answer")
		return e.key, e.id.Clone(), nil
	}
	return rpc.StoredKey{}, rpc.Identity{}, err
}

// store caches e, making room by dropping expired answers (and, if none
// has expired, any one) when the cache is full.
func (a *RemoteAuthenticator) store(lid rpc.LookupID, e credEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cache[lid]; !ok && len(a.cache) >= defaultCredentialsEntries {
		horizon := a.opts.TTL + max(a.opts.MaxStale, 0)
		for k, o := range a.cache {
			if e.at.Sub(o.at) >= horizon {
				delete(a.cache, k)
			}
		}
		for k := range a.cache {
			if len(a.cache) < defaultCredentialsEntries {
				break
			}
			delete(a.cache, k)
		}
	}
	a.cache[lid] = e
}
