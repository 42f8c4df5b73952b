package ffrecord

import (
	"bufio"
	"context"
	"errors"
	"fff/internal/crc32c"
	"hash/crc32"
	"io"
	"sync"
)

// VerifyOptions configure Reader.Verify.
type VerifyOptions struct {
	// Progress, if set, is called with the number of bytes just checked. It may
	// be called from several goroutines at once.
	Progress func(bytes int64)
	// Parallel is how many files are checked at once (default 4).
	Parallel int
	// MaxErrors stops collecting after this many problems (default 100).
	MaxErrors int
}

// Verify reads every byte of every file's sample area sequentially and checks
// each sample's checksum, that alignment padding is zero (v2), and the keys
// section (v2). Metadata was already checked by Open. It returns nil when the
// dataset is intact, or the joined *Errors (each naming file and sample).
func (r *Reader) Verify(ctx context.Context, opts VerifyOptions) error {
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.MaxErrors <= 0 {
		opts.MaxErrors = 100
	}
	progress := opts.Progress
	if progress == nil {
		progress = func(int64) {}
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, opts.Parallel)
	)
	report := func(err error) bool {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < opts.MaxErrors {
			errs = append(errs, err)
		}
		return len(errs) < opts.MaxErrors
	}
	for k, s := range r.shards {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.verify(ctx, r.starts[k], progress, report); err != nil {
				report(err)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// verify streams the shard's data area. report returns false to stop early.
func (s *shard) verify(ctx context.Context, first int64, progress func(int64), report func(error) bool) error {
	name := s.src.Name
	sec := io.NewSectionReader(s.src.R, s.dataStart, s.dataEnd-s.dataStart)
	// Buffers no bigger than the data area: a dataset of many small files
	// should not cost 9 MiB of allocation per file.
	area := s.dataEnd - s.dataStart
	br := bufio.NewReaderSize(sec, int(min(8<<20, max(area, 16))))
	scratch := make([]byte, min(1<<20, max(area, 1)))
	pos := s.dataStart
	// consume reads n bytes, passing each piece to f.
	consume := func(n int64, f func([]byte)) error {
		for n > 0 {
			c := scratch[:min(n, int64(len(scratch)))]
			if _, err := io.ReadFull(br, c); err != nil {
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					return fileErr(name, ErrTruncated, "data area ends early at offset %d", pos)
				}
				return &Error{File: name, Sample: -1, Index: -1, Err: err}
			}
			f(c)
			pos += int64(len(c))
			n -= int64(len(c))
			progress(int64(len(c)))
		}
		return ctx.Err()
	}
	checkGap := func(end int64) error {
		if end <= pos {
			return nil
		}
		start, nonzero := pos, false
		if err := consume(end-pos, func(b []byte) {
			for _, c := range b {
				if c != 0 {
					nonzero = true
					return
				}
			}
		}); err != nil {
			return err
		}
		if nonzero && s.version == V2 {
			if !report(fileErr(name, ErrCorrupt, "padding bytes in [%d, %d) are not zero", start, end)) {
				return errStop
			}
		}
		return nil
	}
	for j := range s.n() {
		if err := checkGap(s.offsets[j]); err != nil {
			return stopped(err)
		}
		var crc uint32
		update := func(b []byte) { crc = updateCRC(s.version, crc, b) }
		if err := consume(s.lengths[j], update); err != nil {
			return stopped(err)
		}
		if crc != s.crcs[j] {
			if !report(sampleErr(name, j, first+j, ErrChecksum, "crc %08x, stored %08x", crc, s.crcs[j])) {
				return nil
			}
		}
	}
	if err := checkGap(s.dataEnd); err != nil {
		return stopped(err)
	}
	if s.hasKeys() {
		return s.loadKeys()
	}
	return nil
}

var errStop = errors.New("enough errors")

func stopped(err error) error {
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

func updateCRC(v Version, crc uint32, b []byte) uint32 {
	if v == V1 {
		return crc32.Update(crc, crc32.IEEETable, b)
	}
	return crc32c.Update(crc, b)
}
