package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
//
// Every file is written atomically: into a cluster as an anonymous file
// (libfff.CreateTemp) that Publish names once all of it is written; onto
// the local disk as a hidden temporary file in the destination's directory
// that is renamed over the name once written and fsynced. An interrupted
// copy (Ctrl-C, a failure) discards its temporary files; one killed with
// SIGKILL leaves a cluster's to meta, which deletes them when their write
// session times out, and a local disk's as .NAME.RANDOM.fff-tmp.

// xferBuf is the copy buffer per worker: one chunk of the default layout, so
// that writes into fff go out as whole-chunk writes.
const xferBuf = 4 << 20

// stdio is the path argument that names stdin (a put source) or stdout (a
// get destination).
const stdio = "-"

// xinfo is what a transfer needs to know about a file.
type xinfo struct {
	isDir bool
	size  int64
	perm  fs.FileMode
	mtime time.Time
}

// xent is a directory entry.
type xent struct {
	name   string
	isDir  bool
	isLink bool
}

// xattrs are the attributes -p carries over.
type xattrs struct {
	perm  fs.FileMode
	mtime time.Time
}

// xfs is one side of a transfer: the local disk, a cluster, or stdin and
// stdout.
type xfs interface {
	stat(ctx context.Context, p string) (xinfo, error) // follows symlinks
	readDir(ctx context.Context, p string) ([]xent, error)
	mkdirAll(ctx context.Context, p string) error
	open(ctx context.Context, p string) (io.ReadCloser, error)
	// create starts writing file p (following a symlink p names). The
	// file gets permissions perm when exact is set or p does not exist,
	// else the permissions of the file it replaces (as cp does).
	create(ctx context.Context, p string, perm fs.FileMode, exact bool) (xfile, error)
	// setAttrs sets the attributes of directory p (-p).
	setAttrs(ctx context.Context, p string, a xattrs) error
	join(dir, name string) string
	base(p string) string
	display(p string) string
	// same reports whether a and b are known to be one file.
	same(ctx context.Context, a, b string) bool
}

// xfile is a file being written: nothing of it shows under its name until
// commit.
type xfile interface {
	io.Writer
	// reader reads back what was written, for --verify (nil: it cannot).
	reader() io.Reader
	// commit makes the file visible under its name, with attributes a
	// when set; on failure the file is discarded.
	commit(ctx context.Context, a *xattrs) error
	// abort discards the file; a no-op after commit.
	abort()
}

type localFS struct{}

func (localFS) stat(_ context.Context, p string) (xinfo, error) {
	st, err := os.Stat(p)
	if err != nil {
		return xinfo{}, err
	}
	return xinfo{isDir: st.IsDir(), size: st.Size(), perm: st.Mode().Perm(), mtime: st.ModTime()}, nil
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

// tmpSuffix marks the temporary files of local copies.
const tmpSuffix = ".fff-tmp"

func (localFS) create(_ context.Context, p string, perm fs.FileMode, exact bool) (xfile, error) {
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real // replace what a symlink names, not the symlink
	}
	st, err := os.Stat(p)
	switch {
	case err == nil && st.IsDir():
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EISDIR}
	case err == nil && !st.Mode().IsRegular():
		// A device, FIFO or socket (/dev/null): written into, never
		// replaced.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return nil, err
		}
		return &localDirect{f: f}, nil
	case err == nil && !exact:
		perm = st.Mode().Perm()
		exact = true
	}
	dir, base := filepath.Split(p)
	if len(base) > 200 { // the temporary name must fit in NAME_MAX too
		base = base[:200]
	}
	for {
		// O_EXCL: never write into a file someone else made.
		tmp := filepath.Join(dir, "."+base+"."+randHex()+tmpSuffix)
		f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		t := &localTemp{f: f, tmp: tmp, dst: p}
		if exact {
			t.perm = &perm // the open applied the umask
		}
		return t, nil
	}
}

func randHex() string {
	var b [6]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b[:])
}

func (localFS) setAttrs(_ context.Context, p string, a xattrs) error {
	if err := os.Chmod(p, a.perm); err != nil {
		return err
	}
	return os.Chtimes(p, time.Time{}, a.mtime)
}

