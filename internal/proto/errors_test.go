package proto

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"
)

func TestCodesDistinct(t *testing.T) {
	seenName := map[string]Code{}
	for _, c := range Codes() {
		n := c.String()
		if prev, ok := seenName[n]; ok {
			t.Fatalf("codes %d and %d share the name %q", prev, c, n)
		}
		seenName[n] = c
		if c == OK {
			if c.Err() != nil || c.Errno() != 0 {
				t.Fatalf("OK must have no error and no errno")
			}
			continue
		}
		if c.Errno() == 0 {
			t.Errorf("%v has no errno", c)
		}
		err := c.Err()
		if CodeOf(err) != c || !errors.Is(err, err) {
			t.Errorf("%v: sentinel round trip failed", c)
		}
		e := &Error{Code: c, Msg: "m"}
		if !errors.Is(e, err) || !errors.Is(err, e) || CodeOf(e) != c {
			t.Errorf("%v: *Error does not match its sentinel", c)
		}
		wrapped := fmt.Errorf("ctx: %w", e)
		if !errors.Is(wrapped, err) || CodeOf(wrapped) != c {
			t.Errorf("%v: wrapped *Error lost its code", c)
		}
		for _, o := range Codes() {
			if o != c && o != OK && errors.Is(e, o.Err()) {
				t.Errorf("%v matches sentinel of %v", c, o)
			}
		}
	}
	if got := Code(999).String(); got != "Code(999)" {
		t.Fatalf("unknown code name %q", got)
	}
	if CodeOf(&Error{Code: 999}) != 999 {
		t.Fatalf("unknown code not preserved")
	}
}

func TestStdlibMatches(t *testing.T) {
	tests := []struct {
		err    error
		target error
		want   bool
	}{
		{ErrNotFound, fs.ErrNotExist, true},
		{&Error{Code: ENOENT, Msg: "x"}, fs.ErrNotExist, true},
		{ErrExist, fs.ErrExist, true},
		{ErrPermissionDenied, fs.ErrPermission, true},
		{ErrNotPermitted, fs.ErrPermission, true},
		{ErrInvalid, fs.ErrInvalid, true},
		{ErrBadHandle, fs.ErrClosed, true},
		{ErrNotSupported, errors.ErrUnsupported, true},
		{ErrTimeout, context.DeadlineExceeded, true},
		{ErrCanceled, context.Canceled, true},
		{ErrNotFound, syscall.ENOENT, true},
		{ErrNotEmpty, syscall.ENOTEMPTY, true},
		{ErrInternal, syscall.EIO, true},
		{ErrIO, syscall.EIO, true},
		{ErrUnavailable, syscall.EIO, false},
		{ErrNotFound, fs.ErrExist, false},
		{ErrUnauthenticated, fs.ErrPermission, false},
		{ErrTimeout, context.Canceled, false},
	}
	for _, tc := range tests {
		if got := errors.Is(tc.err, tc.target); got != tc.want {
			t.Errorf("errors.Is(%v, %v) = %v, want %v", tc.err, tc.target, got, tc.want)
		}
	}
}

func TestCodeOf(t *testing.T) {
	_, statErr := os.Stat("/nonexistent/fff/proto/test")
	tests := []struct {
		err  error
		want Code
	}{
		{nil, OK},
		{errors.New("boom"), Internal},
		{context.DeadlineExceeded, Timeout},
		{fmt.Errorf("x: %w", context.Canceled), Canceled},
		{os.ErrDeadlineExceeded, Timeout},
		{statErr, ENOENT},
		{syscall.ENOSPC, ENOSPC},
		{syscall.EDQUOT, ENOSPC},
		{syscall.ECONNRESET, EIO},
		{fs.ErrExist, EEXIST},
		{fs.ErrPermission, EACCES},
		{errors.ErrUnsupported, ENOTSUP},
		{Errorf(EISDIR, "open %q", "/a"), EISDIR},
		{fmt.Errorf("call: %w: %w", ErrUnavailable, &Error{Code: EIO}), Unavailable},
	}
	for _, tc := range tests {
		if got := CodeOf(tc.err); got != tc.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if Errno(statErr) != syscall.ENOENT {
		t.Fatalf("Errno(statErr) = %v", Errno(statErr))
	}
}

func TestErrorText(t *testing.T) {
	if got := ErrNotFound.Error(); got != "ENOENT: no such file or directory" {
		t.Fatalf("sentinel text %q", got)
	}
	if got := Errorf(ENOENT, "lookup %q", "a").Error(); got != `lookup "a": ENOENT: no such file or directory` {
		t.Fatalf("Errorf text %q", got)
	}
	if got := (&Error{Code: TooLarge}).Error(); got != "TooLarge: too large" {
		t.Fatalf("empty message text %q", got)
	}
	var e interface{ Errno() syscall.Errno }
	if !errors.As(fmt.Errorf("w: %w", ErrReadOnly), &e) || e.Errno() != syscall.EROFS {
		t.Fatalf("Errno not reachable through errors.As")
	}
}
