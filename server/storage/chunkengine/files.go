package chunkengine

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"fff/internal/uring"
	"fff/server/kv"
)

// Data files live under <dir>/data in a two-level fan-out of 256×256
// directories picked by the CRC32C of the chunk's KV key (dirHash), so no
// directory grows large:
//
//	data/<h>>8&0xff as %02x>/<h&0xff as %02x>/<ino %016x>-<index %08x>.<gen %016x>
//
// A file holds the chunk's bytes at their chunk offsets; bytes at or beyond
// the committed length are garbage that no read trusts.
const dataDirName = "data"

// Chunk data is readable by the user running the server (and root) only:
// local readers on the same host are that user's processes (libfff's
// local reads open the files directly when they may). Files get fileMode at
// creation; directories get dirMode at creation, and Open narrows the
// target directory and every fan-out directory it walks (collectOrphans)
// that an older version or an operator left wider. Files are not chmod'ed
// at Open: a private directory already keeps everyone else out of them, and
// a stat per file would add to every start of a big target.
const (
	fileMode fs.FileMode = 0o600
	dirMode  fs.FileMode = 0o700
)

// privateDir narrows dir to dirMode if it grants group or others anything.
// Below the target directory it refuses a symlink (follow false): the
// engine's own directories must stay inside the target. The target itself
// may be a symlink an operator made to another disk.
func privateDir(dir string, follow bool) error {
	stat := os.Lstat
	if follow {
		stat = os.Stat
	}
	st, err := stat(dir)
	if err != nil {
		return fmt.Errorf("chunkengine: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("chunkengine: %s is not a directory (%s)", dir, st.Mode().Type())
	}
	if st.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, dirMode); err != nil {
		return fmt.Errorf("chunkengine: making %s private: %w", dir, err)
	}
	return nil
}

// The names are built by hand, not with fmt and filepath.Join: Locate
// answers with a path per IO, and formatting them was a visible share of the
// node's CPU under a data loader.

func (e *Engine) fileDir(id ChunkID) string { return string(e.appendDir(nil, id)) }

func fileName(id ChunkID, gen uint64) string { return string(appendName(nil, id, gen)) }

func (e *Engine) filePath(id ChunkID, gen uint64) string {
	b := make([]byte, 0, len(e.dataDir)+len("/ab/cd/")+16+1+8+1+16)
	b = append(e.appendDir(b, id), '/')
	return string(appendName(b, id, gen))
}

// appendDir appends id's fan-out directory (e.dataDir is clean).
func (e *Engine) appendDir(b []byte, id ChunkID) []byte {
	h := dirHash(id)
	b = append(append(b, e.dataDir...), '/')
	b = append(appendHex(b, uint64(byte(h>>8)), 2), '/')
	return appendHex(b, uint64(byte(h)), 2)
}

func appendName(b []byte, id ChunkID, gen uint64) []byte {
	b = append(appendHex(b, id.Ino, 16), '-')
	b = append(appendHex(b, uint64(id.Index), 8), '.')
	return appendHex(b, gen, 16)
}

// appendHex appends v as width lower-case hex digits (v < 16^width).
func appendHex(b []byte, v uint64, width int) []byte {
	const digits = "0123456789abcdef"
	for i := width - 1; i >= 0; i-- {
		b = append(b, digits[v>>(4*uint(i))&0xf])
	}
	return b
}

// parseFileName is the inverse of fileName.
func parseFileName(name string) (ChunkID, uint64, bool) {
	if len(name) != 16+1+8+1+16 || name[16] != '-' || name[25] != '.' {
		return ChunkID{}, 0, false
	}
	ino, err1 := strconv.ParseUint(name[:16], 16, 64)
	idx, err2 := strconv.ParseUint(name[17:25], 16, 32)
	gen, err3 := strconv.ParseUint(name[26:], 16, 64)
	if err1 != nil || err2 != nil || err3 != nil || gen == 0 {
		return ChunkID{}, 0, false
	}
	return ChunkID{Ino: ino, Index: uint32(idx)}, gen, true
}

// ensureDir creates id's fan-out directories if needed and makes their
// entries durable (fsync of each parent), once per directory per process.
func (e *Engine) ensureDir(id ChunkID) (string, error) {
	leaf := e.fileDir(id)
	if _, ok := e.dirs.Load(leaf); ok {
		return leaf, nil
	}
	mid := filepath.Dir(leaf)
	for _, d := range []string{mid, leaf} {
		if _, ok := e.dirs.Load(d); ok {
			continue // made durable before (a young target's 256 ab/ directories, once each)
		}
		if err := os.Mkdir(d, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("chunkengine: %w", err)
		}
		// Also after EEXIST: another goroutine may have made it and not yet
		// synced its parent.
		if err := syncDir(filepath.Dir(d)); err != nil {
			return "", err
		}
		e.dirs.Store(d, struct{}{})
	}
	return leaf, nil
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("chunkengine: open dir %s: %w", dir, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("chunkengine: fsync dir %s: %w", dir, err)
	}
	return nil
}

