package meta

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
	"fff/server/kv"
)

// Key schema. Every key starts with one byte naming its record kind; ids are
// big-endian uint64 so that keys of one kind sort by id. Values are msgpack
// unless noted.
//
//	I<ino>                  proto.Inode
//	D<parent ino><name>     dentry{ino, type}
//	S<ino><session id>      session{uid, truncver, created, updated, anon}
//	G<ino><seq>             proto.GCRecord (seq: the truncate version for
//	                        truncates, MaxUint64 for the delete)
//	C"ino"                  next unallocated inode id (8 bytes, big-endian)
//	C"n"<shard>             inodes in use, 64 shards by ino%64 (8 bytes, big-endian two's complement)
//	U<name>                 userRec (the SHA-256 of the token, never the token)
//	T<sha256(token)>        user name (raw bytes)
//	T<lookup id>            user name (raw bytes); 16 bytes: rpc.StoredKey.LookupID of the hash
//	M"version"              schema version (8 bytes, big-endian)
//	M"links"                while Init records file links (schema 1 to 2):
//	                        the entry key the migration goes on from
const (
	pInode   = 'I'
	pDentry  = 'D'
	pSession = 'S'
	pGC      = 'G'
	pCounter = 'C'
	pUser    = 'U'
	pToken   = 'T'
	pMeta    = 'M'
)

// countShards is the number of shards of the inode counter. Creates of
// different inodes touch different shards with probability 63/64, so on
// FoundationDB they rarely conflict on it.
const countShards = 64

var (
	keyNextIno = []byte("Cino")
	keyVersion = []byte("Mversion")
	// keyLinksProgress is the migration of Links's progress (reach.go).
	keyLinksProgress = []byte("Mlinks")
	prefixCnt        = []byte("Cn")
)

// schemaVersion is written by Init. 2: files and symlinks record the
// directories holding their names (Inode.Links); Init migrates a version 1
// namespace, and a build that knows only version 1 refuses to run on it.
const schemaVersion = 2

func idKey(p byte, id uint64) []byte {
	k := make([]byte, 9)
	k[0] = p
	binary.BigEndian.PutUint64(k[1:], id)
	return k
}

func id2Key(p byte, a, b uint64) []byte {
	k := make([]byte, 17)
	k[0] = p
	binary.BigEndian.PutUint64(k[1:], a)
	binary.BigEndian.PutUint64(k[9:], b)
	return k
}

func inodeKey(ino uint64) []byte { return idKey(pInode, ino) }

func dentryPrefix(parent uint64) []byte { return idKey(pDentry, parent) }

func dentryKey(parent uint64, name string) []byte {
	k := make([]byte, 9+len(name))
	k[0] = pDentry
	binary.BigEndian.PutUint64(k[1:], parent)
	copy(k[9:], name)
	return k
}

func sessionPrefix(ino uint64) []byte   { return idKey(pSession, ino) }
func sessionKey(ino, sid uint64) []byte { return id2Key(pSession, ino, sid) }
func gcKey(ino, seq uint64) []byte      { return id2Key(pGC, ino, seq) }
func userKey(name string) []byte        { return append([]byte{pUser}, name...) }
func tokenKey(sum []byte) []byte        { return append([]byte{pToken}, sum...) }
func countKey(ino uint64) []byte {
	return append(append([]byte(nil), prefixCnt...), byte(ino%countShards))
}
func prefixRange(p []byte) ([]byte, []byte) { return p, kv.PrefixEnd(p) }

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func u64Bytes(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// dentry is the value of a D record.
type dentry struct {
	Ino  uint64 `msgpack:"i"`
	Type uint8  `msgpack:"t"`
}

// session is the value of an S record: an open-for-write session.
type session struct {
	UID      uint32 `msgpack:"uid"`
	TruncVer uint64 `msgpack:"tv"`      // the file's TruncVer when opened
	Created  int64  `msgpack:"created"` // ns
	Updated  int64  `msgpack:"updated"` // ns, last open/report
	// Anon marks the session that created an anonymous file (CreateTemp):
	// the one session that may Publish it, once.
	Anon bool `msgpack:"anon,omitempty"`
}

// userRec is the value of a U record.
type userRec struct {
	Name      string   `msgpack:"name"`
	UID       uint32   `msgpack:"uid"`
	GIDs      []uint32 `msgpack:"gids"`
	Admin     bool     `msgpack:"admin"`
	TokenHash []byte   `msgpack:"hash"` // SHA-256 of the token
	Created   int64    `msgpack:"created"`
}

// marshal encodes v as msgpack with compact integers.
func marshal(v any) []byte {
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	var buf bytesBuffer
	enc.Reset(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		// Only our own fixed types are encoded; they always encode.
		panic("meta: msgpack encode: " + err.Error())
	}
	return buf.b
}

func unmarshal(b []byte, v any) error { return msgpack.Unmarshal(b, v) }

// damagedf is the error of a stored record that does not decode (err): EIO,
// naming the record as format and args do, so that only the operations that
// touch that record fail.
func damagedf(err error, format string, args ...any) error {
	return proto.Errorf(proto.EIO, "meta: damaged record of %s (see fffd check): %v", fmt.Sprintf(format, args...), err)
}

// isDamaged reports whether err is an EIO error (as damagedf returns), not
// a failure of the KV or of the request.
func isDamaged(err error) bool {
	var pe *proto.Error
	return errors.As(err, &pe) && pe.Code == proto.EIO
}

// bytesBuffer is a minimal io.Writer (and io.ByteWriter) that keeps the
// slice it builds.
type bytesBuffer struct{ b []byte }

func (w *bytesBuffer) Write(p []byte) (int, error) { w.b = append(w.b, p...); return len(p), nil }
func (w *bytesBuffer) WriteByte(c byte) error      { w.b = append(w.b, c); return nil }
func (w *bytesBuffer) WriteString(s string) (int, error) {
	w.b = append(w.b, s...)
	return len(s), nil
}
