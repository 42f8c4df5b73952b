package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"

	"fff/ffrecord"
)

func TestDatasetErrText(t *testing.T) {
	notFFR := &ffrecord.Error{File: "x.log", Sample: -1, Index: -1, Err: ffrecord.ErrNotFFRecord, Detail: "why"}
	for _, tc := range []struct {
		arg  string
		err  error
		want string
	}{
		{"x.log", notFFR, "x.log: not an FFRecord file (why)"},
		{"x.log", fmt.Errorf("ffrfile: %w", notFFR), "x.log: not an FFRecord file (why)"},
		{"/nope", fmt.Errorf("ffrfile: %w", &fs.PathError{Op: "stat", Path: "/nope", Err: syscall.ENOENT}), "/nope: no such file or directory"},
		{"fff:///nope", &fs.PathError{Op: "stat", Path: "/nope", Err: syscall.ENOENT}, "fff:///nope: no such file or directory"},
		{"d", &fs.PathError{Op: "open", Path: "d/a.ffr", Err: syscall.EACCES}, "d/a.ffr: permission denied"},
		{"fff:///x", errors.New("no fff cluster configured"), "fff:///x: no fff cluster configured"},
		{"d", errors.New("ffrfile: d: no *.ffr files in directory"), "d: no *.ffr files in directory"},
	} {
		got := datasetErrText(tc.arg, tc.err)
		if got != tc.want {
			t.Errorf("datasetErrText(%q, %v) = %q, want %q", tc.arg, tc.err, got, tc.want)
		}
		if n := strings.Count(got, tc.arg+": "); n > 1 {
			t.Errorf("%q names %s %d times", got, tc.arg, n)
		}
	}
}

func TestVerifySummary(t *testing.T) {
	for _, tc := range []struct {
		damaged, unreadable int
		repack              bool // advises re-packing
	}{
		{0, 0, false}, {1, 0, true}, {0, 1, false}, {1, 2, true},
	} {
		err := verifySummary(tc.damaged, tc.unreadable, 4)
		if (err == nil) != (tc.damaged+tc.unreadable == 0) {
			t.Fatalf("%d damaged, %d unreadable: %v", tc.damaged, tc.unreadable, err)
		}
		if err != nil && strings.Contains(err.Error(), "re-pack") != tc.repack {
			t.Errorf("%d damaged, %d unreadable: %q (advise re-packing: %v)", tc.damaged, tc.unreadable, err, tc.repack)
		}
	}
	if !isDamage(fmt.Errorf("x: %w", ffrecord.ErrChecksum)) || isDamage(ffrecord.ErrNotFFRecord) || isDamage(os.ErrNotExist) {
		t.Error("isDamage: only damage to an FFRecord file's bytes counts")
	}
}

// TestNegativeArgs checks that "-1" reaches commands marked for it as an
// argument, in its place, and that other command lines are untouched.
func TestNegativeArgs(t *testing.T) {
	for _, tc := range []struct {
		in, want []string
	}{
		{[]string{"ffr", "cat", "ds", "-1"}, []string{"ffr", "cat", "--", "ds", "-1"}},
		{[]string{"ffr", "cat", "ds", "-1", "--key"}, []string{"ffr", "cat", "--key", "--", "ds", "-1"}},
		{[]string{"--log-level", "debug", "ffr", "cat", "ds", "-12"}, []string{"ffr", "cat", "--log-level", "debug", "--", "ds", "-12"}},
		{[]string{"ffr", "cat", "--log-level=warn", "ds", "-1"}, []string{"ffr", "cat", "--log-level=warn", "--", "ds", "-1"}},
		{[]string{"ffr", "cat", "ds", "--", "-1"}, []string{"ffr", "cat", "ds", "--", "-1"}},                 // no negative number before "--"
		{[]string{"ffr", "cat", "ds", "3", "--key"}, []string{"ffr", "cat", "ds", "3", "--key"}},             // nothing to do
		{[]string{"ffr", "inspect", "--keys", "-1", "ds"}, []string{"ffr", "inspect", "--keys", "-1", "ds"}}, // not marked
		{[]string{"ffr", "cat", "-h"}, []string{"ffr", "cat", "-h"}},
	} {
		if got := negativeArgs(newRootCmd(), tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("negativeArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for s, want := range map[string]bool{"-1": true, "-0": true, "-12.5": true, "-": false, "-x": false, "-1x": false, "--1": false, "-.5": false, "-1.2.3": false, "1": false} {
		if got := isNegativeNumber(s); got != want {
			t.Errorf("isNegativeNumber(%q) = %v", s, got)
		}
	}
}
