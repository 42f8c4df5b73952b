//go:build fdb

package main

import (
	"fmt"

	"fff/server/kv"
	"fff/server/kv/fdbkv"
)

func openFDB(c KVConfig) (kv.DB, error) {
	db, err := fdbkv.Open(fdbkv.Options{ClusterFile: c.ClusterFile, Prefix: []byte(c.Prefix)})
	if err != nil {
		return nil, fmt.Errorf("kv fdb: %w", err)
	}
	return db, nil
}
