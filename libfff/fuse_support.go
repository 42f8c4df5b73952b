package libfff

import (
	"context"
	"errors"
	"os"

	"fff/internal/proto"
)

// Inode-level namespace calls, for the FUSE mount (libfff/fusefs): the
// kernel names files by inode id and (directory inode, name) pairs, which
// are exactly what the meta service's requests carry, so these skip the
// path resolution of the path-based methods. Errors are the server's
// (*proto.Error, matching the proto sentinels), not path errors.

// LookupIno returns the inode name names in directory parent.
func (c *Client) LookupIno(ctx context.Context, parent uint64, name string) (proto.Inode, error) {
	var resp proto.MetaInodeResp
	err := c.metaCall(ctx, proto.MethodMetaLookup, &proto.MetaLookupReq{Parent: parent, Name: name}, &resp)
	return resp.Inode, err
}

// StatIno returns inode ino's attributes.
func (c *Client) StatIno(ctx context.Context, ino uint64) (proto.Inode, error) {
	var resp proto.MetaInodeResp
	err := c.metaCall(ctx, proto.MethodMetaStat, &proto.MetaStatReq{Ino: ino}, &resp)
	return resp.Inode, err
}

// ReadDirIno lists up to limit entries of directory ino with names after
// after (in byte order), with their attributes if plus; more reports
// whether entries follow.
func (c *Client) ReadDirIno(ctx context.Context, ino uint64, after string, limit int, plus bool) (entries []proto.DirEntry, more bool, err error) {
	var resp proto.MetaReadDirResp
	err = c.metaCall(ctx, proto.MethodMetaReadDir, &proto.MetaReadDirReq{Ino: ino, After: after, Limit: limit, Plus: plus}, &resp)
	return resp.Entries, resp.More, err
}

// MkdirIno creates directory name in parent with mode (no umask).
func (c *Client) MkdirIno(ctx context.Context, parent uint64, name string, mode uint32) (proto.Inode, error) {
	var resp proto.MetaInodeResp
	err := c.metaCall(ctx, proto.MethodMetaMkdir, &proto.MetaMkdirReq{Parent: parent, Name: name, Mode: mode & proto.ModeMask}, &resp)
	return resp.Inode, err
}

// UnlinkIno removes the non-directory name of parent.
func (c *Client) UnlinkIno(ctx context.Context, parent uint64, name string) error {
	return c.metaCall(ctx, proto.MethodMetaUnlink, &proto.MetaUnlinkReq{Parent: parent, Name: name}, nil)
}

// RmdirIno removes the empty directory name of parent.
func (c *Client) RmdirIno(ctx context.Context, parent uint64, name string) error {
	return c.metaCall(ctx, proto.MethodMetaRmdir, &proto.MetaUnlinkReq{Parent: parent, Name: name}, nil)
}

// RenameIno moves srcName of srcParent to dstName of dstParent, replacing
// it as rename(2) does.
func (c *Client) RenameIno(ctx context.Context, srcParent uint64, srcName string, dstParent uint64, dstName string) error {
	return c.metaCall(ctx, proto.MethodMetaRename, &proto.MetaRenameReq{SrcParent: srcParent, SrcName: srcName, DstParent: dstParent, DstName: dstName}, nil)
}

// SymlinkIno creates symlink name in parent pointing to target.
func (c *Client) SymlinkIno(ctx context.Context, parent uint64, name, target string) (proto.Inode, error) {
	var resp proto.MetaInodeResp
	err := c.metaCall(ctx, proto.MethodMetaSymlink, &proto.MetaSymlinkReq{Parent: parent, Name: name, Target: target}, &resp)
	return resp.Inode, err
}

// LinkIno creates newName in newParent as a hard link to ino and returns
// ino's new attributes.
func (c *Client) LinkIno(ctx context.Context, ino, newParent uint64, newName string) (proto.Inode, error) {
	var resp proto.MetaInodeResp
	err := c.metaCall(ctx, proto.MethodMetaLink, &proto.MetaLinkReq{Ino: ino, NewParent: newParent, NewName: newName}, &resp)
	return resp.Inode, err
}

