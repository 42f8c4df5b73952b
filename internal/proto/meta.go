package proto

// Messages of the meta service (server/meta): the namespace types every
// client sees (Inode, Layout, DirEntry, …) and one request/response pair per
// RPC method. docs/metadata.md describes the semantics.
//
// The msgpack field names below are part of the wire protocol, and Inode's
// are also meta's storage format in the KV: never rename a tag; add new
// fields with new tags and omitempty.

// Meta RPC methods. The range 100..199 belongs to the meta service; numbers
// are never reused.
const (
	MethodMetaLookup       uint16 = 100
	MethodMetaStat         uint16 = 101
	MethodMetaStatPath     uint16 = 102
	MethodMetaReadDir      uint16 = 103
	MethodMetaMkdir        uint16 = 104
	MethodMetaCreate       uint16 = 105
	MethodMetaOpen         uint16 = 106
	MethodMetaClose        uint16 = 107
	MethodMetaReportLength uint16 = 108
	MethodMetaUnlink       uint16 = 109
	MethodMetaRmdir        uint16 = 110
	MethodMetaRename       uint16 = 111
	MethodMetaSymlink      uint16 = 112
	MethodMetaReadlink     uint16 = 113
	MethodMetaLink         uint16 = 114
	MethodMetaSetAttr      uint16 = 115
	MethodMetaSetLayout    uint16 = 116
	MethodMetaStatFS       uint16 = 117
	MethodMetaRemoveAll    uint16 = 118
	MethodMetaWhoAmI       uint16 = 119
	MethodMetaCreateTemp   uint16 = 120 // an anonymous file (O_TMPFILE)
	MethodMetaPublish      uint16 = 121 // link an anonymous file (linkat)

	MethodMetaUserAdd    uint16 = 130
	MethodMetaUserList   uint16 = 131
	MethodMetaUserRemove uint16 = 132
	MethodMetaUserToken  uint16 = 133 // rotate a user's token
	// MethodMetaCredentials: a token's stored key and identity by lookup
	// id, for the handshakes of nodes without the user database (storage
	// nodes). Admin only.
	MethodMetaCredentials uint16 = 134

	MethodMetaGCList        uint16 = 150
	MethodMetaGCDone        uint16 = 151
	MethodMetaPruneSessions uint16 = 152
)

// RootIno is the inode id of the root directory.
const RootIno uint64 = 1

// FileType is the kind of an inode.
type FileType uint8

// File types.
const (
	TypeFile    FileType = 1
	TypeDir     FileType = 2
	TypeSymlink FileType = 3
)

func (t FileType) String() string {
	switch t {
	case TypeFile:
		return "file"
	case TypeDir:
		return "dir"
	case TypeSymlink:
		return "symlink"
	}
	return "unknown"
}

// Mode bits beyond the permissions (Inode.Mode holds the low 12 bits of a
// POSIX mode: permissions, setuid, setgid, sticky).
const (
	ModePerm   uint32 = 0o777
	ModeSticky uint32 = 0o1000
	ModeSetgid uint32 = 0o2000
	ModeSetuid uint32 = 0o4000
	ModeMask   uint32 = 0o7777
)

// Layout says where a file's chunks live (DESIGN §7): chunk i of the file is
// chunk (Ino, i) on chain Chains[i % Stripe], and holds bytes
// [i*ChunkSize, (i+1)*ChunkSize) of the file. It is fixed when the file is
// created.
type Layout struct {
	// ChainTable is the id of the chain table the chains were chosen from.
	ChainTable uint32 `msgpack:"t"`
	// ChunkSize in bytes, a power of two.
	ChunkSize uint32 `msgpack:"c"`
	// Stripe is len(Chains): the number of chains the file is striped over.
	// 0 (no chains) means no storage was configured when the file was
	// created; such a file can hold no data.
	Stripe uint32 `msgpack:"s"`
	// Chains are chain ids, chosen round robin from the chain table starting
	// at a per-file offset and shuffled with Seed.
	Chains []uint32 `msgpack:"ch,omitempty"`
	// Seed is the per-file shuffle seed.
	Seed uint64 `msgpack:"sd,omitempty"`
}

