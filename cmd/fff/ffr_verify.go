package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"fff/ffrecord"
)

func newVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify PATH...",
		Short: "Check every checksum of FFRecord datasets",
		Long: `Read every byte of each dataset (a .ffr file or a directory of shards) and check
the metadata checksums, every sample's checksum, v2 alignment padding and v2
keys. Prints "OK PATH (N samples, X bytes)" for an intact dataset, and a
"FAIL" line per problem, naming the file and sample, otherwise.

Exit status: 0 when every dataset is intact, 1 when any is damaged or cannot
be opened, 2 for usage errors.`,
		Args: minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := 0
			for _, p := range args {
				if !verifyOne(cmd.Context(), cmd.OutOrStdout(), p) {
					bad++
				}
				if err := cmd.Context().Err(); err != nil {
					return err
				}
			}
			if bad > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d dataset(s) failed verification: restore or re-pack them from their sources", bad, len(args))}
			}
			return nil
		},
	}
}

// verifyOne checks one dataset, prints its result lines and reports whether it is intact.
func verifyOne(ctx context.Context, w io.Writer, path string) bool {
	ds, err := openAnyDataset(ctx, path)
	if err != nil {
		for _, e := range splitErrors(err) {
			fmt.Fprintf(w, "FAIL %s: %s\n", path, errText(e))
		}
		return false
	}
	defer ds.Close()
	var total int64
	for _, s := range ds.Shards() {
		total += s.Size
	}
	prog := newProgress("verifying "+path, total, 0)
	err = ds.Verify(ctx, ffrecord.VerifyOptions{Progress: func(n int64) { prog.Add(n, 0) }})
	prog.Finish(err == nil)
	if err != nil {
		for _, e := range splitErrors(err) {
			fmt.Fprintf(w, "FAIL %s: %s\n", path, errText(e))
		}
		return false
	}
	fmt.Fprintf(w, "OK %s (%d samples, %d bytes)\n", path, ds.Len(), total)
	return true
}

// splitErrors flattens errors.Join trees into their leaves.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, splitErrors(e)...)
		}
		return out
	}
	return []error{err}
}
