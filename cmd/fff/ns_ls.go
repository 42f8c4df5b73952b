package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"

	"fff/internal/proto"
	"fff/libfff"
)

// fff ls and fff stat.

type lsOpts struct {
	long, all, dirOnly bool
}

func newLsCmd() *cobra.Command {
	var o lsOpts
	cmd := &cobra.Command{
		Use:   "ls [-l] [-a] [-d] [PATH...]",
		Short: "List directories in the cluster",
		Long: `List each directory's entries sorted by name, one per line, or describe each
file (default: /). With -l, the long format: mode, links, uid, gid, size,
modification time and name (symlinks: name -> target). -a includes names that
start with '.', and . and .. themselves; -d lists directories themselves, not
their entries.` + nsPathHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"/"}
			}
			return nsRun(cmd, func(s *nsSession) error { return runLs(s, args, o) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.long, "long", "l", false, "long format")
	f.BoolVarP(&o.all, "all", "a", false, "include entries whose names start with '.'")
	f.BoolVarP(&o.dirOnly, "directory", "d", false, "list directories themselves, not their contents")
	return cmd
}

// lsEntry is one line of ls output.
type lsEntry struct {
	name string
	n    *proto.Inode // nil: attributes unknown
}

func runLs(s *nsSession, args []string, o lsOpts) error {
	type operand struct {
		t  nsTarget
		fi *libfff.FileInfo
	}
	var files []lsEntry
	var dirs []operand
	for _, arg := range args {
		t, err := s.resolve(arg)
		if err != nil {
			return err
		}
		fi, err := t.c.Lstat(s.ctx, t.path)
		if err == nil && fi.Inode.Type == proto.TypeSymlink && !o.long && !o.dirOnly {
			if target, err := t.c.Stat(s.ctx, t.path); err == nil {
				fi = target
			}
		}
		if err != nil {
			s.fail(arg, err)
			continue
		}
		if fi.IsDir() && !o.dirOnly {
			dirs = append(dirs, operand{t, fi})
		} else {
			files = append(files, lsEntry{arg, &fi.Inode})
		}
	}
	w := bufio.NewWriter(s.cmd.OutOrStdout())
	defer w.Flush()
	printLs(w, files, o.long, time.Now())
	for i, d := range dirs {
		es, err := d.t.c.ReadDir(s.ctx, d.t.path)
		if err != nil {
			w.Flush()
			s.fail(d.t.arg, err)
			continue
		}
		if len(files) > 0 || i > 0 {
			fmt.Fprintln(w)
		}
		if len(files) > 0 || len(dirs) > 1 {
			fmt.Fprintf(w, "%s:\n", d.t.arg)
		}
		var lines []lsEntry
		if o.all {
			lines = append(lines, lsEntry{".", &d.fi.Inode})
			parent := &d.fi.Inode
			if d.t.path != "/" {
				if pfi, err := d.t.c.Stat(s.ctx, path.Dir(d.t.path)); err == nil {
					parent = &pfi.Inode
				}
			}
			lines = append(lines, lsEntry{"..", parent})
		}
		for _, e := range es {
			if !o.all && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			lines = append(lines, lsEntry{e.Name(), e.Attr()})
		}
		printLs(w, lines, o.long, time.Now())
	}
	return nil
}

// printLs prints entries, names only or in the long format with aligned
// columns.
func printLs(w io.Writer, es []lsEntry, long bool, now time.Time) {
	if !long {
		for _, e := range es {
			fmt.Fprintln(w, e.name)
		}
		return
	}
	var cols [4][]string // nlink, uid, gid, size
	var width [4]int
	for _, e := range es {
		vals := [4]string{"?", "?", "?", "?"}
		if e.n != nil {
			vals = [4]string{
				strconv.FormatUint(uint64(e.n.Nlink), 10),
				strconv.FormatUint(uint64(e.n.UID), 10),
				strconv.FormatUint(uint64(e.n.GID), 10),
				strconv.FormatUint(e.n.Size, 10),
			}
		}
		for i, v := range vals {
			cols[i] = append(cols[i], v)
			width[i] = max(width[i], len(v))
		}
	}
	for j, e := range es {
		mode, when, name := "??????????", "            ", e.name
		if e.n != nil {
			mode = lsMode(e.n)
			when = lsTime(time.Unix(0, e.n.Mtime), now)
			if e.n.Type == proto.TypeSymlink {
				name += " -> " + e.n.Target
			}
		}
		fmt.Fprintf(w, "%s %*s %-*s %-*s %*s %s %s\n", mode,
			width[0], cols[0][j], width[1], cols[1][j], width[2], cols[2][j], width[3], cols[3][j], when, name)
	}
}

