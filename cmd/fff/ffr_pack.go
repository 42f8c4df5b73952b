package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog/log"
	"github.com/spf13/cobra"

	"fff/ffrecord"
)

const packLong = `Pack regular files into an FFRecord dataset, one sample per file.

Sources:
  Each SRC is a directory or a file. A directory contributes every regular file
  below it, walked in sorted order (symlinks to files are followed, symlinks to
  directories are not); a file's key is its path relative to SRC, with '/'
  separators. A file SRC contributes itself, keyed by its path as written
  without leading '/' and '../' (like tar). --files-from LIST adds the entries
  of LIST (one path per line, '-' for stdin), treated like SRC arguments, after
  them. Samples keep this order: the SRCs as given, then the list.

Output:
  OUT is a single file when the dataset fits in one shard (see --shard-size)
  and OUT neither ends with '/' nor is an existing directory. Otherwise OUT is
  a directory holding shard-00000.ffr, shard-00001.ffr, ... that read in name
  order as one dataset; an existing directory must not hold *.ffr files yet.
  Shards are planned from the file sizes before anything is written; a file
  larger than --shard-size gets a shard of its own. Shards are written in
  parallel (-j) to OUT.tmp (or to SHARD.tmp inside an existing directory),
  synced, and renamed into place when all are complete: a failure or an
  interrupt leaves nothing behind.

Format:
  v2 (default) has CRC32C checksums, per-sample keys and optional alignment.
  v1 is HFAiLab's original format, readable by its ffrecord library; it stores
  no keys, so 'fff ffr unpack' names v1 samples by index.
  --align auto (the default) aligns v2 samples to 4096 bytes when the mean
  sample is at least 64 KiB, so O_DIRECT reads need no bounce copies, and packs
  them without gaps otherwise, where the padding would cost more space than it
  saves time; the choice is printed. --align 0 turns alignment off, --align
  4096 (any power of two up to 1 MiB) forces it.

Sizes take units: 4096, 64KiB, 512MiB, 1GiB (powers of 1024), 500MB (of 1000).`

type packOpts struct {
	out, format, shardSize, align, filesFrom string
	jobs                                     int
	noKeys                                   bool
}

