package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"

	"fff/ffrecord"
	"fff/internal/proto"
	"fff/libfff"
)

func TestHeaderCodes(t *testing.T) {
	want := map[string]int{
		"OK": cOK, "EPERM": cEPERM, "ENOENT": cENOENT, "EIO": cEIO, "EBADF": cEBADF, "EAGAIN": cEAGAIN,
		"EACCES": cEACCES, "EEXIST": cEEXIST, "EXDEV": cEXDEV, "ENOTDIR": cENOTDIR, "EISDIR": cEISDIR,
		"EINVAL": cEINVAL, "EFBIG": cEFBIG, "ENOSPC": cENOSPC, "EROFS": cEROFS, "ENAMETOOLONG": cENAMETOOLONG,
		"ENOTEMPTY": cENOTEMPTY, "ELOOP": cELOOP, "ENOTSUP": cENOTSUP, "ETIMEDOUT": cETIMEDOUT,
		"ECANCELED": cECANCELED, "ECHECKSUM": cECHECKSUM, "ECORRUPT": cECORRUPT, "EUNAVAILABLE": cEUNAVAILABLE,
		"EAUTH": cEAUTH, "ESHORTBUF": cESHORTBUF, "EFORKED": cEFORKED, "EINTERNAL": cEINTERNAL,
	}
	got := headerCodes()
	for name, v := range want {
		if got[name] != v {
			t.Errorf("FFF_%s: header %d, Go %d", name, got[name], v)
		}
	}
	// POSIX codes keep their Linux errno values.
	for name, v := range map[string]syscall.Errno{"EPERM": syscall.EPERM, "ENOENT": syscall.ENOENT, "EIO": syscall.EIO,
		"EBADF": syscall.EBADF, "EAGAIN": syscall.EAGAIN, "EACCES": syscall.EACCES, "EEXIST": syscall.EEXIST,
		"EXDEV": syscall.EXDEV, "ENOTDIR": syscall.ENOTDIR, "EISDIR": syscall.EISDIR, "EINVAL": syscall.EINVAL,
		"EFBIG": syscall.EFBIG, "ENOSPC": syscall.ENOSPC, "EROFS": syscall.EROFS, "ENAMETOOLONG": syscall.ENAMETOOLONG,
		"ENOTEMPTY": syscall.ENOTEMPTY, "ELOOP": syscall.ELOOP, "ENOTSUP": syscall.ENOTSUP,
		"ETIMEDOUT": syscall.ETIMEDOUT, "ECANCELED": syscall.ECANCELED} {
		if got[name] != int(v) {
			t.Errorf("FFF_%s = %d, Linux errno %d", name, got[name], int(v))
		}
	}
}

