// Package fdbkv is the FoundationDB kv.DB, for clusters where several meta
// servers share one store (DESIGN §3, §6). It is compiled only with the
// build tag fdb, because it links libfdb_c through cgo:
//
//	go build -tags fdb ./...
//
// It needs the FoundationDB client package (libfdb_c and
// <foundationdb/fdb_c.h>) of version 7.3 or newer, and speaks API version
// 730. docs/kv.md says how to install it and how to run the kv conformance
// suite against a real cluster (make test-fdb).
//
// Every DB lives under its own key prefix (a subspace) of the cluster, so
// several fff clusters or test runs can share one FoundationDB cluster and
// a prefix can be dropped at once. Update maps to fdb's Database.Transact
// (retry loop with OnError), View to ReadTransact; FoundationDB errors are
// mapped to the kv sentinels (not_committed after the retry limit →
// kv.ErrConflict, transaction_too_old and transaction_timed_out →
// kv.ErrTxnTooOld, transaction_too_large → kv.ErrTxnTooLarge, …).
//
// Without the fdb tag this package is empty.
package fdbkv
