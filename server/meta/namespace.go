package meta

import (
	"context"
	"errors"
	"strings"

	"fff/internal/proto"
	"fff/server/kv"
)

// Lookup returns the inode named name in directory parent. "." and ".."
// are the directory itself and its parent. Needs search (x) permission on
// parent and every directory above it (reachable).
func (s *Service) Lookup(ctx context.Context, id Identity, parent uint64, name string) (proto.Inode, error) {
	var out proto.Inode
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		if err := prefetchStep(tx, parent, name); err != nil {
			return err
		}
		p, err := loadReachableDir(tx, id, parent, "lookup")
		if err != nil {
			return err
		}
		if err := access(id, p, permX, "lookup"); err != nil {
			return err
		}
		n, err := lookupIn(tx, p, name)
		if err != nil {
			return err
		}
		out = public(n)
		return nil
	})
	return out, err
}

// prefetchStep reads at once directory dir and its entry name (a path
// walk's next two reads), when name is an entry's name.
func prefetchStep(tx kv.ReadTxn, dir uint64, name string) error {
	if name == "." || name == ".." || checkName(name) != nil {
		return nil
	}
	return kv.Prefetch(tx, inodeKey(dir), dentryKey(dir, name))
}

// lookupIn finds name in directory p (no permission check).
func lookupIn(tx kv.ReadTxn, p *proto.Inode, name string) (*proto.Inode, error) {
	switch name {
	case ".":
		return p, nil
	case "..":
		return loadInode(tx, p.Parent)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	d, ok, err := loadDentry(tx, p.Ino, name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, proto.Errorf(proto.ENOENT, "lookup %q in %d", name, p.Ino)
	}
	return loadInode(tx, d.Ino)
}

// Stat returns inode ino. It needs what a path lookup of ino would have
// needed: search permission on the directories above it (reachable).
func (s *Service) Stat(ctx context.Context, id Identity, ino uint64) (proto.Inode, error) {
	var out proto.Inode
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		n, err := loadReachable(tx, id, ino, "stat")
		if err != nil {
			return err
		}
		out = public(n)
		return nil
	})
	return out, err
}

// StatPath resolves path from the root in one snapshot and returns its
// inode. Symlinks in intermediate components are followed (relative targets
// from the symlink's directory, absolute ones from the root), the last
// component's only if follow is set; at most MaxSymlinkFollows symlinks
// (ELOOP). Every directory searched needs x permission. "" and "/" are the
// root; "." and ".." work as in POSIX (the root's parent is itself).
func (s *Service) StatPath(ctx context.Context, id Identity, path string, follow bool) (proto.Inode, error) {
	var out proto.Inode
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		n, err := resolve(tx, id, path, follow)
		if err != nil {
			return err
		}
		out = public(n)
		return nil
	})
	return out, err
}

func splitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, c := range parts {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func resolve(tx kv.ReadTxn, id Identity, path string, follow bool) (*proto.Inode, error) {
	rest := splitPath(path)
	// Each step reads the next inode and the entry after it together.
	next := func(dir uint64) error {
		if len(rest) == 0 {
			return nil
		}
		return prefetchStep(tx, dir, rest[0])
	}
	if err := next(proto.RootIno); err != nil {
		return nil, err
	}
	root, err := loadInode(tx, proto.RootIno)
	if err != nil {
		return nil, err
	}
	cur := root
	follows := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		if cur.Type != proto.TypeDir {
			return nil, proto.Errorf(proto.ENOTDIR, "resolve %q", path)
		}
		if err := access(id, cur, permX, "resolve "+path); err != nil {
			return nil, err
		}
		if c == ".." {
			if cur, err = loadInode(tx, cur.Parent); err != nil {
				return nil, err
			}
			continue
		}
		if err := checkName(c); err != nil {
			return nil, err
		}
		d, ok, err := loadDentry(tx, cur.Ino, c)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, proto.Errorf(proto.ENOENT, "resolve %q: %q", path, c)
		}
		if proto.FileType(d.Type) == proto.TypeDir {
			if err := next(d.Ino); err != nil {
				return nil, err
			}
		}
		n, err := loadInode(tx, d.Ino)
		if err != nil {
			return nil, err
		}
		if n.Type == proto.TypeSymlink && (len(rest) > 0 || follow) {
			follows++
			if follows > MaxSymlinkFollows {
				return nil, proto.Errorf(proto.ELOOP, "resolve %q", path)
			}
			if strings.HasPrefix(n.Target, "/") {
				cur = root
			}
			rest = append(splitPath(n.Target), rest...)
			continue
		}
		cur = n
	}
	return cur, nil
}

