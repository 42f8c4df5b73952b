package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"fff/libfff"
)

// The data commands (put, get, cp, cat) move file contents between the local
// disk and a cluster. put and get read as they say: `fff put LOCAL... REMOTE`,
// `fff get REMOTE... LOCAL`, where REMOTE is /a/b or fff:///a/b (or
// fff://HOST:PORT/a/b). For cp, only fff:// paths are in a cluster. Like
// coreutils, a file that fails is reported on stderr and the others go on;
// the command then exits 1.

// xferBuf is the copy buffer per worker: one chunk of the default layout, so
// that writes into fff go out as whole-chunk writes.
const xferBuf = 4 << 20

// xinfo is what a transfer needs to know about a file.
type xinfo struct {
	isDir bool
	size  int64
	perm  fs.FileMode
}

// xent is a directory entry.
type xent struct {
	name   string
	isDir  bool
	isLink bool
}

// xfs is one side of a transfer: the local disk or a cluster.
type xfs interface {
	stat(ctx context.Context, p string) (xinfo, error) // follows symlinks
	readDir(ctx context.Context, p string) ([]xent, error)
	mkdirAll(ctx context.Context, p string) error
	open(ctx context.Context, p string) (io.ReadCloser, error)
	create(ctx context.Context, p string, perm fs.FileMode) (io.WriteCloser, error)
	join(dir, name string) string
	base(p string) string
	display(p string) string
	// same reports whether a and b are known to be one file.
	same(ctx context.Context, a, b string) bool
}

type localFS struct{}

func (localFS) stat(_ context.Context, p string) (xinfo, error) {
	st, err := os.Stat(p)
	if err != nil {
		return xinfo{}, err
	}
	return xinfo{isDir: st.IsDir(), size: st.Size(), perm: st.Mode().Perm()}, nil
}

func (localFS) readDir(_ context.Context, p string) ([]xent, error) {
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, err
	}
	out := make([]xent, len(ents))
	for i, e := range ents {
		out[i] = xent{name: e.Name(), isDir: e.IsDir(), isLink: e.Type()&fs.ModeSymlink != 0}
	}
	return out, nil
}

func (localFS) mkdirAll(_ context.Context, p string) error { return os.MkdirAll(p, 0o755) }

func (localFS) open(_ context.Context, p string) (io.ReadCloser, error) { return os.Open(p) }

func (localFS) create(_ context.Context, p string, perm fs.FileMode) (io.WriteCloser, error) {
	return os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
}

func (localFS) join(dir, name string) string { return filepath.Join(dir, name) }
func (localFS) base(p string) string         { return filepath.Base(p) }
func (localFS) display(p string) string      { return p }

func (localFS) same(_ context.Context, a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// clusterFS is a cluster's namespace through libfff.
type clusterFS struct {
	c    *libfff.Client
	addr string // HOST:PORT of fff://HOST:PORT/ paths, "" for the default cluster
}

func (f clusterFS) stat(ctx context.Context, p string) (xinfo, error) {
	st, err := f.c.Stat(ctx, p)
	if err != nil {
		return xinfo{}, err
	}
	return xinfo{isDir: st.IsDir(), size: st.Size(), perm: st.Mode().Perm()}, nil
}

func (f clusterFS) readDir(ctx context.Context, p string) ([]xent, error) {
	ents, err := f.c.ReadDir(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]xent, len(ents))
	for i, e := range ents {
		out[i] = xent{name: e.Name(), isDir: e.IsDir(), isLink: e.Type()&fs.ModeSymlink != 0}
	}
	return out, nil
}

func (f clusterFS) mkdirAll(ctx context.Context, p string) error { return f.c.MkdirAll(ctx, p, 0o755) }

func (f clusterFS) open(ctx context.Context, p string) (io.ReadCloser, error) {
	return f.c.OpenFile(ctx, p)
}

