package ffrecord

import (
	"fff/internal/crc32c"
	"fmt"
	"hash/crc32"
	"io"
	"math"
)

// WriterOptions configure a Writer. The zero value writes v2 without alignment.
type WriterOptions struct {
	// Format is V1 or V2 (default V2).
	Format Version
	// Count is the number of samples a v1 file will hold; v1 needs it up front
	// because its index precedes the samples. Ignored for v2.
	Count int64
	// Alignment (v2 only) starts every non-empty sample at a multiple of this
	// many bytes, a power of two up to MaxAlignment; 4096 lets O_DIRECT readers
	// read samples straight into aligned buffers. 0 or 1 means none.
	Alignment int64
	// Name labels the file in error messages.
	Name string
	// BufferSize is the write-behind buffer (default 4 MiB).
	BufferSize int
}

// Writer writes one FFRecord file through an io.WriterAt (a local file or a
// file in fff). Samples are buffered and written sequentially; the index is
// written by Close. A Writer is not safe for concurrent use.
type Writer struct {
	w      io.WriterAt
	opts   WriterOptions
	buf    []byte
	bufOff int64 // file offset of buf[0]
	pos    int64 // next free file offset
	closed bool
	err    error // sticky write error

	offsets []int64
	lengths []int64
	crcs    []uint32
	keyBlob []byte
	keyEnds []int64
	hasKeys bool
}

// NewWriter starts a file. For v1, Count samples must be written before Close.
func NewWriter(w io.WriterAt, opts WriterOptions) (*Writer, error) {
	if opts.Format == 0 {
		opts.Format = V2
	}
	if opts.BufferSize <= 0 {
		opts.BufferSize = 4 << 20
	}
	if opts.Alignment == 0 {
		opts.Alignment = 1
	}
	wr := &Writer{w: w, opts: opts, buf: make([]byte, 0, opts.BufferSize)}
	switch opts.Format {
	case V1:
		// The reserved index (12+12*Count bytes) must fit an int64 offset.
		if opts.Count < 0 || opts.Count > (math.MaxInt64-v1HeaderSize)/12 {
			return nil, fileErr(opts.Name, ErrWriter, "v1 needs a sample count in [0, %d], got %d", (math.MaxInt64-v1HeaderSize)/12, opts.Count)
		}
		if opts.Alignment != 1 {
			return nil, fileErr(opts.Name, ErrWriter, "v1 cannot align samples")
		}
		wr.pos = v1HeaderSize + 12*opts.Count
		wr.bufOff = wr.pos
	case V2:
		if !validAlignment(opts.Alignment) {
			return nil, fileErr(opts.Name, ErrWriter, "alignment %d is not a power of two in [1, %d]", opts.Alignment, MaxAlignment)
		}
		wr.buf = append(wr.buf, v2Header{version: 2, alignment: uint32(opts.Alignment)}.encode()...)
		wr.pos = v2HeaderSize
	default:
		return nil, fileErr(opts.Name, ErrWriter, "unknown format %d", opts.Format)
	}
	return wr, nil
}

// Write appends one sample without a key.
func (w *Writer) Write(sample []byte) error { return w.WriteKeyed("", sample) }

// WriteKeyed appends one sample with a key (e.g. its original relative path).
// v1 has nowhere to store keys, so they are dropped there.
func (w *Writer) WriteKeyed(key string, sample []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fileErr(w.opts.Name, ErrWriter, "write after close")
	}
	n := int64(len(w.offsets))
	var crc uint32
	if w.opts.Format == V1 {
		if n >= w.opts.Count {
			return fileErr(w.opts.Name, ErrWriter, "v1 file was sized for %d samples", w.opts.Count)
		}
		crc = crc32.ChecksumIEEE(sample)
	} else {
		crc = crc32c.Checksum(sample)
		if len(sample) > 0 {
			if pad := alignUp(w.pos, w.opts.Alignment) - w.pos; pad > 0 {
				if err := w.writeZeros(pad); err != nil {
					return err
				}
			}
		}
		if key != "" {
			w.hasKeys = true
		}
		w.keyBlob = append(w.keyBlob, key...)
		w.keyEnds = append(w.keyEnds, int64(len(w.keyBlob)))
	}
	w.offsets = append(w.offsets, w.pos)
	w.lengths = append(w.lengths, int64(len(sample)))
	w.crcs = append(w.crcs, crc)
	return w.append(sample)
}

