package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"time"

	"github.com/spf13/cobra"
	bolt "go.etcd.io/bbolt"

	"fff/server/kv/bboltkv"
	"fff/server/meta"
)

// errProblems makes `fffd check` exit 1: it ran, and found damage.
var errProblems = errors.New("problems found")

func newCheckCmd() *cobra.Command {
	var salvage string
	cmd := &cobra.Command{
		Use:   "check DATA",
		Short: "Check a stopped fffd's data directory (meta.db, targets/*/chunks.db) for damage",
		Long: "Checks each bbolt file of the data directory DATA: its header, bbolt's consistency check, and\n" +
			"(meta.db) that every metadata record decodes. Exit status 0: clean; 1: problems found; 2: usage.\n" +
			"With --salvage OUT, copies every readable record of each damaged file into OUT/<same relative path>;\n" +
			"stop fffd, move the damaged file aside and put the salvaged copy in its place (docs/operations.md).",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("%w: fffd check DATA [--salvage OUT]", errUsage)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.OutOrStdout(), args[0], salvage)
		},
	}
	cmd.Flags().StringVar(&salvage, "salvage", "", "copy the readable records of damaged files into this directory")
	return cmd
}

func runCheck(w io.Writer, data, salvage string) error {
	if st, err := os.Stat(data); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: %s is not a data directory", errUsage, data)
	}
	files := []string{"meta.db"}
	targets, _ := filepath.Glob(filepath.Join(data, "targets", "*", "chunks.db"))
	sort.Strings(targets)
	for _, t := range targets {
		rel, _ := filepath.Rel(data, t)
		files = append(files, rel)
	}
	bad := 0
	for _, rel := range files {
		path := filepath.Join(data, rel)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		problems, records := checkFile(path, rel == "meta.db")
		if len(problems) == 0 {
			fmt.Fprintf(w, "%s: ok (%d records)\n", path, records)
			continue
		}
		bad++
		fmt.Fprintf(w, "%s: %d problems (%d records readable)\n", path, len(problems), records)
		for _, p := range problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
		if salvage != "" {
			out := filepath.Join(salvage, rel)
			n, skipped, err := salvageFile(path, out, rel == "meta.db")
			if err != nil {
				fmt.Fprintf(w, "  salvage: %v\n", err)
				continue
			}
			fmt.Fprintf(w, "  salvaged %d records (%d skipped) into %s: with fffd stopped, move %s aside and put %s in its place\n", n, skipped, out, path, out)
		}
	}
	if bad > 0 {
		fmt.Fprintf(w, "%d of %d files damaged\n", bad, len(files))
		return errProblems
	}
	return nil
}

// contain turns a panic or memory fault of bbolt into an error.
func contain(err *error, oldFault bool) {
	debug.SetPanicOnFault(oldFault)
	if r := recover(); r != nil {
		*err = fmt.Errorf("bbolt failed reading a page: %v", r)
	}
}

func openReadOnly(path string) (db *bolt.DB, err error) {
	defer contain(&err, debug.SetPanicOnFault(true))
	return bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true, Timeout: time.Second})
}

// checkFile returns the problems of one bbolt file and how many records
// it could read.
func checkFile(path string, isMeta bool) (problems []string, records int) {
	h, err := bboltkv.CheckFile(path)
	if err != nil {
		return []string{err.Error()}, 0
	}
	_ = h // a single invalid meta page is a torn write bbolt survives
	db, err := openReadOnly(path)
	if err != nil {
		return append(problems, fmt.Sprintf("open: %v", err)), 0
	}
	defer db.Close()
	err = func() (err error) {
		defer contain(&err, debug.SetPanicOnFault(true))
		return db.View(func(tx *bolt.Tx) error {
			for e := range tx.Check() {
				problems = append(problems, fmt.Sprintf("bbolt consistency: %v", e))
			}
			return nil
		})
	}()
	if err != nil {
		problems = append(problems, err.Error())
	}
	links := meta.NewLinkCheck() // names against entries (meta.db only)
	n, skipped, err := walk(db, isMeta, func(k, v []byte) error {
		if isMeta {
			links.Add(k, v)
		}
		return nil
	}, func(p string) { problems = append(problems, p) })
	if err != nil {
		problems = append(problems, err.Error())
	} else {
		for _, p := range links.Problems() {
			problems = append(problems, p.String())
		}
	}
	_ = skipped
	return problems, n
}

// walk calls put for every readable record of every bucket of db, in key
// order, and bad for each record it skips (undecodable meta records). It
// stops at the first unreadable page.
func walk(db *bolt.DB, isMeta bool, put func(k, v []byte) error, bad func(string)) (n, skipped int, err error) {
	defer contain(&err, debug.SetPanicOnFault(true))
	err = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				if v == nil {
					continue // nested bucket: fff keeps none
				}
				if isMeta {
					if r := meta.CheckRecord(k, v); r != "" {
						bad(meta.Problem{Key: append([]byte{}, k...), Reason: r}.String())
						skipped++
						continue
					}
				}
				if err := put(k, v); err != nil {
					return err
				}
				n++
			}
			return nil
		})
	})
	return n, skipped, err
}

// salvageFile copies the readable records of path into a new bbolt file
// out, in bucket "kv" as bboltkv keeps them.
func salvageFile(path, out string, isMeta bool) (n, skipped int, err error) {
	if _, err := os.Stat(out); err == nil {
		return 0, 0, fmt.Errorf("%s exists; salvage writes a new file", out)
	}
	src, err := openReadOnly(path)
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", path, err)
	}
	defer src.Close()
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return 0, 0, err
	}
	dst, err := bolt.Open(out, 0o600, nil)
	if err != nil {
		return 0, 0, err
	}
	tx, err := dst.Begin(true)
	if err != nil {
		dst.Close()
		return 0, 0, err
	}
	b, err := tx.CreateBucketIfNotExists([]byte("kv"))
	if err == nil {
		n, skipped, err = walk(src, isMeta, func(k, v []byte) error { return b.Put(append([]byte{}, k...), append([]byte{}, v...)) }, func(string) {})
	}
	// Keep what was copied before an unreadable page.
	if cerr := tx.Commit(); cerr != nil {
		dst.Close()
		return n, skipped, cerr
	}
	if cerr := dst.Close(); cerr != nil {
		return n, skipped, cerr
	}
	if err != nil {
		return n, skipped, fmt.Errorf("copied %d records into %s, then stopped: %w", n, out, err)
	}
	return n, skipped, nil
}
