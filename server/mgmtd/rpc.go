package mgmtd

import (
	"context"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// RegisterHandlers registers svc's methods (proto.Mgmtd*) on s.
//
// GetRouting is open to every authenticated caller. Every other method
// changes the cluster (a heartbeat can bring a node back) and needs the
// admin identity (rpc.Identity.Admin): services authenticate with the
// cluster's admin token. Others get EPERM.
func RegisterHandlers(s *rpc.Server, svc *Service) {
	s.Handle(proto.MgmtdGetRouting, func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		var r proto.GetRoutingReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		ri, err := svc.GetRouting(ctx, r.Since)
		if err != nil {
			return nil, err
		}
		// Unchanged: the version is the caller's.
		resp := proto.GetRoutingResp{Version: r.Since, Routing: ri}
		if ri != nil {
			resp.Version = ri.Version
		}
		return &rpc.Response{Body: &resp}, nil
	})
	s.Handle(proto.MgmtdHeartbeat, admin(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.HeartbeatReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		resp, err := svc.Heartbeat(ctx, r)
		return &resp, err
	}))
	s.Handle(proto.MgmtdRegisterNode, admin(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.RegisterNodeReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		n, err := svc.RegisterNode(ctx, r.Node)
		return &proto.RegisterNodeResp{Node: n}, err
	}))
	s.Handle(proto.MgmtdRegisterTargets, admin(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.RegisterTargetsReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		ts, err := svc.RegisterTargets(ctx, r.Targets)
		return &proto.RegisterTargetsResp{Targets: ts}, err
	}))
	s.Handle(proto.MgmtdCreateChain, admin(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.CreateChainReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		c, err := svc.CreateChain(ctx, r.Targets)
		return &proto.CreateChainResp{Chain: c}, err
	}))
	s.Handle(proto.MgmtdSetChainTable, admin(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.SetChainTableReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		t, err := svc.SetChainTable(ctx, r.ID, r.Chains)
		return &proto.SetChainTableResp{Table: t}, err
	}))
	s.Handle(proto.MgmtdSetTargetState, admin(func(ctx context.Context, req *rpc.Request) (any, error) {
		var r proto.SetTargetStateReq
		if err := req.Decode(&r); err != nil {
			return nil, err
		}
		return &proto.SetTargetStateResp{}, svc.SetTargetState(ctx, r.TargetID, r.State)
	}))
}

// admin wraps a handler that needs the admin identity.
func admin(h func(ctx context.Context, req *rpc.Request) (any, error)) rpc.HandlerFunc {
	return func(ctx context.Context, req *rpc.Request) (*rpc.Response, error) {
		if !req.Identity.Admin {
			return nil, proto.Errorf(proto.EPERM, "mgmtd: method %d needs the admin token", req.Method)
		}
		body, err := h(ctx, req)
		if err != nil {
			return nil, err
		}
		return &rpc.Response{Body: body}, nil
	}
}

// Caller is what Client calls through: an *rpc.Conn or an *rpc.Pool.
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error)
}

// Client calls mgmtd over RPC. It implements API, so code written against
// API runs the same in process (over a *Service) and remotely. It is safe
// for concurrent use if its Caller is.
type Client struct {
	c Caller
}

var _ API = (*Client)(nil)

// NewClient returns a client calling through c.
func NewClient(c Caller) *Client { return &Client{c: c} }

// GetRouting implements API.
func (c *Client) GetRouting(ctx context.Context, since uint64) (*proto.RoutingInfo, error) {
	var resp proto.GetRoutingResp
	if _, err := c.c.Call(ctx, proto.MgmtdGetRouting, &proto.GetRoutingReq{Since: since}, &resp); err != nil {
		return nil, err
	}
	if resp.Routing == nil && (since == 0 || since != resp.Version) {
		return nil, proto.Errorf(proto.EIO, "mgmtd: GetRouting: version %d without routing info", resp.Version)
	}
	return resp.Routing, nil
}

// Heartbeat implements API.
func (c *Client) Heartbeat(ctx context.Context, req proto.HeartbeatReq) (proto.HeartbeatResp, error) {
	var resp proto.HeartbeatResp
	_, err := c.c.Call(ctx, proto.MgmtdHeartbeat, &req, &resp)
	return resp, err
}

// RegisterNode implements API.
func (c *Client) RegisterNode(ctx context.Context, n proto.Node) (proto.Node, error) {
	var resp proto.RegisterNodeResp
	_, err := c.c.Call(ctx, proto.MgmtdRegisterNode, &proto.RegisterNodeReq{Node: n}, &resp)
	return resp.Node, err
}

// RegisterTargets implements API.
func (c *Client) RegisterTargets(ctx context.Context, ts []proto.Target) ([]proto.Target, error) {
	var resp proto.RegisterTargetsResp
	if _, err := c.c.Call(ctx, proto.MgmtdRegisterTargets, &proto.RegisterTargetsReq{Targets: ts}, &resp); err != nil {
		return nil, err
	}
	return resp.Targets, nil
}

// CreateChain implements API.
func (c *Client) CreateChain(ctx context.Context, targets []uint32) (proto.Chain, error) {
	var resp proto.CreateChainResp
	_, err := c.c.Call(ctx, proto.MgmtdCreateChain, &proto.CreateChainReq{Targets: targets}, &resp)
	return resp.Chain, err
}

// CreateChainTable creates a chain table with a new id.
func (c *Client) CreateChainTable(ctx context.Context, chains []uint32) (proto.ChainTable, error) {
	return c.SetChainTable(ctx, 0, chains)
}

// SetChainTable implements API.
func (c *Client) SetChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error) {
	var resp proto.SetChainTableResp
	_, err := c.c.Call(ctx, proto.MgmtdSetChainTable, &proto.SetChainTableReq{ID: id, Chains: chains}, &resp)
	return resp.Table, err
}

// SetTargetState implements API.
func (c *Client) SetTargetState(ctx context.Context, id uint32, state proto.TargetState) error {
	var resp proto.SetTargetStateResp
	_, err := c.c.Call(ctx, proto.MgmtdSetTargetState, &proto.SetTargetStateReq{TargetID: id, State: state}, &resp)
	return err
}
