package main

import (
	"os"

	"github.com/rs/zerolog/log"

	"fff/internal/logging"
)

// setupLogging points zerolog's global logger at stderr: a human-readable
// console writer when stderr is a terminal, JSON lines otherwise.
func setupLogging(level string) error {
	l, err := logging.New(os.Stderr, level, "auto")
	if err != nil {
		return usageErrorf("--%s", err)
	}
	log.Logger = l
	return nil
}

// isTerminal reports whether f is a character device (a terminal).
func isTerminal(f *os.File) bool { return logging.IsTerminal(f) }
