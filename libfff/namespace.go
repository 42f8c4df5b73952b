package libfff

import (
	"context"
	"errors"
	"io/fs"
	"time"

	"fff/internal/proto"
)

// The namespace: the os package's file system calls, over the meta service.
// A path is resolved by the server in one snapshot (StatPath); an operation
// on an entry resolves the entry's directory with one StatPath and then
// names the entry in it (none for entries of the root), so most calls are
// one or two round trips. Operations that find an inode by path and then
// change it (Chmod, Chown, Chtimes, Truncate) act on the inode the path
// named when it was resolved.

// statPath resolves a cleaned cluster path.
func (c *Client) statPath(ctx context.Context, p string, follow bool) (proto.Inode, error) {
	var resp proto.MetaInodeResp
	err := c.metaCall(ctx, proto.MethodMetaStatPath, &proto.MetaStatPathReq{Path: p, Follow: follow}, &resp)
	return resp.Inode, err
}

// parent resolves the directory of cleaned path p (following symlinks) and
// returns its inode id and p's last name ("" for the root).
func (c *Client) parent(ctx context.Context, p string) (uint64, string, error) {
	dir, name := splitPath(p)
	if dir == "/" {
		return proto.RootIno, name, nil
	}
	n, err := c.statPath(ctx, dir, true)
	if err != nil {
		return 0, "", err
	}
	if n.Type != proto.TypeDir {
		return 0, "", errorf(proto.ENOTDIR)
	}
	return n.Ino, name, nil
}

func (c *Client) stat(ctx context.Context, op, name string, follow bool) (*FileInfo, error) {
	p, err := c.clusterPath(name)
	if err != nil {
		return nil, pathErr(op, name, err)
	}
	n, err := c.statPath(ctx, p, follow)
	if err != nil {
		return nil, pathErr(op, name, err)
	}
	_, base := splitPath(p)
	return newFileInfo(base, n), nil
}

// Stat returns the attributes of the file name names, following symlinks.
func (c *Client) Stat(ctx context.Context, name string) (*FileInfo, error) {
	return c.stat(ctx, "stat", name, true)
}

// Lstat is Stat, except that a symlink in the last component is described
// itself.
func (c *Client) Lstat(ctx context.Context, name string) (*FileInfo, error) {
	return c.stat(ctx, "lstat", name, false)
}

// readDirPage is the number of entries asked for per ReadDir round trip.
const readDirPage = 1000

// ReadDir lists directory name (following symlinks), sorted by name (in
// byte order), with each entry's attributes. Large directories are read in
// pages of readDirPage entries, each page one snapshot: entries added or
// removed while a listing runs may or may not appear, every other entry
// appears exactly once.
func (c *Client) ReadDir(ctx context.Context, name string) ([]DirEntry, error) {
	p, err := c.clusterPath(name)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	dir, err := c.statPath(ctx, p, true)
	if err != nil {
		return nil, pathErr("readdir", name, err)
	}
	if dir.Type != proto.TypeDir {
		return nil, pathErr("readdir", name, errorf(proto.ENOTDIR))
	}
	var out []DirEntry
	req := proto.MetaReadDirReq{Ino: dir.Ino, Limit: readDirPage, Plus: true}
	for {
		var resp proto.MetaReadDirResp
		err := c.metaCall(ctx, proto.MethodMetaReadDir, &req, &resp)
		if err != nil && req.Plus && req.After == "" && errors.Is(err, proto.ErrPermissionDenied) {
			// Readable but not searchable: names without attributes.
			req.Plus = false
			continue
		}
		if err != nil {
			return nil, pathErr("readdir", name, err)
		}
		for _, e := range resp.Entries {
			de := DirEntry{name: e.Name, ino: e.Ino, typ: e.Type}
			if e.Attr != nil {
				de.info = newFileInfo(e.Name, *e.Attr)
			}
			out = append(out, de)
		}
		if !resp.More || len(resp.Entries) == 0 {
			return out, nil
		}
		req.After = resp.Entries[len(resp.Entries)-1].Name
	}
}

// Mkdir creates directory name with permissions perm (no umask is applied).
func (c *Client) Mkdir(ctx context.Context, name string, perm fs.FileMode) error {
	_, err := c.mkdir(ctx, name, perm)
	return pathErr("mkdir", name, err)
}

