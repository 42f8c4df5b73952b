package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"fff/ffrecord/ffrfile"
)

func newFFRCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ffr",
		Short: "Pack, inspect, verify, read and unpack FFRecord datasets",
		Long: `FFRecord datasets hold many samples (e.g. the files of a training set) in one
file, or in a directory of *.ffr shard files read in name order as one dataset.
See docs/ffrecord.md for the format.

PATH arguments are local files or directories; fff:///PATH and
fff://HOST:PORT/PATH name files in a cluster (not available yet).`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newPackCmd(), newInspectCmd(), newVerifyCmd(), newCatCmd(), newUnpackCmd())
	return cmd
}

// openDataset opens a dataset path argument (a .ffr file or a directory of shards).
func openDataset(ctx context.Context, arg string) (*ffrfile.Dataset, error) {
	if _, err := localPath(arg); err != nil {
		return nil, err
	}
	ds, err := openLocalDataset(ctx, arg)
	if err != nil {
		return nil, fmt.Errorf("cannot open dataset: %s", errText(err))
	}
	return ds, nil
}

// openLocalDataset is openDataset returning the library's errors unchanged.
func openLocalDataset(ctx context.Context, arg string) (*ffrfile.Dataset, error) {
	p, err := localPath(arg)
	if err != nil {
		return nil, err
	}
	return ffrfile.Open(ctx, p, ffrfile.Options{})
}

// errText is an error message on one line without the library prefixes
// (joined errors become "; "-separated).
func errText(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		for _, p := range []string{"ffrecord: ", "ffrfile: "} {
			l = strings.TrimPrefix(l, p)
		}
		lines[i] = l
	}
	return strings.Join(lines, "; ")
}
