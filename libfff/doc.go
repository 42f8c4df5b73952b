// Package libfff is the Go client of fff: it finds a cluster, authenticates,
// pulls routing info, talks to meta for the namespace and (later) to storage
// for file bytes, and is what the CLI, the C API (libfff.so), Python and the
// FUSE mount are built on.
package libfff
