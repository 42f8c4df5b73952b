// Package storage is the storage service (DESIGN §7): it owns a node's
// storage targets, one chunkengine.Engine each, and answers the storage RPCs
// (proto methods 200–208) over them.
//
// Every chunk request names a target, a chain and the chain version the
// caller's routing info has. The service checks, against its own routing
// info (refreshed once when the caller's chain version is newer):
//
//   - the target is one of this node's (EINVAL "not my target" otherwise);
//   - the chain exists and holds the target (ChainVersionMismatch if the
//     chain is unknown, EINVAL if the target is not in it);
//   - the chain version equals the routing info's (ChainVersionMismatch);
//   - the target is serving (TargetNotServing);
//   - writes, truncates and removes: the target is the chain's head (NotHead).
//
// Writes, truncates and removals travel down the chain (CRAQ, chain.go and
// docs/replication.md) and are acknowledged once every member that takes
// writes has them; a read of a chunk with an update in flight answers
// ChunkPending on every member but the chain's last serving one.
//
// A batched read (MethodStorageRead) reports these checks per IO, in
// ReadResult.Code: one IO with a stale chain version or a damaged block does
// not fail the IOs next to it. The request as a whole fails only when it is
// malformed or its payload would exceed the server's limit (TooLarge). The
// response payload holds exactly Len bytes per IO in order: N data bytes,
// then zeros. Reads of a chunk never written return N = 0 and code OK (the
// file has a hole there).
//
// The GC loop (RunGC) drains meta's GC queue: chunks of deleted files and the
// cut-off part of truncated files are removed from this node's targets.
package storage
