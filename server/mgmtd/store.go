package mgmtd

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"fff/internal/proto"
	"fff/server/kv"
)

// KV layout (also in docs/cluster.md). Every key starts with KeyPrefix; ids are big-endian uint32 so
// that a range over a kind returns its records in id order.
//
//	mgmtd/version          uint64 big-endian: the routing version
//	mgmtd/node/<id>        msgpack proto.Node   (live fields zero)
//	mgmtd/target/<id>      msgpack proto.Target (live fields zero)
//	mgmtd/chain/<id>       msgpack proto.Chain
//	mgmtd/table/<id>       msgpack proto.ChainTable
//	mgmtd/cluster_id       the cluster id (hex), created once by New
const KeyPrefix = "mgmtd/"

var (
	keyVersion   = []byte(KeyPrefix + "version")
	keyClusterID = []byte(KeyPrefix + "cluster_id")
	prefixNode   = []byte(KeyPrefix + "node/")
	prefixTarget = []byte(KeyPrefix + "target/")
	prefixChain  = []byte(KeyPrefix + "chain/")
	prefixTable  = []byte(KeyPrefix + "table/")
)

func idKey(prefix []byte, id uint32) []byte {
	return binary.BigEndian.AppendUint32(slices.Clip(prefix), id)
}

// state is the versioned cluster state as read inside one transaction. A
// transaction loads it, mutates the records in place and calls save, which
// writes exactly the records whose encoding changed and, if any did, bumps
// the version. So the version increases on every change and never
// otherwise, whatever the operation.
type state struct {
	version uint64
	nodes   map[uint32]*proto.Node
	targets map[uint32]*proto.Target
	chains  map[uint32]*proto.Chain
	tables  map[uint32]*proto.ChainTable
	raw     map[string][]byte // key → value as loaded

	// As loaded, for normalizeChains.
	startStates map[uint32]proto.TargetState
	startChains map[uint32][]uint32
}

func loadState(tx kv.ReadTxn) (*state, error) {
	st := &state{
		nodes:   map[uint32]*proto.Node{},
		targets: map[uint32]*proto.Target{},
		chains:  map[uint32]*proto.Chain{},
		tables:  map[uint32]*proto.ChainTable{},
		raw:     map[string][]byte{},
	}
	v, err := tx.Get(keyVersion)
	if err != nil {
		return nil, err
	}
	if st.version, err = decodeVersion(v); err != nil {
		return nil, err
	}
	if err := loadKind(tx, st, prefixNode, st.nodes); err != nil {
		return nil, err
	}
	if err := loadKind(tx, st, prefixTarget, st.targets); err != nil {
		return nil, err
	}
	if err := loadKind(tx, st, prefixChain, st.chains); err != nil {
		return nil, err
	}
	if err := loadKind(tx, st, prefixTable, st.tables); err != nil {
		return nil, err
	}
	st.startStates = make(map[uint32]proto.TargetState, len(st.targets))
	for id, t := range st.targets {
		st.startStates[id] = t.State
	}
	st.startChains = make(map[uint32][]uint32, len(st.chains))
	for id, c := range st.chains {
		st.startChains[id] = slices.Clone(c.Targets)
	}
	return st, nil
}

