package etcdkv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"fff/server/kv"
	"fff/server/kv/internal/txnkit"
)

// span is a key range [begin, end) in user keys; a nil end is no upper
// bound.
type span struct{ begin, end []byte }

// txn is one attempt: the committed state at revision rev as a
// txnkit.Base, and the record of what the attempt read.
type txn struct {
	d   *DB
	ctx context.Context
	rev int64 // the attempt's read revision, fixed by its first read
	// write: a read-write attempt, whose reads are recorded for the
	// commit's guards (a View's snapshot needs none).
	write  bool
	read   []span // what the reads depended on
	failed error  // the first failed read: the attempt cannot commit
	// fetched holds what Prefetch read, by key: the stored value, nil
	// for an absent key.
	fetched map[string][]byte
}

// get reads at the attempt's revision. The first read is linearizable and
// fixes the revision; later ones are serializable reads at that revision
// (no ReadIndex round), asked again linearizably from a member that has
// not applied it yet.
func (t *txn) get(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if t.failed != nil {
		return nil, t.failed
	}
	var resp *clientv3.GetResponse
	var err error
	if t.rev == 0 {
		resp, err = t.d.cli.Get(t.ctx, key, opts...)
		if err == nil {
			t.rev = resp.Header.Revision
		}
	} else {
		at := append(opts, clientv3.WithRev(t.rev))
		resp, err = t.d.cli.Get(t.ctx, key, append(at, clientv3.WithSerializable())...)
		if errors.Is(err, rpctypes.ErrFutureRev) {
			resp, err = t.d.cli.Get(t.ctx, key, at...)
		}
	}
	if err != nil {
		t.failed = t.d.readErr(t.ctx, err)
		return nil, t.failed
	}
	return resp, nil
}

// getMany reads keys (etcd keys) in one read-only etcd Txn at the
// attempt's revision, as get reads one.
func (t *txn) getMany(keys []string) ([]*etcdserverpb.RangeResponse, error) {
	if t.failed != nil {
		return nil, t.failed
	}
	run := func(opts ...clientv3.OpOption) (*clientv3.TxnResponse, error) {
		ops := make([]clientv3.Op, len(keys))
		for i, k := range keys {
			ops[i] = clientv3.OpGet(k, opts...)
		}
		return t.d.cli.Txn(t.ctx).Then(ops...).Commit()
	}
	var resp *clientv3.TxnResponse
	var err error
	if t.rev == 0 {
		// A read-only Txn whose reads are not all serializable is
		// linearizable, like a first Get.
		resp, err = run()
		if err == nil {
			t.rev = resp.Header.Revision
		}
	} else {
		resp, err = run(clientv3.WithRev(t.rev), clientv3.WithSerializable())
		if errors.Is(err, rpctypes.ErrFutureRev) {
			resp, err = run(clientv3.WithRev(t.rev))
		}
	}
	if err == nil && len(resp.Responses) != len(keys) {
		err = fmt.Errorf("etcdkv: %d answers to a Txn of %d reads", len(resp.Responses), len(keys))
	}
	if err != nil {
		t.failed = t.d.readErr(t.ctx, err)
		return nil, t.failed
	}
	out := make([]*etcdserverpb.RangeResponse, len(keys))
	for i, r := range resp.Responses {
		out[i] = r.GetResponseRange()
	}
	return out, nil
}

// Prefetch implements kv.Prefetcher: the keys not read yet in one
// round trip (or a plain Get for one).
func (t *txn) Prefetch(keys ...[]byte) error {
	var want []string
	for _, k := range keys {
		if _, ok := t.fetched[string(k)]; !ok && !slices.Contains(want, string(k)) {
			want = append(want, string(k))
		}
	}
	if len(want) < 2 {
		return nil // a Get costs the same round trip
	}
	full := make([]string, len(want))
	for i, k := range want {
		full[i] = t.d.data + k
	}
	resps, err := t.getMany(full)
	if err != nil {
		return err
	}
	if t.fetched == nil {
		t.fetched = make(map[string][]byte, len(want))
	}
	for i, k := range want {
		var v []byte
		if r := resps[i]; r != nil && len(r.Kvs) > 0 {
			v = r.Kvs[0].Value
		}
		t.fetched[k] = v
		t.depend(span{[]byte(k), kv.KeyAfter([]byte(k))})
	}
	return nil
}

// depend records that the attempt's result depends on s.
func (t *txn) depend(s span) {
	if t.write {
		t.read = append(t.read, s)
	}
}

// Get implements txnkit.Base.
func (t *txn) Get(key []byte) ([]byte, error) {
	if v, ok := t.fetched[string(key)]; ok {
		if t.failed != nil {
			return nil, t.failed
		}
		if v == nil {
			return nil, nil
		}
		return t.decode(key, v)
	}
	resp, err := t.get(t.d.data + string(key))
	if err != nil {
		return nil, err
	}
	t.depend(span{key, kv.KeyAfter(key)})
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return t.decode(key, resp.Kvs[0].Value)
}