func newPackCmd() *cobra.Command {
	var o packOpts
	cmd := &cobra.Command{
		Use:   "pack SRC... -o OUT",
		Short: "Pack files and directory trees into an FFRecord dataset",
		Long:  packLong,
		Example: `  fff ffr pack images/ -o images.ffr
  fff ffr pack train/ --shard-size 4GiB -o train/
  find data -name '*.jpg' | fff ffr pack --files-from - -o jpgs.ffr
  fff ffr pack corpus/ --format v1 -o corpus.ffr`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && o.filesFrom == "" {
				return usageErrorf("nothing to pack: give at least one SRC or --files-from LIST")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPack(cmd.Context(), cmd.OutOrStdout(), args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.out, "output", "o", "", "output file or directory (required; see Output above)")
	f.StringVar(&o.format, "format", "v2", "format: v1 or v2")
	f.StringVar(&o.shardSize, "shard-size", "1GiB", "largest shard file to plan for")
	f.StringVar(&o.align, "align", "auto", "v2 sample alignment: auto, 0 (none) or a power of two such as 4096")
	f.StringVar(&o.filesFrom, "files-from", "", "read more source paths from LIST, one per line ('-' = stdin)")
	f.IntVarP(&o.jobs, "jobs", "j", runtime.NumCPU(), "shards written in parallel")
	f.BoolVar(&o.noKeys, "no-keys", false, "do not store file names as keys (v2)")
	return cmd
}

// packSettings are the validated options.
type packSettings struct {
	format    ffrecord.Version
	shardSize int64
	align     int64 // 1 = none
	alignAuto bool
	alignWhy  string
	keys      bool
	jobs      int
	out       packFS // where the shards are written
}

func parsePackOpts(o packOpts) (packSettings, error) {
	var s packSettings
	if o.out == "" {
		return s, usageErrorf("missing -o OUT: name the output file or directory")
	}
	switch strings.ToLower(o.format) {
	case "v1", "1":
		s.format = ffrecord.V1
	case "v2", "2":
		s.format = ffrecord.V2
	default:
		return s, usageErrorf("--format %q: use v1 or v2", o.format)
	}
	var err error
	if s.shardSize, err = parseSize(o.shardSize); err != nil || s.shardSize <= 0 {
		return s, usageErrorf("--shard-size %q: give a positive size such as 1GiB", o.shardSize)
	}
	switch a := strings.ToLower(o.align); a {
	case "auto", "":
		s.alignAuto, s.align = true, 1
	default:
		n, err := parseSize(a)
		if err != nil || n > ffrecord.MaxAlignment || (n > 1 && n&(n-1) != 0) {
			return s, usageErrorf("--align %q: use auto, 0, or a power of two up to 1MiB such as 4096", o.align)
		}
		s.align = max(n, 1)
		if s.format == ffrecord.V1 && s.align > 1 {
			return s, usageErrorf("--align %s: v1 cannot align samples; use --format v2 or --align 0", o.align)
		}
	}
	if o.jobs < 1 {
		return s, usageErrorf("-j %d: give at least 1", o.jobs)
	}
	s.jobs = o.jobs
	s.keys = s.format == ffrecord.V2 && !o.noKeys
	return s, nil
}

// Auto alignment: 4096 when the mean sample is at least this big.
const (
	autoAlignMinMean = 64 << 10
	autoAlignment    = 4096
)

// chooseAlignment resolves --align auto from the sources' sizes.
func (s *packSettings) chooseAlignment(srcs []packSource) {
	if !s.alignAuto || s.format != ffrecord.V2 {
		return
	}
	var total int64
	for _, f := range srcs {
		total += f.size
	}
	mean := total / int64(max(len(srcs), 1))
	if mean >= autoAlignMinMean {
		s.align = autoAlignment
		s.alignWhy = fmt.Sprintf("auto: mean sample %s >= %s", humanBytes(mean), humanBytes(autoAlignMinMean))
	} else {
		s.align = 1
		s.alignWhy = fmt.Sprintf("auto: mean sample %s < %s", humanBytes(mean), humanBytes(autoAlignMinMean))
	}
}

func (s *packSettings) alignText() string {
	a := "none"
	if s.align > 1 {
		a = strconv.FormatInt(s.align, 10)
	}
	if s.alignWhy != "" {
		a += " (" + s.alignWhy + ")"
	}
	return a
}

func runPack(ctx context.Context, stdout io.Writer, args []string, o packOpts) error {
	s, err := parsePackOpts(o)
	if err != nil {
		return err
	}
	start := time.Now()
	srcs, err := collectSources(args, o.filesFrom, s.keys)
	if err != nil {
		return err
	}
	s.chooseAlignment(srcs)
	plans := planShards(srcs, s)
	fsys, out, err := packOutputFS(ctx, o.out)
	if err != nil {
		return err
	}
	defer fsys.close()
	s.out = fsys
	layout, err := planOutput(fsys, out, plans)
	if err != nil {
		return err
	}
	var total int64
	for _, f := range srcs {
		total += f.size
	}
	if isTerminal(os.Stderr) && s.format == ffrecord.V2 {
		fmt.Fprintf(os.Stderr, "alignment: %s\n", s.alignText())
	}
	prog := newProgress("packing", total, int64(len(srcs)))
	err = layout.write(ctx, plans, s, prog)
	prog.Finish(err == nil)
	if err != nil {
		return err
	}
	var fileBytes int64
	for _, p := range plans {
		fileBytes += p.written
	}
	where := fsys.display(layout.final)
	if !layout.single {
		where = strings.TrimRight(where, "/") + "/"
	}
	keys := "yes"
	if !s.keys {
		keys = "no"
		if s.format == ffrecord.V1 {
			keys = "no (v1 stores none)"
		}
	}
	fmt.Fprintf(stdout, "packed %d files (%s) into %s: %s, %d shard(s), %s on disk, alignment %s, keys %s, %.1fs\n",
		len(srcs), humanBytes(total), where, s.format, len(plans), humanBytes(fileBytes), s.alignText(), keys,
		time.Since(start).Seconds())
	return nil
}

// packSource is one file to pack.
type packSource struct {
	path string // the file to read
	key  string
	size int64 // when listed
}

// collectSources lists the files named by the SRC arguments and the
// --files-from list, in packing order. With keys it also rejects two files
// that would get the same key.
func collectSources(args []string, filesFrom string, keys bool) ([]packSource, error) {
	entries := append([]string(nil), args...)
	if filesFrom != "" {
		list, err := readList(filesFrom)
		if err != nil {
			return nil, err
		}
		entries = append(entries, list...)
	}
	var srcs []packSource
	for _, e := range entries {
		p, err := localPath(e)
		if err != nil {
			return nil, err
		}
		lst, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read source: %w", err)
		}
		st := lst
		if lst.Mode()&fs.ModeSymlink != 0 {
			if st, err = os.Stat(p); err != nil {
				return nil, fmt.Errorf("cannot read source %s: %w", e, err)
			}
		}
		switch {
		case st.IsDir():
			root := p
			if lst.Mode()&fs.ModeSymlink != 0 {
				root += string(filepath.Separator) // make WalkDir enter the linked directory
			}
			if srcs, err = walkSource(srcs, root); err != nil {
				return nil, err
			}
		case st.Mode().IsRegular():
			srcs = append(srcs, packSource{path: p, key: fileKey(p), size: st.Size()})
		default:
			return nil, fmt.Errorf("source %s is neither a regular file nor a directory", e)
		}
	}
	if len(srcs) == 0 {
		return nil, errors.New("nothing to pack: the sources hold no regular files")
	}
	if keys {
		seen := make(map[string]string, len(srcs))
		for _, f := range srcs {
			if prev, ok := seen[f.key]; ok {
				return nil, fmt.Errorf("%s and %s would both get the key %q: pack them separately, or use --no-keys", prev, f.path, f.key)
			}
			seen[f.key] = f.path
		}
	}
	return srcs, nil
}

// walkSource appends every regular file below root, in sorted order.
func walkSource(srcs []packSource, root string) ([]packSource, error) {
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("cannot read source: %w", err)
		}
		if d.IsDir() {
			return nil
		}
		var st fs.FileInfo
		switch {
		case d.Type().IsRegular():
			st, err = d.Info()
		case d.Type()&fs.ModeSymlink != 0:
			st, err = os.Stat(path)
		default:
			log.Warn().Str("file", path).Msg("skipping: not a regular file")
			return nil
		}
		if err != nil {
			return fmt.Errorf("cannot read source file: %w", err)
		}
		if !st.Mode().IsRegular() {
			log.Warn().Str("file", path).Msg("skipping: symlink to a directory or special file")
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		srcs = append(srcs, packSource{path: path, key: filepath.ToSlash(rel), size: st.Size()})
		return nil
	})
	return srcs, err
}