func (f clusterFS) create(ctx context.Context, p string, perm fs.FileMode) (io.WriteCloser, error) {
	return f.c.Open(ctx, p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
}

func (clusterFS) join(dir, name string) string { return path.Join(dir, name) }
func (clusterFS) base(p string) string         { return path.Base(p) }
func (f clusterFS) display(p string) string    { return libfff.Scheme + f.addr + p }

func (f clusterFS) same(ctx context.Context, a, b string) bool {
	sa, err1 := f.c.Stat(ctx, a)
	sb, err2 := f.c.Stat(ctx, b)
	return err1 == nil && err2 == nil && sa.Ino() == sb.Ino()
}

// sameFS reports whether a and b are the same file system (one cluster may
// be named two ways, fff:/// and fff://HOST:PORT/; its client is shared).
func sameFS(a, b xfs) bool {
	ca, ok1 := a.(clusterFS)
	cb, ok2 := b.(clusterFS)
	if ok1 && ok2 {
		return ca.c == cb.c
	}
	return !ok1 && !ok2
}

// endpoint is a resolved path argument of a transfer.
type endpoint struct {
	fs    xfs
	path  string
	slash bool // written with a trailing '/': must be a directory
	arg   string
}

// Which side an argument may be on.
const (
	sideLocal = iota
	sideCluster
	sideAuto // cp: fff:// paths are in a cluster, others local
)

func (s *nsSession) endpoint(arg string, side int) (endpoint, error) {
	p, err := libfff.ParsePath(arg)
	if err != nil {
		return endpoint{}, &usageError{err}
	}
	slash := strings.HasSuffix(arg, "/")
	remote := p.Remote || side == sideCluster
	if p.Remote && side == sideLocal {
		return endpoint{}, usageErrorf("%s is a cluster path, but %s takes a local one here (use 'fff cp' to copy within clusters)", arg, s.cmd.CommandPath())
	}
	if !remote {
		return endpoint{fs: localFS{}, path: p.Path, slash: slash, arg: arg}, nil
	}
	t, err := s.resolve(arg)
	if err != nil {
		return endpoint{}, err
	}
	return endpoint{fs: clusterFS{c: t.c, addr: p.Cluster}, path: t.path, slash: slash, arg: arg}, nil
}

type xferOpts struct {
	recursive bool
	verify    bool
	jobs      int
}

func addXferFlags(cmd *cobra.Command, o *xferOpts) {
	f := cmd.Flags()
	f.BoolVarP(&o.recursive, "recursive", "r", false, "copy directories and everything below them")
	f.BoolVar(&o.verify, "verify", false, "re-read every copied file and compare its sha256 with the source's")
	f.IntVarP(&o.jobs, "jobs", "j", min(16, 4*runtime.NumCPU()), "files copied in parallel")
}

// xjob is one file to copy.
type xjob struct {
	sfs, dfs xfs
	src, dst string
	size     int64
	perm     fs.FileMode
}

// transfer is one run of put, get or cp.
type transfer struct {
	s    *nsSession
	o    xferOpts
	jobs []xjob
	dirs []struct {
		fs xfs
		p  string
	}
	bytes int64
}

func newXferCmd(use, short, long string, srcSide, dstSide int) *cobra.Command {
	var o xferOpts
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.jobs < 1 {
				return usageErrorf("-j %d: give 1 or more", o.jobs)
			}
			return nsRun(cmd, func(s *nsSession) error {
				var srcs []endpoint
				for _, a := range args[:len(args)-1] {
					e, err := s.endpoint(a, srcSide)
					if err != nil {
						return err
					}
					srcs = append(srcs, e)
				}
				dst, err := s.endpoint(args[len(args)-1], dstSide)
				if err != nil {
					return err
				}
				t := &transfer{s: s, o: o}
				return t.run(srcs, dst)
			})
		},
	}
	addXferFlags(cmd, &o)
	return cmd
}

const xferHelp = `
With several sources, or when the destination is an existing directory or
ends with '/', each source is copied into it under its own name (a missing
destination written with '/' is created). A directory source needs -r; it
is copied as a whole tree (symlinks to files are followed, symlinks to
directories skipped). Existing files are overwritten. -j files are copied at
once; a file read from a cluster is read ahead, 64 MiB in flight over all of
them (16 pieces of 4 MiB for one file, at least 2 per file). A progress bar
is shown when stderr is a terminal. --verify re-reads every copy and
compares its sha256 with the source's.`

func newPutCmd() *cobra.Command {
	return withExample(`  fff put model.bin /ckpt/
  fff put -r --verify -j 16 images/ fff:///datasets/
  fff put a.txt b.txt /docs`, newXferCmd("put LOCAL... REMOTE", "Copy local files into a cluster",
		"Copy local files (and, with -r, directory trees) to REMOTE in a cluster.\n"+xferHelp+"\n"+nsPathHelp,
		sideLocal, sideCluster))
}

func withExample(ex string, cmd *cobra.Command) *cobra.Command {
	cmd.Example = ex
	return cmd
}

