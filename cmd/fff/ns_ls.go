package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
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
	long, all, dirOnly, human, recursive bool
}

func newLsCmd() *cobra.Command {
	var o lsOpts
	cmd := &cobra.Command{
		Use:   "ls [-l] [-h] [-a] [-d] [-R] [PATH...]",
		Short: "List directories in the cluster",
		Long: `List each directory's entries sorted by name, one per line, or describe each
file (default: /). With -l, the long format: mode, links, uid, gid, size,
modification time and name (symlinks: name -> target); -h prints sizes as
1.5K, 23M, 4.0G (powers of 1024, as coreutils' ls -h). -a includes names that
start with '.', and . and .. themselves; -d lists directories themselves, not
their entries; -R lists the directories below too, each under a "DIR:" line
(symlinks are not followed). --help (not -h) prints this help.` + nsPathHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"/"}
			}
			return nsRun(cmd, func(s *nsSession) error { return runLs(s, args, o) })
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.long, "long", "l", false, "long format")
	f.BoolVarP(&o.human, "human-readable", "h", false, "with -l, sizes such as 1.5K, 23M, 4.0G")
	f.BoolVarP(&o.all, "all", "a", false, "include entries whose names start with '.'")
	f.BoolVarP(&o.dirOnly, "directory", "d", false, "list directories themselves, not their contents")
	f.BoolVarP(&o.recursive, "recursive", "R", false, "list subdirectories recursively")
	helpWithoutH(cmd)
	return cmd
}

