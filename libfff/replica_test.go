package libfff

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"fff/internal/testcluster"
	"fff/server/storage/chunkengine"
)

// TestReadPairedChains: in chains of two targets every chunk written
// reaches both replicas (the same versions and bytes), every read returns
// the written bytes whichever replica serves it, and a sparse file's holes
// read as zeros.
func TestReadPairedChains(t *testing.T) {
	t.Parallel()
	tc := testcluster.Start(t, testcluster.Options{Targets: 4, Storage: true, PairedChains: true})
	c := connect(t, tc.Addr, tc.AdminToken)
	smallChunkDir(t, c)
	ctx := context.Background()
	data := randBytes(rand.New(rand.NewPCG(3, 4)), 32*testChunk+17)
	putFile(t, c, "/d/f", data)
	if got := getFile(t, c, "/d/f"); !bytes.Equal(got, data) {
		t.Fatal("sequential read: bytes differ from those written")
	}
	ri, err := tc.Mgmtd.GetRouting(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	chunks := 0
	for _, ch := range ri.Chains {
		var lists [2][]chunkengine.ChunkInfo
		for i, tid := range ch.Targets {
			l, _, err := tc.Storage.Engine(tid).Scan(ctx, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			lists[i] = l
		}
		if !slices.Equal(lists[0], lists[1]) {
			t.Fatalf("chain %v: the replicas differ:\n%v\n%v", ch.Targets, lists[0], lists[1])
		}
		chunks += len(lists[0])
	}
	if chunks != 33 {
		t.Fatalf("%d chunks replicated, want 33", chunks)
	}

	f, err := c.OpenFile(ctx, "/d/f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ops []ReadOp
	for i := range 33 {
		ops = append(ops, ReadOp{File: f, Off: int64(i*testChunk + 5), Dst: make([]byte, 200)})
	}
	if err := c.ReadBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		want := data[op.Off:min(op.Off+200, int64(len(data)))]
		if op.Err != nil && op.N != len(want) || !bytes.Equal(op.Dst[:op.N], want) {
			t.Fatalf("batch read %d at %d: n %d, %v; bytes differ", i, op.Off, op.N, op.Err)
		}
	}

	// A hole (never written) is zeros, wherever it is read.
	g, err := c.Create(ctx, "/d/sparse")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.WriteAt([]byte("end"), 20*testChunk); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	got := getFile(t, c, "/d/sparse")
	want := append(make([]byte, 20*testChunk), "end"...)
	if !bytes.Equal(got, want) {
		t.Fatal("sparse file: holes are not zeros")
	}
}
