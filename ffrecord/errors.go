package ffrecord

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package that concerns a file's
// contents is an *Error wrapping one of these, so callers can test the kind
// with errors.Is and get the file and sample with errors.As.
var (
	// ErrTruncated: the file is shorter than its header, index or footer say.
	ErrTruncated = errors.New("file is truncated")
	// ErrBadMagic: a v2 header or footer magic number is wrong.
	ErrBadMagic = errors.New("bad magic number")
	// ErrUnsupportedVersion: a v2-style file with a version this reader does not know.
	ErrUnsupportedVersion = errors.New("unsupported format version")
	// ErrMetaChecksum: the checksum over the header/index/footer does not match.
	ErrMetaChecksum = errors.New("metadata checksum mismatch")
	// ErrBadOffsets: sample offsets or lengths are out of range, overlapping or decreasing.
	ErrBadOffsets = errors.New("sample offsets out of range")
	// ErrChecksum: a sample's bytes do not match its checksum.
	ErrChecksum = errors.New("sample checksum mismatch")
	// ErrIndexRange: a sample index outside [0, Len()).
	ErrIndexRange = errors.New("sample index out of range")
	// ErrBufferTooSmall: a destination buffer is shorter than the sample.
	ErrBufferTooSmall = errors.New("destination buffer too small")
	// ErrCorrupt: other structural damage (bad padding, bad field values).
	ErrCorrupt = errors.New("file is corrupt")
	// ErrWriter: the writer was misused (wrong sample count for v1, write after close).
	ErrWriter = errors.New("invalid writer use")
	// ErrNotFFRecord: the file is not an FFRecord file at all (a text file,
	// another format): it has no v2 magic, and read as v1 its header or
	// index is implausible beyond what damage to an FFRecord file explains.
	// It is an ErrCorrupt too, as such files were reported before.
	ErrNotFFRecord error = notFFRecord{}
)

type notFFRecord struct{}

func (notFFRecord) Error() string { return "not an FFRecord file" }

// Is makes ErrNotFFRecord match ErrCorrupt: callers that sort errors by
// sentinel (libfff/capi's codes, Python's exceptions) keep treating another
// kind of file as a file that cannot be parsed.
func (notFFRecord) Is(target error) bool { return target == ErrCorrupt }

// Error describes a problem with one file, and with one sample where that applies.
type Error struct {
	File   string // file name as given to the reader or writer
	Sample int64  // sample index within File, or -1
	Index  int64  // sample index within the whole dataset, or -1
	Err    error  // one of the sentinel errors above, or an IO error
	Detail string // optional specifics (expected vs. actual values)
}

func (e *Error) Error() string {
	msg := "ffrecord: " + e.File
	if e.Sample >= 0 {
		msg += fmt.Sprintf(": sample %d", e.Sample)
		if e.Index >= 0 && e.Index != e.Sample {
			msg += fmt.Sprintf(" (dataset index %d)", e.Index)
		}
	}
	msg += ": " + e.Err.Error()
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

func fileErr(name string, err error, format string, args ...any) *Error {
	return &Error{File: name, Sample: -1, Index: -1, Err: err, Detail: fmt.Sprintf(format, args...)}
}

func sampleErr(name string, sample, index int64, err error, format string, args ...any) *Error {
	return &Error{File: name, Sample: sample, Index: index, Err: err, Detail: fmt.Sprintf(format, args...)}
}
