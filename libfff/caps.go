package libfff

import (
	"context"
	"sync"
	"time"

	"fff/internal/proto"
)

// Capabilities (docs/security.md#capabilities): storage serves a file's
// chunks only with meta's capability for the file, which comes with every
// open, create and truncate. A File keeps its capability in a fileCap and
// renews it from meta when half its lifetime has passed, or at once when
// storage refuses it (BadCapability: expired by the node's clock, or the
// cluster's key changed) — then the request is sent again, once.

// fileCap is the capability of one open file (or of one truncate).
type fileCap struct {
	c   *Client
	ino uint64

	mu      sync.Mutex // held across a renewal: concurrent users wait for it
	cur     *proto.Capability
	renewAt time.Time       // by this host's clock
	flags   proto.OpenFlags // the access to renew
	sess    proto.Session   // the write session that renews write access
}

// newFileCap holds capability cur (nil from a meta without a key) of
// inode ino, valid for ttl ns, granting the access of flags; sess is the
// write session, if any.
func (c *Client) newFileCap(ino uint64, flags proto.OpenFlags, cur *proto.Capability, ttl int64, sess proto.Session) *fileCap {
	fc := &fileCap{c: c, ino: ino, flags: flags & (proto.OpenRead | proto.OpenWrite)}
	fc.set(cur, ttl, sess)
	return fc
}

// set replaces the capability (a new open of the file, e.g. after a
// truncate) and the write session that renews it.
func (fc *fileCap) set(cur *proto.Capability, ttl int64, sess proto.Session) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.setLocked(cur, ttl)
	fc.sess = sess
}

func (fc *fileCap) setLocked(cur *proto.Capability, ttl int64) {
	fc.cur = cur
	fc.renewAt = time.Now().Add(time.Duration(ttl / 2))
}

// get returns the capability to send with a request, renewed first if
// half its lifetime has passed. A failed early renewal is not an error:
// the capability still serves until storage refuses it.
func (fc *fileCap) get(ctx context.Context) *proto.Capability {
	if fc == nil {
		return nil
	}
	fc.mu.Lock()
	cur, due := fc.cur, fc.cur != nil && !time.Now().Before(fc.renewAt)
	fc.mu.Unlock()
	if due {
		if err := fc.renew(ctx, cur); err != nil {
			fc.c.log.Debug().Err(err).Uint64("ino", fc.ino).Msg("early capability renewal failed")
		} else {
			fc.mu.Lock()
			cur = fc.cur
			fc.mu.Unlock()
		}
	}
	return cur
}

// renew asks meta for a new capability, unless another caller already
// replaced stale meanwhile. Meta checks the caller's access again (a
// write session stands for write access), so renewal fails once the file
// may no longer be read.
func (fc *fileCap) renew(ctx context.Context, stale *proto.Capability) error {
	if fc == nil {
		return proto.Errorf(proto.BadCapability, "no capability")
	}
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if fc.cur != stale {
		return nil
	}
	flags := fc.flags
	if fc.sess.ID == 0 {
		flags &^= proto.OpenWrite
	}
	if flags == 0 {
		return proto.Errorf(proto.BadCapability, "capability of inode %d cannot be renewed (it was granted for one truncate)", fc.ino)
	}
	var resp proto.MetaCapabilityResp
	if err := fc.c.metaCall(ctx, proto.MethodMetaCapability, &proto.MetaCapabilityReq{Ino: fc.ino, Flags: flags, Session: fc.sess}, &resp); err != nil {
		return err
	}
	fc.setLocked(&resp.Cap, resp.TTL)
	return nil
}

// current returns the capability held now.
func (fc *fileCap) current() *proto.Capability {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.cur
}

// capRefused reports whether err is storage's refusal of a capability.
func capRefused(err error) bool { return proto.CodeOf(err) == proto.BadCapability }
