package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"fff/internal/cluster"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/libfff"
)

// The cluster commands `fff status` and `fff admin` talk to the default
// cluster (libfff.DefaultCluster: FFF_CLUSTER and FFF_TOKEN, else what
// `fff up` recorded) over one small rpc.Pool: mgmtd's methods through
// cluster.Client, meta's through metaAdmin (admin.go).

// defaultAdminTimeout bounds each cluster command's round trips.
const defaultAdminTimeout = 10 * time.Second

// adminConn is a connection to the default cluster.
type adminConn struct {
	info  libfff.ClusterInfo
	pool  *rpc.Pool
	mgmtd *cluster.Client
	meta  metaAdmin
}

// dialAdmin resolves the default cluster and prepares a pool to it (it
// dials on the first call). Failures are exit-status-1 errors that say what
// to do.
func dialAdmin() (*adminConn, error) {
	info, err := libfff.DefaultCluster()
	if err != nil {
		return nil, &exitError{1, err}
	}
	tcfg, err := info.TLSConfig()
	if err != nil {
		return nil, &exitError{1, err}
	}
	pool := rpc.NewPool(info.Address, info.Token, rpc.PoolOptions{Size: 1, Client: rpc.ClientOptions{TLS: tcfg}})
	return &adminConn{info: info, pool: pool, mgmtd: cluster.NewClient(pool), meta: metaAdmin{pool}}, nil
}

func (c *adminConn) Close() error { return c.pool.Close() }

// routing fetches the current routing info.
func (c *adminConn) routing(ctx context.Context) (*proto.RoutingInfo, error) {
	ri, err := c.mgmtd.GetRouting(ctx, 0)
	if err != nil {
		return nil, c.explain(err)
	}
	return ri, nil
}