// ReadDir lists directory ino: up to limit entries (DefaultReadDirLimit if
// <= 0, at most MaxReadDirLimit) with names greater than after, in byte
// order of their names; more reports whether entries follow. With plus,
// every entry carries its inode (read in the same snapshot). Needs read
// permission on the directory (and search permission for plus), and
// search permission above it (reachable).
func (s *Service) ReadDir(ctx context.Context, id Identity, ino uint64, after string, limit int, plus bool) (entries []proto.DirEntry, more bool, err error) {
	if limit <= 0 {
		limit = DefaultReadDirLimit
	}
	limit = min(limit, MaxReadDirLimit)
	err = s.db.View(ctx, func(tx kv.ReadTxn) error {
		entries, more = nil, false
		d, err := loadReachableDir(tx, id, ino, "readdir")
		if err != nil {
			return err
		}
		want := uint32(permR)
		if plus {
			want |= permX
		}
		if err := access(id, d, want, "readdir"); err != nil {
			return err
		}
		begin, end := prefixRange(dentryPrefix(ino))
		if after != "" {
			begin = kv.KeyAfter(dentryKey(ino, after))
		}
		kvs, err := tx.Range(begin, end, kv.RangeOptions{Limit: limit + 1})
		if err != nil {
			return err
		}
		if len(kvs) > limit {
			kvs, more = kvs[:limit], true
		}
		entries = make([]proto.DirEntry, 0, len(kvs))
		for _, p := range kvs {
			var de dentry
			if err := unmarshal(p.Value, &de); err != nil {
				return damagedf(err, "entry %q of directory %d", p.Key[9:], ino)
			}
			e := proto.DirEntry{Name: string(p.Key[9:]), Ino: de.Ino, Type: proto.FileType(de.Type)}
			if plus {
				n, err := loadInode(tx, de.Ino)
				switch {
				case isDamaged(err) || errors.Is(err, proto.ErrNotFound):
					// A damaged or lost inode record (an entry
					// never outlives its inode otherwise): listed
					// without attributes, so the rest of the
					// directory stays readable; operations on this
					// entry fail.
				case err != nil:
					return err
				default:
					n.Links = nil
					e.Attr = n
				}
			}
			entries = append(entries, e)
		}
		return nil
	})
	return entries, more, err
}

// newInode fills the fields every new inode has.
func newInode(id Identity, parent *proto.Inode, ino uint64, t proto.FileType, mode uint32, now int64) *proto.Inode {
	n := &proto.Inode{
		Ino: ino, Type: t, Mode: mode & proto.ModeMask, UID: id.UID, GID: id.primaryGID(),
		Nlink: 1, Atime: now, Mtime: now, Ctime: now,
	}
	if parent.Mode&proto.ModeSetgid != 0 {
		// BSD group semantics in a setgid directory.
		n.GID = parent.GID
		if t == proto.TypeDir {
			n.Mode |= proto.ModeSetgid
		}
	}
	if n.Mode&proto.ModeSetgid != 0 && t == proto.TypeFile && !id.IsRoot() && !id.inGroup(n.GID) {
		n.Mode &^= proto.ModeSetgid
	}
	return n
}

// prepareCreate checks that id may add name to directory parent and that
// the name is free; it returns the directory.
func prepareCreate(tx kv.ReadTxn, id Identity, parent uint64, name, op string) (*proto.Inode, error) {
	p, err := loadReachableDir(tx, id, parent, op)
	if err != nil {
		return nil, err
	}
	if err := access(id, p, permW|permX, op); err != nil {
		return nil, err
	}
	_, ok, err := loadDentry(tx, parent, name)
	if err != nil {
		return nil, err
	}
	if ok {
		return nil, proto.Errorf(proto.EEXIST, "%s %q in %d", op, name, parent)
	}
	return p, nil
}