func (c *Client) mkdir(ctx context.Context, name string, perm fs.FileMode) (proto.Inode, error) {
	p, err := c.clusterPath(name)
	if err != nil {
		return proto.Inode{}, err
	}
	if p == "/" {
		return proto.Inode{}, errorf(proto.EEXIST)
	}
	parent, base, err := c.parent(ctx, p)
	if err != nil {
		return proto.Inode{}, err
	}
	var resp proto.MetaInodeResp
	err = c.metaCall(ctx, proto.MethodMetaMkdir, &proto.MetaMkdirReq{Parent: parent, Name: base, Mode: unixMode(perm)}, &resp)
	return resp.Inode, err
}

// MkdirAll creates directory name and every missing parent with
// permissions perm, like os.MkdirAll: nil if name is already a directory,
// ENOTDIR if it or a parent is something else.
func (c *Client) MkdirAll(ctx context.Context, name string, perm fs.FileMode) error {
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr("mkdir", name, err)
	}
	_, err = c.mkdirAll(ctx, p, unixMode(perm))
	return pathErr("mkdir", name, err)
}

// mkdirAll makes cleaned path p a directory and returns its inode id.
func (c *Client) mkdirAll(ctx context.Context, p string, mode uint32) (uint64, error) {
	n, err := c.statPath(ctx, p, true)
	switch {
	case err == nil && n.Type == proto.TypeDir:
		return n.Ino, nil
	case err == nil:
		return 0, errorf(proto.ENOTDIR)
	case !errors.Is(err, proto.ErrNotFound):
		return 0, err
	}
	dir, base := splitPath(p)
	parent, err := c.mkdirAll(ctx, dir, mode)
	if err != nil {
		return 0, err
	}
	var resp proto.MetaInodeResp
	err = c.metaCall(ctx, proto.MethodMetaMkdir, &proto.MetaMkdirReq{Parent: parent, Name: base, Mode: mode}, &resp)
	if errors.Is(err, proto.ErrExist) { // made meanwhile by someone else
		if n, err := c.statPath(ctx, p, true); err == nil && n.Type == proto.TypeDir {
			return n.Ino, nil
		}
	}
	return resp.Inode.Ino, err
}

// CreateFile creates a new, empty file name with permissions perm (no
// umask is applied) and returns its attributes, including its chunk
// layout. It fails with EEXIST if the name exists: of many concurrent
// creates of one name exactly one succeeds.
func (c *Client) CreateFile(ctx context.Context, name string, perm fs.FileMode) (*FileInfo, error) {
	p, err := c.clusterPath(name)
	if err != nil {
		return nil, pathErr("create", name, err)
	}
	if p == "/" {
		return nil, pathErr("create", name, errorf(proto.EEXIST))
	}
	parent, base, err := c.parent(ctx, p)
	if err != nil {
		return nil, pathErr("create", name, err)
	}
	var resp proto.MetaOpenResp
	err = c.metaCall(ctx, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: parent, Name: base, Mode: unixMode(perm), Flags: proto.OpenExcl}, &resp)
	if err != nil {
		return nil, pathErr("create", name, err)
	}
	return newFileInfo(base, resp.Inode), nil
}

// TouchMode is the mode of the files Touch creates.
const TouchMode fs.FileMode = 0o644

// Touch sets the access and modification times of name (following
// symlinks) to now, creating an empty file with mode TouchMode if name
// does not exist.
func (c *Client) Touch(ctx context.Context, name string) error {
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr("touch", name, err)
	}
	now := proto.SetAttr{Valid: proto.SetAtimeNow | proto.SetMtimeNow}
	n, err := c.statPath(ctx, p, true)
	if err == nil {
		return pathErr("touch", name, c.setAttr(ctx, n.Ino, now))
	}
	if !errors.Is(err, proto.ErrNotFound) {
		return pathErr("touch", name, err)
	}
	parent, base, err := c.parent(ctx, p)
	if err != nil {
		return pathErr("touch", name, err)
	}
	var resp proto.MetaOpenResp
	err = c.metaCall(ctx, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: parent, Name: base, Mode: unixMode(TouchMode)}, &resp)
	if err == nil && !resp.Created { // created meanwhile by someone else
		err = c.setAttr(ctx, resp.Inode.Ino, now)
	}
	return pathErr("touch", name, err)
}

// Remove removes the file, symlink or empty directory name, like
// os.Remove (ENOTEMPTY for a directory with entries).
func (c *Client) Remove(ctx context.Context, name string) error {
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr("remove", name, err)
	}
	if p == "/" {
		return pathErr("remove", name, errorf(proto.EINVAL))
	}
	parent, base, err := c.parent(ctx, p)
	if err != nil {
		return pathErr("remove", name, err)
	}
	req := proto.MetaUnlinkReq{Parent: parent, Name: base}
	err = c.metaCall(ctx, proto.MethodMetaUnlink, &req, nil)
	if errors.Is(err, proto.ErrIsDir) {
		err = c.metaCall(ctx, proto.MethodMetaRmdir, &req, nil)
	}
	return pathErr("remove", name, err)
}

