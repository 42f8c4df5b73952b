package storage

import (
	"context"
	"sync"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// gcCallTimeout bounds each GC round trip to meta or a peer, so a hung
// server delays a GC pass instead of stopping the loop.
const gcCallTimeout = time.Minute

// RPCGC is meta's GC queue over RPC (proto.MethodMetaGCList and
// MethodMetaGCDone): what a storage node uses when meta runs in another
// process. Meta serves the queue to admin tokens only, so the pool must
// authenticate with the admin token.
func RPCGC(meta Caller) GCQueue { return rpcGC{meta} }

// Caller makes RPC calls: an *rpc.Pool, or a cluster.Failover over
// several meta servers.
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error)
}

type rpcGC struct{ p Caller }

func (q rpcGC) GCList(ctx context.Context, after *proto.GCID, limit int) ([]proto.GCRecord, error) {
	ctx, cancel := context.WithTimeout(ctx, gcCallTimeout)
	defer cancel()
	var resp proto.MetaGCListResp
	if _, err := q.p.Call(ctx, proto.MethodMetaGCList, &proto.MetaGCListReq{Limit: limit, After: after}, &resp); err != nil {
		return nil, err
	}
	return resp.Records, nil
}

func (q rpcGC) GCDone(ctx context.Context, ids []proto.GCID) error {
	ctx, cancel := context.WithTimeout(ctx, gcCallTimeout)
	defer cancel()
	_, err := q.p.Call(ctx, proto.MethodMetaGCDone, &proto.MetaGCDoneReq{IDs: ids}, nil)
	return err
}

// RPCPeers reaches other storage nodes with the admin token, one small
// pool per node address, dialed on first use: for GC (GCPeers) and for
// chain replication (Forwarder).
type RPCPeers struct {
	token string
	opts  rpc.PoolOptions
	mu    sync.Mutex
	pools map[string]*rpc.Pool
}

// NewRPCPeers returns peers that authenticate with token (the admin token:
// MethodStorageRemoveInode is admin only) over pools of opts (TLS between
// nodes). Close them when done.
func NewRPCPeers(token string, opts rpc.PoolOptions) *RPCPeers {
	return &RPCPeers{token: token, opts: opts, pools: map[string]*rpc.Pool{}}
}

func (p *RPCPeers) pool(addr string) *rpc.Pool {
	p.mu.Lock()
	defer p.mu.Unlock()
	pl := p.pools[addr]
	if pl == nil {
		pl = rpc.NewPool(addr, p.token, p.opts)
		p.pools[addr] = pl
	}
	return pl
}

// RemoveInode implements GCPeers.
func (p *RPCPeers) RemoveInode(ctx context.Context, addr string, target uint32, ino uint64, from uint32) error {
	ctx, cancel := context.WithTimeout(ctx, gcCallTimeout)
	defer cancel()
	_, err := p.pool(addr).Call(ctx, proto.MethodStorageRemoveInode,
		&proto.StorageRemoveInodeReq{TargetID: target, Ino: ino, From: from}, nil)
	return err
}

// CutChunk implements GCPeers: a Stat, then a Truncate if the chunk exists
// and is longer than length (a Truncate of a missing chunk would create
// it). GC hands out a truncate record only while nobody writes the file,
// so nothing changes the chunk in between.
func (p *RPCPeers) CutChunk(ctx context.Context, addr string, ref proto.ChunkRef, length uint32) error {
	ctx, cancel := context.WithTimeout(ctx, gcCallTimeout)
	defer cancel()
	pl := p.pool(addr)
	var st proto.StorageStatResp
	if _, err := pl.Call(ctx, proto.MethodStorageStat, &proto.StorageStatReq{Chunk: ref}, &st); err != nil {
		return err
	}
	if !st.Exists || st.Length <= length {
		return nil
	}
	_, err := pl.Call(ctx, proto.MethodStorageTruncate, &proto.StorageTruncateReq{Chunk: ref, Length: length}, nil)
	return err
}

// Forward implements Forwarder: chain updates go to successors over the
// same admin-token pools.
func (p *RPCPeers) Forward(ctx context.Context, addr string, req *proto.StorageForwardReq, payload []byte) (uint64, error) {
	var resp proto.StorageForwardResp
	if _, err := p.pool(addr).Call(ctx, proto.MethodStorageForward, req, &resp, rpc.WithPayload(payload)); err != nil {
		return 0, err
	}
	return resp.Version, nil
}

// Dump implements Forwarder.
func (p *RPCPeers) Dump(ctx context.Context, addr string, req proto.StorageDumpReq) (proto.StorageDumpResp, error) {
	var resp proto.StorageDumpResp
	_, err := p.pool(addr).Call(ctx, proto.MethodStorageDump, &req, &resp)
	return resp, err
}

// Fetch implements Forwarder: a Stat, then a Read of the whole chunk,
// both as the admin.
func (p *RPCPeers) Fetch(ctx context.Context, addr string, ref proto.ChunkRef) (uint64, []byte, error) {
	pl := p.pool(addr)
	var st proto.StorageStatResp
	if _, err := pl.Call(ctx, proto.MethodStorageStat, &proto.StorageStatReq{Chunk: ref}, &st); err != nil {
		return 0, nil, err
	}
	if !st.Exists {
		return 0, nil, nil
	}
	buf := make([]byte, st.Length)
	var resp proto.StorageReadResp
	req := proto.StorageReadReq{IOs: []proto.ReadIO{{Chunk: ref, Len: st.Length}}}
	if _, err := pl.Call(ctx, proto.MethodStorageRead, &req, &resp, rpc.IntoBuffers(buf)); err != nil {
		return 0, nil, err
	}
	if len(resp.Results) != 1 {
		return 0, nil, proto.Errorf(proto.EIO, "storage %s: %d results for one read", addr, len(resp.Results))
	}
	res := resp.Results[0]
	if res.Code != proto.OK {
		return 0, nil, &proto.Error{Code: res.Code, Msg: res.Msg}
	}
	if res.N != st.Length || res.Version != st.Version {
		return 0, nil, proto.Errorf(proto.ChunkVersionMismatch, "storage %s: chunk %d/%d changed while fetched (version %d→%d, %d of %d bytes)",
			addr, ref.Ino, ref.Index, st.Version, res.Version, res.N, st.Length)
	}
	return res.Version, buf, nil
}

// Repair implements Forwarder.
func (p *RPCPeers) Repair(ctx context.Context, addr string, req proto.StorageRepairReq) (uint64, error) {
	var resp proto.StorageRepairResp
	if _, err := p.pool(addr).Call(ctx, proto.MethodStorageRepair, &req, &resp); err != nil {
		return 0, err
	}
	return resp.Version, nil
}

// Cut closes the connections to the node at addr (cluster.WatchDown: it
// was declared down), failing forwards that wait on it, and returns how
// many it closed.
func (p *RPCPeers) Cut(addr string) int {
	p.mu.Lock()
	pl := p.pools[addr]
	p.mu.Unlock()
	if pl == nil {
		return 0
	}
	return pl.Reset()
}

// Close closes the pools.
func (p *RPCPeers) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, pl := range p.pools {
		pl.Close()
		delete(p.pools, addr)
	}
	return nil
}
