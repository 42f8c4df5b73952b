// Package proto holds what fff clients and services share on the wire: the
// status codes every reply carries and the Go errors they map to. (Request and
// reply messages of the individual services live next to the code numbers as
// they are added.)
//
// # Status codes
//
// A Code is a uint16 that travels in every response frame. Its numeric values
// are part of the wire protocol and of the C and Python bindings, so they
// never change once assigned:
//
//	0         OK
//	1..99     namespace errors, one per POSIX errno that fff reports
//	100..199  data path and cluster errors (chains, targets, routing)
//	200..299  RPC layer errors (auth, limits, deadlines, availability)
//
// The numbers are fff's own, not the platform's errno values; Code.Errno gives
// the platform errno for the FUSE layer and C callers.
//
// # Errors
//
// Every code except OK has a sentinel error (ErrNotFound for ENOENT, …), so
// callers test with errors.Is(err, proto.ErrNotFound). Errors that come back
// from a server are *Error values carrying the code and the server's message;
// errors.Is matches them against the sentinel of their code, and, where the
// meaning is the same, against the standard library's errors too:
//
//	ENOENT          fs.ErrNotExist
//	EEXIST          fs.ErrExist
//	EACCES, EPERM   fs.ErrPermission
//	EINVAL          fs.ErrInvalid
//	EBADF           fs.ErrClosed
//	ENOTSUP         errors.ErrUnsupported
//	Timeout         context.DeadlineExceeded
//	Canceled        context.Canceled
//	any code        the syscall.Errno that Code.Errno returns (except EIO,
//	                which only EIO and Internal match)
//
// CodeOf maps any Go error to the code a server sends for it.
package proto

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// Code is a status code carried by every response frame. See the package
// documentation for the numbering.
type Code uint16

// OK means success.
const OK Code = 0

// Namespace errors, named after the POSIX errno they stand for.
const (
	ENOENT       Code = 1  // no such file or directory
	EEXIST       Code = 2  // file exists
	ENOTDIR      Code = 3  // not a directory
	EISDIR       Code = 4  // is a directory
	ENOTEMPTY    Code = 5  // directory not empty
	EACCES       Code = 6  // permission denied (the caller's uid/gids may not do this)
	EPERM        Code = 7  // operation not permitted (only the owner or root may)
	EINVAL       Code = 8  // invalid argument
	ENOSPC       Code = 9  // no space left on device
	EIO          Code = 10 // input/output error
	ENAMETOOLONG Code = 11 // file name too long
	ELOOP        Code = 12 // too many levels of symbolic links, or a rename into itself
	EXDEV        Code = 13 // cross-device link
	EBADF        Code = 14 // bad file handle (unknown or closed session)
	EROFS        Code = 15 // read-only file system
	ENOTSUP      Code = 16 // operation not supported
	EFBIG        Code = 17 // file too large (an offset or size beyond MaxFileSize)
)

// Data path and cluster errors.
const (
	// ChainVersionMismatch: the request named a chain version other than the
	// one the storage target serves; the client refreshes its routing info.
	ChainVersionMismatch Code = 100
	// NotHead: a write reached a target that is not the head of its chain.
	NotHead Code = 101
	// ChunkPending: the chunk has an uncommitted write; retry shortly.
	ChunkPending Code = 102
	// TargetNotServing: the target is syncing or offline; read another replica.
	TargetNotServing Code = 103
	// ChecksumMismatch: stored data failed its CRC32C check.
	ChecksumMismatch Code = 104
	// RoutingVersionMismatch: the caller's routing info is older than the
	// server's; the client refreshes it.
	RoutingVersionMismatch Code = 105
	// BadCapability: a storage request's capability is missing, expired,
	// not signed by this cluster, or does not cover the chunk or the
	// access asked; the client asks meta for a new one (which checks
	// permissions again) and retries.
	BadCapability Code = 106
	// ChunkMissing: a replica lacked a chunk it could not call a hole.
	// Sent only by versions before chain replication (whose chains of
	// several targets had the data on the head alone); reserved.
	ChunkMissing Code = 107
	// ChunkVersionMismatch: an update forwarded down a chain does not apply
	// on the successor's committed version of the chunk (the successor
	// missed updates, or is being resynced); the predecessor sends the
	// whole chunk instead (docs/replication.md). Never reaches clients.
	ChunkVersionMismatch Code = 108
)

