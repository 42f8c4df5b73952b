package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/libfff"
)

// The namespace commands (ls, du, stat, mkdir, rm, mv, ln, touch, chmod, chown)
// work on cluster paths only: /a/b and fff:///a/b name /a/b in the default
// cluster (FFF_CLUSTER and FFF_TOKEN, else what `fff up` recorded);
// fff://HOST:PORT/a/b names it in that cluster. There is no current
// directory in a cluster, so a relative path starts at the root. Like
// coreutils, a command reports each path that fails on stderr
// ("fff mkdir: /a: file exists"), goes on with the others and exits 1.

// nsPathHelp is appended to the commands' long help.
const nsPathHelp = `
Paths: /a/b and fff:///a/b name /a/b in the default cluster (FFF_CLUSTER and
FFF_TOKEN, else the cluster 'fff up' started); fff://HOST:PORT/a/b names it in
the cluster at HOST:PORT (token from FFF_TOKEN). Relative paths start at /.`

// nsSession is one run of a namespace command: its clients, one per
// cluster, and whether some path failed.
type nsSession struct {
	cmd     *cobra.Command
	ctx     context.Context
	clients map[string]*libfff.Client // by address; "" is the default cluster
	failed  bool
}

func newNSSession(cmd *cobra.Command) *nsSession {
	return &nsSession{cmd: cmd, ctx: cmd.Context(), clients: map[string]*libfff.Client{}}
}

// nsTarget is a resolved path argument.
type nsTarget struct {
	arg  string         // as written
	c    *libfff.Client // the cluster's client
	path string         // the absolute path in the cluster
}

// resolve parses arg and connects to its cluster (once per cluster). A
// failure to connect is fatal for the command: the error it returns says
// what to do.
func (s *nsSession) resolve(arg string) (nsTarget, error) {
	p, err := libfff.ParsePath(arg)
	if err != nil {
		return nsTarget{}, &usageError{err}
	}
	path := p.Path
	if !p.Remote {
		path = libfff.CleanPath(p.Path)
	}
	c, err := s.client(p.Cluster)
	if err != nil {
		return nsTarget{}, err
	}
	return nsTarget{arg: arg, c: c, path: path}, nil
}

func (s *nsSession) client(addr string) (*libfff.Client, error) {
	if c, ok := s.clients[addr]; ok {
		return c, nil
	}
	if addr != "" {
		for _, c := range s.clients {
			if c.Address() == addr {
				s.clients[addr] = c
				return c, nil
			}
		}
	}
	c, err := libfff.Connect(s.ctx, libfff.Options{Address: addr})
	if err != nil {
		return nil, &exitError{1, explainConnect(addr, err)}
	}
	for _, o := range s.clients {
		if o.Address() == c.Address() { // the default cluster, named by address too
			c.Close()
			c = o
			break
		}
	}
	s.clients[addr] = c
	return c, nil
}

// explainConnect turns a failure to connect into a message that says what
// to do.
func explainConnect(addr string, err error) error {
	where := "the default fff cluster"
	if addr != "" {
		where = "the fff cluster at " + addr
	}
	switch {
	case errors.Is(err, libfff.ErrNoCluster), errors.Is(err, rpc.ErrTLS):
		return err
	case errors.Is(err, proto.ErrUnauthenticated):
		return fmt.Errorf("%s refused the token: set FFF_TOKEN to a valid token (a local cluster's admin token is in DATA/admin.token)", where)
	case proto.CodeOf(err) == proto.Unavailable, proto.CodeOf(err) == proto.Timeout:
		return fmt.Errorf("cannot reach %s (%v): is it running? Start a local one with 'fff up'", where, err)
	}
	return err
}

// fail reports that arg failed with err, as coreutils do.
func (s *nsSession) fail(arg string, err error) {
	s.failed = true
	fmt.Fprintf(s.cmd.ErrOrStderr(), "%s: %s: %s\n", s.cmd.CommandPath(), arg, nsErrText(err))
}

// failf reports a failure with a message of its own.
func (s *nsSession) failf(format string, args ...any) {
	s.failed = true
	fmt.Fprintf(s.cmd.ErrOrStderr(), "%s: %s\n", s.cmd.CommandPath(), fmt.Sprintf(format, args...))
}

