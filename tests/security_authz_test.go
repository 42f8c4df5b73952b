package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	fffcluster "fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/libfff"
)

// putMode writes data to file name with mode perm as cl's user.
func putMode(t *testing.T, cl *libfff.Client, name string, perm fs.FileMode, data []byte) {
	t.Helper()
	put(t, cl, name, data)
	if err := cl.Chmod(ctxFor(t), name, perm); err != nil {
		t.Fatal(err)
	}
}

// wantStatus checks that err is a server's answer with code.
func wantStatus(t *testing.T, what string, err error, code proto.Code) {
	t.Helper()
	if got := proto.CodeOf(err); got != code {
		t.Errorf("%s: %v, want %v", what, err, code)
	}
}

// chunkRef names chunk idx of a file at the head of its chain.
func chunkRef(t *testing.T, ri *proto.RoutingInfo, n proto.Inode, idx uint32) proto.ChunkRef {
	t.Helper()
	ch := ri.Chain(n.Layout.ChainOf(uint64(idx)))
	if ch == nil || len(ch.Targets) == 0 {
		t.Fatalf("no chain for chunk %d of %+v", idx, n.Layout)
	}
	return proto.ChunkRef{Ino: n.Ino, Index: idx, ChainID: ch.ID, ChainVersion: ch.Version, TargetID: ch.Targets[0]}
}

