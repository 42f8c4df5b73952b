package mgmtd

import (
	"context"
	"time"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
)

// RegisterHandlers registers svc's methods (proto.Mgmtd*) on s.
//
// GetRouting is open to every authenticated caller. Every other method
// changes the cluster (a heartbeat can bring a node back) and is
// registered rpc.AccessAdmin: services authenticate with the cluster's
// admin token, others get EPERM from the server.
func RegisterHandlers(s *rpc.Server, svc *Service) {
	s.Handle(proto.MgmtdGetRouting, rpc.AccessUser, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.GetRoutingReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if r.WaitMillis > 0 {
			req.Detach() // a long poll: large requests must not wait for it
		}
		ri, waited, err := svc.WaitRouting(ctx, r.Since, time.Duration(r.WaitMillis)*time.Millisecond)
		if err != nil {
			return nil, err
		}
		// Unchanged: the version is the caller's.
		resp := proto.GetRoutingResp{Version: r.Since, Routing: ri, Waited: waited}
		if ri != nil {
			resp.Version = ri.Version
		}
		return &rpc.Response{Body: &resp}, nil
	})
	s.Handle(proto.MgmtdHeartbeat, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.HeartbeatReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		resp, err := svc.Heartbeat(ctx, r)
		return &resp, err
	}))
	s.Handle(proto.MgmtdRegisterNode, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.RegisterNodeReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		n, err := svc.RegisterNode(ctx, r.Node)
		return &proto.RegisterNodeResp{Node: n}, err
	}))
	s.Handle(proto.MgmtdRegisterTargets, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.RegisterTargetsReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		ts, err := svc.RegisterTargets(ctx, r.Targets)
		return &proto.RegisterTargetsResp{Targets: ts}, err
	}))
	s.Handle(proto.MgmtdCreateChain, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.CreateChainReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		c, err := svc.CreateChain(ctx, r.Targets)
		return &proto.CreateChainResp{Chain: c}, err
	}))
	s.Handle(proto.MgmtdSetChainTable, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.SetChainTableReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		t, err := svc.SetChainTable(ctx, r.ID, r.Chains)
		return &proto.SetChainTableResp{Table: t}, err
	}))
	s.Handle(proto.MgmtdAddToChainTable, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.AddToChainTableReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		t, err := svc.AddToChainTable(ctx, r.ID, r.Chains)
		return &proto.AddToChainTableResp{Table: t}, err
	}))
	s.Handle(proto.MgmtdPlaceChains, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.PlaceChainsReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		resp, err := svc.PlaceChains(ctx, r.Table, r.Replicas)
		return &resp, err
	}))
	s.Handle(proto.MgmtdSetTargetState, rpc.AccessAdmin, reply(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.SetTargetStateReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		if r.ChainVersion != 0 {
			if r.State != proto.TargetServing {
				return nil, proto.Errorf(proto.EINVAL, "mgmtd: a conditional state change (chain version %d) makes a target serving, not %v", r.ChainVersion, r.State)
			}
			return &proto.SetTargetStateResp{}, svc.Synced(ctx, r.TargetID, r.ChainVersion)
		}
		return &proto.SetTargetStateResp{}, svc.SetTargetState(ctx, r.TargetID, r.State)
	}))
}

// reply wraps a handler that returns its response body.
func reply(h func(ctx context.Context, req *rpc.Request) (any, error)) rpc.HandlerFunc {
	return func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		body, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: body}, nil
	}
}

// Client implements API, so Bootstrap runs the same in process and remotely.
var _ API = (*cluster.Client)(nil)
