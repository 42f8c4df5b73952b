package storage_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/server/storage"
	"fff/server/storage/chunkengine"
)

// flipByte flips one byte at off of chunk id's data file on target tid.
func (e *env) flipByte(t *testing.T, tid uint32, id chunkengine.ChunkID, off int64) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(e.dirs[tid], "data", "*", "*", id.String()+".*"))
	if len(files) != 1 {
		t.Fatalf("data files of chunk %v on target %d: %v", id, tid, files)
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5A
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// scrub runs a whole scrub of target tid and sums its pages.
func (e *env) scrub(t *testing.T, tid uint32, repair bool) proto.StorageScrubResp {
	t.Helper()
	var sum proto.StorageScrubResp
	req := proto.StorageScrubReq{TargetID: tid, Repair: repair, Limit: 3} // small pages: several calls
	for {
		resp, err := e.svc.Scrub(e.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		sum.Chunks += resp.Chunks
		sum.Bytes += resp.Bytes
		sum.Damaged = append(sum.Damaged, resp.Damaged...)
		sum.Diverged = append(sum.Diverged, resp.Diverged...)
		sum.Repaired += resp.Repaired
		sum.Errors = append(sum.Errors, resp.Errors...)
		if !resp.More {
			return sum
		}
		req.After = resp.Last
	}
}

// TestRepair: a flipped byte in a replica fails that replica's reads only;
// the read asks the chain's head to repair it, and it reads right again.
// A damaged head takes another replica's copy.
func TestRepair(t *testing.T) {
	e := newEnv(t)
	e.addChain(4, 10, 11, 12)
	want := pattern(7, 3*4096+17)
	ref := e.refOn(4, 10, 9, 0)
	e.mustWrite(t, ref, 0, want)
	id := chunkengine.ChunkID{Ino: 9, Index: 0}

	e.flipByte(t, 11, id, 5000)
	if res, _ := e.read(t, e.refOn(4, 11, 9, 0), 4096, 4096); res.Code != proto.ChecksumMismatch {
		t.Fatalf("read of the damaged block: %+v, want ChecksumMismatch", res)
	}
	deadline := time.Now().Add(30 * time.Second) // a bound for failure only
	for {
		res, got := e.read(t, e.refOn(4, 11, 9, 0), 0, uint32(len(want)))
		if res.Code == proto.OK && string(got) == string(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("damaged replica not repaired: %+v", res)
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.sameReplicas(t, "after the read's repair", 9, 0, want, 10, 11, 12)

	e.flipByte(t, 10, id, 100) // the head's
	v, err := e.svc.Repair(e.ctx, proto.StorageRepairReq{Chunk: ref})
	if err != nil || v != 1 {
		t.Fatalf("repair of a damaged head: version %d, %v", v, err)
	}
	e.sameReplicas(t, "after the head's repair", 9, 0, want, 10, 11, 12)

	_, err = e.svc.Repair(e.ctx, proto.StorageRepairReq{Chunk: e.refOn(4, 11, 9, 0)})
	wantCode(t, err, proto.NotHead)
}

// TestScrub: scrub finds damaged chunks on any replica and, from the head,
// replicas that differ (another version, other bytes, a chunk the head
// does not have); with repair it fixes them all, and a second scrub finds
// nothing. Without repair it changes nothing.
func TestScrub(t *testing.T) {
	e := newEnv(t)
	e.addChain(4, 10, 11, 12)
	e.routing.update(func(ri *proto.RoutingInfo) { // scrub finds a target's chain by its ChainID
		for _, tid := range []uint32{10, 11, 12} {
			ri.Target(tid).ChainID = 4
		}
	})
	models := map[uint32][]byte{}
	for idx := uint32(0); idx < 8; idx++ {
		models[idx] = pattern(uint64(idx), 2000+int(idx)*700)
		e.mustWrite(t, e.refOn(4, 10, 5, idx), 0, models[idx])
	}
	e.flipByte(t, 12, chunkengine.ChunkID{Ino: 5, Index: 1}, 10)
	e.flipByte(t, 10, chunkengine.ChunkID{Ino: 5, Index: 6}, 1500)
	eng := e.svc.Engine(11)
	if err := eng.Replace(e.ctx, chunkengine.ChunkID{Ino: 5, Index: 3}, 1, []byte("same version, other bytes")); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Write(e.ctx, chunkengine.ChunkID{Ino: 5, Index: 4}, 0, []byte("newer version")); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Write(e.ctx, chunkengine.ChunkID{Ino: 5, Index: 99}, 0, []byte("only here")); err != nil {
		t.Fatal(err)
	}

	dry := e.scrub(t, 12, false)
	if dry.Chunks != 8 || len(dry.Damaged) != 1 || dry.Damaged[0].Index != 1 || dry.Repaired != 0 {
		t.Fatalf("scrub of target 12 without repair: %+v", dry)
	}
	head := e.scrub(t, 10, false)
	var diverged []uint32
	for _, d := range head.Diverged {
		diverged = append(diverged, d.Index)
	}
	// Index 6 is damaged on the head; its metadata still agrees.
	if len(head.Damaged) != 1 || head.Damaged[0].Index != 6 || len(diverged) != 3 || diverged[0] != 3 || diverged[1] != 4 || diverged[2] != 99 {
		t.Fatalf("scrub of the head without repair: damaged %+v, diverged %v", head.Damaged, diverged)
	}

	for _, tid := range []uint32{10, 11, 12} {
		if r := e.scrub(t, tid, true); len(r.Errors) > 0 || r.Repaired != len(r.Damaged)+len(r.Diverged) {
			t.Fatalf("scrub of target %d with repair: %+v", tid, r)
		}
	}
	for idx, m := range models {
		e.sameReplicas(t, "after the scrub", 5, idx, m, 10, 11, 12)
	}
	for _, tid := range []uint32{11, 12} {
		if _, err := e.svc.Engine(tid).Stat(e.ctx, chunkengine.ChunkID{Ino: 5, Index: 99}); proto.CodeOf(err) != proto.ENOENT {
			t.Fatalf("chunk only target 11 had, on target %d after the scrub: %v", tid, err)
		}
	}
	for _, tid := range []uint32{10, 11, 12} {
		if r := e.scrub(t, tid, true); len(r.Damaged)+len(r.Diverged)+len(r.Errors) != 0 || r.Chunks != 8 {
			t.Fatalf("second scrub of target %d: %+v", tid, r)
		}
	}
}

// TestRepairClearsStaleMark: a write whose forward failed for good (the
// successor unreachable past the forward timeout) leaves the head's chunk
// marked pending, so reads of it go to the chain's tail; a repair, which
// brings every replica to the head's version, settles the mark.
func TestRepairClearsStaleMark(t *testing.T) {
	fw := &forwarder{}
	e := newEnv(t, func(o *storage.Options) { o.Forwarder = fw; o.ForwardTimeout = 50 * time.Millisecond })
	e.addChain(5, 10, 20) // 20 is on node 2: the forwarder
	ref := e.refOn(5, 10, 3, 0)
	fw.set(func(*proto.StorageForwardReq, []byte) (uint64, error) {
		return 0, proto.Errorf(proto.Unavailable, "node 2 unreachable")
	})
	if _, err := e.write(t, ref, 0, []byte("lost forward")); err == nil {
		t.Fatal("a write whose forward failed was acknowledged")
	}
	if res, _ := e.read(t, ref, 0, 12); res.Code != proto.ChunkPending {
		t.Fatalf("read of the head after the failed forward: %+v, want ChunkPending", res)
	}
	fw.set(func(*proto.StorageForwardReq, []byte) (uint64, error) { return 1, nil })
	if _, err := e.svc.Repair(e.ctx, proto.StorageRepairReq{Chunk: ref}); err != nil {
		t.Fatal(err)
	}
	if res, got := e.read(t, ref, 0, 12); res.Code != proto.OK || string(got) != "lost forward" {
		t.Fatalf("read of the head after the repair: %+v %q", res, got)
	}
}
