package main

import (
	"errors"
	"fmt"
	"strings"
)

// A path argument names a local file unless it is written fff:///PATH (the
// default cluster) or fff://HOST:PORT/PATH (that cluster); see DESIGN.md §10.
// Every command that takes a path parses it with parsePath, so routing the
// fff:// forms to the cluster later touches this file and the commands'
// opening code only.

const fffScheme = "fff://"

// errClusterPath is returned for fff:// paths until the cluster client exists.
var errClusterPath = errors.New("fff:// paths need a running cluster (coming with the cluster issue)")

// pathRef is a parsed path argument.
type pathRef struct {
	Raw     string // as written
	Remote  bool   // an fff:// path
	Cluster string // HOST:PORT, or "" for the default cluster (Remote only)
	Path    string // the local path, or the absolute path inside the cluster
}

// parsePath classifies a path argument.
func parsePath(s string) (pathRef, error) {
	if s == "" {
		return pathRef{}, errors.New("empty path")
	}
	rest, ok := strings.CutPrefix(s, fffScheme)
	if !ok {
		return pathRef{Raw: s, Path: s}, nil
	}
	host, p, _ := strings.Cut(rest, "/")
	if strings.ContainsAny(host, "?#@") {
		return pathRef{}, fmt.Errorf("%s: write fff:///PATH or fff://HOST:PORT/PATH", s)
	}
	return pathRef{Raw: s, Remote: true, Cluster: host, Path: "/" + p}, nil
}

// localPath returns the local file name a path argument names, or an error
// for paths this command cannot use yet.
func localPath(s string) (string, error) {
	ref, err := parsePath(s)
	if err != nil {
		return "", err
	}
	if ref.Remote {
		return "", fmt.Errorf("%s: %w", s, errClusterPath)
	}
	return ref.Path, nil
}
