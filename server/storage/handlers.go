package storage

import (
	"context"
	"fmt"
	"sync"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/storage/chunkengine"
)

// RegisterHandlers serves the storage methods (proto.MethodStorage*) on srv.
// The chunk methods are open to every authenticated identity, and each
// request needs a capability for the inodes it names unless it comes from
// the admin (caps.go).
func (s *Service) RegisterHandlers(srv *rpc.Server) {
	srv.Handle(proto.MethodStorageRead, rpc.AccessUser, s.handleRead)
	srv.Handle(proto.MethodStorageLocate, rpc.AccessUser, s.handleLocate)
	srv.Handle(proto.MethodStorageWrite, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageWriteReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if err := s.authorize(req.Identity, r.Cap, r.Chunk.Ino, proto.CapWrite); err != nil {
			return nil, err
		}
		v, err := s.Write(ctx, r, req.Payload)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &proto.StorageWriteResp{Version: v}}, nil
	})
	srv.Handle(proto.MethodStorageTruncate, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageTruncateReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if err := s.authorize(req.Identity, r.Cap, r.Chunk.Ino, proto.CapWrite); err != nil {
			return nil, err
		}
		v, err := s.Truncate(ctx, r)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &proto.StorageTruncateResp{Version: v}}, nil
	})
	srv.Handle(proto.MethodStorageRemove, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageRemoveReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if err := s.authorize(req.Identity, r.Cap, r.Chunk.Ino, proto.CapWrite); err != nil {
			return nil, err
		}
		return &rpc.Response{}, s.Remove(ctx, r)
	})
	srv.Handle(proto.MethodStorageStat, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageStatReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if err := s.authorize(req.Identity, r.Cap, r.Chunk.Ino, proto.CapRead); err != nil {
			return nil, err
		}
		resp, err := s.Stat(ctx, r)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &resp}, nil
	})
	// Chain replication's, between storage nodes: admin only.
	srv.Handle(proto.MethodStorageForward, rpc.AccessAdmin, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageForwardReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		v, err := s.Forwarded(ctx, r, req.Payload)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &proto.StorageForwardResp{Version: v}}, nil
	})
	srv.Handle(proto.MethodStorageDump, rpc.AccessAdmin, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageDumpReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		resp, err := s.Dump(ctx, r)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &resp}, nil
	})
	srv.Handle(proto.MethodStorageRepair, rpc.AccessAdmin, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageRepairReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		v, err := s.Repair(ctx, r)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &proto.StorageRepairResp{Version: v}}, nil
	})
	srv.Handle(proto.MethodStorageScrub, rpc.AccessAdmin, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageScrubReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		resp, err := s.Scrub(ctx, r)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &resp}, nil
	})
	// Garbage collection's: admin only (the server refuses others).
	srv.Handle(proto.MethodStorageRemoveInode, rpc.AccessAdmin, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.StorageRemoveInodeReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		n, err := s.RemoveInode(ctx, r.TargetID, r.Ino, r.From)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: &proto.StorageRemoveInodeResp{Removed: n}}, nil
	})
}

// handleRead serves a batched read: every IO's routing is checked, the IOs
// of each target go to its engine in one ReadBatch, straight into one pooled
// response buffer that the response payload is (released when written).
func (s *Service) handleRead(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
	var r proto.StorageReadReq
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	total := 0
	for _, io := range r.IOs {
		total += int(io.Len)
		if total > s.maxPayload {
			return nil, proto.Errorf(proto.TooLarge, "storage: read of more than %d bytes in one request", s.maxPayload)
		}
	}
	g, err := s.grants(req.Identity, r.Caps, len(r.IOs))
	if err != nil {
		return nil, err
	}
	buf := s.bufs.get(total)
	results := s.ReadInto(ctx, r.IOs, g, *buf)
	return &rpc.Response{
		Body:    &proto.StorageReadResp{Results: results},
		Payload: [][]byte{*buf},
		Done:    func() { s.bufs.put(buf) },
	}, nil
}

