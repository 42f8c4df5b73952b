package fusefs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTransport(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Transport
		err  bool
	}{
		{"", TransportAuto, false},
		{"auto", TransportAuto, false},
		{"uring", TransportURing, false},
		{"io_uring", TransportURing, false},
		{"URING", TransportURing, false},
		{"dev", TransportDev, false},
		{"splice", "", true},
	} {
		got, err := ParseTransport(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseTransport(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// TestURingUnavailable: each reason the ring transport cannot be used is
// an ErrNoURing that says what to do, read from the kernel's switches.
func TestURingUnavailable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	on, off := write("on", "Y\n"), write("off", "N\n")
	enabled, disabled := write("io0", "0\n"), write("io2", "2\n")
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name           string
		param, iouring string
		euid           int
		want           string // "" for no error
	}{
		{"usable", on, enabled, 0, ""},
		{"no io_uring_disabled file", on, missing, 0, ""},
		{"kernel without it", missing, enabled, 0, "Linux 6.14"},
		{"switched off", off, enabled, 0, "echo Y > " + off},
		{"io_uring disabled", on, disabled, 0, "io_uring_disabled=2"},
		{"not root", on, enabled, 1000, "needs root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := uringUnavailableAt(tc.param, tc.iouring, tc.euid)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrNoURing) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v; want an ErrNoURing saying %q", err, tc.want)
			}
		})
	}
}
