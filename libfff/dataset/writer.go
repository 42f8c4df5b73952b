package dataset

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"fff/ffrecord"
	"fff/internal/proto"
	"fff/libfff"
)

// WriterOptions configure Create.
type WriterOptions struct {
	// Format is ffrecord.V1 or ffrecord.V2 (the default).
	Format ffrecord.Version
	// Alignment (v2 only): see ffrecord.WriterOptions.Alignment.
	Alignment int64
	// Connect configures the client Create makes for a cluster path when it
	// is given none.
	Connect libfff.Options
}

// Writer writes one FFRecord file, locally or into a cluster. The samples go
// to a temporary file next to the destination (NAME.RANDOM.tmp), which
// Commit renames into place, so the file appears whole or not at all; Abort
// removes it.
//
// A v1 file's index precedes its samples and holds their count, which is
// unknown until Commit: the samples of a v1 Writer are spooled to an
// unlinked temporary file in $TMPDIR and copied into the destination by
// Commit (twice the IO of v2, whose index follows the samples and which is
// written in one pass).
//
// A Writer is not safe for concurrent use.
type Writer struct {
	name   string // as given to Create
	format ffrecord.Version
	align  int64

	out    writerFile
	tmp    string
	final  string
	fsys   writerFS
	client *libfff.Client // owned, when Create connected it

	w *ffrecord.Writer // v2, and v1 during Commit

	// v1 spool
	spool    *os.File
	spoolBuf *bufio.Writer
	lengths  []int64

	done bool
	err  error // sticky
}

type writerFile interface {
	io.WriterAt
	Sync() error
	Close() error
}

// writerFS is where the file goes: the local disk or a cluster.
type writerFS interface {
	createExcl(ctx context.Context, p string) (writerFile, error)
	rename(ctx context.Context, oldp, newp string) error
	remove(p string) error
	syncDir(p string) error
}

type localFS struct{}

