package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// errAt is a ReaderAt over data that fails reads at or past offset bad.
type errAt struct {
	data []byte
	bad  int64
}

var errRead = errors.New("read failed")

func (r errAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= r.bad {
		return 0, errRead
	}
	return bytes.NewReader(r.data).ReadAt(p, off)
}

// failWriter accepts limit bytes, then fails.
type failWriter struct {
	buf   bytes.Buffer
	limit int
}

var errWrite = errors.New("write failed")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) > w.limit {
		return 0, errWrite
	}
	return w.buf.Write(p)
}

func TestCopyAhead(t *testing.T) {
	const bs = 1000
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name       string
		size       int
		depth      int
		bad        int64 // reads from here fail (-1: never)
		writeLimit int   // the writer fails past this (-1: never)
		wantErr    error
	}{
		{"empty", 0, 4, -1, -1, nil},
		{"one byte", 1, 4, -1, -1, nil},
		{"piece minus one", bs - 1, 4, -1, -1, nil},
		{"one piece", bs, 4, -1, -1, nil},
		{"piece plus one", bs + 1, 4, -1, -1, nil},
		{"many pieces, depth 2", 17*bs + 7, 2, -1, -1, nil},
		{"many pieces, depth 8", 17*bs + 7, 8, -1, -1, nil},
		{"exact pieces", 16 * bs, 3, -1, -1, nil},
		{"read error", 17 * bs, 4, 5 * bs, -1, errRead},
		{"write error", 17 * bs, 4, -1, 3*bs + 10, errWrite},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			bad := tc.bad
			if bad < 0 {
				bad = 1 << 62
			}
			limit := tc.writeLimit
			if limit < 0 {
				limit = 1 << 62
			}
			bufs := make([][]byte, tc.depth)
			for i := range bufs {
				bufs[i] = make([]byte, bs)
			}
			w := &failWriter{limit: limit}
			h := sha256.New()
			var counted int64
			n, err := copyAhead(context.Background(), w, errAt{data, bad}, bufs, h, func(k int64) { counted += k })
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if n != int64(w.buf.Len()) || counted != n {
				t.Fatalf("returned %d, wrote %d, counted %d", n, w.buf.Len(), counted)
			}
			if !bytes.Equal(w.buf.Bytes(), data[:n]) {
				t.Fatalf("the %d bytes written are not the source's first %d, in order", w.buf.Len(), n)
			}
			if tc.wantErr == nil {
				if n != int64(tc.size) {
					t.Fatalf("copied %d of %d bytes", n, tc.size)
				}
				if sum := sha256.Sum256(data); !bytes.Equal(h.Sum(nil), sum[:]) {
					t.Fatal("hash of the copy differs")
				}
			}
		})
	}
}

// TestCopyAheadCanceled: a canceled copy stops and returns the context's
// error once its reads are done.
func TestCopyAheadCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	bufs := [][]byte{make([]byte, 10), make([]byte, 10)}
	n, err := copyAhead(ctx, io.Discard, bytes.NewReader(make([]byte, 100)), bufs, nil, nil)
	if !errors.Is(err, context.Canceled) || n != 0 {
		t.Fatalf("copyAhead after cancel = %d, %v", n, err)
	}
}
