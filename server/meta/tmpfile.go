package meta

import (
	"context"

	"fff/internal/proto"
	"fff/server/kv"
)

// Anonymous files and Publish: Linux's O_TMPFILE + linkat, for writers
// that must never show a partial file under its name (fff put and cp).
//
// CreateTemp makes a file inode with nlink 0 and a write session marked
// as its creator (session.Anon), and no directory entry. Nobody can reach
// it by name, Open and Link refuse it (nlink 0), and like a file unlinked
// while open it lives as long as its session. The writer writes its
// chunks, then Publish links the inode under a name in one transaction
// that also applies the writer's final length and replaces what was there
// as rename(2) does: a reader of the name sees the old file or the whole
// new one, never a part of it. The writer then closes the session as
// usual.
//
// A writer that gives up closes the session: the file, never linked, is
// deleted and its chunks are queued for GC (release). A writer that dies
// leaves its session to PruneSessions, which does the same once the
// session is older than its maxAge.

// CreateTemp creates an anonymous file for writing: a file inode with mode,
// the caller's uid and group (the directory's in a setgid directory) and
// the layout directory parent's policy selects, with nlink 0, no directory
// entry, and a write session that alone may Publish it. Needs write and
// search permission on parent, as Create does.
func (s *Service) CreateTemp(ctx context.Context, id Identity, parent uint64, mode uint32) (Opened, error) {
	ino, err := s.allocIno(ctx)
	if err != nil {
		return Opened{}, err
	}
	now := s.now()
	sid := newSessionID()
	var out Opened
	err = s.withTable(ctx, func(tx kv.Txn, tableID uint32, table []uint32) error {
		out = Opened{}
		p, err := loadReachableDir(tx, id, parent, "create temp")
		if err != nil {
			return err
		}
		if err := access(id, p, permW|permX, "create temp"); err != nil {
			return err
		}
		n := newInode(id, p, ino, proto.TypeFile, mode, now)
		n.Nlink = 0
		if n.Layout, err = s.fileLayout(p, ino, tableID, table); err != nil {
			return err
		}
		// Counted now: release uncounts it whether or not it was published.
		if err := addCount(tx, ino, 1); err != nil {
			return err
		}
		rec := session{UID: id.UID, TruncVer: n.TruncVer, Created: now, Updated: now, Anon: true}
		if err := tx.Set(sessionKey(ino, sid), marshal(rec)); err != nil {
			return err
		}
		out = Opened{Inode: public(n), Session: proto.Session{Ino: ino, ID: sid}, Created: true}
		return putInode(tx, n)
	})
	return out, err
}

// Publish links the anonymous file of write session r.Session (made by
// CreateTemp and not published yet) as r.Name in directory r.Parent, in
// one transaction that first applies r.Length and r.Wrote as
// ReportLength does. An existing entry of that name is replaced as Rename
// replaces it (a file or symlink loses a link and is deleted with its last
// one; EISDIR for a directory), or, with r.NoReplace, makes Publish fail
// with EEXIST. The session stays open: the writer closes it as usual.
//
// Errors: EBADF for an unknown session or one of another uid (root may use
// any), EINVAL for a session that did not create an anonymous file or has
// published it already; the permissions of Rename on r.Parent: write and
// search, and the sticky-directory rule for a replaced entry.
func (s *Service) Publish(ctx context.Context, id Identity, r proto.MetaPublishReq) (proto.Inode, error) {
	if err := checkName(r.Name); err != nil {
		return proto.Inode{}, err
	}
	if err := checkFileSize("publish", r.Session.Ino, r.Length); err != nil {
		return proto.Inode{}, err
	}
	now := s.now()
	var out proto.Inode
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		rec, err := loadSession(tx, id, r.Session)
		if err != nil {
			return err
		}
		if !rec.Anon {
			return proto.Errorf(proto.EINVAL, "publish inode %d: session %d holds no unpublished anonymous file", r.Session.Ino, r.Session.ID)
		}
		n, err := loadInode(tx, r.Session.Ino)
		if err != nil {
			return err
		}
		dp, err := loadReachableDir(tx, id, r.Parent, "publish")
		if err != nil {
			return err
		}
		if err := access(id, dp, permW|permX, "publish"); err != nil {
			return err
		}
		d, exists, err := loadDentry(tx, r.Parent, r.Name)
		if err != nil {
			return err
		}
		if exists {
			if r.NoReplace {
				return proto.Errorf(proto.EEXIST, "publish %q in %d", r.Name, r.Parent)
			}
			old, err := loadInode(tx, d.Ino)
			if err != nil {
				return err
			}
			if err := stickyOK(id, dp, old, "publish"); err != nil {
				return err
			}
			if old.Type == proto.TypeDir {
				return proto.Errorf(proto.EISDIR, "publish onto %q in %d: a directory", r.Name, r.Parent)
			}
			if err := dropLink(tx, old, r.Parent, now); err != nil {
				return err
			}
		}
		applyLength(n, rec, r.Length, r.Wrote, now)
		n.Nlink = 1
		n.Links = []uint64{r.Parent}
		n.Ctime = now
		if err := putDentry(tx, r.Parent, r.Name, n); err != nil {
			return err
		}
		if err := putInode(tx, n); err != nil {
			return err
		}
		rec.Anon = false
		rec.Updated = now
		out = public(n)
		return tx.Set(sessionKey(r.Session.Ino, r.Session.ID), marshal(rec))
	})
	return out, err
}