// createFile creates the (new, empty) data file of id's generation gen and
// opens it. The caller fsyncs the file and then the directory (syncDir)
// before committing a record that names it.
func (e *Engine) createFile(id ChunkID, gen uint64) (*handle, string, error) {
	dir, err := e.ensureDir(id)
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(dir, fileName(id, gen))
	fd, err := unix.Open(path, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, uint32(fileMode))
	if err != nil {
		return nil, "", fmt.Errorf("chunkengine: create %s: %w", path, err)
	}
	unix.Close(fd)
	f, err := uring.Open(path, e.ring, uring.Options{Write: true, NoDirect: e.noDirect})
	if err != nil {
		os.Remove(path)
		return nil, "", fmt.Errorf("chunkengine: %w", err)
	}
	return &handle{id: id, gen: gen, f: f, refs: 1}, dir, nil
}

// removeFile unlinks a data file that no committed record names any more.
// Readers that opened it keep reading it through their descriptor.
func (e *Engine) removeFile(id ChunkID, gen uint64) {
	if gen == 0 {
		return
	}
	path := e.filePath(id, gen)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.log.Warn().Err(err).Str("file", path).Msg("chunkengine: cannot remove replaced data file; it is removed at the next start")
	}
}

// fileCache keeps data files open: a bounded LRU of handles, one per chunk,
// each for the generation the chunk's committed record names (or a newer
// one). Handles are reference counted: a handle that leaves the cache
// (evicted, or replaced by a newer generation) is closed when its last user
// releases it, so a reader holding a snapshot of an older generation keeps
// reading that generation's file even after it was unlinked.
type fileCache struct {
	shards [cacheShards]fileShard
}

type fileShard struct {
	mu  sync.Mutex
	m   map[ChunkID]*handle
	lru list.List // of *handle, most recent first
	max int
}

type handle struct {
	id   ChunkID
	gen  uint64
	f    *uring.File
	refs int  // guarded by the shard's mu
	in   bool // in the shard's map
	el   *list.Element
}

func (c *fileCache) init(maxOpen int) {
	for i := range c.shards {
		c.shards[i].m = make(map[ChunkID]*handle)
		c.shards[i].max = max(maxOpen/cacheShards, 1)
	}
}

func (c *fileCache) shard(id ChunkID) *fileShard { return &c.shards[hashID(id)%cacheShards] }

// acquire returns a referenced handle on id's data file of generation gen,
// opening it if needed. A missing file is an error wrapping fs.ErrNotExist.
func (e *Engine) acquire(id ChunkID, gen uint64) (*handle, error) {
	s := e.files.shard(id)
	s.mu.Lock()
	if h := s.m[id]; h != nil && h.gen == gen {
		h.refs++
		s.lru.MoveToFront(h.el)
		s.mu.Unlock()
		return h, nil
	}
	s.mu.Unlock()
	path := e.filePath(id, gen)
	f, err := uring.Open(path, e.ring, uring.Options{Write: true, NoDirect: e.noDirect})
	if err != nil {
		return nil, fmt.Errorf("chunkengine: chunk %v: %w", id, err)
	}
	h := &handle{id: id, gen: gen, f: f, refs: 1}
	s.mu.Lock()
	if old := s.m[id]; old != nil && old.gen == gen {
		old.refs++ // lost a race to open it
		s.lru.MoveToFront(old.el)
		s.mu.Unlock()
		f.Close()
		return old, nil
	}
	closing := s.install(h)
	s.mu.Unlock()
	closeAll(closing)
	return h, nil
}

// install caches h unless a newer generation is cached already, evicting
// what it must; it returns handles to close. s.mu held.
func (s *fileShard) install(h *handle) []*handle {
	var closing []*handle
	if old := s.m[h.id]; old != nil {
		if old.gen > h.gen {
			return nil // h is a stale generation: used once and closed on release
		}
		closing = s.uncache(old, closing)
	}
	h.in = true
	h.el = s.lru.PushFront(h)
	s.m[h.id] = h
	for len(s.m) > s.max {
		closing = s.uncache(s.lru.Back().Value.(*handle), closing)
	}
	return closing
}

func (s *fileShard) uncache(h *handle, closing []*handle) []*handle {
	if !h.in {
		return closing
	}
	h.in = false
	s.lru.Remove(h.el)
	delete(s.m, h.id)
	if h.refs == 0 {
		closing = append(closing, h)
	}
	return closing
}