// TestSecurityChunkCapabilities: a user who knows another user's file's
// inode cannot read, overwrite, truncate, remove, stat or locate its chunks
// by calling storage directly — not without a capability, not with a
// capability of their own file edited to name it, not with a forged MAC —
// and meta refuses them one. The file is intact afterwards.
func TestSecurityChunkCapabilities(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	ctx := ctxFor(t)
	admin := c.admin(t)
	aliceTok, err := admin.UserAdd(ctx, "alice", 1001, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	bobTok, err := admin.UserAdd(ctx, "bob", 1002, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		admin.MkdirAll(ctx, "/home/alice", 0o755), admin.Chown(ctx, "/home/alice", 1001, 1001),
		admin.MkdirAll(ctx, "/home/bob", 0o755), admin.Chown(ctx, "/home/bob", 1002, 1002),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	alice, bob := c.connect(t, aliceTok), c.connect(t, bobTok)
	secret := bytes.Repeat([]byte("alice's secret "), 6<<20/15) // two chunks
	putMode(t, alice, "/home/alice/secret", 0o600, secret)
	putMode(t, bob, "/home/bob/own", 0o600, []byte("bob's"))
	fi, err := admin.Stat(ctx, "/home/alice/secret")
	if err != nil {
		t.Fatal(err)
	}
	target := fi.Inode
	own, err := bob.Stat(ctx, "/home/bob/own")
	if err != nil {
		t.Fatal(err)
	}

	// Bob talks to the node himself, on its Unix socket (where locates are
	// answered) as a client on this host does.
	pool := rpc.NewPool(c.addr, bobTok, rpc.PoolOptions{Size: 1})
	defer pool.Close()
	ri, err := fffcluster.NewClient(pool).GetRouting(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var opened proto.MetaOpenResp
	if _, err := pool.Call(ctx, proto.MethodMetaOpen, &proto.MetaOpenReq{Ino: own.Inode.Ino, Flags: proto.OpenRead | proto.OpenWrite}, &opened); err != nil {
		t.Fatal(err)
	}
	if opened.Cap == nil {
		t.Fatal("meta handed out no capability for bob's own file")
	}
	edited := *opened.Cap
	edited.Ino = target.Ino
	forged := proto.Capability{Ino: target.Ino, Mode: proto.CapRead | proto.CapWrite, UID: 1002, Expiry: time.Now().Add(time.Hour).UnixNano(), MAC: bytes.Repeat([]byte{7}, 16)}
	for _, tc := range []struct {
		name string
		cap  *proto.Capability
	}{{"no capability", nil}, {"bob's own capability", opened.Cap}, {"bob's capability edited to name alice's file", &edited}, {"a forged capability", &forged}} {
		var caps []proto.Capability
		if tc.cap != nil {
			caps = []proto.Capability{*tc.cap}
		}
		for idx := uint32(0); idx < 2; idx++ {
			ref := chunkRef(t, ri, target, idx)
			ios := []proto.ReadIO{{Chunk: ref, Len: 4096}}
			dst := make([]byte, 4096)
			var rr proto.StorageReadResp
			if _, err := pool.Call(ctx, proto.MethodStorageRead, &proto.StorageReadReq{IOs: ios, Caps: caps}, &rr, rpc.IntoBuffer(dst)); err != nil {
				t.Fatal(err)
			}
			if rr.Results[0].Code != proto.BadCapability || !bytes.Equal(dst, make([]byte, 4096)) {
				t.Errorf("%s: read of chunk %d: %+v", tc.name, idx, rr.Results[0])
			}
			var lr proto.StorageLocateResp
			if _, err := pool.Call(ctx, proto.MethodStorageLocate, &proto.StorageLocateReq{IOs: ios, Caps: caps}, &lr); err != nil {
				t.Fatal(err)
			}
			if lr.Results[0].Code != proto.BadCapability || lr.Results[0].Path != "" {
				t.Errorf("%s: locate of chunk %d: %+v", tc.name, idx, lr.Results[0])
			}
			for _, call := range []struct {
				what   string
				method uint16
				req    any
				opts   []rpc.CallOption
			}{
				{"write", proto.MethodStorageWrite, &proto.StorageWriteReq{Chunk: ref, ChunkSize: target.Layout.ChunkSize, Cap: tc.cap}, []rpc.CallOption{rpc.WithPayload([]byte("bob was here"))}},
				{"truncate", proto.MethodStorageTruncate, &proto.StorageTruncateReq{Chunk: ref, Length: 1, Cap: tc.cap}, nil},
				{"remove", proto.MethodStorageRemove, &proto.StorageRemoveReq{Chunk: ref, Cap: tc.cap}, nil},
				{"stat", proto.MethodStorageStat, &proto.StorageStatReq{Chunk: ref, Cap: tc.cap}, nil},
			} {
				_, err := pool.Call(ctx, call.method, call.req, nil, call.opts...)
				wantStatus(t, tc.name+": "+call.what, err, proto.BadCapability)
			}
		}
	}
	// Nor does meta give him one: not by opening the file, not by asking
	// for a capability, not through a session he does not hold.
	var o proto.MetaOpenResp
	_, err = pool.Call(ctx, proto.MethodMetaOpen, &proto.MetaOpenReq{Ino: target.Ino, Flags: proto.OpenRead}, &o)
	wantStatus(t, "open alice's file", err, proto.EACCES)
	var cr proto.MetaCapabilityResp
	_, err = pool.Call(ctx, proto.MethodMetaCapability, &proto.MetaCapabilityReq{Ino: target.Ino, Flags: proto.OpenRead}, &cr)
	wantStatus(t, "capability for alice's file", err, proto.EACCES)
	_, err = pool.Call(ctx, proto.MethodMetaCapability, &proto.MetaCapabilityReq{Ino: target.Ino, Flags: proto.OpenWrite, Session: proto.Session{Ino: target.Ino, ID: 12345}}, &cr)
	wantStatus(t, "write capability through a made-up session", err, proto.EBADF)

	if got := get(t, alice, "/home/alice/secret"); !bytes.Equal(got, secret) {
		t.Fatalf("alice's file after bob's attempts: %d bytes, want %d", len(got), len(secret))
	}
	// His own capability works for him, through the same calls.
	if got := get(t, bob, "/home/bob/own"); string(got) != "bob's" {
		t.Fatalf("bob reading his own file: %q", got)
	}
}

// TestSecurityCapabilityRenewal: capabilities last capability_ttl (1 s
// here) and clients renew theirs, so an open file keeps working past it; a
// renewal checks permissions again, so a reader loses a file whose read
// permission went away within one lifetime, while a writer keeps its write
// session (an open descriptor's access).
func TestSecurityCapabilityRenewal(t *testing.T) {
	t.Parallel()
	c := &cluster{data: t.TempDir()}
	c.config = filepath.Join(c.data, "fffd.toml")
	if err := os.WriteFile(c.config, []byte("[meta]\ncapability_ttl = \"1s\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.start(t)
	ctx := ctxFor(t)
	admin := c.admin(t)
	tok, err := admin.UserAdd(ctx, "carol", 1003, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.Mkdir(ctx, "/carol", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := admin.Chown(ctx, "/carol", 1003, 1003); err != nil {
		t.Fatal(err)
	}
	carol := c.connect(t, tok)
	data := bytes.Repeat([]byte("x"), 100_000)
	putMode(t, carol, "/carol/f", 0o644, data)

	r, err := carol.OpenFile(ctx, "/carol/f")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := carol.Open(ctx, "/carol/f", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	buf := make([]byte, 1000)
	past := func() { time.Sleep(2500 * time.Millisecond) } // more than two lifetimes
	past()
	if _, err := r.ReadAt(buf, 0); err != nil {
		t.Fatalf("read after the first capability expired: %v", err)
	}
	if _, err := w.WriteAt([]byte("y"), 10); err != nil {
		t.Fatalf("write after the first capability expired: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}

	if err := carol.Chmod(ctx, "/carol/f", 0o200); err != nil { // write only
		t.Fatal(err)
	}
	past()
	_, err = r.ReadAt(buf, 0)
	wantErr(t, "read after the read permission went away", err, proto.ErrPermissionDenied)
	if _, err := w.WriteAt([]byte("z"), 20); err != nil {
		t.Fatalf("write through the write session after the chmod: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := carol.Chmod(ctx, "/carol/f", 0o644); err != nil {
		t.Fatal(err)
	}
	if got := get(t, carol, "/carol/f"); len(got) != len(data) || got[10] != 'y' || got[20] != 'z' {
		t.Fatalf("after the writes: %d bytes", len(got))
	}
}

// TestSecurityMountOrdinaryUser: a mount with an ordinary user's token
// writes, truncates, extends and reads its files through the capabilities
// meta grants (the mount's opens, creates and size changes), in both
// close modes, and is refused another user's file.
func TestSecurityMountOrdinaryUser(t *testing.T) {
	t.Parallel()
	needFUSE(t)
	c := startCluster(t)
	ctx := ctxFor(t)
	admin := c.admin(t)
	tok, err := admin.UserAdd(ctx, "dave", 1004, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []error{
		admin.Mkdir(ctx, "/dave", 0o755), admin.Chown(ctx, "/dave", 1004, 1004),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	put(t, admin, "/root-only", []byte("not dave's"))
	if err := admin.Chmod(ctx, "/root-only", 0o600); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("dave's data "), 50_000) // 600 KB
	for _, mode := range [][]string{nil, {"--writeback"}} {
		m := mountAs(t, c, tok, mode...)
		name := fmt.Sprintf("f%d", len(mode))
		p := filepath.Join(m.dir, "dave", name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatalf("%v: write: %v", mode, err)
		}
		if err := os.Truncate(p, 1000); err != nil {
			t.Fatalf("%v: truncate: %v", mode, err)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write([]byte("tail")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatalf("%v: close: %v", mode, err)
		}
		want := append(bytes.Clone(data[:1000]), "tail"...)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%v: read back %d bytes (want %d), %v", mode, len(got), len(want), err)
		}
		if got := get(t, admin, "/dave/"+name); !bytes.Equal(got, want) {
			t.Fatalf("%v: the cluster holds %d bytes, want %d", mode, len(got), len(want))
		}
		if _, err := os.ReadFile(filepath.Join(m.dir, "root-only")); !errors.Is(err, fs.ErrPermission) {
			t.Fatalf("%v: reading root's 0600 file: %v, want EACCES", mode, err)
		}
	}
}
