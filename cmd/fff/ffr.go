package main

import (
	"context"
	"errors"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"fff/ffrecord"
	"fff/libfff"
	fffdataset "fff/libfff/dataset"
)

func newFFRCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ffr",
		Short: "Pack, inspect, verify, read and unpack FFRecord datasets",
		Long: `FFRecord datasets hold many samples (e.g. the files of a training set) in one
file, or in a directory of *.ffr shard files read in name order as one dataset.
See docs/ffrecord.md for the format.

PATH arguments are local files or directories; fff:///PATH and
fff://HOST:PORT/PATH name files in a cluster (pack writes into it; the others
read from it).`,
		Args: groupArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newPackCmd(), newInspectCmd(), newVerifyCmd(), newCatCmd(), newUnpackCmd())
	return cmd
}

// dataset is an open FFRecord dataset, local or in a cluster.
type dataset struct {
	*ffrecord.Reader
	close func() error
}

// Close closes the dataset's files (and its cluster connection).
func (d *dataset) Close() error { return d.close() }

// openDataset opens a dataset path argument (a .ffr file or a directory of
// shards); its error is the message for the user ("PATH: not an FFRecord
// file (…)").
func openDataset(ctx context.Context, arg string) (*dataset, error) {
	ds, err := openAnyDataset(ctx, arg)
	if err != nil {
		return nil, errors.New(datasetErrText(arg, err))
	}
	return ds, nil
}

// datasetErrText describes a failure to open or read dataset arg on one
// line that names the file once: ffrecord's errors name their file (arg or
// one of its shards), an *fs.PathError its path (shown as arg when it is
// arg's); other errors get arg in front.
func datasetErrText(arg string, err error) string {
	var fe *ffrecord.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &fe):
		return errText(err)
	case errors.As(err, &pe):
		name := pe.Path
		if ref, perr := libfff.ParsePath(arg); perr == nil && ref.Path == pe.Path {
			name = arg
		}
		return name + ": " + errText(pe.Err)
	}
	text := errText(err)
	if strings.HasPrefix(text, arg+": ") {
		return text
	}
	return arg + ": " + text
}

// damageErrs are the errors of a dataset whose bytes are damaged: restoring
// or re-packing it helps, unlike a missing file, an unreachable cluster or
// a file that is not an FFRecord file.
var damageErrs = []error{ffrecord.ErrTruncated, ffrecord.ErrBadMagic, ffrecord.ErrMetaChecksum,
	ffrecord.ErrBadOffsets, ffrecord.ErrChecksum, ffrecord.ErrCorrupt}

func isDamage(err error) bool {
	if errors.Is(err, ffrecord.ErrNotFFRecord) { // also an ErrCorrupt
		return false
	}
	for _, d := range damageErrs {
		if errors.Is(err, d) {
			return true
		}
	}
	return false
}

// openAnyDataset is openDataset returning the library's errors unchanged:
// local paths are read with io_uring (ffrfile), fff:// paths through libfff's
// batched reads (package dataset resolves both).
func openAnyDataset(ctx context.Context, arg string) (*dataset, error) {
	ref, err := libfff.ParsePath(arg)
	if err != nil {
		return nil, err
	}
	var c *libfff.Client
	if ref.Remote {
		if c, err = connectCluster(ctx, ref); err != nil { // explains a failed connect
			return nil, err
		}
	}
	ds, err := fffdataset.Open(ctx, c, arg, fffdataset.Options{Verify: true})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return &dataset{Reader: ds.Reader(), close: func() error {
		err := ds.Close()
		if c != nil {
			err = errors.Join(err, c.Close())
		}
		return err
	}}, nil
}

// errText is an error message on one line without the library prefixes
// (joined errors become "; "-separated).
func errText(err error) string {
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		for prev := ""; l != prev; { // "ffrfile: ffrecord: …" loses both
			prev = l
			for _, p := range []string{"ffrecord: ", "ffrfile: "} {
				l = strings.TrimPrefix(l, p)
			}
		}
		lines[i] = l
	}
	return strings.Join(lines, "; ")
}
