package main

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"time"

	"fff/libfff"
)

// FFRecord datasets in a cluster: read through libfff Files with the
// client's Batcher (batched, coalesced storage reads), written by pack
// through libfff Files as io.WriterAt.

// connectCluster connects to the cluster of a parsed fff:// path.
func connectCluster(ctx context.Context, ref libfff.Path) (*libfff.Client, error) {
	c, err := libfff.Connect(ctx, libfff.Options{Address: ref.Cluster})
	if err != nil {
		return nil, explainConnect(ref.Cluster, err)
	}
	return c, nil
}

// packFile is a shard being written.
type packFile interface {
	io.WriterAt
	Sync() error
	Close() error
	size() (int64, error)
}

// packFS is where pack writes: the local disk or a cluster.
type packFS interface {
	stat(p string) (isDir bool, err error)
	readDirNames(p string) ([]string, error)
	mkdir(p string) error
	createExcl(p string) (packFile, error)
	rename(oldp, newp string) error
	remove(p string) error
	removeAll(p string) error
	syncDir(p string) error
	join(dir, name string) string
	dir(p string) string
	display(p string) string
	close() error
}

type localPackFS struct{}

type localPackFile struct{ *os.File }

func (f localPackFile) size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (localPackFS) stat(p string) (bool, error) {
	st, err := os.Stat(p)
	if err != nil {
		return false, err
	}
	return st.IsDir(), nil
}

func (localPackFS) readDirNames(p string) ([]string, error) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

func (localPackFS) mkdir(p string) error { return os.Mkdir(p, 0o755) }

func (localPackFS) createExcl(p string) (packFile, error) {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return localPackFile{f}, nil
}

func (localPackFS) rename(oldp, newp string) error { return os.Rename(oldp, newp) }
func (localPackFS) remove(p string) error          { return os.Remove(p) }
func (localPackFS) removeAll(p string) error       { return os.RemoveAll(p) }
func (localPackFS) syncDir(p string) error         { return syncDir(p) }
func (localPackFS) join(dir, name string) string   { return filepath.Join(dir, name) }
func (localPackFS) dir(p string) string            { return filepath.Dir(p) }
func (localPackFS) display(p string) string        { return p }
func (localPackFS) close() error                   { return nil }

// clusterPackFS writes into a cluster. Its metadata is durable when meta
// acknowledges it, so syncDir has nothing to do.
type clusterPackFS struct {
	ctx  context.Context
	c    *libfff.Client
	addr string
}

type clusterPackFile struct{ *libfff.File }

func (f clusterPackFile) size() (int64, error) { return f.Size(), nil }

func (f clusterPackFS) stat(p string) (bool, error) {
	st, err := f.c.Stat(f.ctx, p)
	if err != nil {
		return false, err
	}
	return st.IsDir(), nil
}

func (f clusterPackFS) readDirNames(p string) ([]string, error) {
	ents, err := f.c.ReadDir(f.ctx, p)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return names, nil
}

func (f clusterPackFS) mkdir(p string) error { return f.c.Mkdir(f.ctx, p, 0o755) }

func (f clusterPackFS) createExcl(p string) (packFile, error) {
	file, err := f.c.Open(f.ctx, p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	return clusterPackFile{file}, nil
}

func (f clusterPackFS) rename(oldp, newp string) error { return f.c.Rename(f.ctx, oldp, newp) }

// remove and removeAll clean up after a failure, an interrupt included:
// they run even when the command's context has ended.
func (f clusterPackFS) remove(p string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), 30*time.Second)
	defer cancel()
	return f.c.Remove(ctx, p)
}

func (f clusterPackFS) removeAll(p string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(f.ctx), 30*time.Second)
	defer cancel()
	return f.c.RemoveAll(ctx, p)
}

func (clusterPackFS) syncDir(string) error         { return nil }
func (clusterPackFS) join(dir, name string) string { return path.Join(dir, name) }
func (clusterPackFS) dir(p string) string          { return path.Dir(p) }
func (f clusterPackFS) display(p string) string {
	return libfff.Path{Remote: true, Cluster: f.addr, Path: p}.String()
}
func (f clusterPackFS) close() error { return f.c.Close() }

// packOutputFS resolves pack's -o argument: the file system and the path in
// it, with a trailing '/' kept (it asks for a directory).
func packOutputFS(ctx context.Context, arg string) (packFS, string, error) {
	ref, err := libfff.ParsePath(arg)
	if err != nil {
		return nil, "", &usageError{err}
	}
	if !ref.Remote {
		return localPackFS{}, ref.Path, nil
	}
	c, err := connectCluster(ctx, ref)
	if err != nil {
		return nil, "", &exitError{1, err}
	}
	out := ref.Path
	if len(arg) > len(libfff.Scheme) && arg[len(arg)-1] == '/' && out != "/" {
		out += "/"
	}
	return clusterPackFS{ctx: ctx, c: c, addr: ref.Cluster}, out, nil
}

// isNotExist reports a missing file on either file system.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
