package meta

import (
	"context"

	"fff/internal/proto"
	"fff/server/kv"
)

// removeBatch is the number of entries one RemoveAll transaction removes:
// with names of 255 bytes each costs about 3 KB of the KV's 10 MB
// transaction budget and a few microseconds of its 5 s.
const removeBatch = 128

// maxRemoveRounds bounds how often RemoveAll starts over when entries keep
// appearing in the tree it removes.
const maxRemoveRounds = 8

// RemoveAll removes entry name of parent and, if it is a directory,
// everything below it, like rm -rf. It works depth first in transactions of
// at most removeBatch entries each, so any tree can be removed within the
// KV's transaction limits; the removal is therefore not atomic: an error
// (or a concurrent writer) can leave part of the tree. Every removal is
// checked as Unlink and Rmdir check it, and listing a directory needs read
// permission. It returns the number of entries removed (the top one
// included).
func (s *Service) RemoveAll(ctx context.Context, id Identity, parent uint64, name string) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	var removed uint64
	for round := 0; round < maxRemoveRounds; round++ {
		top, err := s.Lookup(ctx, id, parent, name)
		if err != nil {
			return removed, err
		}
		if top.Type != proto.TypeDir {
			if err := s.Unlink(ctx, id, parent, name); err != nil {
				return removed, err
			}
			return removed + 1, nil
		}
		stack := []uint64{top.Ino}
		for len(stack) > 0 {
			n, descend, empty, err := s.removeSome(ctx, id, stack[len(stack)-1])
			removed += n
			if err != nil {
				return removed, err
			}
			switch {
			case descend != 0:
				stack = append(stack, descend)
			case empty:
				stack = stack[:len(stack)-1]
			}
		}
		var again bool
		err = kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
			again = false
			_, n, err := prepareRemove(tx, id, parent, name, "remove")
			if err != nil {
				return err
			}
			if n.Ino != top.Ino || n.Type != proto.TypeDir {
				again = true // replaced meanwhile: remove what is there now
				return nil
			}
			empty, err := dirEmpty(tx, n.Ino)
			if err != nil {
				return err
			}
			if !empty {
				again = true // filled meanwhile
				return nil
			}
			if err := tx.Clear(dentryKey(parent, name)); err != nil {
				return err
			}
			if err := tx.Clear(inodeKey(n.Ino)); err != nil {
				return err
			}
			return addCount(tx, n.Ino, -1)
		})
		if err != nil {
			return removed, err
		}
		if !again {
			return removed + 1, nil
		}
	}
	return removed, proto.Errorf(proto.ENOTEMPTY, "remove %q in %d: entries keep appearing", name, parent)
}

// removeSome removes up to removeBatch entries of directory dir in one
// transaction. It stops at the first non-empty subdirectory and returns it
// as descend; empty reports that dir had no entries left (or is gone).
func (s *Service) removeSome(ctx context.Context, id Identity, dir uint64) (removed, descend uint64, empty bool, err error) {
	now := s.now()
	err = kv.UpdateFreeing(ctx, s.db, func(tx kv.Txn) error {
		removed, descend, empty = 0, 0, false
		d, err := loadInode(tx, dir)
		if proto.CodeOf(err) == proto.ENOENT {
			empty = true
			return nil
		}
		if err != nil {
			return err
		}
		if d.Type != proto.TypeDir {
			empty = true
			return nil
		}
		// dir may have moved since RemoveAll found it.
		if err := reachable(tx, id, d, "remove"); err != nil {
			return err
		}
		if err := access(id, d, permR|permW|permX, "remove"); err != nil {
			return err
		}
		b, e := prefixRange(dentryPrefix(dir))
		kvs, err := tx.Range(b, e, kv.RangeOptions{Limit: removeBatch})
		if err != nil {
			return err
		}
		empty = len(kvs) == 0
		for _, p := range kvs {
			var de dentry
			if err := unmarshal(p.Value, &de); err != nil {
				return err
			}
			n, err := loadInode(tx, de.Ino)
			if err != nil {
				return err
			}
			if err := stickyOK(id, d, n, "remove"); err != nil {
				return err
			}
			if n.Type == proto.TypeDir {
				sub, err := dirEmpty(tx, n.Ino)
				if err != nil {
					return err
				}
				if !sub {
					descend = n.Ino
					return nil
				}
				if err := tx.Clear(inodeKey(n.Ino)); err != nil {
					return err
				}
				if err := addCount(tx, n.Ino, -1); err != nil {
					return err
				}
			} else if err := dropLink(tx, n, dir, now); err != nil {
				return err
			}
			if err := tx.Clear(p.Key); err != nil {
				return err
			}
			removed++
		}
		return nil
	})
	return removed, descend, empty, err
}