// explain turns the errors of reaching the cluster into messages that say
// what to do; other errors keep their text.
func (c *adminConn) explain(err error) error {
	where := "the fff cluster at " + c.info.Address
	if c.info.DataDir != "" {
		where += " (local, data " + c.info.DataDir + ")"
	}
	switch {
	case errors.Is(err, rpc.ErrTLS):
		return &exitError{1, fmt.Errorf("cannot connect to %s: %v", where, err)}
	case errors.Is(err, proto.ErrUnauthenticated):
		return &exitError{1, fmt.Errorf("%s refused the token: set FFF_TOKEN to a valid token (the admin token of a local cluster is in DATA/admin.token)", where)}
	case errors.Is(err, proto.ErrProtocolVersion):
		return &exitError{1, fmt.Errorf("cannot talk to %s: %v\n(a TLS cluster needs its CA: FFF_CA=DATA/tls/ca.pem, or the cluster file of 'fff up --tls')", where, err)}
	case proto.CodeOf(err) == proto.Unavailable, proto.CodeOf(err) == proto.Timeout:
		hint := "Is it running? Start a local cluster with `fff up`, or point FFF_CLUSTER at a running one"
		return &exitError{1, fmt.Errorf("cannot reach %s: %v\n%s", where, err, hint)}
	case errors.Is(err, proto.ErrNotPermitted), errors.Is(err, proto.ErrPermissionDenied):
		return &exitError{1, fmt.Errorf("permission denied: %v (this needs an admin token)", err)}
	}
	return err
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the state of the default cluster",
		Long: `Show the state of the default cluster (FFF_CLUSTER and FFF_TOKEN, else the
one 'fff up' recorded). The first line is its health and why:

  healthy      every chain has all its copies, nothing needs attention (exit 0)
  degraded     the cluster serves, with less redundancy or headroom than it
               should have: nodes down, chains missing copies (with their
               resyncs' progress and ETA), a disk over 90% full, no mgmtd
               leader, this host's clock off mgmtd's (exit 3)
  unavailable  some data or the namespace cannot be served: a chain without
               a serving copy, the metadata service not answering (exit 4)

Then its address, the routing version, nodes up and down, targets by state
with their capacity where reported, chains, chain tables, the number of
inodes and who the token belongs to. 'fff admin nodes|targets|chains' list
the details; 'fff top' shows what the nodes are doing. Exits 1 when no
cluster is configured or it cannot be reached.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			c, err := dialAdmin()
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := gatherStatus(ctx, c)
			if err != nil {
				return err
			}
			if asJSON {
				err = writeJSON(cmd.OutOrStdout(), st)
			} else {
				err = printStatus(cmd.OutOrStdout(), st)
			}
			if err != nil {
				return err
			}
			switch st.Health.State {
			case healthDegraded:
				return &exitError{code: exitDegraded}
			case healthUnavailable:
				return &exitError{code: exitUnavailable}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON for machines")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultAdminTimeout, "give up after this long")
	return cmd
}

// clusterStatus is what `fff status` reports; its JSON form is `--json`.
// leaderJSON is the elected mgmtd (over a shared KV).
type leaderJSON struct {
	Node uint32 `json:"node"`
	Term uint64 `json:"term"`
}

type clusterStatus struct {
	Health         healthJSON   `json:"health"`
	Address        string       `json:"address"`
	DataDir        string       `json:"data_dir,omitempty"`
	PID            int          `json:"pid,omitempty"`
	TLS            bool         `json:"tls"` // the client pins the cluster's CA: TCP under TLS
	RoutingVersion uint64       `json:"routing_version"`
	Leader         *leaderJSON  `json:"mgmtd_leader,omitempty"`
	User           *whoAmIJSON  `json:"user,omitempty"`
	UserError      string       `json:"user_error,omitempty"`
	Nodes          nodeCounts   `json:"nodes"`
	Targets        targetCounts `json:"targets"`
	Chains         int          `json:"chains"`
	ChainTables    int          `json:"chain_tables"`
	StatFS         *statFSJSON  `json:"statfs,omitempty"`
	StatFSError    string       `json:"statfs_error,omitempty"`
	Routing        routingJSON  `json:"routing"`
	routing        *proto.RoutingInfo
	statFSErr      error // StatFSError's error
	capacityStatFS bool
}

type nodeCounts struct {
	Total int      `json:"total"`
	Up    int      `json:"up"`
	Down  int      `json:"down"`
	DownI []uint32 `json:"down_ids,omitempty"`
}

type targetCounts struct {
	Total   int `json:"total"`
	Serving int `json:"serving"`
	Syncing int `json:"syncing"`
	Offline int `json:"offline"`
	// Reported is how many targets have reported usage, on Filesystems
	// distinct filesystems (targets of one node with the same FSID share
	// one; an unknown FSID counts as its own). Capacity and Used sum the
	// filesystems', each once (every replica counts).
	Reported    int      `json:"reported"`
	Filesystems int      `json:"filesystems"`
	Capacity    uint64   `json:"capacity_bytes"`
	Used        uint64   `json:"used_bytes"`
	NotServing  []uint32 `json:"not_serving_ids,omitempty"`
}

type whoAmIJSON struct {
	Name  string   `json:"name"`
	UID   uint32   `json:"uid"`
	GIDs  []uint32 `json:"gids"`
	Admin bool     `json:"admin"`
}

type statFSJSON struct {
	Inodes     uint64 `json:"inodes"`
	TotalBytes uint64 `json:"total_bytes"`
	FreeBytes  uint64 `json:"free_bytes"`
}

// routingJSON is proto.RoutingInfo with JSON names and states as words.
type routingJSON struct {
	Version     uint64           `json:"version"`
	Nodes       []nodeJSON       `json:"nodes"`
	Targets     []targetJSON     `json:"targets"`
	Chains      []chainJSON      `json:"chains"`
	ChainTables []chainTableJSON `json:"chain_tables"`
}

type nodeJSON struct {
	ID            uint32     `json:"id"`
	Roles         string     `json:"roles"`
	Addr          string     `json:"addr"`
	Hostname      string     `json:"hostname"`
	State         string     `json:"state"`
	LastHeartbeat *time.Time `json:"last_heartbeat,omitempty"`
	Metrics       string     `json:"metrics,omitempty"` // its metrics listener, from its heartbeats
}

type targetJSON struct {
	ID       uint32 `json:"id"`
	NodeID   uint32 `json:"node_id"`
	Path     string `json:"path"`
	State    string `json:"state"`
	ChainID  uint32 `json:"chain_id"`
	Capacity uint64 `json:"capacity_bytes"`
	Used     uint64 `json:"used_bytes"`
	FSID     uint64 `json:"fsid,omitempty"`
	// Resync is a syncing target's resync progress.
	Resync *resyncJSON `json:"resync,omitempty"`
}

type resyncJSON struct {
	From          uint32 `json:"from"`
	ChunksChecked int64  `json:"chunks_compared"`
	ChunksTotal   int64  `json:"chunks_total"`
	ChunksSent    int64  `json:"chunks_sent"`
	BytesSent     int64  `json:"bytes_sent"`
}

type chainJSON struct {
	ID      uint32   `json:"id"`
	Version uint32   `json:"version"`
	Targets []uint32 `json:"targets"`
}

type chainTableJSON struct {
	ID      uint32   `json:"id"`
	Version uint32   `json:"version"`
	Chains  []uint32 `json:"chains"`
}

func routingToJSON(ri *proto.RoutingInfo) routingJSON {
	out := routingJSON{Version: ri.Version, Nodes: []nodeJSON{}, Targets: []targetJSON{}, Chains: []chainJSON{}, ChainTables: []chainTableJSON{}}
	for _, n := range ri.Nodes {
		j := nodeJSON{ID: n.ID, Roles: n.Roles.String(), Addr: n.Addr, Hostname: n.Hostname, State: n.State.String(), Metrics: n.Metrics}
		if !n.LastHeartbeat.IsZero() {
			hb := n.LastHeartbeat
			j.LastHeartbeat = &hb
		}
		out.Nodes = append(out.Nodes, j)
	}
	for _, t := range ri.Targets {
		j := targetJSON{ID: t.ID, NodeID: t.NodeID, Path: t.Path, State: t.State.String(),
			ChainID: t.ChainID, Capacity: t.Capacity, Used: t.Used, FSID: t.FSID}
		if r := t.Resync; r != nil {
			j.Resync = &resyncJSON{From: r.From, ChunksChecked: r.Chunks, ChunksTotal: r.Total, ChunksSent: r.Sent, BytesSent: r.Bytes}
		}
		out.Targets = append(out.Targets, j)
	}
	for _, c := range ri.Chains {
		out.Chains = append(out.Chains, chainJSON{ID: c.ID, Version: c.Version, Targets: nonNil(c.Targets)})
	}
	for _, t := range ri.ChainTables {
		out.ChainTables = append(out.ChainTables, chainTableJSON{ID: t.ID, Version: t.Version, Chains: nonNil(t.Chains)})
	}
	return out
}

func nonNil(s []uint32) []uint32 {
	if s == nil {
		return []uint32{}
	}
	return s
}

// gatherStatus asks mgmtd for the routing info (which must succeed) and
// meta for StatFS and WhoAmI (reported as unavailable when they fail: the
// address may be an mgmtd-only node).
func gatherStatus(ctx context.Context, c *adminConn) (*clusterStatus, error) {
	ri, err := c.routing(ctx)
	if err != nil {
		return nil, err
	}
	st := &clusterStatus{Address: c.info.Address, DataDir: c.info.DataDir, PID: c.info.PID, TLS: c.info.CA != "",
		RoutingVersion: ri.Version, routing: ri, Routing: routingToJSON(ri),
		Chains: len(ri.Chains), ChainTables: len(ri.ChainTables)}
	if ri.Leader != 0 {
		st.Leader = &leaderJSON{Node: ri.Leader, Term: ri.LeaderTerm}
	}
	for _, n := range ri.Nodes {
		st.Nodes.Total++
		if n.State == proto.NodeUp {
			st.Nodes.Up++
		} else {
			st.Nodes.Down++
			st.Nodes.DownI = append(st.Nodes.DownI, n.ID)
		}
	}
	st.Targets = countTargets(ri)
	if who, err := c.meta.whoAmI(ctx); err != nil {
		st.UserError = err.Error()
	} else {
		st.User = &whoAmIJSON{Name: who.Name, UID: who.UID, GIDs: nonNil(who.GIDs), Admin: who.Admin}
	}
	if fs, err := c.meta.statFS(ctx); err != nil {
		st.StatFSError, st.statFSErr = err.Error(), err
	} else {
		st.StatFS = &statFSJSON{Inodes: fs.Inodes, TotalBytes: fs.TotalBytes, FreeBytes: fs.FreeBytes}
	}
	st.Health = assessHealth(st, resyncRates(ctx, c, ri), clockSkew(ri, time.Now()))
	return st, nil
}

// countTargets counts ri's targets by state and sums their reported usage,
// each filesystem (node and FSID) once.
func countTargets(ri *proto.RoutingInfo) targetCounts {
	var tc targetCounts
	type fsKey struct {
		node uint32
		fsid uint64
	}
	seenFS := map[fsKey]bool{}
	for _, t := range ri.Targets {
		tc.Total++
		switch t.State {
		case proto.TargetServing:
			tc.Serving++
		case proto.TargetSyncing:
			tc.Syncing++
		default:
			tc.Offline++
		}
		if t.State != proto.TargetServing {
			tc.NotServing = append(tc.NotServing, t.ID)
		}
		if t.Capacity > 0 {
			tc.Reported++
			if k := (fsKey{t.NodeID, t.FSID}); t.FSID == 0 || !seenFS[k] {
				seenFS[k] = true
				tc.Filesystems++
				tc.Capacity += t.Capacity
				tc.Used += t.Used
			}
		}
	}
	return tc
}

func printStatus(w io.Writer, st *clusterStatus) error {
	var b strings.Builder
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-14s%s\n", k+":", fmt.Sprintf(format, args...))
	}
	where := st.Address
	if st.DataDir != "" {
		where += fmt.Sprintf(" (local cluster, data %s", st.DataDir)
		if st.PID > 0 {
			where += fmt.Sprintf(", pid %d", st.PID)
		}
		where += ")"
	}
	line("health", "%s", st.Health.State)
	for _, r := range st.Health.Reasons {
		fmt.Fprintf(&b, "%-14s- %s\n", "", r)
	}
	line("cluster", "%s", where)
	if st.TLS {
		line("tls", "on (the cluster's CA is pinned)")
	} else {
		line("tls", "off (TCP in clear; the handshake does not reveal the token)")
	}
	switch {
	case st.User != nil:
		role := "user"
		if st.User.Admin {
			role = "admin"
		}
		line("token", "%s (uid %d, gids %s, %s)", st.User.Name, st.User.UID, joinIDs(st.User.GIDs), role)
	default:
		line("token", "unknown (%s)", st.UserError)
	}
	line("routing", "version %d", st.RoutingVersion)
	if st.Leader != nil {
		line("mgmtd", "leader node %d (term %d)", st.Leader.Node, st.Leader.Term)
	}
	nodes := fmt.Sprintf("%d (%d up, %d down)", st.Nodes.Total, st.Nodes.Up, st.Nodes.Down)
	if len(st.Nodes.DownI) > 0 {
		nodes += "; down: " + joinIDs(st.Nodes.DownI)
	}
	line("nodes", "%s", nodes)
	t := st.Targets
	targets := fmt.Sprintf("%d (%d serving, %d syncing, %d offline)", t.Total, t.Serving, t.Syncing, t.Offline)
	if len(t.NotServing) > 0 {
		targets += "; not serving: " + joinIDs(t.NotServing)
	}
	line("targets", "%s", targets)
	for _, tg := range st.routing.Targets {
		if tg.State != proto.TargetSyncing {
			continue
		}
		r := tg.Resync
		if r == nil {
			line("resync", "target %d (chain %d): waiting for its predecessor to start", tg.ID, tg.ChainID)
			continue
		}
		done := ""
		if r.Total > 0 {
			done = fmt.Sprintf(" (%.0f%%)", 100*float64(min(r.Chunks, r.Total))/float64(r.Total))
		}
		line("resync", "target %d (chain %d) from %d: %d of %d chunks compared%s, %d sent (%s)",
			tg.ID, tg.ChainID, r.From, r.Chunks, r.Total, done, r.Sent, humanize.IBytes(uint64(r.Bytes)))
	}
	switch {
	case st.StatFS != nil && st.StatFS.TotalBytes > 0:
		used := st.StatFS.TotalBytes - min(st.StatFS.FreeBytes, st.StatFS.TotalBytes)
		note := "one replica per chain"
		if t.Reported > 0 {
			note += "; " + onFilesystems(t)
		}
		line("capacity", "%s, %s used (%.1f%%), %s free (%s)",
			humanize.IBytes(st.StatFS.TotalBytes), humanize.IBytes(used),
			100*float64(used)/float64(st.StatFS.TotalBytes), humanize.IBytes(st.StatFS.FreeBytes), note)
	case t.Reported > 0:
		line("capacity", "%s, %s used (%s of %d targets, each filesystem counted once, every replica counted)",
			humanize.IBytes(t.Capacity), humanize.IBytes(t.Used), onFilesystems(t), t.Total)
	default:
		line("capacity", "unknown (no target has reported its usage)")
	}
	line("chains", "%d", st.Chains)
	tables := strconv.Itoa(st.ChainTables)
	if st.ChainTables > 0 {
		var parts []string
		for _, ct := range st.routing.ChainTables {
			parts = append(parts, fmt.Sprintf("table %d: %d chains", ct.ID, len(ct.Chains)))
		}
		tables += " (" + strings.Join(parts, ", ") + ")"
	}
	line("chain tables", "%s", tables)
	if st.StatFS != nil {
		line("inodes", "%d", st.StatFS.Inodes)
	} else {
		line("inodes", "unknown (%s)", st.StatFSError)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// onFilesystems says how the reported targets share filesystems, e.g.
// "2 targets on 1 filesystem": capacity counts each filesystem once.
func onFilesystems(t targetCounts) string {
	return fmt.Sprintf("%s on %s", plural(t.Reported, "target"), plural(t.Filesystems, "filesystem"))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func joinIDs(ids []uint32) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