func closeAll(hs []*handle) {
	for _, h := range hs {
		h.f.Close()
	}
}

// adopt caches a handle the caller created (and holds a reference on) for
// a generation it just committed.
func (e *Engine) adopt(h *handle) {
	s := e.files.shard(h.id)
	s.mu.Lock()
	closing := s.install(h)
	s.mu.Unlock()
	closeAll(closing)
}

// release drops a reference taken by acquire or createFile.
func (e *Engine) release(h *handle) {
	if h == nil {
		return
	}
	s := e.files.shard(h.id)
	s.mu.Lock()
	h.refs--
	closeNow := h.refs == 0 && !h.in
	s.mu.Unlock()
	if closeNow {
		h.f.Close()
	}
}

// retire uncaches id's handle of generation gen (replaced or removed), so
// it is closed once unused.
func (e *Engine) retire(id ChunkID, gen uint64) {
	s := e.files.shard(id)
	s.mu.Lock()
	var closing []*handle
	if h := s.m[id]; h != nil && h.gen == gen {
		closing = s.uncache(h, nil)
	}
	s.mu.Unlock()
	closeAll(closing)
}

// closeFiles closes every cached handle (Close, when no IO is running).
func (e *Engine) closeFiles() {
	for i := range e.files.shards {
		s := &e.files.shards[i]
		s.mu.Lock()
		var closing []*handle
		for _, h := range s.m {
			closing = s.uncache(h, closing)
		}
		s.mu.Unlock()
		closeAll(closing)
	}
}

// collectOrphans removes data files that no committed record names: the
// new file of a copy-on-write write that crashed before its commit, the old
// file of one that crashed between commit and unlink, the file of a chunk
// whose record was removed. It runs in Open, before any IO.
func (e *Engine) collectOrphans(ctx context.Context) (removed int, err error) {
	type cand struct {
		path string
		id   ChunkID
		gen  uint64
	}
	var batch []cand
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		var keep []bool
		err := e.db.View(ctx, func(tx kv.ReadTxn) error {
			keep = make([]bool, len(batch))
			for i, c := range batch {
				v, err := tx.Get(chunkKey(c.id))
				if err != nil {
					return err
				}
				if v == nil {
					continue
				}
				rec, err := decodeRecord(v)
				// A damaged record might name this file: keep it.
				keep[i] = err != nil || rec.gen == c.gen
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("chunkengine: orphan scan: %w", err)
		}
		for i, c := range batch {
			if keep[i] {
				continue
			}
			if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("chunkengine: remove orphan: %w", err)
			}
			removed++
		}
		batch = batch[:0]
		return nil
	}
	tops, err := os.ReadDir(e.dataDir)
	if err != nil {
		return 0, fmt.Errorf("chunkengine: %w", err)
	}
	for _, top := range tops {
		if !top.IsDir() || !isHexByte(top.Name()) {
			continue
		}
		if err := privateDir(filepath.Join(e.dataDir, top.Name()), false); err != nil {
			return removed, err
		}
		mids, err := os.ReadDir(filepath.Join(e.dataDir, top.Name()))
		if err != nil {
			return removed, fmt.Errorf("chunkengine: %w", err)
		}
		for _, mid := range mids {
			if !mid.IsDir() || !isHexByte(mid.Name()) {
				continue
			}
			dir := filepath.Join(e.dataDir, top.Name(), mid.Name())
			if err := privateDir(dir, false); err != nil {
				return removed, err
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				return removed, fmt.Errorf("chunkengine: %w", err)
			}
			for _, ent := range ents {
				id, gen, ok := parseFileName(ent.Name())
				if !ok || !ent.Type().IsRegular() {
					continue
				}
				batch = append(batch, cand{path: filepath.Join(dir, ent.Name()), id: id, gen: gen})
				if len(batch) >= 1024 {
					if err := flush(); err != nil {
						return removed, err
					}
				}
			}
		}
	}
	return removed, flush()
}

func isHexByte(s string) bool {
	return len(s) == 2 && strings.Trim(s, "0123456789abcdef") == ""
}

// removeAllFiles removes every data file of id whatever its generation
// (Remove of a chunk whose record is damaged).
func (e *Engine) removeAllFiles(id ChunkID) { e.removeFilesExcept(id, 0) }

// removeFilesExcept removes every data file of id but generation keep (0:
// none kept).
func (e *Engine) removeFilesExcept(id ChunkID, keep uint64) {
	dir := e.fileDir(id)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, ent := range ents {
		if fid, gen, ok := parseFileName(ent.Name()); ok && fid == id && gen != keep {
			e.retire(id, gen)
			e.removeFile(id, gen)
		}
	}
}
