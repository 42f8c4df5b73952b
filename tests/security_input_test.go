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
	"time"

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
		start := time.Now()
		err := cmd.Run()
		took := time.Since(start)
		if err == nil {
			t.Fatalf("inspect %s of a header claiming 10^10 samples succeeded", path)
		}
		msg := stderr.String()
		if !strings.Contains(msg, "claims.ffr") || !strings.Contains(msg, "10000000000") {
			t.Errorf("inspect %s: unclear message %q", path, msg)
		}
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok || ru.Maxrss > 256<<10 { // KiB
			t.Errorf("inspect %s: max RSS %d KiB", path, ru.Maxrss)
		}
		if took > 30*time.Second {
			t.Errorf("inspect %s took %v", path, took)
		}
	}
}
