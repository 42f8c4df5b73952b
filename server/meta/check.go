package meta

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"

	"fff/internal/proto"
	"fff/server/kv"
)

// Problem is one record CheckRecords could not read or decode.
type Problem struct {
	Key    []byte
	Reason string
}

func (p Problem) String() string { return fmt.Sprintf("key %q: %s", p.Key, p.Reason) }

// checkPage bounds the keys one transaction of CheckRecords reads.
const checkPage = 1024

// CheckRecords reads every record of db and decodes it as meta does,
// returning the records that fail and how many it read, and then the
// inodes whose names disagree with the directory entries (LinkCheck). It
// stops with an error only if the KV itself fails (a damaged page makes
// the range that holds it unreadable; fffd check then salvages around it).
func CheckRecords(ctx context.Context, db kv.DB) (problems []Problem, records int, err error) {
	var begin []byte
	links := NewLinkCheck()
	for {
		var kvs []kv.KeyValue
		err := db.View(ctx, func(tx kv.ReadTxn) error {
			var err error
			kvs, err = tx.Range(begin, nil, kv.RangeOptions{Limit: checkPage})
			return err
		})
		if err != nil {
			return problems, records, fmt.Errorf("meta: check: reading from key %q: %w", begin, err)
		}
		for _, p := range kvs {
			records++
			if reason := checkRecord(p.Key, p.Value); reason != "" {
				problems = append(problems, Problem{Key: p.Key, Reason: reason})
				continue
			}
			links.Add(p.Key, p.Value)
		}
		if len(kvs) < checkPage {
			return append(problems, links.Problems()...), records, nil
		}
		begin = append(kvs[len(kvs)-1].Key, 0)
	}
}

// checkRecord says why the record k = v is not one meta can read, or "".
func checkRecord(k, v []byte) string {
	if len(k) == 0 {
		return "empty key"
	}
	decode := func(min int, val any) string {
		if len(k) < min {
			return fmt.Sprintf("key too short for its kind (%d bytes)", len(k))
		}
		if err := unmarshal(v, val); err != nil {
			return fmt.Sprintf("undecodable value: %v", err)
		}
		return ""
	}
	fixed := func(n int) string {
		if len(v) != n {
			return fmt.Sprintf("value of %d bytes, want %d", len(v), n)
		}
		return ""
	}
	switch k[0] {
	case pInode:
		var n proto.Inode
		if r := decode(9, &n); r != "" {
			return r
		}
		if len(k) != 9 || n.Ino != u64(k[1:]) {
			return fmt.Sprintf("inode record of inode %d under key of inode %d", n.Ino, u64(k[1:]))
		}
		return ""
	case pDentry:
		return decode(10, new(dentry))
	case pSession:
		return decode(17, new(session))
	case pGC:
		return decode(17, new(proto.GCRecord))
	case pUser:
		return decode(2, new(userRec))
	case pToken:
		return ""
	case pMeta:
		if bytes.Equal(k, keyLinksProgress) {
			return "" // an entry key
		}
		return fixed(8)
	case pCounter:
		return fixed(8)
	}
	return fmt.Sprintf("unknown record kind %q", k[0])
}

// CheckRecord says why the record k = v is not one meta can read; "" if it
// is.
func CheckRecord(k, v []byte) string { return checkRecord(k, v) }

// LinkCheck checks that the names each file and symlink records
// (Inode.Links) are its directory entries, that its link count is their
// number, and that each directory's parent is the directory holding its
// entry: what inode-level permission checks rely on. Feed it every
// readable record in key order (Add), as CheckRecords and fffd check read
// them: entries (D) come before inodes (I), and inodes in id order, so it
// keeps 16 bytes per entry and nothing per inode. Entries whose inode is
// missing are not its business (CheckRecords reports undecodable ones).
type LinkCheck struct {
	entries  []linkEntry
	sorted   bool
	next     int // first entry not yet matched to an inode
	version  uint64
	problems []linkProblem
}

// linkProblem is a Problem and whether it is about Inode.Links, which a
// schema 1 namespace does not record yet.
type linkProblem struct {
	Problem
	links bool
}

type linkEntry struct{ ino, dir uint64 }

// NewLinkCheck returns an empty LinkCheck.
func NewLinkCheck() *LinkCheck { return &LinkCheck{} }

// Add takes the next record (one that CheckRecord accepts).
func (c *LinkCheck) Add(k, v []byte) {
	if len(k) == 0 {
		return
	}
	switch k[0] {
	case pDentry:
		var de dentry
		if len(k) > 9 && unmarshal(v, &de) == nil {
			c.entries = append(c.entries, linkEntry{ino: de.Ino, dir: u64(k[1:9])})
		}
	case pInode:
		var n proto.Inode
		if len(k) == 9 && unmarshal(v, &n) == nil {
			c.inode(k, &n)
		}
	case pMeta:
		if bytes.Equal(k, keyVersion) {
			c.version = u64(v)
		}
	}
}

// inode compares n with the entries that name it.
func (c *LinkCheck) inode(k []byte, n *proto.Inode) {
	if !c.sorted {
		slices.SortFunc(c.entries, func(a, b linkEntry) int {
			return cmp.Or(cmp.Compare(a.ino, b.ino), cmp.Compare(a.dir, b.dir))
		})
		c.sorted = true
	}
	for c.next < len(c.entries) && c.entries[c.next].ino < n.Ino {
		c.next++
	}
	var dirs []uint64
	for ; c.next < len(c.entries) && c.entries[c.next].ino == n.Ino; c.next++ {
		dirs = append(dirs, c.entries[c.next].dir)
	}
	report := func(links bool, format string, args ...any) {
		p := Problem{Key: slices.Clone(k), Reason: fmt.Sprintf(format, args...)}
		c.problems = append(c.problems, linkProblem{p, links})
	}
	switch {
	case n.Type == proto.TypeDir && n.Ino == proto.RootIno:
	case n.Type == proto.TypeDir:
		if len(dirs) != 1 || dirs[0] != n.Parent {
			report(false, "directory %d: parent %d, but its entries are in %v", n.Ino, n.Parent, dirs)
		}
	default:
		links := slices.Sorted(slices.Values(n.Links))
		if !slices.Equal(links, dirs) {
			report(true, "inode %d: names recorded in directories %v, but its entries are in %v", n.Ino, links, dirs)
		}
		if int(n.Nlink) != len(dirs) {
			report(false, "inode %d: nlink %d, but %d entries", n.Ino, n.Nlink, len(dirs))
		}
	}
}

// Problems returns what disagrees. In a namespace whose links Init has
// not recorded yet (schema 1) Links are not compared.
func (c *LinkCheck) Problems() []Problem {
	var out []Problem
	for _, p := range c.problems {
		if !p.links || c.version >= schemaVersion {
			out = append(out, p.Problem)
		}
	}
	return out
}
