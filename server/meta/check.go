package meta

import (
	"context"
	"fmt"

	"fff/internal/proto"
	"fff/server/kv"
)

// Problem is one record CheckRecords could not read or decode.
type Problem struct {
	Key    []byte
	Reason string
}

func (p Problem) String() string { return fmt.Sprintf("key %q: %s", p.Key, p.Reason) }

// checkPage bounds the keys one transaction of CheckRecords reads.
const checkPage = 1024

// CheckRecords reads every record of db and decodes it as meta does,
// returning the records that fail and how many it read. It stops with an
// error only if the KV itself fails (a damaged page makes the range that
// holds it unreadable; fffd check then salvages around it).
func CheckRecords(ctx context.Context, db kv.DB) (problems []Problem, records int, err error) {
	var begin []byte
	for {
		var kvs []kv.KeyValue
		err := db.View(ctx, func(tx kv.ReadTxn) error {
			var err error
			kvs, err = tx.Range(begin, nil, kv.RangeOptions{Limit: checkPage})
			return err
		})
		if err != nil {
			return problems, records, fmt.Errorf("meta: check: reading from key %q: %w", begin, err)
		}
		for _, p := range kvs {
			records++
			if reason := checkRecord(p.Key, p.Value); reason != "" {
				problems = append(problems, Problem{Key: p.Key, Reason: reason})
			}
		}
		if len(kvs) < checkPage {
			return problems, records, nil
		}
		begin = append(kvs[len(kvs)-1].Key, 0)
	}
}

// checkRecord says why the record k = v is not one meta can read, or "".
func checkRecord(k, v []byte) string {
	if len(k) == 0 {
		return "empty key"
	}
	decode := func(min int, val any) string {
		if len(k) < min {
			return fmt.Sprintf("key too short for its kind (%d bytes)", len(k))
		}
		if err := unmarshal(v, val); err != nil {
			return fmt.Sprintf("undecodable value: %v", err)
		}
		return ""
	}
	fixed := func(n int) string {
		if len(v) != n {
			return fmt.Sprintf("value of %d bytes, want %d", len(v), n)
		}
		return ""
	}
	switch k[0] {
	case pInode:
		var n proto.Inode
		if r := decode(9, &n); r != "" {
			return r
		}
		if len(k) != 9 || n.Ino != u64(k[1:]) {
			return fmt.Sprintf("inode record of inode %d under key of inode %d", n.Ino, u64(k[1:]))
		}
		return ""
	case pDentry:
		return decode(10, new(dentry))
	case pSession:
		return decode(17, new(session))
	case pGC:
		return decode(17, new(proto.GCRecord))
	case pUser:
		return decode(2, new(userRec))
	case pToken:
		return ""
	case pCounter, pMeta:
		return fixed(8)
	}
	return fmt.Sprintf("unknown record kind %q", k[0])
}

// CheckRecord says why the record k = v is not one meta can read; "" if it
// is.
func CheckRecord(k, v []byte) string { return checkRecord(k, v) }