// RPC layer errors.
const (
	// Unauthenticated: the handshake's token was not accepted.
	Unauthenticated Code = 200
	// BadRequest: the request could not be decoded or is malformed.
	BadRequest Code = 201
	// Internal: the server failed in a way that is not the caller's fault.
	Internal Code = 202
	// Timeout: the request's deadline passed.
	Timeout Code = 203
	// Unavailable: the server could not be reached or the connection was lost.
	Unavailable Code = 204
	// TooLarge: a body or payload exceeds a limit or the caller's buffer.
	TooLarge Code = 205
	// ProtocolVersion: the peer speaks a protocol version this side does not.
	ProtocolVersion Code = 206
	// Canceled: the caller canceled the request.
	Canceled Code = 207
	// UnknownMethod: the server has no handler for the request's method.
	UnknownMethod Code = 208
)

// Sentinel errors, one per code. Test with errors.Is.
var (
	ErrNotFound         error = sentinel(ENOENT)
	ErrExist            error = sentinel(EEXIST)
	ErrNotDir           error = sentinel(ENOTDIR)
	ErrIsDir            error = sentinel(EISDIR)
	ErrNotEmpty         error = sentinel(ENOTEMPTY)
	ErrPermissionDenied error = sentinel(EACCES)
	ErrNotPermitted     error = sentinel(EPERM)
	ErrInvalid          error = sentinel(EINVAL)
	ErrNoSpace          error = sentinel(ENOSPC)
	ErrIO               error = sentinel(EIO)
	ErrNameTooLong      error = sentinel(ENAMETOOLONG)
	ErrLoop             error = sentinel(ELOOP)
	ErrCrossDevice      error = sentinel(EXDEV)
	ErrBadHandle        error = sentinel(EBADF)
	ErrReadOnly         error = sentinel(EROFS)
	ErrNotSupported     error = sentinel(ENOTSUP)
	ErrFileTooLarge     error = sentinel(EFBIG)

	ErrChainVersionMismatch   error = sentinel(ChainVersionMismatch)
	ErrNotHead                error = sentinel(NotHead)
	ErrChunkPending           error = sentinel(ChunkPending)
	ErrTargetNotServing       error = sentinel(TargetNotServing)
	ErrChecksumMismatch       error = sentinel(ChecksumMismatch)
	ErrRoutingVersionMismatch error = sentinel(RoutingVersionMismatch)
	ErrBadCapability          error = sentinel(BadCapability)
	ErrChunkMissing           error = sentinel(ChunkMissing)
	ErrChunkVersionMismatch   error = sentinel(ChunkVersionMismatch)

	ErrUnauthenticated error = sentinel(Unauthenticated)
	ErrBadRequest      error = sentinel(BadRequest)
	ErrInternal        error = sentinel(Internal)
	ErrTimeout         error = sentinel(Timeout)
	ErrUnavailable     error = sentinel(Unavailable)
	ErrTooLarge        error = sentinel(TooLarge)
	ErrProtocolVersion error = sentinel(ProtocolVersion)
	ErrCanceled        error = sentinel(Canceled)
	ErrUnknownMethod   error = sentinel(UnknownMethod)
)