// fileKey is the key of a file named directly: its cleaned path without
// leading '/' and '../' elements.
func fileKey(p string) string {
	k := filepath.ToSlash(filepath.Clean(p))
	for {
		switch {
		case strings.HasPrefix(k, "/"):
			k = k[1:]
		case strings.HasPrefix(k, "../"):
			k = k[3:]
		default:
			if k == "" || k == "." || k == ".." {
				return filepath.Base(p)
			}
			return k
		}
	}
}

// readList reads a --files-from list: one path per line, blank lines skipped.
func readList(name string) ([]string, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		p, err := localPath(name)
		if err != nil {
			return nil, err
		}
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("cannot read --files-from list: %w", err)
		}
		defer f.Close()
		r = f
	}
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimSuffix(sc.Text(), "\r"); line != "" {
			out = append(out, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cannot read --files-from list %s: %w", name, err)
	}
	return out, nil
}

// shardPlan is one output file: the sources it holds and its predicted size.
type shardPlan struct {
	files     []packSource
	predicted int64  // file size the layout arithmetic predicts
	name      string // final name (shard-NNNNN.ffr or OUT)
	tmp       string // where it is written
	created   bool   // tmp was created (to remove on failure)
	written   int64  // actual file size
}

// shardSizer predicts an FFRecord file's size as samples are added, exactly
// as ffrecord.Writer lays it out (docs/ffrecord.md).
type shardSizer struct {
	format         ffrecord.Version
	align          int64
	keys           bool
	n, pos, keyLen int64
}