func TestErrCode(t *testing.T) {
	ffrErr := func(sentinel error) error {
		return &ffrecord.Error{File: "a.ffr", Sample: 3, Index: 7, Err: sentinel}
	}
	cases := []struct {
		name string
		err  error
		code int
		msg  string // a substring of the message
	}{
		{"nil", nil, cOK, ""},
		{"api", errf(cESHORTBUF, "too small"), cESHORTBUF, "too small"},
		{"ENOENT path", &fs.PathError{Op: "stat", Path: "/x", Err: &proto.Error{Code: proto.ENOENT, Msg: "no such file or directory"}}, cENOENT, "stat /x"},
		{"EEXIST", proto.ErrExist, cEEXIST, ""},
		{"ENOTDIR", proto.ErrNotDir, cENOTDIR, ""},
		{"EISDIR", proto.ErrIsDir, cEISDIR, ""},
		{"ENOTEMPTY", proto.ErrNotEmpty, cENOTEMPTY, ""},
		{"EACCES", proto.ErrPermissionDenied, cEACCES, ""},
		{"EPERM", proto.ErrNotPermitted, cEPERM, ""},
		{"EINVAL", proto.ErrInvalid, cEINVAL, ""},
		{"ENOSPC", proto.ErrNoSpace, cENOSPC, ""},
		{"EIO", proto.ErrIO, cEIO, ""},
		{"ENAMETOOLONG", proto.ErrNameTooLong, cENAMETOOLONG, ""},
		{"ELOOP", proto.ErrLoop, cELOOP, ""},
		{"EXDEV", proto.ErrCrossDevice, cEXDEV, ""},
		{"EBADF", proto.ErrBadHandle, cEBADF, ""},
		{"EROFS", proto.ErrReadOnly, cEROFS, ""},
		{"ENOTSUP", proto.ErrNotSupported, cENOTSUP, ""},
		{"EFBIG", fmt.Errorf("write: %w", proto.CheckFileRange(proto.MaxFileSize, 1)), cEFBIG, "largest file size"},
		{"local EFBIG", syscall.EFBIG, cEFBIG, ""},
		{"ChecksumMismatch", proto.Errorf(proto.ChecksumMismatch, "chunk 1"), cECHECKSUM, "fff ffr verify"},
		{"TargetNotServing", proto.ErrTargetNotServing, cEUNAVAILABLE, "fff status"},
		{"ChainVersionMismatch", proto.ErrChainVersionMismatch, cEUNAVAILABLE, ""},
		{"Unavailable", fmt.Errorf("libfff: connect to 1.2.3.4:5: %w", proto.ErrUnavailable), cEUNAVAILABLE, "connect to 1.2.3.4:5"},
		{"Unauthenticated", fmt.Errorf("libfff: connect to h:1: %w", &proto.Error{Code: proto.Unauthenticated, Msg: "bad token"}), cEAUTH, "FFF_TOKEN"},
		{"Timeout", proto.ErrTimeout, cETIMEDOUT, ""},
		{"Canceled", proto.ErrCanceled, cECANCELED, ""},
		{"TooLarge", proto.ErrTooLarge, cEFBIG, ""},
		{"BadRequest", proto.ErrBadRequest, cEINVAL, ""},
		{"Internal", proto.ErrInternal, cEINTERNAL, "report"},
		{"no cluster", libfff.ErrNoCluster, cEUNAVAILABLE, "fff up"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), cETIMEDOUT, ""},
		{"os deadline", os.ErrDeadlineExceeded, cETIMEDOUT, ""},
		{"context canceled", context.Canceled, cECANCELED, ""},
		{"local ENOENT", &fs.PathError{Op: "open", Path: "/tmp/x", Err: syscall.ENOENT}, cENOENT, "/tmp/x"},
		{"local EACCES", &fs.PathError{Op: "open", Path: "/tmp/x", Err: syscall.EACCES}, cEACCES, ""},
		{"local ENOSPC", syscall.ENOSPC, cENOSPC, ""},
		{"local EISDIR", syscall.EISDIR, cEISDIR, ""},
		{"fs.ErrNotExist", fmt.Errorf("ffrfile: %w", fs.ErrNotExist), cENOENT, ""},
		{"fs.ErrExist", fs.ErrExist, cEEXIST, ""},
		{"fs.ErrPermission", fs.ErrPermission, cEACCES, ""},
		{"ffr checksum", ffrErr(ffrecord.ErrChecksum), cECHECKSUM, "a.ffr: sample 3"},
		{"ffr truncated", ffrErr(ffrecord.ErrTruncated), cECORRUPT, "fff ffr verify"},
		{"ffr magic", ffrErr(ffrecord.ErrBadMagic), cECORRUPT, ""},
		{"ffr meta", ffrErr(ffrecord.ErrMetaChecksum), cECORRUPT, ""},
		{"ffr offsets", ffrErr(ffrecord.ErrBadOffsets), cECORRUPT, ""},
		{"ffr corrupt", ffrErr(ffrecord.ErrCorrupt), cECORRUPT, ""},
		{"ffr version", ffrErr(ffrecord.ErrUnsupportedVersion), cECORRUPT, ""},
		{"ffr index", ffrErr(ffrecord.ErrIndexRange), cEINVAL, ""},
		{"ffr short", ffrErr(ffrecord.ErrBufferTooSmall), cESHORTBUF, ""},
		{"ffr writer", ffrErr(ffrecord.ErrWriter), cEINVAL, ""},
		// A sample error wrapping the storage error that revealed it: the
		// damaged file decides.
		{"ffr wraps proto", &ffrecord.Error{File: "b.ffr", Sample: 1, Index: 1, Err: proto.ErrChecksumMismatch}, cECHECKSUM, "b.ffr"},
		{"ffr wraps unavailable", &ffrecord.Error{File: "b.ffr", Sample: 1, Index: 1, Err: proto.ErrUnavailable}, cEUNAVAILABLE, "b.ffr"},
		// A batch: the first failed sample decides and is named.
		{"joined", errors.Join(ffrErr(ffrecord.ErrChecksum), ffrErr(ffrecord.ErrTruncated), proto.ErrIO), cECHECKSUM, "and 2 more failed"},
		{"unknown", errors.New("something odd"), cEINTERNAL, "something odd"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := errCode(c.err); got != c.code {
				t.Fatalf("errCode(%v) = %d, want %d", c.err, got, c.code)
			}
			if c.err == nil {
				return
			}
			if msg := errMessage(c.err, c.code); !strings.Contains(msg, c.msg) || strings.Contains(msg, "\n") {
				t.Fatalf("errMessage(%v) = %q, want one line containing %q", c.err, msg, c.msg)
			}
		})
	}
}

func TestHandles(t *testing.T) {
	n := openHandles()
	parent := register(kindClient, nil, "client")
	h := register(kindFile, parent, "file")
	if _, err := acquire(h.id, kindDataset); errCode(err) != cEBADF || !strings.Contains(err.Error(), "is a file handle, not a dataset handle") {
		t.Fatalf("wrong kind: %v", err)
	}
	got, err := acquire(h.id, kindFile)
	if err != nil || got != h {
		t.Fatalf("acquire: %v", err)
	}
	got.release()
	if !retire(parent) || retire(parent) {
		t.Fatal("retire: want true then false")
	}
	if _, err := acquire(h.id, kindFile); errCode(err) != cEBADF || !strings.Contains(err.Error(), "client handle") {
		t.Fatalf("after closing the parent: %v", err)
	}
	retire(h)
	if _, err := acquire(h.id, kindFile); errCode(err) != cEBADF || !strings.Contains(err.Error(), "not open") {
		t.Fatalf("after close: %v", err)
	}
	if _, err := lookup(0, 0); errCode(err) != cEBADF {
		t.Fatalf("handle 0: %v", err)
	}
	if openHandles() != n {
		t.Fatalf("%d handles left, want %d", openHandles(), n)
	}
}
