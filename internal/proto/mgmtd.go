package proto

// This file holds the cluster model that mgmtd publishes (DESIGN §5) and the
// messages of mgmtd's RPC methods. See docs/cluster.md for the semantics.

import (
	"slices"
	"strings"
	"time"
)

// Method numbers of mgmtd. Methods 1..99 are reserved for mgmtd; they never
// change once assigned.
const (
	// MgmtdGetRouting: GetRoutingReq → GetRoutingResp. Any authenticated
	// caller.
	MgmtdGetRouting uint16 = 1
	// MgmtdHeartbeat: HeartbeatReq → HeartbeatResp. Admin token only.
	MgmtdHeartbeat uint16 = 2
	// MgmtdRegisterNode: RegisterNodeReq → RegisterNodeResp. Admin only.
	MgmtdRegisterNode uint16 = 3
	// MgmtdRegisterTargets: RegisterTargetsReq → RegisterTargetsResp. Admin
	// only.
	MgmtdRegisterTargets uint16 = 4
	// MgmtdCreateChain: CreateChainReq → CreateChainResp. Admin only.
	MgmtdCreateChain uint16 = 5
	// MgmtdSetChainTable: SetChainTableReq → SetChainTableResp (ID 0 creates
	// a table with a new id). Admin only.
	MgmtdSetChainTable uint16 = 6
	// MgmtdSetTargetState: SetTargetStateReq → SetTargetStateResp. Admin
	// only.
	MgmtdSetTargetState uint16 = 7
	// MgmtdAddToChainTable: AddToChainTableReq → AddToChainTableResp.
	// Admin only.
	MgmtdAddToChainTable uint16 = 8
	// MgmtdPlaceChains: PlaceChainsReq → PlaceChainsResp. Admin only.
	MgmtdPlaceChains uint16 = 9

	// MgmtdMethodMax is the last method number reserved for mgmtd.
	MgmtdMethodMax uint16 = 99
)

// Roles is the set of roles a node runs, a bitmask.
type Roles uint8

// The roles.
const (
	RoleMgmtd Roles = 1 << iota
	RoleMeta
	RoleStorage

	// RolesAll is every role: an `fffd local` node.
	RolesAll = RoleMgmtd | RoleMeta | RoleStorage
)

// Has reports whether r includes every role of q.
func (r Roles) Has(q Roles) bool { return r&q == q }

