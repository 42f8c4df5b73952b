package kv

// How a read-write transaction's size is counted against MaxTxnSize.
//
// FoundationDB counts the bytes a commit sends: every mutation (key and
// value; a single-key clear is a clear of [key, key+0x00)), every write
// conflict range and every read conflict range. The functions below count
// the same things, per operation and without the coalescing FoundationDB
// does, and charge every key KeyPrefixReserve extra bytes for the prefix a
// backend may add. The count is therefore never below what FoundationDB
// computes for the same transaction, so a transaction accepted here is
// never refused by FoundationDB for its size, and the limit falls at the
// same operation on every backend. Reads in View are not counted (a
// read-only transaction sends no commit).

// SetCost is the cost of Set: the mutation plus its write conflict range.
func SetCost(keyLen, valueLen int) int64 {
	k := int64(keyLen + KeyPrefixReserve)
	return k + int64(valueLen) + (2*k + 1)
}

// ClearCost is the cost of Clear: the mutation [key, key+0x00) plus the
// same range as a write conflict range.
func ClearCost(keyLen int) int64 {
	k := int64(keyLen + KeyPrefixReserve)
	return 2 * (2*k + 1)
}

// ClearRangeCost is the cost of ClearRange: its two keys, once as the
// mutation and once as the write conflict range. The data removed does
// not count.
func ClearRangeCost(beginLen, endLen int) int64 {
	return 2 * int64(beginLen+endLen+2*KeyPrefixReserve)
}

// GetCost is the cost of Get in a read-write transaction: its read
// conflict range [key, key+0x00).
func GetCost(keyLen int) int64 {
	k := int64(keyLen + KeyPrefixReserve)
	return 2*k + 1
}

// RangeCost is the cost of Range in a read-write transaction: its read
// conflict range. A read that stopped at its limit conflicts only up to
// the last key it returned, so endLen is the larger of the end key's length
// and the last returned key's length plus one.
func RangeCost(beginLen, endLen int) int64 {
	return int64(beginLen + endLen + 2*KeyPrefixReserve)
}
