package ffrfile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"fff/ffrecord"
	"fff/internal/uring"
)

// writeShards writes a dataset of nShards files into dir and returns every sample.
func writeShards(t *testing.T, dir string, nShards int, opts ffrecord.WriterOptions) [][]byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var all [][]byte
	for s := range nShards {
		n := 20 + rng.IntN(50)
		samples := make([][]byte, n)
		for i := range samples {
			samples[i] = make([]byte, rng.IntN(3)*rng.IntN(70000))
			for j := range samples[i] {
				samples[i][j] = byte(rng.Uint32())
			}
		}
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("part-%03d.ffr", s)))
		if err != nil {
			t.Fatal(err)
		}
		o := opts
		o.Count = int64(n)
		w, err := ffrecord.NewWriter(f, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range samples {
			if err := w.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		all = append(all, samples...)
	}
	// Files that are not shards are ignored.
	if err := os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a shard"), 0o644); err != nil {
		t.Fatal(err)
	}
	return all
}

func TestDatasetBatchReads(t *testing.T) {
	dirs := map[string]string{"disk": t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "ffrfile-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dirs["tmpfs"] = d
	}
	formats := map[string]ffrecord.WriterOptions{
		"v1":         {Format: ffrecord.V1},
		"v2":         {},
		"v2-aligned": {Alignment: 4096},
	}
	for fsName, root := range dirs {
		for fmtName, wopts := range formats {
			for _, noDirect := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/nodirect=%v", fsName, fmtName, noDirect), func(t *testing.T) {
					dir := filepath.Join(root, fmt.Sprintf("%s-%v", fmtName, noDirect))
					if err := os.Mkdir(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					want := writeShards(t, dir, 3, wopts)
					ds, err := Open(context.Background(), dir, Options{NoDirect: noDirect})
					if err != nil {
						t.Fatal(err)
					}
					defer ds.Close()
					if fsName == "disk" && !noDirect && !ds.Direct() {
						t.Logf("O_DIRECT refused on %s; reading buffered", root)
					}
					if ds.Len() != int64(len(want)) {
						t.Fatalf("Len = %d, want %d", ds.Len(), len(want))
					}
					rng := rand.New(rand.NewPCG(3, 4))
					for range 5 {
						idx := make([]int64, 64)
						dsts := make([][]byte, len(idx))
						for k := range idx {
							idx[k] = rng.Int64N(ds.Len())
							dsts[k] = make([]byte, len(want[idx[k]])+rng.IntN(2)) // unaligned and oversized buffers
							if rng.IntN(2) == 0 {
								dsts[k] = uring.AlignedBuffer(len(want[idx[k]]))
							}
						}
						if err := ds.ReadBatch(context.Background(), idx, dsts); err != nil {
							t.Fatal(err)
						}
						for k, i := range idx {
							if !bytes.Equal(dsts[k][:len(want[i])], want[i]) {
								t.Fatalf("sample %d differs", i)
							}
						}
					}
					if err := ds.Verify(context.Background(), ffrecord.VerifyOptions{}); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
}

func TestDatasetCorruptSample(t *testing.T) {
	dir := t.TempDir()
	want := writeShards(t, dir, 2, ffrecord.WriterOptions{Alignment: 4096})
	ds, err := Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Find a non-empty sample in the second shard and damage it on disk.
	var target int64 = -1
	for i := ds.Shards()[1].FirstIndex; i < ds.Len(); i++ {
		if len(want[i]) > 0 {
			target = i
			break
		}
	}
	loc, _ := ds.Locate(target)
	ds.Close()
	f, err := os.OpenFile(loc.File, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{want[target][0] ^ 0xFF}, loc.Offset); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ds, err = Open(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	buf := make([]byte, len(want[target]))
	_, err = ds.ReadSample(context.Background(), target, buf)
	var fe *ffrecord.Error
	if !errors.Is(err, ffrecord.ErrChecksum) || !errors.As(err, &fe) || fe.Index != target || fe.File != loc.File {
		t.Fatalf("ReadSample of damaged sample: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(context.Background(), filepath.Join(dir, "missing.ffr"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := Open(context.Background(), dir, Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty directory: %v", err)
	}
	junk := filepath.Join(dir, "junk.ffr")
	os.WriteFile(junk, []byte("this is not an ffrecord file at all"), 0o644)
	if _, err := Open(context.Background(), junk, Options{}); !errors.Is(err, ffrecord.ErrNotFFRecord) {
		t.Fatalf("junk file: %v", err)
	}
}
