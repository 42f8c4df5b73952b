package dataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"fff/ffrecord"
)

func sample(f, i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("%d/%d;", f, i)), i%7)
}

func TestLocalWriteOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	for f, v := range []ffrecord.Version{ffrecord.V1, ffrecord.V2} {
		w, err := Create(ctx, nil, filepath.Join(dir, fmt.Sprintf("%d.ffr", f)), WriterOptions{Format: v})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			key := ""
			if v == ffrecord.V2 {
				key = fmt.Sprint("k", i)
			}
			if err := w.WriteKeyed(key, sample(f, i)); err != nil {
				t.Fatal(err)
			}
		}
		if v == ffrecord.V1 {
			if err := w.WriteKeyed("k", nil); !errors.Is(err, ffrecord.ErrWriter) {
				t.Fatalf("key on v1: %v", err)
			}
		}
		if err := w.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := w.Write(nil); !errors.Is(err, ffrecord.ErrWriter) {
			t.Fatalf("write after commit: %v", err)
		}
	}
	// An aborted writer leaves nothing.
	w, err := Create(ctx, nil, filepath.Join(dir, "2.ffr"), WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("%d entries after abort, want 2", len(ents))
	}

	ds, err := Open(ctx, nil, dir, Options{Verify: true, NoDirect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	r := ds.Reader()
	if r.Len() != 200 || !ds.Local() {
		t.Fatalf("len %d local %v", r.Len(), ds.Local())
	}
	for i := range int64(200) {
		size, _ := r.Size(i)
		b := make([]byte, size)
		if _, err := r.ReadSample(ctx, i, b); err != nil {
			t.Fatal(err)
		}
		if want := sample(int(i/100), int(i%100)); !bytes.Equal(b, want) {
			t.Fatalf("sample %d: %q, want %q", i, b, want)
		}
	}
	if k, _ := r.Key(150); k != "k50" {
		t.Fatalf("key %q", k)
	}
	if _, err := Open(ctx, nil, filepath.Join(dir, "missing"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
}
