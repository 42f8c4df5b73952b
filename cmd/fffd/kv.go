package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"fff/server/kv"
	"fff/server/kv/bboltkv"
)

// openKV opens the configured metadata KV.
func openKV(c KVConfig) (kv.DB, error) {
	switch c.Backend {
	case "bbolt":
		if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
			return nil, fmt.Errorf("kv: %w", err)
		}
		db, err := bboltkv.Open(c.Path, nil)
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
