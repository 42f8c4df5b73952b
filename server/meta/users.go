package meta

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"slices"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/kv"
)

// Users and tokens. A user U<name> has a uid, groups, an admin flag and the
// SHA-256 of its token; T<sha256(token)> indexes users by token hash, and
// T<lookup id> (16 bytes: rpc.StoredKey.LookupID of that hash, what a
// client names its key by in the RPC handshake) too. The
// token itself (32 random bytes, base64url without padding: 43 characters)
// is shown once, when it is made, and never stored: a lost token cannot be
// recovered, only replaced (RotateToken). An admin user, or a user with uid
// 0, is root for permission checks.

// AdminUser is the name of the user EnsureAdmin creates.
const AdminUser = "admin"

// maxUserName bounds user names.
const maxUserName = 64

func checkUserName(name string) error {
	if name == "" || len(name) > maxUserName {
		return proto.Errorf(proto.EINVAL, "user name %q: 1 to %d characters", name, maxUserName)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return proto.Errorf(proto.EINVAL, "user name %q: only letters, digits, '.', '_' and '-'", name)
		}
	}
	return nil
}

// newToken returns a fresh random token and its SHA-256.
func newToken() (string, []byte) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("meta: crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(tok))
	return tok, sum[:]
}

func loadUser(tx kv.ReadTxn, name string) (*userRec, error) {
	v, err := tx.Get(userKey(name))
	if err != nil || v == nil {
		return nil, err
	}
	var u userRec
	if err := unmarshal(v, &u); err != nil {
		return nil, damagedf(err, "user %q", name)
	}
	return &u, nil
}

func putUser(tx kv.Txn, u *userRec) error {
	if err := tx.Set(userKey(u.Name), marshal(u)); err != nil {
		return err
	}
	if err := tx.Set(tokenKey(u.TokenHash), []byte(u.Name)); err != nil {
		return err
	}
	return tx.Set(tokenIDKey(u.TokenHash), []byte(u.Name))
}

// clearTokenKeys removes the index entries of token hash sum.
func clearTokenKeys(tx kv.Txn, sum []byte) error {
	if err := tx.Clear(tokenKey(sum)); err != nil {
		return err
	}
	return tx.Clear(tokenIDKey(sum))
}

// tokenIDKey is the T<lookup id> key of token hash sum. A lookup id has 16
// bytes, a hash 32: the two kinds of T keys never collide.
func tokenIDKey(sum []byte) []byte {
	var k rpc.StoredKey
	copy(k[:], sum)
	id := k.LookupID()
	return tokenKey(id[:])
}

// indexTokenIDs adds the T<lookup id> entries that users made before
// they existed lack (Init runs it).
func (s *Service) indexTokenIDs(ctx context.Context) error {
	return s.db.Update(ctx, indexTokenIDsTx)
}

func indexTokenIDsTx(tx kv.Txn) error {
	return eachUser(tx, func(u *userRec, err error) error {
		if err != nil {
			return nil // reported by fffd check; Lookup fails for this user only
		}
		v, err := tx.Get(tokenIDKey(u.TokenHash))
		if err != nil || v != nil {
			return err
		}
		return tx.Set(tokenIDKey(u.TokenHash), []byte(u.Name))
	})
}

// eachUser calls fn with every user record in name order, or with the
// error that decoding one gave (naming the user); fn's error stops it.
func eachUser(tx kv.ReadTxn, fn func(u *userRec, err error) error) error {
	b, e := prefixRange([]byte{pUser})
	kvs, err := tx.Range(b, e, kv.RangeOptions{})
	if err != nil {
		return err
	}
	for _, p := range kvs {
		var u userRec
		if err := unmarshal(p.Value, &u); err != nil {
			err = damagedf(err, "user %q", p.Key[1:])
			if err := fn(nil, err); err != nil {
				return err
			}
			continue
		}
		if err := fn(&u, nil); err != nil {
			return err
		}
	}
	return nil
}

// AddUser creates user name with uid, groups gids (the first is the
// primary group) and the admin flag, and returns its token. Root only
// (EPERM); EEXIST if the name is taken. Several users may share a uid.
func (s *Service) AddUser(ctx context.Context, id Identity, name string, uid uint32, gids []uint32, admin bool) (string, error) {
	if !id.IsRoot() {
		return "", proto.Errorf(proto.EPERM, "add user %q", name)
	}
	return s.addUser(ctx, name, uid, gids, admin, false)
}

func (s *Service) addUser(ctx context.Context, name string, uid uint32, gids []uint32, admin, existingOK bool) (string, error) {
	if err := checkUserName(name); err != nil {
		return "", err
	}
	tok, sum := newToken()
	now := s.now()
	created := false
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		created = false
		u, err := loadUser(tx, name)
		if err != nil {
			return err
		}
		if u != nil {
			if existingOK {
				return nil
			}
			return proto.Errorf(proto.EEXIST, "user %q", name)
		}
		created = true
		return putUser(tx, &userRec{Name: name, UID: uid, GIDs: slices.Clone(gids), Admin: admin, TokenHash: sum, Created: now})
	})
	if err != nil || !created {
		return "", err
	}
	return tok, nil
}

