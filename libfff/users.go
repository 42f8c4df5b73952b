package libfff

import (
	"context"
	"fmt"

	"fff/internal/proto"
)

// Identity is who a client is to the cluster: the user its token belongs
// to. Admin users, and uid 0, are root for permission checks.
type Identity struct {
	Name  string
	UID   uint32
	GIDs  []uint32 // GIDs[0] is the primary group, given to new files
	Admin bool
}

// WhoAmI returns the identity the cluster knows the client's token as.
func (c *Client) WhoAmI(ctx context.Context) (Identity, error) {
	var resp proto.MetaWhoAmIResp
	if err := c.metaCall(ctx, proto.MethodMetaWhoAmI, nil, &resp); err != nil {
		return Identity{}, errf("whoami", err)
	}
	return Identity{Name: resp.Name, UID: resp.UID, GIDs: resp.GIDs, Admin: resp.Admin}, nil
}

// UserAdd creates user name with uid and groups gids (the first is the
// primary group; none: the uid is the group) and returns its token, which
// the cluster does not keep: it is shown this once. Admin only (EPERM);
// EEXIST if the name is taken.
func (c *Client) UserAdd(ctx context.Context, name string, uid uint32, gids []uint32, admin bool) (string, error) {
	var resp proto.MetaTokenResp
	err := c.metaCall(ctx, proto.MethodMetaUserAdd, &proto.MetaUserAddReq{Name: name, UID: uid, GIDs: gids, Admin: admin}, &resp)
	if err != nil {
		return "", errf("user add "+name, err)
	}
	return resp.Token, nil
}

// UserList returns every user (never tokens). Admin only.
func (c *Client) UserList(ctx context.Context) ([]proto.User, error) {
	var resp proto.MetaUserListResp
	if err := c.metaCall(ctx, proto.MethodMetaUserList, nil, &resp); err != nil {
		return nil, errf("user list", err)
	}
	return resp.Users, nil
}

// UserRemove removes user name; its token stops working for new
// connections. Admin only; the last admin cannot be removed (EPERM).
func (c *Client) UserRemove(ctx context.Context, name string) error {
	if err := c.metaCall(ctx, proto.MethodMetaUserRemove, &proto.MetaUserReq{Name: name}, nil); err != nil {
		return errf("user remove "+name, err)
	}
	return nil
}

// UserRotateToken gives user name a new token and returns it; the old one
// stops working for new connections. Admin only.
func (c *Client) UserRotateToken(ctx context.Context, name string) (string, error) {
	var resp proto.MetaTokenResp
	if err := c.metaCall(ctx, proto.MethodMetaUserToken, &proto.MetaUserReq{Name: name}, &resp); err != nil {
		return "", errf("user token "+name, err)
	}
	return resp.Token, nil
}

// errf wraps the error of an operation without a path.
func errf(op string, err error) error { return fmt.Errorf("libfff: %s: %w", op, err) }
