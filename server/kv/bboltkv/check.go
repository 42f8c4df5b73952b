package bboltkv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// ErrCorrupt is returned (wrapped, with the file's path and the reason)
// when a database file is damaged or is not a bbolt file at all: Open
// refuses it before bbolt maps it, and reads that hit a damaged page fail
// with it instead of crashing the process.
var ErrCorrupt = errors.New("bboltkv: damaged database file")

// What to do, appended to every pre-open refusal. The command is fffd's,
// which is the only program that opens these files.
const corruptAdvice = "stop using it: `fffd check DATA` reports what is readable, `fffd check --salvage OUT DATA` copies it out (docs/operations.md, \"Damaged data directory\")"

// The on-disk layout of a bbolt meta page (go.etcd.io/bbolt
// internal/common/page.go and meta.go, format version 2, little-endian on
// the platforms fff runs on): a 16-byte page header (id u64, flags u16,
// count u16, overflow u32) and then magic u32, version u32, pageSize u32,
// flags u32, root bucket {root pgid u64, sequence u64}, freelist pgid u64,
// high-water pgid u64, txid u64, checksum u64 (FNV-64a of the meta's
// bytes before it).
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	pageHeaderSize = 16
	metaSize       = 64
	metaSumOffset  = 56
	noFreelist     = ^uint64(0)
	minPageSize    = 1 << 10
	maxPageSize    = 1 << 24
	minPages       = 4 // two meta pages, a freelist and a root leaf (bbolt init)
)

// metaPage is one decoded meta page.
type metaPage struct {
	pageSize uint32
	root     uint64
	freelist uint64
	pgid     uint64
	txid     uint64
}

// decodeMeta decodes and validates the meta page at the start of b, as
// bbolt's Meta.Validate does.
func decodeMeta(b []byte) (metaPage, error) {
	if len(b) < pageHeaderSize+metaSize {
		return metaPage{}, errors.New("short page")
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return metaPage{}, errors.New("no bbolt magic number")
	}
	if v := le.Uint32(m[4:]); v != boltVersion {
		return metaPage{}, fmt.Errorf("bbolt format version %d, want %d", v, boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:metaSumOffset])
	if h.Sum64() != le.Uint64(m[metaSumOffset:]) {
		return metaPage{}, errors.New("checksum mismatch")
	}
	return metaPage{
		pageSize: le.Uint32(m[8:]),
		root:     le.Uint64(m[16:]),
		freelist: le.Uint64(m[32:]),
		pgid:     le.Uint64(m[40:]),
		txid:     le.Uint64(m[48:]),
	}, nil
}

// Header is what CheckFile learned from a database file's meta pages.
type Header struct {
	Size     int64
	PageSize int
	// MetaErr[i] is why meta page i is invalid, nil if it is valid. bbolt
	// survives one invalid meta page (a torn write at a crash) by using
	// the other, at the price of the last transaction if the invalid one
	// was the newer.
	MetaErr [2]error
	TxID    uint64 // of the meta page bbolt will use
	Pages   uint64 // high-water mark of that meta page
}

// CheckFile validates the header of the bbolt file at path without
// mapping it: size, both meta pages (magic, version, checksum) and the
// page ids they hold. A missing or empty file is fine (bbolt creates it).
// A damaged file fails with an error wrapping ErrCorrupt that names it;
// other failures (permissions, I/O) are returned as they are.
//
// bbolt maps the file and trusts its meta page: a file shorter than the
// pages it claims faults (SIGBUS) when they are read, and garbage page ids
// make it panic. This check catches those before Open hands the file to
// bbolt. Damage inside the tree is found by bbolt's tx.Check (fffd check)
// or by the reads that hit it (see guard).
func CheckFile(path string) (Header, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return Header{}, nil
	}
	if err != nil {
		return Header{}, fmt.Errorf("bboltkv: check %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Header{}, fmt.Errorf("bboltkv: check %s: %w", path, err)
	}
	h, reason, err := checkHeader(f, st.Size())
	if err != nil {
		return h, fmt.Errorf("bboltkv: check %s: %w", path, err)
	}
	if reason != "" {
		return h, fmt.Errorf("%w: %s: %s; %s", ErrCorrupt, path, reason, corruptAdvice)
	}
	return h, nil
}

