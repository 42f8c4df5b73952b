package main

import (
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4096", 4096, true}, {"64KiB", 64 << 10, true}, {"1GiB", 1 << 30, true}, {"1g", 1e9, true},
		{"500MB", 500e6, true}, {"1.5 MiB", 3 << 19, true}, {"0", 0, true},
		{"", 0, false}, {"lots", 0, false}, {"-1", 0, false}, {"1XB", 0, false},
	} {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestFileKey(t *testing.T) {
	for in, want := range map[string]string{
		"a/b.txt": "a/b.txt", "./a//b.txt": "a/b.txt", "/abs/x": "abs/x", "../../up/x": "up/x", "x": "x",
	} {
		if got := fileKey(in); got != want {
			t.Errorf("fileKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestUnsafeKey(t *testing.T) {
	for key, bad := range map[string]bool{
		"a": false, "a/b/c.jpg": false, "..x/y..": false,
		"../a": true, "a/..": true, "a/../b": true, "/a": true, "a//b": true, "./a": true, "a/": true, "a\x00b": true,
	} {
		if got := unsafeKey(key) != ""; got != bad {
			t.Errorf("unsafeKey(%q) refused=%v, want %v", key, got, bad)
		}
	}
}