func (localFS) join(dir, name string) string { return filepath.Join(dir, name) }
func (localFS) base(p string) string         { return filepath.Base(p) }
func (localFS) display(p string) string      { return p }

func (localFS) same(_ context.Context, a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// localTemp is a local file being written as tmp, renamed to dst by
// commit.
type localTemp struct {
	f        *os.File
	tmp, dst string
	perm     *fs.FileMode // set exactly at commit
	done     bool
}

func (t *localTemp) Write(p []byte) (int, error) { return t.f.Write(p) }

func (t *localTemp) reader() io.Reader { return io.NewSectionReader(t.f, 0, math.MaxInt64) }

func (t *localTemp) commit(_ context.Context, a *xattrs) error {
	err := t.finish(a)
	if err != nil {
		t.abort()
	}
	t.done = true
	return err
}

func (t *localTemp) finish(a *xattrs) error {
	perm := t.perm
	if a != nil {
		perm = &a.perm
	}
	if perm != nil {
		if err := t.f.Chmod(*perm); err != nil {
			return err
		}
	}
	if err := t.f.Sync(); err != nil {
		return err
	}
	if err := t.f.Close(); err != nil {
		return err
	}
	if a != nil {
		if err := os.Chtimes(t.tmp, time.Time{}, a.mtime); err != nil {
			return err
		}
	}
	return os.Rename(t.tmp, t.dst)
}

func (t *localTemp) abort() {
	if t.done {
		return
	}
	t.done = true
	t.f.Close()
	os.Remove(t.tmp)
}

// localDirect writes into a local file that is not a regular file.
type localDirect struct{ f *os.File }

func (d *localDirect) Write(p []byte) (int, error)           { return d.f.Write(p) }
func (d *localDirect) reader() io.Reader                     { return nil }
func (d *localDirect) commit(context.Context, *xattrs) error { return d.f.Close() }
func (d *localDirect) abort()                                { d.f.Close() }

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
	return xinfo{isDir: st.IsDir(), size: st.Size(), perm: st.Mode().Perm(), mtime: st.ModTime()}, nil
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

func (f clusterFS) create(ctx context.Context, p string, perm fs.FileMode, exact bool) (xfile, error) {
	// Follow symlinks in the last component, as an open would (the server
	// resolves the others), so that a symlink's target is replaced.
	for range maxSymlinks {
		st, err := f.c.Lstat(ctx, p)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			switch {
			case err == nil && st.IsDir():
				// Refused before the data is sent, not by Publish after.
				return nil, &fs.PathError{Op: "create", Path: p, Err: syscall.EISDIR}
			case err == nil && !exact:
				perm = st.Mode().Perm()
			}
			break
		}
		target := st.Inode.Target
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean(target)
	}
	tf, err := f.c.CreateTemp(ctx, path.Dir(p), perm)
	if err != nil {
		return nil, err
	}
	return &clusterTemp{f: tf, dst: p}, nil
}

// maxSymlinks bounds the symlinks create follows (meta's bound for a path).
const maxSymlinks = 40

func (f clusterFS) setAttrs(ctx context.Context, p string, a xattrs) error {
	if err := f.c.Chmod(ctx, p, a.perm); err != nil {
		return err
	}
	return f.c.Chtimes(ctx, p, time.Time{}, a.mtime)
}

func (clusterFS) join(dir, name string) string { return path.Join(dir, name) }
func (clusterFS) base(p string) string         { return path.Base(p) }
func (f clusterFS) display(p string) string    { return libfff.Scheme + f.addr + p }

func (f clusterFS) same(ctx context.Context, a, b string) bool {
	sa, err1 := f.c.Stat(ctx, a)
	sb, err2 := f.c.Stat(ctx, b)
	return err1 == nil && err2 == nil && sa.Ino() == sb.Ino()
}

// clusterTemp is an anonymous file of a cluster, published as dst by
// commit.
type clusterTemp struct {
	f    *libfff.File
	dst  string
	done bool
}

