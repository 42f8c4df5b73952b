package ffrecord

import (
	"bytes"
	"context"
	"fff/internal/crc32c"
	"math/rand/v2"
	"testing"
)

// The seed corpora are checked in under testdata/fuzz/: every test vector
// plus truncated and damaged variants for FuzzOpen, and a few sample sets in
// each writer configuration for FuzzWriterRoundTrip.

// FuzzOpen treats arbitrary bytes as an FFRecord file. Open must not panic,
// hang or allocate more than the file's size suggests; a file that opens must
// read and verify without panicking, with well-formed errors, and a sample read
// without error must be exactly the bytes its index points at, with a matching
// checksum. Each input is also tried with its metadata checksums recomputed,
// so that the fuzzer reaches the structural checks behind them.
func FuzzOpen(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		checkArbitrary(t, data)
		if fixed := fixChecksums(data); fixed != nil {
			checkArbitrary(t, fixed)
		}
	})
}

// checkArbitrary opens, reads and verifies data, which may be anything.
func checkArbitrary(t *testing.T, data []byte) {
	t.Helper()
	const name = "fuzz.ffr"
	ctx := context.Background()
	src := Source{Name: name, R: bytes.NewReader(data), Size: int64(len(data))}
	r, err := Open(ctx, []Source{src}, ReaderOptions{})
	if err != nil {
		checkFileErrors(t, "Open", name, err)
		return
	}
	s := r.shards[0]
	info := r.Shards()[0]
	if info.Len != r.Len() || info.Size != int64(len(data)) || info.DataBytes > int64(len(data)) {
		t.Fatalf("bad shard info %+v for a %d-byte file", info, len(data))
	}
	prevEnd := s.dataStart
	for i := range r.Len() {
		loc, err := r.Locate(i)
		if err != nil {
			t.Fatalf("Locate(%d): %v", i, err)
		}
		if loc.Offset < s.dataStart || loc.Length < 0 || loc.Offset+loc.Length > s.dataEnd || s.dataEnd > int64(len(data)) {
			t.Fatalf("sample %d at [%d, +%d) outside the data area [%d, %d)", i, loc.Offset, loc.Length, s.dataStart, s.dataEnd)
		}
		if loc.Offset < prevEnd && loc.Length > 0 {
			t.Fatalf("sample %d at %d overlaps the previous one ending at %d", i, loc.Offset, prevEnd)
		}
		if loc.Length > 0 && loc.Offset%info.Alignment != 0 {
			t.Fatalf("sample %d at %d is not aligned to %d", i, loc.Offset, info.Alignment)
		}
		prevEnd = max(prevEnd, loc.Offset+loc.Length)
		if _, err := r.Key(i); err != nil {
			checkFileErrors(t, "Key", name, err)
		}
	}
	// With checksums on: good reads are the indexed bytes and match the checksum.
	got, err := readAll(t, r)
	bad := map[int64]bool{}
	for _, e := range checkFileErrors(t, "ReadBatch", name, err) {
		bad[e.Sample] = true
	}
	for i := range r.Len() {
		if bad[i] {
			continue
		}
		off, n := s.offsets[i], s.lengths[i]
		if !bytes.Equal(got[i], data[off:off+n]) {
			t.Fatalf("sample %d: read bytes differ from the file's", i)
		}
		if crc := updateCRC(s.version, 0, got[i]); crc != s.crcs[i] {
			t.Fatalf("sample %d returned with checksum %08x, stored %08x", i, crc, s.crcs[i])
		}
	}
	if err := r.Verify(ctx, VerifyOptions{}); err != nil {
		checkFileErrors(t, "Verify", name, err)
	}
	// Without checksums every sample reads, as the bytes the index points at.
	r, err = Open(ctx, []Source{src}, ReaderOptions{NoVerify: true})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	got, err = readAll(t, r)
	if err != nil {
		t.Fatalf("NoVerify read: %v", err)
	}
	for i := range r.Len() {
		if off, n := s.offsets[i], s.lengths[i]; !bytes.Equal(got[i], data[off:off+n]) {
			t.Fatalf("NoVerify sample %d: read bytes differ from the file's", i)
		}
	}
}

