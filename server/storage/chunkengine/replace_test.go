package chunkengine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"

	"fff/internal/proto"
)

func TestReplace(t *testing.T) {
	ctx := context.Background()
	e := openEngine(t, t.TempDir(), Options{})
	id := ChunkID{Ino: 3, Index: 1}
	tests := []struct {
		name    string
		before  func()
		data    []byte
		version uint64
	}{
		{"missing chunk", func() {}, pattern(1, 10000), 7},
		{"longer chunk, older version", func() { mustWrite(t, e, id, 0, pattern(2, 50000)) }, pattern(3, 5000), 9},
		{"newer version, shorter data kept exact", func() {}, pattern(4, 4096), 2},
		{"empty chunk", func() {}, nil, 5},
		{"damaged record", func() { mustWrite(t, e, id, 0, pattern(5, 9000)); damageRecord(t, e, id) }, pattern(6, 12345), 11},
	}
	for _, tc := range tests {
		tc.before()
		var old []uint64
		if ents, err := os.ReadDir(e.fileDir(id)); err == nil {
			for _, ent := range ents {
				if _, gen, ok := parseFileName(ent.Name()); ok {
					old = append(old, gen)
				}
			}
		}
		if err := e.Replace(ctx, id, tc.version, tc.data); err != nil {
			t.Fatalf("%s: Replace: %v", tc.name, err)
		}
		checkChunk(t, e, id, tc.data, tc.version)
		rec := mustRecord(t, e, id)
		for _, gen := range old {
			if gen == rec.gen {
				continue
			}
			if _, err := os.Stat(e.filePath(id, gen)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("%s: the replaced data file (gen %d) is still there: %v", tc.name, gen, err)
			}
		}
		// The chunk goes on as any other: an append builds on it.
		v := mustWrite(t, e, id, int64(len(tc.data)), []byte("tail"))
		if v != tc.version+1 {
			t.Fatalf("%s: append after Replace made version %d, want %d", tc.name, v, tc.version+1)
		}
		checkChunk(t, e, id, append(append([]byte(nil), tc.data...), "tail"...), v)
	}
	for _, bad := range []struct {
		version uint64
		n       int
	}{{0, 10}, {1, testChunk + 1}} {
		if err := e.Replace(ctx, id, bad.version, make([]byte, bad.n)); !errors.Is(err, proto.ErrInvalid) {
			t.Fatalf("Replace(version %d, %d bytes) = %v, want EINVAL", bad.version, bad.n, err)
		}
	}
}

func TestScan(t *testing.T) {
	ctx := context.Background()
	e := openEngine(t, t.TempDir(), Options{})
	var want []ChunkID
	for ino := uint64(1); ino <= 3; ino++ {
		for idx := uint32(0); idx < 5; idx++ {
			id := ChunkID{Ino: ino, Index: idx}
			mustWrite(t, e, id, 0, pattern(ino*10+uint64(idx), 100+int(idx)))
			want = append(want, id)
		}
	}
	for _, limit := range []int{1, 4, 15, 100} {
		var got []ChunkID
		var after *ChunkID
		for pages := 0; ; pages++ {
			if pages > len(want) {
				t.Fatalf("limit %d: Scan does not end", limit)
			}
			page, more, err := e.Scan(ctx, after, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) > limit {
				t.Fatalf("limit %d: page of %d", limit, len(page))
			}
			for _, ci := range page {
				got = append(got, ci.ID)
				if ci.Version != 1 || ci.Length != int64(100+ci.ID.Index) {
					t.Fatalf("Scan: %+v", ci)
				}
			}
			if !more {
				break
			}
			after = &page[len(page)-1].ID
		}
		if len(got) != len(want) {
			t.Fatalf("limit %d: scanned %v, want %v", limit, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("limit %d: scanned %v, want %v", limit, got, want)
			}
		}
	}
}
