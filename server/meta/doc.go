// Package meta is fff's namespace service (DESIGN §6): inodes, directory
// entries, file layouts, write sessions, users and the GC queue of deleted
// files' chunks, all kept in a transactional KV (package kv). docs/metadata.md
// describes it for users and operators.
//
// The service is stateless over the KV: every fact lives in the KV and every
// operation is one transaction (RemoveAll and PruneSessions: a sequence of
// bounded ones), so several Services over one KV give the same answers. The
// only per-instance state is a block of inode ids taken from a KV counter.
// Reads (Lookup, Stat, StatPath, ReadDir, Readlink, read-only Open, StatFS)
// run in read-only transactions; every change is one read-write transaction
// that checks what it relies on inside the transaction, so concurrent
// operations are serializable (exactly one of many concurrent creates of a
// name wins, concurrent renames neither lose nor duplicate entries).
//
// Errors are proto codes (errors.Is(err, proto.ErrNotFound), …): ENOENT,
// EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EACCES (POSIX permission bits), EPERM
// (owner/root-only operations), EINVAL, ENAMETOOLONG, ELOOP, EBADF (unknown
// write session), ENOSPC (no chains to place a file on).
//
// Permission checks follow POSIX with the caller's Identity (uid, groups):
// search permission on every directory of a path, write and search
// permission on a directory to add or remove entries, the sticky bit, and
// the usual chmod/chown rules. Admin identities and uid 0 are root.
//
// The key schema is in keys.go; the directory attributes are not updated
// when entries are added or removed (no hot key per directory, so creates
// in one directory do not conflict on FoundationDB), and directories report
// nlink 1.
package meta
