package ffrecord

import (
	"bytes"
	"context"
	"errors"
	"fff/internal/crc32c"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// fileSentinels are the errors a damaged file may be reported with.
var fileSentinels = []error{ErrTruncated, ErrBadMagic, ErrUnsupportedVersion, ErrMetaChecksum, ErrBadOffsets, ErrChecksum, ErrCorrupt, ErrNotFFRecord}

// errLeaves flattens errors.Join trees.
func errLeaves(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, errLeaves(e)...)
		}
		return out
	}
	return []error{err}
}

// checkFileErrors checks that every problem in err is an *Error naming file
// and wrapping one of the sentinels, and returns them.
func checkFileErrors(t testing.TB, what, file string, err error) []*Error {
	t.Helper()
	var out []*Error
	for _, leaf := range errLeaves(err) {
		var e *Error
		if !errors.As(leaf, &e) {
			t.Fatalf("%s: %v (%T) is not an *Error", what, leaf, leaf)
		}
		if e.File != file {
			t.Fatalf("%s: %v names file %q, want %q", what, leaf, e.File, file)
		}
		known := false
		for _, s := range fileSentinels {
			known = known || errors.Is(leaf, s)
		}
		if !known {
			t.Fatalf("%s: %v wraps none of the sentinel errors", what, leaf)
		}
		out = append(out, e)
	}
	return out
}

// damageReport is what reading a damaged copy of a file found.
type damageReport struct {
	openErr, readErr, verifyErr bool
	readSamples, verifySamples  map[int64]bool // samples named in errors
}

func (d damageReport) detected() bool { return d.openErr || d.readErr || d.verifyErr }

// readDamaged opens data as file name and reads and verifies everything,
// checking that every error is well formed and that no sample read without
// error differs from want.
func readDamaged(t testing.TB, name string, data []byte, want [][]byte) damageReport {
	t.Helper()
	ctx := context.Background()
	d := damageReport{readSamples: map[int64]bool{}, verifySamples: map[int64]bool{}}
	r, err := Open(ctx, []Source{{Name: name, R: bytes.NewReader(data), Size: int64(len(data))}}, ReaderOptions{})
	if err != nil {
		checkFileErrors(t, "Open", name, err)
		d.openErr = true
		return d
	}
	idx := make([]int64, r.Len())
	dsts := make([][]byte, r.Len())
	for i := range idx {
		idx[i] = int64(i)
		n, err := r.Size(int64(i))
		if err != nil {
			t.Fatalf("Size(%d): %v", i, err)
		}
		dsts[i] = make([]byte, n)
	}
	err = r.ReadBatch(ctx, idx, dsts)
	for _, e := range checkFileErrors(t, "ReadBatch", name, err) {
		if e.Sample < 0 || e.Sample >= r.Len() || e.Index != e.Sample {
			t.Fatalf("ReadBatch: %v names no valid sample", e)
		}
		d.readSamples[e.Sample] = true
		d.readErr = true
	}
	for i := range dsts {
		if d.readSamples[int64(i)] {
			continue
		}
		if i >= len(want) || !bytes.Equal(dsts[i], want[i]) {
			t.Fatalf("ReadBatch returned bad bytes for sample %d as good", i)
		}
	}
	for i := range idx {
		if _, err := r.Key(int64(i)); err != nil {
			checkFileErrors(t, "Key", name, err)
		}
	}
	err = r.Verify(ctx, VerifyOptions{})
	for _, e := range checkFileErrors(t, "Verify", name, err) {
		if e.Sample >= 0 {
			d.verifySamples[e.Sample] = true
		}
		d.verifyErr = true
	}
	return d
}

// corruptCase is one file whose every byte is flipped in turn.
type corruptCase struct {
	name    string
	file    []byte
	samples [][]byte
	// weak: the file has no metadata checksum (v1 from early library
	// versions); only "never bad bytes as good" is required of it.
	weak bool
	// stride > 1 flips only every stride-th byte inside samples (plus each
	// sample's first and last byte); every other byte is always flipped.
	stride int
}