// RemoveAll removes name and everything below it, like os.RemoveAll: nil
// if name does not exist. The server removes a tree in many bounded
// transactions, so an error can leave part of it behind. The root cannot
// be removed (EINVAL).
func (c *Client) RemoveAll(ctx context.Context, name string) error {
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr("remove", name, err)
	}
	if p == "/" {
		return pathErr("remove", name, errorf(proto.EINVAL))
	}
	parent, base, err := c.parent(ctx, p)
	if err == nil {
		var resp proto.MetaRemoveAllResp
		err = c.metaCall(ctx, proto.MethodMetaRemoveAll, &proto.MetaUnlinkReq{Parent: parent, Name: base}, &resp)
	}
	if errors.Is(err, proto.ErrNotFound) {
		return nil
	}
	return pathErr("remove", name, err)
}

// Rename moves oldname to newname atomically, replacing newname as POSIX
// rename(2) does (a non-directory by a non-directory, an empty directory by
// a directory). Moving a directory into its own subtree fails with EINVAL.
func (c *Client) Rename(ctx context.Context, oldname, newname string) error {
	op, err := c.clusterPath(oldname)
	if err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	np, err := c.clusterPath(newname)
	if err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	if op == "/" || np == "/" {
		return linkErr("rename", oldname, newname, errorf(proto.EINVAL))
	}
	srcParent, srcName, err := c.parent(ctx, op)
	if err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	dstParent, dstName := srcParent, ""
	od, _ := splitPath(op)
	if nd, nb := splitPath(np); nd == od {
		dstName = nb
	} else if dstParent, dstName, err = c.parent(ctx, np); err != nil {
		return linkErr("rename", oldname, newname, err)
	}
	err = c.metaCall(ctx, proto.MethodMetaRename, &proto.MetaRenameReq{SrcParent: srcParent, SrcName: srcName, DstParent: dstParent, DstName: dstName}, nil)
	return linkErr("rename", oldname, newname, err)
}

// Symlink creates linkname as a symlink to target (stored as given;
// relative targets resolve from the link's directory).
func (c *Client) Symlink(ctx context.Context, target, linkname string) error {
	p, err := c.clusterPath(linkname)
	if err != nil {
		return linkErr("symlink", target, linkname, err)
	}
	if p == "/" {
		return linkErr("symlink", target, linkname, errorf(proto.EEXIST))
	}
	parent, base, err := c.parent(ctx, p)
	if err == nil {
		var resp proto.MetaInodeResp
		err = c.metaCall(ctx, proto.MethodMetaSymlink, &proto.MetaSymlinkReq{Parent: parent, Name: base, Target: target}, &resp)
	}
	return linkErr("symlink", target, linkname, err)
}

// Readlink returns the target of symlink name (EINVAL if it is not one).
func (c *Client) Readlink(ctx context.Context, name string) (string, error) {
	p, err := c.clusterPath(name)
	if err != nil {
		return "", pathErr("readlink", name, err)
	}
	n, err := c.statPath(ctx, p, false)
	if err != nil {
		return "", pathErr("readlink", name, err)
	}
	if n.Type != proto.TypeSymlink {
		return "", pathErr("readlink", name, errorf(proto.EINVAL))
	}
	return n.Target, nil
}

// Link creates newname as a hard link to oldname (a file or symlink, not
// followed; EPERM for a directory).
func (c *Client) Link(ctx context.Context, oldname, newname string) error {
	op, err := c.clusterPath(oldname)
	if err != nil {
		return linkErr("link", oldname, newname, err)
	}
	np, err := c.clusterPath(newname)
	if err != nil {
		return linkErr("link", oldname, newname, err)
	}
	n, err := c.statPath(ctx, op, false)
	if err != nil {
		return linkErr("link", oldname, newname, err)
	}
	if np == "/" {
		return linkErr("link", oldname, newname, errorf(proto.EEXIST))
	}
	parent, base, err := c.parent(ctx, np)
	if err == nil {
		var resp proto.MetaInodeResp
		err = c.metaCall(ctx, proto.MethodMetaLink, &proto.MetaLinkReq{Ino: n.Ino, NewParent: parent, NewName: base}, &resp)
	}
	return linkErr("link", oldname, newname, err)
}

