package surface_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Authorization on objects (issue 14, item 1): every method open to every
// authenticated identity (rpc.AccessUser) is called by an ordinary user
// (the node's "fuzzer", uid 4242) against resources of another user,
// alice, that it must not touch:
//
//	/alice          0700 alice: everything below is out of the caller's reach
//	/alice/sub      0777, holding g (0666), e (empty 0777), l (symlink), t/u
//	/pub            0777 root: where the caller may create its own things
//	/pub/private    0600 alice, with alice's write session open on it
//	/pub/ad         0755 alice's directory
//	alice's anonymous file (CreateTemp) and its session
//	the chunks of g and of private, named to storage by their chunk ids
//	(the caller holds a capability of its own file, /pub/own)
//
// Objects below /alice/sub are open by their own modes: only the search
// permission of /alice, which a path walk would need, keeps the caller out,
// so a call that skips the reachability check fails its row. A method
// registered without a row fails TestObjectsOfOthers.

// aliceRes are alice's resources.
type aliceRes struct {
	alice, sub, g, l, pub, private, ad uint64
	aliceWrite, aliceTemp              proto.Session
	user                               *rpc.Conn // the caller
	gChunk, privChunk                  proto.ChunkRef
	own                                proto.Capability // the caller's, of its own file
}

// probe is one call of a method and the refusal it must meet.
type probe struct {
	name string
	// req builds the request; it may set up the caller's own things first.
	req  func(t *testing.T, o *aliceRes) any
	want proto.Code
}

// objectRow is what a method is probed with. perIO, for storage's
// batched read, takes the code from the first IO's result: it refuses IO
// by IO.
type objectRow struct {
	name   string
	probes []probe
	perIO  bool
}

func req[R any](r R) func(*testing.T, *aliceRes) any {
	return func(*testing.T, *aliceRes) any { return r }
}

// edited is the caller's own capability changed to name ino: its MAC no
// longer matches.
func (o *aliceRes) edited(ino uint64) *proto.Capability {
	c := o.own
	c.Ino = ino
	return &c
}

// storageRows probe a chunk method with no capability, with the caller's
// capability of its own file, and with that capability edited to name
// alice's file, against the chunks of her file out of reach (g) and of her
// 0600 file.
func storageRows(o *aliceRes, mk func(ref proto.ChunkRef, c *proto.Capability) any, want proto.Code) []probe {
	var ps []probe
	for _, f := range []struct {
		name string
		ref  proto.ChunkRef
	}{{"a file out of reach", o.gChunk}, {"a 0600 file", o.privChunk}} {
		for _, c := range []struct {
			name string
			cap  *proto.Capability
		}{{"no capability", nil}, {"the caller's own capability", &o.own}, {"it edited to name the file", o.edited(f.ref.Ino)}} {
			ps = append(ps, probe{name: f.name + ", " + c.name, req: req(mk(f.ref, c.cap)), want: want})
		}
	}
	return ps
}

func capList(c *proto.Capability) []proto.Capability {
	if c == nil {
		return nil
	}
	return []proto.Capability{*c}
}