// lsMode renders a mode as ls does: drwxr-sr-t.
func lsMode(n *proto.Inode) string {
	b := []byte("----------")
	switch n.Type {
	case proto.TypeDir:
		b[0] = 'd'
	case proto.TypeSymlink:
		b[0] = 'l'
	}
	m := n.Mode
	for i, c := range "rwxrwxrwx" {
		if m&(1<<(8-i)) != 0 {
			b[1+i] = byte(c)
		}
	}
	special := func(pos int, bit uint32, set, unset byte) {
		if m&bit == 0 {
			return
		}
		if b[pos] == 'x' {
			b[pos] = set
		} else {
			b[pos] = unset
		}
	}
	special(3, proto.ModeSetuid, 's', 'S')
	special(6, proto.ModeSetgid, 's', 'S')
	special(9, proto.ModeSticky, 't', 'T')
	return string(b)
}

// lsTime renders a modification time as ls does: the time of day for the
// last six months, the year otherwise.
func lsTime(t, now time.Time) string {
	t = t.Local()
	if t.After(now.AddDate(0, -6, 0)) && !t.After(now.Add(time.Hour)) {
		return t.Format("Jan _2 15:04")
	}
	return t.Format("Jan _2  2006")
}

func newStatCmd() *cobra.Command {
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "stat [-L] [--json] PATH...",
		Short: "Show every attribute of files in the cluster",
		Long: `Print each path's inode: type, inode id, mode, links, owner, size, times, and
for files the chunk layout (chain table, chunk size, stripe, chains, seed), for
directories the layout policy of new files below them, for symlinks the target.
-L follows a symlink instead of describing it; --json prints one JSON object per
path.` + nsPathHelp,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsRun(cmd, func(s *nsSession) error {
				w := bufio.NewWriter(cmd.OutOrStdout())
				defer w.Flush()
				first := true
				return s.forEach(args, func(t nsTarget) error {
					stat := t.c.Lstat
					if follow {
						stat = t.c.Stat
					}
					fi, err := stat(s.ctx, t.path)
					if err != nil {
						w.Flush()
						return err
					}
					if asJSON {
						b, _ := json.Marshal(struct {
							Path  string      `json:"path"`
							Inode proto.Inode `json:"inode"`
						}{t.path, fi.Inode})
						fmt.Fprintf(w, "%s\n", b)
						return nil
					}
					if !first {
						fmt.Fprintln(w)
					}
					first = false
					printStat(w, t.arg, &fi.Inode)
					return nil
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "dereference", "L", false, "follow symlinks")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStat(w io.Writer, name string, n *proto.Inode) {
	row := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-12s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	if n.Type == proto.TypeSymlink {
		name += " -> " + n.Target
	}
	row("File", "%s", name)
	row("Type", "%s", n.Type)
	row("Inode", "%d", n.Ino)
	row("Mode", "%04o (%s)", n.Mode, lsMode(n))
	row("Links", "%d", n.Nlink)
	row("Uid", "%d", n.UID)
	row("Gid", "%d", n.GID)
	if n.Size >= 1024 {
		row("Size", "%d (%s)", n.Size, humanize.IBytes(n.Size))
	} else {
		row("Size", "%d", n.Size)
	}
	const tf = "2006-01-02 15:04:05.000000000 -0700"
	row("Access", "%s", time.Unix(0, n.Atime).Local().Format(tf))
	row("Modify", "%s", time.Unix(0, n.Mtime).Local().Format(tf))
	row("Change", "%s", time.Unix(0, n.Ctime).Local().Format(tf))
	switch n.Type {
	case proto.TypeFile:
		row("Truncates", "%d", n.TruncVer)
		row("Writes", "%d", n.WriteVer)
		if l := n.Layout; l != nil {
			row("Chain table", "%d", l.ChainTable)
			row("Chunk size", "%d (%s)", l.ChunkSize, humanize.IBytes(uint64(l.ChunkSize)))
			row("Stripe", "%d", l.Stripe)
			row("Chains", "%s", joinChains(l.Chains))
			row("Seed", "%#x", l.Seed)
		} else {
			row("Layout", "none")
		}
	case proto.TypeDir:
		row("Parent", "%d", n.Parent)
		var dl proto.DirLayout
		if n.DirLayout != nil {
			dl = *n.DirLayout
		}
		orDefault := func(v uint32, human bool) string {
			switch {
			case v == 0:
				return "default"
			case human:
				return fmt.Sprintf("%d (%s)", v, humanize.IBytes(uint64(v)))
			}
			return strconv.FormatUint(uint64(v), 10)
		}
		row("New files", "chain table %s, chunk size %s, stripe %s",
			orDefault(dl.ChainTable, false), orDefault(dl.ChunkSize, true), orDefault(dl.Stripe, false))
	}
}

func joinChains(ids []uint32) string {
	if len(ids) == 0 {
		return "none"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, " ")
}
