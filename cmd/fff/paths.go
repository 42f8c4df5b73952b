package main

import (
	"errors"
	"fmt"

	"fff/libfff"
)

// errClusterPath is returned for fff:// paths by commands that cannot read
// files in the cluster yet (the data path comes with the data-path issue).
var errClusterPath = errors.New("fff:// paths need the data path (storage), which this build does not have yet")

// localPath returns the local file name a path argument names (DESIGN §10),
// or an error for fff:// paths this command cannot use yet.
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
