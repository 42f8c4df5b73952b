package etcdkv

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// gcRounds bounds one Collect: under constant churn of the same keys a
// batch may keep failing its guards; what is left waits for the next tick.
const gcRounds = 64

func (d *DB) runGC(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := d.Collect(ctx)
			switch {
			case err != nil && ctx.Err() == nil:
				d.log.Warn().Err(err).Msg("etcdkv: collecting tombstones")
			case n > 0:
				d.log.Debug().Int("tombstones", n).Msg("etcdkv: collected tombstones")
			}
		}
	}
}

// Collect deletes the tombstones listed in the index (doc.go) and returns
// how many it deleted. Each batch is one Txn that also writes the epoch
// key, so transactions that read before it cannot commit.
func (d *DB) Collect(ctx context.Context) (int, error) {
	tomb := string([]byte{tombstone})
	total := 0
	for round := 0; round < gcRounds; round++ {
		resp, err := d.cli.Get(ctx, d.index, clientv3.WithRange(d.indexEnd), clientv3.WithLimit(gcBatch), clientv3.WithKeysOnly())
		if err != nil {
			return total, fmt.Errorf("etcdkv: list tombstones: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return total, nil
		}
		cmps := make([]clientv3.Cmp, 0, len(resp.Kvs))
		ops := make([]clientv3.Op, 0, 2*len(resp.Kvs)+1)
		for _, p := range resp.Kvs {
			data := d.data + string(p.Key[len(d.index):])
			cmps = append(cmps, clientv3.Compare(clientv3.Value(data), "=", tomb))
			ops = append(ops, clientv3.OpDelete(data), clientv3.OpDelete(string(p.Key)))
		}
		ops = append(ops, clientv3.OpPut(d.epoch, ""))
		r, err := d.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return total, fmt.Errorf("etcdkv: delete tombstones: %w", err)
		}
		if r.Succeeded {
			total += len(resp.Kvs)
			continue
		}
		// Some keys were written again (or cleared by a ClearRange): drop
		// their stale index entries, one guarded Txn each, and try again.
		for _, p := range resp.Kvs {
			data := d.data + string(p.Key[len(d.index):])
			_, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(data), "=", tomb)).Else(clientv3.OpDelete(string(p.Key))).Commit()
			if err != nil {
				return total, fmt.Errorf("etcdkv: drop a stale tombstone entry: %w", err)
			}
		}
	}
	return total, nil
}
