package meta

import (
	"context"
	"math"

	"fff/internal/proto"
	"fff/server/kv"
)

// The GC queue. Deleting a file's last link (with no write session open)
// queues a GCDelete record G<ino><MaxUint64>: storage removes every chunk
// of the inode from every chain of its layout. Inode ids are never reused,
// so a delete record is always safe to apply.
//
// Shrinking a file queues a GCTruncate record G<ino><truncate version>
// with the new size. Applying it is safe only if nothing was written to
// the cut-off range since, which meta cannot see directly; so GCList hands
// out a truncate record only when the file still exists, has no write
// session open, and no session has reported writing data since the
// truncate (Inode.WriteVer unchanged). A record whose file was written to
// since, or which is gone, is listed as Obsolete: storage acknowledges it
// without touching chunks (their bytes beyond the size stay unreadable;
// the space returns when the file is deleted). A record whose file has a
// write session open is held back until the session ends.
//
// Records are listed in key order (by inode, then truncates in the order
// they happened, then the delete) and should be applied in that order.

// gcBatchMax bounds the ids one GCDone takes (its transaction stays far
// below the KV's size limit).
const gcBatchMax = 10000

func queueDelete(tx kv.Txn, n *proto.Inode, now int64) error {
	if n.Layout == nil || len(n.Layout.Chains) == 0 {
		return nil // no storage: nothing to collect
	}
	rec := proto.GCRecord{
		ID: proto.GCID{Ino: n.Ino, Seq: math.MaxUint64}, Kind: proto.GCDelete,
		Layout: *n.Layout, Size: n.Size, Time: now,
	}
	return tx.Set(gcKey(rec.ID.Ino, rec.ID.Seq), marshal(rec))
}

// queueTruncate queues the range from.. of file n (truncated from size old;
// n.TruncVer already bumped) for GC.
func queueTruncate(tx kv.Txn, n *proto.Inode, from, old uint64, now int64) error {
	if n.Layout == nil || len(n.Layout.Chains) == 0 {
		return nil
	}
	rec := proto.GCRecord{
		ID: proto.GCID{Ino: n.Ino, Seq: n.TruncVer}, Kind: proto.GCTruncate,
		Layout: *n.Layout, From: from, Size: old, Time: now, WriteVer: n.WriteVer,
	}
	return tx.Set(gcKey(rec.ID.Ino, rec.ID.Seq), marshal(rec))
}

// GCList returns up to limit records of the GC queue that storage may act
// on now (see the GC queue notes above), in queue order, starting after
// the record after (nil: at the head). Records stay queued until GCDone.
// Root only (EPERM).
func (s *Service) GCList(ctx context.Context, id Identity, after *proto.GCID, limit int) ([]proto.GCRecord, error) {
	if !id.IsRoot() {
		return nil, proto.Errorf(proto.EPERM, "gc list")
	}
	if limit <= 0 {
		limit = DefaultReadDirLimit
	}
	limit = min(limit, gcBatchMax)
	var out []proto.GCRecord
	err := s.db.View(ctx, func(tx kv.ReadTxn) error {
		out = nil
		begin, end := prefixRange([]byte{pGC})
		if after != nil {
			begin = kv.KeyAfter(gcKey(after.Ino, after.Seq))
		}
		scanned := 0
		for len(out) < limit && scanned < 8*limit+1000 {
			kvs, err := tx.Range(begin, end, kv.RangeOptions{Limit: limit})
			if err != nil {
				return err
			}
			for _, p := range kvs {
				scanned++
				var rec proto.GCRecord
				if err := unmarshal(p.Value, &rec); err != nil {
					return err
				}
				if rec.Kind == proto.GCTruncate {
					ready, obsolete, err := truncateReady(tx, &rec)
					if err != nil {
						return err
					}
					if !ready {
						continue
					}
					rec.Obsolete = obsolete
				}
				out = append(out, rec)
				if len(out) == limit {
					break
				}
			}
			if len(kvs) < limit {
				break
			}
			begin = kv.KeyAfter(kvs[len(kvs)-1].Key)
		}
		return nil
	})
	return out, err
}

// truncateReady decides whether truncate record rec can be handed out, and
// whether as obsolete.
func truncateReady(tx kv.ReadTxn, rec *proto.GCRecord) (ready, obsolete bool, err error) {
	n, err := loadInode(tx, rec.ID.Ino)
	if proto.CodeOf(err) == proto.ENOENT {
		return true, true, nil
	}
	if err != nil {
		return false, false, err
	}
	if n.WriteVer != rec.WriteVer {
		return true, true, nil
	}
	open, err := hasSessions(tx, n.Ino)
	if err != nil {
		return false, false, err
	}
	return !open, false, nil
}

// GCDone removes the given records from the GC queue (unknown ids are
// ignored). At most 10,000 ids per call (EINVAL). Root only (EPERM).
func (s *Service) GCDone(ctx context.Context, id Identity, ids []proto.GCID) error {
	if !id.IsRoot() {
		return proto.Errorf(proto.EPERM, "gc done")
	}
	if len(ids) > gcBatchMax {
		return proto.Errorf(proto.EINVAL, "gc done: %d ids, at most %d", len(ids), gcBatchMax)
	}
	return kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
		for _, g := range ids {
			if err := tx.Clear(gcKey(g.Ino, g.Seq)); err != nil {
				return err
			}
		}
		return nil
	})
}