func newShardSizer(s packSettings) shardSizer {
	z := shardSizer{format: s.format, align: s.align, keys: s.keys, pos: 32} // v2 header
	if s.format == ffrecord.V1 {
		z.pos = 12 // v1 header; the index is counted in total
	}
	return z
}

func (z shardSizer) add(size int64, key string) shardSizer {
	if z.format == ffrecord.V2 && size > 0 && z.align > 1 {
		z.pos = (z.pos + z.align - 1) &^ (z.align - 1)
	}
	z.pos += size
	z.n++
	z.keyLen += int64(len(key))
	return z
}

func (z shardSizer) total() int64 {
	if z.format == ffrecord.V1 {
		return z.pos + 12*z.n
	}
	t := z.pos + 20*z.n + 64 // index entries, footer
	if z.keys && z.keyLen > 0 {
		t += 8*z.n + z.keyLen
	}
	return t
}

// planShards splits the sources, in order, into shards no larger than the
// shard size (a file that alone exceeds it gets a shard of its own).
func planShards(srcs []packSource, s packSettings) []*shardPlan {
	var plans []*shardPlan
	z := newShardSizer(s)
	startAt := 0
	for i, f := range srcs {
		next := z.add(f.size, f.key)
		if z.n > 0 && next.total() > s.shardSize {
			plans = append(plans, &shardPlan{files: srcs[startAt:i], predicted: z.total()})
			startAt = i
			next = newShardSizer(s).add(f.size, f.key)
		}
		z = next
	}
	return append(plans, &shardPlan{files: srcs[startAt:], predicted: z.total()})
}

// packOutput is where the shards go and how they are moved into place.
type packOutput struct {
	fs      packFS
	final   string // OUT as the user will see it (file, or directory)
	single  bool   // OUT is the one shard file
	tmpDir  string // a new directory OUT.tmp, renamed to OUT at the end
	plainIn bool   // shards go into the existing directory OUT as SHARD.tmp
}

// planOutput applies the output rule (see packLong) and names every shard.
func planOutput(fsys packFS, out string, plans []*shardPlan) (*packOutput, error) {
	isDir, statErr := fsys.stat(out)
	trailing := strings.HasSuffix(out, "/")
	if len(plans) == 1 && !trailing && !isDir {
		plans[0].name, plans[0].tmp = out, out+".tmp"
		return &packOutput{fs: fsys, final: out, single: true}, nil
	}
	dir := strings.TrimRight(out, "/")
	if dir == "" {
		dir = "/"
	}
	width := max(5, len(strconv.Itoa(len(plans)-1)))
	l := &packOutput{fs: fsys, final: dir}
	switch {
	case isDir:
		ents, err := fsys.readDirNames(dir)
		if err != nil {
			return nil, fmt.Errorf("cannot read output directory: %w", err)
		}
		for _, e := range ents {
			if ffrecord.IsShardName(e) {
				return nil, fmt.Errorf("output directory %s already holds %s: packing into it would mix two datasets; remove its *.ffr files or choose another -o", fsys.display(dir), e)
			}
		}
		l.plainIn = true
	case statErr == nil:
		return nil, fmt.Errorf("%s is a file, but the dataset needs %d shards (see --shard-size): give a directory as -o, or remove %s", fsys.display(out), len(plans), fsys.display(out))
	case !isNotExist(statErr):
		return nil, fmt.Errorf("cannot use output: %w", statErr)
	default:
		l.tmpDir = dir + ".tmp"
	}
	for i, p := range plans {
		base := fmt.Sprintf("shard-%0*d.ffr", width, i)
		p.name = fsys.join(dir, base)
		if l.plainIn {
			p.tmp = p.name + ".tmp"
		} else {
			p.tmp = fsys.join(l.tmpDir, base)
		}
	}
	return l, nil
}

