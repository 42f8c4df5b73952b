package libfff

import (
	"io/fs"
	"time"

	"fff/internal/proto"
)

// FileInfo describes a file, directory or symlink of the cluster. It
// implements fs.FileInfo; Inode holds every attribute (Sys returns a
// pointer to it).
type FileInfo struct {
	name  string
	Inode proto.Inode
}

var _ fs.FileInfo = (*FileInfo)(nil)

func newFileInfo(name string, n proto.Inode) *FileInfo {
	if name == "" {
		name = "/"
	}
	return &FileInfo{name: name, Inode: n}
}

// Name returns the last element of the path ("/" for the root).
func (fi *FileInfo) Name() string { return fi.name }

// Size returns the length in bytes (a symlink's: its target's length).
func (fi *FileInfo) Size() int64 { return int64(fi.Inode.Size) }

// Mode returns the type and permission bits as an fs.FileMode.
func (fi *FileInfo) Mode() fs.FileMode { return FileMode(&fi.Inode) }

// ModTime returns the modification time.
func (fi *FileInfo) ModTime() time.Time { return time.Unix(0, fi.Inode.Mtime) }

// IsDir reports whether the inode is a directory.
func (fi *FileInfo) IsDir() bool { return fi.Inode.Type == proto.TypeDir }

// Sys returns *proto.Inode.
func (fi *FileInfo) Sys() any { return &fi.Inode }

// Ino returns the inode id.
func (fi *FileInfo) Ino() uint64 { return fi.Inode.Ino }

// DirEntry is one entry of a directory listing. It implements fs.DirEntry.
type DirEntry struct {
	name string
	ino  uint64
	typ  proto.FileType
	info *FileInfo // nil when the listing carried no attributes
}

var _ fs.DirEntry = DirEntry{}

// Name returns the entry's name.
func (e DirEntry) Name() string { return e.name }

// Ino returns the entry's inode id.
func (e DirEntry) Ino() uint64 { return e.ino }

// IsDir reports whether the entry is a directory.
func (e DirEntry) IsDir() bool { return e.typ == proto.TypeDir }

// Type returns the type bits of the entry's mode.
func (e DirEntry) Type() fs.FileMode { return typeMode(e.typ) }

// Info returns the entry's attributes as read with the listing (ReadDir
// reads them in the same snapshot as the names). It fails with
// fs.ErrPermission if the listing could not include them (a directory
// readable but not searchable).
func (e DirEntry) Info() (fs.FileInfo, error) {
	if e.info == nil {
		return nil, &fs.PathError{Op: "stat", Path: e.name, Err: errorf(proto.EACCES)}
	}
	return e.info, nil
}

// Attr returns the entry's inode, or nil (see Info).
func (e DirEntry) Attr() *proto.Inode {
	if e.info == nil {
		return nil
	}
	return &e.info.Inode
}

func typeMode(t proto.FileType) fs.FileMode {
	switch t {
	case proto.TypeDir:
		return fs.ModeDir
	case proto.TypeSymlink:
		return fs.ModeSymlink
	case proto.TypeFile:
		return 0
	}
	return fs.ModeIrregular
}

// FileMode returns n's type and mode as an fs.FileMode.
func FileMode(n *proto.Inode) fs.FileMode {
	m := typeMode(n.Type) | fs.FileMode(n.Mode&proto.ModePerm)
	if n.Mode&proto.ModeSetuid != 0 {
		m |= fs.ModeSetuid
	}
	if n.Mode&proto.ModeSetgid != 0 {
		m |= fs.ModeSetgid
	}
	if n.Mode&proto.ModeSticky != 0 {
		m |= fs.ModeSticky
	}
	return m
}

// unixMode returns the 12 POSIX mode bits of m: the permissions and
// fs.ModeSetuid, fs.ModeSetgid, fs.ModeSticky. The POSIX bits 0o7000
// themselves, which fs.FileMode gives no meaning, are accepted too, so
// fs.FileMode(0o1777) and fs.ModeSticky|0o777 are the same mode.
func unixMode(m fs.FileMode) uint32 {
	u := uint32(m) & proto.ModeMask
	if m&fs.ModeSetuid != 0 {
		u |= proto.ModeSetuid
	}
	if m&fs.ModeSetgid != 0 {
		u |= proto.ModeSetgid
	}
	if m&fs.ModeSticky != 0 {
		u |= proto.ModeSticky
	}
	return u
}
