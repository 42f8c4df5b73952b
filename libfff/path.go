package libfff

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strings"
)

// Scheme is the prefix of paths that name a file in a cluster (DESIGN §10):
// fff:///a/b is /a/b in the default cluster, fff://HOST:PORT/a/b is /a/b in
// the cluster at HOST:PORT.
const Scheme = "fff://"

// Path is a parsed path argument: a file in a cluster (Remote) or a local
// file.
type Path struct {
	// Remote is set for fff:// paths.
	Remote bool
	// Cluster is the HOST:PORT of fff://HOST:PORT/… paths, "" for the
	// default cluster (and for local paths).
	Cluster string
	// Path is, for a remote path, the absolute, cleaned path inside the
	// cluster ("/" for fff:///); for a local path, the path as written.
	Path string
}

// ParsePath classifies s: fff:///PATH names PATH in the default cluster,
// fff://HOST:PORT/PATH names PATH in that cluster, anything else is a local
// path (returned as written). Cluster paths are cleaned lexically
// (path.Clean: "a//b/../c" is "/a/c").
func ParsePath(s string) (Path, error) {
	if s == "" {
		return Path{}, errors.New("empty path")
	}
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Path{Path: s}, nil
	}
	host, p, _ := strings.Cut(rest, "/")
	if host != "" {
		if strings.ContainsAny(host, "?#@") {
			return Path{}, fmt.Errorf("%s: write fff:///PATH or fff://HOST:PORT/PATH", s)
		}
		if _, port, err := net.SplitHostPort(host); err != nil || port == "" {
			return Path{}, fmt.Errorf("%s: %q is not HOST:PORT (write fff:///PATH for the default cluster)", s, host)
		}
	}
	return Path{Remote: true, Cluster: host, Path: CleanPath(p)}, nil
}

// String returns the path in the form ParsePath reads.
func (p Path) String() string {
	if !p.Remote {
		return p.Path
	}
	return Scheme + p.Cluster + p.Path
}

// CleanPath returns p as an absolute, lexically cleaned cluster path. There
// is no current directory in a cluster: a relative path starts at the root.
func CleanPath(p string) string { return path.Clean("/" + p) }

// splitPath splits a cleaned cluster path into its directory and last name
// ("/" has the name "").
func splitPath(p string) (dir, name string) {
	if p == "/" {
		return "/", ""
	}
	i := strings.LastIndexByte(p, '/')
	dir, name = p[:i], p[i+1:]
	if dir == "" {
		dir = "/"
	}
	return dir, name
}