// Mkdir creates directory name in parent with mode (permissions, sticky;
// the caller applies its umask). The new directory copies its parent's
// layout policy. Needs write and search permission on parent.
func (s *Service) Mkdir(ctx context.Context, id Identity, parent uint64, name string, mode uint32) (proto.Inode, error) {
	if err := checkName(name); err != nil {
		return proto.Inode{}, err
	}
	mode &= proto.ModePerm | proto.ModeSticky | proto.ModeSetgid
	return s.createNode(ctx, id, parent, name, "mkdir", proto.TypeDir, mode, func(p, n *proto.Inode) {
		n.Parent = parent
		n.DirLayout = &proto.DirLayout{}
		if p.DirLayout != nil {
			*n.DirLayout = *p.DirLayout
		}
	})
}

// createNode creates a directory or symlink entry name in parent in one
// transaction: newInode(t, mode), then fill sets the type-specific fields
// (p is the parent).
func (s *Service) createNode(ctx context.Context, id Identity, parent uint64, name, op string, t proto.FileType, mode uint32, fill func(p, n *proto.Inode)) (proto.Inode, error) {
	ino, err := s.allocIno(ctx)
	if err != nil {
		return proto.Inode{}, err
	}
	now := s.now()
	var out proto.Inode
	err = s.db.Update(ctx, func(tx kv.Txn) error {
		if err := prefetchCreate(tx, parent, name, ino); err != nil {
			return err
		}
		p, err := prepareCreate(tx, id, parent, name, op)
		if err != nil {
			return err
		}
		n := newInode(id, p, ino, t, mode, now)
		if t != proto.TypeDir {
			n.Links = []uint64{parent}
		}
		fill(p, n)
		if err := putDentry(tx, parent, name, n); err != nil {
			return err
		}
		if err := putInode(tx, n); err != nil {
			return err
		}
		out = public(n)
		return addCount(tx, ino, 1)
	})
	return out, err
}

// prefetchCreate reads at once what creating name in parent as inode ino
// reads first: the parent, the entry and the inode-count shard (one round
// trip on a remote KV instead of three).
func prefetchCreate(tx kv.ReadTxn, parent uint64, name string, ino uint64) error {
	return kv.Prefetch(tx, inodeKey(parent), dentryKey(parent, name), countKey(ino))
}

// Opened is the result of Create and Open.
type Opened struct {
	Inode proto.Inode
	// Session is the write session (ID 0 without proto.OpenWrite).
	Session proto.Session
	// Created is set when Create made a new file.
	Created bool
}

// Create creates file name in parent with mode, or, without
// proto.OpenExcl, opens the existing file of that name (EISDIR for a
// directory, EEXIST for a symlink). flags as in Open: proto.OpenWrite opens
// a write session, proto.OpenTrunc truncates an existing file. It is one
// transaction. A new file's layout comes from parent's policy and its chain
// table. Needs write and search permission on parent to create, the
// permissions Open needs to open an existing file.
func (s *Service) Create(ctx context.Context, id Identity, parent uint64, name string, mode uint32, flags proto.OpenFlags) (Opened, error) {
	if err := checkName(name); err != nil {
		return Opened{}, err
	}
	ino, err := s.allocIno(ctx)
	if err != nil {
		return Opened{}, err
	}
	now := s.now()
	sid := newSessionID()
	var out Opened
	err = s.withTable(ctx, func(tx kv.Txn, tableID uint32, table []uint32) error {
		out = Opened{}
		if err := prefetchCreate(tx, parent, name, ino); err != nil {
			return err
		}
		p, err := loadReachableDir(tx, id, parent, "create")
		if err != nil {
			return err
		}
		if err := access(id, p, permX, "create"); err != nil {
			return err
		}
		d, exists, err := loadDentry(tx, parent, name)
		if err != nil {
			return err
		}
		if exists {
			if flags&proto.OpenExcl != 0 {
				return proto.Errorf(proto.EEXIST, "create %q in %d", name, parent)
			}
			n, err := loadInode(tx, d.Ino)
			if err != nil {
				return err
			}
			switch n.Type {
			case proto.TypeDir:
				return proto.Errorf(proto.EISDIR, "create %q in %d", name, parent)
			case proto.TypeSymlink:
				return proto.Errorf(proto.EEXIST, "create %q in %d: a symlink", name, parent)
			}
			out.Inode, out.Session, err = s.openIn(tx, id, n, flags, sid, now)
			return err
		}
		if err := access(id, p, permW|permX, "create"); err != nil {
			return err
		}
		n := newInode(id, p, ino, proto.TypeFile, mode, now)
		n.Links = []uint64{parent}
		if n.Layout, err = s.fileLayout(p, ino, tableID, table); err != nil {
			return err
		}
		if err := putDentry(tx, parent, name, n); err != nil {
			return err
		}
		if err := addCount(tx, ino, 1); err != nil {
			return err
		}
		if flags&proto.OpenWrite != 0 {
			if out.Session, err = putSession(tx, id, n, sid, now); err != nil {
				return err
			}
		}
		out.Inode, out.Created = public(n), true
		return putInode(tx, n)
	})
	return out, err
}

