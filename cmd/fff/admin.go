package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/server/mgmtd"
)

// metaAdmin makes the meta service's administrative calls (users, WhoAmI,
// StatFS) with the proto messages. It is the one place `fff status` and
// `fff admin` call meta, so a libfff wrapper can replace it later.
type metaAdmin struct {
	c cluster.Caller // an *rpc.Pool or *rpc.Conn
}

func (m metaAdmin) whoAmI(ctx context.Context) (proto.MetaWhoAmIResp, error) {
	var resp proto.MetaWhoAmIResp
	_, err := m.c.Call(ctx, proto.MethodMetaWhoAmI, &struct{}{}, &resp)
	return resp, err
}

func (m metaAdmin) statFS(ctx context.Context) (proto.StatFS, error) {
	var resp proto.MetaStatFSResp
	_, err := m.c.Call(ctx, proto.MethodMetaStatFS, &struct{}{}, &resp)
	return resp.StatFS, err
}

// addUser creates a user and returns its token (shown once).
func (m metaAdmin) addUser(ctx context.Context, name string, uid uint32, gids []uint32, admin bool) (string, error) {
	var resp proto.MetaTokenResp
	_, err := m.c.Call(ctx, proto.MethodMetaUserAdd, &proto.MetaUserAddReq{Name: name, UID: uid, GIDs: gids, Admin: admin}, &resp)
	return resp.Token, err
}

func (m metaAdmin) listUsers(ctx context.Context) ([]proto.User, error) {
	var resp proto.MetaUserListResp
	_, err := m.c.Call(ctx, proto.MethodMetaUserList, &struct{}{}, &resp)
	return resp.Users, err
}

func (m metaAdmin) removeUser(ctx context.Context, name string) error {
	_, err := m.c.Call(ctx, proto.MethodMetaUserRemove, &proto.MetaUserReq{Name: name}, nil)
	return err
}

// rotateToken gives a user a new token, returned; the old one stops working.
func (m metaAdmin) rotateToken(ctx context.Context, name string) (string, error) {
	var resp proto.MetaTokenResp
	_, err := m.c.Call(ctx, proto.MethodMetaUserToken, &proto.MetaUserReq{Name: name}, &resp)
	return resp.Token, err
}

func newAdminCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer the cluster: nodes, targets, chains, chain tables, users",
		Long: `Administer the default cluster (FFF_CLUSTER and FFF_TOKEN, else the one 'fff up'
recorded). Listing nodes, targets and chains needs any valid token; managing
chains, chain tables and users needs an admin token (the one 'fff up' prints).`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.PersistentFlags().DurationVar(&timeout, "timeout", defaultAdminTimeout, "give up after this long")
	// run wraps the subcommands: a connection and a deadline, and errors
	// that say what to do.
	run := func(fn func(ctx context.Context, c *adminConn, w io.Writer) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := dialAdmin()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := fn(ctx, c, cmd.OutOrStdout()); err != nil {
				if refusedAdmin(ctx, c, err) {
					return &exitError{1, err} // meta's message says why
				}
				return c.explain(err)
			}
			return nil
		}
	}
	cmd.AddCommand(newAdminRoutingCmd("nodes", "List the nodes: roles, address, state, last heartbeat", run,
		func(w io.Writer, ri *proto.RoutingInfo) error { return mgmtd.RenderNodes(w, ri, time.Now()) },
		func(r routingJSON) any { return r.Nodes }))
	cmd.AddCommand(newAdminRoutingCmd("targets", "List the storage targets: node, state, chain, capacity, path", run,
		mgmtd.RenderTargets,
		func(r routingJSON) any { return r.Targets }))
	cmd.AddCommand(newAdminRoutingCmd("chains", "List the chains (targets head first) and the chain tables", run,
		func(w io.Writer, ri *proto.RoutingInfo) error {
			fmt.Fprintln(w, "CHAINS")
			if err := mgmtd.RenderChains(w, ri); err != nil {
				return err
			}
			fmt.Fprintln(w, "\nCHAIN TABLES")
			return mgmtd.RenderChainTables(w, ri)
		},
		func(r routingJSON) any {
			return struct {
				Chains      []chainJSON      `json:"chains"`
				ChainTables []chainTableJSON `json:"chain_tables"`
			}{r.Chains, r.ChainTables}
		}))
	cmd.AddCommand(newAdminUserCmd(run), newAdminChainCmd(run), newAdminTableCmd(run), newAdminTargetCmd(run), newAdminScrubCmd(), newAdminDumpCmd())
	return cmd
}

// refusedAdmin reports whether err refused an admin token, which then
// needs no admin token: meta refuses an admin too (removing the last admin
// user), and its message says why.
func refusedAdmin(ctx context.Context, c *adminConn, err error) bool {
	if !errors.Is(err, proto.ErrNotPermitted) && !errors.Is(err, proto.ErrPermissionDenied) {
		return false
	}
	who, werr := c.meta.whoAmI(ctx)
	return werr == nil && who.Admin
}

