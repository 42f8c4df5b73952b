package storage

import (
	"context"
	"fmt"
	"math"
	"time"

	"fff/internal/proto"
	"fff/server/meta"
)

// GCQueue is meta's GC queue (server/meta/gc.go): records of deleted and
// truncated files whose chunks storage removes.
type GCQueue interface {
	GCList(ctx context.Context, limit int) ([]proto.GCRecord, error)
	GCDone(ctx context.Context, ids []proto.GCID) error
}

// MetaGC is the GC queue of an in-process meta service (`fffd local`).
func MetaGC(ms *meta.Service) GCQueue { return metaGC{ms} }

type metaGC struct{ ms *meta.Service }

func (m metaGC) GCList(ctx context.Context, limit int) ([]proto.GCRecord, error) {
	return m.ms.GCList(ctx, meta.Root, limit)
}

func (m metaGC) GCDone(ctx context.Context, ids []proto.GCID) error {
	return m.ms.GCDone(ctx, meta.Root, ids)
}

// gcBatch is how many records one GC pass takes at most.
const gcBatch = 1000

// DefaultGCInterval is RunGC's pause when the queue is empty.
const DefaultGCInterval = 5 * time.Second

// RunGC drains q until ctx ends: a pass (GCOnce) whenever the previous one
// found work, otherwise every interval (default DefaultGCInterval).
// Failures are logged and retried.
func (s *Service) RunGC(ctx context.Context, q GCQueue, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultGCInterval
	}
	for {
		n, err := s.GCOnce(ctx, q)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Warn().Err(err).Msg("storage: garbage collection")
		} else if n > 0 {
			s.log.Debug().Int("records", n).Msg("storage: garbage collected")
		}
		if err == nil && n == gcBatch {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// GCOnce applies up to one batch of GC records to the node's targets, in
// order, and acknowledges those applied. It stops at the first record it
// cannot apply (later records may depend on it) and returns the number
// acknowledged. A record whose chains include a target of another node is
// not applied here: this loop serves nodes that hold every target of the
// chains (`fffd local`).
func (s *Service) GCOnce(ctx context.Context, q GCQueue) (int, error) {
	recs, err := q.GCList(ctx, gcBatch)
	if err != nil {
		return 0, fmt.Errorf("gc list: %w", err)
	}
	var done []proto.GCID
	var applyErr error
	for i := range recs {
		if applyErr = s.applyGC(ctx, &recs[i]); applyErr != nil {
			break
		}
		done = append(done, recs[i].ID)
	}
	if len(done) > 0 {
		if err := q.GCDone(ctx, done); err != nil {
			return 0, fmt.Errorf("gc done: %w", err)
		}
	}
	return len(done), applyErr
}

// applyGC removes what rec names from the local targets of its chains.
func (s *Service) applyGC(ctx context.Context, rec *proto.GCRecord) error {
	if rec.Obsolete {
		return nil
	}
	ino := rec.ID.Ino
	var from uint64 // first chunk index to remove entirely
	var cut uint64  // GCTruncate: chunk cut to cutLen bytes (when cutLen > 0)
	var cutLen uint64
	switch rec.Kind {
	case proto.GCDelete:
	case proto.GCTruncate:
		cs := uint64(rec.Layout.ChunkSize)
		if cs == 0 {
			return fmt.Errorf("gc record %d/%d: layout without chunk size", ino, rec.ID.Seq)
		}
		cut, cutLen = rec.From/cs, rec.From%cs
		from = cut
		if cutLen > 0 {
			from = cut + 1
		}
	default:
		return fmt.Errorf("gc record %d/%d: unknown kind %d", ino, rec.ID.Seq, rec.Kind)
	}
	ri := s.routing.Get()
	if ri == nil {
		return fmt.Errorf("gc: no routing info yet")
	}
	seen := map[uint32]bool{}
	for _, cid := range rec.Layout.Chains {
		if seen[cid] {
			continue
		}
		seen[cid] = true
		chain := ri.Chain(cid)
		if chain == nil {
			continue // the chain is gone, and its chunks with it
		}
		for _, tid := range chain.Targets {
			t := s.targets[tid]
			if t == nil {
				return fmt.Errorf("gc record %d/%d: target %d of chain %d is on another node", ino, rec.ID.Seq, tid, cid)
			}
			if cutLen > 0 && cut <= math.MaxUint32 && rec.Layout.ChainOf(cut) == cid {
				if err := s.cutChunk(ctx, t, ino, uint32(cut), int64(cutLen)); err != nil {
					return err
				}
			}
			if from <= math.MaxUint32 {
				if _, err := s.RemoveInode(ctx, tid, ino, uint32(from)); err != nil {
					return fmt.Errorf("gc record %d/%d: target %d: %w", ino, rec.ID.Seq, tid, err)
				}
			}
		}
	}
	return nil
}

// cutChunk shortens chunk (ino, idx) on t to length, if it is longer.
func (s *Service) cutChunk(ctx context.Context, t *target, ino uint64, idx uint32, length int64) error {
	id := chunkID(proto.ChunkRef{Ino: ino, Index: idx})
	ci, err := t.eng.Stat(ctx, id)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ci.Length <= length {
		return nil
	}
	_, err = t.eng.Truncate(ctx, id, length)
	return err
}