func (localFS) createExcl(_ context.Context, p string) (writerFile, error) {
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
}
func (localFS) rename(_ context.Context, oldp, newp string) error { return os.Rename(oldp, newp) }
func (localFS) remove(p string) error                             { return os.Remove(p) }
func (localFS) syncDir(p string) error {
	d, err := os.Open(p)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type clusterFS struct{ c *libfff.Client }

func (f clusterFS) createExcl(ctx context.Context, p string) (writerFile, error) {
	return f.c.Open(ctx, p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
}
func (f clusterFS) rename(ctx context.Context, oldp, newp string) error {
	return f.c.Rename(ctx, oldp, newp)
}

// remove cleans up after a failure or an abort, whatever the caller's
// context.
func (f clusterFS) remove(p string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return f.c.Remove(ctx, p)
}

// syncDir has nothing to do: cluster metadata is durable when acknowledged.
func (clusterFS) syncDir(string) error { return nil }

// Create starts writing the FFRecord file p: a cluster path written through
// c (or, when c is nil, a new client for the cluster p names, closed with
// the Writer), or a local path. The parent directory must exist.
func Create(ctx context.Context, c *libfff.Client, p string, opts WriterOptions) (_ *Writer, err error) {
	if opts.Format == 0 {
		opts.Format = ffrecord.V2
	}
	if opts.Format != ffrecord.V1 && opts.Format != ffrecord.V2 {
		return nil, &fs.PathError{Op: "create", Path: p, Err: &proto.Error{Code: proto.EINVAL, Msg: fmt.Sprintf("unknown FFRecord version %d: write 1 or 2", opts.Format)}}
	}
	ref, err := libfff.ParsePath(p)
	if err != nil {
		return nil, &fs.PathError{Op: "create", Path: p, Err: &proto.Error{Code: proto.EINVAL, Msg: err.Error()}}
	}
	w := &Writer{name: p, format: opts.Format, align: opts.Alignment}
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	suffix, err := randomSuffix()
	if err != nil {
		return nil, err
	}
	if ref.Remote {
		if c == nil {
			if c, err = Connect(ctx, ref, opts.Connect); err != nil {
				return nil, err
			}
			w.client = c
		} else if ref.Cluster != "" && ref.Cluster != c.Address() {
			return nil, &fs.PathError{Op: "create", Path: p, Err: &proto.Error{Code: proto.EXDEV,
				Msg: fmt.Sprintf("names the cluster at %s; the client is connected to %s", ref.Cluster, c.Address())}}
		}
		w.fsys = clusterFS{c}
		w.final = libfff.CleanPath(ref.Path)
		if w.final == "/" {
			return nil, &fs.PathError{Op: "create", Path: p, Err: proto.ErrIsDir}
		}
	} else {
		w.fsys = localFS{}
		w.final = filepath.Clean(ref.Path)
	}
	w.tmp = w.final + "." + suffix + ".tmp"
	out, err := w.fsys.createExcl(ctx, w.tmp)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) { // name what is missing, not the temporary file
			return nil, &fs.PathError{Op: "create", Path: p, Err: &proto.Error{Code: proto.ENOENT,
				Msg: fmt.Sprintf("directory %s does not exist (create it first: fff mkdir -p, fff.makedirs, os.makedirs)", filepath.Dir(w.final))}}
		}
		return nil, err
	}
	w.out = out
	if w.format == ffrecord.V1 {
		if w.spool, err = os.CreateTemp("", "fff-ffr-spool-*"); err != nil {
			return nil, fmt.Errorf("spooling the samples of v1 file %s: %w", p, err)
		}
		os.Remove(w.spool.Name()) // unlinked: gone with the last descriptor
		w.spoolBuf = bufio.NewWriterSize(w.spool, 1<<20)
		return w, nil
	}
	w.w, err = ffrecord.NewWriter(out, ffrecord.WriterOptions{Format: ffrecord.V2, Alignment: opts.Alignment, Name: p})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func randomSuffix() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// Name returns the path the Writer was created with.
func (w *Writer) Name() string { return w.name }

// Format returns the file's FFRecord version.
func (w *Writer) Format() ffrecord.Version { return w.format }

// Count returns the number of samples written so far.
func (w *Writer) Count() int64 {
	if w.format == ffrecord.V1 {
		return int64(len(w.lengths))
	}
	return w.w.Count()
}

func (w *Writer) usable() error {
	if w.done {
		return &ffrecord.Error{File: w.name, Sample: -1, Index: -1, Err: ffrecord.ErrWriter, Detail: "the writer was committed or aborted"}
	}
	return w.err
}

// Write appends a sample. The Writer does not keep sample after it
// returns.
func (w *Writer) Write(sample []byte) error { return w.WriteKeyed("", sample) }

// WriteKeyed appends a sample with a key; v1 files have no keys, so a
// non-empty key is refused there (ffrecord.ErrWriter).
func (w *Writer) WriteKeyed(key string, sample []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.format == ffrecord.V1 {
		if key != "" {
			return &ffrecord.Error{File: w.name, Sample: int64(len(w.lengths)), Index: -1, Err: ffrecord.ErrWriter, Detail: "v1 files have no keys: write version 2"}
		}
		if _, err := w.spoolBuf.Write(sample); err != nil {
			w.err = fmt.Errorf("spooling sample %d of v1 file %s: %w", len(w.lengths), w.name, err)
			return w.err
		}
		w.lengths = append(w.lengths, int64(len(sample)))
		return nil
	}
	if err := w.w.WriteKeyed(key, sample); err != nil {
		w.err = err
		return err
	}
	return nil
}

// Commit finishes the file (index, footer), makes it durable and renames it
// into place, replacing a file of that name. On failure the temporary file
// is removed. The Writer is finished either way.
func (w *Writer) Commit(ctx context.Context) error {
	if err := w.usable(); err != nil {
		w.Abort()
		return err
	}
	err := w.finish(ctx)
	if err != nil {
		w.Abort()
		return err
	}
	w.done = true
	return w.release()
}

func (w *Writer) finish(ctx context.Context) error {
	if w.format == ffrecord.V1 {
		if err := w.spoolBuf.Flush(); err != nil {
			return fmt.Errorf("spooling v1 file %s: %w", w.name, err)
		}
		var err error
		w.w, err = ffrecord.NewWriter(w.out, ffrecord.WriterOptions{Format: ffrecord.V1, Count: int64(len(w.lengths)), Name: w.name})
		if err != nil {
			return err
		}
		var total int64
		for _, n := range w.lengths {
			total += n
		}
		br := bufio.NewReaderSize(io.NewSectionReader(w.spool, 0, total), 1<<20)
		for i, n := range w.lengths {
			if i%1024 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if err := w.w.WriteFrom("", br, n); err != nil {
				return err
			}
		}
	}
	if err := w.w.Close(); err != nil {
		return err
	}
	if err := w.out.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", w.name, err)
	}
	out := w.out
	w.out = nil
	if err := out.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", w.name, err)
	}
	if err := w.fsys.rename(ctx, w.tmp, w.final); err != nil {
		return err
	}
	w.tmp = ""
	if err := w.fsys.syncDir(filepath.Dir(w.final)); err != nil {
		return fmt.Errorf("syncing the directory of %s: %w", w.name, err)
	}
	return nil
}

// Abort discards the file: the temporary file is removed. It does nothing
// after Commit.
func (w *Writer) Abort() error {
	var errs []error
	if w.out != nil {
		errs = append(errs, w.out.Close())
		w.out = nil
	}
	if w.tmp != "" && w.fsys != nil {
		if err := w.fsys.remove(w.tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		w.tmp = ""
	}
	w.done = true
	errs = append(errs, w.release())
	return errors.Join(errs...)
}

// release closes the spool and the owned client.
func (w *Writer) release() error {
	var err error
	if w.spool != nil {
		w.spool.Close()
		w.spool = nil
	}
	if w.client != nil {
		err = w.client.Close()
		w.client = nil
	}
	return err
}