// WriteFrom appends one sample of exactly n bytes read from r, without
// holding it in memory: for samples too large to buffer whole. If r ends
// early or fails, the file is unusable and every later call returns the error.
func (w *Writer) WriteFrom(key string, r io.Reader, n int64) error {
	if n <= int64(cap(w.buf)) {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			w.err = fileErr(w.opts.Name, ErrWriter, "sample %d: reading its %d bytes: %v", len(w.offsets), n, err)
			return w.err
		}
		return w.WriteKeyed(key, b)
	}
	// Reserve the slot with an empty sample, then stream the bytes after it and
	// patch in the length and checksum.
	if err := w.WriteKeyed(key, nil); err != nil {
		return err
	}
	i := len(w.offsets) - 1
	if w.opts.Format == V2 {
		if pad := alignUp(w.pos, w.opts.Alignment) - w.pos; pad > 0 {
			if err := w.writeZeros(pad); err != nil {
				return err
			}
		}
		w.offsets[i] = w.pos
	}
	var crc uint32
	chunk := make([]byte, min(n, 1<<20))
	for left := n; left > 0; {
		c := chunk[:min(left, int64(len(chunk)))]
		if _, err := io.ReadFull(r, c); err != nil {
			w.err = fileErr(w.opts.Name, ErrWriter, "sample %d: reading its %d bytes: %v", i, n, err)
			return w.err
		}
		crc = updateCRC(w.opts.Format, crc, c)
		if err := w.append(c); err != nil {
			return err
		}
		left -= int64(len(c))
	}
	w.lengths[i], w.crcs[i] = n, crc
	return nil
}

// Count is the number of samples written so far.
func (w *Writer) Count() int64 { return int64(len(w.offsets)) }

// Offset is the number of bytes the file holds so far (v1: including the reserved index).
func (w *Writer) Offset() int64 { return w.pos }

func (w *Writer) writeZeros(n int64) error {
	var zeros [4096]byte
	for n > 0 {
		c := min(n, int64(len(zeros)))
		if err := w.append(zeros[:c]); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

// append buffers b, flushing full buffers; large samples bypass the buffer.
func (w *Writer) append(b []byte) error {
	if len(w.buf)+len(b) > cap(w.buf) {
		if err := w.flush(); err != nil {
			return err
		}
		if len(b) >= cap(w.buf) {
			if err := w.writeAt(b, w.pos); err != nil {
				return err
			}
			w.pos += int64(len(b))
			w.bufOff = w.pos
			return nil
		}
	}
	w.buf = append(w.buf, b...)
	w.pos += int64(len(b))
	return nil
}

func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if err := w.writeAt(w.buf, w.bufOff); err != nil {
		return err
	}
	w.bufOff += int64(len(w.buf))
	w.buf = w.buf[:0]
	return nil
}

func (w *Writer) writeAt(b []byte, off int64) error {
	if _, err := w.w.WriteAt(b, off); err != nil {
		w.err = &Error{File: w.opts.Name, Sample: -1, Index: -1, Err: err, Detail: fmt.Sprintf("writing %d bytes at offset %d", len(b), off)}
		return w.err
	}
	return nil
}

// Close writes the index (v1: the header in front; v2: index, keys and footer
// at the end) and flushes. It does not close the underlying writer or sync it.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	n := int64(len(w.offsets))
	if w.opts.Format == V1 {
		if n != w.opts.Count {
			w.err = fileErr(w.opts.Name, ErrWriter, "v1 file was sized for %d samples, %d written", w.opts.Count, n)
			return w.err
		}
		if err := w.flush(); err != nil {
			return err
		}
		meta := make([]byte, v1HeaderSize+12*n)
		le.PutUint64(meta[4:], uint64(n))
		for i := range n {
			le.PutUint32(meta[12+4*i:], w.crcs[i])
			le.PutUint64(meta[12+4*n+8*i:], uint64(w.offsets[i]))
		}
		le.PutUint32(meta, crc32.ChecksumIEEE(meta[4:]))
		return w.writeAt(meta, 0)
	}
	indexOffset := w.pos
	idx := make([]byte, n*v2EntrySize)
	for i := range n {
		e := idx[i*v2EntrySize:]
		le.PutUint64(e[0:], uint64(w.offsets[i]))
		le.PutUint64(e[8:], uint64(w.lengths[i]))
		le.PutUint32(e[16:], w.crcs[i])
	}
	f := v2Footer{n: uint64(n), indexOffset: uint64(indexOffset), indexCRC: crc32c.Checksum(idx), version: 2}
	if err := w.append(idx); err != nil {
		return err
	}
	if w.hasKeys {
		keys := make([]byte, 8*n, 8*n+int64(len(w.keyBlob)))
		for i, e := range w.keyEnds {
			le.PutUint64(keys[8*i:], uint64(e))
		}
		keys = append(keys, w.keyBlob...)
		f.flags |= flagKeys
		f.keysOffset, f.keysLength, f.keysCRC = uint64(w.pos), uint64(len(keys)), crc32c.Checksum(keys)
		if err := w.append(keys); err != nil {
			return err
		}
	}
	if err := w.append(f.encode()); err != nil {
		return err
	}
	return w.flush()
}