// ChainOf returns the chain id that holds chunk index idx (0 if the layout
// has no chains).
func (l *Layout) ChainOf(idx uint64) uint32 {
	if l == nil || len(l.Chains) == 0 {
		return 0
	}
	return l.Chains[idx%uint64(len(l.Chains))]
}

// DirLayout is a directory's layout policy for new files below it. A zero
// field means the service default. New subdirectories copy their parent's
// policy when they are created.
type DirLayout struct {
	ChainTable uint32 `msgpack:"t,omitempty"`
	ChunkSize  uint32 `msgpack:"c,omitempty"`
	Stripe     uint32 `msgpack:"s,omitempty"`
}

// Inode is the attributes of a file, directory or symlink.
type Inode struct {
	Ino   uint64   `msgpack:"ino"`
	Type  FileType `msgpack:"type"`
	Mode  uint32   `msgpack:"mode"` // permission bits and setuid/setgid/sticky (ModeMask)
	UID   uint32   `msgpack:"uid"`
	GID   uint32   `msgpack:"gid"`
	Nlink uint32   `msgpack:"nlink"` // directories always report 1 (like btrfs)
	Size  uint64   `msgpack:"size"`  // bytes; a symlink's is its target's length
	Atime int64    `msgpack:"atime"` // ns since the Unix epoch
	Mtime int64    `msgpack:"mtime"`
	Ctime int64    `msgpack:"ctime"`
	// TruncVer counts the truncates of a file: a length reported by a write
	// session opened before the latest truncate is ignored.
	TruncVer uint64 `msgpack:"tv,omitempty"`
	// WriteVer counts the write sessions that reported writing data; the
	// GC queue uses it to tell whether a truncated range was written since.
	WriteVer uint64 `msgpack:"wv,omitempty"`
	// Target is a symlink's target.
	Target string `msgpack:"target,omitempty"`
	// Layout is a file's chunk layout (nil for directories and symlinks).
	Layout *Layout `msgpack:"layout,omitempty"`
	// Parent is a directory's parent directory (the root's is itself).
	Parent uint64 `msgpack:"parent,omitempty"`
	// Links are the directories holding a file's or symlink's names, one
	// entry per name (a directory twice if it holds two of them): meta
	// checks that a caller can reach an inode through one of them before
	// an inode-level call. Empty for an anonymous (CreateTemp) file.
	Links []uint64 `msgpack:"pl,omitempty"`
	// DirLayout is a directory's layout policy for new files.
	DirLayout *DirLayout `msgpack:"dl,omitempty"`
}

// StMode returns the POSIX st_mode: the file type bits and Mode.
func (i *Inode) StMode() uint32 {
	var t uint32
	switch i.Type {
	case TypeFile:
		t = 0o100000
	case TypeDir:
		t = 0o040000
	case TypeSymlink:
		t = 0o120000
	}
	return t | i.Mode&ModeMask
}

// IsDir reports whether the inode is a directory.
func (i *Inode) IsDir() bool { return i.Type == TypeDir }

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	Name string   `msgpack:"name"`
	Ino  uint64   `msgpack:"ino"`
	Type FileType `msgpack:"type"`
	// Attr is the entry's inode, only in ReadDir "plus" listings (nil if the
	// inode vanished between the entry and its read, which one snapshot
	// makes impossible, or when not asked for).
	Attr *Inode `msgpack:"attr,omitempty"`
}

// Session is a handle on an open-for-write session of a file. ID 0 means
// "no session" (a read-only open).
type Session struct {
	Ino uint64 `msgpack:"ino"`
	ID  uint64 `msgpack:"id"`
}

// OpenFlags select what Open and Create do.
type OpenFlags uint32

