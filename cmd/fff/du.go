package main

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strconv"

	"github.com/spf13/cobra"

	"fff/internal/proto"
)

// fff du: disk usage of cluster trees, as apparent sizes.

type duOpts struct {
	summarize, human, all, total bool
	maxDepth                     int
}

func newDuCmd() *cobra.Command {
	var o duOpts
	cmd := &cobra.Command{
		Use:   "du [-s] [-h] [-a] [-c] [-d N] [PATH...]",
		Short: "Show the space used by trees in the cluster",
		Long: `Print the size of each directory below each PATH (default: /), subdirectories
before their parents, as "SIZE<TAB>PATH". Sizes are apparent sizes: the sum of
the files' lengths in bytes (as coreutils' du -b), each file counted once however
many hard links it has; symlinks count their target's length and are not
followed. With -s, only each PATH's total; with -a, files too; with -d N, only
entries at most N levels below PATH; with -c, a last "total" line; with -h, sizes
such as 1.5K, 23M, 4.0G (powers of 1024). --help (not -h) prints this help.` + nsPathHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"/"}
			}
			if o.summarize && cmd.Flags().Changed("max-depth") && o.maxDepth != 0 {
				return usageErrorf("-s and -d %d contradict each other", o.maxDepth)
			}
			if o.summarize {
				o.maxDepth = 0
			}
			if o.all && o.summarize {
				return usageErrorf("-a and -s contradict each other")
			}
			return nsRun(cmd, func(s *nsSession) error { return runDu(s, args, o) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.summarize, "summarize", "s", false, "print only each PATH's total")
	f.BoolVarP(&o.human, "human-readable", "h", false, "sizes such as 1.5K, 23M, 4.0G")
	f.BoolVarP(&o.all, "all", "a", false, "print files too, not only directories")
	f.BoolVarP(&o.total, "total", "c", false, "print a grand total")
	f.IntVarP(&o.maxDepth, "max-depth", "d", -1, "print entries at most N levels below PATH (-1: all)")
	helpWithoutH(cmd)
	return cmd
}

// duWalk sums a tree. Inodes with more than one link are counted once per
// run, as du does.
type duWalk struct {
	s    *nsSession
	o    duOpts
	w    io.Writer
	seen map[uint64]bool // inodes with nlink > 1 already counted
}

func runDu(s *nsSession, args []string, o duOpts) error {
	bw := bufio.NewWriter(s.cmd.OutOrStdout())
	defer bw.Flush()
	d := &duWalk{s: s, o: o, w: bw, seen: map[uint64]bool{}}
	var total uint64
	for _, arg := range args {
		t, err := s.resolve(arg)
		if err != nil {
			return err
		}
		fi, err := t.c.Lstat(s.ctx, t.path)
		if err != nil {
			bw.Flush()
			s.fail(arg, err)
			continue
		}
		total += d.walk(t, &fi.Inode, 0)
		if err := s.ctx.Err(); err != nil {
			return err
		}
	}
	if o.total {
		d.print(total, "total")
	}
	return nil
}

// walk returns the size of the tree at t (inode n, depth levels below its
// operand) and prints the lines for it.
func (d *duWalk) walk(t nsTarget, n *proto.Inode, depth int) uint64 {
	size, first := d.own(n)
	if !first {
		return 0 // a further link of a file counted already: du skips it
	}
	show := d.o.maxDepth < 0 || depth <= d.o.maxDepth
	if n.Type != proto.TypeDir {
		if show && (d.o.all || depth == 0) {
			d.print(size, t.arg)
		}
		return size
	}
	es, err := t.c.ReadDir(d.s.ctx, t.path)
	if err != nil {
		d.flush()
		d.s.fail(t.arg, err)
	}
	for _, e := range es {
		if d.s.ctx.Err() != nil {
			return size
		}
		sub := nsTarget{arg: joinArg(t.arg, e.Name()), c: t.c, path: path.Join(t.path, e.Name())}
		en := e.Attr()
		if en == nil { // attributes not sent with the listing
			fi, err := t.c.Lstat(d.s.ctx, sub.path)
			if err != nil {
				d.flush()
				d.s.fail(sub.arg, err)
				continue
			}
			en = &fi.Inode
		}
		size += d.walk(sub, en, depth+1)
	}
	if show {
		d.print(size, t.arg)
	}
	return size
}

// own is the size an inode adds, and false for a further link of a file
// already counted.
func (d *duWalk) own(n *proto.Inode) (uint64, bool) {
	if n.Type != proto.TypeDir && n.Nlink > 1 {
		if d.seen[n.Ino] {
			return 0, false
		}
		d.seen[n.Ino] = true
	}
	return n.Size, true
}

func (d *duWalk) print(size uint64, name string) {
	s := strconv.FormatUint(size, 10)
	if d.o.human {
		s = humanSize(size)
	}
	fmt.Fprintf(d.w, "%s\t%s\n", s, name)
}

// flush writes out what was printed, before a message on stderr.
func (d *duWalk) flush() {
	if f, ok := d.w.(interface{ Flush() error }); ok {
		f.Flush()
	}
}