// Scan implements txnkit.Base, in pages that grow from pageMin to pageMax
// keys. What the scan depended on is recorded up to the key where fn
// stopped it.
func (t *txn) Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	lo, hi := t.d.data+string(begin), t.d.dataEnd
	if len(end) > 0 {
		hi = t.d.data + string(end)
	}
	for page := pageMin; ; page = min(2*page, pageMax) {
		opts := []clientv3.OpOption{clientv3.WithRange(hi), clientv3.WithLimit(int64(page))}
		if reverse {
			opts = append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
		}
		resp, err := t.get(lo, opts...)
		if err != nil {
			return err
		}
		for _, p := range resp.Kvs {
			k := p.Key[len(t.d.data):]
			v, err := t.decode(k, p.Value)
			if err != nil {
				return err
			}
			if v == nil || fn(k, v) {
				continue
			}
			if reverse {
				t.depend(span{k, end})
			} else {
				t.depend(span{begin, kv.KeyAfter(k)})
			}
			return nil
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if reverse {
			hi = last
		} else {
			lo = last + "\x00"
		}
	}
	t.depend(span{begin, end})
	return nil
}

// decode is decode that also stops the attempt from committing.
func (t *txn) decode(key, v []byte) ([]byte, error) {
	out, err := decode(key, v)
	if err != nil {
		t.failed = err
	}
	return out, err
}

// settle decides an attempt's outcome before commit: a failed read wins
// over whatever the body made of it (it may have swallowed the error).
func (t *txn) settle(err error) error {
	if t.failed != nil {
		return t.failed
	}
	return err
}

// commit sends the attempt's writes in one etcd Txn guarded by what it
// read (doc.go).
func (t *txn) commit(buf *txnkit.Buffer) error {
	if buf.Empty() {
		return nil // nothing to write: the reads were a snapshot at rev
	}
	type write struct {
		key, val []byte
		del      bool
	}
	var clears []span
	var writes []write
	buf.Apply(
		func(b, e []byte) error { clears = append(clears, span{b, e}); return nil },
		func(k, v []byte) error { writes = append(writes, write{key: k, val: v}); return nil },
		func(k []byte) error { writes = append(writes, write{key: k, del: true}); return nil },
	)
	d := t.d
	var ops []clientv3.Op
	var holes [][]byte // keys set inside a cleared range, kept out of its DeleteRange
	for _, w := range writes {
		in := within(clears, w.key)
		switch {
		case w.del && in: // the DeleteRange removes it
		case w.del:
			ops = append(ops, clientv3.OpPut(d.data+string(w.key), string([]byte{tombstone})), clientv3.OpPut(d.index+string(w.key), ""))
		default:
			if in {
				holes = append(holes, w.key)
			}
			ops = append(ops, clientv3.OpPut(d.data+string(w.key), encode(w.val)))
		}
	}
	for _, s := range clears {
		ops = d.deleteRange(ops, d.data, d.dataEnd, s, holes)
		ops = d.deleteRange(ops, d.index, d.indexEnd, s, nil)
	}
	if len(clears) > 0 {
		ops = append(ops, clientv3.OpPut(d.epoch, ""))
	}
	resp, err := d.cli.Txn(t.ctx).If(t.guards()...).Then(ops...).Commit()
	if err != nil {
		return d.commitErr(t.ctx, err)
	}
	if !resp.Succeeded {
		return &retry{conflict: true}
	}
	return nil
}

// deleteRange appends the DeleteRanges that remove span s under prefix
// (whose end is pend), leaving out the keys in holes (sorted).
func (d *DB) deleteRange(ops []clientv3.Op, prefix, pend string, s span, holes [][]byte) []clientv3.Op {
	del := func(b []byte, e []byte) {
		if e != nil && bytes.Compare(b, e) >= 0 {
			return
		}
		end := pend
		if e != nil {
			end = prefix + string(e)
		}
		ops = append(ops, clientv3.OpDelete(prefix+string(b), clientv3.WithRange(end)))
	}
	b := s.begin
	for _, h := range holes {
		if bytes.Compare(h, s.begin) >= 0 && (s.end == nil || bytes.Compare(h, s.end) < 0) {
			del(b, h)
			b = kv.KeyAfter(h)
		}
	}
	del(b, s.end)
	return ops
}

// within reports whether key lies in one of the sorted, disjoint spans.
func within(spans []span, key []byte) bool {
	for _, s := range spans {
		if bytes.Compare(key, s.begin) >= 0 && (s.end == nil || bytes.Compare(key, s.end) < 0) {
			return true
		}
	}
	return false
}

// guards are the commit's conditions: nothing the attempt read, and no
// collection or ClearRange (the epoch key), changed after its revision.
// Overlapping and touching spans are merged first, which guards exactly
// the same keys with fewer comparisons.
func (t *txn) guards() []clientv3.Cmp {
	if t.rev == 0 {
		return nil // a blind write depends on nothing
	}
	next := t.rev + 1
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(t.d.epoch), "<", next)}
	spans := slices.Clone(t.read)
	slices.SortFunc(spans, func(a, b span) int { return bytes.Compare(a.begin, b.begin) })
	emit := func(s span) {
		key := t.d.data + string(s.begin)
		switch {
		case s.end == nil:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key).WithRange(t.d.dataEnd), "<", next))
		case bytes.Equal(s.end, kv.KeyAfter(s.begin)):
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "<", next))
		default:
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key).WithRange(t.d.data+string(s.end)), "<", next))
		}
	}
	for i := 0; i < len(spans); {
		cur := spans[i]
		if len(cur.end) == 0 {
			cur.end = nil
		}
		for i++; i < len(spans) && (cur.end == nil || bytes.Compare(spans[i].begin, cur.end) <= 0); i++ {
			if e := spans[i].end; len(e) == 0 {
				cur.end = nil
			} else if cur.end != nil && bytes.Compare(e, cur.end) > 0 {
				cur.end = e
			}
		}
		emit(cur)
	}
	return cmps
}
