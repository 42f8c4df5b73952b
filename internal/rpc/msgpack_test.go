package rpc

import (
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
)

// FuzzDecodeLocateResp: whatever a node answers to Locate (the packed block
// checksums are a custom decoder) decodes through decodeBody or fails,
// never panics or allocates without bound, and what decodes encodes back to
// the same checksums.
func FuzzDecodeLocateResp(f *testing.F) {
	seed, _ := msgpack.Marshal(&proto.StorageLocateResp{Results: []proto.ChunkLocation{
		{Version: 1, Length: 5000, Path: "/x", BlockSize: 4096, CRCs: proto.BlockCRCs{7, 8}},
		{Code: proto.ENOENT, Msg: "gone"},
	}})
	f.Add(seed)
	f.Add([]byte{0x81, 0xa1, 'r', 0x91, 0x81, 0xa3, 'c', 'r', 'c', 0xc4, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r proto.StorageLocateResp
		if decodeBody(b, &r) != nil {
			return
		}
		again, err := appendBody(nil, &r)
		if err != nil {
			t.Fatalf("re-encoding a decoded answer: %v", err)
		}
		var r2 proto.StorageLocateResp
		if err := decodeBody(again, &r2); err != nil {
			t.Fatalf("decoding a re-encoded answer: %v", err)
		}
		if len(r2.Results) != len(r.Results) {
			t.Fatalf("%d results became %d", len(r.Results), len(r2.Results))
		}
		for i := range r.Results {
			if !slices.Equal(r.Results[i].CRCs, r2.Results[i].CRCs) {
				t.Fatalf("result %d: checksums %v became %v", i, r.Results[i].CRCs, r2.Results[i].CRCs)
			}
		}
	})
}
