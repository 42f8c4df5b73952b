package mgmtd

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"fff/internal/proto"
)

// The Render functions print routing info as aligned text tables for `fff
// admin`. They are pure: the output depends only on their arguments.

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

// RenderNodes prints one line per node: id, roles, address, hostname,
// state, and the age of its last heartbeat relative to now ("-" if mgmtd
// has not heard from it since it started).
func RenderNodes(w io.Writer, ri *proto.RoutingInfo, now time.Time) error {
	tw := newTable(w, "ID", "ROLES", "ADDR", "HOSTNAME", "STATE", "LAST HEARTBEAT")
	for _, n := range ri.Nodes {
		hb := "-"
		if !n.LastHeartbeat.IsZero() {
			hb = now.Sub(n.LastHeartbeat).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%d\t%v\t%s\t%s\t%v\t%s\n", n.ID, n.Roles, n.Addr, orDash(n.Hostname), n.State, hb)
	}
	return tw.Flush()
}

// RenderTargets prints one line per target: id, node, state, chain ("-" if
// none), capacity, used bytes and percentage ("-" before the first
// heartbeat with stats), and path.
func RenderTargets(w io.Writer, ri *proto.RoutingInfo) error {
	tw := newTable(w, "ID", "NODE", "STATE", "CHAIN", "CAPACITY", "USED", "USE%", "PATH")
	for _, t := range ri.Targets {
		capacity, used, pct := "-", "-", "-"
		if t.Capacity > 0 {
			capacity, used = humanize.IBytes(t.Capacity), humanize.IBytes(t.Used)
			pct = strconv.FormatFloat(100*float64(t.Used)/float64(t.Capacity), 'f', 1, 64) + "%"
		}
		fmt.Fprintf(tw, "%d\t%d\t%v\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.NodeID, t.State, idOrDash(t.ChainID), capacity, used, pct, t.Path)
	}
	return tw.Flush()
}

// RenderChains prints one line per chain: id, version, and its targets head
// first as id(state), e.g. "3(serving) 7(syncing) 9(offline)".
func RenderChains(w io.Writer, ri *proto.RoutingInfo) error {
	tw := newTable(w, "ID", "VERSION", "TARGETS (HEAD FIRST)")
	for _, c := range ri.Chains {
		parts := make([]string, len(c.Targets))
		for i, id := range c.Targets {
			state := "unknown"
			if t := ri.Target(id); t != nil {
				state = t.State.String()
			}
			parts[i] = fmt.Sprintf("%d(%s)", id, state)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\n", c.ID, c.Version, strings.Join(parts, " "))
	}
	return tw.Flush()
}

// RenderChainTables prints one line per chain table: id, version, number
// of chains, and the chain ids in order.
func RenderChainTables(w io.Writer, ri *proto.RoutingInfo) error {
	tw := newTable(w, "ID", "VERSION", "CHAINS", "CHAIN IDS")
	for _, t := range ri.ChainTables {
		ids := make([]string, len(t.Chains))
		for i, c := range t.Chains {
			ids[i] = strconv.FormatUint(uint64(c), 10)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%s\n", t.ID, t.Version, len(t.Chains), strings.Join(ids, " "))
	}
	return tw.Flush()
}

// RenderSummary prints one line: the routing version and how many nodes,
// targets and chains there are and are healthy, e.g.
// "routing version 12: 3 nodes (2 up), 6 targets (4 serving, 1 syncing, 1 offline), 2 chains, 1 chain table".
func RenderSummary(w io.Writer, ri *proto.RoutingInfo) error {
	up := 0
	for _, n := range ri.Nodes {
		if n.State == proto.NodeUp {
			up++
		}
	}
	var byState [4]int
	for _, t := range ri.Targets {
		if t.State.Valid() {
			byState[t.State]++
		}
	}
	_, err := fmt.Fprintf(w, "routing version %d: %s (%d up), %s (%d serving, %d syncing, %d offline), %s, %s\n",
		ri.Version, plural(len(ri.Nodes), "node"), up, plural(len(ri.Targets), "target"),
		byState[proto.TargetServing], byState[proto.TargetSyncing], byState[proto.TargetOffline],
		plural(len(ri.Chains), "chain"), plural(len(ri.ChainTables), "chain table"))
	return err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func idOrDash(id uint32) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatUint(uint64(id), 10)
}
