package libfff

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"fff/internal/proto"
)

// gcQueued reports whether meta's GC queue holds a delete record of ino.
func gcQueued(t *testing.T, c *Client, ino uint64) bool {
	t.Helper()
	var resp proto.MetaGCListResp
	if err := c.metaCall(context.Background(), proto.MethodMetaGCList, &proto.MetaGCListReq{Limit: 1000}, &resp); err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.Records {
		if r.ID.Ino == ino && r.Kind == proto.GCDelete {
			return true
		}
	}
	return false
}

// TestCreateTempPublish: a file written through CreateTemp is invisible
// until Publish, which replaces the old file whole; Chmod and Chtimes
// before Publish stick.
func TestCreateTempPublish(t *testing.T) {
	t.Parallel()
	c, _ := dataClient(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	old := randBytes(r, 2*testChunk+3)
	putFile(t, c, "/d/x", old)
	oldIno := must(c.Stat(ctx, "/d/x"))(t).Inode.Ino

	f, err := c.CreateTemp(ctx, "/d", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if f.Layout().ChunkSize != testChunk {
		t.Fatalf("layout %+v: not the directory's policy", f.Layout())
	}
	data := randBytes(r, 5*testChunk+17)
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	// Written and synced, yet the name still holds the old file.
	if got := getFile(t, c, "/d/x"); !bytes.Equal(got, old) {
		t.Fatal("/d/x changed before Publish")
	}
	ents, err := c.ReadDir(ctx, "/d")
	if err != nil || len(ents) != 1 {
		t.Fatalf("/d lists %v, %v; want x alone", ents, err)
	}
	mtime := time.Date(2020, 2, 2, 2, 2, 2, 0, time.UTC)
	if err := f.Chmod(0o640); err != nil {
		t.Fatal(err)
	}
	if err := f.Chtimes(mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := f.PublishExcl(ctx, "/d/x"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("PublishExcl onto a file: %v, want EEXIST", err)
	}
	if err := f.Publish(ctx, "/d/x"); err != nil {
		t.Fatal(err)
	}
	if got := getFile(t, c, "/d/x"); !bytes.Equal(got, data) {
		t.Fatalf("/d/x reads %d bytes after Publish, want the %d written", len(got), len(data))
	}
	if err := f.Publish(ctx, "/d/y"); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("second Publish: %v, want EINVAL", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	fi := must(c.Stat(ctx, "/d/x"))(t)
	if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) || fi.Size() != int64(len(data)) {
		t.Fatalf("/d/x: mode %v, mtime %v, size %d; want 0640, %v, %d", fi.Mode(), fi.ModTime(), fi.Size(), mtime, len(data))
	}
	if !gcQueued(t, c, oldIno) {
		t.Fatal("the replaced file was not queued for garbage collection")
	}

	// Less than a chunk stays buffered until Publish sends it.
	g, err := c.CreateTemp(ctx, "/d", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	small := randBytes(r, 100)
	if _, err := g.Write(small); err != nil {
		t.Fatal(err)
	}
	if err := g.Publish(ctx, "d/small"); err != nil {
		t.Fatal(err)
	}
	if got := getFile(t, c, "/d/small"); !bytes.Equal(got, small) {
		t.Fatalf("/d/small reads %q", got)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCreateTempAbandon: closing an unpublished file deletes it and
// queues its chunks; it never gets a name.
func TestCreateTempAbandon(t *testing.T) {
	t.Parallel()
	c, _ := dataClient(t)
	ctx := context.Background()
	f, err := c.CreateTemp(ctx, "/d", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(randBytes(rand.New(rand.NewPCG(5, 6)), 3*testChunk+1)); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); !errors.Is(err, proto.ErrNotSupported) {
		t.Fatalf("Truncate of an unpublished file: %v, want ENOTSUP", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if !gcQueued(t, c, f.Ino()) {
		t.Fatal("an abandoned file was not queued for garbage collection")
	}
	if err := f.Publish(ctx, "/d/late"); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Publish after Close: %v, want a closed-file error", err)
	}
	if ents, err := c.ReadDir(ctx, "/d"); err != nil || len(ents) != 0 {
		t.Fatalf("/d lists %v, %v", ents, err)
	}
	// Errors name the directory; Publish's are link errors.
	if _, err := c.CreateTemp(ctx, "/missing", 0o644); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("CreateTemp in a missing directory: %v", err)
	}
	g, err := c.CreateTemp(ctx, "/d", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := c.Mkdir(ctx, "/d/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	var le *os.LinkError
	if err := g.Publish(ctx, "/d/sub"); !errors.Is(err, proto.ErrIsDir) || !errors.As(err, &le) {
		t.Fatalf("Publish onto a directory: %v (%T), want EISDIR as an *os.LinkError", err, err)
	}
}

func must[T any](v T, err error) func(testing.TB) T {
	return func(t testing.TB) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}
