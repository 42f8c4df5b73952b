package meta

import (
	"context"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// RPC glue: the service's methods as handlers of an rpc.Server, with the
// messages of internal/proto (MethodMeta*). Every request runs as the
// identity its connection authenticated as.

// RegisterHandlers registers s's handlers on srv (s.Register(srv)).
func RegisterHandlers(srv *rpc.Server, s *Service) { s.Register(srv) }

// Register registers a handler for every MethodMeta* method on srv.
func (s *Service) Register(srv *rpc.Server) {
	handle(srv, proto.MethodMetaLookup, func(ctx context.Context, id Identity, r *proto.MetaLookupReq) (any, error) {
		n, err := s.Lookup(ctx, id, r.Parent, r.Name)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaStat, func(ctx context.Context, id Identity, r *proto.MetaStatReq) (any, error) {
		n, err := s.Stat(ctx, id, r.Ino)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaStatPath, func(ctx context.Context, id Identity, r *proto.MetaStatPathReq) (any, error) {
		n, err := s.StatPath(ctx, id, r.Path, r.Follow)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaReadDir, func(ctx context.Context, id Identity, r *proto.MetaReadDirReq) (any, error) {
		es, more, err := s.ReadDir(ctx, id, r.Ino, r.After, r.Limit, r.Plus)
		return proto.MetaReadDirResp{Entries: es, More: more}, err
	})
	handle(srv, proto.MethodMetaMkdir, func(ctx context.Context, id Identity, r *proto.MetaMkdirReq) (any, error) {
		n, err := s.Mkdir(ctx, id, r.Parent, r.Name, r.Mode)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaCreate, func(ctx context.Context, id Identity, r *proto.MetaCreateReq) (any, error) {
		o, err := s.Create(ctx, id, r.Parent, r.Name, r.Mode, r.Flags)
		return s.openResp(id, o, r.Flags, err)
	})
	handle(srv, proto.MethodMetaCreateTemp, func(ctx context.Context, id Identity, r *proto.MetaCreateTempReq) (any, error) {
		o, err := s.CreateTemp(ctx, id, r.Parent, r.Mode)
		return s.openResp(id, o, proto.OpenRead|proto.OpenWrite, err)
	})
	handle(srv, proto.MethodMetaPublish, func(ctx context.Context, id Identity, r *proto.MetaPublishReq) (any, error) {
		n, err := s.Publish(ctx, id, *r)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaOpen, func(ctx context.Context, id Identity, r *proto.MetaOpenReq) (any, error) {
		o, err := s.Open(ctx, id, r.Ino, r.Flags)
		return s.openResp(id, o, r.Flags, err)
	})
	handle(srv, proto.MethodMetaCapability, func(ctx context.Context, id Identity, r *proto.MetaCapabilityReq) (any, error) {
		c, ttl, err := s.Capability(ctx, id, r.Ino, r.Flags, r.Session)
		return proto.MetaCapabilityResp{Cap: c, TTL: ttl}, err
	})
	handle(srv, proto.MethodMetaClose, func(ctx context.Context, id Identity, r *proto.MetaCloseReq) (any, error) {
		n, err := s.Close(ctx, id, r.Session, r.Length, r.Wrote)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaReportLength, func(ctx context.Context, id Identity, r *proto.MetaCloseReq) (any, error) {
		n, err := s.ReportLength(ctx, id, r.Session, r.Length, r.Wrote)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaUnlink, func(ctx context.Context, id Identity, r *proto.MetaUnlinkReq) (any, error) {
		return nil, s.Unlink(ctx, id, r.Parent, r.Name)
	})
	handle(srv, proto.MethodMetaRmdir, func(ctx context.Context, id Identity, r *proto.MetaUnlinkReq) (any, error) {
		return nil, s.Rmdir(ctx, id, r.Parent, r.Name)
	})
	handle(srv, proto.MethodMetaRename, func(ctx context.Context, id Identity, r *proto.MetaRenameReq) (any, error) {
		return nil, s.Rename(ctx, id, r.SrcParent, r.SrcName, r.DstParent, r.DstName)
	})
	handle(srv, proto.MethodMetaSymlink, func(ctx context.Context, id Identity, r *proto.MetaSymlinkReq) (any, error) {
		n, err := s.Symlink(ctx, id, r.Parent, r.Name, r.Target)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaReadlink, func(ctx context.Context, id Identity, r *proto.MetaStatReq) (any, error) {
		t, err := s.Readlink(ctx, id, r.Ino)
		return proto.MetaReadlinkResp{Target: t}, err
	})
	handle(srv, proto.MethodMetaLink, func(ctx context.Context, id Identity, r *proto.MetaLinkReq) (any, error) {
		n, err := s.Link(ctx, id, r.Ino, r.NewParent, r.NewName)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaSetAttr, func(ctx context.Context, id Identity, r *proto.MetaSetAttrReq) (any, error) {
		n, err := s.SetAttr(ctx, id, r.Ino, r.Attr)
		resp := proto.MetaInodeResp{Inode: n}
		if err == nil && r.Attr.Valid&proto.SetSize != 0 && n.Type == proto.TypeFile {
			// The caller cuts the chunks past the new size.
			resp.Cap, resp.CapTTL = s.issueCap(id, n.Ino, proto.CapWrite)
		}
		return resp, err
	})
	handle(srv, proto.MethodMetaSetLayout, func(ctx context.Context, id Identity, r *proto.MetaSetLayoutReq) (any, error) {
		n, err := s.SetLayout(ctx, id, r.Ino, r.Layout)
		return proto.MetaInodeResp{Inode: n}, err
	})
	handle(srv, proto.MethodMetaStatFS, func(ctx context.Context, id Identity, _ *struct{}) (any, error) {
		st, err := s.StatFS(ctx, id)
		return proto.MetaStatFSResp{StatFS: st}, err
	})
	handle(srv, proto.MethodMetaRemoveAll, func(ctx context.Context, id Identity, r *proto.MetaUnlinkReq) (any, error) {
		n, err := s.RemoveAll(ctx, id, r.Parent, r.Name)
		return proto.MetaRemoveAllResp{Removed: n}, err
	})
	handle(srv, proto.MethodMetaWhoAmI, func(_ context.Context, id Identity, _ *struct{}) (any, error) {
		return proto.MetaWhoAmIResp{Name: id.Name, UID: id.UID, GIDs: id.GIDs, Admin: id.Admin}, nil
	})
	handle(srv, proto.MethodMetaUserAdd, func(ctx context.Context, id Identity, r *proto.MetaUserAddReq) (any, error) {
		tok, err := s.AddUser(ctx, id, r.Name, r.UID, r.GIDs, r.Admin)
		return proto.MetaTokenResp{Token: tok}, err
	})
	handle(srv, proto.MethodMetaUserList, func(ctx context.Context, id Identity, _ *struct{}) (any, error) {
		us, err := s.ListUsers(ctx, id)
		return proto.MetaUserListResp{Users: us}, err
	})
	handle(srv, proto.MethodMetaUserRemove, func(ctx context.Context, id Identity, r *proto.MetaUserReq) (any, error) {
		return nil, s.RemoveUser(ctx, id, r.Name)
	})
	handle(srv, proto.MethodMetaUserToken, func(ctx context.Context, id Identity, r *proto.MetaUserReq) (any, error) {
		tok, err := s.RotateToken(ctx, id, r.Name)
		return proto.MetaTokenResp{Token: tok}, err
	})
	// Admin only, unlike the user methods: the admin is who storage nodes
	// connect as, and a token's stored key is nobody else's business.
	srv.Handle(proto.MethodMetaCredentials, rpc.AccessAdmin, func(ctx context.Context, r *rpc.Request) (*rpc.Response, error) {
		var req proto.MetaCredentialsReq
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		key, u, err := s.Credentials(ctx, req.ID)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: proto.MetaCredentialsResp{Key: key, Name: u.Name, UID: u.UID, GIDs: u.GIDs, Admin: u.Admin}}, nil
	})
	handle(srv, proto.MethodMetaGCList, func(ctx context.Context, id Identity, r *proto.MetaGCListReq) (any, error) {
		recs, err := s.GCList(ctx, id, r.After, r.Limit)
		return proto.MetaGCListResp{Records: recs}, err
	})
	handle(srv, proto.MethodMetaGCDone, func(ctx context.Context, id Identity, r *proto.MetaGCDoneReq) (any, error) {
		return nil, s.GCDone(ctx, id, r.IDs)
	})
	handle(srv, proto.MethodMetaPruneSessions, func(ctx context.Context, id Identity, r *proto.MetaPruneSessionsReq) (any, error) {
		n, err := s.PruneSessions(ctx, id, time.Duration(r.MaxAge))
		return proto.MetaCountResp{N: n}, err
	})
}

// openResp answers an open, create or temporary create: the file, its
// write session, and a capability for its chunks with the access of flags.
func (s *Service) openResp(id Identity, o Opened, flags proto.OpenFlags, err error) (any, error) {
	if err != nil {
		return nil, err
	}
	resp := proto.MetaOpenResp{Inode: o.Inode, Session: o.Session, Created: o.Created}
	if o.Inode.Type == proto.TypeFile {
		resp.Cap, resp.CapTTL = s.issueCap(id, o.Inode.Ino, capMode(flags))
	}
	return resp, nil
}

// handle registers fn for method m: it decodes the request body into a Req
// and sends fn's result as the response body (nil: an empty body).
func handle[Req any](srv *rpc.Server, m uint16, fn func(ctx context.Context, id Identity, req *Req) (any, error)) {
	// Every meta method is open to every authenticated identity: the
	// service checks permissions on the objects a call names, and root
	// (uid 0 or admin) for the users, GC and session methods.
	srv.Handle(m, rpc.AccessUser, func(ctx context.Context, r *rpc.Request) (*rpc.Response, error) {
		var req Req
		if err := r.Decode(&req); err != nil {
			return nil, err
		}
		body, err := fn(ctx, identityOf(r.Identity), &req)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: body}, nil
	})
}

func identityOf(i rpc.Identity) Identity {
	return Identity{UID: i.UID, GIDs: i.GIDs, Admin: i.Admin, Name: i.Name}
}

// Authenticator returns an rpc.Authenticator that accepts the tokens of the
// service's users (Credentials).
func (s *Service) Authenticator() rpc.Authenticator { return authenticator{s} }

type authenticator struct{ s *Service }

func (a authenticator) Lookup(ctx context.Context, lid rpc.LookupID) (rpc.StoredKey, rpc.Identity, error) {
	sum, id, err := a.s.Credentials(ctx, lid[:])
	if err != nil {
		return rpc.StoredKey{}, rpc.Identity{}, err
	}
	return rpc.StoredKey(sum), rpc.Identity{UID: id.UID, GIDs: id.GIDs, Admin: id.Admin, Name: id.Name}, nil
}
