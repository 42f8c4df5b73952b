package tests

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"fff/internal/proto"
)

// Input limits end to end (docs/security.md): offsets past the largest file
// size are EFBIG and never wrap onto the file's start; a crafted FFRecord
// header is a clear error, fast and in bounded memory.

func TestSecurityHugeOffsetWrite(t *testing.T) {
	c := startCluster(t)
	cl := c.admin(t)
	ctx := ctxFor(t)
	orig := []byte("the start of the file")
	f, err := cl.Create(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(orig); err != nil {
		t.Fatal(err)
	}
	// 4 MiB chunks: chunk index 2^32 is offset 2^54, which a uint32 index
	// wrapped onto chunk 0.
	for _, off := range []int64{4 << 20 << 32, proto.MaxFileSize, math.MaxInt64} {
		if _, err := f.WriteAt([]byte("XXXX"), off); !errors.Is(err, syscall.EFBIG) {
			t.Errorf("WriteAt(%d) = %v, want EFBIG", off, err)
		}
	}
	if err := f.Truncate(proto.MaxFileSize + 1); !errors.Is(err, syscall.EFBIG) {
		t.Errorf("Truncate past the limit = %v, want EFBIG", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	out := mustFFF(t, c.env(c.token), "cat", "/big")
	if out != string(orig) {
		t.Fatalf("file is %q, want %q", out, orig)
	}
}

// TestSecurityTruncateBeyondLimit: a truncate by name past the largest
// file size is EFBIG from libfff, and meta refuses it too when a client
// sends it anyway (SetAttrIno, the FUSE mount's path, sends the raw size):
// the stored size and the data stay as they were.
func TestSecurityTruncateBeyondLimit(t *testing.T) {
	c := startCluster(t)
	cl := c.admin(t)
	ctx := ctxFor(t)
	orig := []byte("the start of the file")
	put(t, cl, "/big", orig)
	for _, size := range []int64{proto.MaxFileSize + 1, math.MaxInt64} {
		if err := cl.Truncate(ctx, "/big", size); !errors.Is(err, syscall.EFBIG) {
			t.Errorf("Truncate(/big, %d) = %v, want EFBIG", size, err)
		}
	}
	fi, err := cl.Stat(ctx, "/big")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []uint64{uint64(proto.MaxFileSize) + 1, math.MaxUint64} {
		if _, err := cl.SetAttrIno(ctx, fi.Ino(), proto.SetAttr{Valid: proto.SetSize, Size: size}); !errors.Is(err, syscall.EFBIG) {
			t.Errorf("SetAttrIno(size %d) = %v, want EFBIG from meta", size, err)
		}
	}
	if fi, err := cl.Stat(ctx, "/big"); err != nil || fi.Size() != int64(len(orig)) {
		t.Fatalf("after refused truncates: %v, %v; want size %d", fi, err, len(orig))
	}
	if out := mustFFF(t, c.env(c.token), "cat", "/big"); out != string(orig) {
		t.Fatalf("file is %q, want %q", out, orig)
	}
}

func TestSecurityFFRecordHeaderClaims(t *testing.T) {
	c := startCluster(t)
	env := c.env(c.token)
	hdr := make([]byte, 4096)
	binary.LittleEndian.PutUint64(hdr[4:], 10_000_000_000)
	local := filepath.Join(t.TempDir(), "claims.ffr")
	if err := os.WriteFile(local, hdr, 0o644); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", local, "/claims.ffr")
	for _, path := range []string{"fff:///claims.ffr", local} {
		cmd := exec.Command(filepath.Join(binDir, "fff"), "ffr", "inspect", path)
		cmd.Env = env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		// Exit status 1 with a message, not a crash: an allocation of the
		// claimed index (120 GB) would have died of SIGKILL or a runtime
		// out-of-memory abort (exit 2). How little it allocates is
		// ffrecord's TestHeaderClaimsChecked's to measure (a child's
		// rusage counts the test process's memory from before the exec).
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("inspect %s of a header claiming 10^10 samples: %v, want exit status 1; stderr:\n%s", path, err, stderr.String())
		}
		msg := stderr.String()
		if !strings.Contains(msg, "claims.ffr") || !strings.Contains(msg, "10000000000") {
			t.Errorf("inspect %s: unclear message %q", path, msg)
		}
	}
}
