package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"fff/ffrecord"
)

func newUnpackCmd() *cobra.Command {
	var out string
	var jobs int
	cmd := &cobra.Command{
		Use:   "unpack PATH -o DIR",
		Short: "Write every sample of a dataset to its own file",
		Long: `Write each sample of the dataset at PATH to DIR/KEY, creating subdirectories,
or to DIR/INDEX.bin (INDEX zero-padded to the width of the largest index) for
samples without a key (v1 files, files packed with --no-keys). Existing files
of the same names are overwritten.

Keys are checked before anything is written: a key that is absolute, contains
a '.' or '..' element or an empty element, or that names a directory another
key needs, is refused. Files are created through an os.Root on DIR, so even a
symlink already inside DIR cannot lead a file outside it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if out == "" {
				return usageErrorf("missing -o DIR: name the directory to unpack into")
			}
			if jobs < 1 {
				return usageErrorf("-j %d: give at least 1", jobs)
			}
			return runUnpack(cmd.Context(), cmd.OutOrStdout(), args[0], out, jobs)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "directory to write the samples into (created if missing; required)")
	cmd.Flags().IntVarP(&jobs, "jobs", "j", runtime.NumCPU(), "samples read and written in parallel batches")
	return cmd
}

func runUnpack(ctx context.Context, stdout io.Writer, src, outArg string, jobs int) error {
	start := time.Now()
	ds, err := openDataset(ctx, src)
	if err != nil {
		return err
	}
	defer ds.Close()
	names, err := unpackNames(ds.Reader, src)
	if err != nil {
		return err
	}
	dir, err := localPath(outArg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create output directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("cannot open output directory: %w", err)
	}
	defer root.Close()

	sizes := ds.Sizes()
	var total int64
	for _, s := range sizes {
		total += s
	}
	prog := newProgress("unpacking", total, int64(len(sizes)))
	err = unpackSamples(ctx, ds.Reader, root, names, sizes, jobs, prog)
	prog.Finish(err == nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "unpacked %d samples (%s) into %s in %.1fs\n", len(names), humanBytes(total), dir, time.Since(start).Seconds())
	return nil
}

// unpackNames returns each sample's output name, relative to the output
// directory, and refuses names that are unsafe or collide.
func unpackNames(r *ffrecord.Reader, src string) ([]string, error) {
	n := r.Len()
	width := len(strconv.FormatInt(max(n-1, 0), 10))
	names := make([]string, n)
	owner := make(map[string]int64, n)
	for i := range n {
		key, err := r.Key(i)
		if err != nil {
			return nil, fmt.Errorf("cannot read keys: %s", errText(err))
		}
		name := key
		if key == "" {
			name = fmt.Sprintf("%0*d.bin", width, i)
		} else if why := unsafeKey(key); why != "" {
			return nil, fmt.Errorf("sample %d has the key %q, which %s: refusing to unpack (nothing was written); 'fff ffr cat %s %d' reads that sample alone",
				i, key, why, src, i)
		}
		if j, ok := owner[name]; ok {
			return nil, fmt.Errorf("samples %d and %d would both be written to %q: refusing to unpack (nothing was written)", j, i, name)
		}
		owner[name] = i
		names[i] = name
	}
	for i, name := range names {
		for k := strings.IndexByte(name, '/'); k >= 0; k = next(name, k) {
			if j, ok := owner[name[:k]]; ok {
				return nil, fmt.Errorf("sample %d is written to %q, but sample %d needs %q to be a directory: refusing to unpack (nothing was written)",
					j, name[:k], i, name[:k])
			}
		}
	}
	return names, nil
}

// next finds the next '/' in name after position k, or -1.
func next(name string, k int) int {
	if j := strings.IndexByte(name[k+1:], '/'); j >= 0 {
		return k + 1 + j
	}
	return -1
}

// unsafeKey says why a key cannot be used as a relative file name, or "" when it can.
func unsafeKey(key string) string {
	if strings.HasPrefix(key, "/") {
		return "is an absolute path"
	}
	if strings.IndexByte(key, 0) >= 0 {
		return "contains a NUL byte"
	}
	for _, e := range strings.Split(key, "/") {
		switch e {
		case "..":
			return "contains a '..' element and would escape the output directory"
		case ".", "":
			return "is not a clean relative path (it has an empty or '.' element)"
		}
	}
	return ""
}

// unpack batches: consecutive samples up to these limits per read.
const (
	unpackBatchBytes   = 32 << 20
	unpackBatchSamples = 1024
)

func unpackSamples(ctx context.Context, r *ffrecord.Reader, root *os.Root, names []string, sizes []int64, jobs int, prog *progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type batch struct{ from, to int64 }
	work := make(chan batch)
	var dirs sync.Map // directories already created
	var wg sync.WaitGroup
	for range jobs {
		wg.Go(func() {
			for b := range work {
				if err := unpackBatch(ctx, r, root, names, sizes, b.from, b.to, &dirs, prog); err != nil {
					cancel(err)
				}
			}
		})
	}
	n := int64(len(names))
feed:
	for from := int64(0); from < n; {
		to, bytes := from, int64(0)
		for to < n && to-from < unpackBatchSamples && (to == from || bytes+sizes[to] <= unpackBatchBytes) {
			bytes += sizes[to]
			to++
		}
		select {
		case work <- batch{from, to}:
		case <-ctx.Done():
			break feed
		}
		from = to
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

func unpackBatch(ctx context.Context, r *ffrecord.Reader, root *os.Root, names []string, sizes []int64, from, to int64, dirs *sync.Map, prog *progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	idx := make([]int64, 0, to-from)
	bufs := make([][]byte, 0, to-from)
	for i := from; i < to; i++ {
		idx = append(idx, i)
		bufs = append(bufs, make([]byte, sizes[i]))
	}
	if err := r.ReadBatch(ctx, idx, bufs); err != nil {
		first := splitErrors(err)[0]
		return fmt.Errorf("%s: the output directory is incomplete; run 'fff ffr verify' on the dataset", errText(first))
	}
	for k, i := range idx {
		name := names[i]
		if d := path.Dir(name); d != "." {
			if _, done := dirs.Load(d); !done {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("cannot create directory for sample %d: %w", i, err)
				}
				dirs.Store(d, true)
			}
		}
		if err := root.WriteFile(name, bufs[k], 0o644); err != nil {
			return fmt.Errorf("cannot write sample %d: %w", i, err)
		}
		prog.Add(int64(len(bufs[k])), 1)
	}
	return nil
}
