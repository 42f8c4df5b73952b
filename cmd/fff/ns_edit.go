package main

import (
	"errors"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"fff/internal/proto"
	"fff/libfff"
)

// The namespace commands that change the tree: mkdir, rm, mv, ln, touch,
// chmod, chown (ns.go has what they share).

func newMkdirCmd() *cobra.Command {
	var parents bool
	var mode string
	cmd := &cobra.Command{
		Use:   "mkdir [-p] [-m MODE] PATH...",
		Short: "Create directories in the cluster",
		Long: `Create each directory. With -p, create missing parents too and accept
directories that exist. MODE is octal or symbolic (as chmod's), applied to 0777;
the default is 0755.` + nsPathHelp,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			perm := uint32(0o755)
			if mode != "" {
				m, err := parseMode(mode, 0o777, true)
				if err != nil {
					return &usageError{err}
				}
				perm = m
			}
			return nsRun(cmd, func(s *nsSession) error {
				return s.forEach(args, func(t nsTarget) error {
					if parents {
						return t.c.MkdirAll(s.ctx, t.path, fsMode(perm))
					}
					return t.c.Mkdir(s.ctx, t.path, fsMode(perm))
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&parents, "parents", "p", false, "create missing parents; no error if the directory exists")
	cmd.Flags().StringVarP(&mode, "mode", "m", "", "permissions of new directories (default 755)")
	return cmd
}

func newRmCmd() *cobra.Command {
	var recursive, force bool
	cmd := &cobra.Command{
		Use:   "rm [-r] [-f] PATH...",
		Short: "Remove files and directories from the cluster",
		Long: `Remove each file or symlink. With -r, remove directories and everything below
them (in many small transactions: a failure can leave part of a tree). With -f,
paths that do not exist are no error. Without -r, a directory is an error
(is a directory); rm never removes /.` + nsPathHelp,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsRun(cmd, func(s *nsSession) error {
				return s.forEach(args, func(t nsTarget) error {
					if t.path == "/" {
						return errors.New("refusing to remove the root directory")
					}
					fi, err := t.c.Lstat(s.ctx, t.path)
					switch {
					case err != nil && force && errors.Is(err, fs.ErrNotExist):
						return nil
					case err != nil:
						return err
					case recursive:
						return t.c.RemoveAll(s.ctx, t.path)
					case fi.IsDir():
						return nsErr(proto.EISDIR)
					}
					err = t.c.Remove(s.ctx, t.path)
					if force && errors.Is(err, fs.ErrNotExist) {
						return nil
					}
					return err
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and their contents")
	cmd.Flags().BoolVarP(&force, "force", "f", false, "ignore paths that do not exist")
	return cmd
}

// intoDir returns the destination of moving or linking src to dst: dst
// itself, or dst/base(src) if dst is an existing directory.
func intoDir(s *nsSession, src string, dst nsTarget) string {
	if fi, err := dst.c.Stat(s.ctx, dst.path); err == nil && fi.IsDir() {
		_, base := path.Split(src)
		if base == "" {
			return dst.path
		}
		return path.Join(dst.path, base)
	}
	return dst.path
}

// blame finds which path made a rename or link of src to to (dst's
// argument, or a name in it) fail with ENOENT or ENOTDIR, which the error
// does not say: src when it is missing, else the first missing or
// non-directory component of to's directory. It reports the failure as
// coreutils do ("cannot move A to B: …", what being "move" or "link"),
// naming that path as the user wrote it, and returns false when it is
// neither.
func blame(s *nsSession, what string, src, dst nsTarget, to string, err error) bool {
	if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, proto.ErrNotDir) {
		return false
	}
	if _, serr := src.c.Lstat(s.ctx, src.path); serr != nil {
		s.fail(src.arg, serr)
		return true
	}
	var dirs []string
	for p := path.Dir(to); p != "/"; p = path.Dir(p) {
		dirs = append(dirs, p)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		fi, serr := dst.c.Stat(s.ctx, dirs[i])
		if serr == nil && !fi.IsDir() {
			serr = nsErr(proto.ENOTDIR)
		}
		if serr != nil {
			s.failf("cannot %s %s to %s: %s: %s", what, src.arg, dst.arg, argFor(dst, dirs[i]), nsErrText(serr))
			return true
		}
	}
	return false
}

// argFor writes the cluster path p as dst's argument was written: the
// same prefix (fff:///, fff://HOST:PORT) when p is dst's path or above it.
func argFor(dst nsTarget, p string) string {
	if p == dst.path {
		return dst.arg
	}
	if strings.HasPrefix(dst.arg, libfff.Scheme) {
		ref, err := libfff.ParsePath(dst.arg)
		if err == nil {
			ref.Path = p
			return ref.String()
		}
	}
	return p
}

func newMvCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mv SRC... DST",
		Short: "Move or rename files and directories in the cluster",
		Long: `Rename SRC to DST, or move it into DST if DST is an existing directory (with
several SRCs DST must be one). Each move is one atomic rename: an existing
destination is replaced as POSIX rename does (a file by a file, an empty
directory by a directory). Both sides must be in the same cluster.` + nsPathHelp,
		Args: minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsRun(cmd, func(s *nsSession) error {
				dst, err := s.resolve(args[len(args)-1])
				if err != nil {
					return err
				}
				srcs := args[:len(args)-1]
				if len(srcs) > 1 {
					if fi, err := dst.c.Stat(s.ctx, dst.path); err != nil {
						s.fail(dst.arg, err)
						return nil
					} else if !fi.IsDir() {
						s.fail(dst.arg, nsErr(proto.ENOTDIR))
						return nil
					}
				}
				for _, arg := range srcs {
					t, err := s.resolve(arg)
					if err != nil {
						return err
					}
					if t.c != dst.c {
						s.fail(arg, errors.New("cannot move between clusters"))
						continue
					}
					to := intoDir(s, t.path, dst)
					if to == t.path { // as coreutils' mv: a no-op rename is a mistake
						s.failf("%s and %s are the same file", t.arg, dst.arg)
						continue
					}
					if err := t.c.Rename(s.ctx, t.path, to); err != nil && !blame(s, "move", t, dst, to, err) {
						s.fail(arg, err)
					}
					if err := s.ctx.Err(); err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	return cmd
}

func newLnCmd() *cobra.Command {
	var symbolic bool
	cmd := &cobra.Command{
		Use:   "ln [-s] TARGET LINK",
		Short: "Make hard or symbolic links in the cluster",
		Long: `Create LINK as a hard link to the file TARGET, or with -s as a symlink whose
target is the text TARGET (relative targets resolve from LINK's directory; an
fff:/// TARGET is stored as its cluster path). If LINK is an existing directory
the link is made in it, named after TARGET.` + nsPathHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsRun(cmd, func(s *nsSession) error {
				link, err := s.resolve(args[1])
				if err != nil {
					return err
				}
				target := args[0]
				if symbolic {
					if strings.HasPrefix(target, libfff.Scheme) {
						p, err := libfff.ParsePath(target)
						if err != nil {
							return &usageError{err}
						}
						target = p.Path
					}
					if err := link.c.Symlink(s.ctx, target, intoDir(s, target, link)); err != nil {
						s.fail(link.arg, err)
					}
					return nil
				}
				src, err := s.resolve(target)
				if err != nil {
					return err
				}
				if src.c != link.c {
					s.failf("%s: cannot link between clusters", link.arg)
					return nil
				}
				to := intoDir(s, src.path, link)
				if err := link.c.Link(s.ctx, src.path, to); err != nil && !blame(s, "link", src, link, to, err) {
					s.fail(link.arg, err)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&symbolic, "symbolic", "s", false, "make a symbolic link")
	return cmd
}

func newTouchCmd() *cobra.Command {
	var noCreate bool
	cmd := &cobra.Command{
		Use:   "touch [-c] PATH...",
		Short: "Create empty files or update their times in the cluster",
		Long: `Set the access and modification times of each file to now, creating an empty
file (mode 0644) where none exists, unless -c is given.` + nsPathHelp,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return nsRun(cmd, func(s *nsSession) error {
				return s.forEach(args, func(t nsTarget) error {
					if noCreate {
						if _, err := t.c.Stat(s.ctx, t.path); errors.Is(err, fs.ErrNotExist) {
							return nil
						}
					}
					return t.c.Touch(s.ctx, t.path)
				})
			})
		},
	}
	cmd.Flags().BoolVarP(&noCreate, "no-create", "c", false, "do not create files")
	return cmd
}

func newChmodCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chmod MODE PATH...",
		Short: "Change the permissions of files in the cluster",
		Long: `Set the mode of each path (following symlinks). MODE is octal (755, 1777) or
symbolic ([ugoa][+-=][rwxXst], comma separated: u+x, go-w, a=rX, +t).` + nsPathHelp,
		Args: minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseMode(args[0], 0, false); err != nil {
				return &usageError{err}
			}
			return nsRun(cmd, func(s *nsSession) error {
				return s.forEach(args[1:], func(t nsTarget) error {
					fi, err := t.c.Stat(s.ctx, t.path)
					if err != nil {
						return err
					}
					m, _ := parseMode(args[0], fi.Inode.Mode, fi.IsDir())
					return t.c.Chmod(s.ctx, t.path, fsMode(m))
				})
			})
		},
	}
	return cmd
}

// parseOwner parses UID[:GID], :GID or UID: (numeric ids; -1: unchanged).
func parseOwner(spec string) (uid, gid int, err error) {
	u, g, hasG := strings.Cut(spec, ":")
	uid, gid = -1, -1
	num := func(s string) (int, error) {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return 0, errors.New("invalid owner " + strconv.Quote(spec) + ": write numeric UID[:GID]")
		}
		return int(v), nil
	}
	if u != "" {
		if uid, err = num(u); err != nil {
			return
		}
	}
	if hasG && g != "" {
		if gid, err = num(g); err != nil {
			return
		}
	}
	if uid < 0 && gid < 0 {
		err = errors.New("invalid owner " + strconv.Quote(spec) + ": write numeric UID[:GID]")
	}
	return
}

func newChownCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chown UID[:GID] PATH...",
		Short: "Change the owner and group of files in the cluster",
		Long: `Set the owner (numeric uid) and, if given, the group (numeric gid) of each path
(following symlinks); ':GID' changes the group only. Changing the owner needs an
admin token; an owner may change the group to one of its own groups.` + nsPathHelp,
		Args: minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			uid, gid, err := parseOwner(args[0])
			if err != nil {
				return &usageError{err}
			}
			return nsRun(cmd, func(s *nsSession) error {
				return s.forEach(args[1:], func(t nsTarget) error {
					return t.c.Chown(s.ctx, t.path, uid, gid)
				})
			})
		},
	}
	return cmd
}
