package ffrecord

import (
	"context"
	"errors"
	"io"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// BatchRead is one read of a batch: Buf is to be filled from Src at Off.
// A Batcher sets Err when it could not fill all of Buf.
type BatchRead struct {
	Src io.ReaderAt
	Off int64
	Buf []byte
	Err error
	// CRC32C is the checksum of Buf when Summed: a Batcher that computed
	// it over the bytes it delivered into Buf, while verifying them against
	// its own checksums (libfff's local reads do, from the chunk's block
	// checksums, at no extra pass), sets it; a v2 sample is then checked
	// against it instead of hashing Buf again.
	CRC32C uint32
	Summed bool
}

// Batcher issues many reads at once, possibly across several sources. Local
// files use io_uring (package ffrfile); files in fff use the client's batched
// reads. A Batcher returns a non-nil error only when the batch as a whole
// failed (e.g. ctx ended); per-read failures go into BatchRead.Err.
type Batcher interface {
	ReadBatch(ctx context.Context, reads []BatchRead) error
}

// ReaderOptions configure a Reader. The zero value verifies every sample.
type ReaderOptions struct {
	// NoVerify skips the per-sample checksum on reads. Metadata is always checked.
	NoVerify bool
	// Batcher issues batched reads; nil means concurrent ReadAt calls.
	Batcher Batcher
	// Concurrency bounds concurrent ReadAt calls when Batcher is nil (default 64).
	Concurrency int
}

// Reader reads samples from a dataset: one FFRecord file or several, indexed as
// their concatenation. It is safe for concurrent use.
type Reader struct {
	shards []*shard
	starts []int64 // starts[k] is the dataset index of shard k's first sample; one extra at the end
	opts   ReaderOptions
}

// Open parses the sources' headers and indexes (concurrently) and returns a
// Reader over their concatenation, in the order given.
func Open(ctx context.Context, sources []Source, opts ReaderOptions) (*Reader, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	r := &Reader{shards: make([]*shard, len(sources)), opts: opts}
	errs := make([]error, len(sources))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, src := range sources {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			break
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			r.shards[i], errs[i] = openShard(src)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.starts = make([]int64, len(sources)+1)
	for i, s := range r.shards {
		r.starts[i+1] = r.starts[i] + s.n()
	}
	return r, nil
}

// IsShardName reports whether a directory entry is part of a dataset directory.
func IsShardName(name string) bool { return strings.HasSuffix(name, ".ffr") }

// SortShardNames orders a dataset directory's shard names: plain byte order of
// the names, which is the order the samples are indexed in.
func SortShardNames(names []string) { sort.Strings(names) }

// ShardNames filters and orders a directory listing into the dataset's shards.
func ShardNames(entries []string) []string {
	var out []string
	for _, e := range entries {
		if IsShardName(path.Base(e)) {
			out = append(out, e)
		}
	}
	SortShardNames(out)
	return out
}

// Len is the number of samples in the dataset.
func (r *Reader) Len() int64 { return r.starts[len(r.shards)] }

// locate maps a dataset index to its shard and the index within it.
func (r *Reader) locate(i int64) (*shard, int64, error) {
	if i < 0 || i >= r.Len() {
		name := "dataset"
		if len(r.shards) == 1 {
			name = r.shards[0].src.Name
		}
		return nil, 0, &Error{File: name, Sample: i, Index: i, Err: ErrIndexRange, Detail: "dataset has " + strconv.FormatInt(r.Len(), 10) + " samples"}
	}
	k := sort.Search(len(r.shards), func(k int) bool { return r.starts[k+1] > i })
	return r.shards[k], i - r.starts[k], nil
}

// Size returns the length in bytes of sample i.
func (r *Reader) Size(i int64) (int64, error) {
	s, j, err := r.locate(i)
	if err != nil {
		return 0, err
	}
	return s.lengths[j], nil
}

// Sizes returns the length of every sample, in dataset order.
func (r *Reader) Sizes() []int64 {
	out := make([]int64, 0, r.Len())
	for _, s := range r.shards {
		out = append(out, s.lengths...)
	}
	return out
}

// Key returns sample i's key, or "" when its file has none (v1 files never do).
func (r *Reader) Key(i int64) (string, error) {
	s, j, err := r.locate(i)
	if err != nil {
		return "", err
	}
	return s.key(j)
}

// Location says where a sample's bytes are.
type Location struct {
	File   string
	Sample int64 // index within File
	Offset int64
	Length int64
}

// Locate returns where sample i is stored.
func (r *Reader) Locate(i int64) (Location, error) {
	s, j, err := r.locate(i)
	if err != nil {
		return Location{}, err
	}
	return Location{File: s.src.Name, Sample: j, Offset: s.offsets[j], Length: s.lengths[j]}, nil
}

// ShardInfo describes one file of the dataset.
type ShardInfo struct {
	Name       string
	Version    Version
	Len        int64 // samples
	Size       int64 // file bytes
	DataBytes  int64 // sum of sample lengths
	Alignment  int64
	HasKeys    bool
	MetaCRC    bool // false for old v1 files without a metadata checksum
	FirstIndex int64
}

// Shards describes the dataset's files in order.
func (r *Reader) Shards() []ShardInfo {
	out := make([]ShardInfo, len(r.shards))
	for k, s := range r.shards {
		out[k] = ShardInfo{
			Name: s.src.Name, Version: s.version, Len: s.n(), Size: s.src.Size, DataBytes: s.totalSize,
			Alignment: s.alignment, HasKeys: s.hasKeys(), MetaCRC: s.metaCRC, FirstIndex: r.starts[k],
		}
	}
	return out
}

// ReadSample reads sample i into dst, which must hold Size(i) bytes, and
// returns the sample's length.
func (r *Reader) ReadSample(ctx context.Context, i int64, dst []byte) (int, error) {
	size, err := r.Size(i)
	if err != nil {
		return 0, err
	}
	if err := r.ReadBatch(ctx, []int64{i}, [][]byte{dst}); err != nil {
		return 0, err
	}
	return int(size), nil
}

// ReadBatch reads samples indices[k] into dsts[k][:Size(indices[k])], all at
// once: the reads are handed to the Batcher in one call (or issued as
// concurrent ReadAt calls), then checksums are verified in parallel. Indices
// may repeat and come in any order. On failure the error joins one *Error per
// failed sample; the other destinations are filled correctly.
func (r *Reader) ReadBatch(ctx context.Context, indices []int64, dsts [][]byte) error {
	if len(indices) != len(dsts) {
		return errors.New("ffrecord: ReadBatch needs one destination per index")
	}
	type item struct {
		s    *shard
		j, i int64
	}
	items := make([]item, len(indices))
	reads := make([]BatchRead, len(indices))
	errs := make([]error, len(indices))
	for k, i := range indices {
		s, j, err := r.locate(i)
		if err != nil {
			return err
		}
		n := s.lengths[j]
		if int64(len(dsts[k])) < n {
			return sampleErr(s.src.Name, j, i, ErrBufferTooSmall, "sample is %d bytes, buffer %d", n, len(dsts[k]))
		}
		items[k] = item{s, j, i}
		reads[k] = BatchRead{Src: s.src.R, Off: s.offsets[j], Buf: dsts[k][:n]}
	}
	if err := r.issue(ctx, reads); err != nil {
		return err
	}
	verify := func(k int) {
		it := items[k]
		if err := reads[k].Err; err != nil {
			errs[k] = &Error{File: it.s.src.Name, Sample: it.j, Index: it.i, Err: err}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				errs[k] = sampleErr(it.s.src.Name, it.j, it.i, ErrTruncated, "sample ends past the end of the file")
			}
			return
		}
		if r.opts.NoVerify {
			return
		}
		got := reads[k].CRC32C
		if !reads[k].Summed || it.s.version == V1 { // v1 samples have IEEE CRC32s
			got = it.s.sampleCRC(reads[k].Buf)
		}
		if want := it.s.crcs[it.j]; got != want {
			errs[k] = sampleErr(it.s.src.Name, it.j, it.i, ErrChecksum, "crc %08x, stored %08x", got, want)
		}
	}
	parallelFor(len(reads), totalLen(reads), verify)
	return errors.Join(errs...)
}

func totalLen(reads []BatchRead) int64 {
	var t int64
	for _, rd := range reads {
		t += int64(len(rd.Buf))
	}
	return t
}

// parallelFor runs f(0..n-1), spread over the CPUs when there are enough bytes
// behind the work to pay for the goroutines (checksums run at GB/s).
func parallelFor(n int, bytes int64, f func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n, int(bytes/(1<<20))+1)
	if workers <= 1 {
		for k := range n {
			f(k)
		}
		return
	}
	var wg sync.WaitGroup
	var next atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(next.Add(1) - 1); k < n; k = int(next.Add(1) - 1) {
				f(k)
			}
		}()
	}
	wg.Wait()
}

// issue performs reads through the Batcher or as bounded concurrent ReadAt calls.
func (r *Reader) issue(ctx context.Context, reads []BatchRead) error {
	if r.opts.Batcher != nil {
		return r.opts.Batcher.ReadBatch(ctx, reads)
	}
	return ReadAtBatch(ctx, reads, r.opts.Concurrency)
}

// ReadAtBatch is the default Batcher's work: concurrent ReadAt calls, at most
// concurrency at a time. Exported for Batchers that fall back to it.
func ReadAtBatch(ctx context.Context, reads []BatchRead, concurrency int) error {
	if len(reads) == 1 {
		rd := &reads[0]
		rd.Err = readAtFull(rd.Src, rd.Buf, rd.Off)
		return ctx.Err()
	}
	sem := make(chan struct{}, max(concurrency, 1))
	var wg sync.WaitGroup
	for k := range reads {
		if err := ctx.Err(); err != nil {
			wg.Wait()
			return err
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rd := &reads[k]
			rd.Err = readAtFull(rd.Src, rd.Buf, rd.Off)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func readAtFull(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