type adminRun func(fn func(ctx context.Context, c *adminConn, w io.Writer) error) func(*cobra.Command, []string) error

// newAdminRoutingCmd is a command that prints part of the routing info as
// a table (render) or, with --json, as JSON (pick).
func newAdminRoutingCmd(name, short string, run adminRun, render func(io.Writer, *proto.RoutingInfo) error, pick func(routingJSON) any) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   name,
		Short: short,
		Args:  exactArgs(0),
		RunE: run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			ri, err := c.routing(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(w, pick(routingToJSON(ri)))
			}
			return render(w, ri)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for machines")
	return cmd
}

func newAdminUserCmd(run adminRun) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage users and their tokens (admin token only)",
		Long: `Manage the cluster's users. A user is a name, a uid, groups (the first is the
primary group, given to new files) and an admin flag; it authenticates with a
token, which is printed once, when it is made. An admin (or uid 0) passes
every permission check. These commands need an admin token.`,
		Args: groupArgs,
		RunE: groupRun,
	}

	var uid uint32
	var gids []uint
	var admin bool
	add := &cobra.Command{
		Use:   "add NAME --uid N [--gid N ...] [--admin]",
		Short: "Add a user and print its token (shown only this once)",
		Long: `Add a user and print its token on stdout, alone on a line (shown only this
once: store it, e.g. as FFF_TOKEN). Without --gid the user's primary group is
its uid.`,
		Args: exactArgs(1),
	}
	add.Flags().Uint32Var(&uid, "uid", 0, "user id (required)")
	add.Flags().UintSliceVar(&gids, "gid", nil, "group id; repeat or separate with commas, the first is the primary group")
	add.Flags().BoolVar(&admin, "admin", false, "make the user an administrator (root everywhere)")
	add.RunE = func(cmd *cobra.Command, args []string) error {
		if !cmd.Flags().Changed("uid") {
			return usageErrorf("--uid is required")
		}
		g := make([]uint32, len(gids))
		for i, v := range gids {
			if v > math.MaxUint32 {
				return usageErrorf("--gid %d is out of range", v)
			}
			g[i] = uint32(v)
		}
		name := args[0]
		return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			tok, err := c.meta.addUser(ctx, name, uid, g, admin)
			if err != nil {
				return err
			}
			groups := joinIDs(g)
			if len(g) == 0 {
				groups = strconv.FormatUint(uint64(uid), 10) + " (the uid)"
			}
			kind := "user"
			if admin {
				kind = "admin user"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "added %s %s (uid %d, groups %s); its token follows, shown only this once:\n", kind, name, uid, groups)
			_, err = fmt.Fprintln(w, tok)
			return err
		})(cmd, args)
	}

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the users",
		Args:  exactArgs(0),
		RunE: run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			us, err := c.meta.listUsers(ctx)
			if err != nil {
				return err
			}
			if listJSON {
				type userJSON struct {
					Name    string    `json:"name"`
					UID     uint32    `json:"uid"`
					GIDs    []uint32  `json:"gids"`
					Admin   bool      `json:"admin"`
					Created time.Time `json:"created"`
				}
				out := []userJSON{}
				for _, u := range us {
					out = append(out, userJSON{u.Name, u.UID, nonNil(u.GIDs), u.Admin, time.Unix(0, u.Created).UTC()})
				}
				return writeJSON(w, out)
			}
			return renderUsers(w, us)
		}),
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON for machines")

	remove := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a user; its token stops authenticating new connections",
		Args:  exactArgs(1),
	}
	remove.RunE = func(cmd *cobra.Command, args []string) error {
		return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			if err := c.meta.removeUser(ctx, args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(w, "removed user %s\n", args[0])
			return err
		})(cmd, args)
	}

	token := &cobra.Command{
		Use:   "token NAME",
		Short: "Give a user a new token (printed once); the old one stops working",
		Args:  exactArgs(1),
	}
	token.RunE = func(cmd *cobra.Command, args []string) error {
		return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			tok, err := c.meta.rotateToken(ctx, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "new token for %s follows, shown only this once; the old one no longer authenticates:\n", args[0])
			_, err = fmt.Fprintln(w, tok)
			return err
		})(cmd, args)
	}

	cmd.AddCommand(add, list, remove, token)
	return cmd
}

// renderUsers prints one line per user: name, uid, groups, admin, created.
func renderUsers(w io.Writer, us []proto.User) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join([]string{"NAME", "UID", "GIDS", "ADMIN", "CREATED"}, "\t"))
	for _, u := range us {
		admin := "no"
		if u.Admin {
			admin = "yes"
		}
		created := "-"
		if u.Created != 0 {
			created = time.Unix(0, u.Created).Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", u.Name, u.UID, joinIDs(u.GIDs), admin, created)
	}
	return tw.Flush()
}