func corruptCases(t *testing.T) []corruptCase {
	lengths := []int{0, 1, 11, 100, 0, 37, 3}
	build := func(name string, opts WriterOptions, lengths []int, keys bool) corruptCase {
		samples := make([][]byte, len(lengths))
		var ks []string
		for i, n := range lengths {
			samples[i] = vectorSample(i, n)
			if keys {
				ks = append(ks, vectorKey(i))
			}
		}
		return corruptCase{name: name, file: writeFile(t, name, opts, samples, ks).file, samples: samples}
	}
	cases := []corruptCase{
		build("v1.ffr", WriterOptions{Format: V1}, lengths, false),
		build("v1_empty.ffr", WriterOptions{Format: V1}, nil, false),
		build("v1_empty_samples.ffr", WriterOptions{Format: V1}, []int{0, 0}, false),
		build("v2.ffr", WriterOptions{}, lengths, false),
		build("v2_empty.ffr", WriterOptions{}, nil, false),
		build("v2_keys.ffr", WriterOptions{}, lengths, true),
		build("v2_keys_empty_samples.ffr", WriterOptions{}, []int{0, 0, 0}, true),
		build("v2_align512_keys.ffr", WriterOptions{Alignment: 512}, lengths, true),
		build("v2_align4096_keys.ffr", WriterOptions{Alignment: 4096}, []int{5, 0, 3}, true),
		build("v2_align64.ffr", WriterOptions{Alignment: 64}, lengths, false),
	}
	// The HFAiLab library's own files, including the variant without a
	// metadata checksum.
	for _, v := range vectors[:4] {
		if len(v.lengths) > 10 {
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata", "vectors", v.file))
		if err != nil {
			t.Fatal(err)
		}
		c := corruptCase{name: v.file, file: data, weak: v.noMetaCRC, stride: 11}
		for i, n := range v.lengths {
			c.samples = append(c.samples, vectorSample(i, n))
		}
		cases = append(cases, c)
	}
	return cases
}

// sampleSpans maps each byte of an intact file to the sample holding it, or -1.
func sampleSpans(t testing.TB, c corruptCase) []int64 {
	r := openBytes(t, c.name, c.file, ReaderOptions{})
	owner := make([]int64, len(c.file))
	for i := range owner {
		owner[i] = -1
	}
	for i := range r.Len() {
		loc, err := r.Locate(i)
		if err != nil {
			t.Fatal(err)
		}
		for off := loc.Offset; off < loc.Offset+loc.Length; off++ {
			owner[off] = i
		}
	}
	return owner
}

func TestCorruptEveryByte(t *testing.T) {
	for _, c := range corruptCases(t) {
		t.Run(c.name, func(t *testing.T) {
			if d := readDamaged(t, c.name, c.file, c.samples); d.detected() {
				t.Fatalf("intact file reported damaged: %+v", d)
			}
			owner := sampleSpans(t, c)
			isV1 := !bytes.HasPrefix(c.file, []byte(v2Magic))
			data := bytes.Clone(c.file)
			for pos := range data {
				if s := owner[pos]; c.stride > 1 && s >= 0 && pos%c.stride != 0 && owner[pos-1] == s && pos+1 < len(data) && owner[pos+1] == s {
					continue
				}
				for _, mask := range []byte{0xFF, 0x01} {
					data[pos] ^= mask
					what := fmt.Sprintf("byte %d ^ %#02x", pos, mask)
					d := readDamaged(t, c.name, data, c.samples)
					switch {
					case c.weak:
						// Only "never bad bytes as good", checked by readDamaged.
					case isV1 && pos < 4 && le.Uint32(data) == 0:
						// The one blind spot of v1: a stored metadata checksum of
						// zero means "none". The rest is intact, so all must read.
						if d.detected() {
							t.Fatalf("%s: zeroed v1 checksum: %+v", what, d)
						}
					case !d.detected():
						t.Fatalf("%s: damage not detected by Open, ReadBatch or Verify", what)
					case owner[pos] >= 0:
						// A sample byte: the file opens, and reads and Verify name the sample.
						s := owner[pos]
						if d.openErr || !d.readSamples[s] || !d.verifySamples[s] || len(d.readSamples) != 1 {
							t.Fatalf("%s (in sample %d): open error %v, read errors for %v, verify errors for %v",
								what, s, d.openErr, d.readSamples, d.verifySamples)
						}
					}
					data[pos] ^= mask
				}
			}
		})
	}
}

func TestTruncateEveryLength(t *testing.T) {
	for _, c := range corruptCases(t) {
		t.Run(c.name, func(t *testing.T) {
			for n := range len(c.file) {
				if d := readDamaged(t, c.name, c.file[:n:n], c.samples); !d.detected() {
					t.Fatalf("truncated to %d of %d bytes: not detected", n, len(c.file))
				}
			}
			// Trailing garbage after a v2 footer, or after the last v1 sample.
			for _, tail := range [][]byte{{0}, []byte("x"), []byte(v2FooterMagic)} {
				data := append(bytes.Clone(c.file), tail...)
				// v1 has no index entry for bytes after the last sample when
				// there are no samples; Verify ignores v1 gaps.
				v1NoSamples := !bytes.HasPrefix(c.file, []byte(v2Magic)) && len(c.samples) == 0
				if d := readDamaged(t, c.name, data, c.samples); !d.detected() && !c.weak && !v1NoSamples {
					t.Fatalf("appended %q: not detected", tail)
				}
			}
		})
	}
}

// TestTruncatedErrors pins the error kinds for the common cases.
func TestTruncatedErrors(t *testing.T) {
	v1 := writeFile(t, "t1.ffr", WriterOptions{Format: V1}, [][]byte{[]byte("abc"), []byte("defg")}, nil).file
	v2 := writeFile(t, "t2.ffr", WriterOptions{}, [][]byte{[]byte("abc"), []byte("defg")}, nil).file
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"v1 header cut", v1[:8], ErrTruncated},
		{"v1 index cut", v1[:20], ErrTruncated},
		{"v2 header only", v2[:v2HeaderSize], ErrTruncated},
		{"v2 footer cut", v2[:len(v2)-1], ErrTruncated},
		{"v2 unclosed", v2[:v2HeaderSize+7], ErrTruncated},
		{"v2 header magic", append([]byte("XFRECORD"), v2[8:]...), ErrBadMagic},
		{"v2 header crc", append(append(bytes.Clone(v2[:28]), 0, 0, 0, 0), v2[32:]...), ErrMetaChecksum},
		{"v1 meta crc", append([]byte{1, 2, 3, 4}, v1[4:]...), ErrMetaChecksum},
		{"v1 N too big", append(bytes.Clone(v1[:4]), append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, v1[12:]...)...), ErrNotFFRecord},
		{"v1 N a little too big", append(bytes.Clone(v1[:4]), append([]byte{0xff, 0xff, 0, 0, 0, 0, 0, 0}, v1[12:]...)...), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), []Source{{Name: "f.ffr", R: bytes.NewReader(tc.data), Size: int64(len(tc.data))}}, ReaderOptions{})
			sampleError(t, err, tc.want)
		})
	}
}

