// Package libfff is the Go client of fff: it finds a cluster, authenticates,
// pulls routing info, talks to meta for the namespace and to storage for
// file bytes, and is what the CLI, the C API (libfff.so), Python and the
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
//
// # Files
//
// Open (os.OpenFile's flags), Create and OpenFile return a *File: an
// io.Reader, io.ReaderAt, io.Writer, io.WriterAt, io.Seeker and io.Closer
// with Sync, Truncate, Stat and Name. The client asks meta for the file's
// inode (its chunk layout) once at Open and then computes placement itself
// (DESIGN §7): chunk i lives on chain Layout.Chains[i % Stripe]; reads go to
// a serving replica of the chain (chosen by a hash of the chunk id, the next
// one on a retry), writes to the chain's head. A request refused because the
// chain changed (ChainVersionMismatch, NotHead, TargetNotServing, …) is
// retried after a routing refresh.
//
// Sequential writes are buffered and sent chunk by chunk in the background
// (write-behind, bounded by Options.WriteBuffer); errors surface at the next
// Write, Sync or Close. Sync and Close report the length to meta. Truncate
// cuts the chunks on storage at once, so an extension reads zeros.
//
// # Writing a file atomically
//
// CreateTemp creates a file without a name (Linux's O_TMPFILE) and
// File.Publish names it (linkat): the length and the name appear in one
// meta transaction after every write has landed, replacing an existing
// file as Rename does, so readers of the name see the old file or the
// whole new one. Closing an unpublished file deletes it; one whose client
// died is deleted when meta times its write session out. `fff put` and
// `fff cp` write every file so:
//
//	f, err := c.CreateTemp(ctx, "/ckpt", 0o644)
//	if err != nil { … }
//	if _, err := f.Write(data); err != nil { f.Close(); … } // Close deletes it
//	if err := f.Publish(ctx, "/ckpt/model.bin"); err != nil { f.Close(); … }
//	err = f.Close()
//
// # Batched reads
//
// Client.ReadBatch takes many ReadOps (file, offset, destination) and
// completes each in place with its own N and Err. The reads are cut on chunk
// boundaries, grouped per storage node, coalesced where ranges of one chunk
// touch, packed into requests of at most 1024 IOs and 16 MiB, and the
// requests sent in parallel; response payloads land straight in the
// destinations (rpc.IntoBuffers), without a copy. File.ReadAt uses the same
// path, so one large read is spread over parallel requests. Client.Batcher
// adapts ReadBatch to ffrecord.Batcher for FFRecord datasets stored in fff:
//
//	f, _ := c.OpenFile(ctx, "/data/train.ffr")
//	r, _ := ffrecord.Open(ctx, []ffrecord.Source{{Name: f.Name(), R: f, Size: f.Size()}},
//		ffrecord.ReaderOptions{Batcher: c.Batcher()})
package libfff
