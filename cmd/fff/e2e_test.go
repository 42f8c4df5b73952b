package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"fff/ffrecord"
	"fff/ffrecord/ffrfile"
)

// fffBin is the CLI built once for all tests.
var fffBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fff-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fffBin = filepath.Join(dir, "fff")
	build := exec.Command("go", "build", "-ldflags=-checklinkname=0", "-o", fffBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building fff:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// fff runs the CLI in dir (or the current directory when dir is "").
func fff(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return fffStdin(t, dir, "", args...)
}

// fffStdin is fff with stdin.
func fffStdin(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(fffBin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running fff %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// mustFFF runs the CLI and fails the test unless it exits 0.
func mustFFF(t *testing.T, args ...string) result {
	t.Helper()
	r := fff(t, "", args...)
	if r.code != 0 {
		t.Fatalf("fff %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

func writeFile(t *testing.T, name string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// makeTree writes a source tree: nested directories, empty files, a 5 MiB
// file (unless small), names with spaces, and many small files.
func makeTree(t *testing.T, dir string, big bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	writeFile(t, filepath.Join(dir, "top.txt"), []byte("hello, fff\n"))
	writeFile(t, filepath.Join(dir, "empty.bin"), nil)
	writeFile(t, filepath.Join(dir, "a", "empty"), nil)
	writeFile(t, filepath.Join(dir, "a", "b", "c", "deep.dat"), randBytes(rng, 3000))
	writeFile(t, filepath.Join(dir, "sp ace", "x y.txt"), randBytes(rng, 77))
	if big {
		writeFile(t, filepath.Join(dir, "a", "b", "five.bin"), randBytes(rng, 5<<20))
	}
	for i := range 60 {
		writeFile(t, filepath.Join(dir, "many", fmt.Sprintf("f%03d", i)), randBytes(rng, rng.IntN(20000)))
	}
}

// readTree maps every regular file below dir (by slash path) to its bytes.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sortedFiles lists the tree's files in packing order (sorted walk).
func sortedFiles(t *testing.T, dir string) (keys []string, data [][]byte) {
	tree := readTree(t, dir)
	for k := range tree {
		keys = append(keys, k)
	}
	slices.Sort(keys) // WalkDir's lexical order per directory equals sorting the slash paths here
	for _, k := range keys {
		data = append(data, tree[k])
	}
	return keys, data
}

func sameTree(t *testing.T, want, got map[string][]byte) {
	t.Helper()
	if len(want) != len(got) {
		t.Errorf("tree has %d files, want %d", len(got), len(want))
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %s", k)
		} else if !bytes.Equal(g, w) {
			t.Errorf("%s: %d bytes differ from the source's %d", k, len(g), len(w))
		}
	}
}

func TestPackUnpackRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, true)
	want := readTree(t, src)
	keys, data := sortedFiles(t, src)
	cases := []struct {
		name    string
		flags   []string
		out     string
		keyed   bool
		version string
		align   string
	}{
		{"v2 default", nil, "d.ffr", true, "v2", "4096 (auto: mean sample 86 KiB >= 64 KiB)"},
		{"v2 align 0", []string{"--align", "0"}, "d.ffr", true, "v2", "none"},
		{"v2 no keys", []string{"--no-keys"}, "d.ffr", false, "v2", "4096"},
		{"v2 sharded", []string{"--shard-size", "256KiB", "-j", "3", "--align", "0"}, "d", true, "v2", "none"},
		{"v1", []string{"--format", "v1"}, "d.ffr", false, "v1", "none"},
		{"v1 sharded", []string{"--format", "v1", "--shard-size", "100KiB"}, "d/", false, "v1", "none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			out := filepath.Join(tmp, c.out)
			r := mustFFF(t, append([]string{"ffr", "pack", src, "-o", out}, c.flags...)...)
			if !strings.Contains(r.stdout, "packed "+fmt.Sprint(len(want))+" files") || !strings.Contains(r.stdout, "alignment "+c.align) {
				t.Errorf("summary: %q", r.stdout)
			}
			if _, err := os.Stat(strings.TrimSuffix(out, "/") + ".tmp"); err == nil {
				t.Error("temporary output left behind")
			}
			mustFFF(t, "ffr", "verify", out)
			insp := mustFFF(t, "ffr", "inspect", out).stdout
			if !strings.Contains(insp, fmt.Sprintf("samples:        %d\n", len(want))) || !strings.Contains(insp, c.version) {
				t.Errorf("inspect output:\n%s", insp)
			}
			dst := filepath.Join(tmp, "unpacked")
			mustFFF(t, "ffr", "unpack", out, "-o", dst, "-j", "3")
			got := readTree(t, dst)
			if c.keyed {
				sameTree(t, want, got)
				return
			}
			// Without keys, samples come back as INDEX.bin in packing order.
			byIndex := map[string][]byte{}
			for i := range keys {
				byIndex[fmt.Sprintf("%02d.bin", i)] = data[i]
			}
			sameTree(t, byIndex, got)
		})
	}
}

func readAll(t *testing.T, path string) map[string][]byte {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.IsDir() {
		return readTree(t, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{"": b}
}

func TestPackDeterministic(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, true)
	for _, c := range []struct {
		name  string
		flags []string
	}{
		{"v1", []string{"--format", "v1"}},
		{"v2", nil},
		{"v2 sharded", []string{"--shard-size", "200KiB"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
			mustFFF(t, append([]string{"ffr", "pack", src, "-o", a, "-j", "1"}, c.flags...)...)
			mustFFF(t, append([]string{"ffr", "pack", src, "-o", b, "-j", "4"}, c.flags...)...)
			ta, tb := readAll(t, a), readAll(t, b)
			if len(ta) != len(tb) {
				t.Fatalf("%d vs %d files", len(ta), len(tb))
			}
			for k := range ta {
				if !bytes.Equal(ta[k], tb[k]) {
					t.Errorf("%s differs between two packs", k)
				}
			}
		})
	}
}

func TestPackShardsReadAsOneDataset(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, false)
	keys, data := sortedFiles(t, src)
	out := filepath.Join(t.TempDir(), "ds")
	const limit = 64 << 10
	r := mustFFF(t, "ffr", "pack", src, "-o", out, "--shard-size", "64KiB")
	names, err := ffrfile.Files(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < 3 {
		t.Fatalf("%d shards, want several; %s", len(names), r.stdout)
	}
	for i, n := range names {
		if want := fmt.Sprintf("shard-%05d.ffr", i); filepath.Base(n) != want {
			t.Errorf("shard %d is %s, want %s", i, n, want)
		}
		if st, _ := os.Stat(n); st.Size() > limit {
			t.Errorf("%s is %d bytes, over the shard size", n, st.Size())
		}
	}
	ds, err := ffrfile.Open(context.Background(), out, ffrfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	if ds.Len() != int64(len(keys)) {
		t.Fatalf("dataset has %d samples, want %d", ds.Len(), len(keys))
	}
	for i := range keys {
		k, _ := ds.Key(int64(i))
		buf := make([]byte, len(data[i]))
		if _, err := ds.ReadSample(context.Background(), int64(i), buf); err != nil {
			t.Fatal(err)
		}
		if k != keys[i] || !bytes.Equal(buf, data[i]) {
			t.Errorf("sample %d: key %q, want %q (bytes equal: %v)", i, k, keys[i], bytes.Equal(buf, data[i]))
		}
	}
}

func TestInspect(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, false)
	keys, _ := sortedFiles(t, src)
	tmp := t.TempDir()
	v1, v2 := filepath.Join(tmp, "v1.ffr"), filepath.Join(tmp, "v2.ffr")
	mustFFF(t, "ffr", "pack", src, "-o", v1, "--format", "v1")
	mustFFF(t, "ffr", "pack", src, "-o", v2)
	for _, c := range []struct{ path, version, keys string }{{v1, "v1", "no"}, {v2, "v2", "yes"}} {
		txt := mustFFF(t, "ffr", "inspect", c.path).stdout
		for _, want := range []string{"format:         " + c.version, fmt.Sprintf("samples:        %d", len(keys)), "keys:           " + c.keys, "p99"} {
			if !strings.Contains(txt, want) {
				t.Errorf("inspect %s lacks %q:\n%s", c.version, want, txt)
			}
		}
		var rep inspectReport
		if err := json.Unmarshal([]byte(mustFFF(t, "ffr", "inspect", "--json", c.path).stdout), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Samples != int64(len(keys)) || rep.Versions[c.version] != 1 || rep.Files != 1 || rep.MetaChecksum != "yes" {
			t.Errorf("json report: %+v", rep)
		}
		if c.keys == "yes" && !slices.Equal(rep.FirstKeys, keys[:5]) {
			t.Errorf("first keys %q, want %q", rep.FirstKeys, keys[:5])
		}
	}
}

// flip inverts one byte of a file.
func flip(t *testing.T, name string, off int64) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// sampleAt returns where dataset sample i is stored.
func sampleAt(t *testing.T, path string, i int64) ffrecord.Location {
	t.Helper()
	ds, err := ffrfile.Open(context.Background(), path, ffrfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ds.Close()
	loc, err := ds.Locate(i)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestVerify(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, false)
	cases := []struct {
		name   string
		flags  []string
		out    string
		damage func(t *testing.T, path string) (file string, want []string)
	}{
		{"v1 intact", []string{"--format", "v1"}, "d.ffr", nil},
		{"v2 intact", nil, "d.ffr", nil},
		{"v2 sharded intact", []string{"--shard-size", "64KiB"}, "d", nil},
		{"v1 sample byte", []string{"--format", "v1"}, "d.ffr", damageSample(7)},
		{"v2 sample byte", nil, "d.ffr", damageSample(7)},
		{"v2 aligned sample byte", []string{"--align", "4096"}, "d.ffr", damageSample(7)},
		{"v2 sharded sample byte", []string{"--shard-size", "64KiB"}, "d", damageSample(40)},
		{"v1 header checksum byte", []string{"--format", "v1"}, "d.ffr", damageAt(1, "metadata checksum mismatch")},
		{"v1 header count byte", []string{"--format", "v1"}, "d.ffr", damageAt(5, "truncated")},
		{"v1 index byte", []string{"--format", "v1"}, "d.ffr", damageAt(20, "metadata checksum mismatch")},
		{"v2 header byte", nil, "d.ffr", damageAt(9, "")},
		{"v2 footer byte", nil, "d.ffr", damageAt(-10, "")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), c.out)
			mustFFF(t, append([]string{"ffr", "pack", src, "-o", out}, c.flags...)...)
			if c.damage == nil {
				r := mustFFF(t, "ffr", "verify", out)
				if !strings.HasPrefix(r.stdout, "OK "+out+" (") {
					t.Errorf("verify said %q", r.stdout)
				}
				return
			}
			file, wants := c.damage(t, out)
			r := fff(t, "", "ffr", "verify", out)
			if r.code != 1 {
				t.Fatalf("verify of a damaged file exited %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
			}
			wants = append(wants, "FAIL "+out, file)
			for _, w := range wants {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("verify output lacks %q:\n%s", w, r.stdout)
				}
			}
			if !strings.Contains(r.stderr, "failed verification") {
				t.Errorf("stderr: %q", r.stderr)
			}
		})
	}
}

// damageSample flips a byte in the middle of dataset sample i.
func damageSample(i int64) func(t *testing.T, path string) (string, []string) {
	return func(t *testing.T, path string) (string, []string) {
		loc := sampleAt(t, path, i)
		if loc.Length == 0 {
			t.Fatalf("sample %d is empty", i)
		}
		flip(t, loc.File, loc.Offset+loc.Length/2)
		return loc.File, []string{fmt.Sprintf("sample %d", loc.Sample), "checksum mismatch"}
	}
}

// damageAt flips the byte at off (negative: from the end) of a single-file dataset.
func damageAt(off int64, want string) func(t *testing.T, path string) (string, []string) {
	return func(t *testing.T, path string) (string, []string) {
		if off < 0 {
			st, _ := os.Stat(path)
			off += st.Size()
		}
		flip(t, path, off)
		if want == "" {
			return path, nil
		}
		return path, []string{want}
	}
}

func TestVerifyReportsEachPath(t *testing.T) {
	tmp := t.TempDir()
	good := filepath.Join(tmp, "good.ffr")
	writeFile(t, filepath.Join(tmp, "src", "x"), []byte("x"))
	mustFFF(t, "ffr", "pack", filepath.Join(tmp, "src"), "-o", good)
	notFFR := filepath.Join(tmp, "junk.ffr")
	writeFile(t, notFFR, []byte("this is not an ffrecord file at all"))
	missing := filepath.Join(tmp, "missing.ffr")
	r := fff(t, "", "ffr", "verify", good, notFFR, missing)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1", r.code)
	}
	// Each FAIL line names its file once.
	for _, w := range []string{"OK " + good + " (1 samples, ", "FAIL " + notFFR + ": not an FFRecord file (", "FAIL " + missing + ": no such file or directory\n"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("verify output lacks %q:\n%s", w, r.stdout)
		}
	}
	if r := fff(t, "", "ffr", "verify"); r.code != 2 {
		t.Errorf("verify without PATH exited %d, want 2", r.code)
	}
}

func TestCat(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	makeTree(t, src, true)
	keys, data := sortedFiles(t, src)
	tmp := t.TempDir()
	for _, c := range []struct {
		name  string
		flags []string
		keyed bool
	}{{"v2", nil, true}, {"v1", []string{"--format", "v1"}, false}, {"sharded", []string{"--shard-size", "100KiB"}, true}} {
		out := filepath.Join(tmp, c.name)
		mustFFF(t, append([]string{"ffr", "pack", src, "-o", out}, c.flags...)...)
		for _, i := range []int{0, 1, 5, len(keys) - 1} {
			r := mustFFF(t, "ffr", "cat", out, fmt.Sprint(i))
			if r.stdout != string(data[i]) {
				t.Errorf("%s: cat %d returned %d bytes, want %d", c.name, i, len(r.stdout), len(data[i]))
			}
			r = fff(t, "", "ffr", "cat", "--key", out, fmt.Sprint(i))
			if c.keyed && (r.code != 0 || r.stdout != keys[i]+"\n") {
				t.Errorf("%s: cat --key %d = %q (exit %d), want %q", c.name, i, r.stdout, r.code, keys[i])
			}
			if !c.keyed && r.code != 1 {
				t.Errorf("%s: cat --key without keys exited %d, want 1", c.name, r.code)
			}
		}
		if r := fff(t, "", "ffr", "cat", out, fmt.Sprint(len(keys))); r.code != 1 || !strings.Contains(r.stderr, "does not exist") {
			t.Errorf("cat past the end: exit %d, %q", r.code, r.stderr)
		}
		if r := fff(t, "", "ffr", "cat", out, "x"); r.code != 2 {
			t.Errorf("cat with a bad index exited %d, want 2", r.code)
		}
	}
}

func TestUnpackRefusesBadKeys(t *testing.T) {
	cases := []struct {
		name string
		keys []string
		want string
	}{
		{"parent", []string{"ok.txt", "../evil"}, "'..'"},
		{"parent inside", []string{"a/../../evil"}, "'..'"},
		{"absolute", []string{"/tmp/evil"}, "absolute"},
		{"dot", []string{"a/./b"}, "clean"},
		{"duplicate", []string{"a", "a"}, "both"},
		{"file and directory", []string{"a", "a/b"}, "directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			path := filepath.Join(tmp, "bad.ffr")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			w, err := ffrecord.NewWriter(f, ffrecord.WriterOptions{Name: path})
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range c.keys {
				if err := w.WriteKeyed(k, []byte("payload")); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			dst := filepath.Join(tmp, "out", "deeper")
			r := fff(t, "", "ffr", "unpack", path, "-o", dst)
			if r.code != 1 || !strings.Contains(r.stderr, c.want) || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("exit %d, stderr %q; want exit 1 and a line mentioning %q", r.code, r.stderr, c.want)
			}
			if got := readTree(t, tmp); len(got) != 1 {
				t.Errorf("files were written: %v", slices.Collect(mapKeys(got)))
			}
		})
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestPackOutputRules(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, filepath.Join(src, "a"), []byte("a"))
	writeFile(t, filepath.Join(src, "b", "c"), []byte("c"))
	tmp := t.TempDir()

	// Trailing slash: a directory even for one shard.
	mustFFF(t, "ffr", "pack", src, "-o", filepath.Join(tmp, "slash")+"/")
	if _, err := os.Stat(filepath.Join(tmp, "slash", "shard-00000.ffr")); err != nil {
		t.Error(err)
	}
	// Existing directory: the shard goes inside; a second pack into it is refused.
	existing := filepath.Join(tmp, "existing")
	os.Mkdir(existing, 0o755)
	mustFFF(t, "ffr", "pack", src, "-o", existing)
	if _, err := os.Stat(filepath.Join(existing, "shard-00000.ffr")); err != nil {
		t.Error(err)
	}
	if r := fff(t, "", "ffr", "pack", src, "-o", existing); r.code != 1 || !strings.Contains(r.stderr, "already holds") {
		t.Errorf("packing into a dataset directory: exit %d, %q", r.code, r.stderr)
	}
	// --files-from: keys as written, relative to the working directory.
	list := filepath.Join(tmp, "list")
	writeFile(t, list, []byte("a\n\nb/c\n"))
	r := fff(t, src, "ffr", "pack", "--files-from", list, "-o", filepath.Join(tmp, "list.ffr"))
	if r.code != 0 {
		t.Fatalf("pack --files-from: %d %s", r.code, r.stderr)
	}
	if k := mustFFF(t, "ffr", "cat", "--key", filepath.Join(tmp, "list.ffr"), "1").stdout; k != "b/c\n" {
		t.Errorf("key of the second listed file is %q", k)
	}
}

func TestPackFailuresLeaveNothing(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "src")
	makeTree(t, src, false)
	if err := os.Symlink(filepath.Join(tmp, "nowhere"), filepath.Join(src, "many", "dangling")); err != nil {
		t.Fatal(err)
	}
	outs := filepath.Join(tmp, "outs")
	os.Mkdir(outs, 0o755)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"dangling symlink", []string{src, "-o", filepath.Join(outs, "x.ffr")}, "dangling"},
		{"dangling symlink sharded", []string{src, "-o", filepath.Join(outs, "x"), "--shard-size", "10KiB"}, "dangling"},
		{"missing source", []string{filepath.Join(tmp, "missing"), "-o", filepath.Join(outs, "x.ffr")}, "no such file"},
		{"missing listed file", []string{"--files-from", "-", "-o", filepath.Join(outs, "x.ffr")}, "no such file"},
		{"cluster source", []string{"fff:///x", "-o", filepath.Join(outs, "x.ffr")}, "must be a local path"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := fffStdin(t, "", filepath.Join(src, "top.txt")+"\n"+filepath.Join(tmp, "missing")+"\n", append([]string{"ffr", "pack"}, c.args...)...)
			if r.code != 1 || !strings.Contains(r.stderr, c.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 mentioning %q", r.code, r.stderr, c.want)
			}
			if ents, _ := os.ReadDir(outs); len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tmp := t.TempDir()
	for _, args := range [][]string{
		{"ffr", "pack", tmp},
		{"ffr", "pack", tmp, "-o", "x", "--format", "v3"},
		{"ffr", "pack", tmp, "-o", "x", "--shard-size", "lots"},
		{"ffr", "pack", tmp, "-o", "x", "--align", "1000"},
		{"ffr", "pack", tmp, "-o", "x", "--format", "v1", "--align", "4096"},
		{"ffr", "pack", "-o", "x"},
		{"ffr", "inspect"},
		{"ffr", "cat", "x"},
		{"ffr", "unpack", "x"},
		{"ffr", "nonsense"},
		{"--log-level", "loud", "version"},
		{"ffr", "verify", "--bogus", "x"},
	} {
		r := fff(t, "", args...)
		if r.code != 2 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "--help") {
			t.Errorf("fff %v: exit %d, stderr %q; want 2 and one line pointing to --help", args, r.code, r.stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	if r := mustFFF(t, "version"); !strings.HasPrefix(r.stdout, "fff ") {
		t.Errorf("version printed %q", r.stdout)
	}
}

// TestPackStreamsLargeFiles packs a file above the streaming threshold (it is
// written by the shard writer straight from the source, never held whole).
func TestPackStreamsLargeFiles(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	big := make([]byte, streamThreshold+12345)
	rng := rand.New(rand.NewPCG(5, 5))
	for i := 0; i < len(big); i += 4096 {
		big[i] = byte(rng.Uint32()) // sparse but not uniform, so misplaced bytes show
	}
	writeFile(t, filepath.Join(src, "big.bin"), big)
	writeFile(t, filepath.Join(src, "small.bin"), []byte("small"))
	for _, format := range []string{"v1", "v2"} {
		out := filepath.Join(dir, format+".ffr")
		mustFFF(t, "ffr", "pack", src, "-o", out, "--format", format, "--align", map[string]string{"v1": "0", "v2": "4096"}[format])
		mustFFF(t, "ffr", "verify", out)
		unpacked := filepath.Join(dir, format+"-out")
		mustFFF(t, "ffr", "unpack", out, "-o", unpacked)
		got := readTree(t, unpacked)
		if format == "v1" {
			if !bytes.Equal(got["0.bin"], big) || string(got["1.bin"]) != "small" {
				t.Fatalf("%s: unpacked files differ", format)
			}
			continue
		}
		if !bytes.Equal(got["big.bin"], big) || string(got["small.bin"]) != "small" {
			t.Fatalf("%s: unpacked files differ", format)
		}
	}
}