func objectRows(o *aliceRes) map[uint16]objectRow {
	return map[uint16]objectRow{
		proto.MgmtdGetRouting: {name: "MgmtdGetRouting", probes: []probe{{"open to all: no user's objects in it", req(&struct{}{}), proto.OK}}},

		proto.MethodMetaLookup: {name: "MetaLookup", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaLookupReq{Parent: o.sub, Name: "g"}), proto.EACCES},
			{"dot-dot of it", req(&proto.MetaLookupReq{Parent: o.sub, Name: ".."}), proto.EACCES},
		}},
		proto.MethodMetaStat: {name: "MetaStat", probes: []probe{
			{"a file out of reach", req(&proto.MetaStatReq{Ino: o.g}), proto.EACCES},
			{"a directory out of reach", req(&proto.MetaStatReq{Ino: o.sub}), proto.EACCES},
		}},
		proto.MethodMetaStatPath: {name: "MetaStatPath", probes: []probe{
			{"through a 0700 directory", req(&proto.MetaStatPathReq{Path: "/alice/sub/g"}), proto.EACCES},
		}},
		proto.MethodMetaReadDir: {name: "MetaReadDir", probes: []probe{
			{"a directory out of reach", req(&proto.MetaReadDirReq{Ino: o.sub}), proto.EACCES},
			{"plus", req(&proto.MetaReadDirReq{Ino: o.sub, Plus: true}), proto.EACCES},
			{"the 0700 directory", req(&proto.MetaReadDirReq{Ino: o.alice}), proto.EACCES},
		}},
		proto.MethodMetaMkdir: {name: "MetaMkdir", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaMkdirReq{Parent: o.sub, Name: "m", Mode: 0o755}), proto.EACCES},
		}},
		proto.MethodMetaCreate: {name: "MetaCreate", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaCreateReq{Parent: o.sub, Name: "m", Mode: 0o644, Flags: proto.OpenExcl}), proto.EACCES},
			{"opening a file out of reach", req(&proto.MetaCreateReq{Parent: o.sub, Name: "g", Flags: proto.OpenRead}), proto.EACCES},
			{"opening a 0600 file", req(&proto.MetaCreateReq{Parent: o.pub, Name: "private", Flags: proto.OpenRead}), proto.EACCES},
		}},
		proto.MethodMetaCreateTemp: {name: "MetaCreateTemp", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaCreateTempReq{Parent: o.sub, Mode: 0o644}), proto.EACCES},
		}},
		proto.MethodMetaPublish: {name: "MetaPublish", probes: []probe{
			{"alice's anonymous file", req(&proto.MetaPublishReq{Session: o.aliceTemp, Parent: o.pub, Name: "pub"}), proto.EBADF},
			{"own file into a directory out of reach", func(t *testing.T, o *aliceRes) any {
				var r proto.MetaOpenResp
				call(t, o.user, proto.MethodMetaCreateTemp, &proto.MetaCreateTempReq{Parent: o.pub, Mode: 0o644}, &r)
				return &proto.MetaPublishReq{Session: r.Session, Parent: o.sub, Name: "m"}
			}, proto.EACCES},
		}},
		proto.MethodMetaOpen: {name: "MetaOpen", probes: []probe{
			{"a file out of reach", req(&proto.MetaOpenReq{Ino: o.g, Flags: proto.OpenRead}), proto.EACCES},
			{"a 0600 file for reading", req(&proto.MetaOpenReq{Ino: o.private, Flags: proto.OpenRead}), proto.EACCES},
			{"a 0600 file for writing", req(&proto.MetaOpenReq{Ino: o.private, Flags: proto.OpenWrite}), proto.EACCES},
			{"a 0600 file to truncate", req(&proto.MetaOpenReq{Ino: o.private, Flags: proto.OpenTrunc}), proto.EACCES},
		}},
		proto.MethodMetaCapability: {name: "MetaCapability", probes: []probe{
			{"read a file out of reach", req(&proto.MetaCapabilityReq{Ino: o.g, Flags: proto.OpenRead}), proto.EACCES},
			{"read a 0600 file", req(&proto.MetaCapabilityReq{Ino: o.private, Flags: proto.OpenRead}), proto.EACCES},
			{"write through alice's session", req(&proto.MetaCapabilityReq{Ino: o.private, Flags: proto.OpenWrite, Session: o.aliceWrite}), proto.EBADF},
		}},
		proto.MethodMetaClose: {name: "MetaClose", probes: []probe{
			{"alice's session", req(&proto.MetaCloseReq{Session: o.aliceWrite, Length: 1 << 20, Wrote: true}), proto.EBADF},
		}},
		proto.MethodMetaReportLength: {name: "MetaReportLength", probes: []probe{
			{"alice's session", req(&proto.MetaCloseReq{Session: o.aliceWrite, Length: 1 << 20, Wrote: true}), proto.EBADF},
		}},
		proto.MethodMetaUnlink: {name: "MetaUnlink", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaUnlinkReq{Parent: o.sub, Name: "g"}), proto.EACCES},
		}},
		proto.MethodMetaRmdir: {name: "MetaRmdir", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaUnlinkReq{Parent: o.sub, Name: "e"}), proto.EACCES},
		}},
		proto.MethodMetaRemoveAll: {name: "MetaRemoveAll", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaUnlinkReq{Parent: o.sub, Name: "t"}), proto.EACCES},
		}},
		proto.MethodMetaRename: {name: "MetaRename", probes: []probe{
			{"out of a directory out of reach", req(&proto.MetaRenameReq{SrcParent: o.sub, SrcName: "g", DstParent: o.pub, DstName: "g"}), proto.EACCES},
			{"own file into it", func(t *testing.T, o *aliceRes) any {
				call(t, o.user, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: o.pub, Name: "mine", Mode: 0o644}, nil)
				return &proto.MetaRenameReq{SrcParent: o.pub, SrcName: "mine", DstParent: o.sub, DstName: "mine"}
			}, proto.EACCES},
		}},
		proto.MethodMetaSymlink: {name: "MetaSymlink", probes: []probe{
			{"in a directory out of reach", req(&proto.MetaSymlinkReq{Parent: o.sub, Name: "s", Target: "g"}), proto.EACCES},
		}},
		proto.MethodMetaReadlink: {name: "MetaReadlink", probes: []probe{
			{"a symlink out of reach", req(&proto.MetaStatReq{Ino: o.l}), proto.EACCES},
		}},
		proto.MethodMetaLink: {name: "MetaLink", probes: []probe{
			{"a file out of reach, out to pub", req(&proto.MetaLinkReq{Ino: o.g, NewParent: o.pub, NewName: "stolen"}), proto.EACCES},
			{"own file into a directory out of reach", func(t *testing.T, o *aliceRes) any {
				var r proto.MetaOpenResp
				call(t, o.user, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: o.pub, Name: "mine2", Mode: 0o644}, &r)
				return &proto.MetaLinkReq{Ino: r.Inode.Ino, NewParent: o.sub, NewName: "mine2"}
			}, proto.EACCES},
		}},
		proto.MethodMetaSetAttr: {name: "MetaSetAttr", probes: []probe{
			{"chmod a file out of reach", req(&proto.MetaSetAttrReq{Ino: o.g, Attr: proto.SetAttr{Valid: proto.SetMode, Mode: 0o777}}), proto.EACCES},
			{"truncate a file out of reach", req(&proto.MetaSetAttrReq{Ino: o.g, Attr: proto.SetAttr{Valid: proto.SetSize}}), proto.EACCES},
			{"chmod alice's 0600 file", req(&proto.MetaSetAttrReq{Ino: o.private, Attr: proto.SetAttr{Valid: proto.SetMode, Mode: 0o666}}), proto.EPERM},
			{"chown it", req(&proto.MetaSetAttrReq{Ino: o.private, Attr: proto.SetAttr{Valid: proto.SetUID, UID: 4242}}), proto.EPERM},
			{"truncate it", req(&proto.MetaSetAttrReq{Ino: o.private, Attr: proto.SetAttr{Valid: proto.SetSize}}), proto.EACCES},
			{"touch it", req(&proto.MetaSetAttrReq{Ino: o.private, Attr: proto.SetAttr{Valid: proto.SetMtimeNow}}), proto.EACCES},
		}},
		proto.MethodMetaSetLayout: {name: "MetaSetLayout", probes: []probe{
			{"a directory out of reach", req(&proto.MetaSetLayoutReq{Ino: o.sub, Layout: proto.DirLayout{Stripe: 1}}), proto.EACCES},
			{"alice's directory", req(&proto.MetaSetLayoutReq{Ino: o.ad, Layout: proto.DirLayout{Stripe: 1}}), proto.EPERM},
		}},
		proto.MethodMetaStatFS: {name: "MetaStatFS", probes: []probe{{"totals only", req(&struct{}{}), proto.OK}}},
		proto.MethodMetaWhoAmI: {name: "MetaWhoAmI", probes: []probe{{"its own identity", req(&struct{}{}), proto.OK}}},

		proto.MethodMetaUserAdd: {name: "MetaUserAdd", probes: []probe{
			{"an admin for itself", req(&proto.MetaUserAddReq{Name: "evil", UID: 4242, Admin: true}), proto.EPERM},
		}},
		proto.MethodMetaUserList:   {name: "MetaUserList", probes: []probe{{"everyone", req(&struct{}{}), proto.EPERM}}},
		proto.MethodMetaUserRemove: {name: "MetaUserRemove", probes: []probe{{"alice", req(&proto.MetaUserReq{Name: "alice"}), proto.EPERM}}},
		proto.MethodMetaUserToken:  {name: "MetaUserToken", probes: []probe{{"alice's", req(&proto.MetaUserReq{Name: "alice"}), proto.EPERM}}},
		proto.MethodMetaGCList:     {name: "MetaGCList", probes: []probe{{"the queue", req(&proto.MetaGCListReq{}), proto.EPERM}}},
		proto.MethodMetaGCDone: {name: "MetaGCDone", probes: []probe{
			{"alice's records", req(&proto.MetaGCDoneReq{IDs: []proto.GCID{{Ino: o.g, Seq: 1}}}), proto.EPERM},
		}},
		proto.MethodMetaPruneSessions: {name: "MetaPruneSessions", probes: []probe{
			{"alice's session", req(&proto.MetaPruneSessionsReq{}), proto.EPERM},
		}},

		proto.MethodStorageRead: {name: "StorageRead", probes: storageRows(o, func(ref proto.ChunkRef, c *proto.Capability) any {
			return &proto.StorageReadReq{IOs: []proto.ReadIO{{Chunk: ref}}, Caps: capList(c)}
		}, proto.BadCapability), perIO: true},
		proto.MethodStorageWrite: {name: "StorageWrite", probes: storageRows(o, func(ref proto.ChunkRef, c *proto.Capability) any {
			return &proto.StorageWriteReq{Chunk: ref, ChunkSize: proto.MinChunkSize, Cap: c}
		}, proto.BadCapability)},
		proto.MethodStorageTruncate: {name: "StorageTruncate", probes: storageRows(o, func(ref proto.ChunkRef, c *proto.Capability) any {
			return &proto.StorageTruncateReq{Chunk: ref, Length: 1, Cap: c}
		}, proto.BadCapability)},
		proto.MethodStorageRemove: {name: "StorageRemove", probes: storageRows(o, func(ref proto.ChunkRef, c *proto.Capability) any {
			return &proto.StorageRemoveReq{Chunk: ref, Cap: c}
		}, proto.BadCapability)},
		proto.MethodStorageStat: {name: "StorageStat", probes: storageRows(o, func(ref proto.ChunkRef, c *proto.Capability) any {
			return &proto.StorageStatReq{Chunk: ref, Cap: c}
		}, proto.BadCapability)},
		// Over TCP a locate is refused before its capabilities are looked
		// at (it names paths on the node's host); server/storage's
		// TestCapabilities and tests/security_authz_test.go check them on
		// the Unix socket.
		proto.MethodStorageLocate: {name: "StorageLocate", probes: storageRows(o, func(ref proto.ChunkRef, c *proto.Capability) any {
			return &proto.StorageLocateReq{IOs: []proto.ReadIO{{Chunk: ref, Len: 1}}, Caps: capList(c)}
		}, proto.EPERM)},
	}
}