func decodeVersion(v []byte) (uint64, error) {
	switch len(v) {
	case 0:
		if v == nil {
			return 0, nil
		}
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("mgmtd: corrupt routing version key (%d bytes): %w", len(v), proto.ErrIO)
}

func readVersion(tx kv.ReadTxn) (uint64, error) {
	v, err := tx.Get(keyVersion)
	if err != nil {
		return 0, err
	}
	return decodeVersion(v)
}

func loadKind[T any](tx kv.ReadTxn, st *state, prefix []byte, into map[uint32]*T) error {
	kvs, err := tx.Range(prefix, kv.PrefixEnd(prefix), kv.RangeOptions{})
	if err != nil {
		return err
	}
	for _, p := range kvs {
		if len(p.Key) != len(prefix)+4 {
			return fmt.Errorf("mgmtd: corrupt key %q: %w", p.Key, proto.ErrIO)
		}
		id := binary.BigEndian.Uint32(p.Key[len(prefix):])
		rec := new(T)
		if err := msgpack.Unmarshal(p.Value, rec); err != nil {
			return fmt.Errorf("mgmtd: corrupt record %q: %v: %w", p.Key, err, proto.ErrIO)
		}
		into[id] = rec
		st.raw[string(p.Key)] = p.Value
	}
	return nil
}

// save normalizes the chains, writes the changed records and bumps the
// version if anything changed. It reports whether it did.
func (st *state) save(tx kv.Txn) (bool, error) {
	st.normalizeChains()
	changed := false
	put := func(key []byte, rec any) error {
		b, err := msgpack.Marshal(rec)
		if err != nil {
			return err
		}
		if old, ok := st.raw[string(key)]; ok && bytes.Equal(old, b) {
			return nil
		}
		changed = true
		st.raw[string(key)] = b
		return tx.Set(key, b)
	}
	for _, id := range sortedKeys(st.nodes) {
		n := *st.nodes[id]
		n.LastHeartbeat = time.Time{}
		if err := put(idKey(prefixNode, id), &n); err != nil {
			return false, err
		}
	}
	for _, id := range sortedKeys(st.targets) {
		t := *st.targets[id]
		t.Capacity, t.Used = 0, 0
		if err := put(idKey(prefixTarget, id), &t); err != nil {
			return false, err
		}
	}
	for _, id := range sortedKeys(st.chains) {
		if err := put(idKey(prefixChain, id), st.chains[id]); err != nil {
			return false, err
		}
	}
	for _, id := range sortedKeys(st.tables) {
		if err := put(idKey(prefixTable, id), st.tables[id]); err != nil {
			return false, err
		}
	}
	if !changed {
		return false, nil
	}
	st.version++
	if err := tx.Set(keyVersion, binary.BigEndian.AppendUint64(nil, st.version)); err != nil {
		return false, err
	}
	return true, nil
}

func sortedKeys[T any](m map[uint32]T) []uint32 {
	ks := make([]uint32, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// routing returns the state as a RoutingInfo (live fields zero).
func (st *state) routing() *proto.RoutingInfo {
	ri := &proto.RoutingInfo{Version: st.version}
	for _, id := range sortedKeys(st.nodes) {
		n := *st.nodes[id]
		n.LastHeartbeat = time.Time{}
		ri.Nodes = append(ri.Nodes, n)
	}
	for _, id := range sortedKeys(st.targets) {
		t := *st.targets[id]
		t.Capacity, t.Used = 0, 0
		ri.Targets = append(ri.Targets, t)
	}
	for _, id := range sortedKeys(st.chains) {
		c := *st.chains[id]
		c.Targets = slices.Clone(c.Targets)
		ri.Chains = append(ri.Chains, c)
	}
	for _, id := range sortedKeys(st.tables) {
		t := *st.tables[id]
		t.Chains = slices.Clone(t.Chains)
		ri.ChainTables = append(ri.ChainTables, t)
	}
	return ri
}

// nextID returns one more than the largest id in m (ids start at 1).
func nextID[T any](m map[uint32]T) (uint32, error) {
	var top uint32
	for id := range m {
		top = max(top, id)
	}
	if top == ^uint32(0) {
		return 0, proto.Errorf(proto.ENOSPC, "mgmtd: ids exhausted")
	}
	return top + 1, nil
}

// stateRank orders chain members: serving, syncing, offline.
func stateRank(s proto.TargetState) int {
	switch s {
	case proto.TargetServing:
		return 0
	case proto.TargetSyncing:
		return 1
	}
	return 2
}

// normalizeChains puts every chain's targets into the chain order
// (serving, then syncing, then offline; stable within each group) and
// increments the version of each chain that existed when the transaction
// started and whose order or members' states differ from then: at most one
// increment per chain and transaction, however many changes it made. A
// chain created in the transaction keeps its version.
func (st *state) normalizeChains() {
	for _, id := range sortedKeys(st.chains) {
		c := st.chains[id]
		slices.SortStableFunc(c.Targets, func(a, b uint32) int {
			return cmp.Compare(stateRank(st.targets[a].State), stateRank(st.targets[b].State))
		})
		old, existed := st.startChains[id]
		st.noteLastServing(c, old)
		if !existed {
			continue
		}
		changed := !slices.Equal(old, c.Targets)
		for _, tid := range c.Targets {
			if st.startStates[tid] != st.targets[tid].State {
				changed = true
			}
		}
		if changed {
			c.Version++
		}
	}
}

// noteLastServing keeps c.LastServing: 0 while a member serves; when the
// last serving member stops (old: the chain's order when the transaction
// started), that member — the head of the serving ones, which holds every
// acknowledged write. revive lets only it serve again on its return.
func (st *state) noteLastServing(c *proto.Chain, old []uint32) {
	for _, tid := range c.Targets {
		if st.targets[tid].State == proto.TargetServing {
			c.LastServing = 0
			return
		}
	}
	if c.LastServing != 0 {
		return
	}
	for _, tid := range old {
		if st.startStates[tid] == proto.TargetServing {
			c.LastServing = tid
			return
		}
	}
}
