package main

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"fff/internal/proto"
)

// fff admin chain … and fff admin table …: create chains over targets and
// put them in chain tables (files are striped over a table's chains). The
// changes are mgmtd's single-transaction operations (docs/cluster.md).

func newAdminChainCmd(run adminRun) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Create chains of storage targets (admin token only)",
		Args:  groupArgs,
		RunE:  groupRun,
	}
	create := &cobra.Command{
		Use:   "create TARGET [TARGET ...]",
		Short: "Create a chain over the targets, head first, and print its id",
		Long: `Create a chain over the given target ids, head first (see 'fff admin targets').
The targets must be on distinct nodes and in no other chain; each holds a copy
of the chain's chunks (docs/replication.md). Add the chain to a chain table
('fff admin table add') for new files to use it.`,
		Args: minArgs(1),
	}
	create.RunE = func(cmd *cobra.Command, args []string) error {
		ids, err := parseIDs("target", args)
		if err != nil {
			return err
		}
		return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			ch, err := c.mgmtd.CreateChain(ctx, ids)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "chain %d: targets %v (version %d)\n", ch.ID, ch.Targets, ch.Version)
			return nil
		})(cmd, args)
	}
	var replicas int
	var table uint32
	place := &cobra.Command{
		Use:   "place --replicas R",
		Short: "Make chains of R targets on distinct nodes from the targets in no chain",
		Long: `Make as many chains of R targets as the serving targets in no chain allow,
each chain's targets on R distinct nodes and the chains' heads spread over the
nodes, and append them to a chain table (--table, default 1), in one mgmtd
transaction. Storage nodes with storage.chains = "manual" register their
targets unchained for this (docs/replication.md). Targets left over (too few
distinct nodes) are listed and stay unchained.`,
		Args: cobra.NoArgs,
	}
	place.Flags().IntVar(&replicas, "replicas", 0, "targets per chain (copies of each chunk)")
	place.Flags().Uint32Var(&table, "table", 1, "chain table to append the chains to")
	place.RunE = func(cmd *cobra.Command, args []string) error {
		if replicas < 1 || table == 0 {
			return usageErrorf("--replicas %d --table %d: want a positive number of replicas and table id", replicas, table)
		}
		return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			resp, err := c.mgmtd.PlaceChains(ctx, table, replicas)
			if err != nil {
				return err
			}
			printPlaced(w, resp)
			return nil
		})(cmd, args)
	}
	cmd.AddCommand(create, place)
	return cmd
}

// newAdminTargetCmd is `fff admin target state ID STATE`: an operator's
// override of a target's state, e.g. to make a syncing member serve when
// the chain's last serving member is lost for good.
func newAdminTargetCmd(run adminRun) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "target",
		Short: "Change a storage target's state (admin token only)",
		Args:  groupArgs,
		RunE:  groupRun,
	}
	state := &cobra.Command{
		Use:   "state TARGET serving|syncing|offline",
		Short: "Set a target's state by hand",
		Long: `Set a target's state by hand. Resync makes returning targets serving by
itself; this is for what it cannot decide (docs/replication.md): a chain whose
last serving member is lost for good waits for it, and making another member
serving accepts losing what only the lost one had. Setting a target offline
takes it out of its chain's reads and writes.`,
		Args: exactArgs(2),
	}
	state.RunE = func(cmd *cobra.Command, args []string) error {
		ids, err := parseIDs("target", args[:1])
		if err != nil {
			return err
		}
		st, err := proto.ParseTargetState(args[1])
		if err != nil {
			return usageErrorf("%v", err)
		}
		return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
			if err := c.mgmtd.SetTargetState(ctx, ids[0], st); err != nil {
				return err
			}
			fmt.Fprintf(w, "target %d: %v\n", ids[0], st)
			return nil
		})(cmd, args)
	}
	cmd.AddCommand(state)
	return cmd
}

// printPlaced reports what PlaceChains made.
func printPlaced(w io.Writer, resp proto.PlaceChainsResp) {
	for _, ch := range resp.Chains {
		fmt.Fprintf(w, "chain %d: targets %v\n", ch.ID, ch.Targets)
	}
	if len(resp.Chains) > 0 {
		fmt.Fprintf(w, "chain table %d: chains %v (version %d)\n", resp.Table.ID, resp.Table.Chains, resp.Table.Version)
	} else {
		fmt.Fprintln(w, "no unchained serving targets: no chain made")
	}
	if len(resp.Unplaced) > 0 {
		fmt.Fprintf(w, "left in no chain (too few distinct nodes): targets %v\n", resp.Unplaced)
	}
}

func newAdminTableCmd(run adminRun) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "table",
		Short: "Edit chain tables, which new files are striped over (admin token only)",
		Args:  groupArgs,
		RunE:  groupRun,
	}
	edit := func(use, short, long string, op func(ctx context.Context, c *adminConn, id uint32, chains []uint32) (proto.ChainTable, error)) *cobra.Command {
		sub := &cobra.Command{Use: use, Short: short, Long: long, Args: minArgs(2)}
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			ids, err := parseIDs("chain table", args[:1])
			if err != nil {
				return err
			}
			chains, err := parseIDs("chain", args[1:])
			if err != nil {
				return err
			}
			return run(func(ctx context.Context, c *adminConn, w io.Writer) error {
				t, err := op(ctx, c, ids[0], chains)
				if err != nil {
					return err
				}
				fmt.Fprintf(w, "chain table %d: chains %v (version %d)\n", t.ID, t.Chains, t.Version)
				return nil
			})(cmd, args)
		}
		return sub
	}
	cmd.AddCommand(
		edit("add TABLE CHAIN [CHAIN ...]", "Append chains to a table (creating it), keeping the chains it lists",
			`Append the chains a table does not list yet, creating the table if it does not
exist, in one transaction. Files keep the chains their layouts recorded; new
files are striped over the table's chains.`,
			func(ctx context.Context, c *adminConn, id uint32, chains []uint32) (proto.ChainTable, error) {
				return c.mgmtd.AddToChainTable(ctx, id, chains)
			}),
		edit("set TABLE CHAIN [CHAIN ...]", "Replace a table's list of chains (creating it)",
			`Replace a table's list of chains, creating the table if it does not exist.
Chains left out keep their data: files record the chains they use, so only new
files stop using them.`,
			func(ctx context.Context, c *adminConn, id uint32, chains []uint32) (proto.ChainTable, error) {
				return c.mgmtd.SetChainTable(ctx, id, chains)
			}),
	)
	return cmd
}

// parseIDs parses positive uint32 ids of kind what.
func parseIDs(what string, args []string) ([]uint32, error) {
	out := make([]uint32, len(args))
	for i, a := range args {
		v, err := strconv.ParseUint(a, 10, 32)
		if err != nil || v == 0 {
			return nil, usageErrorf("%s id %q: want a positive number", what, a)
		}
		out[i] = uint32(v)
	}
	return out, nil
}