// codeInfo describes a code: its name, a short description and its errno.
func codeInfo(c Code) (name, desc string, errno syscall.Errno) {
	switch c {
	case OK:
		return "OK", "success", 0
	case ENOENT:
		return "ENOENT", "no such file or directory", syscall.ENOENT
	case EEXIST:
		return "EEXIST", "file exists", syscall.EEXIST
	case ENOTDIR:
		return "ENOTDIR", "not a directory", syscall.ENOTDIR
	case EISDIR:
		return "EISDIR", "is a directory", syscall.EISDIR
	case ENOTEMPTY:
		return "ENOTEMPTY", "directory not empty", syscall.ENOTEMPTY
	case EACCES:
		return "EACCES", "permission denied", syscall.EACCES
	case EPERM:
		return "EPERM", "operation not permitted", syscall.EPERM
	case EINVAL:
		return "EINVAL", "invalid argument", syscall.EINVAL
	case ENOSPC:
		return "ENOSPC", "no space left on device", syscall.ENOSPC
	case EIO:
		return "EIO", "input/output error", syscall.EIO
	case ENAMETOOLONG:
		return "ENAMETOOLONG", "file name too long", syscall.ENAMETOOLONG
	case ELOOP:
		return "ELOOP", "too many levels of symbolic links", syscall.ELOOP
	case EXDEV:
		return "EXDEV", "cross-device link", syscall.EXDEV
	case EBADF:
		return "EBADF", "bad file handle", syscall.EBADF
	case EROFS:
		return "EROFS", "read-only file system", syscall.EROFS
	case ENOTSUP:
		return "ENOTSUP", "operation not supported", syscall.ENOTSUP
	case EFBIG:
		return "EFBIG", "file too large", syscall.EFBIG
	case ChainVersionMismatch:
		return "ChainVersionMismatch", "chain version mismatch", syscall.EAGAIN
	case NotHead:
		return "NotHead", "target is not the head of its chain", syscall.EAGAIN
	case ChunkPending:
		return "ChunkPending", "chunk has a pending write", syscall.EAGAIN
	case TargetNotServing:
		return "TargetNotServing", "target is not serving", syscall.EAGAIN
	case ChecksumMismatch:
		return "ChecksumMismatch", "checksum mismatch", syscall.EIO
	case RoutingVersionMismatch:
		return "RoutingVersionMismatch", "routing version mismatch", syscall.EAGAIN
	case BadCapability:
		return "BadCapability", "capability refused", syscall.EACCES
	case ChunkMissing:
		return "ChunkMissing", "replica lacks the chunk", syscall.EIO
	case ChunkVersionMismatch:
		return "ChunkVersionMismatch", "replica's chunk version does not match the update", syscall.EAGAIN
	case Unauthenticated:
		return "Unauthenticated", "unauthenticated", syscall.EACCES
	case BadRequest:
		return "BadRequest", "bad request", syscall.EINVAL
	case Internal:
		return "Internal", "internal server error", syscall.EIO
	case Timeout:
		return "Timeout", "deadline exceeded", syscall.ETIMEDOUT
	case Unavailable:
		return "Unavailable", "server unavailable", syscall.EIO
	case TooLarge:
		return "TooLarge", "too large", syscall.EMSGSIZE
	case ProtocolVersion:
		return "ProtocolVersion", "unsupported protocol version", syscall.EPROTONOSUPPORT
	case Canceled:
		return "Canceled", "canceled", syscall.EINTR
	case UnknownMethod:
		return "UnknownMethod", "unknown method", syscall.ENOSYS
	}
	s := "Code(" + strconv.Itoa(int(c)) + ")"
	return s, "unknown status " + s, syscall.EIO
}

// Codes lists every defined code, OK first, in numeric order.
func Codes() []Code {
	return []Code{OK,
		ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, EACCES, EPERM, EINVAL,
		ENOSPC, EIO, ENAMETOOLONG, ELOOP, EXDEV, EBADF, EROFS, ENOTSUP, EFBIG,
		ChainVersionMismatch, NotHead, ChunkPending, TargetNotServing,
		ChecksumMismatch, RoutingVersionMismatch, BadCapability, ChunkMissing,
		ChunkVersionMismatch,
		Unauthenticated, BadRequest, Internal, Timeout, Unavailable, TooLarge,
		ProtocolVersion, Canceled, UnknownMethod,
	}
}

// String returns the code's name ("ENOENT", "ChainVersionMismatch", …), or
// "Code(N)" for a number this build does not know.
func (c Code) String() string { n, _, _ := codeInfo(c); return n }

// Errno returns the platform errno that stands for c (0 for OK, EIO for
// codes without a closer match).
func (c Code) Errno() syscall.Errno { _, _, e := codeInfo(c); return e }

// Err returns the sentinel error of c, or nil for OK.
func (c Code) Err() error {
	if c == OK {
		return nil
	}
	return sentinel(c)
}

// coded is implemented by the errors of this package.
type coded interface {
	error
	protoCode() Code
}

// sentinel is the type of the Err* values: an immutable error naming a code.
type sentinel Code

func (s sentinel) Error() string {
	n, d, _ := codeInfo(Code(s))
	return n + ": " + d
}

func (s sentinel) protoCode() Code { return Code(s) }

// Errno returns Code.Errno of the sentinel's code.
func (s sentinel) Errno() syscall.Errno { return Code(s).Errno() }

// Is makes the sentinel match errors of the same code and the standard
// library errors listed in the package documentation.
func (s sentinel) Is(target error) bool { return codeIs(Code(s), target) }

