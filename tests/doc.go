// Package tests holds fff's end-to-end tests: Go tests that build the real
// binaries (bin/fff, bin/fffd), start `fffd local` processes on temporary
// data directories, and drive them through libfff and the CLI. They never
// touch the user's cluster: FFF_CLUSTER and FFF_TOKEN are cleared and
// XDG_CONFIG_HOME points at a temporary directory.
//
//	go test ./tests/...
//
// (with GOFLAGS=-ldflags=-checklinkname=0, as for every test of fff).
package tests
