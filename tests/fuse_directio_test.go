package tests

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestFUSEDirectIO mounts with --direct-io: bytes round-trip through the
// mount at several request sizes, mmap still works, and reads leave nothing
// in the page cache (the same read through the default mount does, which
// keeps the check honest).
func TestFUSEDirectIO(t *testing.T) {
	needFUSE(t)
	c := startClusterAt(t)
	dio := mountCluster(t, c, "--direct-io")
	plain := mountCluster(t, c)
	cl := c.admin(t)
	r := rand.New(rand.NewPCG(7, 8))
	data := randData(r, 9<<20+4321)

	// Written through the direct-IO mount in odd-sized writes, read natively.
	f, err := os.Create(filepath.Join(dio.dir, "w"))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+r.IntN(3<<20))
		if _, err := f.Write(data[off : off+n]); err != nil {
			t.Fatal(err)
		}
		off += n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := get(t, cl, "/w"); !bytes.Equal(got, data) {
		t.Fatalf("written through the --direct-io mount, read natively: %d bytes, differ", len(got))
	}

	// Written natively, read through the direct-IO mount with several
	// buffer sizes (sequential: the readahead window serves them).
	put(t, cl, "/n", data)
	for _, bs := range []int{4096, 100 << 10, 1 << 20, 3<<20 + 1} {
		f, err := os.Open(filepath.Join(dio.dir, "n"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(struct{ io.Reader }{bufReader{f, bs}})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("read with %d-byte requests through --direct-io: differs", bs)
		}
	}

	// mmap works on a direct-IO file (DIRECT_IO_ALLOW_MMAP) and shows the
	// file's bytes.
	mf, err := os.Open(filepath.Join(dio.dir, "n"))
	if err != nil {
		t.Fatal(err)
	}
	defer mf.Close()
	m, err := unix.Mmap(int(mf.Fd()), 0, len(data), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatalf("mmap of a file on the --direct-io mount: %v", err)
	}
	if !bytes.Equal(m, data) {
		t.Fatal("mmap of a file on the --direct-io mount shows other bytes")
	}
	unix.Munmap(m)

	// A full read leaves the file's pages out of the page cache through the
	// direct-IO mount, and in it through the default one.
	put(t, cl, "/cold", data[:4<<20])
	for _, tc := range []struct {
		dir    string
		cached bool
	}{{dio.dir, false}, {plain.dir, true}} {
		p := filepath.Join(tc.dir, "cold")
		if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, data[:4<<20]) {
			t.Fatalf("read %s: %v (or wrong bytes)", p, err)
		}
		if n := residentPages(t, p); (n > 0) != tc.cached {
			t.Errorf("%s: %d pages in the page cache after a full read, want cached=%v", p, n, tc.cached)
		}
	}
}

// bufReader reads through r with requests of n bytes.
type bufReader struct {
	r io.Reader
	n int
}

func (b bufReader) Read(p []byte) (int, error) { return b.r.Read(p[:min(len(p), b.n)]) }

// residentPages counts path's pages in the page cache (mincore of a
// mapping that is never touched).
func residentPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (len(m)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore: %v", errno)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