// EnsureAdmin creates the admin user (AdminUser: uid 0, gid 0, admin) if it
// does not exist and returns its token; if it exists it returns "" (the
// token was shown when it was made: the launcher saves it in a file only
// its owner can read). A lost admin token is replaced with
// RotateToken(ctx, Root, AdminUser) by a tool with direct access to the KV.
func (s *Service) EnsureAdmin(ctx context.Context) (string, error) {
	return s.addUser(ctx, AdminUser, 0, []uint32{0}, true, true)
}

// RotateToken gives user name a new token, returned, and invalidates the
// old one. Root only (EPERM); ENOENT for an unknown user.
func (s *Service) RotateToken(ctx context.Context, id Identity, name string) (string, error) {
	if !id.IsRoot() {
		return "", proto.Errorf(proto.EPERM, "rotate token of %q", name)
	}
	tok, sum := newToken()
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		u, err := loadUser(tx, name)
		if err != nil {
			return err
		}
		if u == nil {
			return proto.Errorf(proto.ENOENT, "no user %q", name)
		}
		if err := clearTokenKeys(tx, u.TokenHash); err != nil {
			return err
		}
		u.TokenHash = sum
		if name == AdminUser && s.opts.AdminToken != nil {
			if err := s.opts.AdminToken(tx, tok); err != nil {
				return err
			}
		}
		return putUser(tx, u)
	})
	if err != nil {
		return "", err
	}
	return tok, nil
}

// ListUsers returns every user, by name. Root only (EPERM).
func (s *Service) ListUsers(ctx context.Context, id Identity) ([]proto.User, error) {
	if !id.IsRoot() {
		return nil, proto.Errorf(proto.EPERM, "list users")
	}
	var out []proto.User
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		out = nil
		return eachUser(tx, func(u *userRec, err error) error {
			if err == nil {
				out = append(out, proto.User{Name: u.Name, UID: u.UID, GIDs: u.GIDs, Admin: u.Admin, Created: u.Created})
			}
			return err
		})
	})
	return out, err
}

// RemoveUser deletes user name; its token stops working for new
// connections. Root only (EPERM); ENOENT for an unknown user; EPERM for the
// last admin user.
func (s *Service) RemoveUser(ctx context.Context, id Identity, name string) error {
	if !id.IsRoot() {
		return proto.Errorf(proto.EPERM, "remove user %q", name)
	}
	return s.db.Update(ctx, func(tx kv.Txn) error {
		u, err := loadUser(tx, name)
		if err != nil {
			return err
		}
		if u == nil {
			return proto.Errorf(proto.ENOENT, "no user %q", name)
		}
		if u.Admin {
			admins := 0
			err := eachUser(tx, func(o *userRec, err error) error {
				if err == nil && o.Admin {
					admins++
				}
				return err
			})
			if err != nil {
				return err
			}
			if admins <= 1 {
				return proto.Errorf(proto.EPERM, "cannot remove user %q: it is the last admin user (add another admin first)", name)
			}
		}
		if err := clearTokenKeys(tx, u.TokenHash); err != nil {
			return err
		}
		return tx.Clear(userKey(name))
	})
}

// Authenticate returns the identity of token, or proto.ErrUnauthenticated.
// The token is looked up by its SHA-256 (so the lookup's timing reveals
// nothing usable about the token) and the stored hash is compared in
// constant time.
func (s *Service) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, proto.ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	var out Identity
	found := false
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		found = false
		name, err := tx.Get(tokenKey(sum[:]))
		if err != nil || name == nil {
			return err
		}
		u, err := loadUser(tx, string(name))
		if err != nil || u == nil {
			return err
		}
		if subtle.ConstantTimeCompare(u.TokenHash, sum[:]) != 1 {
			return nil
		}
		found = true
		out = Identity{UID: u.UID, GIDs: slices.Clone(u.GIDs), Admin: u.Admin, Name: u.Name}
		return nil
	})
	if err != nil {
		return Identity{}, err
	}
	if !found {
		return Identity{}, proto.ErrUnauthenticated
	}
	return out, nil
}

// Credentials returns the token hash (the rpc.StoredKey) and the identity
// of the user whose token hash has lookup id id (rpc.StoredKey.LookupID),
// or proto.ErrUnauthenticated. The RPC handshake checks the client's proof
// against the hash (rpc.Authenticator).
func (s *Service) Credentials(ctx context.Context, id []byte) ([]byte, Identity, error) {
	if len(id) != len(rpc.LookupID{}) {
		return nil, Identity{}, proto.ErrUnauthenticated
	}
	var sum []byte
	var out Identity
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		sum = nil
		name, err := tx.Get(tokenKey(id))
		if err != nil || name == nil {
			return err
		}
		u, err := loadUser(tx, string(name))
		if err != nil || u == nil {
			return err
		}
		k := tokenIDKey(u.TokenHash)
		if len(u.TokenHash) != sha256.Size || !bytes.Equal(k[1:], id) {
			return nil // a stale entry
		}
		sum = slices.Clone(u.TokenHash)
		out = Identity{UID: u.UID, GIDs: slices.Clone(u.GIDs), Admin: u.Admin, Name: u.Name}
		return nil
	})
	if err != nil {
		return nil, Identity{}, err
	}
	if sum == nil {
		return nil, Identity{}, proto.ErrUnauthenticated
	}
	return sum, out, nil
}
