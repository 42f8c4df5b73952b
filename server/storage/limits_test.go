package storage_test

import (
	"math"
	"testing"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// TestChunkRangeLimits: the server checks chunk ranges itself and never
// trusts the client's placement math: a write whose chunk lies past
// proto.MaxFileSize is EFBIG, one outside its chunk or with a bogus chunk
// size EINVAL, and none of them creates the chunk.
func TestChunkRangeLimits(t *testing.T) {
	e := newEnv(t)
	// 256 KiB chunks: the last chunk inside MaxFileSize.
	last := uint32(proto.MaxFileSize/chunkSize - 1)
	for _, tc := range []struct {
		name  string
		idx   uint32
		off   uint32
		cs    uint32
		n     int
		want  proto.Code
		wrote bool
	}{
		{"last chunk of the largest file", last, 0, chunkSize, 10, proto.OK, true},
		{"chunk past the largest file", last + 1, 0, chunkSize, 10, proto.EFBIG, false},
		{"max index", math.MaxUint32, 0, chunkSize, 1, proto.EFBIG, false},
		{"past the chunk", 5, chunkSize - 1, chunkSize, 2, proto.EINVAL, false},
		{"offset near 2^32", 6, math.MaxUint32 - 1, chunkSize, 4, proto.EINVAL, false},
		{"no chunk size", 7, 0, 0, 1, proto.EINVAL, false},
		{"chunk size not a power of two", 8, 0, chunkSize + 1, 1, proto.EINVAL, false},
	} {
		ref := e.ref(10, 99, tc.idx)
		var resp proto.StorageWriteResp
		_, err := e.user.Call(e.ctx, proto.MethodStorageWrite, proto.StorageWriteReq{Cap: e.cap(ref.Ino), Chunk: ref, Off: tc.off, ChunkSize: tc.cs},
			&resp, rpc.WithPayload(make([]byte, tc.n)))
		if got := proto.CodeOf(err); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if st := e.stat(t, ref); st.Exists != tc.wrote {
			t.Errorf("%s: chunk exists = %v, want %v", tc.name, st.Exists, tc.wrote)
		}
	}

	// A read past any chunk is refused per IO; a truncate likewise.
	var resp proto.StorageReadResp
	if _, err := e.user.Call(e.ctx, proto.MethodStorageRead,
		proto.StorageReadReq{IOs: []proto.ReadIO{{Chunk: e.ref(10, 99, 0), Off: math.MaxUint32, Len: 1}}, Caps: []proto.Capability{*e.cap(99)}}, &resp, rpc.IntoBuffer(make([]byte, 1))); err != nil {
		t.Fatal(err)
	}
	if len(resp.Results) != 1 || resp.Results[0].Code != proto.EINVAL {
		t.Errorf("read at 2^32-1: %+v, want EINVAL", resp.Results)
	}
	var tr proto.StorageTruncateResp
	_, err := e.user.Call(e.ctx, proto.MethodStorageTruncate, proto.StorageTruncateReq{Cap: e.cap((e.ref(10, 99, 1)).Ino), Chunk: e.ref(10, 99, 1), Length: math.MaxUint32}, &tr)
	wantCode(t, err, proto.EINVAL)
}