// Symlink creates symlink name in parent pointing to target. Needs write
// and search permission on parent.
func (s *Service) Symlink(ctx context.Context, id Identity, parent uint64, name, target string) (proto.Inode, error) {
	if err := checkName(name); err != nil {
		return proto.Inode{}, err
	}
	switch {
	case target == "":
		return proto.Inode{}, proto.Errorf(proto.ENOENT, "symlink %q: empty target", name)
	case len(target) > MaxSymlinkLen:
		return proto.Inode{}, proto.Errorf(proto.ENAMETOOLONG, "symlink %q: target of %d bytes", name, len(target))
	case strings.IndexByte(target, 0) >= 0:
		return proto.Inode{}, proto.Errorf(proto.EINVAL, "symlink %q: NUL in target", name)
	}
	return s.createNode(ctx, id, parent, name, "symlink", proto.TypeSymlink, 0o777, func(_, n *proto.Inode) {
		n.Mode = 0o777 // symlinks are always lrwxrwxrwx
		n.Target = target
		n.Size = uint64(len(target))
	})
}

// Readlink returns the target of symlink ino (EINVAL if it is not one).
func (s *Service) Readlink(ctx context.Context, id Identity, ino uint64) (string, error) {
	n, err := s.Stat(ctx, id, ino)
	if err != nil {
		return "", err
	}
	if n.Type != proto.TypeSymlink {
		return "", proto.Errorf(proto.EINVAL, "readlink %d: not a symlink", ino)
	}
	return n.Target, nil
}

// Link adds a hard link newName in newParent to file or symlink ino
// (EPERM for a directory; ENOSPC past MaxLinks names). Needs ino reachable
// and write and search permission on newParent (reachable too).
func (s *Service) Link(ctx context.Context, id Identity, ino, newParent uint64, newName string) (proto.Inode, error) {
	if err := checkName(newName); err != nil {
		return proto.Inode{}, err
	}
	now := s.now()
	var out proto.Inode
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		n, err := loadReachable(tx, id, ino, "link")
		if err != nil {
			return err
		}
		if n.Type == proto.TypeDir {
			return proto.Errorf(proto.EPERM, "link %d: a directory", ino)
		}
		if n.Nlink == 0 {
			return proto.Errorf(proto.ENOENT, "link %d: unlinked", ino)
		}
		if _, err := prepareCreate(tx, id, newParent, newName, "link"); err != nil {
			return err
		}
		if err := addLink(n, newParent); err != nil {
			return err
		}
		n.Nlink++
		n.Ctime = now
		if err := putDentry(tx, newParent, newName, n); err != nil {
			return err
		}
		out = public(n)
		return putInode(tx, n)
	})
	return out, err
}

