package libfff

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"fff/internal/testcluster"
)

// TestReadPairedChains: in chains of two targets (made by an earlier
// version; storage nodes do not forward writes, so only the heads hold
// data), every read returns the written bytes: reads hashed to the second
// member get ChunkMissing and go to the head, never zeros. A sparse file's
// holes still read as zeros.
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
