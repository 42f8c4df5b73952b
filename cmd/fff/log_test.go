package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestTextLog checks the lines fff's warnings print as, whatever stderr is.
func TestTextLog(t *testing.T) {
	var b bytes.Buffer
	tw := &textLogWriter{w: &b}
	l := zerolog.New(tw).With().Timestamp().Logger()
	l.Warn().Str("file", "src/fifo").Msg("skipping: not a regular file")
	l.Info().Str("mountpoint", "/mnt/a b").Str("cluster", "h:1").Msg("mounted")
	l.Error().Err(errors.New("boom")).Uint64("n", 1<<63+1).Msg("unmount")
	l.Debug().Msg("plain")
	want := `fff: warning: skipping: not a regular file (file=src/fifo)
fff: mounted (cluster=h:1, mountpoint="/mnt/a b")
fff: error: unmount: boom (n=9223372036854775809)
fff: debug: plain
`
	if b.String() != want {
		t.Errorf("text log:\n%s\nwant:\n%s", b.String(), want)
	}

	b.Reset()
	tw.stamp = true
	l.Warn().Msg("late")
	line := b.String()
	stamp, rest, _ := strings.Cut(line, " fff: ")
	if _, err := time.Parse(time.DateTime, stamp); err != nil || rest != "warning: late\n" {
		t.Errorf("stamped line %q", line)
	}
}

func TestSetupLogging(t *testing.T) {
	saved := textLog
	defer func() { textLog = saved }()
	for _, tc := range []struct {
		format string
		ok     bool
	}{{"text", true}, {"json", true}, {"xml", false}, {"", false}} {
		err := setupLogging("info", tc.format)
		var ue *usageError
		if (err == nil) != tc.ok || err != nil && !errors.As(err, &ue) {
			t.Errorf("setupLogging(%q) = %v, want ok=%v (a usage error otherwise)", tc.format, err, tc.ok)
		}
		if err == nil && logFormat() != tc.format {
			t.Errorf("logFormat() = %q after setupLogging(%q)", logFormat(), tc.format)
		}
	}
	t.Setenv(envLogFormat, "json")
	if defaultLogFormat() != "json" {
		t.Errorf("FFF_LOG_FORMAT=json: default %q", defaultLogFormat())
	}
}