// prepareRemove checks that id may remove entry name from directory
// parent and returns the directory, the entry's inode.
func prepareRemove(tx kv.ReadTxn, id Identity, parent uint64, name, op string) (*proto.Inode, *proto.Inode, error) {
	p, err := loadReachableDir(tx, id, parent, op)
	if err != nil {
		return nil, nil, err
	}
	if err := access(id, p, permW|permX, op); err != nil {
		return nil, nil, err
	}
	d, ok, err := loadDentry(tx, parent, name)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, proto.Errorf(proto.ENOENT, "%s %q in %d", op, name, parent)
	}
	n, err := loadInode(tx, d.Ino)
	if err != nil {
		return nil, nil, err
	}
	if err := stickyOK(id, p, n, op); err != nil {
		return nil, nil, err
	}
	return p, n, nil
}

// Unlink removes entry name (a file or symlink; EISDIR for a directory)
// from parent. Removing a file's last link deletes the inode and queues its
// chunks for GC, unless write sessions are open: then the inode stays, with
// nlink 0, until its last session closes (or is pruned), as POSIX keeps an
// unlinked open file. Needs write and search permission on parent (and,
// in a sticky directory, ownership of the file or the directory).
func (s *Service) Unlink(ctx context.Context, id Identity, parent uint64, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	now := s.now()
	return kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
		_, n, err := prepareRemove(tx, id, parent, name, "unlink")
		if err != nil {
			return err
		}
		if n.Type == proto.TypeDir {
			return proto.Errorf(proto.EISDIR, "unlink %q in %d", name, parent)
		}
		if err := tx.Clear(dentryKey(parent, name)); err != nil {
			return err
		}
		return dropLink(tx, n, parent, now)
	})
}

// dropLink removes one link of file or symlink n (its entry in directory
// dir already removed).
func dropLink(tx kv.Txn, n *proto.Inode, dir uint64, now int64) error {
	removeLink(n, dir)
	if n.Nlink > 1 {
		n.Nlink--
		n.Ctime = now
		return putInode(tx, n)
	}
	n.Nlink = 0
	n.Ctime = now
	return release(tx, n, now)
}

// release deletes inode n, which has no links left: a file with open write
// sessions is kept (nlink 0) until they end; a file's chunks are queued for
// GC.
func release(tx kv.Txn, n *proto.Inode, now int64) error {
	if n.Type == proto.TypeFile {
		open, err := hasSessions(tx, n.Ino)
		if err != nil {
			return err
		}
		if open {
			return putInode(tx, n)
		}
		if err := queueDelete(tx, n, now); err != nil {
			return err
		}
	}
	if err := tx.Clear(inodeKey(n.Ino)); err != nil {
		return err
	}
	return addCount(tx, n.Ino, -1)
}

// Rmdir removes the empty directory name from parent (ENOTDIR if it is not
// a directory, ENOTEMPTY if it has entries). Needs write and search
// permission on parent.
func (s *Service) Rmdir(ctx context.Context, id Identity, parent uint64, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
		_, n, err := prepareRemove(tx, id, parent, name, "rmdir")
		if err != nil {
			return err
		}
		if n.Type != proto.TypeDir {
			return proto.Errorf(proto.ENOTDIR, "rmdir %q in %d", name, parent)
		}
		empty, err := dirEmpty(tx, n.Ino)
		if err != nil {
			return err
		}
		if !empty {
			return proto.Errorf(proto.ENOTEMPTY, "rmdir %q in %d", name, parent)
		}
		if err := tx.Clear(dentryKey(parent, name)); err != nil {
			return err
		}
		if err := tx.Clear(inodeKey(n.Ino)); err != nil {
			return err
		}
		return addCount(tx, n.Ino, -1)
	})
}

// maxDepth bounds the walk up the tree in Rename's loop check.
const maxDepth = 1 << 16

