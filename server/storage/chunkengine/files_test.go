package chunkengine

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"
)

// TestFileNames: data file paths follow the documented layout, and the
// names parse back to what made them.
func TestFileNames(t *testing.T) {
	e := openEngine(t, t.TempDir(), Options{})
	for _, tc := range []struct {
		id  ChunkID
		gen uint64
	}{
		{ChunkID{Ino: 1, Index: 0}, 1},
		{ChunkID{Ino: 0xdeadbeef, Index: 7}, 0x1234},
		{ChunkID{Ino: math.MaxUint64, Index: math.MaxUint32}, math.MaxUint64},
	} {
		h := dirHash(tc.id)
		want := filepath.Join(e.dataDir, fmt.Sprintf("%02x", byte(h>>8)), fmt.Sprintf("%02x", byte(h)),
			fmt.Sprintf("%016x-%08x.%016x", tc.id.Ino, tc.id.Index, tc.gen))
		if got := e.filePath(tc.id, tc.gen); got != want {
			t.Errorf("filePath(%v, %d) = %q, want %q", tc.id, tc.gen, got, want)
		}
		if got := filepath.Join(e.fileDir(tc.id), fileName(tc.id, tc.gen)); got != want {
			t.Errorf("fileDir + fileName = %q, want %q", got, want)
		}
		id, gen, ok := parseFileName(fileName(tc.id, tc.gen))
		if !ok || id != tc.id || gen != tc.gen {
			t.Errorf("parseFileName(fileName(%v, %d)) = %v, %d, %v", tc.id, tc.gen, id, gen, ok)
		}
	}
}
