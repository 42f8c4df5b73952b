package fusefs

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Transport is how the mount and the kernel exchange FUSE requests.
type Transport string

const (
	// TransportAuto uses the rings where the kernel offers them and
	// /dev/fuse otherwise, saying why in one log line.
	TransportAuto Transport = "auto"
	// TransportURing receives requests and sends replies through per-CPU
	// io_uring queues (FUSE over io_uring, Linux 6.14+; ring.go); FORGET
	// and INTERRUPT still arrive on /dev/fuse. Mounting fails where the
	// kernel cannot.
	TransportURing Transport = "uring"
	// TransportDev reads requests from /dev/fuse and writes replies to it
	// (go-fuse's server): one read(2) and one writev(2) per request.
	TransportDev Transport = "dev"
)

// ParseTransport parses the value of `fff mount --transport`.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(strings.ToLower(s)); t {
	case "", TransportAuto:
		return TransportAuto, nil
	case TransportURing, "io_uring", "io-uring":
		return TransportURing, nil
	case TransportDev:
		return TransportDev, nil
	}
	return "", fmt.Errorf("transport %q: want auto, uring or dev", s)
}

// ErrNoURing is wrapped by the reasons the ring transport cannot be used.
var ErrNoURing = errors.New("FUSE over io_uring unavailable")

// The kernel's switch for FUSE over io_uring (off by default; root sets
// it, and a mount made while it is off does not offer it).
const enableURingParam = "/sys/module/fuse/parameters/enable_uring"

// uringUnavailable says why this process cannot mount with the ring
// transport, or returns nil.
func uringUnavailable() error {
	return uringUnavailableAt(enableURingParam, "/proc/sys/kernel/io_uring_disabled", os.Geteuid())
}

// uringUnavailableAt is uringUnavailable with the kernel's switches read
// from param and disabled, for a process of effective uid euid.
func uringUnavailableAt(param, disabled string, euid int) error {
	b, err := os.ReadFile(param)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: this kernel has none (it came with Linux 6.14, CONFIG_FUSE_IO_URING)", ErrNoURing)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrNoURing, err)
	case strings.TrimSpace(string(b)) != "Y":
		return fmt.Errorf("%w: it is off in this kernel; as root, `echo Y > %s` turns it on for mounts made after it", ErrNoURing, param)
	}
	if b, err := os.ReadFile(disabled); err == nil && strings.TrimSpace(string(b)) == "2" {
		return fmt.Errorf("%w: io_uring is disabled (kernel.io_uring_disabled=2)", ErrNoURing)
	}
	if euid != 0 {
		return fmt.Errorf("%w: the ring transport mounts through the kernel directly, which needs root", ErrNoURing)
	}
	return nil
}
