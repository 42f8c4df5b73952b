// Package dataset opens and writes FFRecord datasets wherever they live: in a
// cluster ("fff:///…", "fff://HOST:PORT/…", read and written through a
// libfff.Client) or on the local disk (any other path; read through io_uring
// with O_DIRECT by package ffrfile). It is the path-resolving layer shared by
// the C API (libfff.so) and the CLI.
//
//	ds, err := dataset.Open(ctx, nil, "fff:///data/train", dataset.Options{Verify: true})
//	if err != nil { … }
//	defer ds.Close()
//	r := ds.Reader() // *ffrecord.Reader over every *.ffr file, in name order
//
// A dataset is one .ffr file or a directory whose *.ffr files, in name
// order, are indexed as one concatenation (DESIGN §8).
package dataset

import (
	"context"
	"fmt"
	"io/fs"
	"path"

	"fff/ffrecord"
	"fff/ffrecord/ffrfile"
	"fff/internal/proto"
	"fff/libfff"
)

// Options configure Open.
type Options struct {
	// Verify checks every sample's checksum as it is read (metadata is
	// always checked).
	Verify bool
	// NoDirect reads local files through the page cache instead of
	// O_DIRECT.
	NoDirect bool
	// Connect configures the client Open makes for a cluster path when it
	// is given none (its Address is taken from the path when the path
	// names one).
	Connect libfff.Options
}

// Dataset is an open FFRecord dataset: a Reader and what it reads from.
type Dataset struct {
	r      *ffrecord.Reader
	name   string
	local  *ffrfile.Dataset
	files  []*libfff.File
	client *libfff.Client // non-nil when Open connected it (owned)
}

// Reader returns the dataset's reader. It is valid until Close.
func (d *Dataset) Reader() *ffrecord.Reader { return d.r }

// Name returns the path the dataset was opened with.
func (d *Dataset) Name() string { return d.name }

// Local reports whether the dataset is on the local disk.
func (d *Dataset) Local() bool { return d.local != nil }

// Close closes the dataset's files, and the client Open connected, if any.
// Reads must have returned before Close is called.
func (d *Dataset) Close() error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	if d.local != nil {
		keep(d.local.Close())
		d.local = nil
	}
	for _, f := range d.files {
		keep(f.Close())
	}
	d.files = nil
	if d.client != nil {
		keep(d.client.Close())
		d.client = nil
	}
	return first
}

// Open opens the dataset at p: a cluster path read through c (or, when c
// is nil, through a new client for the cluster the path names, or the
// default cluster, closed with the dataset), or a local path. c is ignored
// for local paths.
func Open(ctx context.Context, c *libfff.Client, p string, opts Options) (*Dataset, error) {
	ref, err := libfff.ParsePath(p)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: &proto.Error{Code: proto.EINVAL, Msg: err.Error()}}
	}
	ropts := ffrecord.ReaderOptions{NoVerify: !opts.Verify}
	if !ref.Remote {
		ld, err := ffrfile.Open(ctx, ref.Path, ffrfile.Options{ReaderOptions: ropts, NoDirect: opts.NoDirect})
		if err != nil {
			return nil, err
		}
		return &Dataset{r: ld.Reader, name: p, local: ld}, nil
	}
	d := &Dataset{name: p}
	if c == nil {
		if c, err = Connect(ctx, ref, opts.Connect); err != nil {
			return nil, err
		}
		d.client = c
	}
	if err := d.openRemote(ctx, c, ref, ropts); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// Connect connects to the cluster ref names (the default cluster for
// fff:///…), with opts for everything else.
func Connect(ctx context.Context, ref libfff.Path, opts libfff.Options) (*libfff.Client, error) {
	if ref.Cluster != "" {
		opts.Address = ref.Cluster
	}
	return libfff.Connect(ctx, opts)
}

// Names resolves the files of the cluster dataset at p: p itself when it is
// a file, else the *.ffr files directly inside it, in name order.
func Names(ctx context.Context, c *libfff.Client, p string) ([]string, error) {
	st, err := c.Stat(ctx, p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	ents, err := c.ReadDir(ctx, p)
	if err != nil {
		return nil, err
	}
	var base []string
	for _, e := range ents {
		if !e.IsDir() {
			base = append(base, e.Name())
		}
	}
	base = ffrecord.ShardNames(base)
	if len(base) == 0 {
		return nil, &fs.PathError{Op: "open", Path: p, Err: &proto.Error{Code: proto.ENOENT, Msg: "no *.ffr files in directory"}}
	}
	names := make([]string, len(base))
	for i, b := range base {
		names[i] = path.Join(p, b)
	}
	return names, nil
}

func (d *Dataset) openRemote(ctx context.Context, c *libfff.Client, ref libfff.Path, ropts ffrecord.ReaderOptions) error {
	if ref.Cluster != "" && ref.Cluster != c.Address() {
		return &fs.PathError{Op: "open", Path: ref.String(), Err: &proto.Error{Code: proto.EXDEV,
			Msg: fmt.Sprintf("names the cluster at %s; the client is connected to %s", ref.Cluster, c.Address())}}
	}
	names, err := Names(ctx, c, ref.Path)
	if err != nil {
		return err
	}
	srcs := make([]ffrecord.Source, len(names))
	for i, n := range names {
		f, err := c.OpenFile(ctx, n)
		if err != nil {
			return err
		}
		d.files = append(d.files, f)
		srcs[i] = ffrecord.Source{Name: libfff.Path{Remote: true, Cluster: ref.Cluster, Path: n}.String(), R: f, Size: f.Size()}
	}
	ropts.Batcher = c.Batcher()
	r, err := ffrecord.Open(ctx, srcs, ropts)
	if err != nil {
		return err
	}
	d.r = r
	return nil
}
