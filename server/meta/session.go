package meta

import (
	"context"
	"math/rand/v2"
	"time"

	"fff/internal/proto"
	"fff/server/kv"
)

// Write sessions. Opening a file for writing records a session
// S<ino><session id> with the file's truncate version at that moment. The
// writer reports the file's length on Close and ReportLength (on fsync and
// periodically); meta keeps the maximum of the reported lengths, except
// that a report from a session opened before the file's latest truncate is
// ignored. A session also keeps an unlinked file alive (nlink 0) until it
// ends. Read-only opens leave no record.

func newSessionID() uint64 {
	for {
		if id := rand.Uint64(); id != 0 {
			return id
		}
	}
}

// putSession records a new write session of file n.
func putSession(tx kv.Txn, id Identity, n *proto.Inode, sid uint64, now int64) (proto.Session, error) {
	rec := session{UID: id.UID, TruncVer: n.TruncVer, Created: now, Updated: now}
	if err := tx.Set(sessionKey(n.Ino, sid), marshal(rec)); err != nil {
		return proto.Session{}, err
	}
	return proto.Session{Ino: n.Ino, ID: sid}, nil
}

// openCheck checks that id may open n (reachable already) with flags:
// its type, its link count and its permission bits.
func openCheck(id Identity, n *proto.Inode, flags proto.OpenFlags) error {
	writing := flags&(proto.OpenWrite|proto.OpenTrunc) != 0
	switch {
	case n.Type == proto.TypeDir && writing:
		return proto.Errorf(proto.EISDIR, "open %d for writing", n.Ino)
	case n.Type == proto.TypeSymlink:
		return proto.Errorf(proto.ELOOP, "open %d: a symlink", n.Ino)
	case n.Nlink == 0:
		return proto.Errorf(proto.ENOENT, "open %d: unlinked", n.Ino)
	}
	var want uint32
	if flags&proto.OpenRead != 0 {
		want |= permR
	}
	if writing {
		want |= permW
	}
	return access(id, n, want, "open")
}

// openIn checks that id may open n (reachable already) with flags,
// truncates it for proto.OpenTrunc and opens a write session for
// proto.OpenWrite (tx may be a read-only transaction when neither is set).
func (s *Service) openIn(tx kv.ReadTxn, id Identity, n *proto.Inode, flags proto.OpenFlags, sid uint64, now int64) (proto.Inode, proto.Session, error) {
	if err := openCheck(id, n, flags); err != nil {
		return proto.Inode{}, proto.Session{}, err
	}
	if flags&(proto.OpenWrite|proto.OpenTrunc) == 0 {
		return public(n), proto.Session{}, nil
	}
	wtx := tx.(kv.Txn)
	if flags&proto.OpenTrunc != 0 {
		if err := truncate(wtx, n, 0, now); err != nil {
			return proto.Inode{}, proto.Session{}, err
		}
		if err := putInode(wtx, n); err != nil {
			return proto.Inode{}, proto.Session{}, err
		}
	}
	var sess proto.Session
	if flags&proto.OpenWrite != 0 {
		var err error
		if sess, err = putSession(wtx, id, n, sid, now); err != nil {
			return proto.Inode{}, proto.Session{}, err
		}
	}
	return public(n), sess, nil
}

// Open opens inode ino: it checks that id can reach it (reachable), read
// permission for proto.OpenRead and write permission for proto.OpenWrite
// and proto.OpenTrunc (EISDIR for a directory opened for writing, ELOOP
// for a symlink, ENOENT for an unlinked file), truncates the file with
// proto.OpenTrunc, and opens a write session with proto.OpenWrite. A
// read-only open is a read-only transaction.
func (s *Service) Open(ctx context.Context, id Identity, ino uint64, flags proto.OpenFlags) (Opened, error) {
	var out Opened
	if flags&(proto.OpenWrite|proto.OpenTrunc) == 0 {
		err := s.db.View(ctx, func(tx kv.ReadTxn) error {
			n, err := loadReachable(tx, id, ino, "open")
			if err != nil {
				return err
			}
			out.Inode, _, err = s.openIn(tx, id, n, flags, 0, 0)
			return err
		})
		return out, err
	}
	now := s.now()
	sid := newSessionID()
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		n, err := loadReachable(tx, id, ino, "open")
		if err != nil {
			return err
		}
		out.Inode, out.Session, err = s.openIn(tx, id, n, flags, sid, now)
		return err
	})
	return out, err
}

// Access makes exactly the checks Open makes for flags (reachable,
// permission bits, type, link count) without opening anything, and
// returns the inode: for renewing what an open granted.
func (s *Service) Access(ctx context.Context, id Identity, ino uint64, flags proto.OpenFlags) (proto.Inode, error) {
	var out proto.Inode
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		n, err := loadReachable(tx, id, ino, "access")
		if err != nil {
			return err
		}
		if err := openCheck(id, n, flags); err != nil {
			return err
		}
		out = public(n)
		return nil
	})
	return out, err
}