func newGetCmd() *cobra.Command {
	return withExample(`  fff get /ckpt/model.bin .
  fff get -r --verify fff:///datasets/images ./images`, newXferCmd("get REMOTE... LOCAL", "Copy files from a cluster to the local disk",
		"Copy files of a cluster (and, with -r, directory trees) to LOCAL.\n"+xferHelp+"\n"+nsPathHelp,
		sideCluster, sideLocal))
}

func newCpCmd() *cobra.Command {
	return withExample(`  fff cp data.bin fff:///data/
  fff cp -r fff:///data/run1 ./run1
  fff cp fff:///a/x fff://10.0.0.5:8000/b/x`, newXferCmd("cp SRC... DST", "Copy files between the local disk and clusters",
		"Copy files in any direction: fff:///PATH and fff://HOST:PORT/PATH are in a\ncluster, any other path is local.\n"+xferHelp,
		sideAuto, sideAuto))
}

func (t *transfer) run(srcs []endpoint, dst endpoint) error {
	ctx := t.s.ctx
	start := time.Now()
	dinfo, derr := dst.fs.stat(ctx, dst.path)
	intoDir := derr == nil && dinfo.isDir
	switch {
	case derr == nil && !dinfo.isDir && (dst.slash || len(srcs) > 1):
		return &exitError{1, fmt.Errorf("%s is not a directory", dst.arg)}
	case derr != nil && !errors.Is(derr, fs.ErrNotExist):
		return &exitError{1, fmt.Errorf("%s: %s", dst.arg, nsErrText(derr))}
	case derr != nil && len(srcs) > 1 && !dst.slash:
		return &exitError{1, fmt.Errorf("%s: no such directory (end it with '/' to create it)", dst.arg)}
	case derr != nil && dst.slash:
		t.addDir(dst.fs, dst.path)
		intoDir = true
	}
	for _, src := range srcs {
		info, err := src.fs.stat(ctx, src.path)
		if err != nil {
			t.s.fail(src.arg, err)
			continue
		}
		target := dst.path
		if intoDir {
			target = dst.fs.join(dst.path, src.fs.base(src.path))
		}
		if !info.isDir {
			t.addFile(src.fs, dst.fs, src.path, target, info)
			continue
		}
		if !t.o.recursive {
			t.s.failf("%s is a directory: use -r to copy it", src.arg)
			continue
		}
		if err := t.walk(src.fs, dst.fs, src.path, target); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			t.s.fail(src.arg, err)
		}
	}
	for _, d := range t.dirs {
		if err := d.fs.mkdirAll(ctx, d.p); err != nil {
			return &exitError{1, fmt.Errorf("cannot create %s: %s", d.fs.display(d.p), nsErrText(err))}
		}
	}
	prog := newProgress(t.s.cmd.Name(), t.bytes, int64(len(t.jobs)))
	failed := t.copyAll(prog)
	prog.Finish(failed == 0 && ctx.Err() == nil)
	if err := ctx.Err(); err != nil {
		return err
	}
	if isTerminal(os.Stderr) && len(t.jobs) > 0 {
		el := time.Since(start)
		verified := ""
		if t.o.verify && failed == 0 {
			verified = ", sha256 verified"
		}
		fmt.Fprintf(os.Stderr, "%d file(s), %s in %.1fs (%s/s)%s\n", len(t.jobs)-failed, humanBytes(t.bytes), el.Seconds(),
			humanBytes(int64(float64(t.bytes)/max(el.Seconds(), 1e-3))), verified)
	}
	return nil
}

func (t *transfer) addDir(f xfs, p string) {
	t.dirs = append(t.dirs, struct {
		fs xfs
		p  string
	}{f, p})
}

func (t *transfer) addFile(sfs, dfs xfs, src, dst string, info xinfo) {
	perm := info.perm
	if perm == 0 {
		perm = 0o644
	}
	t.jobs = append(t.jobs, xjob{sfs: sfs, dfs: dfs, src: src, dst: dst, size: info.size, perm: perm})
	t.bytes += info.size
}

