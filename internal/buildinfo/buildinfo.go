// Package buildinfo is the version both binaries (fff, fffd) report.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time, and only there:
// go build -ldflags "-X fff/internal/buildinfo.version=v0.1.0".
var version = ""

// Version is the link-time version, else the module's, else "devel".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// String is the version line of program: "fff v0.1.0 (go1.26, linux/amd64)".
func String(program string) string {
	return fmt.Sprintf("%s %s (%s, %s/%s)", program, Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
