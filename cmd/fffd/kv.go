package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"fff/server/kv"
	"fff/server/kv/bboltkv"

	"github.com/rs/zerolog"
)

// metaBallast is the room bbolt's meta.db keeps on its disk for deletes.
const metaBallast = 16 << 20

// openKV opens the configured metadata KV.
func openKV(c KVConfig, log zerolog.Logger) (kv.DB, error) {
	switch c.Backend {
	case "bbolt":
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return nil, fmt.Errorf("kv: %w", err)
		}
		// The ballast lets unlinks and renames through on a full disk
		// (docs/security.md, "Disk full").
		db, err := bboltkv.Open(c.Path, &bboltkv.Options{BallastSize: metaBallast, Logger: log})
		if errors.Is(err, bboltkv.ErrLocked) {
			return nil, fmt.Errorf("kv %s: %w (is another fffd using this data directory?)", c.Path, err)
		}
		if err != nil {
			// ErrCorrupt's message names the file and says what to do.
			return nil, fmt.Errorf("kv: %w", err)
		}
		return db, nil
	case "fdb":
		return openFDB(c)
	}
	return nil, fmt.Errorf("kv: unknown backend %q", c.Backend)
}
