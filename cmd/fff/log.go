package main

import (
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/rs/zerolog/log"
)

// setupLogging points zerolog's global logger at stderr: a human-readable
// console writer when stderr is a terminal, JSON lines otherwise.
func setupLogging(level string) error {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return usageErrorf("--log-level %q: use debug, info, warn or error", level)
	}
	zerolog.SetGlobalLevel(lvl)
	if isTerminal(os.Stderr) {
		log.Logger = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
	} else {
		log.Logger = zerolog.New(os.Stderr).With().Timestamp().Logger()
	}
	return nil
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
