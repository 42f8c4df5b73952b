package storage

import (
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Capability checks (docs/security.md#capabilities): a chunk id alone
// grants nothing. A caller other than the admin (the nodes and the
// cluster's root) presents, with each request, meta's capability for the
// inode of the chunks it names, and the node checks it with the cluster's
// key, without asking meta.

// authorize checks that id may have the access mode to inode ino's chunks
// with capability c.
func (s *Service) authorize(id rpc.Identity, c *proto.Capability, ino uint64, mode uint8) error {
	if id.Admin || s.unchecked {
		return nil
	}
	if s.caps == nil {
		return proto.Errorf(proto.BadCapability, "storage: node %d has no capability key: only the admin may use its chunks", s.nodeID)
	}
	return s.caps.Check(c, id.UID, ino, mode, time.Now().UnixNano())
}

// maxLinearCaps is how many capabilities a request may carry before its
// grants are looked up through a map rather than by scanning.
const maxLinearCaps = 8

// readGrants checks the read capabilities of a batched request, each once
// and only when an IO needs it (a request naming no inode of a capability
// costs no MAC), so a request with many capabilities costs one check per
// inode it reads.
type readGrants struct {
	s       *Service
	id      rpc.Identity
	caps    []proto.Capability
	checked []capCheck     // per cap
	index   map[uint64]int // ino → caps index, for many caps
}

// capCheck is one capability's check, once made.
type capCheck struct {
	done bool
	err  error
}

// grants returns the read checks of a request from id carrying caps. More
// capabilities than IOs is a malformed request (each costs a check).
func (s *Service) grants(id rpc.Identity, caps []proto.Capability, ios int) (*readGrants, error) {
	if len(caps) > ios {
		return nil, proto.Errorf(proto.BadRequest, "storage: %d capabilities for %d IOs", len(caps), ios)
	}
	if id.Admin || s.unchecked {
		return nil, nil
	}
	g := &readGrants{s: s, id: id, caps: caps, checked: make([]capCheck, len(caps))}
	if len(caps) > maxLinearCaps {
		g.index = make(map[uint64]int, len(caps))
		for i := len(caps) - 1; i >= 0; i-- { // the first of duplicates wins, as in a scan
			g.index[caps[i].Ino] = i
		}
	}
	return g, nil
}

// check reports whether the request may read inode ino's chunks. A nil g
// allows everything.
func (g *readGrants) check(ino uint64) error {
	if g == nil {
		return nil
	}
	i := -1
	if g.index != nil {
		if k, ok := g.index[ino]; ok {
			i = k
		}
	} else {
		for k := range g.caps {
			if g.caps[k].Ino == ino {
				i = k
				break
			}
		}
	}
	if i < 0 {
		return g.s.authorize(g.id, nil, ino, proto.CapRead)
	}
	if c := &g.checked[i]; !c.done {
		c.err, c.done = g.s.authorize(g.id, &g.caps[i], ino, proto.CapRead), true
	}
	return g.checked[i].err
}