// loadSession reads write session sess for id: EBADF if it does not exist
// or belongs to another uid (root may close any session).
func loadSession(tx kv.ReadTxn, id Identity, sess proto.Session) (session, error) {
	var rec session
	v, err := tx.Get(sessionKey(sess.Ino, sess.ID))
	if err != nil {
		return rec, err
	}
	if v == nil {
		return rec, proto.Errorf(proto.EBADF, "session %d of inode %d", sess.ID, sess.Ino)
	}
	if err := unmarshal(v, &rec); err != nil {
		return rec, damagedf(err, "session %d of inode %d", sess.ID, sess.Ino)
	}
	if rec.UID != id.UID && !id.IsRoot() {
		return rec, proto.Errorf(proto.EBADF, "session %d of inode %d: not the caller's", sess.ID, sess.Ino)
	}
	return rec, nil
}

// checkFileSize refuses a file size (a truncate or a session's length
// report) beyond proto.MaxFileSize with EFBIG: meta records no size no
// client can address, whatever the client checked.
func checkFileSize(op string, ino, size uint64) error {
	if size > uint64(proto.MaxFileSize) {
		return proto.Errorf(proto.EFBIG, "%s inode %d to %d bytes: beyond the largest file size %d (16 TiB)", op, ino, size, proto.MaxFileSize)
	}
	return nil
}

// applyLength applies a length report of session rec to n; it reports
// whether n changed.
func applyLength(n *proto.Inode, rec session, length uint64, wrote bool, now int64) bool {
	changed := false
	if rec.TruncVer == n.TruncVer && length > n.Size {
		n.Size = length
		changed = true
	}
	if wrote {
		n.Mtime, n.Ctime = now, now
		n.WriteVer++
		changed = true
	}
	return changed
}

// Close ends write session sess, reporting the file's length as the writer
// knows it: the size becomes max(size, length) unless the file was
// truncated after the session opened. wrote says the session wrote data: it
// sets mtime and ctime. Closing the last session of an unlinked file
// deletes it and queues its chunks for GC. EBADF for an unknown session;
// EFBIG for a length past proto.MaxFileSize (nothing changes, the session
// stays open).
func (s *Service) Close(ctx context.Context, id Identity, sess proto.Session, length uint64, wrote bool) (proto.Inode, error) {
	if err := checkFileSize("close", sess.Ino, length); err != nil {
		return proto.Inode{}, err
	}
	now := s.now()
	var out proto.Inode
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		rec, err := loadSession(tx, id, sess)
		if err != nil {
			return err
		}
		n, err := loadInode(tx, sess.Ino)
		if err != nil {
			return err
		}
		if err := tx.Clear(sessionKey(sess.Ino, sess.ID)); err != nil {
			return err
		}
		changed := applyLength(n, rec, length, wrote, now)
		out = public(n)
		if n.Nlink == 0 {
			return release(tx, n, now)
		}
		if changed {
			return putInode(tx, n)
		}
		return nil
	})
	return out, err
}

// ReportLength is Close without ending the session (fsync, and periodic
// reports of long writes); it also refreshes the session for
// PruneSessions.
func (s *Service) ReportLength(ctx context.Context, id Identity, sess proto.Session, length uint64, wrote bool) (proto.Inode, error) {
	if err := checkFileSize("report length of", sess.Ino, length); err != nil {
		return proto.Inode{}, err
	}
	now := s.now()
	var out proto.Inode
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		rec, err := loadSession(tx, id, sess)
		if err != nil {
			return err
		}
		n, err := loadInode(tx, sess.Ino)
		if err != nil {
			return err
		}
		rec.Updated = now
		if err := tx.Set(sessionKey(sess.Ino, sess.ID), marshal(rec)); err != nil {
			return err
		}
		out = public(n)
		if applyLength(n, rec, length, wrote, now) {
			out = public(n)
			return putInode(tx, n)
		}
		return nil
	})
	return out, err
}

// pruneBatch is how many sessions one PruneSessions transaction examines.
const pruneBatch = 256

// PruneSessions ends the write sessions not opened or refreshed for maxAge
// (their writers are presumed dead; their unreported lengths are lost) and
// deletes unlinked files left without sessions. Root only (EPERM). It
// returns how many sessions it ended. It runs in bounded transactions.
func (s *Service) PruneSessions(ctx context.Context, id Identity, maxAge time.Duration) (uint64, error) {
	if !id.IsRoot() {
		return 0, proto.Errorf(proto.EPERM, "prune sessions")
	}
	now := s.now()
	cutoff := now - int64(maxAge)
	begin, end := prefixRange([]byte{pSession})
	var total uint64
	for {
		var next []byte
		var n uint64
		var done bool
		err := kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
			next, n, done = nil, 0, false
			kvs, err := tx.Range(begin, end, kv.RangeOptions{Limit: pruneBatch})
			if err != nil {
				return err
			}
			done = len(kvs) < pruneBatch
			for _, p := range kvs {
				next = kv.KeyAfter(p.Key)
				var rec session
				if err := unmarshal(p.Value, &rec); err != nil {
					return damagedf(err, "session key %x", p.Key)
				}
				if rec.Updated >= cutoff {
					continue
				}
				if err := tx.Clear(p.Key); err != nil {
					return err
				}
				n++
				ino := u64(p.Key[1:9])
				in, err := loadInode(tx, ino)
				if err != nil {
					if proto.CodeOf(err) == proto.ENOENT {
						continue
					}
					return err
				}
				if in.Nlink == 0 {
					if err := release(tx, in, now); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if done || next == nil {
			return total, nil
		}
		begin = next
	}
}
