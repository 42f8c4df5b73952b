package main

import (
	"errors"
	"fmt"

	"fff/libfff"
)

// errClusterPath is returned for fff:// paths where only a local path makes
// sense (pack's sources and --files-from list, unpack's output directory).
// Datasets read by ffr commands and pack's -o take fff:// paths (ffr_fff.go).
var errClusterPath = errors.New("this argument must be a local path, not a cluster (fff://) path")

// localPath returns the local file name a path argument names (DESIGN §10),
// or an error for fff:// paths, where an argument must be local.
func localPath(s string) (string, error) {
	ref, err := libfff.ParsePath(s)
	if err != nil {
		return "", err
	}
	if ref.Remote {
		return "", fmt.Errorf("%s: %w", s, errClusterPath)
	}
	return ref.Path, nil
}