// TestNotFFRecord pins what counts as another kind of file (ErrNotFFRecord)
// rather than a damaged FFRecord file: text, a count no file could hold,
// no samples but more bytes, most offsets outside the file.
func TestNotFFRecord(t *testing.T) {
	samples := [][]byte{[]byte("aaaa"), []byte("bbbbbb"), []byte("cc")}
	v1 := writeFile(t, "n1.ffr", WriterOptions{Format: V1}, samples, nil).file
	// v1WithIndex is a v1 header for 4 samples with the given offsets and
	// stored checksum (0: none), followed by 64 bytes of data.
	v1WithIndex := func(crc uint32, offs ...uint64) []byte {
		b := le.AppendUint32(nil, crc)
		b = le.AppendUint64(b, uint64(len(offs)))
		b = append(b, make([]byte, 4*len(offs))...)
		for _, o := range offs {
			b = le.AppendUint64(b, o)
		}
		return append(b, bytes.Repeat([]byte{'x'}, 64)...)
	}
	const end = 12 + 12*4
	oneOffsetBad := bytes.Clone(v1)
	le.PutUint64(oneOffsetBad[v1HeaderSize+4*3:], 1<<50) // sample 0's offset
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"text", []byte("#!/bin/sh\necho this is not an ffrecord file\n"), ErrNotFFRecord},
		{"elf-like, checksum wrong, offsets garbage", v1WithIndex(0x464c457f, 1<<40, 3, end+8, 1<<62), ErrNotFFRecord},
		{"no checksum, offsets garbage", v1WithIndex(0, 1, 2, 3, end), ErrNotFFRecord},
		{"no samples, more bytes", append(make([]byte, 12), "more"...), ErrNotFFRecord},
		// Damage, not another format: one offset of several out of range.
		{"no checksum, one offset bad", v1WithIndex(0, end, 1<<50, end+16, end+32), ErrBadOffsets},
		{"checksum wrong, one offset bad", oneOffsetBad, ErrMetaChecksum},
		{"checksum wrong, offsets in range", v1WithIndex(1, end, end+8, end+16, end+32), ErrMetaChecksum},
		{"too short to tell", []byte("hi\n"), ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), []Source{{Name: "f.bin", R: bytes.NewReader(tc.data), Size: int64(len(tc.data))}}, ReaderOptions{})
			sampleError(t, err, tc.want)
			if tc.want != ErrNotFFRecord && errors.Is(err, ErrNotFFRecord) {
				t.Fatalf("%v: damage reported as another kind of file", err)
			}
			if tc.want == ErrNotFFRecord && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("%v: not an ErrCorrupt, as callers that sort by sentinel expect", err)
			}
		})
	}
}