// Open flags.
const (
	OpenRead  OpenFlags = 1 << 0 // check read permission
	OpenWrite OpenFlags = 1 << 1 // check write permission and open a write session
	OpenTrunc OpenFlags = 1 << 2 // truncate to 0 (needs write permission)
	OpenExcl  OpenFlags = 1 << 3 // Create only: fail with EEXIST if the name exists
)

// SetAttr selects and carries the attributes SetAttr changes. Valid is a
// bitmask of the Set* constants; fields not selected are ignored.
type SetAttr struct {
	Valid uint32 `msgpack:"valid"`
	Mode  uint32 `msgpack:"mode,omitempty"`
	UID   uint32 `msgpack:"uid,omitempty"`
	GID   uint32 `msgpack:"gid,omitempty"`
	Size  uint64 `msgpack:"size,omitempty"`
	Atime int64  `msgpack:"atime,omitempty"`
	Mtime int64  `msgpack:"mtime,omitempty"`
}

// ApplyOwner sets n's owner and group where a changes them, and reports
// whether either changed. A file that changes hands loses setuid, and
// setgid where the group may execute it, as chown(2) does. Who may do it
// is the caller's to check.
func (a SetAttr) ApplyOwner(n *Inode) bool {
	uidChange := a.Valid&SetUID != 0 && a.UID != n.UID
	gidChange := a.Valid&SetGID != 0 && a.GID != n.GID
	if uidChange {
		n.UID = a.UID
	}
	if gidChange {
		n.GID = a.GID
	}
	if (uidChange || gidChange) && n.Type == TypeFile {
		n.Mode &^= ModeSetuid
		if n.Mode&0o010 != 0 {
			n.Mode &^= ModeSetgid
		}
	}
	return uidChange || gidChange
}

// ApplyTimes sets n's atime and mtime as a says (explicit, or now: the
// server's clock) and its ctime to now. Who may do it is the caller's to
// check.
func (a SetAttr) ApplyTimes(n *Inode, now int64) {
	switch {
	case a.Valid&SetAtime != 0:
		n.Atime = a.Atime
	case a.Valid&SetAtimeNow != 0:
		n.Atime = now
	}
	switch {
	case a.Valid&SetMtime != 0:
		n.Mtime = a.Mtime
	case a.Valid&SetMtimeNow != 0:
		n.Mtime = now
	}
	n.Ctime = now
}

// SetAttr.Valid bits.
const (
	SetMode     uint32 = 1 << 0
	SetUID      uint32 = 1 << 1
	SetGID      uint32 = 1 << 2
	SetSize     uint32 = 1 << 3
	SetAtime    uint32 = 1 << 4 // to SetAttr.Atime
	SetMtime    uint32 = 1 << 5 // to SetAttr.Mtime
	SetAtimeNow uint32 = 1 << 6 // to the server's clock
	SetMtimeNow uint32 = 1 << 7
)

// StatFS is the file system's usage.
type StatFS struct {
	Inodes     uint64 `msgpack:"inodes"`      // inodes in use
	TotalBytes uint64 `msgpack:"total_bytes"` // storage capacity (0 if unknown)
	FreeBytes  uint64 `msgpack:"free_bytes"`
}

// User is a user account (never its token).
type User struct {
	Name    string   `msgpack:"name"`
	UID     uint32   `msgpack:"uid"`
	GIDs    []uint32 `msgpack:"gids"`
	Admin   bool     `msgpack:"admin"`
	Created int64    `msgpack:"created"` // ns since the Unix epoch
}

// GCKind says what a GC record asks storage to do.
type GCKind uint8

// GC record kinds.
const (
	// GCDelete: the file is gone; remove every chunk (Ino, *) from every
	// chain of Layout.
	GCDelete GCKind = 1
	// GCTruncate: the file was truncated to From bytes; remove the bytes at
	// offsets >= From: chunk From/ChunkSize is cut to From%ChunkSize bytes
	// (removed if that is 0), every later chunk is removed.
	GCTruncate GCKind = 2
)

// GCID names a GC record.
type GCID struct {
	Ino uint64 `msgpack:"ino"`
	Seq uint64 `msgpack:"seq"`
}