// Rename moves entry srcName of srcParent to dstName of dstParent in one
// transaction, replacing an existing destination as POSIX rename does: a
// file or symlink replaces a non-directory (EISDIR if the destination is a
// directory), a directory replaces an empty directory (ENOTDIR if the
// destination is not a directory, ENOTEMPTY if it has entries). Moving a
// directory into itself or its own subtree is EINVAL. Renaming an entry
// onto itself, or onto another link of the same inode, does nothing. Needs
// both directories reachable, write and search permission on them, the
// sticky-directory rule on both, and write permission on a directory that
// moves to another parent (its ".." changes). A file's name moves in its
// Links; a replaced file loses one.
func (s *Service) Rename(ctx context.Context, id Identity, srcParent uint64, srcName string, dstParent uint64, dstName string) error {
	if err := checkName(srcName); err != nil {
		return err
	}
	if err := checkName(dstName); err != nil {
		return err
	}
	now := s.now()
	return kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
		_, src, err := prepareRemove(tx, id, srcParent, srcName, "rename")
		if err != nil {
			return err
		}
		if srcParent == dstParent && srcName == dstName {
			return nil
		}
		dp, err := loadReachableDir(tx, id, dstParent, "rename")
		if err != nil {
			return err
		}
		if err := access(id, dp, permW|permX, "rename"); err != nil {
			return err
		}
		isDir := src.Type == proto.TypeDir
		if isDir && srcParent != dstParent {
			if err := access(id, src, permW, "rename"); err != nil {
				return err
			}
			// No loops: dstParent must not be src or below it.
			a := dp
			for depth := 0; ; depth++ {
				if a.Ino == src.Ino {
					return proto.Errorf(proto.EINVAL, "rename %q: into its own subtree", srcName)
				}
				if a.Ino == proto.RootIno || depth > maxDepth {
					break
				}
				if a, err = loadInode(tx, a.Parent); err != nil {
					return err
				}
			}
		}
		d, exists, err := loadDentry(tx, dstParent, dstName)
		if err != nil {
			return err
		}
		if exists {
			if d.Ino == src.Ino {
				return nil // two links of one inode: POSIX does nothing
			}
			dst, err := loadInode(tx, d.Ino)
			if err != nil {
				return err
			}
			if err := stickyOK(id, dp, dst, "rename"); err != nil {
				return err
			}
			switch {
			case isDir && dst.Type != proto.TypeDir:
				return proto.Errorf(proto.ENOTDIR, "rename onto %q: not a directory", dstName)
			case !isDir && dst.Type == proto.TypeDir:
				return proto.Errorf(proto.EISDIR, "rename onto %q: a directory", dstName)
			case isDir:
				empty, err := dirEmpty(tx, dst.Ino)
				if err != nil {
					return err
				}
				if !empty {
					return proto.Errorf(proto.ENOTEMPTY, "rename onto %q", dstName)
				}
				if err := tx.Clear(inodeKey(dst.Ino)); err != nil {
					return err
				}
				if err := addCount(tx, dst.Ino, -1); err != nil {
					return err
				}
			default:
				if err := dropLink(tx, dst, dstParent, now); err != nil {
					return err
				}
			}
		}
		if err := tx.Clear(dentryKey(srcParent, srcName)); err != nil {
			return err
		}
		if err := putDentry(tx, dstParent, dstName, src); err != nil {
			return err
		}
		src.Ctime = now
		if isDir {
			src.Parent = dstParent
		} else {
			removeLink(src, srcParent)
			src.Links = append(src.Links, dstParent) // a name moved: no new one
		}
		return putInode(tx, src)
	})
}