func (t *clusterTemp) Write(p []byte) (int, error) { return t.f.Write(p) }

// reader reads the anonymous file itself (a *libfff.File: read ahead).
func (t *clusterTemp) reader() io.Reader { return t.f }

func (t *clusterTemp) commit(ctx context.Context, a *xattrs) error {
	t.done = true
	if a != nil {
		// Sync reports the writes, which set mtime, before the times are
		// set: Publish and Close then report none that would set it again.
		err := t.f.Sync()
		if err == nil {
			err = t.f.Chtimes(time.Time{}, a.mtime)
		}
		if err != nil {
			t.f.Close() // unpublished: deletes it
			return err
		}
	}
	if err := t.f.Publish(ctx, t.dst); err != nil {
		t.f.Close()
		return err
	}
	return t.f.Close()
}

// abort closes the unpublished file, which deletes it; it waits for the
// writes under way, so that none lands after its chunks are collected.
func (t *clusterTemp) abort() {
	if !t.done {
		t.done = true
		t.f.Close()
	}
}

// stdioFS is stdin as the source of put and stdout as the destination of
// get (the path "-").
type stdioFS struct {
	in  io.Reader
	out io.Writer
}

func (stdioFS) stat(context.Context, string) (xinfo, error) {
	return xinfo{perm: 0o644, mtime: time.Now()}, nil
}

func (stdioFS) readDir(context.Context, string) ([]xent, error) {
	return nil, errors.New("stdin is not a directory")
}

func (stdioFS) mkdirAll(context.Context, string) error {
	return errors.New("stdout is not a directory")
}

func (s stdioFS) open(ctx context.Context, _ string) (io.ReadCloser, error) {
	return io.NopCloser(&ctxReader{ctx: ctx, r: s.in}), nil
}

func (s stdioFS) create(context.Context, string, fs.FileMode, bool) (xfile, error) {
	return stdoutFile{s.out}, nil
}

func (stdioFS) setAttrs(context.Context, string, xattrs) error { return nil }
func (stdioFS) join(dir, name string) string                   { return dir }
func (stdioFS) base(string) string                             { return stdio }
func (stdioFS) same(context.Context, string, string) bool      { return false }

func (stdioFS) display(string) string { return stdio }

type stdoutFile struct{ io.Writer }

func (stdoutFile) reader() io.Reader                     { return nil }
func (stdoutFile) commit(context.Context, *xattrs) error { return nil }
func (stdoutFile) abort()                                {}

// ctxReader makes reads of r return when ctx ends: a read of stdin may
// block for ever (an idle pipe), and Ctrl-C must still discard the copy.
// The read under way is left behind, with the buffer it reads into.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	buf []byte
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	if len(c.buf) < len(p) {
		c.buf = make([]byte, len(p))
	}
	buf := c.buf[:len(p)]
	var n int
	var err error
	done := make(chan struct{})
	go func() {
		n, err = c.r.Read(buf)
		close(done)
	}()
	select {
	case <-done:
		return copy(p, buf[:n]), err
	case <-c.ctx.Done():
		c.buf = nil // still the abandoned read's
		return 0, c.ctx.Err()
	}
}

// sameFS reports whether a and b are the same file system (one cluster may
// be named two ways, fff:/// and fff://HOST:PORT/; its client is shared).
func sameFS(a, b xfs) bool {
	ca, ok1 := a.(clusterFS)
	cb, ok2 := b.(clusterFS)
	if ok1 && ok2 {
		return ca.c == cb.c
	}
	_, io1 := a.(stdioFS)
	_, io2 := b.(stdioFS)
	return !ok1 && !ok2 && !io1 && !io2
}

// endpoint is a resolved path argument of a transfer.
type endpoint struct {
	fs    xfs
	path  string
	slash bool // written with a trailing '/': must be a directory
	arg   string
}

func (e endpoint) isStdio() bool {
	_, ok := e.fs.(stdioFS)
	return ok
}

// Which side an argument may be on.
const (
	sideLocal = iota
	sideCluster
	sideAuto // cp: fff:// paths are in a cluster, others local
)

