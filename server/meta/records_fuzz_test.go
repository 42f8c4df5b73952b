package meta

import (
	"bytes"
	"testing"

	"fff/internal/proto"
)

// recordKinds makes an empty value of each kind of record meta keeps in
// the KV, in the order the fuzz input's kind byte picks them.
var recordKinds = []func() any{
	func() any { return new(proto.Inode) },
	func() any { return new(dentry) },
	func() any { return new(session) },
	func() any { return new(userRec) },
	func() any { return new(proto.GCRecord) },
}

// recordSamples are records as meta writes them, one per kind.
func recordSamples() []any {
	l := &proto.Layout{ChainTable: 1, ChunkSize: 4 << 20, Stripe: 2, Chains: []uint32{1, 2}}
	return []any{
		&proto.Inode{Ino: 42, Type: proto.TypeFile, Mode: 0o644, UID: 1000, GID: 1000, Nlink: 1, Size: 12345,
			Atime: 1, Mtime: 2, Ctime: 3, TruncVer: 1, WriteVer: 2, Layout: l, Parent: 1},
		&dentry{Ino: 42, Type: uint8(proto.TypeFile)},
		&session{UID: 1000, TruncVer: 1, Created: 5, Updated: 6},
		&userRec{Name: "alice", UID: 1000, GIDs: []uint32{1000, 27}, TokenHash: bytes.Repeat([]byte{7}, 32), Created: 9},
		&proto.GCRecord{ID: proto.GCID{Ino: 42, Seq: 1<<64 - 1}, Kind: proto.GCDelete, Layout: *l, Size: 12345, Time: 10},
	}
}

// FuzzDecodeRecords: a damaged value in the KV (a corrupt meta.db, a bad
// FoundationDB value) decodes, as meta reads it, to an error or a value and
// never panics; a value it accepts re-encodes to bytes that decode to the
// same value again.
func FuzzDecodeRecords(f *testing.F) {
	for kind, v := range recordSamples() {
		f.Add(uint8(kind), marshal(v))
	}
	f.Fuzz(func(t *testing.T, kind uint8, b []byte) {
		mk := recordKinds[int(kind)%len(recordKinds)]
		v := mk()
		if err := unmarshal(b, v); err != nil {
			return
		}
		enc := marshal(v)
		w := mk()
		if err := unmarshal(enc, w); err != nil {
			t.Fatalf("%T re-encoded as %x does not decode: %v", v, enc, err)
		}
		if again := marshal(w); !bytes.Equal(again, enc) {
			t.Fatalf("%T does not re-encode stably: %x then %x", v, enc, again)
		}
	})
}

// TestRecordSamplesRoundTrip keeps the fuzz seeds honest: each sample
// decodes to what was encoded.
func TestRecordSamplesRoundTrip(t *testing.T) {
	for kind, v := range recordSamples() {
		w := recordKinds[kind]()
		if err := unmarshal(marshal(v), w); err != nil {
			t.Fatalf("%T: %v", v, err)
		}
		if !bytes.Equal(marshal(w), marshal(v)) {
			t.Fatalf("%T: decoded %+v, encoded %+v", v, w, v)
		}
	}
}