// TestBadOffsets builds files whose metadata checksums are right but whose
// offsets are wrong, so only the structural checks can catch them.
func TestBadOffsets(t *testing.T) {
	samples := [][]byte{[]byte("aaaa"), []byte("bbbbbb"), []byte("cc")}
	v1 := writeFile(t, "o1.ffr", WriterOptions{Format: V1}, samples, nil).file
	v2 := writeFile(t, "o2.ffr", WriterOptions{Alignment: 8}, samples, nil).file
	n := int64(len(samples))
	v1Off := func(i int64) int { return int(v1HeaderSize + 4*n + 8*i) }
	fixV1 := func(b []byte) []byte {
		le.PutUint32(b, crc32IEEE(b[4:v1HeaderSize+12*n]))
		return b
	}
	indexAt := int(le.Uint64(v2[len(v2)-v2FooterSize+8:]))
	fixV2 := func(b []byte) []byte {
		f := b[len(b)-v2FooterSize:]
		le.PutUint32(f[32:], crc32c.Checksum(b[indexAt:indexAt+int(n)*v2EntrySize]))
		le.PutUint32(f[52:], crc32c.Checksum(f[:52]))
		return b
	}
	for _, tc := range []struct {
		name   string
		data   []byte
		sample int64
	}{
		{"v1 decreasing", fixV1(func(b []byte) []byte { le.PutUint64(b[v1Off(2):], le.Uint64(b[v1Off(0):])); return b }(bytes.Clone(v1))), 1},
		{"v1 before data", fixV1(func(b []byte) []byte { le.PutUint64(b[v1Off(0):], 3); return b }(bytes.Clone(v1))), 0},
		{"v1 past end", fixV1(func(b []byte) []byte { le.PutUint64(b[v1Off(2):], uint64(len(b)+1)); return b }(bytes.Clone(v1))), 1},
		{"v1 negative", fixV1(func(b []byte) []byte { le.PutUint64(b[v1Off(1):], 1<<63); return b }(bytes.Clone(v1))), 0},
		{"v2 overlapping", fixV2(func(b []byte) []byte {
			le.PutUint64(b[indexAt+v2EntrySize:], le.Uint64(b[indexAt:]))
			return b
		}(bytes.Clone(v2))), 1},
		{"v2 unaligned", fixV2(func(b []byte) []byte {
			le.PutUint64(b[indexAt+v2EntrySize:], le.Uint64(b[indexAt+v2EntrySize:])+1)
			return b
		}(bytes.Clone(v2))), 1},
		{"v2 past index", fixV2(func(b []byte) []byte {
			le.PutUint64(b[indexAt+2*v2EntrySize+8:], 1<<40)
			return b
		}(bytes.Clone(v2))), 2},
		{"v2 length wraps", fixV2(func(b []byte) []byte {
			le.PutUint64(b[indexAt+2*v2EntrySize+8:], 1<<64-8)
			return b
		}(bytes.Clone(v2))), 2},
		{"v2 into header", fixV2(func(b []byte) []byte {
			le.PutUint64(b[indexAt:], 8)
			return b
		}(bytes.Clone(v2))), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), []Source{{Name: "f.ffr", R: bytes.NewReader(tc.data), Size: int64(len(tc.data))}}, ReaderOptions{})
			if e := sampleError(t, err, ErrBadOffsets); e.Sample != tc.sample {
				t.Fatalf("error %v names sample %d, want %d", err, e.Sample, tc.sample)
			}
		})
	}
}

