package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// randBytes returns n pseudo-random bytes (seeded by n, reproducible).
func randBytes(n int) []byte {
	r := rand.New(rand.NewPCG(uint64(n), 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestCLIPutGet copies files of sizes around the 4 KiB block and the 4 MiB
// chunk into a cluster and back, byte for byte.
func TestCLIPutGet(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	ctx := ctxFor(t)
	c := cl.admin(t)
	env := cl.env(cl.token)
	dir := t.TempDir()

	sizes := []int{0, 1, 4095, 4096, 4<<20 - 1, 4 << 20, 4<<20 + 1, 9 << 20}
	var names []string
	for _, n := range sizes {
		p := filepath.Join(dir, fmt.Sprintf("f%d", n))
		if err := os.WriteFile(p, randBytes(n), 0o640); err != nil {
			t.Fatal(err)
		}
		names = append(names, p)
	}
	mustFFF(t, env, "mkdir", "/in")
	// Several sources into a directory, in parallel, verified.
	mustFFF(t, env, append(append([]string{"put", "--verify", "-j", "3"}, names...), "/in")...)
	for _, n := range sizes {
		st, err := c.Stat(ctx, fmt.Sprintf("/in/f%d", n))
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != int64(n) {
			t.Errorf("/in/f%d: size %d", n, st.Size())
		}
	}
	out := filepath.Join(dir, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		name := fmt.Sprintf("f%d", n)
		// get one file to a new name (fff:/// form), then compare.
		dst := filepath.Join(out, name)
		mustFFF(t, env, "get", "--verify", "fff:///in/"+name, dst)
		if fileSum(t, dst) != fileSum(t, filepath.Join(dir, name)) {
			t.Errorf("%s: differs after put and get", name)
		}
	}
	// put onto an existing file name overwrites it (shorter data).
	small := filepath.Join(dir, "f1")
	mustFFF(t, env, "put", small, "/in/f9437184")
	if got := mustFFF(t, env, "cat", "/in/f9437184"); got != string(randBytes(1)) {
		t.Errorf("overwritten file reads %d bytes", len(got))
	}

	// cat of several files, in order.
	if err := os.WriteFile(filepath.Join(dir, "a.txt"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.txt"), []byte("world\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustFFF(t, env, "put", filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt"), "fff:///txt/")
	if got := mustFFF(t, env, "cat", "/txt/a.txt", "fff:///txt/b.txt"); got != "hello\nworld\n" {
		t.Errorf("cat: %q", got)
	}
	r := fff(t, env, "cat", "/txt/a.txt", "/txt/missing")
	if r.code != 1 || r.stdout != "hello\n" || !strings.Contains(r.stderr, "/txt/missing") {
		t.Errorf("cat of a missing file: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// Usage errors.
	if r := fff(t, env, "put", "fff:///txt/a.txt", "/x"); r.code != 2 {
		t.Errorf("put with a cluster source: exit %d, %s", r.code, r.stderr)
	}
	if r := fff(t, env, "put", dir, "/x"); r.code != 1 || !strings.Contains(r.stderr, "-r") {
		t.Errorf("put of a directory without -r: exit %d, %s", r.code, r.stderr)
	}
}

// TestCLITreeAndCp copies a directory tree with -r both ways and uses cp in
// both directions.
func TestCLITreeAndCp(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	env := cl.env(cl.token)
	dir := t.TempDir()

	tree := filepath.Join(dir, "tree")
	files := map[string][]byte{
		"top.bin":         randBytes(5000),
		"empty":           nil,
		"a/one":           randBytes(100),
		"a/b/two":         randBytes(5 << 20),
		"a/b/c/three.txt": []byte("three\n"),
	}
	for name, data := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(tree, "emptydir"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Into a missing directory written with '/': created, tree copied under its name.
	mustFFF(t, env, "put", "-r", "--verify", tree, "/data/")
	if got := mustFFF(t, env, "ls", "/data/tree"); got != "a\nempty\nemptydir\ntop.bin\n" {
		t.Errorf("ls /data/tree:\n%s", got)
	}
	// get -r to a new name: the tree becomes that directory.
	back := filepath.Join(dir, "back")
	mustFFF(t, env, "get", "-r", "--verify", "/data/tree", back)
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(back, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: differs after put -r and get -r", name)
		}
	}
	if st, err := os.Stat(filepath.Join(back, "emptydir")); err != nil || !st.IsDir() {
		t.Errorf("empty directory not copied: %v", err)
	}

	// cp: local -> fff, fff -> local, fff -> fff; plain paths are local.
	mustFFF(t, env, "cp", filepath.Join(tree, "top.bin"), "fff:///cp1")
	mustFFF(t, env, "cp", "fff:///cp1", "fff:///cp2")
	local := filepath.Join(dir, "cp3")
	mustFFF(t, env, "cp", "--verify", "fff:///cp2", local)
	if got, _ := os.ReadFile(local); !bytes.Equal(got, files["top.bin"]) {
		t.Errorf("cp round trip differs")
	}
	// A file copied onto itself (named two ways) is refused, not truncated.
	if r := fff(t, env, "cp", "fff:///cp1", "fff://"+cl.addr+"/cp1"); r.code != 1 || !strings.Contains(r.stderr, "same file") {
		t.Errorf("cp onto itself: exit %d, %s", r.code, r.stderr)
	}
	if got := mustFFF(t, env, "cat", "/cp1"); got != string(files["top.bin"]) {
		t.Errorf("cp onto itself changed the file: %d bytes", len(got))
	}
	local2 := filepath.Join(dir, "cp4")
	mustFFF(t, env, "cp", local, local2)
	if got, _ := os.ReadFile(local2); !bytes.Equal(got, files["top.bin"]) {
		t.Errorf("local cp differs")
	}
	mustFFF(t, env, "cp", "-r", "fff:///data/tree/a", filepath.Join(dir, "a2"))
	if got, _ := os.ReadFile(filepath.Join(dir, "a2", "b", "two")); !bytes.Equal(got, files["a/b/two"]) {
		t.Errorf("cp -r from the cluster differs")
	}
}

// TestCLIFFRInCluster packs a dataset straight into a cluster and verifies,
// inspects, reads and unpacks it there.
func TestCLIFFRInCluster(t *testing.T) {
	t.Parallel()
	cl := startCluster(t)
	env := cl.env(cl.token)
	dir := t.TempDir()

	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i := range 40 {
		name := fmt.Sprintf("s%03d", i)
		data := randBytes(1000 + i*3000)
		want[name] = data
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Several shards into a new directory, one file on its own.
	out := mustFFF(t, env, "ffr", "pack", src, "--shard-size", "512KiB", "-o", "fff:///ds/")
	if !strings.Contains(out, "into fff:///ds/") {
		t.Errorf("pack output: %s", out)
	}
	shards := mustFFF(t, env, "ls", "/ds")
	if !strings.HasPrefix(shards, "shard-00000.ffr\nshard-00001.ffr\n") || strings.Contains(shards, ".tmp") {
		t.Errorf("ls /ds:\n%s", shards)
	}
	mustFFF(t, env, "ffr", "pack", src, "-o", "fff:///one.ffr")
	if r := fff(t, env, "ls", "/ds.tmp"); r.code == 0 {
		t.Errorf("pack left /ds.tmp behind")
	}

	for _, ds := range []string{"fff:///ds", "fff:///ds/", "fff:///one.ffr", "fff://" + cl.addr + "/ds"} {
		v := mustFFF(t, env, "ffr", "verify", ds)
		if !strings.HasPrefix(v, "OK "+ds+" (40 samples") {
			t.Errorf("verify %s: %s", ds, v)
		}
		in := mustFFF(t, env, "ffr", "inspect", ds)
		if !strings.Contains(in, "samples:        40") {
			t.Errorf("inspect %s:\n%s", ds, in)
		}
	}
	if got := mustFFF(t, env, "ffr", "cat", "fff:///ds", "7"); got != string(want["s007"]) {
		t.Errorf("ffr cat: %d bytes", len(got))
	}
	if got := mustFFF(t, env, "ffr", "cat", "--key", "fff:///one.ffr", "7"); got != "s007\n" {
		t.Errorf("ffr cat --key: %q", got)
	}
	up := filepath.Join(dir, "up")
	mustFFF(t, env, "ffr", "unpack", "fff:///ds", "-o", up)
	for name, data := range want {
		if got, err := os.ReadFile(filepath.Join(up, name)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("unpacked %s differs (%v)", name, err)
		}
	}
	// A dataset that does not exist, and packing over an existing one.
	if r := fff(t, env, "ffr", "verify", "fff:///nope"); r.code != 1 || !strings.Contains(r.stdout, "FAIL fff:///nope") {
		t.Errorf("verify of a missing dataset: exit %d, %s%s", r.code, r.stdout, r.stderr)
	}
	if r := fff(t, env, "ffr", "pack", src, "-o", "fff:///ds/"); r.code != 1 || !strings.Contains(r.stderr, "already holds") {
		t.Errorf("pack into a directory holding a dataset: exit %d, %s", r.code, r.stderr)
	}
}