// SetAttr changes the attributes of ino selected by a.Valid and returns the
// inode. Rules (as Linux): mode: the owner or root (EPERM), and a non-root
// caller outside the file's group loses setgid; uid: root only (EPERM); gid:
// root, or the owner to one of its own groups (EPERM); a file whose owner or
// group changes loses setuid, and setgid if group-executable; size (files
// only: EISDIR, EINVAL for symlinks, EFBIG past proto.MaxFileSize): write
// permission (EACCES), bumps the truncate version and, when shrinking,
// queues the cut-off range for GC; explicit times: the owner or root
// (EPERM); times set to now: also anyone with write permission (EACCES).
// ctime becomes now.
func (s *Service) SetAttr(ctx context.Context, id Identity, ino uint64, a proto.SetAttr) (proto.Inode, error) {
	now := s.now()
	var out proto.Inode
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		n, err := loadReachable(tx, id, ino, "setattr")
		if err != nil {
			return err
		}
		owner := id.IsRoot() || id.UID == n.UID
		if a.Valid&proto.SetMode != 0 {
			if !owner {
				return proto.Errorf(proto.EPERM, "chmod %d", ino)
			}
			m := a.Mode & proto.ModeMask
			if !id.IsRoot() && n.Type == proto.TypeFile && !id.inGroup(n.GID) {
				m &^= proto.ModeSetgid
			}
			n.Mode = m
		}
		if a.Valid&(proto.SetUID|proto.SetGID) != 0 {
			uidChange := a.Valid&proto.SetUID != 0 && a.UID != n.UID
			gidChange := a.Valid&proto.SetGID != 0 && a.GID != n.GID
			if !id.IsRoot() {
				if uidChange || !owner {
					return proto.Errorf(proto.EPERM, "chown %d", ino)
				}
				if gidChange && !id.inGroup(a.GID) {
					return proto.Errorf(proto.EPERM, "chgrp %d to %d", ino, a.GID)
				}
			}
			a.ApplyOwner(n)
		}
		if a.Valid&proto.SetSize != 0 {
			switch n.Type {
			case proto.TypeDir:
				return proto.Errorf(proto.EISDIR, "truncate %d", ino)
			case proto.TypeSymlink:
				return proto.Errorf(proto.EINVAL, "truncate %d: a symlink", ino)
			}
			if err := access(id, n, permW, "truncate"); err != nil {
				return err
			}
			if err := checkFileSize("truncate", ino, a.Size); err != nil {
				return err
			}
			if err := truncate(tx, n, a.Size, now); err != nil {
				return err
			}
		}
		if a.Valid&(proto.SetAtime|proto.SetMtime) != 0 && !owner {
			return proto.Errorf(proto.EPERM, "utimes %d", ino)
		}
		if a.Valid&(proto.SetAtimeNow|proto.SetMtimeNow) != 0 && !owner {
			if err := access(id, n, permW, "utimes"); err != nil {
				return err
			}
		}
		a.ApplyTimes(n, now)
		out = public(n)
		return putInode(tx, n)
	})
	return out, err
}

// truncate sets file n's size (the caller writes n): it bumps the truncate
// version, so that lengths reported by sessions opened earlier are
// ignored, and queues the cut-off range for GC when the file shrinks.
func truncate(tx kv.Txn, n *proto.Inode, size uint64, now int64) error {
	old := n.Size
	n.TruncVer++
	n.Size = size
	n.Mtime, n.Ctime = now, now
	if size < old {
		return queueTruncate(tx, n, size, old, now)
	}
	return nil
}

// SetLayout sets directory ino's layout policy for files created below it
// afterwards (and for directories created below it, which copy it). Zero
// fields select the service defaults. The owner or root only (EPERM).
func (s *Service) SetLayout(ctx context.Context, id Identity, ino uint64, pol proto.DirLayout) (proto.Inode, error) {
	if err := s.checkDirLayout(ctx, pol); err != nil {
		return proto.Inode{}, err
	}
	now := s.now()
	var out proto.Inode
	err := s.db.Update(ctx, func(tx kv.Txn) error {
		n, err := loadReachableDir(tx, id, ino, "set layout")
		if err != nil {
			return err
		}
		if !id.IsRoot() && id.UID != n.UID {
			return proto.Errorf(proto.EPERM, "set layout of %d", ino)
		}
		p := pol
		n.DirLayout = &p
		n.Ctime = now
		out = public(n)
		return putInode(tx, n)
	})
	return out, err
}

// StatFS returns the number of inodes in use and, with Options.Capacity,
// the storage capacity.
func (s *Service) StatFS(ctx context.Context, id Identity) (proto.StatFS, error) {
	var out proto.StatFS
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		b, e := prefixRange(prefixCnt)
		kvs, err := tx.Range(b, e, kv.RangeOptions{})
		if err != nil {
			return err
		}
		var n int64
		for _, p := range kvs {
			n += int64(u64(p.Value))
		}
		out = proto.StatFS{Inodes: uint64(max(n, 0))}
		return nil
	})
	if err != nil {
		return out, err
	}
	if s.opts.Capacity != nil {
		if out.TotalBytes, out.FreeBytes, err = s.opts.Capacity.Capacity(ctx); err != nil {
			return out, err
		}
	}
	return out, nil
}
