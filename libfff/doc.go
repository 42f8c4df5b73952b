// Package libfff is the Go client of fff: it finds a cluster, authenticates,
// pulls routing info, talks to meta for the namespace and (later) to storage
// for file bytes, and is what the CLI, the C API (libfff.so), Python and the
// FUSE mount are built on.
//
// # Connecting
//
//	c, err := libfff.Connect(ctx, libfff.Options{}) // the default cluster
//	if err != nil { … }                             // ErrNoCluster, proto.ErrUnauthenticated, proto.ErrUnavailable
//	defer c.Close()
//
// The default cluster is FFF_CLUSTER (with FFF_TOKEN), else the one `fff up`
// recorded in the cluster file (ClusterFile). Options.Address and
// Options.Token name another.
//
// # Namespace
//
// Client's namespace methods mirror package os, with a context first:
// Stat, Lstat, ReadDir, Mkdir, MkdirAll, CreateFile (a new empty file),
// Touch, Remove, RemoveAll, Rename, Symlink, Readlink, Link, Chmod, Chown,
// Chtimes, Truncate, plus SetDirLayout, StatFS and WhoAmI, and the admin's
// UserAdd, UserList, UserRemove, UserRotateToken. Paths are cluster paths:
// "/a/b" or "fff:///a/b" (ParsePath reads every path form of DESIGN §10).
// Attributes come back as *FileInfo (an fs.FileInfo whose Inode field is
// the full proto.Inode, chunk layout included) and DirEntry (an
// fs.DirEntry).
//
// Errors are *fs.PathError (*os.LinkError for Rename, Link, Symlink) whose
// Err matches the proto sentinel of its code and the io/fs error of the
// same meaning:
//
//	_, err := c.Stat(ctx, "/missing")
//	errors.Is(err, proto.ErrNotFound) // true
//	errors.Is(err, fs.ErrNotExist)    // true
//	err.Error()                       // "stat /missing: no such file or directory"
package libfff
