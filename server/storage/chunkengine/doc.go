// Package chunkengine stores the chunks of one storage target (DESIGN §7):
// chunk metadata in a local bbolt KV, chunk data in one file per chunk,
// disk IO through io_uring with O_DIRECT.
//
// # Layout
//
// A target directory holds
//
//	chunks.db                    bbolt (server/kv/bboltkv): one record per chunk
//	chunks.db.ballast            room kept for removals on a full disk (bboltkv)
//	data/ab/cd/<ino>-<idx>.<gen> the chunk's data, at its chunk offsets
//
// where ab/cd are the low 16 bits of the CRC32C of the chunk's key and gen
// is a file generation that is never reused (reserved in blocks in the KV).
// A chunk's record (see record) holds its committed version (+1 per committed
// write or truncate), length, one CRC32C per 4 KiB block (the last block's
// covering only the bytes below the length), the generation of its data file
// and "high", the largest length any committed version of that file had.
// The records are also kept in a bounded in-memory LRU (Options.CacheBytes),
// updated by every commit, so a read finds the checksums it needs without
// another disk IO.
//
// # Reads
//
// A read of n bytes reads the 4 KiB-aligned cover of those bytes, clipped to
// the committed length, and nothing more: wholly wanted blocks go straight
// into the caller's buffer when its address is 4 KiB-aligned (O_DIRECT needs
// that), the partially wanted first and last blocks (and a misaligned
// middle) into the engine's aligned buffers. Every block read is checked
// against its CRC32C before a byte is delivered; a mismatch is a
// proto.ChecksumMismatch error naming chunk and block. ReadBatch submits the
// IO of many reads on many chunks at once. Reads never wait for writes: they
// work from the committed record they found (see ReadBatch).
//
// # Writes and crash atomicity
//
// Writes to one chunk are serialized (striped locks); writes to different
// chunks run in parallel and their KV commits share fsyncs (bbolt group
// commit). The data is durable before the metadata that makes it visible is
// committed, and the committed record is the only thing a reader trusts:
//
//   - Append (every written byte at or beyond the committed length L, and
//     no committed version of the file ever reached beyond L, L == high):
//     the bytes are written into the current data file, fdatasync, then the
//     new record (length, CRCs, version) is committed. A crash before the
//     commit leaves bytes beyond L that no record covers; the old version is
//     intact. With O_DIRECT the write is widened to whole blocks, rewriting
//     the committed bytes of L's block with their own (verified) values, so
//     even a torn sector write cannot change them.
//   - Overwrite (any committed byte changes, or L < high after a shrink):
//     copy-on-write. The new content is assembled in memory from the old
//     blocks (verified) and the data, written to a new data file, fsynced
//     together with its directory, the record naming the new file is
//     committed, and then the old file is unlinked. A crash before the
//     commit leaves an orphan new file, one after it an orphan old file;
//     Open removes files that no record names.
//   - Truncate: growing is an append of zeros; shrinking commits the new
//     length and the recomputed CRC of the new last block (read and
//     verified first), then shrinks the file (removes it at length 0). A
//     crash before the shrink only leaves unreferenced bytes.
//   - Remove: the record is deleted (durably), then the file unlinked.
//
// bbolt commits atomically, so after a crash every chunk is exactly at its
// old or its new committed version, and every acknowledged write is there.
//
// # Concurrency with readers
//
// A reader holds its snapshot record and a reference on the open data file
// it names. Appends only touch bytes that no committed version of the file
// covered (that is what high guards), so old-snapshot readers never see a
// changed byte; copy-on-write leaves the old file readable through open
// descriptors until its last reader lets go. A reader that finds its file
// gone or short or not matching (a newer version replaced or shrank it)
// re-reads under the newer version. A reader sees one committed version,
// entirely.
//
// # O_DIRECT
//
// Open probes O_DIRECT in the data directory. Where it is refused (tmpfs,
// some FUSE and overlay filesystems) IO is buffered, Direct reports false
// and a warning is logged.
package chunkengine