// checkHeader does CheckFile's work on r of the given size: a non-empty
// reason says why the file is damaged, err is an I/O error.
func checkHeader(r io.ReaderAt, size int64) (h Header, reason string, err error) {
	h.Size = size
	if size == 0 {
		return h, "", nil
	}
	page := make([]byte, pageHeaderSize+metaSize)
	read := func(off int64) (bool, error) {
		n, err := r.ReadAt(page, off)
		if n == len(page) {
			return true, nil
		}
		if err == io.EOF || err == nil {
			return false, nil
		}
		return false, err
	}
	var metas [2]metaPage
	var ok [2]bool
	// Meta page 0 is at offset 0 and says the page size; if it is invalid,
	// look for meta page 1 at each page size bbolt supports, as bbolt does.
	if got, err := read(0); err != nil {
		return h, "", err
	} else if !got {
		h.MetaErr[0] = errors.New("short page")
	} else {
		metas[0], h.MetaErr[0] = decodeMeta(page)
		ok[0] = h.MetaErr[0] == nil
	}
	if ok[0] {
		h.PageSize = int(metas[0].pageSize)
	}
	h.MetaErr[1] = errors.New("not found at any page size")
	for ps := int64(minPageSize); ps <= maxPageSize; ps <<= 1 {
		if h.PageSize != 0 && ps != int64(h.PageSize) {
			continue
		}
		got, err := read(ps)
		if err != nil {
			return h, "", err
		}
		if !got {
			if h.PageSize != 0 {
				h.MetaErr[1] = errors.New("short page")
			}
			break
		}
		m, merr := decodeMeta(page)
		if merr == nil && int64(m.pageSize) != ps {
			merr = fmt.Errorf("page size %d, found at offset %d", m.pageSize, ps)
		}
		if merr == nil {
			metas[1], ok[1], h.MetaErr[1] = m, true, nil
			h.PageSize = int(ps)
			break
		}
		if h.PageSize != 0 {
			h.MetaErr[1] = merr
		}
	}
	if !ok[0] && !ok[1] {
		return h, fmt.Sprintf("no valid bbolt meta page (page 0: %v; page 1: %v): not a bbolt database, or both headers are damaged", h.MetaErr[0], h.MetaErr[1]), nil
	}
	ps := int64(h.PageSize)
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return h, fmt.Sprintf("invalid page size %d", ps), nil
	}
	if ok[0] && ok[1] && metas[0].pageSize != metas[1].pageSize {
		return h, fmt.Sprintf("meta pages disagree on the page size (%d, %d)", metas[0].pageSize, metas[1].pageSize), nil
	}
	if size%ps != 0 {
		return h, fmt.Sprintf("size %d is not a multiple of the page size %d (truncated?)", size, ps), nil
	}
	if size < minPages*ps {
		return h, fmt.Sprintf("size %d is less than %d pages of %d bytes (truncated?)", size, minPages, ps), nil
	}
	pages := uint64(size / ps)
	for i := range metas {
		if !ok[i] {
			continue
		}
		m := metas[i]
		switch {
		case m.pgid < minPages || m.pgid > pages:
			return h, fmt.Sprintf("meta page %d claims %d pages, the file holds %d (truncated?)", i, m.pgid, pages), nil
		case m.root < 2 || m.root >= m.pgid:
			return h, fmt.Sprintf("meta page %d: root page %d outside [2, %d)", i, m.root, m.pgid), nil
		case m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid):
			return h, fmt.Sprintf("meta page %d: freelist page %d outside [2, %d)", i, m.freelist, m.pgid), nil
		}
	}
	use := 0
	if !ok[0] || (ok[1] && metas[1].txid > metas[0].txid) {
		use = 1
	}
	h.TxID, h.Pages = metas[use].txid, metas[use].pgid
	return h, "", nil
}

// guard turns a panic or memory fault (SIGBUS from a mapped page beyond a
// truncated file's end) during a bbolt access into an error wrapping
// ErrCorrupt, so that a damaged page fails the operations that read it
// instead of the process. Use as
//
//	defer guard(&err, debug.SetPanicOnFault(true))
//
// in a function whose named result is err. Only bbolt code and fff's own
// copying callbacks run under it, never a transaction body, so a body's
// own panics keep reaching its caller.
func guard(err *error, oldFault bool) {
	debug.SetPanicOnFault(oldFault)
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: bbolt failed reading a page: %v", ErrCorrupt, r)
	}
}

// openBolt is bolt.Open with its panics (bbolt panics on some damaged
// pages while opening) turned into errors wrapping ErrCorrupt.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer guard(&err, debug.SetPanicOnFault(true))
	return bolt.Open(path, 0o600, o)
}

// guardedUpdate is b.Update with bbolt's panics turned into errors.
func guardedUpdate(b *bolt.DB, fn func(*bolt.Tx) error) (err error) {
	defer guard(&err, debug.SetPanicOnFault(true))
	return b.Update(fn)
}

// openErr wraps an error of bolt.Open, marking the ones that mean a
// damaged or foreign file as ErrCorrupt.
func openErr(path string, err error) error {
	switch {
	case errors.Is(err, ErrCorrupt):
		return fmt.Errorf("bboltkv: open %s: %w; %s", path, err, corruptAdvice)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return fmt.Errorf("%w: %s: %w; %s", ErrCorrupt, path, err, corruptAdvice)
	}
	return fmt.Errorf("bboltkv: open %s: %w", path, err)
}