func (c *Client) setAttr(ctx context.Context, ino uint64, a proto.SetAttr) error {
	var resp proto.MetaInodeResp
	return c.metaCall(ctx, proto.MethodMetaSetAttr, &proto.MetaSetAttrReq{Ino: ino, Attr: a}, &resp)
}

// setAttrPath resolves name (following symlinks) and changes attributes.
func (c *Client) setAttrPath(ctx context.Context, op, name string, a proto.SetAttr) error {
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr(op, name, err)
	}
	n, err := c.statPath(ctx, p, true)
	if err != nil {
		return pathErr(op, name, err)
	}
	return pathErr(op, name, c.setAttr(ctx, n.Ino, a))
}

// Chmod sets the mode of name (following symlinks) to mode's permission
// bits and its fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky bits (the
// POSIX bits 0o7000 are accepted as well). The owner or root only (EPERM).
func (c *Client) Chmod(ctx context.Context, name string, mode fs.FileMode) error {
	return c.setAttrPath(ctx, "chmod", name, proto.SetAttr{Valid: proto.SetMode, Mode: unixMode(mode)})
}

// Chown changes the owner and group of name (following symlinks); -1
// leaves one unchanged. Changing the owner is for root only; the owner may
// change the group to one of its own groups (else EPERM).
func (c *Client) Chown(ctx context.Context, name string, uid, gid int) error {
	var a proto.SetAttr
	if uid >= 0 {
		a.Valid |= proto.SetUID
		a.UID = uint32(uid)
	}
	if gid >= 0 {
		a.Valid |= proto.SetGID
		a.GID = uint32(gid)
	}
	return c.setAttrPath(ctx, "chown", name, a)
}

// Chtimes sets the access and modification times of name (following
// symlinks); a zero time leaves that time unchanged. Explicit times are
// for the owner or root (EPERM).
func (c *Client) Chtimes(ctx context.Context, name string, atime, mtime time.Time) error {
	var a proto.SetAttr
	if !atime.IsZero() {
		a.Valid |= proto.SetAtime
		a.Atime = atime.UnixNano()
	}
	if !mtime.IsZero() {
		a.Valid |= proto.SetMtime
		a.Mtime = mtime.UnixNano()
	}
	return c.setAttrPath(ctx, "chtimes", name, a)
}

// Truncate sets the length of file name (following symlinks); bytes past
// the new length are dropped. Needs write permission.
func (c *Client) Truncate(ctx context.Context, name string, size int64) error {
	// EINVAL for a negative size, EFBIG past proto.MaxFileSize (meta
	// refuses it too): checked before anything is sent.
	if err := proto.CheckFileRange(size, 0); err != nil {
		return pathErr("truncate", name, err)
	}
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr("truncate", name, err)
	}
	n, err := c.statPath(ctx, p, true)
	if err != nil {
		return pathErr("truncate", name, err)
	}
	var resp proto.MetaInodeResp
	if err := c.metaCall(ctx, proto.MethodMetaSetAttr, &proto.MetaSetAttrReq{Ino: n.Ino, Attr: proto.SetAttr{Valid: proto.SetSize, Size: uint64(size)}}, &resp); err != nil {
		return pathErr("truncate", name, err)
	}
	// Cut the chunks at once (meta also queues this for storage's garbage
	// collection), so that a later extension reads zeros; the truncate's
	// capability grants it.
	fc := c.newFileCap(n.Ino, 0, resp.Cap, resp.CapTTL, proto.Session{})
	return pathErr("truncate", name, c.truncateChunks(ctx, fc, n.Layout, n.Ino, size, int64(n.Size)))
}

// SetDirLayout sets directory name's layout policy for files created below
// it from now on (chain table, chunk size, stripe; zero fields: the
// defaults). New subdirectories copy it. The owner or root only.
func (c *Client) SetDirLayout(ctx context.Context, name string, l proto.DirLayout) error {
	p, err := c.clusterPath(name)
	if err != nil {
		return pathErr("setlayout", name, err)
	}
	n, err := c.statPath(ctx, p, true)
	if err == nil {
		var resp proto.MetaInodeResp
		err = c.metaCall(ctx, proto.MethodMetaSetLayout, &proto.MetaSetLayoutReq{Ino: n.Ino, Layout: l}, &resp)
	}
	return pathErr("setlayout", name, err)
}

// StatFS returns the file system's usage: inodes in use and storage
// capacity.
func (c *Client) StatFS(ctx context.Context) (proto.StatFS, error) {
	var resp proto.MetaStatFSResp
	if err := c.metaCall(ctx, proto.MethodMetaStatFS, nil, &resp); err != nil {
		return proto.StatFS{}, errf("statfs", err)
	}
	return resp.StatFS, nil
}
