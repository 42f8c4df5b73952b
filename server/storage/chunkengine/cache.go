package chunkengine

import (
	"container/list"
	"fff/internal/crc32c"
	"sync"
)

// hashID spreads chunk ids over cache shards and lock stripes (a
// splitmix64-style mix; in memory only, it may change between versions).
func hashID(id ChunkID) uint32 {
	x := id.Ino ^ uint64(id.Index)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return uint32(x)
}

// dirHash picks a chunk's data directory: the CRC32C of its KV key. It is
// part of the on-disk layout and must never change.
func dirHash(id ChunkID) uint32 {
	return crc32c.Checksum(chunkKey(id))
}

const cacheShards = 16

// metaCache is a bounded LRU of chunk records, so the checksums a read
// needs are in memory after the first access (DESIGN §7). It is
// authoritative for the entries it holds: every commit replaces or drops the
// chunk's entry before the writer releases the chunk. An entry may hold a nil
// record: "this chunk does not exist".
//
// A miss is filled from the KV by the reader. To keep a slow filler from
// installing a record older than a concurrent commit, each shard counts its
// changes (seq); a fill only lands if the shard's seq is still the one seen
// before the KV read.
type metaCache struct {
	shards [cacheShards]metaShard
}

type metaShard struct {
	mu    sync.Mutex
	seq   uint64
	m     map[ChunkID]*list.Element
	lru   list.List // of *metaEntry, most recent first
	bytes int64
	max   int64
}

type metaEntry struct {
	id  ChunkID
	rec *record
}

func (c *metaCache) init(maxBytes int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[ChunkID]*list.Element)
		s.max = max(maxBytes/cacheShards, 1)
	}
}

func (c *metaCache) shard(id ChunkID) *metaShard { return &c.shards[hashID(id)%cacheShards] }

// get returns the cached record (nil record = known absent) and ok, or the
// shard's seq to pass to fill on a miss.
func (c *metaCache) get(id ChunkID) (rec *record, ok bool, seq uint64) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, hit := s.m[id]; hit {
		s.lru.MoveToFront(el)
		return el.Value.(*metaEntry).rec, true, 0
	}
	return nil, false, s.seq
}

// fill caches rec (loaded from the KV after get returned seq) unless the
// shard changed meanwhile.
func (c *metaCache) fill(id ChunkID, rec *record, seq uint64) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seq != seq {
		return
	}
	if _, hit := s.m[id]; hit {
		return
	}
	s.insert(id, rec)
}

// put records a commit: rec is the chunk's new state (nil after Remove).
func (c *metaCache) put(id ChunkID, rec *record) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.remove(id)
	s.insert(id, rec)
}

// drop forgets id (after a commit whose outcome is unknown), so the next
// access reads the KV.
func (c *metaCache) drop(id ChunkID) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.remove(id)
}

func (s *metaShard) insert(id ChunkID, rec *record) {
	s.m[id] = s.lru.PushFront(&metaEntry{id: id, rec: rec})
	s.bytes += rec.sizeBytes()
	for s.bytes > s.max && s.lru.Len() > 1 {
		s.remove(s.lru.Back().Value.(*metaEntry).id)
	}
}

func (s *metaShard) remove(id ChunkID) {
	if el, hit := s.m[id]; hit {
		s.bytes -= el.Value.(*metaEntry).rec.sizeBytes()
		s.lru.Remove(el)
		delete(s.m, id)
	}
}
