// Package etcdkv is the kv.DB over etcd v3: the replicated engine that runs
// and can be broken on any machine (an fffd node embeds an etcd member, see
// Member), for clusters where several meta servers and mgmtd replicas share
// one store. It passes the kv conformance suite against a 3-member cluster.
//
// # Serializable transactions on etcd
//
// etcd offers multi-key transactions whose guards compare a key's (or every
// key's in a range) revision, value or version against a constant. fdb-style
// optimistic transactions are built on them:
//
//   - An attempt reads at one revision R (the first read is linearizable and
//     fixes R; every later read asks for revision R), so it sees a snapshot.
//     Writes stay in a txnkit.Buffer (read-your-writes).
//   - At commit the attempt sends one etcd Txn: If every key and range it
//     read still has ModRevision <= R, Then its writes. A failed guard is a
//     conflict: the body runs again at a fresh revision, with backoff, up
//     to RetryLimit times (then kv.ErrConflict).
//
// Per-key revisions alone do not protect a range read: a key deleted after R
// vanishes from the range, so a guard over the range still holds (the
// phantom and write-skew cases of the conformance suite). So a Clear does
// not delete: it writes a tombstone (a value whose first byte is 0), which
// bumps the key's revision like any write. Reads skip tombstones. Every key
// therefore stays in etcd after it is cleared, until collected:
//
//   - Each tombstone has an entry in an index range (prefix "t"). A
//     collector (every GCInterval, in each DB) deletes tombstones from the
//     index in batches, each batch one Txn guarded by "still a tombstone",
//     and in the same Txn writes the epoch key ("g").
//   - Every attempt that read anything also guards "epoch key ModRevision
//     <= R". So a collection aborts (once) the attempts that read before it,
//     and no attempt can miss a delete whose tombstone was collected.
//   - ClearRange deletes for real (one DeleteRange, whatever the range
//     holds) and writes the epoch key in the same Txn, for the same reason.
//     fff's metadata does not use ClearRange on hot paths.
//
// Values carry one leading byte (1 = live, 0 = tombstone). Keys live under
// Options.Prefix: prefix+"d"+key for data, prefix+"t"+key for the tombstone
// index, prefix+"g" for the epoch, so several clusters or test runs can share
// one etcd cluster.
//
// # Limits and etcd's settings
//
// The kv limits (kv.MaxTxnSize and the rest) are checked by txnkit's guard
// before etcd sees anything, as on every backend. A 10 MB transaction needs
// an etcd that accepts it: --max-request-bytes of at least RequiredRequestBytes
// and --max-txn-ops of at least RequiredTxnOps (Member sets both); a smaller
// setting shows as kv.ErrTxnTooLarge naming the flag.
//
// # Outcomes
//
// A commit whose answer is lost (the member or its leader went away, a
// proposal timed out) has an unknown outcome: Update returns
// kv.ErrUnknownResult and does not run the body again, because the body is
// not known to be idempotent. Reads are always safe to retry and are.
//
// # Costs
//
// A read-write transaction costs one round trip per read (the first a
// linearizable read) and one Raft proposal at commit; a read-only one costs
// its reads. etcd has no reverse index scan: a reverse Range reads its whole
// range on the server (fff does not use them on hot paths).
package etcdkv