// done closes the clients and returns the command's result: exit status 1
// (already reported) if some path failed.
func (s *nsSession) done() error {
	for _, c := range s.clients {
		c.Close() // idempotent: a client may be listed under two keys
	}
	if s.failed {
		return &exitError{code: 1}
	}
	return nil
}

// nsRun runs fn with a session and closes it; a fatal error (an
// unreachable cluster, a usage error) ends the command at once.
func nsRun(cmd *cobra.Command, fn func(s *nsSession) error) error {
	s := newNSSession(cmd)
	err := fn(s)
	derr := s.done()
	if err != nil {
		return err
	}
	return derr
}

// forEach resolves every argument and calls fn for it, reporting its error.
func (s *nsSession) forEach(args []string, fn func(t nsTarget) error) error {
	for _, arg := range args {
		t, err := s.resolve(arg)
		if err != nil {
			return err
		}
		if err := fn(t); err != nil {
			s.fail(arg, err)
		}
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
	}
	return nil
}

// nsErrText is the description of a failed operation on a path: "file
// exists" for the namespace errors (libfff reports them so), the error's
// text otherwise.
func nsErrText(err error) string {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	return err.Error()
}

// nsErr is an error for a path with the description of code c.
func nsErr(c proto.Code) error {
	_, d, _ := strings.Cut(c.Err().Error(), ": ")
	return errors.New(d)
}

// parseMode parses a chmod-style mode: octal ("755", "1777") or symbolic
// ("u+x", "go-w", "a=rX,u+s", "+t"), applied to cur (a POSIX mode) for the
// symbolic form; isDir makes X mean x. It returns the 12 POSIX mode bits.
func parseMode(spec string, cur uint32, isDir bool) (uint32, error) {
	if spec == "" {
		return 0, errors.New("empty mode")
	}
	if spec[0] >= '0' && spec[0] <= '7' {
		v, err := strconv.ParseUint(spec, 8, 32)
		if err != nil || v > 0o7777 {
			return 0, fmt.Errorf("invalid mode %q", spec)
		}
		return uint32(v), nil
	}
	m := cur & proto.ModeMask
	for _, clause := range strings.Split(spec, ",") {
		i := 0
		var who uint32
		for ; i < len(clause) && strings.IndexByte("ugoa", clause[i]) >= 0; i++ {
			switch clause[i] {
			case 'u':
				who |= 0o4700
			case 'g':
				who |= 0o2070
			case 'o':
				who |= 0o1007
			case 'a':
				who |= 0o7777
			}
		}
		if who == 0 {
			who = 0o7777
		}
		if i == len(clause) {
			return 0, fmt.Errorf("invalid mode %q", spec)
		}
		for i < len(clause) {
			op := clause[i]
			if op != '+' && op != '-' && op != '=' {
				return 0, fmt.Errorf("invalid mode %q", spec)
			}
			i++
			var bits uint32
			for ; i < len(clause) && strings.IndexByte("rwxXst", clause[i]) >= 0; i++ {
				switch clause[i] {
				case 'r':
					bits |= 0o444
				case 'w':
					bits |= 0o222
				case 'x':
					bits |= 0o111
				case 'X':
					if isDir || m&0o111 != 0 {
						bits |= 0o111
					}
				case 's':
					bits |= 0o6000
				case 't':
					bits |= 0o1000
				}
			}
			bits &= who
			switch op {
			case '+':
				m |= bits
			case '-':
				m &^= bits
			case '=':
				clear := who & proto.ModeMask
				if isDir { // as GNU chmod: = keeps a directory's setuid/setgid
					clear &^= proto.ModeSetuid | proto.ModeSetgid
				}
				m = m&^clear | bits
			}
		}
	}
	return m, nil
}

// fsMode returns a POSIX mode as the fs.FileMode libfff takes.
func fsMode(m uint32) fs.FileMode {
	f := fs.FileMode(m & 0o777)
	if m&proto.ModeSetuid != 0 {
		f |= fs.ModeSetuid
	}
	if m&proto.ModeSetgid != 0 {
		f |= fs.ModeSetgid
	}
	if m&proto.ModeSticky != 0 {
		f |= fs.ModeSticky
	}
	return f
}