// endpoint resolves arg; stdioOK lets "-" name stdin or stdout.
func (s *nsSession) endpoint(arg string, side int, stdioOK bool) (endpoint, error) {
	if arg == stdio && stdioOK {
		return endpoint{fs: stdioFS{in: s.cmd.InOrStdin(), out: s.cmd.OutOrStdout()}, path: stdio, arg: arg}, nil
	}
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
	preserve  bool
	jobs      int
}

func addXferFlags(cmd *cobra.Command, o *xferOpts) {
	f := cmd.Flags()
	f.BoolVarP(&o.recursive, "recursive", "r", false, "copy directories and everything below them")
	f.BoolVar(&o.verify, "verify", false, "re-read every copy before it gets its name and compare its sha256 with the source's")
	f.BoolVarP(&o.preserve, "preserve", "p", false, "keep the modification times and permissions of files and directories")
	f.IntVarP(&o.jobs, "jobs", "j", min(16, 4*runtime.NumCPU()), "files copied in parallel")
}

// xjob is one file to copy.
type xjob struct {
	sfs, dfs xfs
	src, dst string
	size     int64
	perm     fs.FileMode
	mtime    time.Time
}

// xdir is a directory a transfer creates; src is set for a copied one.
type xdir struct {
	fs  xfs
	p   string
	src *xinfo
}

// transfer is one run of put, get or cp.
type transfer struct {
	s      *nsSession
	o      xferOpts
	jobs   []xjob
	dirs   []xdir
	bytes  int64        // listed
	copied atomic.Int64 // bytes of the files copied
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
					e, err := s.endpoint(a, srcSide, srcSide == sideLocal && dstSide == sideCluster)
					if err != nil {
						return err
					}
					srcs = append(srcs, e)
				}
				dst, err := s.endpoint(args[len(args)-1], dstSide, srcSide == sideCluster && dstSide == sideLocal)
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
directories skipped).

Every file is written atomically: its name appears, or replaces the file
there, only once the whole copy is written (and, with --verify, checked),
so an interrupted copy leaves no partial file behind, and readers see the
old file or the whole new one. A replaced file keeps its permissions (not
its owner or other hard links: it is a new file, as with rsync). -p keeps
the source's modification times and permissions instead, of directories
too.

-j files are copied at once; a file read from a cluster is read ahead,
64 MiB in flight over all of them (16 pieces of 4 MiB for one file, at
least 2 per file). A progress bar is shown when stderr is a terminal, and a
summary line when done. --verify re-reads every copy and compares its
sha256 with the source's.`

func newPutCmd() *cobra.Command {
	return withExample(`  fff put model.bin /ckpt/
  fff put -r --verify -j 16 images/ fff:///datasets/
  fff put a.txt b.txt /docs
  tar c images | fff put - /backup/images.tar`, newXferCmd("put LOCAL... REMOTE", "Copy local files into a cluster",
		"Copy local files (and, with -r, directory trees) to REMOTE in a cluster.\n"+
			"LOCAL - is stdin (the only source then; REMOTE names the file).\n"+xferHelp+"\n"+nsPathHelp,
		sideLocal, sideCluster))
}

func withExample(ex string, cmd *cobra.Command) *cobra.Command {
	cmd.Example = ex
	return cmd
}

func newGetCmd() *cobra.Command {
	return withExample(`  fff get /ckpt/model.bin .
  fff get -r --verify fff:///datasets/images ./images
  fff get /backup/images.tar - | tar x`, newXferCmd("get REMOTE... LOCAL", "Copy files from a cluster to the local disk",
		"Copy files of a cluster (and, with -r, directory trees) to LOCAL.\n"+
			"LOCAL - is stdout: the files are written to it in order.\n"+xferHelp+"\n"+nsPathHelp,
		sideCluster, sideLocal))
}

func newCpCmd() *cobra.Command {
	return withExample(`  fff cp data.bin fff:///data/
  fff cp -r fff:///data/run1 ./run1
  fff cp fff:///a/x fff://10.0.0.5:8000/b/x`, newXferCmd("cp SRC... DST", "Copy files between the local disk and clusters",
		"Copy files in any direction: fff:///PATH and fff://HOST:PORT/PATH are in a\ncluster, any other path is local.\n"+xferHelp,
		sideAuto, sideAuto))
}

