package txnkit

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"fff/server/kv"
)

// mapBase is a Base over a plain map.
type mapBase map[string][]byte

func (m mapBase) Get(key []byte) ([]byte, error) { return m[string(key)], nil }

func (m mapBase) Scan(begin, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	var keys []string
	for k := range m {
		if k >= string(begin) && (len(end) == 0 || k < string(end)) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if reverse {
		slices.Reverse(keys)
	}
	for _, k := range keys {
		if !fn([]byte(k), m[k]) {
			break
		}
	}
	return nil
}

func (m mapBase) clone() mapBase {
	c := mapBase{}
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (m mapBase) clearRange(begin, end []byte) {
	for k := range m {
		if k >= string(begin) && (len(end) == 0 || k < string(end)) {
			delete(m, k)
		}
	}
}

// TestBufferAgainstModel drives random operations through a Buffer over a
// random base and checks every read, and the applied result, against a
// plain map.
func TestBufferAgainstModel(t *testing.T) {
	alphabet := [][]byte{{0x00}, {0x01}, {'a'}, {'b'}, {0xfe}, {0xff}}
	randKey := func(r *rand.Rand) []byte {
		var k []byte
		for n := 1 + r.IntN(3); n > 0; n-- {
			k = append(k, alphabet[r.IntN(len(alphabet))]...)
		}
		return k
	}
	randBound := func(r *rand.Rand) []byte {
		if r.IntN(5) == 0 {
			return nil
		}
		return randKey(r)
	}
	for seed := uint64(0); seed < 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		base := mapBase{}
		for i := r.IntN(20); i > 0; i-- {
			base[string(randKey(r))] = fmt.Appendf(nil, "base%d", i)
		}
		model := base.clone()
		buf := NewBuffer(base)
		for op := 0; op < 150; op++ {
			switch r.IntN(8) {
			case 0, 1:
				k, v := randKey(r), fmt.Appendf(nil, "s%d", op)
				buf.Set(k, v)
				model[string(k)] = v
			case 2:
				k := randKey(r)
				buf.Clear(k)
				delete(model, string(k))
			case 3:
				b, e := randBound(r), randBound(r)
				buf.ClearRange(b, e)
				model.clearRange(b, e)
			case 4:
				k := randKey(r)
				got, _ := buf.Get(k)
				if want := model[string(k)]; !bytes.Equal(got, want) || (got == nil) != (want == nil) {
					t.Fatalf("seed %d op %d: Get(%q) = %q, want %q", seed, op, k, got, want)
				}
			default:
				b, e := randBound(r), randBound(r)
				opts := kv.RangeOptions{Limit: r.IntN(4), Reverse: r.IntN(2) == 0}
				got, _ := buf.Range(b, e, opts)
				var want []kv.KeyValue
				model.Scan(b, e, opts.Reverse, func(k, v []byte) bool {
					want = append(want, kv.KeyValue{Key: k, Value: v})
					return opts.Limit == 0 || len(want) < opts.Limit
				})
				if len(e) > 0 && bytes.Compare(b, e) >= 0 {
					want = nil
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("seed %d op %d: Range(%q, %q, %+v) = %q, want %q", seed, op, b, e, opts, got, want)
				}
			}
		}
		applied := base.clone()
		err := buf.Apply(
			func(b, e []byte) error { applied.clearRange(b, e); return nil },
			func(k, v []byte) error { applied[string(k)] = v; return nil },
			func(k []byte) error { delete(applied, string(k)); return nil },
		)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(applied) != fmt.Sprint(model) {
			t.Fatalf("seed %d: Apply gave %q, want %q", seed, applied, model)
		}
	}
}
