package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"fff/ffrecord"
	"fff/internal/proto"
	"fff/internal/rpc"
	"fff/libfff"
)

// The codes of fff.h (TestHeaderCodes checks them against the header).
const (
	cOK           = 0
	cEPERM        = 1
	cENOENT       = 2
	cEIO          = 5
	cEBADF        = 9
	cEAGAIN       = 11
	cEACCES       = 13
	cEEXIST       = 17
	cEXDEV        = 18
	cENOTDIR      = 20
	cEISDIR       = 21
	cEINVAL       = 22
	cEFBIG        = 27
	cENOSPC       = 28
	cEROFS        = 30
	cENAMETOOLONG = 36
	cENOTEMPTY    = 39
	cELOOP        = 40
	cENOTSUP      = 95
	cETIMEDOUT    = 110
	cECANCELED    = 125
	cECHECKSUM    = 1001
	cECORRUPT     = 1002
	cEUNAVAILABLE = 1003
	cEAUTH        = 1004
	cESHORTBUF    = 1005
	cEFORKED      = 1006
	cEINTERNAL    = 1099
)

// apiError is a failure the C API itself detects (bad handle, bad
// argument, short buffer): its code and message are final.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func errf(code int, format string, args ...any) error {
	return &apiError{code, fmt.Sprintf(format, args...)}
}

// firstErr returns the first error of an errors.Join (ffrecord.Reader's
// ReadBatch joins one error per failed sample, in batch order) and how many
// more there are; other errors come back as they are.
func firstErr(err error) (error, int) {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			if e != nil {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return errs[0], len(errs) - 1
		}
	}
	return err, 0
}

// protoCodes maps the wire codes of package proto to fff.h's.
var protoCodes = map[proto.Code]int{
	proto.OK:                     cOK,
	proto.ENOENT:                 cENOENT,
	proto.EEXIST:                 cEEXIST,
	proto.ENOTDIR:                cENOTDIR,
	proto.EISDIR:                 cEISDIR,
	proto.ENOTEMPTY:              cENOTEMPTY,
	proto.EACCES:                 cEACCES,
	proto.EPERM:                  cEPERM,
	proto.EINVAL:                 cEINVAL,
	proto.ENOSPC:                 cENOSPC,
	proto.EIO:                    cEIO,
	proto.ENAMETOOLONG:           cENAMETOOLONG,
	proto.ELOOP:                  cELOOP,
	proto.EXDEV:                  cEXDEV,
	proto.EBADF:                  cEBADF,
	proto.EROFS:                  cEROFS,
	proto.ENOTSUP:                cENOTSUP,
	proto.EFBIG:                  cEFBIG,
	proto.ChainVersionMismatch:   cEUNAVAILABLE, // retried by libfff; left over: no serving replica
	proto.NotHead:                cEUNAVAILABLE,
	proto.ChunkPending:           cEUNAVAILABLE,
	proto.TargetNotServing:       cEUNAVAILABLE,
	proto.ChecksumMismatch:       cECHECKSUM,
	proto.RoutingVersionMismatch: cEUNAVAILABLE,
	proto.BadCapability:          cEACCES,       // renewed and retried by libfff; left over: meta refused
	proto.ChunkMissing:           cEUNAVAILABLE, // sent by servers before chain replication
	proto.ChunkVersionMismatch:   cEUNAVAILABLE, // between storage nodes only
	proto.Unauthenticated:        cEAUTH,
	proto.BadRequest:             cEINVAL,
	proto.Internal:               cEINTERNAL,
	proto.Timeout:                cETIMEDOUT,
	proto.Unavailable:            cEUNAVAILABLE,
	proto.TooLarge:               cEFBIG,
	proto.ProtocolVersion:        cEUNAVAILABLE,
	proto.Canceled:               cECANCELED,
	proto.UnknownMethod:          cEUNAVAILABLE,
}

// errCode maps any error of fff's Go packages to an fff.h code: the C API's
// own errors keep theirs; ffrecord's sentinels (damaged files, bad
// indices, short buffers) come first because they wrap the IO error that
// revealed them; then "no cluster configured"; then everything package
// proto knows how to classify (its codes, context errors, syscall.Errno
// from local files, the io/fs sentinels). Of a joined error (a batch with
// several failed samples) the first decides.
func errCode(err error) int {
	if err == nil {
		return cOK
	}
	err, _ = firstErr(err)
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.code
	}
	switch {
	case errors.Is(err, ffrecord.ErrChecksum):
		return cECHECKSUM
	case errors.Is(err, ffrecord.ErrTruncated), errors.Is(err, ffrecord.ErrBadMagic),
		errors.Is(err, ffrecord.ErrMetaChecksum), errors.Is(err, ffrecord.ErrBadOffsets),
		errors.Is(err, ffrecord.ErrCorrupt), errors.Is(err, ffrecord.ErrUnsupportedVersion):
		return cECORRUPT
	case errors.Is(err, ffrecord.ErrIndexRange), errors.Is(err, ffrecord.ErrWriter):
		return cEINVAL
	case errors.Is(err, ffrecord.ErrBufferTooSmall):
		return cESHORTBUF
	case errors.Is(err, libfff.ErrNoCluster):
		return cEUNAVAILABLE
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return cETIMEDOUT
	case errors.Is(err, context.Canceled):
		return cECANCELED
	}
	if c, ok := protoCodes[proto.CodeOf(err)]; ok {
		return c
	}
	return cEINTERNAL
}

// hints say what to do about a failure, by code.
var hints = map[int]string{
	cEAUTH:        "the cluster refused the token: pass the right one, or set FFF_TOKEN (an admin issues one with `fff admin user add` or `fff admin user token NAME`)",
	cEUNAVAILABLE: "the cluster cannot be reached or cannot serve the data: check the address (FFF_CLUSTER) and `fff status`",
	cECHECKSUM:    "the stored bytes are damaged: check the file with `fff ffr verify` and re-create it from its source",
	cECORRUPT:     "this is not a valid FFRecord file, or it is damaged: check the path, and the file with `fff ffr verify`",
	cETIMEDOUT:    "the cluster did not answer in time: check `fff status`",
	cEINTERNAL:    "unexpected failure: please report it with this message",
}

// errMessage is the text fff_errmsg returns for err: the first failure
// (counting the others of a batch) and, for fff's own codes, what to do.
func errMessage(err error, code int) string {
	first, more := firstErr(err)
	msg := strings.TrimSpace(first.Error())
	if more > 0 {
		msg += fmt.Sprintf(" (and %d more failed)", more)
	}
	var ae *apiError
	// A TLS failure's own text says what to do (not the token's hint).
	if errors.As(first, &ae) || errors.Is(first, libfff.ErrNoCluster) || errors.Is(first, rpc.ErrTLS) {
		return msg
	}
	if h := hints[code]; h != "" {
		msg += ": " + h
	}
	return msg
}

// pathArg checks a path argument.
func pathArg(what, p string) error {
	if p == "" {
		return errf(cEINVAL, "%s: empty path (NULL or \"\")", what)
	}
	return nil
}