// walk lists the tree at src (a directory) as directories and files to create under dst.
func (t *transfer) walk(sfs, dfs xfs, src, dst string) error {
	ctx := t.s.ctx
	t.addDir(dfs, dst)
	ents, err := sfs.readDir(ctx, src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		sp, dp := sfs.join(src, e.name), dfs.join(dst, e.name)
		if e.isDir {
			if err := t.walk(sfs, dfs, sp, dp); err != nil {
				t.s.fail(sfs.display(sp), err)
			}
			continue
		}
		info, err := sfs.stat(ctx, sp)
		if err != nil {
			t.s.fail(sfs.display(sp), err)
			continue
		}
		if info.isDir { // a symlink to a directory
			log.Warn().Str("path", sfs.display(sp)).Msg("skipping symlink to a directory")
			continue
		}
		t.addFile(sfs, dfs, sp, dp, info)
	}
	return nil
}

// copyAll copies the jobs with o.jobs workers and returns how many failed.
func (t *transfer) copyAll(prog *progress) int {
	ctx := t.s.ctx
	work := make(chan *xjob)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	workers := min(t.o.jobs, max(len(t.jobs), 1))
	for range workers {
		wg.Go(func() {
			bufs := newCopyBufs(aheadDepth(workers))
			for j := range work {
				pending, err := copyFile(ctx, j, bufs, t.o.verify, prog)
				if err != nil {
					mu.Lock()
					failed++
					if ctx.Err() == nil {
						t.s.failf("%s -> %s: %s", j.sfs.display(j.src), j.dfs.display(j.dst), nsErrText(err))
					}
					mu.Unlock()
				}
				// The file's last bytes count with the file, so that the
				// bar reaches 100% with the file count complete.
				prog.Add(pending, 1)
			}
		})
	}
feed:
	for i := range t.jobs {
		select {
		case work <- &t.jobs[i]:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return failed
}

// copyFile copies one file; with verify it re-reads the copy and compares
// sha256 sums. It reports the bytes copied to prog except the last ones
// (from the listed size on), which it returns.
func copyFile(ctx context.Context, j *xjob, bufs *copyBufs, verify bool, prog *progress) (pending int64, err error) {
	var reported int64
	count := func(n int64) {
		if reported+n < j.size {
			reported += n
			prog.Add(n, 0)
		} else {
			pending += n
		}
	}
	err = copyFileCounted(ctx, j, bufs, verify, count)
	return pending, err
}

func copyFileCounted(ctx context.Context, j *xjob, bufs *copyBufs, verify bool, count func(int64)) error {
	if sameFS(j.sfs, j.dfs) && j.sfs.same(ctx, j.src, j.dst) {
		return errors.New("source and destination are the same file")
	}
	r, err := j.sfs.open(ctx, j.src)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := j.dfs.create(ctx, j.dst, j.perm)
	if err != nil {
		return err
	}
	var h hash.Hash
	if verify {
		h = sha256.New()
	}
	n, err := copyFrom(ctx, w, r, bufs, h, count)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if n != j.size {
		log.Debug().Str("file", j.sfs.display(j.src)).Int64("listed", j.size).Int64("copied", n).Msg("size changed while copying")
	}
	if !verify {
		return nil
	}
	want := h.Sum(nil)
	rr, err := j.dfs.open(ctx, j.dst)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	defer rr.Close()
	h2 := sha256.New()
	if _, err := copyFrom(ctx, h2, rr, bufs, nil, nil); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if got := h2.Sum(nil); !bytes.Equal(got, want) {
		return fmt.Errorf("sha256 mismatch: copy has %x, source had %x", got, want)
	}
	return nil
}

// copyStream copies r to w through buf, hashing into h and telling count
// the bytes copied when set.
func copyStream(ctx context.Context, w io.Writer, r io.Reader, buf []byte, h hash.Hash, count func(int64)) (int64, error) {
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return total, err
			}
			if h != nil {
				h.Write(buf[:n])
			}
			total += int64(n)
			if count != nil {
				count(int64(n))
			}
		}
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			return total, nil
		case rerr != nil:
			return total, rerr
		}
	}
}

func newFileCatCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "cat PATH...",
		Short: "Write files of a cluster to stdout",
		Long:  "Write the contents of files of a cluster, in order, to stdout.\n" + nsPathHelp,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsRun(cmd, func(s *nsSession) error {
				bufs := newCopyBufs(aheadDepth(1))
				return s.forEach(args, func(t nsTarget) error {
					f, err := t.c.OpenFile(s.ctx, t.path)
					if err != nil {
						return err
					}
					defer f.Close()
					_, err = copyFrom(s.ctx, cmd.OutOrStdout(), f, bufs, nil, nil)
					return err
				})
			})
		},
	}
}