// handleLocate answers where the chunk ranges of a local read are
// (proto.MethodStorageLocate). Only callers on the node's Unix socket get
// paths: they share this host's filesystem, and whether they may open the
// files is then up to its permissions.
func (s *Service) handleLocate(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
	if req.Remote == nil || req.Remote.Network() != "unix" {
		return nil, proto.Errorf(proto.EPERM, "storage: locate is served only on the same-host Unix socket")
	}
	var r proto.StorageLocateReq
	if err := req.Decode(&r); err != nil {
		return nil, err
	}
	g, err := s.grants(req.Identity, r.Caps, len(r.IOs))
	if err != nil {
		return nil, err
	}
	resp := &proto.StorageLocateResp{Results: make([]proto.ChunkLocation, len(r.IOs))}
	refreshed := false
	for k, io := range r.IOs {
		res := &resp.Results[k]
		err := g.check(io.Chunk.Ino)
		var t *target
		if err == nil {
			t, err = s.check(ctx, io.Chunk, opRead, &refreshed)
		}
		if err == nil {
			err = readRange(io)
		}
		if err == nil {
			var loc chunkengine.Location
			loc, err = t.eng.Locate(ctx, chunkID(io.Chunk), int64(io.Off), int64(io.Len))
			if err == nil {
				err = s.committedRead(t, io.Chunk, loc.Version)
			}
			if err == nil {
				*res = proto.ChunkLocation{Version: loc.Version, Length: uint32(loc.Length), Path: loc.Path,
					BlockSize: chunkengine.BlockSize, FirstBlock: uint32(loc.FirstBlock), CRCs: loc.CRCs}
			}
		}
		if isNotFound(err) {
			err = nil // never written: a hole, no path, zeros
		}
		if err != nil {
			res.Code, res.Msg = codeMsg(err)
		}
	}
	return &rpc.Response{Body: resp}, nil
}

// ReadInto performs the reads of ios into dst, which holds exactly sum(Len)
// bytes: IO k's slot follows IO k-1's, and receives N data bytes then zeros.
// It returns one result per IO; an IO whose inode allow does not grant
// fails alone (nil allow: every IO is granted).
func (s *Service) ReadInto(ctx context.Context, ios []proto.ReadIO, allow *readGrants, dst []byte) []proto.ReadResult {
	results := make([]proto.ReadResult, len(ios))
	slots := make([][]byte, len(ios))
	type group struct {
		t    *target
		reqs []chunkengine.ReadReq
		idx  []int
	}
	var groups []*group
	byTarget := map[uint32]*group{}
	refreshed := false
	off := 0
	for k, io := range ios {
		slots[k] = dst[off : off+int(io.Len) : off+int(io.Len)]
		off += int(io.Len)
		err := allow.check(io.Chunk.Ino)
		var t *target
		if err == nil {
			t, err = s.check(ctx, io.Chunk, opRead, &refreshed)
		}
		if err == nil {
			err = readRange(io)
		}
		if err != nil {
			setErr(&results[k], err)
			continue
		}
		if io.Len == 0 {
			continue
		}
		g := byTarget[t.id]
		if g == nil {
			g = &group{t: t}
			byTarget[t.id] = g
			groups = append(groups, g)
		}
		g.reqs = append(g.reqs, chunkengine.ReadReq{ID: chunkID(io.Chunk), Off: int64(io.Off), Dst: slots[k]})
		g.idx = append(g.idx, k)
	}
	run := func(g *group) {
		_ = g.t.eng.ReadBatch(ctx, g.reqs) // failures are per request
	}
	if len(groups) > 0 {
		// The first group runs on this goroutine: one hand-off fewer.
		var wg sync.WaitGroup
		for _, g := range groups[1:] {
			wg.Go(func() { run(g) })
		}
		run(groups[0])
		wg.Wait()
	}
	for _, g := range groups {
		for i, q := range g.reqs {
			res := &results[g.idx[i]]
			switch {
			case q.Err == nil:
				if err := s.committedRead(g.t, ios[g.idx[i]].Chunk, q.Version); err != nil {
					setErr(res, err)
				} else {
					res.N, res.Version = uint32(q.N), q.Version
				}
			case isNotFound(q.Err):
				// Never written: a hole, zeros. (A chunk whose creation
				// is in flight is not committed yet: a hole too.)
			default:
				if proto.CodeOf(q.Err) == proto.ChecksumMismatch {
					// The client reads another replica; the
					// chain's head rewrites this one.
					s.damaged(ios[g.idx[i]].Chunk)
				}
				setErr(res, q.Err)
			}
		}
	}
	for k := range results {
		clear(slots[k][results[k].N:])
	}
	return results
}

// readRange refuses a read IO that reaches past the largest chunk: no
// chunk holds such bytes, so the request is malformed, not a hole.
func readRange(io proto.ReadIO) error {
	if uint64(io.Off)+uint64(io.Len) > uint64(proto.MaxChunkSize) {
		return proto.Errorf(proto.EINVAL, "storage: read of chunk %d/%d at %d+%d: past the largest chunk size %d", io.Chunk.Ino, io.Chunk.Index, io.Off, io.Len, proto.MaxChunkSize)
	}
	return nil
}

