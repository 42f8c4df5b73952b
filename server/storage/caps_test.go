package storage_test

import (
	"bytes"
	"testing"
	"time"

	"fff/internal/capability"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/server/storage"
)

// TestCapabilities: every chunk method refuses a non-admin caller whose
// capability is missing, for another inode, read-only where writing is
// asked, expired, issued to another uid or not signed with the node's key,
// and changes nothing then; the right capability passes, and the admin
// needs none. Reads and locates fail per IO: the granted IOs of a request
// are served.
func TestCapabilities(t *testing.T) {
	e := newEnv(t)
	const ino, otherIno = 42, 43
	ref := e.ref(10, ino, 0)
	data := pattern(3, 8192)
	if _, err := e.conn.Call(e.ctx, proto.MethodStorageWrite, proto.StorageWriteReq{Chunk: ref, ChunkSize: chunkSize}, nil, rpc.WithPayload(data)); err != nil {
		t.Fatalf("admin write without a capability: %v", err)
	}
	if e.local.Transport() != "unix" {
		t.Fatal("the user's local connection is not on the Unix socket")
	}
	local := e.local
	later := time.Now().Add(time.Hour).UnixNano()
	secret, _ := capability.Generate()
	foreign, _ := capability.New(secret)
	issue := func(k *capability.Key, ino uint64, mode uint8, uid uint32, exp int64) *proto.Capability {
		c := k.Issue(ino, mode, uid, exp)
		return &c
	}
	rw := proto.CapRead | proto.CapWrite
	caps := []struct {
		name    string
		cap     *proto.Capability
		read    bool // grants reading ino
		writeOK bool // grants writing ino
	}{
		{"none", nil, false, false},
		{"another inode", issue(e.key, otherIno, rw, userUID, later), false, false},
		{"read-only", issue(e.key, ino, proto.CapRead, userUID, later), true, false},
		{"write-only", issue(e.key, ino, proto.CapWrite, userUID, later), false, true},
		{"expired", issue(e.key, ino, rw, userUID, time.Now().Add(-time.Second).UnixNano()), false, false},
		{"another uid", issue(e.key, ino, rw, userUID+1, later), false, false},
		{"another cluster's key", issue(foreign, ino, rw, userUID, later), false, false},
		{"read and write", issue(e.key, ino, rw, userUID, later), true, true},
	}
	state := func() proto.StorageStatResp {
		var st proto.StorageStatResp
		if _, err := e.conn.Call(e.ctx, proto.MethodStorageStat, proto.StorageStatReq{Chunk: ref}, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, c := range caps {
		t.Run(c.name, func(t *testing.T) {
			var list []proto.Capability
			if c.cap != nil {
				list = []proto.Capability{*c.cap}
			}
			want := func(ok bool) proto.Code {
				if ok {
					return proto.OK
				}
				return proto.BadCapability
			}
			before := state()
			// Methods answering with a status.
			calls := []struct {
				method uint16
				req    any
				ok     bool
			}{
				{proto.MethodStorageStat, proto.StorageStatReq{Chunk: ref, Cap: c.cap}, c.read},
				{proto.MethodStorageWrite, proto.StorageWriteReq{Chunk: ref, Off: 100, ChunkSize: chunkSize, Cap: c.cap}, c.writeOK},
				{proto.MethodStorageTruncate, proto.StorageTruncateReq{Chunk: ref, Length: 8192, Cap: c.cap}, c.writeOK},
				{proto.MethodStorageRemove, proto.StorageRemoveReq{Chunk: e.ref(11, ino, 1), Cap: c.cap}, c.writeOK},
			}
			for _, call := range calls {
				var opts []rpc.CallOption
				if call.method == proto.MethodStorageWrite {
					opts = append(opts, rpc.WithPayload(data[100:200])) // the bytes already there
				}
				_, err := e.user.Call(e.ctx, call.method, call.req, nil, opts...)
				if got := proto.CodeOf(err); got != want(call.ok) {
					t.Errorf("method %d: %v, want %v", call.method, err, want(call.ok))
				}
			}
			if after := state(); !c.writeOK && after != before {
				t.Errorf("a refused call changed the chunk: %+v, was %+v", after, before)
			}
			// A batched read of the chunk and of another inode's chunk:
			// the capability's grant decides the first IO alone.
			ios := []proto.ReadIO{{Chunk: ref, Len: 4096}, {Chunk: e.ref(10, otherIno+100, 0), Len: 10}}
			dsts := [][]byte{make([]byte, 4096), make([]byte, 10)}
			var resp proto.StorageReadResp
			if _, err := e.user.Call(e.ctx, proto.MethodStorageRead, proto.StorageReadReq{IOs: ios, Caps: list}, &resp, rpc.IntoBuffers(dsts...)); err != nil {
				t.Fatal(err)
			}
			if resp.Results[0].Code != want(c.read) || resp.Results[1].Code != proto.BadCapability {
				t.Errorf("read: %+v", resp.Results)
			}
			if c.read && !bytes.Equal(dsts[0], data[:4096]) {
				t.Error("read: wrong bytes")
			}
			if !c.read && !bytes.Equal(dsts[0], make([]byte, 4096)) {
				t.Error("a refused read delivered bytes")
			}
			var loc proto.StorageLocateResp
			if _, err := local.Call(e.ctx, proto.MethodStorageLocate, proto.StorageLocateReq{IOs: ios, Caps: list}, &loc); err != nil {
				t.Fatal(err)
			}
			if loc.Results[0].Code != want(c.read) || loc.Results[1].Code != proto.BadCapability {
				t.Errorf("locate: %+v", loc.Results)
			}
			if !c.read && loc.Results[0].Path != "" {
				t.Error("a refused locate told the chunk's path")
			}
		})
	}

	// More capabilities than IOs is malformed: each would cost a check.
	var resp proto.StorageReadResp
	_, err := e.user.Call(e.ctx, proto.MethodStorageRead, proto.StorageReadReq{
		IOs:  []proto.ReadIO{{Chunk: ref, Len: 1}},
		Caps: []proto.Capability{*caps[7].cap, *caps[7].cap},
	}, &resp, rpc.IntoBuffer(make([]byte, 1)))
	wantCode(t, err, proto.BadRequest)
}

// TestCapabilitiesWithoutKey: a node without the cluster's key serves its
// chunks to the admin only; Unchecked (benchmarks) serves everyone.
func TestCapabilitiesWithoutKey(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unchecked bool
		want      proto.Code
	}{
		{"no key", false, proto.BadCapability},
		{"unchecked", true, proto.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *storage.Options) { o.Capabilities, o.Unchecked = nil, tc.unchecked })
			ref := e.ref(10, 1, 0)
			_, err := e.user.Call(e.ctx, proto.MethodStorageWrite, proto.StorageWriteReq{Chunk: ref, ChunkSize: chunkSize, Cap: e.cap(1)}, nil, rpc.WithPayload([]byte("x")))
			wantCode(t, err, tc.want)
			if _, err := e.conn.Call(e.ctx, proto.MethodStorageStat, proto.StorageStatReq{Chunk: ref}, nil); err != nil {
				t.Fatalf("admin: %v", err)
			}
		})
	}
}