// SetAttrIno changes inode ino's attributes. A size change also cuts the
// chunks on storage at once (as Client.Truncate does), so that a later
// extension reads zeros. Prefer File.Truncate for a file open for writing:
// it keeps that File's write session valid.
func (c *Client) SetAttrIno(ctx context.Context, ino uint64, a proto.SetAttr) (proto.Inode, error) {
	var old proto.Inode
	if a.Valid&proto.SetSize != 0 {
		var err error
		if old, err = c.StatIno(ctx, ino); err != nil {
			return proto.Inode{}, err
		}
	}
	var resp proto.MetaInodeResp
	if err := c.metaCall(ctx, proto.MethodMetaSetAttr, &proto.MetaSetAttrReq{Ino: ino, Attr: a}, &resp); err != nil {
		return proto.Inode{}, err
	}
	if a.Valid&proto.SetSize != 0 {
		fc := c.newFileCap(ino, 0, resp.Cap, resp.CapTTL, proto.Session{})
		if err := c.truncateChunks(ctx, fc, old.Layout, ino, int64(a.Size), int64(old.Size)); err != nil {
			return resp.Inode, err
		}
	}
	return resp.Inode, nil
}

// openFlags maps os.OpenFile's access mode to meta's open flags.
func openFlags(flag int) (proto.OpenFlags, error) {
	switch flag & (os.O_RDONLY | os.O_WRONLY | os.O_RDWR) {
	case os.O_RDONLY:
		return proto.OpenRead, nil
	case os.O_WRONLY:
		return proto.OpenWrite, nil
	case os.O_RDWR:
		return proto.OpenRead | proto.OpenWrite, nil
	}
	return 0, errorf(proto.EINVAL)
}

// OpenIno opens file ino with os.OpenFile's access mode and O_TRUNC and
// O_APPEND; name is what File.Name reports.
func (c *Client) OpenIno(ctx context.Context, ino uint64, name string, flag int) (*File, error) {
	flags, err := openFlags(flag)
	if err != nil {
		return nil, err
	}
	var resp proto.MetaOpenResp
	if err := c.metaCall(ctx, proto.MethodMetaOpen, &proto.MetaOpenReq{Ino: ino, Flags: flags}, &resp); err != nil {
		return nil, err
	}
	return c.finishOpen(ctx, name, flag, resp)
}

// CreateIno creates file name in parent with mode (no umask) and opens it
// with flag's access mode; with excl an existing name fails with EEXIST,
// else an existing file is opened (and truncated with O_TRUNC).
func (c *Client) CreateIno(ctx context.Context, parent uint64, name string, mode uint32, flag int, excl bool) (*File, error) {
	flags, err := openFlags(flag)
	if err != nil {
		return nil, err
	}
	if excl {
		flags |= proto.OpenExcl
	}
	var resp proto.MetaOpenResp
	err = c.metaCall(ctx, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: parent, Name: name, Mode: mode & proto.ModeMask, Flags: flags}, &resp)
	if errors.Is(err, proto.ErrExist) && !excl {
		// The name is a symlink (meta does not follow it on create).
		return nil, err
	}
	if err != nil {
		return nil, err
	}
	if resp.Created {
		flag &^= os.O_TRUNC
	}
	return c.finishOpen(ctx, name, flag, resp)
}

func (c *Client) finishOpen(ctx context.Context, name string, flag int, resp proto.MetaOpenResp) (*File, error) {
	if resp.Inode.Type != proto.TypeFile {
		if resp.Session.ID != 0 {
			_ = c.metaCall(ctx, proto.MethodMetaClose, &proto.MetaCloseReq{Session: resp.Session}, nil)
		}
		if resp.Inode.Type == proto.TypeDir {
			return nil, errorf(proto.EISDIR)
		}
		return nil, errorf(proto.EINVAL)
	}
	f := c.newFile(name, flag, resp)
	if flag&os.O_TRUNC != 0 && resp.Session.ID != 0 && resp.Inode.Size > 0 {
		if err := f.truncate(ctx, 0); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// Inode returns the file's attributes as this File knows them (from Open,
// the latest Stat, Sync or Truncate), with the length extended by its own
// writes.
func (f *File) Inode() proto.Inode {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := f.inode
	n.Size = uint64(f.sizeLocked())
	return n
}

// Writable reports whether the File was opened for writing.
func (f *File) Writable() bool { return f.writable() == nil }
