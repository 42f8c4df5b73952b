package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"fff/ffrecord"
)

func newInspectCmd() *cobra.Command {
	var asJSON bool
	var nKeys int
	cmd := &cobra.Command{
		Use:   "inspect PATH",
		Short: "Describe an FFRecord dataset: format, sample count, sizes, keys",
		Long: `Describe an FFRecord dataset (a .ffr file or a directory of shards): format
version(s), number of files, number of samples N, total sample bytes and file
bytes, alignment, whether samples have keys and whether the metadata is
checksummed, the distribution of sample sizes, and the first few keys.
Only the headers and indexes are read; 'fff ffr verify' checks the samples.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if nKeys < 0 {
				return usageErrorf("--keys %d: give 0 or more", nKeys)
			}
			ds, err := openDataset(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			defer ds.Close()
			rep, err := inspect(args[0], ds.Reader, nKeys)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			rep.print(cmd.OutOrStdout())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object instead of text")
	cmd.Flags().IntVar(&nKeys, "keys", 5, "how many of the first keys to show")
	return cmd
}

// inspectReport is what inspect prints; its JSON form is a stable interface.
type inspectReport struct {
	Path         string         `json:"path"`
	Versions     map[string]int `json:"versions"` // "v1"/"v2" -> number of files
	Files        int            `json:"files"`
	Samples      int64          `json:"samples"`
	DataBytes    int64          `json:"data_bytes"`
	FileBytes    int64          `json:"file_bytes"`
	Alignments   []int64        `json:"alignments"`    // distinct, 1 = none
	Keys         string         `json:"keys"`          // yes, no, or partial
	MetaChecksum string         `json:"meta_checksum"` // yes, no, or partial
	SampleSizes  sizeStats      `json:"sample_sizes"`
	FirstKeys    []string       `json:"first_keys"`
	Shards       []shardReport  `json:"shards"`
}

type shardReport struct {
	Name         string `json:"name"`
	Version      string `json:"version"`
	Samples      int64  `json:"samples"`
	FirstIndex   int64  `json:"first_index"`
	DataBytes    int64  `json:"data_bytes"`
	FileBytes    int64  `json:"file_bytes"`
	Alignment    int64  `json:"alignment"`
	Keys         bool   `json:"keys"`
	MetaChecksum bool   `json:"meta_checksum"`
}

type sizeStats struct {
	Min  int64   `json:"min"`
	P50  int64   `json:"p50"`
	P90  int64   `json:"p90"`
	P99  int64   `json:"p99"`
	Max  int64   `json:"max"`
	Mean float64 `json:"mean"`
}

func inspect(path string, r *ffrecord.Reader, nKeys int) (*inspectReport, error) {
	rep := &inspectReport{Path: path, Versions: map[string]int{}, FirstKeys: []string{}, Alignments: []int64{}}
	shards := r.Shards()
	rep.Files = len(shards)
	var withKeys, withCRC int
	for _, s := range shards {
		rep.Versions[s.Version.String()]++
		rep.Samples += s.Len
		rep.DataBytes += s.DataBytes
		rep.FileBytes += s.Size
		if !slices.Contains(rep.Alignments, s.Alignment) {
			rep.Alignments = append(rep.Alignments, s.Alignment)
		}
		if s.HasKeys {
			withKeys++
		}
		if s.MetaCRC {
			withCRC++
		}
		rep.Shards = append(rep.Shards, shardReport{
			Name: s.Name, Version: s.Version.String(), Samples: s.Len, FirstIndex: s.FirstIndex,
			DataBytes: s.DataBytes, FileBytes: s.Size, Alignment: s.Alignment, Keys: s.HasKeys, MetaChecksum: s.MetaCRC,
		})
	}
	slices.Sort(rep.Alignments)
	rep.Keys = allSomeNone(withKeys, len(shards))
	rep.MetaChecksum = allSomeNone(withCRC, len(shards))
	rep.SampleSizes = statsOf(r.Sizes())
	if withKeys > 0 {
		for i := int64(0); i < r.Len() && len(rep.FirstKeys) < nKeys; i++ {
			k, err := r.Key(i)
			if err != nil {
				return nil, fmt.Errorf("cannot read keys: %s", errText(err))
			}
			if k != "" {
				rep.FirstKeys = append(rep.FirstKeys, k)
			}
		}
	}
	return rep, nil
}

func allSomeNone(n, of int) string {
	switch {
	case n == of:
		return "yes"
	case n == 0:
		return "no"
	}
	return fmt.Sprintf("partial (%d of %d files)", n, of)
}

// statsOf summarizes sizes; percentiles are nearest-rank.
func statsOf(sizes []int64) sizeStats {
	if len(sizes) == 0 {
		return sizeStats{}
	}
	s := slices.Clone(sizes)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	rank := func(p float64) int64 {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return sizeStats{Min: s[0], P50: rank(0.50), P90: rank(0.90), P99: rank(0.99), Max: s[len(s)-1], Mean: sum / float64(len(s))}
}

func (rep *inspectReport) print(w io.Writer) {
	var versions []string
	for _, v := range []string{"v1", "v2"} {
		if n := rep.Versions[v]; n > 0 {
			versions = append(versions, fmt.Sprintf("%s (%d files)", v, n))
		}
	}
	if rep.Files == 1 {
		for v := range rep.Versions {
			versions = []string{v}
		}
	}
	var aligns []string
	for _, a := range rep.Alignments {
		if a <= 1 {
			aligns = append(aligns, "none")
		} else {
			aligns = append(aligns, fmt.Sprint(a))
		}
	}
	z := rep.SampleSizes
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-15s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	line("path", "%s", rep.Path)
	line("format", "%s", strings.Join(versions, ", "))
	line("files", "%d", rep.Files)
	line("samples", "%d", rep.Samples)
	line("data bytes", "%d (%s)", rep.DataBytes, humanBytes(rep.DataBytes))
	line("file bytes", "%d (%s)", rep.FileBytes, humanBytes(rep.FileBytes))
	line("alignment", "%s", strings.Join(aligns, ", "))
	line("keys", "%s", rep.Keys)
	line("meta checksum", "%s", rep.MetaChecksum)
	if rep.Samples > 0 {
		line("sample sizes", "min %s, p50 %s, p90 %s, p99 %s, max %s, mean %s",
			humanBytes(z.Min), humanBytes(z.P50), humanBytes(z.P90), humanBytes(z.P99), humanBytes(z.Max), humanBytes(int64(z.Mean+0.5)))
	}
	if len(rep.FirstKeys) > 0 {
		quoted := make([]string, len(rep.FirstKeys))
		for i, k := range rep.FirstKeys {
			quoted[i] = strconv.Quote(k)
		}
		line("first keys", "%s", strings.Join(quoted, " "))
	}
	if rep.Files > 1 {
		const show = 10
		fmt.Fprintln(w, "shards:")
		for i, s := range rep.Shards {
			if i == show {
				fmt.Fprintf(w, "  ... and %d more (--json lists all)\n", len(rep.Shards)-show)
				break
			}
			fmt.Fprintf(w, "  %s  %s  %d samples from index %d  %s\n", s.Name, s.Version, s.Samples, s.FirstIndex, humanBytes(s.FileBytes))
		}
	}
}
