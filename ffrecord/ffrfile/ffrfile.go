// Package ffrfile opens FFRecord datasets stored on the local disk: one .ffr
// file, or a directory whose *.ffr files (in name order) form one dataset.
// Reads go through io_uring with O_DIRECT where the filesystem allows it.
package ffrfile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"fff/ffrecord"
	"fff/internal/uring"
)

// Dataset is a local FFRecord dataset: a Reader plus the open files behind it.
type Dataset struct {
	*ffrecord.Reader
	files    []*uring.File
	ring     *uring.Ring
	ownsRing bool
}

// Options configure Open.
type Options struct {
	ffrecord.ReaderOptions
	// NoDirect reads through the page cache instead of O_DIRECT.
	NoDirect bool
	// Ring is shared by the dataset's files; nil gives the dataset its own.
	Ring *uring.Ring
}

// Files lists the shard files of path: path itself when it is a file, else the
// *.ffr files directly inside it, in name order.
func Files(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("ffrfile: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("ffrfile: %w", err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	names = ffrecord.ShardNames(names)
	if len(names) == 0 {
		return nil, fmt.Errorf("ffrfile: %s: no *.ffr files in directory: %w", path, os.ErrNotExist)
	}
	for i, n := range names {
		names[i] = filepath.Join(path, n)
	}
	return names, nil
}

// Open opens the dataset at path (a file or a directory of shards).
func Open(ctx context.Context, path string, opts Options) (*Dataset, error) {
	names, err := Files(path)
	if err != nil {
		return nil, err
	}
	d := &Dataset{ring: opts.Ring}
	if d.ring == nil {
		if d.ring, err = uring.NewRing(uring.DefaultEntries); err != nil {
			return nil, fmt.Errorf("ffrfile: %w", err)
		}
		d.ownsRing = true
	}
	srcs := make([]ffrecord.Source, len(names))
	for i, n := range names {
		f, err := uring.Open(n, d.ring, uring.Options{NoDirect: opts.NoDirect})
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("ffrfile: %w", err)
		}
		d.files = append(d.files, f)
		srcs[i] = ffrecord.Source{Name: n, R: f, Size: f.Size()}
	}
	ropts := opts.ReaderOptions
	if ropts.Batcher == nil {
		ropts.Batcher = batcher{}
	}
	d.Reader, err = ffrecord.Open(ctx, srcs, ropts)
	if err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Direct reports whether every file is read with O_DIRECT; when false, reads
// go through the page cache (the filesystem refused O_DIRECT, or NoDirect).
func (d *Dataset) Direct() bool {
	for _, f := range d.files {
		if !f.Direct() {
			return false
		}
	}
	return true
}

// Close closes the dataset's files, and its ring when it made one.
func (d *Dataset) Close() error {
	var first error
	for _, f := range d.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	d.files = nil
	if d.ownsRing {
		if err := d.ring.Close(); err != nil && first == nil {
			first = err
		}
		d.ownsRing = false
	}
	return first
}

// batcher hands each file's share of a batch to that file's ReadBatch; all of
// them feed one ring, which submits them together.
type batcher struct{}

func (batcher) ReadBatch(ctx context.Context, reads []ffrecord.BatchRead) error {
	type group struct {
		f    *uring.File
		idx  []int
		reqs []uring.ReadReq
	}
	var groups []*group
	byFile := map[*uring.File]*group{}
	for k, rd := range reads {
		f, ok := rd.Src.(*uring.File)
		if !ok {
			return fmt.Errorf("ffrfile: batch read of a source that is not a local file (%T)", rd.Src)
		}
		g := byFile[f]
		if g == nil {
			g = &group{f: f}
			byFile[f] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, k)
		g.reqs = append(g.reqs, uring.ReadReq{Off: rd.Off, Buf: rd.Buf})
	}
	errs := make([]error, len(groups))
	run := func(i int) {
		g := groups[i]
		errs[i] = g.f.ReadBatch(ctx, g.reqs)
		for j, k := range g.idx {
			reads[k].Err = g.reqs[j].Err
		}
	}
	if len(groups) == 1 {
		run(0)
		return errs[0]
	}
	var wg sync.WaitGroup
	for i := range groups {
		wg.Add(1)
		go func() { defer wg.Done(); run(i) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
