package memkv_test

import (
	"testing"

	"fff/server/kv"
	"fff/server/kv/kvtest"
	"fff/server/kv/memkv"
)

func TestConformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.DB { return memkv.New() })
}
