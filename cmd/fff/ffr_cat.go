package main

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"
)

func newCatCmd() *cobra.Command {
	var showKey bool
	cmd := &cobra.Command{
		Use:   "cat PATH INDEX",
		Short: "Write one sample's bytes to stdout",
		Long: `Write sample INDEX (counted from 0 across all shards of the dataset) raw to
stdout, after checking its checksum. A negative INDEX counts from the end, as
in Python: -1 is the last sample. With --key, print the sample's key instead,
followed by a newline.`,
		Example: `  fff ffr cat images.ffr 0 > first.jpg
  fff ffr cat images.ffr -1 > last.jpg
  fff ffr cat train/ 12345 --key`,
		Args:        exactArgs(2),
		Annotations: map[string]string{annNegativeArgs: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			idx, err := strconv.ParseInt(args[1], 10, 64)
			if err != nil {
				return usageErrorf("INDEX %q: give a sample number (0 is the first, -1 the last)", args[1])
			}
			ds, err := openDataset(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer ds.Close()
			n := ds.Len()
			if idx < -n || idx >= n {
				if n == 0 {
					return fmt.Errorf("sample %d does not exist: %s has no samples", idx, args[0])
				}
				return fmt.Errorf("sample %d does not exist: %s has %d samples (0 to %d, or -%d to -1 from the end)", idx, args[0], n, n-1, n)
			}
			if idx < 0 {
				idx += n
			}
			if showKey {
				key, err := ds.Key(idx)
				if err != nil {
					return fmt.Errorf("cannot read key: %s", datasetErrText(args[0], err))
				}
				if key == "" {
					return fmt.Errorf("sample %d has no key (v1 files and files packed with --no-keys have none)", idx)
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), key)
				return err
			}
			size, err := ds.Size(idx)
			if err != nil {
				return errors.New(datasetErrText(args[0], err))
			}
			buf := make([]byte, size)
			if _, err := ds.ReadSample(cmd.Context(), idx, buf); err != nil {
				return fmt.Errorf("%s: run 'fff ffr verify %s' to check the whole dataset", datasetErrText(args[0], err), args[0])
			}
			_, err = cmd.OutOrStdout().Write(buf)
			return err
		},
	}
	cmd.Flags().BoolVar(&showKey, "key", false, "print the sample's key instead of its bytes")
	return cmd
}