// checkStdio rejects the uses of "-" that have no meaning.
func (t *transfer) checkStdio(srcs []endpoint, dst endpoint) error {
	for _, src := range srcs {
		if src.isStdio() && len(srcs) > 1 {
			return usageErrorf("- (stdin) must be the only source")
		}
	}
	if dst.isStdio() && t.o.verify {
		return usageErrorf("--verify cannot re-read stdout")
	}
	return nil
}

func (t *transfer) run(srcs []endpoint, dst endpoint) error {
	ctx := t.s.ctx
	start := time.Now()
	if err := t.checkStdio(srcs, dst); err != nil {
		return err
	}
	var dinfo xinfo
	derr := fs.ErrNotExist // stdout: a file
	if !dst.isStdio() {
		dinfo, derr = dst.fs.stat(ctx, dst.path)
	}
	intoDir := derr == nil && dinfo.isDir
	switch {
	case derr == nil && !dinfo.isDir && (dst.slash || len(srcs) > 1 && !dst.isStdio()):
		return &exitError{1, fmt.Errorf("%s is not a directory", dst.arg)}
	case derr != nil && !errors.Is(derr, fs.ErrNotExist):
		return &exitError{1, fmt.Errorf("%s: %s", dst.arg, nsErrText(derr))}
	case derr != nil && len(srcs) > 1 && !dst.slash && !dst.isStdio():
		return &exitError{1, fmt.Errorf("%s: no such directory (end it with '/' to create it)", dst.arg)}
	case derr != nil && dst.slash:
		t.dirs = append(t.dirs, xdir{fs: dst.fs, p: dst.path})
		intoDir = true
	}
	if intoDir && len(srcs) == 1 && srcs[0].isStdio() {
		return usageErrorf("%s is a directory: give the file to write stdin to", dst.arg)
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
		if dst.isStdio() {
			t.s.failf("%s is a directory: only files are written to stdout", src.arg)
			continue
		}
		if err := t.walk(src.fs, dst.fs, src.path, target, info); err != nil {
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
	failed := t.copyAll(prog, dst.isStdio())
	prog.Finish(failed == 0 && ctx.Err() == nil)
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.o.preserve {
		t.setDirAttrs()
	}
	t.summary(len(t.jobs)-failed, failed, time.Since(start))
	return nil
}

// summary prints the line that ends a transfer:
// "put: 3 files, 12 MiB in 0.4 s (30 MiB/s)".
func (t *transfer) summary(done, failed int, el time.Duration) {
	n := t.copied.Load()
	var extra string
	if t.o.verify && done > 0 {
		extra += ", sha256 verified"
	}
	if failed > 0 {
		extra += fmt.Sprintf(", %d failed", failed)
	}
	fmt.Fprintf(t.s.cmd.ErrOrStderr(), "%s: %s, %s in %.1f s (%s/s)%s\n", t.s.cmd.Name(), plural(done, "file"), humanBytes(n),
		el.Seconds(), humanBytes(int64(float64(n)/max(el.Seconds(), 1e-3))), extra)
}

// setDirAttrs gives the directories copied with -p their sources'
// permissions and times, once no file is written into them any more,
// deepest first.
func (t *transfer) setDirAttrs() {
	for _, d := range slices.Backward(t.dirs) {
		if d.src == nil {
			continue
		}
		if err := d.fs.setAttrs(t.s.ctx, d.p, xattrs{perm: d.src.perm, mtime: d.src.mtime}); err != nil {
			t.s.fail(d.fs.display(d.p), err)
		}
	}
}

func (t *transfer) addFile(sfs, dfs xfs, src, dst string, info xinfo) {
	perm := info.perm
	if perm == 0 {
		perm = 0o644
	}
	t.jobs = append(t.jobs, xjob{sfs: sfs, dfs: dfs, src: src, dst: dst, size: info.size, perm: perm, mtime: info.mtime})
	t.bytes += info.size
}

// walk lists the tree at src (a directory described by info) as
// directories and files to create under dst.
func (t *transfer) walk(sfs, dfs xfs, src, dst string, info xinfo) error {
	ctx := t.s.ctx
	t.dirs = append(t.dirs, xdir{fs: dfs, p: dst, src: &info})
	ents, err := sfs.readDir(ctx, src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		sp, dp := sfs.join(src, e.name), dfs.join(dst, e.name)
		var info xinfo
		if !e.isDir || t.o.preserve {
			if info, err = sfs.stat(ctx, sp); err != nil {
				t.s.fail(sfs.display(sp), err)
				continue
			}
		}
		if e.isDir {
			if err := t.walk(sfs, dfs, sp, dp, info); err != nil {
				t.s.fail(sfs.display(sp), err)
			}
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

// copyAll copies the jobs with o.jobs workers (one, in order, when
// inOrder) and returns how many failed.
func (t *transfer) copyAll(prog *progress, inOrder bool) int {
	ctx := t.s.ctx
	work := make(chan *xjob)
	var mu sync.Mutex
	failed := 0
	var wg sync.WaitGroup
	workers := min(t.o.jobs, max(len(t.jobs), 1))
	if inOrder {
		workers = 1
	}
	for range workers {
		wg.Go(func() {
			bufs := newCopyBufs(aheadDepth(workers))
			for j := range work {
				pending, n, err := copyFile(ctx, j, bufs, t.o, prog)
				if err != nil {
					mu.Lock()
					failed++
					if ctx.Err() == nil {
						t.s.failf("%s -> %s: %s", j.sfs.display(j.src), j.dfs.display(j.dst), nsErrText(err))
					}
					mu.Unlock()
				} else {
					t.copied.Add(n)
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

// copyFile copies one file and returns the bytes copied; with verify it
// re-reads the copy and compares sha256 sums. It reports the bytes copied
// to prog except the last ones (from the listed size on), which it returns
// as pending.
func copyFile(ctx context.Context, j *xjob, bufs *copyBufs, o xferOpts, prog *progress) (pending, n int64, err error) {
	var reported int64
	count := func(n int64) {
		if reported+n < j.size {
			reported += n
			prog.Add(n, 0)
		} else {
			pending += n
		}
	}
	n, err = copyFileCounted(ctx, j, bufs, o, count)
	return pending, n, err
}

func copyFileCounted(ctx context.Context, j *xjob, bufs *copyBufs, o xferOpts, count func(int64)) (int64, error) {
	if sameFS(j.sfs, j.dfs) && j.sfs.same(ctx, j.src, j.dst) {
		return 0, errors.New("source and destination are the same file")
	}
	r, err := j.sfs.open(ctx, j.src)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	w, err := j.dfs.create(ctx, j.dst, j.perm, o.preserve)
	if err != nil {
		return 0, err
	}
	// Whatever goes wrong (Ctrl-C included), the copy never gets the name.
	defer w.abort()
	var h hash.Hash
	if o.verify {
		h = sha256.New()
	}
	n, err := copyFrom(ctx, w, r, bufs, h, count)
	if err != nil {
		return n, err
	}
	if n != j.size && j.sfs.base(j.src) != stdio {
		log.Debug().Str("file", j.sfs.display(j.src)).Int64("listed", j.size).Int64("copied", n).Msg("size changed while copying")
	}
	if o.verify {
		if err := verifyCopy(ctx, w, bufs, h.Sum(nil)); err != nil {
			return n, err
		}
	}
	var a *xattrs
	if o.preserve {
		a = &xattrs{perm: j.perm, mtime: j.mtime}
	}
	return n, w.commit(ctx, a)
}

// verifyCopy re-reads w before it gets its name and compares its sha256
// with want.
func verifyCopy(ctx context.Context, w xfile, bufs *copyBufs, want []byte) error {
	rr := w.reader()
	if rr == nil {
		return errors.New("verify: the copy is not a regular file, it cannot be re-read")
	}
	h := sha256.New()
	if _, err := copyFrom(ctx, h, rr, bufs, nil, nil); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
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
