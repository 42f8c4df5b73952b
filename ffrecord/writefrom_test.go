package ffrecord

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"testing"
)

func TestWriteFrom(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	samples := make([][]byte, 6)
	for i := range samples {
		samples[i] = make([]byte, []int{0, 10, 5000, 70000, 3, 200000}[i])
		for j := range samples[i] {
			samples[i][j] = byte(rng.Uint32())
		}
	}
	for _, opts := range []WriterOptions{{Format: V1}, {}, {Alignment: 4096}} {
		t.Run(opts.Format.String()+"/"+strconv.FormatInt(opts.Alignment, 10), func(t *testing.T) {
			var viaBytes, viaReader memFile
			for k, dst := range []*memFile{&viaBytes, &viaReader} {
				o := opts
				o.Count, o.BufferSize = int64(len(samples)), 8192 // samples larger than the buffer stream
				w, err := NewWriter(dst, o)
				if err != nil {
					t.Fatal(err)
				}
				for i, s := range samples {
					key := "k" + strconv.Itoa(i)
					if k == 0 {
						err = w.WriteKeyed(key, s)
					} else {
						err = w.WriteFrom(key, bytes.NewReader(s), int64(len(s)))
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(viaBytes.b, viaReader.b) {
				t.Fatalf("WriteFrom produced different bytes than WriteKeyed")
			}
			got, err := readAll(t, openBytes(t, "x", viaReader.b, ReaderOptions{}))
			if err != nil {
				t.Fatal(err)
			}
			for i := range samples {
				if !bytes.Equal(got[i], samples[i]) {
					t.Fatalf("sample %d differs", i)
				}
			}
		})
	}
	t.Run("short reader", func(t *testing.T) {
		var m memFile
		w, _ := NewWriter(&m, WriterOptions{BufferSize: 4096})
		err := w.WriteFrom("", io.LimitReader(bytes.NewReader(make([]byte, 100000)), 50000), 100000)
		if !errors.Is(err, ErrWriter) {
			t.Fatalf("short reader: %v", err)
		}
		if err := w.Write([]byte("x")); !errors.Is(err, ErrWriter) {
			t.Fatalf("write after failed WriteFrom: %v", err)
		}
	})
}