// helpWithoutH gives cmd a --help without the -h shorthand, which the
// command uses for human-readable sizes (as ls and du do). cobra adds its
// own --help -h only when the command has no "help" flag.
func helpWithoutH(cmd *cobra.Command) {
	cmd.Flags().Bool("help", false, "help for "+cmd.Name())
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
	now := time.Now()
	printLs(w, files, o.long, o.human, now)
	first := len(files) == 0
	// One directory: its entries, under a "DIR:" line when there is more
	// to list; then, with -R, its subdirectories, depth first in name order.
	var list func(t nsTarget, fi *proto.Inode, header bool)
	list = func(t nsTarget, fi *proto.Inode, header bool) {
		es, err := t.c.ReadDir(s.ctx, t.path)
		if err != nil {
			w.Flush()
			s.fail(t.arg, err)
			return
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		if header {
			fmt.Fprintf(w, "%s:\n", t.arg)
		}
		var lines []lsEntry
		if o.all {
			lines = append(lines, lsEntry{".", fi})
			parent := fi
			if t.path != "/" {
				if pfi, err := t.c.Stat(s.ctx, path.Dir(t.path)); err == nil {
					parent = &pfi.Inode
				}
			}
			lines = append(lines, lsEntry{"..", parent})
		}
		var subdirs []lsEntry
		for _, e := range es {
			if !o.all && strings.HasPrefix(e.Name(), ".") {
				continue
			}
			lines = append(lines, lsEntry{e.Name(), e.Attr()})
			if o.recursive && e.IsDir() {
				subdirs = append(subdirs, lines[len(lines)-1])
			}
		}
		printLs(w, lines, o.long, o.human, now)
		for _, d := range subdirs {
			if s.ctx.Err() != nil {
				return
			}
			sub := nsTarget{arg: joinArg(t.arg, d.name), c: t.c, path: path.Join(t.path, d.name)}
			n := d.n
			if n == nil {
				fi, err := t.c.Lstat(s.ctx, sub.path)
				if err != nil {
					w.Flush()
					s.fail(sub.arg, err)
					continue
				}
				n = &fi.Inode
			}
			list(sub, n, true)
		}
	}
	for _, d := range dirs {
		list(d.t, &d.fi.Inode, o.recursive || len(files) > 0 || len(dirs) > 1)
		if err := s.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// joinArg names an entry of the directory written as dir, in the form the
// user wrote it ("/a" + "b" = "/a/b", "fff:///" + "b" = "fff:///b").
func joinArg(dir, name string) string {
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// printLs prints entries, names only or in the long format with aligned
// columns; human prints sizes as ls -h does.
func printLs(w io.Writer, es []lsEntry, long, human bool, now time.Time) {
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
			size := strconv.FormatUint(e.n.Size, 10)
			if human {
				size = humanSize(e.n.Size)
			}
			vals = [4]string{
				strconv.FormatUint(uint64(e.n.Nlink), 10),
				strconv.FormatUint(uint64(e.n.UID), 10),
				strconv.FormatUint(uint64(e.n.GID), 10),
				size,
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

// humanSize renders a byte count as coreutils' ls -h and du -h do: powers
// of 1024 with suffixes K, M, G, …, one decimal below 10, rounded up (so a
// size is never shown smaller than it is): 1023, 1.0K, 1.5K, 10K, 1.0M.
func humanSize(n uint64) string {
	if n < 1024 {
		return strconv.FormatUint(n, 10)
	}
	const units = "KMGTPE"
	v := float64(n) / 1024
	u := 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v < 10 {
		if r := math.Ceil(v*10) / 10; r < 10 {
			return strconv.FormatFloat(r, 'f', 1, 64) + units[u:u+1]
		}
		v = 10
	}
	r := math.Ceil(v)
	if r >= 1024 && u < len(units)-1 {
		return "1.0" + units[u+1:u+2]
	}
	return strconv.FormatFloat(r, 'f', 0, 64) + units[u:u+1]
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
path, on one line: path, type (file, dir, symlink), ino, mode (octal, e.g.
"0644"), perms ("-rw-r--r--"), nlink, uid, gid, size, atime, mtime and ctime
(RFC 3339, UTC, nanoseconds), and target (symlinks), layout (files) or parent
and new_files (directories; 0 means the cluster's default).` + nsPathHelp,
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
						b, err := json.Marshal(newStatJSON(t.path, &fi.Inode))
						if err != nil {
							return err
						}
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

// statJSON is `stat --json`'s view of an inode: lower-case keys, words for
// enums, times as text. It is an interface for scripts, kept apart from
// proto.Inode (the wire format) so that either can change alone.
type statJSON struct {
	Path     string         `json:"path"`
	Type     string         `json:"type"` // file, dir, symlink
	Ino      uint64         `json:"ino"`
	Mode     string         `json:"mode"`  // octal, with the setuid/setgid/sticky digit: "0644"
	Perms    string         `json:"perms"` // as ls -l: "-rw-r--r--"
	Nlink    uint32         `json:"nlink"`
	UID      uint32         `json:"uid"`
	GID      uint32         `json:"gid"`
	Size     uint64         `json:"size"`
	Atime    string         `json:"atime"`
	Mtime    string         `json:"mtime"`
	Ctime    string         `json:"ctime"`
	Target   *string        `json:"target,omitempty"`
	TruncVer *uint64        `json:"truncates,omitempty"`
	WriteVer *uint64        `json:"writes,omitempty"`
	Layout   *layoutJSON    `json:"layout,omitempty"`
	Parent   *uint64        `json:"parent,omitempty"`
	NewFiles *dirLayoutJSON `json:"new_files,omitempty"`
}

type layoutJSON struct {
	ChainTable uint32   `json:"chain_table"`
	ChunkSize  uint32   `json:"chunk_size"`
	Stripe     uint32   `json:"stripe"`
	Chains     []uint32 `json:"chains"`
	Seed       string   `json:"seed"` // hex, as stat prints it: a uint64 does not survive JSON numbers
}

type dirLayoutJSON struct {
	ChainTable uint32 `json:"chain_table"`
	ChunkSize  uint32 `json:"chunk_size"`
	Stripe     uint32 `json:"stripe"`
}

// statTime is the JSON form of a time: RFC 3339 in UTC with all nine
// digits of nanoseconds, the same whatever the local time zone.
func statTime(ns int64) string {
	return time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
}

func newStatJSON(p string, n *proto.Inode) statJSON {
	j := statJSON{
		Path: p, Type: n.Type.String(), Ino: n.Ino,
		Mode: fmt.Sprintf("%04o", n.Mode&proto.ModeMask), Perms: lsMode(n),
		Nlink: n.Nlink, UID: n.UID, GID: n.GID, Size: n.Size,
		Atime: statTime(n.Atime), Mtime: statTime(n.Mtime), Ctime: statTime(n.Ctime),
	}
	switch n.Type {
	case proto.TypeSymlink:
		j.Target = &n.Target
	case proto.TypeFile:
		j.TruncVer, j.WriteVer = &n.TruncVer, &n.WriteVer
		if l := n.Layout; l != nil {
			j.Layout = &layoutJSON{ChainTable: l.ChainTable, ChunkSize: l.ChunkSize, Stripe: l.Stripe,
				Chains: nonNil(l.Chains), Seed: fmt.Sprintf("%#x", l.Seed)}
		}
	case proto.TypeDir:
		j.Parent = &n.Parent
		j.NewFiles = &dirLayoutJSON{}
		if dl := n.DirLayout; dl != nil {
			j.NewFiles = &dirLayoutJSON{ChainTable: dl.ChainTable, ChunkSize: dl.ChunkSize, Stripe: dl.Stripe}
		}
	}
	return j
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
