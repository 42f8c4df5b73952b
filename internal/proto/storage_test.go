package proto

import (
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestBlockCRCsWire(t *testing.T) {
	for _, tc := range []BlockCRCs{nil, {}, {0}, {1, 0xffffffff, 0x12345678}, make(BlockCRCs, 1024)} {
		in := StorageLocateResp{Results: []ChunkLocation{{Version: 3, Length: 4096, Path: "/d/f", BlockSize: 4096, CRCs: tc}}}
		b, err := msgpack.Marshal(&in)
		if err != nil {
			t.Fatal(err)
		}
		var out StorageLocateResp
		if err := msgpack.Unmarshal(b, &out); err != nil {
			t.Fatalf("%v: %v", tc, err)
		}
		if got := out.Results[0].CRCs; !slices.Equal(got, tc) {
			t.Fatalf("round trip of %v gave %v", tc, got)
		}
	}
	// Packed: 4 bytes per value plus a short header, not an integer each.
	b, _ := msgpack.Marshal(BlockCRCs{0xffffffff, 0xffffffff})
	if len(b) != 2+8 {
		t.Fatalf("two checksums encode as %d bytes, want 10 (bin8)", len(b))
	}
}

func TestBlockCRCsRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"length not a multiple of 4": {0xc4, 3, 1, 2, 3},
		"truncated":                  {0xc4, 8, 1, 2, 3},
		"an array of integers":       {0x92, 1, 2},
		"a string":                   {0xa2, 'a', 'b'},
	} {
		var c BlockCRCs
		if err := msgpack.Unmarshal(b, &c); err == nil {
			t.Errorf("%s: decoded as %v", name, c)
		}
	}
}