// write packs every shard, then moves the results into place; on failure it
// removes what it wrote.
func (l *packOutput) write(ctx context.Context, plans []*shardPlan, s packSettings, prog *progress) (err error) {
	if l.tmpDir != "" {
		if err := l.fs.mkdir(l.tmpDir); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists (left by an interrupted pack?): remove it and retry", l.fs.display(l.tmpDir))
			}
			return fmt.Errorf("cannot create output: %w", err)
		}
	}
	defer func() {
		if err != nil {
			l.cleanup(plans)
		}
	}()
	if err := packShards(ctx, plans, s, prog); err != nil {
		return err
	}
	switch {
	case l.single:
		if err := l.fs.rename(plans[0].tmp, l.final); err != nil {
			return fmt.Errorf("cannot move output into place: %w", err)
		}
		return l.fs.syncDir(l.fs.dir(l.final))
	case l.tmpDir != "":
		if err := l.fs.syncDir(l.tmpDir); err != nil {
			return err
		}
		if err := l.fs.rename(l.tmpDir, l.final); err != nil {
			return fmt.Errorf("cannot move output into place: %w", err)
		}
		return l.fs.syncDir(l.fs.dir(l.final))
	default:
		for _, p := range plans {
			if err := l.fs.rename(p.tmp, p.name); err != nil {
				for _, q := range plans {
					l.fs.remove(q.name)
				}
				return fmt.Errorf("cannot move output into place: %w", err)
			}
		}
		return l.fs.syncDir(l.final)
	}
}

