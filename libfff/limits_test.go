package libfff

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"syscall"
	"testing"

	"fff/internal/proto"
)

// TestFileRangeLimits: every file IO whose range reaches past
// proto.MaxFileSize (or wraps) fails with EFBIG, a negative offset with
// EINVAL, before anything reaches storage; the file's bytes are unchanged.
// Before the limit, a write at 2^32 chunks wrapped the chunk index onto
// chunk 0 and overwrote the start of the file.
func TestFileRangeLimits(t *testing.T) {
	t.Parallel()
	c, st := dataClient(t)
	ctx := context.Background()
	orig := []byte("the first bytes of the file")
	putFile(t, c, "/d/f", orig)
	f, err := c.Open(ctx, "/d/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wrap := int64(testChunk) << 32 // chunk index 2^32: 0 once truncated to uint32
	writesBefore := st.writes.Load()
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"WriteAt at 2^32 chunks", func() error { _, err := f.WriteAt([]byte("X"), wrap); return err }, proto.ErrFileTooLarge},
		{"WriteAt at MaxFileSize", func() error { _, err := f.WriteAt([]byte("X"), proto.MaxFileSize); return err }, proto.ErrFileTooLarge},
		{"WriteAt straddling MaxFileSize", func() error { _, err := f.WriteAt(make([]byte, 2), proto.MaxFileSize-1); return err }, proto.ErrFileTooLarge},
		{"WriteAt at MaxInt64", func() error { _, err := f.WriteAt([]byte("X"), math.MaxInt64); return err }, proto.ErrFileTooLarge},
		{"WriteAt negative", func() error { _, err := f.WriteAt([]byte("X"), -1); return err }, proto.ErrInvalid},
		{"Write after Seek to the limit", func() error {
			if _, err := f.Seek(proto.MaxFileSize, io.SeekStart); err != nil {
				return err
			}
			_, err := f.Write([]byte("X"))
			return err
		}, proto.ErrFileTooLarge},
		{"Seek past the limit", func() error { _, err := f.Seek(proto.MaxFileSize+1, io.SeekStart); return err }, proto.ErrInvalid},
		{"Seek overflowing", func() error {
			if _, err := f.Seek(10, io.SeekStart); err != nil {
				return err
			}
			_, err := f.Seek(math.MaxInt64, io.SeekCurrent)
			return err
		}, proto.ErrInvalid},
		{"Truncate past the limit", func() error { return f.Truncate(proto.MaxFileSize + 1) }, proto.ErrFileTooLarge},
		{"ReadAt past the limit", func() error { _, err := f.ReadAt(make([]byte, 1), proto.MaxFileSize+1); return err }, proto.ErrFileTooLarge},
		{"ReadAt at MaxInt64", func() error { _, err := f.ReadAt(make([]byte, 1), math.MaxInt64); return err }, proto.ErrFileTooLarge},
	} {
		err := tc.do()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if errors.Is(tc.want, proto.ErrFileTooLarge) && !errors.Is(err, syscall.EFBIG) {
			t.Errorf("%s: %v does not match syscall.EFBIG", tc.name, err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := st.writes.Load() - writesBefore; n != 0 {
		t.Errorf("%d writes reached storage", n)
	}
	if got := getFile(t, c, "/d/f"); !bytes.Equal(got, orig) {
		t.Fatalf("file is %q, want %q", got, orig)
	}

	// A read that starts inside the limit but is longer ends there (no
	// file is longer): short, not an overflow.
	ops := []ReadOp{{File: f, Off: proto.MaxFileSize - 1, Dst: make([]byte, 4)}, {File: f, Off: math.MaxInt64, Dst: make([]byte, 4)}}
	if err := c.ReadBatch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if ops[0].Err != io.EOF || ops[0].N != 0 {
		t.Errorf("read at the limit: %d, %v; want 0, EOF", ops[0].N, ops[0].Err)
	}
	if !errors.Is(ops[1].Err, proto.ErrFileTooLarge) {
		t.Errorf("ReadBatch at MaxInt64: %v, want EFBIG", ops[1].Err)
	}
}

// TestClientTruncateLimit: Client.Truncate refuses a size past
// proto.MaxFileSize (EFBIG) or negative (EINVAL) before it sends anything,
// so even a missing file gets the size error rather than ENOENT; the file
// is unchanged. MaxFileSize itself is a valid size.
func TestClientTruncateLimit(t *testing.T) {
	t.Parallel()
	c, _ := dataClient(t)
	ctx := context.Background()
	orig := []byte("the bytes of the file")
	putFile(t, c, "/d/f", orig)
	for _, tc := range []struct {
		name string
		size int64
		want error
	}{
		{"/d/f", proto.MaxFileSize + 1, proto.ErrFileTooLarge},
		{"/d/f", math.MaxInt64, proto.ErrFileTooLarge},
		{"/d/f", -1, proto.ErrInvalid},
		{"/d/missing", proto.MaxFileSize + 1, proto.ErrFileTooLarge},
		{"/d/missing", -1, proto.ErrInvalid},
	} {
		err := c.Truncate(ctx, tc.name, tc.size)
		if !errors.Is(err, tc.want) {
			t.Errorf("Truncate(%s, %d): %v, want %v", tc.name, tc.size, err, tc.want)
		}
	}
	if fi, err := c.Stat(ctx, "/d/f"); err != nil || fi.Size() != int64(len(orig)) {
		t.Fatalf("after refused truncates: %v, %v; want size %d", fi, err, len(orig))
	}
	if got := getFile(t, c, "/d/f"); !bytes.Equal(got, orig) {
		t.Fatalf("file is %q, want %q", got, orig)
	}
	putFile(t, c, "/d/g", nil)
	if err := c.Truncate(ctx, "/d/g", proto.MaxFileSize); err != nil {
		t.Fatalf("Truncate to MaxFileSize: %v", err)
	}
	if fi, err := c.Stat(ctx, "/d/g"); err != nil || fi.Size() != proto.MaxFileSize {
		t.Fatalf("after truncate to MaxFileSize: %v, %v", fi, err)
	}
}

// TestStorageRangeLimits: writeRange fails with EFBIG for a range past
// proto.MaxFileSize rather than write nothing and succeed (splitRange
// gives no pieces for it), and truncateChunks refuses such a size and
// keeps a bounded number of chunk errors however many chunks fail.
func TestStorageRangeLimits(t *testing.T) {
	t.Parallel()
	c, st := dataClient(t)
	ctx := context.Background()
	putFile(t, c, "/d/f", []byte("data"))
	f, err := c.Open(ctx, "/d/f", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	writesBefore := st.writes.Load()
	for _, off := range []int64{proto.MaxFileSize, proto.MaxFileSize - 1, math.MaxInt64} {
		if err := c.writeRange(ctx, f.caps, f.layout, f.ino, []byte("XY"), off); !errors.Is(err, proto.ErrFileTooLarge) {
			t.Errorf("writeRange at %d: %v, want EFBIG", off, err)
		}
	}
	if err := c.writeRange(ctx, f.caps, f.layout, f.ino, []byte("X"), -1); !errors.Is(err, proto.ErrInvalid) {
		t.Errorf("writeRange at -1: %v, want EINVAL", err)
	}
	if n := st.writes.Load() - writesBefore; n != 0 {
		t.Errorf("%d writes reached storage", n)
	}
	if err := c.truncateChunks(ctx, f.caps, f.layout, f.ino, proto.MaxFileSize+1, proto.MaxFileSize+testChunk); !errors.Is(err, proto.ErrFileTooLarge) {
		t.Errorf("truncateChunks past the limit: %v, want EFBIG", err)
	}

	// Every chunk truncate fails (a cancelled context): the error keeps
	// maxTruncateErrs of them and a count, not one per chunk.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err = c.truncateChunks(cctx, f.caps, f.layout, f.ino, 0, 100*testChunk)
	if err == nil {
		t.Fatal("truncateChunks with a cancelled context: no error")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("truncateChunks error %v: not a joined error", err)
	}
	if n := len(joined.Unwrap()); n > maxTruncateErrs+1 {
		t.Errorf("truncateChunks kept %d errors, want at most %d", n, maxTruncateErrs+1)
	}
}
