//go:build !fdb

package main

import (
	"errors"

	"fff/server/kv"
)

func openFDB(KVConfig) (kv.DB, error) {
	return nil, errors.New("kv.backend fdb: this fffd was built without FoundationDB support; rebuild with `go build -tags fdb` where libfdb_c is installed")
}