func (l *packOutput) cleanup(plans []*shardPlan) {
	if l.tmpDir != "" {
		l.fs.removeAll(l.tmpDir)
		return
	}
	for _, p := range plans {
		if p.created {
			l.fs.remove(p.tmp)
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("cannot sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("cannot sync directory %s: %w", dir, err)
	}
	return nil
}

// readBudget bounds the source bytes read ahead of the writers, in total.
const readBudget = 256 << 20

// packShards writes the shards, up to s.jobs at once, each by one goroutine
// fed by reader goroutines that load its source files ahead of it.
func packShards(ctx context.Context, plans []*shardPlan, s packSettings, prog *progress) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	workers := min(s.jobs, len(plans))
	readers := max(2, 16/workers)
	budget := newByteBudget(readBudget)
	work := make(chan *shardPlan)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range work {
				if err := writeShard(ctx, p, s, budget, readers, prog); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for _, p := range plans {
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return context.Cause(ctx)
}

func writeShard(ctx context.Context, p *shardPlan, s packSettings, budget *byteBudget, readers int, prog *progress) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := s.out.createExcl(p.tmp)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists (left by an interrupted pack?): remove it and retry", s.out.display(p.tmp))
		}
		return fmt.Errorf("cannot create output: %w", err)
	}
	p.created = true
	defer f.Close()
	w, err := ffrecord.NewWriter(f, ffrecord.WriterOptions{
		Format: s.format, Count: int64(len(p.files)), Alignment: s.align, Name: p.name,
	})
	if err != nil {
		return err
	}
	err = streamSources(ctx, p.files, budget, readers, func(src *packSource, data []byte) error {
		key := ""
		if s.keys {
			key = src.key
		}
		if data == nil && src.size >= streamThreshold {
			if err := streamSource(src, func(r io.Reader) error { return w.WriteFrom(key, r, src.size) }); err != nil {
				return fmt.Errorf("cannot write %s: %s", p.name, errText(err))
			}
		} else if err := w.WriteKeyed(key, data); err != nil {
			return fmt.Errorf("cannot write %s: %s", p.name, errText(err))
		}
		prog.Add(src.size, 1)
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %s", p.name, errText(err))
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("cannot sync %s: %w", p.tmp, err)
	}
	if size, err := f.size(); err == nil {
		p.written = size
		if p.written != p.predicted {
			log.Debug().Str("file", p.name).Int64("size", p.written).Int64("predicted", p.predicted).Msg("shard size differs from plan")
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cannot write %s: %w", p.tmp, err)
	}
	return nil
}

// streamSources reads files with up to readers goroutines, ahead of consume,
// and hands them to consume in order.
func streamSources(ctx context.Context, files []packSource, budget *byteBudget, readers int, consume func(*packSource, []byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type item struct {
		src  *packSource
		cost int64
		data []byte
		err  error
		done chan struct{}
	}
	queue := make(chan *item, 256)
	sem := make(chan struct{}, readers)
	go func() {
		defer close(queue)
		for i := range files {
			it := &item{src: &files[i], cost: budget.cost(min(files[i].size, streamThreshold-1)), done: make(chan struct{})}
			if budget.acquire(ctx, it.cost) != nil {
				return
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				budget.release(it.cost)
				return
			}
			go func() {
				if it.src.size < streamThreshold {
					it.data, it.err = readSource(it.src)
				}
				<-sem
				close(it.done)
			}()
			select {
			case queue <- it:
			case <-ctx.Done():
				return
			}
		}
	}()
	for it := range queue {
		select {
		case <-it.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if it.err != nil {
			return it.err
		}
		err := consume(it.src, it.data)
		it.data = nil
		budget.release(it.cost)
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// streamThreshold: files at least this large are not read ahead but streamed
// into the shard by its writer, so memory stays bounded whatever the file size.
const streamThreshold = 64 << 20

// streamSource opens a source file, checks its size and hands it to write.
func streamSource(src *packSource, write func(io.Reader) error) error {
	f, err := openSource(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return write(f)
}

// readSource reads a source file whole, checking it still has its listed size.
func readSource(src *packSource) ([]byte, error) {
	f, err := openSource(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, src.size)
	if n, err := io.ReadFull(f, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, sourceChanged(src, int64(n))
		}
		return nil, fmt.Errorf("cannot read source file %s: %w", src.path, err)
	}
	return buf, nil
}

func sourceChanged(src *packSource, now int64) error {
	return fmt.Errorf("source file %s changed size while packing (%d bytes when listed, %d now): re-run pack when the sources are stable", src.path, src.size, now)
}

// openSource opens a source file and checks it still has its listed size.
func openSource(src *packSource) (*os.File, error) {
	f, err := os.Open(src.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("source file %s disappeared after it was listed: re-run pack when the sources are stable", src.path)
		}
		return nil, fmt.Errorf("cannot read source file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot read source file: %w", err)
	}
	if st.Size() != src.size {
		f.Close()
		return nil, sourceChanged(src, st.Size())
	}
	return f, nil
}

// byteBudget is a counting semaphore over bytes.
type byteBudget struct {
	mu        sync.Mutex
	cond      *sync.Cond
	cap, used int64
}

func newByteBudget(n int64) *byteBudget {
	b := &byteBudget{cap: n}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// cost is what reading a file of n bytes takes from the budget: at least 1
// (bounding the number of files in flight), at most all of it.
func (b *byteBudget) cost(n int64) int64 { return min(max(n, 1), b.cap) }

func (b *byteBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if b.used+n <= b.cap {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	b.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used+n > b.cap {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.cond.Wait()
	}
	b.used += n
	return nil
}

func (b *byteBudget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.cond.Broadcast()
	b.mu.Unlock()
}