// fixChecksums returns a copy of data with every metadata checksum it can
// locate recomputed, or nil when it finds none.
func fixChecksums(data []byte) []byte {
	size := uint64(len(data))
	if bytes.HasPrefix(data, []byte(v2Magic)) || bytes.HasSuffix(data, []byte(v2FooterMagic)) {
		if size < v2HeaderSize+v2FooterSize {
			return nil
		}
		b := bytes.Clone(data)
		le.PutUint32(b[28:], crc32c.Checksum(b[:28]))
		f := b[size-v2FooterSize:]
		footerAt := size - v2FooterSize
		n, indexAt := le.Uint64(f[0:]), le.Uint64(f[8:])
		if n <= footerAt/v2EntrySize && indexAt <= footerAt && n*v2EntrySize <= footerAt-indexAt {
			le.PutUint32(f[32:], crc32c.Checksum(b[indexAt:indexAt+n*v2EntrySize]))
		}
		if keysAt, keysLen := le.Uint64(f[16:]), le.Uint64(f[24:]); keysAt <= footerAt && keysLen <= footerAt-keysAt {
			le.PutUint32(f[36:], crc32c.Checksum(b[keysAt:keysAt+keysLen]))
		}
		le.PutUint32(f[52:], crc32c.Checksum(f[:52]))
		return b
	}
	if size < v1HeaderSize {
		return nil
	}
	n := le.Uint64(data[4:])
	if n > (size-v1HeaderSize)/12 {
		return nil
	}
	b := bytes.Clone(data)
	le.PutUint32(b, crc32IEEE(b[4:v1HeaderSize+12*n]))
	return b
}

// Writer configurations FuzzWriterRoundTrip picks from with its mode byte.
var (
	fuzzAlignments = []int64{0, 1, 2, 8, 64, 512, 4096, 4096}
	fuzzBuffers    = []int{1, 7, 64, 4096} // not the 4 MiB default: its allocation dominates small runs
)

// fuzzSamples splits data into samples: each cut byte is the length of the
// next sample (clamped to what is left; zero makes an empty sample), and the
// rest is the last sample.
func fuzzSamples(data, cuts []byte) [][]byte {
	var out [][]byte
	for _, c := range cuts {
		n := min(int(c), len(data))
		out = append(out, data[:n:n])
		data = data[n:]
	}
	if len(data) > 0 {
		out = append(out, data)
	}
	return out
}

// FuzzWriterRoundTrip writes fuzzer-chosen samples in a fuzzer-chosen
// configuration and reads them back. mode: bit 0 v1, bits 1-3 alignment, bit
// 4 keys, bits 5-6 writer buffer size.
func FuzzWriterRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, data, cuts []byte, mode uint8) {
		// Bound the sample count: thousands of empty samples find nothing new
		// and make every run (and the fuzzer's minimization) slow.
		samples := fuzzSamples(data, cuts[:min(len(cuts), 256)])
		opts := WriterOptions{BufferSize: fuzzBuffers[mode>>5&3]}
		if mode&1 != 0 {
			opts.Format = V1
		} else {
			opts.Alignment = fuzzAlignments[mode>>1&7]
		}
		var keys []string
		if mode&16 != 0 {
			keys = make([]string, len(samples))
			for i, s := range samples {
				keys[i] = string(s[:min(len(s), 12)]) // arbitrary bytes, often empty
			}
		}
		w := writeFile(t, "fuzz.ffr", opts, samples, keys)
		rng := rand.New(rand.NewPCG(uint64(len(data)), uint64(mode)))
		checkDataset(t, rng, openFiles(t, []*written{w}, ReaderOptions{}), []*written{w})
	})
}
