// Package logging builds the structured loggers of fff's binaries: zerolog
// with a human-readable console writer on a terminal and JSON lines otherwise.
package logging

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
)

// New returns a logger writing to w at level ("debug", "info", "warn",
// "error"). format is "auto" (console when w is a terminal), "console" or "json".
func New(w io.Writer, level, format string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	console := false
	switch format {
	case "", "auto":
		f, ok := w.(*os.File)
		console = ok && IsTerminal(f)
	case "console":
		console = true
	case "json":
	default:
		return zerolog.Nop(), fmt.Errorf("log format %q: use auto, console or json", format)
	}
	if console {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Logger(), nil
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