// Error is an error with a status code and a message, as sent by a server.
// Errors with equal codes are equivalent under errors.Is, whatever their
// messages.
type Error struct {
	Code Code
	// Msg is the server's description of the failure, e.g. `lookup "a/b":
	// ENOENT: no such file or directory`. It may be empty.
	Msg string
}

// Errorf returns an *Error with code c whose message is the formatted text
// followed by the code's name and description.
func Errorf(c Code, format string, args ...any) error {
	n, d, _ := codeInfo(c)
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...) + ": " + n + ": " + d}
}

// Error returns Msg, or the code's name and description when Msg is empty.
func (e *Error) Error() string {
	if e.Msg != "" {
		return e.Msg
	}
	return sentinel(e.Code).Error()
}

func (e *Error) protoCode() Code { return e.Code }

// Errno returns Code.Errno of e's code.
func (e *Error) Errno() syscall.Errno { return e.Code.Errno() }

// Is reports whether target is an error of the same code (a sentinel or
// another *Error), or a standard library error of the same meaning.
func (e *Error) Is(target error) bool { return codeIs(e.Code, target) }

func codeIs(c Code, target error) bool {
	switch t := target.(type) {
	case sentinel:
		return Code(t) == c
	case *Error:
		return t.Code == c
	case syscall.Errno:
		if t == syscall.EIO {
			return c == EIO || c == Internal
		}
		return t != 0 && t == c.Errno()
	}
	switch target {
	case fs.ErrNotExist:
		return c == ENOENT
	case fs.ErrExist:
		return c == EEXIST
	case fs.ErrPermission:
		return c == EACCES || c == EPERM
	case fs.ErrInvalid:
		return c == EINVAL
	case fs.ErrClosed:
		return c == EBADF
	case errors.ErrUnsupported:
		return c == ENOTSUP
	case context.DeadlineExceeded:
		return c == Timeout
	case context.Canceled:
		return c == Canceled
	}
	return false
}

// CodeOf returns the status code a server sends for err: OK for nil; the code
// of the first error of this package in err's tree; Timeout and Canceled for
// the context errors (and os.ErrDeadlineExceeded); the matching code of a
// syscall.Errno (EIO for unknown ones); the matching namespace code for the
// io/fs sentinels and errors.ErrUnsupported; Internal for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return OK
	}
	var c coded
	if errors.As(err, &c) {
		return c.protoCode()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return Timeout
	case errors.Is(err, context.Canceled):
		return Canceled
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return FromErrno(errno)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ENOENT
	case errors.Is(err, fs.ErrExist):
		return EEXIST
	case errors.Is(err, fs.ErrPermission):
		return EACCES
	case errors.Is(err, fs.ErrInvalid):
		return EINVAL
	case errors.Is(err, fs.ErrClosed):
		return EBADF
	case errors.Is(err, errors.ErrUnsupported):
		return ENOTSUP
	}
	return Internal
}

// Errno returns the platform errno for err: CodeOf(err).Errno().
func Errno(err error) syscall.Errno { return CodeOf(err).Errno() }

// FromErrno maps a platform errno to a code: the namespace code of the same
// name, Timeout for ETIMEDOUT, Canceled for EINTR, EIO for anything else.
func FromErrno(e syscall.Errno) Code {
	switch e {
	case 0:
		return OK
	case syscall.ENOENT:
		return ENOENT
	case syscall.EEXIST:
		return EEXIST
	case syscall.ENOTDIR:
		return ENOTDIR
	case syscall.EISDIR:
		return EISDIR
	case syscall.ENOTEMPTY:
		return ENOTEMPTY
	case syscall.EACCES:
		return EACCES
	case syscall.EPERM:
		return EPERM
	case syscall.EINVAL:
		return EINVAL
	case syscall.ENOSPC, syscall.EDQUOT:
		return ENOSPC
	case syscall.ENAMETOOLONG:
		return ENAMETOOLONG
	case syscall.ELOOP:
		return ELOOP
	case syscall.EXDEV:
		return EXDEV
	case syscall.EBADF:
		return EBADF
	case syscall.EROFS:
		return EROFS
	case syscall.ENOTSUP:
		return ENOTSUP
	case syscall.EFBIG:
		return EFBIG
	case syscall.ETIMEDOUT:
		return Timeout
	case syscall.EINTR:
		return Canceled
	}
	return EIO
}
