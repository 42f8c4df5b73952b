package cluster

import (
	"context"
	"time"

	"fff/internal/proto"
	"fff/internal/rpc"
)

// Caller is what Client calls through: an *rpc.Conn or an *rpc.Pool.
type Caller interface {
	Call(ctx context.Context, method uint16, req, resp any, opts ...rpc.CallOption) (int, error)
}

// Client calls mgmtd over RPC. It implements mgmtd.API, so code written
// against that interface runs the same in process and remotely. It is safe
// for concurrent use if its Caller is.
type Client struct {
	c Caller
}

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

// WaitRouting is GetRouting as a long poll: when since is current, mgmtd
// answers once a newer version exists or wait passed (nil: unchanged).
// waited is false when the server answered at once without supporting it.
func (c *Client) WaitRouting(ctx context.Context, since uint64, wait time.Duration) (ri *proto.RoutingInfo, waited bool, err error) {
	var resp proto.GetRoutingResp
	req := proto.GetRoutingReq{Since: since, WaitMillis: uint32(wait.Milliseconds())}
	ctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	defer cancel()
	if _, err := c.c.Call(ctx, proto.MgmtdGetRouting, &req, &resp); err != nil {
		return nil, false, err
	}
	if resp.Routing == nil && (since == 0 || since != resp.Version) {
		return nil, false, proto.Errorf(proto.EIO, "mgmtd: GetRouting: version %d without routing info", resp.Version)
	}
	return resp.Routing, resp.Waited, nil
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

// AddToChainTable implements API.
func (c *Client) AddToChainTable(ctx context.Context, id uint32, chains []uint32) (proto.ChainTable, error) {
	var resp proto.AddToChainTableResp
	_, err := c.c.Call(ctx, proto.MgmtdAddToChainTable, &proto.AddToChainTableReq{ID: id, Chains: chains}, &resp)
	return resp.Table, err
}

// PlaceChains makes chains of replicas targets on distinct nodes from the
// unchained serving targets and appends them to chain table table.
func (c *Client) PlaceChains(ctx context.Context, table uint32, replicas int) (proto.PlaceChainsResp, error) {
	var resp proto.PlaceChainsResp
	_, err := c.c.Call(ctx, proto.MgmtdPlaceChains, &proto.PlaceChainsReq{Table: table, Replicas: replicas}, &resp)
	return resp, err
}

// SetTargetState implements API.
func (c *Client) SetTargetState(ctx context.Context, id uint32, state proto.TargetState) error {
	var resp proto.SetTargetStateResp
	_, err := c.c.Call(ctx, proto.MgmtdSetTargetState, &proto.SetTargetStateReq{TargetID: id, State: state}, &resp)
	return err
}

// Synced ends target id's resync: serving, if it is syncing and its chain
// is still at version cv (ChainVersionMismatch otherwise).
func (c *Client) Synced(ctx context.Context, id uint32, cv uint32) error {
	var resp proto.SetTargetStateResp
	_, err := c.c.Call(ctx, proto.MgmtdSetTargetState, &proto.SetTargetStateReq{TargetID: id, State: proto.TargetServing, ChainVersion: cv}, &resp)
	return err
}
