// Command capi is libfff.so, the C API of libfff: the functions declared in
// fff.h (this directory), built as a cgo c-shared library:
//
//	go build -buildmode=c-shared -o build/libfff.so ./libfff/capi   # make lib
//
// C programs include fff.h and link with -lfff (or dlopen the library, as
// the Python package does); the header cgo generates (build/libfff.h) is
// not needed. docs/capi.md is the user's guide.
//
// # Layout
//
// capi.c holds the functions of fff.h. Each checks that the process has
// not forked since the library was loaded (a pthread_atfork child handler
// sets a flag: a forked child has no Go runtime threads, so entering Go
// there would hang; it gets FFF_EFORKED and a message instead) and calls
// its Go implementation, an exported goFff* function of capi.go, whose
// prototype cgo generates (char * for const char *, which is why C users
// do not see these directly). capi.c also keeps the per-thread error
// message, a static __thread buffer set through fffSetErr: an exported Go
// function runs on the calling C thread, so setting it from the goFff*
// function itself (never from another goroutine) sets the caller's.
//
// # Handles
//
// Objects are opaque int64 handles in one table (handles.go), the one
// piece of process-global state: cgo forbids C from keeping Go pointers,
// so whatever C refers to across calls must live on the Go side, found by
// number. Handles count up from 1 and are never reused. A call holds its
// handle shared for its duration; closing takes the handle out of the
// table, cancels its context (ending calls and asynchronous reads under
// way) and waits for the calls holding it before releasing the object.
// Files, datasets and writers opened through a client handle fail with
// FFF_EBADF once the client is closed.
//
// # Memory
//
// No Go pointer is handed to C: strings and arrays returned are malloc'd
// (fff_listdir), and caller buffers are C memory seen through unsafe.Slice
// for the call. An asynchronous read (fff_dataset_submit) keeps writing
// into the caller's buffer after the call returns, which cgo allows since
// it is C memory; the caller keeps it alive until fff_ticket_wait reports
// the ticket finished or fff_ticket_cancel returns (both wait for the
// reading goroutine to stop touching it).
//
// # Errors
//
// errCode maps every error of fff's Go packages to an fff.h code (proto
// codes, io/fs and errno errors of local files, ffrecord's sentinels,
// context deadlines), and errMessage makes the message, with what to do for
// fff's own codes.
package main
