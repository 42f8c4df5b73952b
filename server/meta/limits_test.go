package meta

import (
	"fmt"
	"math"
	"testing"

	"fff/internal/proto"
	"fff/server/kv"
)

// TestFileSizeLimit: meta refuses every size a client sets or reports past
// proto.MaxFileSize with EFBIG and leaves the stored inode as it was,
// whatever the client checked; MaxFileSize itself is a valid size.
func TestFileSizeLimit(t *testing.T) {
	ops := []struct {
		name string
		// do sets or reports size for a file whose writer (alice) holds
		// session o, in directory d.
		do func(s *Service, o Opened, d uint64, size uint64) (proto.Inode, error)
	}{
		{"setattr", func(s *Service, o Opened, _ uint64, size uint64) (proto.Inode, error) {
			return s.SetAttr(ctx, alice, o.Inode.Ino, proto.SetAttr{Valid: proto.SetSize, Size: size})
		}},
		{"report", func(s *Service, o Opened, _ uint64, size uint64) (proto.Inode, error) {
			return s.ReportLength(ctx, alice, o.Session, size, true)
		}},
		{"close", func(s *Service, o Opened, _ uint64, size uint64) (proto.Inode, error) {
			return s.Close(ctx, alice, o.Session, size, true)
		}},
		{"publish", func(s *Service, o Opened, d uint64, size uint64) (proto.Inode, error) {
			return s.Publish(ctx, alice, publish(o, d, "pub", size))
		}},
	}
	sizes := []struct {
		size uint64
		want proto.Code
	}{
		{uint64(proto.MaxFileSize), proto.OK},
		{uint64(proto.MaxFileSize) + 1, proto.EFBIG},
		{1 << 63, proto.EFBIG},
		{math.MaxUint64, proto.EFBIG},
	}
	forEachBackend(t, func(t *testing.T, db kv.DB) {
		s := newService(t, db, Options{})
		for i, op := range ops {
			for j, c := range sizes {
				t.Run(fmt.Sprintf("%s/%d", op.name, c.size), func(t *testing.T) {
					d := mkdir(t, s, Root, proto.RootIno, fmt.Sprintf("d%d-%d", i, j), 0o777)
					var o Opened
					if op.name == "publish" {
						o = must(s.CreateTemp(ctx, alice, d.Ino, 0o644))(t)
					} else {
						o = must(s.Create(ctx, alice, d.Ino, "f", 0o644, proto.OpenWrite))(t)
					}
					before := must(s.ReportLength(ctx, alice, o.Session, 100, true))(t)
					n, err := op.do(s, o, d.Ino, c.size)
					wantCode(t, err, c.want)
					after, err := s.Stat(ctx, Root, o.Inode.Ino)
					if err != nil {
						t.Fatal(err)
					}
					if c.want == proto.OK {
						if n.Size != c.size || after.Size != c.size {
							t.Fatalf("size %d: returned %d, stored %d", c.size, n.Size, after.Size)
						}
						return
					}
					if after.Size != before.Size || after.WriteVer != before.WriteVer || after.TruncVer != before.TruncVer || after.Nlink != before.Nlink {
						t.Fatalf("refused size %d changed the inode: before %+v, after %+v", c.size, before, after)
					}
					// The refused session still works.
					if op.name != "setattr" {
						if _, err := s.ReportLength(ctx, alice, o.Session, 200, true); err != nil {
							t.Fatalf("session after the refused report: %v", err)
						}
					}
				})
			}
		}
	})
}
