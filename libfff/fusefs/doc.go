// Package fusefs is fff's FUSE file system: it mounts a cluster's namespace
// on a local directory through the libfff client, so that every program (ls,
// cp, rsync, tar, fio, Python's open(), other FFRecord readers) can use it.
// `fff mount` is its command line; docs/fuse.md is the user's guide.
//
//	c, _ := libfff.Connect(ctx, fusefs.ClientOptions(libfff.Options{}))
//	srv, err := fusefs.Mount(c, "/mnt/fff", fusefs.Options{})
//	…
//	srv.Unmount() // or `fff umount /mnt/fff`
//	srv.Wait()
//
// # Design
//
// The file system implements go-fuse's raw API (fuse.RawFileSystem), not
// its fs package: the kernel's node ids are fff's inode ids (the root is
// inode 1 in both), and every request names a (directory inode, name) pair
// or an inode, which is exactly what the meta service's requests carry. So
// the mount keeps no inode tree, no lookup counts and no path cache of its
// own (FORGET is a no-op); each kernel request is one meta call (two where
// the caller's ownership is applied), hard links need no bookkeeping, and
// READDIRPLUS answers a whole directory page, attributes included, from one
// meta ReadDir. The kernel's dentry and attribute caches, with the timeouts
// of Options, are the only metadata caches.
//
// Permissions: the cluster checks every request against the identity of
// the mount's token. The meta protocol has no "on behalf of" field, so the
// mount asks the kernel to enforce POSIX permissions (default_permissions)
// against the caller's uid/gids with the attributes from the cluster. With
// an admin token (root in the cluster) files, directories and symlinks a
// caller creates are given the caller's uid and gid, so ownership looks as
// on a local file system; with another user's token they belong to that
// user, and the cluster refuses what that user may not do.
//
// Data: reads go straight to storage through libfff's batched read path,
// several at once for one file; reads that arrive while others are under
// way are gathered into Client.ReadBatch calls (batch.go). A handle that
// reads sequentially gets its own readahead (the kernel caps its readahead
// at 128 KiB): a window of 1 MiB blocks fetched in parallel ahead of the
// reader, starting at 2 MiB and doubling on each sequential read up to
// Options.MaxReadahead, whose replies are written to the kernel straight
// from the blocks; a read that is not sequential drops the window and goes
// straight to storage. Writes go to the handle's libfff.File, which
// buffers sequential writes and sends them chunk by chunk in the background;
// FLUSH (every close(2)) and FSYNC wait for them and report the length to
// meta (unless meta has it already), RELEASE closes the write session.
//
// Small files (cp -a, tar, rsync; docs/fuse.md "Small files"): a SETATTR
// on a file open for writing starts sending its buffered data; with an
// admin token, mode, owner and time changes of such a file are answered at
// once and applied in the background, in order (attrq.go), and FLUSH and
// FSYNC wait for them. An explicit mtime does not wait for the data either:
// the writes before it are reported as length only (libfff File.KeepTimes)
// where meta's GC allows it.
//
// Failures: a request that fails because the cluster is unreachable
// (proto.Unavailable, e.g. while `fffd local` restarts) is retried with
// backoff for up to Options.RetryTimeout and then fails with EIO. Other
// errors map to the errno of their code (proto.Code.Errno).
package fusefs
