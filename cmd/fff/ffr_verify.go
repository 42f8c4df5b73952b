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
			var damaged, unreadable int
			for _, p := range args {
				switch verifyOne(cmd.Context(), cmd.OutOrStdout(), p) {
				case verifyDamaged:
					damaged++
				case verifyUnreadable:
					unreadable++
				}
				if err := cmd.Context().Err(); err != nil {
					return err
				}
			}
			if err := verifySummary(damaged, unreadable, len(args)); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
}

// verifyResult is what verifyOne found.
type verifyResult int

const (
	verifyOK         verifyResult = iota
	verifyDamaged                 // the bytes are damaged: restore or re-pack
	verifyUnreadable              // missing, unreachable, not an FFRecord file, …
)

// verifySummary is verify's closing message, or nil when every dataset is
// intact. It advises re-packing only when some dataset is damaged: that
// does not help a missing file or a cluster that is not configured.
func verifySummary(damaged, unreadable, total int) error {
	switch {
	case damaged == 0 && unreadable == 0:
		return nil
	case unreadable == 0:
		return fmt.Errorf("%d of %d dataset(s) failed verification: restore or re-pack them from their sources", damaged, total)
	case damaged == 0:
		return fmt.Errorf("%d of %d dataset(s) could not be verified (see the FAIL lines)", unreadable, total)
	}
	return fmt.Errorf("%d of %d dataset(s) failed verification: %d damaged (restore or re-pack them from their sources), %d could not be verified (see the FAIL lines)",
		damaged+unreadable, total, damaged, unreadable)
}

// verifyOne checks one dataset and prints its result lines: "OK PATH (…)",
// or a "FAIL" line per problem that names the file (PATH or a shard of it)
// once.
func verifyOne(ctx context.Context, w io.Writer, path string) verifyResult {
	fail := func(err error) verifyResult {
		res := verifyUnreadable
		for _, e := range splitErrors(err) {
			fmt.Fprintf(w, "FAIL %s\n", datasetErrText(path, e))
			if isDamage(e) {
				res = verifyDamaged
			}
		}
		return res
	}
	ds, err := openAnyDataset(ctx, path)
	if err != nil {
		return fail(err)
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
		return fail(err)
	}
	fmt.Fprintf(w, "OK %s (%d samples, %d bytes)\n", path, ds.Len(), total)
	return verifyOK
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