// String returns the roles as "mgmtd,meta,storage" (in that order), "-" for
// none.
func (r Roles) String() string {
	var s []string
	if r.Has(RoleMgmtd) {
		s = append(s, "mgmtd")
	}
	if r.Has(RoleMeta) {
		s = append(s, "meta")
	}
	if r.Has(RoleStorage) {
		s = append(s, "storage")
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

// NodeState says whether mgmtd considers a node alive.
type NodeState uint8

// Node states. The zero value is not a valid state.
const (
	// NodeUp: the node registered and has heartbeated within the timeout.
	NodeUp NodeState = 1
	// NodeDown: the node missed its heartbeats for the timeout.
	NodeDown NodeState = 2
)

func (s NodeState) String() string {
	switch s {
	case NodeUp:
		return "up"
	case NodeDown:
		return "down"
	}
	return "unknown"
}

// TargetState is the state of a storage target (DESIGN §5).
type TargetState uint8

// Target states. The zero value is not a valid state.
const (
	// TargetServing: up to date; receives writes and serves reads.
	TargetServing TargetState = 1
	// TargetSyncing: catching up after a return; receives new writes but
	// serves no reads.
	TargetSyncing TargetState = 2
	// TargetOffline: its node is down (or an admin took it out); it is
	// skipped by reads and writes and sits at the end of its chain.
	TargetOffline TargetState = 3
)

func (s TargetState) String() string {
	switch s {
	case TargetServing:
		return "serving"
	case TargetSyncing:
		return "syncing"
	case TargetOffline:
		return "offline"
	}
	return "unknown"
}

// Valid reports whether s is one of the defined states.
func (s TargetState) Valid() bool { return s >= TargetServing && s <= TargetOffline }

// ParseTargetState parses "serving", "syncing" or "offline".
func ParseTargetState(s string) (TargetState, error) {
	for _, t := range []TargetState{TargetServing, TargetSyncing, TargetOffline} {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return 0, Errorf(EINVAL, "unknown target state %q (want serving, syncing or offline)", s)
}

// Node is a process of the cluster.
type Node struct {
	ID       uint32    `msgpack:"id"`
	Roles    Roles     `msgpack:"roles"`
	Addr     string    `msgpack:"addr"` // host:port its RPC server listens on
	Hostname string    `msgpack:"hostname"`
	State    NodeState `msgpack:"state"`
	// LastHeartbeat is when mgmtd last heard from the node (zero if not
	// since mgmtd started). It is live information, not part of the
	// versioned routing state: it changes without a version bump.
	LastHeartbeat time.Time `msgpack:"last_heartbeat"`
	// Metrics is the address of the node's Prometheus metrics listener,
	// as its last heartbeat said ("" if none). Live, like LastHeartbeat.
	Metrics string `msgpack:"metrics,omitempty"`
}

// Target is a directory on one disk of a storage node.
type Target struct {
	ID     uint32      `msgpack:"id"`
	NodeID uint32      `msgpack:"node_id"`
	Path   string      `msgpack:"path"`
	State  TargetState `msgpack:"state"`
	// ChainID is the chain the target belongs to, 0 if none.
	ChainID uint32 `msgpack:"chain_id"`
	// Capacity and Used are the byte counts of the target's file system as
	// last reported in a heartbeat: live information, not versioned.
	Capacity uint64 `msgpack:"capacity"`
	Used     uint64 `msgpack:"used"`
	// FSID identifies the target's file system on its node (see
	// TargetStats.FSID; 0: unknown). Live information, like Capacity.
	FSID uint64 `msgpack:"fsid,omitempty"`
	// Resync is the progress of a syncing target's resync, as its
	// predecessor's node last reported it (nil: none reported). Live.
	Resync *ResyncStats `msgpack:"resync,omitempty"`
}

// Chain is an ordered list of targets on distinct nodes, head first. Its
// order is always: serving targets, then syncing, then offline ones (stable
// within each group). Version starts at 1 and increases whenever the order
// or a member's state changes.
type Chain struct {
	ID      uint32   `msgpack:"id"`
	Version uint32   `msgpack:"version"`
	Targets []uint32 `msgpack:"targets"`
	// LastServing is the target that served last when no member of the
	// chain serves (0 while one does): the one that holds every
	// acknowledged write, which alone may serve again when it returns
	// (the others resync from it).
	LastServing uint32 `msgpack:"last_serving,omitempty"`
}

// ChainTable is an ordered list of chains that files are striped over.
// Version starts at 1 and increases whenever the list changes.
type ChainTable struct {
	ID      uint32   `msgpack:"id"`
	Version uint32   `msgpack:"version"`
	Chains  []uint32 `msgpack:"chains"`
}

// RoutingInfo is everything mgmtd publishes, under one version that
// increases on every change of the versioned state (every field except
// Node.LastHeartbeat, Target.Capacity and Target.Used). Each slice is
// sorted by ID. Values handed out by a RoutingCache are shared: treat them
// as read-only (Clone gives a private copy).
type RoutingInfo struct {
	Version     uint64       `msgpack:"version"`
	Nodes       []Node       `msgpack:"nodes"`
	Targets     []Target     `msgpack:"targets"`
	Chains      []Chain      `msgpack:"chains"`
	ChainTables []ChainTable `msgpack:"chain_tables"`
	// ClusterID is the cluster's random id, created once by mgmtd: target
	// directories record it, so one of another cluster is refused.
	ClusterID string `msgpack:"cluster_id,omitempty"`
	// Leader and LeaderTerm are the elected mgmtd that answered (node id)
	// and its term, over a shared KV; zero with one mgmtd (bbolt) or from
	// a follower that could not reach a leader. Live, like the heartbeat
	// times: they change without a version change.
	Leader     uint32 `msgpack:"leader,omitempty"`
	LeaderTerm uint64 `msgpack:"leader_term,omitempty"`
}

func find[T any](s []T, id uint32, key func(*T) uint32) *T {
	i, ok := slices.BinarySearchFunc(s, id, func(e T, id uint32) int {
		k := key(&e)
		switch {
		case k < id:
			return -1
		case k > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return &s[i]
}

// Node returns the node with the given id, or nil.
func (r *RoutingInfo) Node(id uint32) *Node {
	return find(r.Nodes, id, func(n *Node) uint32 { return n.ID })
}

// Target returns the target with the given id, or nil.
func (r *RoutingInfo) Target(id uint32) *Target {
	return find(r.Targets, id, func(t *Target) uint32 { return t.ID })
}

// Chain returns the chain with the given id, or nil.
func (r *RoutingInfo) Chain(id uint32) *Chain {
	return find(r.Chains, id, func(c *Chain) uint32 { return c.ID })
}

// ChainTable returns the chain table with the given id, or nil.
func (r *RoutingInfo) ChainTable(id uint32) *ChainTable {
	return find(r.ChainTables, id, func(t *ChainTable) uint32 { return t.ID })
}

// Clone returns a deep copy of r (nil for nil).
func (r *RoutingInfo) Clone() *RoutingInfo {
	if r == nil {
		return nil
	}
	c := &RoutingInfo{
		Version:     r.Version,
		Nodes:       slices.Clone(r.Nodes),
		Targets:     slices.Clone(r.Targets),
		Chains:      slices.Clone(r.Chains),
		ChainTables: slices.Clone(r.ChainTables),
		ClusterID:   r.ClusterID,
		Leader:      r.Leader,
		LeaderTerm:  r.LeaderTerm,
	}
	for i := range c.Chains {
		c.Chains[i].Targets = slices.Clone(c.Chains[i].Targets)
	}
	for i := range c.ChainTables {
		c.ChainTables[i].Chains = slices.Clone(c.ChainTables[i].Chains)
	}
	return c
}

// TargetStats is a target's usage as reported in a heartbeat.
type TargetStats struct {
	ID       uint32 `msgpack:"id"`
	Capacity uint64 `msgpack:"capacity"`
	Used     uint64 `msgpack:"used"`
	// FSID identifies the file system holding the target on its node (the
	// st_dev of the target directory): targets of one node with equal
	// non-zero FSIDs share their Capacity and Used, which must be counted
	// once. 0 means unknown (older nodes), counted per target.
	FSID uint64 `msgpack:"fsid,omitempty"`
}

// GetRoutingReq asks for the routing info. Since is the version the caller
// has (0: none).
type GetRoutingReq struct {
	Since uint64 `msgpack:"since"`
	// WaitMillis, if not 0, makes a caller that is up to date (Since is
	// the current version) wait up to that long for a newer version
	// before the answer (a long poll: clients learn a failover as it is
	// published, not at their next refresh). mgmtd caps it.
	WaitMillis uint32 `msgpack:"wait_ms,omitempty"`
}

// GetRoutingResp carries the current version, and the routing info unless
// it is unchanged (Since was non-zero and equal to Version).
type GetRoutingResp struct {
	Version uint64       `msgpack:"version"`
	Routing *RoutingInfo `msgpack:"routing"`
	// Waited says the server honoured WaitMillis (an older one answers at
	// once, and its caller must not poll in a loop).
	Waited bool `msgpack:"waited,omitempty"`
}

// HeartbeatReq tells mgmtd that a node is alive, with its targets' usage.
type HeartbeatReq struct {
	NodeID  uint32        `msgpack:"node_id"`
	Targets []TargetStats `msgpack:"targets"`
	// Resyncs are the resyncs the node runs now (as predecessor), each
	// heartbeat's list replacing the last.
	Resyncs []ResyncStats `msgpack:"resyncs,omitempty"`
	// Metrics is the node's metrics listener ("" if none): `fff top`
	// scrapes it.
	Metrics string `msgpack:"metrics,omitempty"`
}

// ResyncStats is the progress of the resync of syncing target Target from
// its predecessor From: chunks compared so far, chunks sent whole or
// removed, bytes sent, and the predecessor's chunk count (Total, 0 if not
// known yet).
type ResyncStats struct {
	Target uint32 `msgpack:"t"`
	From   uint32 `msgpack:"f"`
	Chunks int64  `msgpack:"c"`
	Total  int64  `msgpack:"n,omitempty"`
	Sent   int64  `msgpack:"s"`
	Bytes  int64  `msgpack:"b"`
}

// HeartbeatResp carries the current routing version; a caller whose
// routing info is older refreshes it.
type HeartbeatResp struct {
	RoutingVersion uint64 `msgpack:"routing_version"`
	// LeaseMillis is how long, from when it sent the heartbeat, the node
	// may serve on the routing it has (mgmtd's heartbeat timeout): past
	// it, mgmtd may have declared the node down and given its chains to
	// others, so the node refuses requests until a heartbeat gets through
	// (fencing; docs/replication.md). 0: no lease.
	LeaseMillis uint32 `msgpack:"lease_ms,omitempty"`
}

// RegisterNodeReq registers (or re-registers) a node. State and
// LastHeartbeat are ignored.
type RegisterNodeReq struct {
	Node Node `msgpack:"node"`
}

// RegisterNodeResp carries the node as registered.
type RegisterNodeResp struct {
	Node Node `msgpack:"node"`
}

// RegisterTargetsReq registers targets; only ID (0: assign one), NodeID and
// Path are read.
type RegisterTargetsReq struct {
	Targets []Target `msgpack:"targets"`
}

// RegisterTargetsResp carries the targets as registered, in request order.
type RegisterTargetsResp struct {
	Targets []Target `msgpack:"targets"`
}

// CreateChainReq creates a chain over the targets, head first.
type CreateChainReq struct {
	Targets []uint32 `msgpack:"targets"`
}

// CreateChainResp carries the new chain.
type CreateChainResp struct {
	Chain Chain `msgpack:"chain"`
}

// SetChainTableReq creates chain table ID (0: with a new id) or replaces
// its list of chains.
type SetChainTableReq struct {
	ID     uint32   `msgpack:"id"`
	Chains []uint32 `msgpack:"chains"`
}

// SetChainTableResp carries the table as stored.
type SetChainTableResp struct {
	Table ChainTable `msgpack:"table"`
}

// AddToChainTableReq appends to chain table ID the chains it does not list
// yet, creating the table if it does not exist, in one transaction.
type AddToChainTableReq struct {
	ID     uint32   `msgpack:"id"`
	Chains []uint32 `msgpack:"chains"`
}

// AddToChainTableResp carries the table as stored.
type AddToChainTableResp struct {
	Table ChainTable `msgpack:"table"`
}

// PlaceChainsReq makes chains of Replicas targets on distinct nodes out of
// the serving targets in no chain, and appends them to chain table Table,
// in one transaction.
type PlaceChainsReq struct {
	Table    uint32 `msgpack:"table"`
	Replicas int    `msgpack:"replicas"`
}

// PlaceChainsResp lists the chains made, the table as stored, and the
// targets left out (too few distinct nodes left to make another chain).
type PlaceChainsResp struct {
	Chains   []Chain    `msgpack:"chains"`
	Table    ChainTable `msgpack:"table"`
	Unplaced []uint32   `msgpack:"unplaced"`
}

// SetTargetStateReq sets a target's state.
type SetTargetStateReq struct {
	TargetID uint32      `msgpack:"target_id"`
	State    TargetState `msgpack:"state"`
	// ChainVersion, if not 0, makes the change conditional (the end of a
	// resync): the target must be syncing and its chain still at this
	// version (ChainVersionMismatch otherwise), so a resync based on a
	// chain that changed meanwhile never declares its target caught up.
	ChainVersion uint32 `msgpack:"chain_version,omitempty"`
}

// SetTargetStateResp is empty.
type SetTargetStateResp struct{}
