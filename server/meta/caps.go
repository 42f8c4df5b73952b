package meta

import (
	"context"

	"fff/internal/proto"
	"fff/server/kv"
)

// Storage capabilities (docs/security.md#capabilities). Meta hands one out
// with every open, create and size change, once the call's permission
// checks passed: it proves them to storage, which checks it with the
// cluster key without asking meta. A capability lasts
// Options.CapabilityTTL; the client renews it with Capability before, and
// a renewal checks again, so a chmod, a lost directory permission or a
// removed user reaches the chunks of files already open within one TTL —
// except for the writer of a write session, which keeps it as an open
// descriptor keeps its access.

// issueCap returns a capability granting id mode to inode ino, and its
// lifetime in ns; nil without a key.
func (s *Service) issueCap(id Identity, ino uint64, mode uint8) (*proto.Capability, int64) {
	if s.opts.Capabilities == nil || mode == 0 {
		return nil, 0
	}
	ttl := s.opts.CapabilityTTL.Nanoseconds()
	c := s.opts.Capabilities.Issue(ino, mode, id.UID, s.now()+ttl)
	return &c, ttl
}

// capMode is the capability access of an open with flags.
func capMode(flags proto.OpenFlags) uint8 {
	var m uint8
	if flags&proto.OpenRead != 0 {
		m |= proto.CapRead
	}
	if flags&(proto.OpenWrite|proto.OpenTrunc) != 0 {
		m |= proto.CapWrite
	}
	return m
}

// Capability renews a capability for file ino: write access through
// write session sess, which must be id's and ino's (EBADF otherwise); read
// access (proto.OpenRead in flags) after Open's checks for reading (Access). A
// write capability without a session is EBADF: writers hold one.
func (s *Service) Capability(ctx context.Context, id Identity, ino uint64, flags proto.OpenFlags, sess proto.Session) (proto.Capability, int64, error) {
	if s.opts.Capabilities == nil {
		return proto.Capability{}, 0, proto.Errorf(proto.ENOTSUP, "meta: no capability key configured")
	}
	var mode uint8
	if flags&proto.OpenWrite != 0 {
		if sess.ID == 0 || sess.Ino != ino {
			return proto.Capability{}, 0, proto.Errorf(proto.EBADF, "capability to write inode %d: needs a write session of it", ino)
		}
		err := s.db.View(ctx, func(tx kv.ReadTxn) error {
			_, err := loadSession(tx, id, sess)
			return err
		})
		if err != nil {
			return proto.Capability{}, 0, err
		}
		mode |= proto.CapWrite
	}
	if flags&proto.OpenRead != 0 {
		if _, err := s.Access(ctx, id, ino, proto.OpenRead); err != nil {
			return proto.Capability{}, 0, err
		}
		mode |= proto.CapRead
	}
	if mode == 0 {
		return proto.Capability{}, 0, proto.Errorf(proto.EINVAL, "capability for inode %d: no access asked", ino)
	}
	c, ttl := s.issueCap(id, ino, mode)
	return *c, ttl, nil
}