func crc32IEEE(b []byte) uint32 { return updateCRC(V1, 0, b) }

// TestDamagedShardInDataset checks that errors name the right file and the
// dataset index when the damaged file is not the first.
func TestDamagedShardInDataset(t *testing.T) {
	ctx := context.Background()
	a := writeFile(t, "a.ffr", WriterOptions{}, [][]byte{[]byte("a0"), []byte("a1")}, nil)
	b := writeFile(t, "b.ffr", WriterOptions{Format: V1}, [][]byte{[]byte("b0"), []byte("b1"), []byte("b2")}, nil)
	r := openFiles(t, []*written{a, b}, ReaderOptions{})
	loc, _ := r.Locate(3)
	b.file[loc.Offset] ^= 1
	_, err := r.ReadSample(ctx, 3, make([]byte, 2))
	if e := sampleError(t, err, ErrChecksum); e.File != "b.ffr" || e.Sample != 1 || e.Index != 3 {
		t.Fatalf("read error %v", err)
	}
	if e := sampleError(t, r.Verify(ctx, VerifyOptions{}), ErrChecksum); e.File != "b.ffr" || e.Sample != 1 || e.Index != 3 {
		t.Fatalf("verify error %v", e)
	}
	b.file[0] ^= 1
	_, err = Open(ctx, []Source{a.source(), b.source()}, ReaderOptions{})
	if e := sampleError(t, err, ErrMetaChecksum); e.File != "b.ffr" {
		t.Fatalf("open error %v", err)
	}
}

// A v2 file whose padding is not zero is corrupt (only Verify reads padding).
func TestNonZeroPadding(t *testing.T) {
	f := writeFile(t, "pad.ffr", WriterOptions{Alignment: 64}, [][]byte{[]byte("x"), []byte("y")}, nil)
	f.file[40] = 7
	r := openFiles(t, []*written{f}, ReaderOptions{})
	if _, err := readAll(t, r); err != nil {
		t.Fatal(err)
	}
	if e := sampleError(t, r.Verify(context.Background(), VerifyOptions{}), ErrCorrupt); e.Sample != -1 {
		t.Fatalf("padding error names sample %d", e.Sample)
	}
}

// TestStructuralMutations damages metadata and then recomputes its checksums,
// so that only the structural checks stand between the damage and the reader:
// nothing may panic, errors must be well formed, and good reads must be the
// bytes the index points at with matching checksums (see checkArbitrary).
func TestStructuralMutations(t *testing.T) {
	interesting := func(rng *rand.Rand, size int) uint64 {
		vals := []uint64{0, 1, 7, 8, 12, 20, 31, 32, 33, 64, 512, 4096, 1 << 20, 1 << 31, 1 << 32, 1<<63 - 1, 1 << 63, 1<<64 - 1,
			uint64(size), uint64(size - 1), uint64(size + 1), uint64(size - 64), uint64(size - 65), uint64(size / 2)}
		return vals[rng.IntN(len(vals))]
	}
	for _, c := range corruptCases(t) {
		if c.stride > 1 {
			continue // the HFAiLab files are as the v1 files written here
		}
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(len(c.file)), 77))
			for range 1000 {
				data := bytes.Clone(c.file)
				for range 1 + rng.IntN(3) {
					// Aim at the metadata: v1's front, v2's header and tail.
					var pos int
					switch {
					case len(data) < 8:
						continue
					case !bytes.HasPrefix(c.file, []byte(v2Magic)):
						pos = rng.IntN(min(len(data), v1HeaderSize+12*len(c.samples)+8))
					case rng.IntN(4) == 0:
						pos = rng.IntN(v2HeaderSize)
					default:
						pos = len(data) - 1 - rng.IntN(min(len(data), v2FooterSize+v2EntrySize*len(c.samples)+200))
					}
					if rng.IntN(2) == 0 {
						data[pos] ^= byte(1 + rng.IntN(255))
					} else if pos -= pos % 4; pos+8 <= len(data) {
						le.PutUint64(data[pos:], interesting(rng, len(data)))
					}
				}
				if fixed := fixChecksums(data); fixed != nil {
					data = fixed
				}
				checkArbitrary(t, data)
			}
		})
	}
}