func setErr(res *proto.ReadResult, err error) {
	res.N, res.Version = 0, 0
	res.Code, res.Msg = codeMsg(err)
}

// codeMsg is err as a per-IO result: its code (Internal when it has none)
// and message.
func codeMsg(err error) (proto.Code, string) {
	code := proto.CodeOf(err)
	if code == proto.OK {
		code = proto.Internal
	}
	return code, err.Error()
}

// Write writes data into r.Chunk at r.Off on the chain's head and returns
// the chunk's new version once every replica has it.
func (s *Service) Write(ctx context.Context, r proto.StorageWriteReq, data []byte) (uint64, error) {
	refreshed := false
	t, err := s.check(ctx, r.Chunk, opWrite, &refreshed)
	if err != nil {
		return 0, err
	}
	// The client's placement math is not trusted: the range must lie in
	// its chunk, and the chunk in the largest file (a wrapped or forged
	// index×chunk size past proto.MaxFileSize is EFBIG).
	if err := proto.CheckChunkRange(r.Chunk.Index, r.ChunkSize, r.Off, int64(len(data))); err != nil {
		return 0, fmt.Errorf("storage: write to chunk %d/%d: %w", r.Chunk.Ino, r.Chunk.Index, err)
	}
	return s.headUpdate(ctx, t, r.Chunk, update{kind: proto.ForwardWrite, off: int64(r.Off), data: data, chunkSize: r.ChunkSize})
}

// Truncate sets r.Chunk's length; a missing chunk is created (zeros) when
// the length is positive, and left missing (version 0) when it is 0.
func (s *Service) Truncate(ctx context.Context, r proto.StorageTruncateReq) (uint64, error) {
	refreshed := false
	t, err := s.check(ctx, r.Chunk, opWrite, &refreshed)
	if err != nil {
		return 0, err
	}
	if r.Length > proto.MaxChunkSize {
		return 0, proto.Errorf(proto.EINVAL, "storage: truncate chunk %d/%d to %d: past the largest chunk size %d", r.Chunk.Ino, r.Chunk.Index, r.Length, proto.MaxChunkSize)
	}
	return s.headUpdate(ctx, t, r.Chunk, update{kind: proto.ForwardTruncate, length: int64(r.Length)})
}

// Remove removes r.Chunk from every replica; a missing chunk is no error.
func (s *Service) Remove(ctx context.Context, r proto.StorageRemoveReq) error {
	refreshed := false
	t, err := s.check(ctx, r.Chunk, opWrite, &refreshed)
	if err != nil {
		return err
	}
	_, err = s.headUpdate(ctx, t, r.Chunk, update{kind: proto.ForwardRemove})
	return err
}

// Stat returns r.Chunk's committed state (Exists false for a chunk never
// written). Like a read, it needs a serving target.
func (s *Service) Stat(ctx context.Context, r proto.StorageStatReq) (proto.StorageStatResp, error) {
	refreshed := false
	t, err := s.check(ctx, r.Chunk, opRead, &refreshed)
	if err != nil {
		return proto.StorageStatResp{}, err
	}
	ci, err := t.eng.Stat(ctx, chunkID(r.Chunk))
	if isNotFound(err) {
		return proto.StorageStatResp{}, nil
	}
	if err == nil {
		err = s.committedRead(t, r.Chunk, ci.Version)
	}
	if err != nil {
		return proto.StorageStatResp{}, err
	}
	return proto.StorageStatResp{Exists: true, Version: ci.Version, Length: uint32(ci.Length)}, nil
}

// RemoveInode removes the chunks of ino with index >= from on local target
// id and returns how many it removed. It is garbage collection: no chain
// version is involved (inode ids are never reused).
func (s *Service) RemoveInode(ctx context.Context, id uint32, ino uint64, from uint32) (uint32, error) {
	t := s.targets[id]
	if t == nil {
		return 0, proto.Errorf(proto.EINVAL, "storage: node %d: target %d: not my target", s.nodeID, id)
	}
	chunks, err := t.eng.List(ctx, ino)
	if err != nil {
		return 0, err
	}
	var n uint32
	for _, c := range chunks {
		if c.ID.Index < from {
			continue
		}
		if err := t.eng.Remove(ctx, c.ID); err != nil && !isNotFound(err) {
			return n, err
		}
		n++
	}
	return n, nil
}