// GCRecord is one entry of the GC queue.
type GCRecord struct {
	ID     GCID   `msgpack:"id"`
	Kind   GCKind `msgpack:"kind"`
	Layout Layout `msgpack:"layout"`
	From   uint64 `msgpack:"from"` // GCTruncate: the new size
	Size   uint64 `msgpack:"size"` // the size known before the delete/truncate (a hint)
	Time   int64  `msgpack:"time"` // when it was queued (ns)
	// WriteVer is the file's Inode.WriteVer when a truncate was queued.
	WriteVer uint64 `msgpack:"wv,omitempty"`
	// Obsolete: do nothing for this record, only acknowledge it with GCDone
	// (a truncate whose range the file has been written to since, or whose
	// file is gone and covered by a GCDelete record).
	Obsolete bool `msgpack:"obsolete,omitempty"`
}

// Requests and responses. Every request is made on behalf of the identity
// the connection authenticated as.

type (
	MetaLookupReq struct {
		Parent uint64 `msgpack:"parent"`
		Name   string `msgpack:"name"`
	}
	MetaStatReq struct {
		Ino uint64 `msgpack:"ino"`
	}
	MetaStatPathReq struct {
		Path   string `msgpack:"path"`
		Follow bool   `msgpack:"follow"` // follow a symlink in the last component
	}
	// MetaInodeResp answers Lookup, Stat, StatPath, Mkdir, Symlink, Link,
	// SetAttr, SetLayout, Close, ReportLength and Publish.
	MetaInodeResp struct {
		Inode Inode `msgpack:"inode"`
		// Cap, from a SetAttr that changed a file's size, is a write
		// capability for cutting its chunks (valid for CapTTL ns).
		Cap    *Capability `msgpack:"cap,omitempty"`
		CapTTL int64       `msgpack:"cap_ttl,omitempty"`
	}
	MetaReadDirReq struct {
		Ino   uint64 `msgpack:"ino"`
		After string `msgpack:"after,omitempty"` // list names > After
		Limit int    `msgpack:"limit,omitempty"` // 0: the server's default
		Plus  bool   `msgpack:"plus,omitempty"`  // include attributes
	}
	MetaReadDirResp struct {
		Entries []DirEntry `msgpack:"entries"`
		More    bool       `msgpack:"more"` // more entries follow the last one
	}
	MetaMkdirReq struct {
		Parent uint64 `msgpack:"parent"`
		Name   string `msgpack:"name"`
		Mode   uint32 `msgpack:"mode"`
	}
	MetaCreateReq struct {
		Parent uint64    `msgpack:"parent"`
		Name   string    `msgpack:"name"`
		Mode   uint32    `msgpack:"mode"`
		Flags  OpenFlags `msgpack:"flags"`
	}
	// MetaOpenResp answers Create, CreateTemp and Open.
	MetaOpenResp struct {
		Inode   Inode   `msgpack:"inode"`
		Session Session `msgpack:"session"`
		Created bool    `msgpack:"created,omitempty"`
		// Cap is the capability for the file's chunks (read, and write
		// for a write open), valid for CapTTL ns; nil from a meta
		// server without a capability key.
		Cap    *Capability `msgpack:"cap,omitempty"`
		CapTTL int64       `msgpack:"cap_ttl,omitempty"`
	}
	// MetaCreateTempReq asks for an anonymous file in directory Parent
	// (answered by MetaOpenResp).
	MetaCreateTempReq struct {
		Parent uint64 `msgpack:"parent"`
		Mode   uint32 `msgpack:"mode"`
	}
	// MetaPublishReq links the anonymous file of Session as Name in
	// Parent, applying Length and Wrote first as a length report does
	// (answered by MetaInodeResp).
	MetaPublishReq struct {
		Session   Session `msgpack:"session"`
		Length    uint64  `msgpack:"length"`
		Wrote     bool    `msgpack:"wrote"`
		Parent    uint64  `msgpack:"parent"`
		Name      string  `msgpack:"name"`
		NoReplace bool    `msgpack:"no_replace,omitempty"` // EEXIST instead of replacing
	}
	MetaOpenReq struct {
		Ino   uint64    `msgpack:"ino"`
		Flags OpenFlags `msgpack:"flags"`
	}
	MetaCloseReq struct {
		Session Session `msgpack:"session"`
		Length  uint64  `msgpack:"length"`
		Wrote   bool    `msgpack:"wrote"` // the session wrote data: update mtime
	}
	MetaUnlinkReq struct {
		Parent uint64 `msgpack:"parent"`
		Name   string `msgpack:"name"`
	}
	MetaRenameReq struct {
		SrcParent uint64 `msgpack:"src_parent"`
		SrcName   string `msgpack:"src_name"`
		DstParent uint64 `msgpack:"dst_parent"`
		DstName   string `msgpack:"dst_name"`
	}
	MetaSymlinkReq struct {
		Parent uint64 `msgpack:"parent"`
		Name   string `msgpack:"name"`
		Target string `msgpack:"target"`
	}
	MetaReadlinkResp struct {
		Target string `msgpack:"target"`
	}
	MetaLinkReq struct {
		Ino       uint64 `msgpack:"ino"`
		NewParent uint64 `msgpack:"new_parent"`
		NewName   string `msgpack:"new_name"`
	}
	MetaSetAttrReq struct {
		Ino  uint64  `msgpack:"ino"`
		Attr SetAttr `msgpack:"attr"`
	}
	MetaSetLayoutReq struct {
		Ino    uint64    `msgpack:"ino"`
		Layout DirLayout `msgpack:"layout"`
	}
	MetaStatFSResp struct {
		StatFS StatFS `msgpack:"statfs"`
	}
	MetaRemoveAllResp struct {
		Removed uint64 `msgpack:"removed"` // inodes unlinked
	}
	MetaWhoAmIResp struct {
		Name  string   `msgpack:"name"`
		UID   uint32   `msgpack:"uid"`
		GIDs  []uint32 `msgpack:"gids"`
		Admin bool     `msgpack:"admin"`
	}
	MetaUserAddReq struct {
		Name  string   `msgpack:"name"`
		UID   uint32   `msgpack:"uid"`
		GIDs  []uint32 `msgpack:"gids"`
		Admin bool     `msgpack:"admin"`
	}
	// MetaTokenResp answers UserAdd and UserToken: the new token, shown once.
	MetaTokenResp struct {
		Token string `msgpack:"token"`
	}
	MetaUserListResp struct {
		Users []User `msgpack:"users"`
	}
	// MetaCredentialsReq names a token by its lookup id (rpc.LookupID).
	MetaCredentialsReq struct {
		ID []byte `msgpack:"id"`
	}
	// MetaCredentialsResp is the token's stored key (rpc.StoredKey: its
	// SHA-256, which does not let anyone connect) and its user.
	MetaCredentialsResp struct {
		Key   []byte   `msgpack:"key"`
		Name  string   `msgpack:"name"`
		UID   uint32   `msgpack:"uid"`
		GIDs  []uint32 `msgpack:"gids"`
		Admin bool     `msgpack:"admin"`
	}
	// MetaUserReq names a user (UserRemove, UserToken).
	MetaUserReq struct {
		Name string `msgpack:"name"`
	}
	MetaGCListReq struct {
		Limit int `msgpack:"limit"`
		// After, if set, lists the records that come after this id in
		// queue order, so a collector can page through a queue whose
		// head it cannot act on. Servers that predate it list from the
		// start.
		After *GCID `msgpack:"after,omitempty"`
	}
	MetaGCListResp struct {
		Records []GCRecord `msgpack:"records"`
	}
	MetaGCDoneReq struct {
		IDs []GCID `msgpack:"ids"`
	}
	MetaPruneSessionsReq struct {
		MaxAge int64 `msgpack:"max_age"` // ns; sessions not refreshed for longer are closed
	}
	MetaCountResp struct {
		N uint64 `msgpack:"n"`
	}
)
