package ffrecord

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the v2 test vectors")

// vectorSample is the deterministic sample content used by every vector.
func vectorSample(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte((i*131 + j*7 + 3) % 251)
	}
	return b
}

func manyLengths() []int {
	l := make([]int, 100)
	for i := range l {
		l[i] = (i * 977) % 3001
	}
	return l
}

type vector struct {
	file      string
	lengths   []int
	opts      WriterOptions
	keys      bool
	original  bool // produced by HFAiLab's library, never rewritten
	noMetaCRC bool
}

var vectors = []vector{
	{file: "v1_orig_empty.ffr", lengths: nil, opts: WriterOptions{Format: V1}, original: true},
	{file: "v1_orig_small.ffr", lengths: []int{0, 1, 11, 4096, 0, 10000, 3}, opts: WriterOptions{Format: V1}, original: true},
	{file: "v1_orig_many.ffr", lengths: manyLengths(), opts: WriterOptions{Format: V1}, original: true},
	{file: "v1_orig_small_nocrc.ffr", lengths: []int{0, 1, 11, 4096, 0, 10000, 3}, opts: WriterOptions{Format: V1}, original: true, noMetaCRC: true},
	{file: "v2_empty.ffr", lengths: nil},
	{file: "v2_small.ffr", lengths: []int{0, 1, 11, 4096, 0, 10000, 3}},
	{file: "v2_small_aligned4k_keys.ffr", lengths: []int{0, 1, 11, 4096, 0, 10000, 3}, opts: WriterOptions{Alignment: 4096}, keys: true},
	{file: "v2_many_aligned512.ffr", lengths: manyLengths(), opts: WriterOptions{Alignment: 512}},
	{file: "v2_many_keys.ffr", lengths: manyLengths(), keys: true},
}

func vectorKey(i int) string { return fmt.Sprintf("class%d/img_%04d.jpg", i%3, i) }

// writeVector writes v's samples with fff's writer into memory.
func writeVector(t *testing.T, v vector) []byte {
	t.Helper()
	var buf memFile
	opts := v.opts
	opts.Count = int64(len(v.lengths))
	opts.Name = v.file
	w, err := NewWriter(&buf, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range v.lengths {
		key := ""
		if v.keys {
			key = vectorKey(i)
		}
		if err := w.WriteKeyed(key, vectorSample(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.b
}

func TestVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.file, func(t *testing.T) {
			path := filepath.Join("testdata", "vectors", v.file)
			if *update && !v.original {
				if err := os.WriteFile(path, writeVector(t, v), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			// Our writer reproduces the file byte for byte (v1: the original
			// library's layout; v2: the frozen format).
			if !v.noMetaCRC {
				if got := writeVector(t, v); !bytes.Equal(got, want) {
					t.Fatalf("writer output differs from %s (%d vs %d bytes, first difference at %d)", v.file, len(got), len(want), firstDiff(got, want))
				}
			}
			r := openBytes(t, v.file, want, ReaderOptions{})
			if r.Len() != int64(len(v.lengths)) {
				t.Fatalf("Len = %d, want %d", r.Len(), len(v.lengths))
			}
			info := r.Shards()[0]
			if want := v.opts.Format; want != 0 && info.Version != want || want == 0 && info.Version != V2 {
				t.Fatalf("version %v", info.Version)
			}
			if info.MetaCRC == v.noMetaCRC {
				t.Fatalf("MetaCRC = %v", info.MetaCRC)
			}
			idx := make([]int64, len(v.lengths))
			dsts := make([][]byte, len(v.lengths))
			for i, n := range v.lengths {
				idx[i] = int64(i)
				dsts[i] = make([]byte, n)
				if sz, _ := r.Size(int64(i)); sz != int64(n) {
					t.Fatalf("Size(%d) = %d, want %d", i, sz, n)
				}
				key, err := r.Key(int64(i))
				if err != nil {
					t.Fatal(err)
				}
				if wantKey := map[bool]string{true: vectorKey(i)}[v.keys]; key != wantKey {
					t.Fatalf("Key(%d) = %q, want %q", i, key, wantKey)
				}
			}
			if err := r.ReadBatch(context.Background(), idx, dsts); err != nil {
				t.Fatal(err)
			}
			for i, n := range v.lengths {
				if !bytes.Equal(dsts[i], vectorSample(i, n)) {
					t.Fatalf("sample %d differs", i)
				}
			}
			if err := r.Verify(context.Background(), VerifyOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
