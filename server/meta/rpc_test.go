package meta

import (
	"errors"
	"io/fs"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// TestRPC serves the meta service over a real loopback rpc server and
// drives it with the admin's and a user's tokens.
func TestRPC(t *testing.T) {
	s := newMem(t)
	adminTok := must(s.EnsureAdmin(ctx))(t)
	_, addr := serveRPC(t, s)
	dial := func(tok string) *rpc.Conn {
		c, err := rpc.Dial(ctx, addr, tok, rpc.ClientOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	admin := dial(adminTok)
	call := func(c *rpc.Conn, m uint16, req, resp any) error {
		_, err := c.Call(ctx, m, req, resp)
		return err
	}

	var who proto.MetaWhoAmIResp
	if err := call(admin, proto.MethodMetaWhoAmI, nil, &who); err != nil || !who.Admin || who.Name != AdminUser {
		t.Fatalf("whoami = %+v %v", who, err)
	}
	var tr proto.MetaTokenResp
	if err := call(admin, proto.MethodMetaUserAdd, proto.MetaUserAddReq{Name: "alice", UID: 1000, GIDs: []uint32{1000}}, &tr); err != nil {
		t.Fatal(err)
	}
	alice := dial(tr.Token)
	if err := call(alice, proto.MethodMetaWhoAmI, nil, &who); err != nil || who.UID != 1000 || who.Admin {
		t.Fatalf("alice whoami = %+v %v", who, err)
	}
	if _, err := rpc.Dial(ctx, addr, "wrong", rpc.ClientOptions{}); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("wrong token: %v", err)
	}
	var users proto.MetaUserListResp
	if err := call(admin, proto.MethodMetaUserList, nil, &users); err != nil || len(users.Users) != 2 {
		t.Fatalf("users = %+v %v", users, err)
	}
	if err := call(alice, proto.MethodMetaUserList, nil, &users); !errors.Is(err, proto.ErrNotPermitted) {
		t.Fatalf("alice lists users: %v", err)
	}

	// Namespace through the wire, errors included.
	var ir proto.MetaInodeResp
	err := call(alice, proto.MethodMetaMkdir, proto.MetaMkdirReq{Parent: proto.RootIno, Name: "x", Mode: 0o755}, &ir)
	if !errors.Is(err, proto.ErrPermissionDenied) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("alice mkdir in /: %v", err)
	}
	if err := call(admin, proto.MethodMetaMkdir, proto.MetaMkdirReq{Parent: proto.RootIno, Name: "home", Mode: 0o777}, &ir); err != nil {
		t.Fatal(err)
	}
	home := ir.Inode
	var or proto.MetaOpenResp
	if err := call(alice, proto.MethodMetaCreate, proto.MetaCreateReq{Parent: home.Ino, Name: "f", Mode: 0o644, Flags: proto.OpenWrite | proto.OpenExcl}, &or); err != nil {
		t.Fatal(err)
	}
	if !or.Created || or.Session.ID == 0 || or.Inode.Layout == nil || len(or.Inode.Layout.Chains) != 8 {
		t.Fatalf("create = %+v", or)
	}
	err = call(alice, proto.MethodMetaCreate, proto.MetaCreateReq{Parent: home.Ino, Name: "f", Flags: proto.OpenExcl}, &or)
	if !errors.Is(err, proto.ErrExist) {
		t.Fatalf("second create: %v", err)
	}
	if err := call(alice, proto.MethodMetaClose, proto.MetaCloseReq{Session: proto.Session{Ino: or.Inode.Ino, ID: or.Session.ID}, Length: 4096, Wrote: true}, &ir); err != nil || ir.Inode.Size != 4096 {
		t.Fatalf("close = %+v %v", ir, err)
	}
	if err := call(alice, proto.MethodMetaStatPath, proto.MetaStatPathReq{Path: "/home/f", Follow: true}, &ir); err != nil || ir.Inode.Size != 4096 || ir.Inode.UID != 1000 {
		t.Fatalf("statpath = %+v %v", ir, err)
	}
	if err := call(alice, proto.MethodMetaLookup, proto.MetaLookupReq{Parent: home.Ino, Name: "nope"}, &ir); !errors.Is(err, proto.ErrNotFound) {
		t.Fatalf("lookup missing: %v", err)
	}
	if err := call(alice, proto.MethodMetaSymlink, proto.MetaSymlinkReq{Parent: home.Ino, Name: "l", Target: "f"}, &ir); err != nil {
		t.Fatal(err)
	}
	var rl proto.MetaReadlinkResp
	if err := call(alice, proto.MethodMetaReadlink, proto.MetaStatReq{Ino: ir.Inode.Ino}, &rl); err != nil || rl.Target != "f" {
		t.Fatalf("readlink = %+v %v", rl, err)
	}
	if err := call(alice, proto.MethodMetaRename, proto.MetaRenameReq{SrcParent: home.Ino, SrcName: "f", DstParent: home.Ino, DstName: "g"}, nil); err != nil {
		t.Fatal(err)
	}
	var rd proto.MetaReadDirResp
	if err := call(alice, proto.MethodMetaReadDir, proto.MetaReadDirReq{Ino: home.Ino, Plus: true}, &rd); err != nil || len(rd.Entries) != 2 || rd.Entries[0].Name != "g" || rd.Entries[0].Attr.Size != 4096 {
		t.Fatalf("readdir = %+v %v", rd, err)
	}
	if err := call(alice, proto.MethodMetaSetAttr, proto.MetaSetAttrReq{Ino: or.Inode.Ino, Attr: proto.SetAttr{Valid: proto.SetSize, Size: 1}}, &ir); err != nil || ir.Inode.Size != 1 {
		t.Fatalf("truncate = %+v %v", ir, err)
	}
	var sf proto.MetaStatFSResp
	if err := call(alice, proto.MethodMetaStatFS, nil, &sf); err != nil || sf.StatFS.Inodes != 4 {
		t.Fatalf("statfs = %+v %v", sf, err)
	}
	if err := call(alice, proto.MethodMetaRmdir, proto.MetaUnlinkReq{Parent: proto.RootIno, Name: "home"}, nil); !errors.Is(err, proto.ErrPermissionDenied) {
		t.Fatalf("alice rmdir /home: %v", err)
	}
	var gl proto.MetaGCListResp
	if err := call(alice, proto.MethodMetaGCList, proto.MetaGCListReq{Limit: 10}, &gl); !errors.Is(err, proto.ErrNotPermitted) {
		t.Fatalf("alice gc list: %v", err)
	}
	var rm proto.MetaRemoveAllResp
	if err := call(admin, proto.MethodMetaRemoveAll, proto.MetaUnlinkReq{Parent: proto.RootIno, Name: "home"}, &rm); err != nil || rm.Removed != 3 {
		t.Fatalf("remove all = %+v %v", rm, err)
	}
	if err := call(admin, proto.MethodMetaGCList, proto.MetaGCListReq{Limit: 10}, &gl); err != nil || len(gl.Records) != 2 {
		t.Fatalf("gc list = %+v %v", gl, err)
	}
	var rest proto.MetaGCListResp
	if err := call(admin, proto.MethodMetaGCList, proto.MetaGCListReq{Limit: 10, After: &gl.Records[0].ID}, &rest); err != nil ||
		len(rest.Records) != 1 || rest.Records[0].ID != gl.Records[1].ID {
		t.Fatalf("gc list after the first record = %+v %v", rest, err)
	}
	ids := []proto.GCID{gl.Records[0].ID, gl.Records[1].ID}
	if err := call(admin, proto.MethodMetaGCDone, proto.MetaGCDoneReq{IDs: ids}, nil); err != nil {
		t.Fatal(err)
	}
	var cnt proto.MetaCountResp
	if err := call(admin, proto.MethodMetaPruneSessions, proto.MetaPruneSessionsReq{MaxAge: int64(time.Hour)}, &cnt); err != nil || cnt.N != 0 {
		t.Fatalf("prune = %+v %v", cnt, err)
	}
	if err := call(admin, proto.MethodMetaUserRemove, proto.MetaUserReq{Name: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := rpc.Dial(ctx, addr, tr.Token, rpc.ClientOptions{}); !errors.Is(err, proto.ErrUnauthenticated) {
		t.Fatalf("removed user's token: %v", err)
	}
	// A malformed body is a BadRequest, not a crash.
	if err := call(admin, proto.MethodMetaStat, "not a struct", &ir); !errors.Is(err, proto.ErrBadRequest) {
		t.Fatalf("bad body: %v", err)
	}
}