// call makes a setup call that must succeed.
func call(t *testing.T, c *rpc.Conn, m uint16, r, resp any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, m, r, resp); err != nil {
		t.Fatalf("setup: method %d: %v", m, err)
	}
}

// aliceObjects makes alice and her resources (as the admin and as alice).
func aliceObjects(t *testing.T, n *node) *aliceRes {
	t.Helper()
	o := &aliceRes{user: n.user}
	var tok proto.MetaTokenResp
	call(t, n.admin, proto.MethodMetaUserAdd, &proto.MetaUserAddReq{Name: "alice", UID: 5001, GIDs: []uint32{5001}}, &tok)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := rpc.Dial(ctx, n.admin.Addr(), tok.Token, rpc.ClientOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	mkdir := func(c *rpc.Conn, parent uint64, name string, mode uint32) uint64 {
		var r proto.MetaInodeResp
		call(t, c, proto.MethodMetaMkdir, &proto.MetaMkdirReq{Parent: parent, Name: name, Mode: mode}, &r)
		return r.Inode.Ino
	}
	create := func(parent uint64, name string, mode uint32, flags proto.OpenFlags) proto.MetaOpenResp {
		var r proto.MetaOpenResp
		call(t, a, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: parent, Name: name, Mode: mode, Flags: flags | proto.OpenExcl}, &r)
		return r
	}
	o.alice = mkdir(n.admin, proto.RootIno, "alice", 0o700)
	call(t, n.admin, proto.MethodMetaSetAttr, &proto.MetaSetAttrReq{Ino: o.alice,
		Attr: proto.SetAttr{Valid: proto.SetUID | proto.SetGID, UID: 5001, GID: 5001}}, nil)
	o.sub = mkdir(a, o.alice, "sub", 0o777)
	o.g = create(o.sub, "g", 0o666, 0).Inode.Ino
	mkdir(a, o.sub, "e", 0o777)
	var l proto.MetaInodeResp
	call(t, a, proto.MethodMetaSymlink, &proto.MetaSymlinkReq{Parent: o.sub, Name: "l", Target: "g"}, &l)
	o.l = l.Inode.Ino
	create(mkdir(a, o.sub, "t", 0o777), "u", 0o666, 0)
	o.pub = mkdir(n.admin, proto.RootIno, "pub", 0o777)
	w := create(o.pub, "private", 0o600, proto.OpenRead|proto.OpenWrite)
	o.private, o.aliceWrite = w.Inode.Ino, w.Session
	o.ad = mkdir(a, o.pub, "ad", 0o755)
	var tmp proto.MetaOpenResp
	call(t, a, proto.MethodMetaCreateTemp, &proto.MetaCreateTempReq{Parent: o.pub, Mode: 0o644}, &tmp)
	o.aliceTemp = tmp.Session

	// The chunks of g and private, as storage knows them; alice wrote
	// some bytes into both.
	var routing proto.GetRoutingResp
	call(t, n.admin, proto.MgmtdGetRouting, &proto.GetRoutingReq{}, &routing)
	chunk := func(ino uint64) proto.ChunkRef {
		var st proto.MetaInodeResp
		call(t, n.admin, proto.MethodMetaStat, &proto.MetaStatReq{Ino: ino}, &st)
		ch := routing.Routing.Chain(st.Inode.Layout.ChainOf(0))
		ref := proto.ChunkRef{Ino: ino, ChainID: ch.ID, ChainVersion: ch.Version, TargetID: ch.Targets[0]}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n.admin.Call(ctx, proto.MethodStorageWrite, &proto.StorageWriteReq{Chunk: ref, ChunkSize: st.Inode.Layout.ChunkSize},
			nil, rpc.WithPayload([]byte("alice's"))); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	o.gChunk, o.privChunk = chunk(o.g), chunk(o.private)
	var own proto.MetaOpenResp
	call(t, n.user, proto.MethodMetaCreate, &proto.MetaCreateReq{Parent: o.pub, Name: "own", Mode: 0o600, Flags: proto.OpenRead | proto.OpenWrite | proto.OpenExcl}, &own)
	if own.Cap == nil {
		t.Fatal("meta gave the caller no capability for its own file")
	}
	o.own = *own.Cap
	return o
}

// TestObjectsOfOthers walks every method registered for every
// authenticated identity (rpc.AccessUser) and calls it, as an ordinary
// user, against alice's resources: each probe must be refused with its
// code (or, for the few methods that touch nothing of anyone's, succeed).
func TestObjectsOfOthers(t *testing.T) {
	n := startNode(t)
	o := aliceObjects(t, n)
	rows := objectRows(o)
	registered := map[uint16]bool{}
	for _, m := range n.methods {
		if access, _ := n.srv.Access(m); access != rpc.AccessUser {
			continue // refused by the server itself: TestEveryMethodStatesWhoMayCallIt
		}
		registered[m] = true
		row, ok := rows[m]
		if !ok {
			t.Errorf("method %d is open to every user but has no row in objectRows: say how it protects other users' objects", m)
			continue
		}
		for _, p := range row.probes {
			t.Run(row.name+"/"+p.name, func(t *testing.T) {
				r := p.req(t, o)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var results proto.StorageReadResp
				var resp any
				if row.perIO {
					resp = &results
				}
				_, err := n.user.Call(ctx, m, r, resp)
				got := proto.CodeOf(err)
				if row.perIO && err == nil && len(results.Results) == 1 {
					got = results.Results[0].Code
				}
				if got != p.want {
					t.Errorf("%s (%d), %s: %v (code %v), want %v", row.name, m, p.name, err, got, p.want)
				}
			})
		}
	}
	for m := range rows {
		if !registered[m] {
			t.Errorf("objectRows has method %d, which no service registers for every user", m)
		}
	}
	// alice's chunks are as she wrote them.
	for _, ref := range []proto.ChunkRef{o.gChunk, o.privChunk} {
		var st proto.StorageStatResp
		call(t, n.admin, proto.MethodStorageStat, &proto.StorageStatReq{Chunk: ref}, &st)
		if st != (proto.StorageStatResp{Exists: true, Version: 1, Length: 7}) {
			t.Errorf("alice's chunk %+v changed: %+v", ref, st)
		}
	}
	// alice's things are as she left them.
	var st proto.MetaInodeResp
	call(t, n.admin, proto.MethodMetaStat, &proto.MetaStatReq{Ino: o.private}, &st)
	if st.Inode.Mode != 0o600 || st.Inode.UID != 5001 || st.Inode.Size != 0 {
		t.Errorf("alice's private file changed: %+v", st.Inode)
	}
	var es proto.MetaReadDirResp
	call(t, n.admin, proto.MethodMetaReadDir, &proto.MetaReadDirReq{Ino: o.sub}, &es)
	var names []string
	for _, e := range es.Entries {
		names = append(names, e.Name)
	}
	if want := []string{"e", "g", "l", "t"}; !slices.Equal(names, want) {
		t.Errorf("alice's sub holds %v, want %v", names, want)
	}
}
