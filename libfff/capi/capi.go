package main

/*
#include <stdlib.h>
#include <string.h>
#include "fff.h"

void fffSetErr(const char *msg, size_t n);
*/
import "C"

import (
	"context"
	"errors"

	"io"
	"io/fs"
	"sync"
	"time"
	"unsafe"

	"fff/ffrecord"
	"fff/libfff"
	"fff/libfff/dataset"
)

// main is required by -buildmode=c-shared and never runs.
func main() {}

// Timeouts of the calls that have no natural bound of their own (each
// cluster request also has the client's per-call timeout).
const (
	connectTimeout = 60 * time.Second
	openTimeout    = 5 * time.Minute // a dataset open reads every shard's index
)

// setErr stores msg as the calling thread's error message. It must be
// called from the exported function itself (on the C caller's thread),
// never from another goroutine.
func setErr(msg string) {
	cs := C.CString(msg)
	C.fffSetErr(cs, C.size_t(len(msg)))
	C.free(unsafe.Pointer(cs))
}

// fail records err for the calling thread and returns its code.
func fail(err error) C.int {
	code := errCode(err)
	setErr(errMessage(err, code))
	return C.int(code)
}

func ret(err error) C.int {
	if err == nil {
		return 0
	}
	return fail(err)
}

func ret64(n int64, err error) C.int64_t {
	if err != nil {
		return -C.int64_t(fail(err))
	}
	return C.int64_t(n)
}

// guard turns a panic into FFF_EINTERNAL instead of killing the caller's
// process. Use as: defer guard(&rc).
func guard(rc *C.int) {
	if r := recover(); r != nil {
		*rc = fail(errf(cEINTERNAL, "libfff: internal error (please report it): %v", r))
	}
}

func guard64(rc *C.int64_t) {
	if r := recover(); r != nil {
		*rc = -C.int64_t(fail(errf(cEINTERNAL, "libfff: internal error (please report it): %v", r)))
	}
}

// bytesOf is the caller's C buffer as a slice (never retained past the
// call, except by a ticket, which the caller keeps the buffer alive for).
func bytesOf(what string, p unsafe.Pointer, n C.int64_t) ([]byte, error) {
	switch {
	case n < 0:
		return nil, errf(cEINVAL, "%s: negative length %d", what, int64(n))
	case n == 0:
		return nil, nil
	case p == nil:
		return nil, errf(cEINVAL, "%s: NULL buffer of length %d", what, int64(n))
	}
	return unsafe.Slice((*byte)(p), int(n)), nil
}

func int64sOf(what string, p *C.int64_t, n C.int64_t) ([]int64, error) {
	switch {
	case n < 0:
		return nil, errf(cEINVAL, "%s: negative count %d", what, int64(n))
	case n == 0:
		return nil, nil
	case p == nil:
		return nil, errf(cEINVAL, "%s: NULL array of %d entries", what, int64(n))
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(p)), int(n)), nil
}

func outArg(what string, p *C.int64_t) error {
	if p == nil {
		return errf(cEINVAL, "%s: NULL output pointer", what)
	}
	return nil
}

// ---- handles of any kind

//export goFffClose
func goFffClose(id C.int64_t) (rc C.int) {
	defer guard(&rc)
	h, err := lookup(int64(id), 0)
	if err != nil {
		return fail(err)
	}
	if h.kind == kindTicket {
		return cancelTicket(h)
	}
	if !retire(h) {
		return fail(errf(cEBADF, "%s handle %d is already closed", h.kind, h.id))
	}
	switch o := h.obj.(type) {
	case *libfff.Client:
		return ret(o.Close())
	case *libfff.File:
		return ret(o.Close())
	case *datasetObj:
		return ret(o.ds.Close())
	case *writerObj:
		o.mu.Lock()
		defer o.mu.Unlock()
		return ret(o.w.Abort())
	}
	return 0
}

// ---- clients

//export goFffConnect
func goFffConnect(address, token *C.char, out *C.int64_t) (rc C.int) {
	defer guard(&rc)
	if err := outArg("fff_connect", out); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	syncTLSEnv()
	c, err := libfff.Connect(ctx, libfff.Options{Address: C.GoString(address), Token: C.GoString(token)})
	if err != nil {
		return fail(err)
	}
	*out = C.int64_t(register(kindClient, nil, c).id)
	return 0
}

// client holds client handle id for a call.
func client(id C.int64_t) (*handle, *libfff.Client, error) {
	h, err := acquire(int64(id), kindClient)
	if err != nil {
		return nil, nil, err
	}
	return h, h.obj.(*libfff.Client), nil
}

//export goFffClientStats
func goFffClientStats(cid C.int64_t, st *C.fff_stats_t) (rc C.int) {
	defer guard(&rc)
	if st == nil {
		return fail(errf(cEINVAL, "fff_client_stats: NULL fff_stats_t"))
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	s := c.Stats()
	*st = C.fff_stats_t{
		reads: C.int64_t(s.Reads), read_bytes: C.int64_t(s.ReadBytes), read_errors: C.int64_t(s.ReadErrors),
		read_calls: C.int64_t(s.ReadCalls), local_bytes: C.int64_t(s.LocalBytes), local_fallbacks: C.int64_t(s.LocalFallbacks),
		retries: C.int64_t(s.Retries), writes: C.int64_t(s.Writes), write_bytes: C.int64_t(s.WriteBytes),
		read_latency_count: C.int64_t(s.ReadLatency.Count), read_latency_sum_ns: C.int64_t(s.ReadLatency.Sum),
		read_latency_p50_ns: C.int64_t(s.ReadLatency.P50), read_latency_p99_ns: C.int64_t(s.ReadLatency.P99),
		read_latency_max_ns: C.int64_t(s.ReadLatency.Max),
	}
	return 0
}

// ---- namespace

//export goFffStat
func goFffStat(cid C.int64_t, cpath *C.char, st *C.fff_stat_t) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_stat", p); err != nil {
		return fail(err)
	}
	if st == nil {
		return fail(errf(cEINVAL, "fff_stat: NULL fff_stat_t"))
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	fi, err := c.Stat(h.ctx, p)
	if err != nil {
		return fail(err)
	}
	n := &fi.Inode
	*st = C.fff_stat_t{}
	st.ino = C.uint64_t(n.Ino)
	st.size = C.int64_t(n.Size)
	st.mode = C.uint32_t(n.StMode())
	st.uid = C.uint32_t(n.UID)
	st.gid = C.uint32_t(n.GID)
	st.nlink = C.uint32_t(n.Nlink)
	st.mtime_ns = C.int64_t(n.Mtime)
	st.ctime_ns = C.int64_t(n.Ctime)
	st.atime_ns = C.int64_t(n.Atime)
	if n.Layout != nil && !fi.IsDir() {
		st.chunk_size = C.uint32_t(n.Layout.ChunkSize)
		st.stripe = C.uint32_t(n.Layout.Stripe)
	}
	return 0
}

//export goFffListdir
func goFffListdir(cid C.int64_t, cpath *C.char, names **C.char, count *C.int64_t) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_listdir", p); err != nil {
		return fail(err)
	}
	if names == nil || count == nil {
		return fail(errf(cEINVAL, "fff_listdir: NULL names or count"))
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	ents, err := c.ReadDir(h.ctx, p)
	if err != nil {
		return fail(err)
	}
	total := 1 // never malloc(0): *names is always a pointer to free
	for _, e := range ents {
		total += len(e.Name()) + 1
	}
	m := C.malloc(C.size_t(total))
	if m == nil {
		return fail(errf(cEINTERNAL, "fff_listdir: out of memory (%d bytes)", total))
	}
	buf := unsafe.Slice((*byte)(m), total)
	at := 0
	for _, e := range ents {
		at += copy(buf[at:], e.Name())
		buf[at] = 0
		at++
	}
	buf[at] = 0
	*names = (*C.char)(m)
	*count = C.int64_t(len(ents))
	return 0
}

//export goFffMkdir
func goFffMkdir(cid C.int64_t, cpath *C.char, mode C.uint32_t, parents C.int) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_mkdir", p); err != nil {
		return fail(err)
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	perm := fs.FileMode(mode & 0o7777)
	if parents != 0 {
		return ret(c.MkdirAll(h.ctx, p, perm))
	}
	return ret(c.Mkdir(h.ctx, p, perm))
}

//export goFffRemove
func goFffRemove(cid C.int64_t, cpath *C.char, recursive C.int) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_remove", p); err != nil {
		return fail(err)
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	if recursive == 0 {
		return ret(c.Remove(h.ctx, p))
	}
	// RemoveAll succeeds on a missing path (like os.RemoveAll); the C API
	// reports it, as rm -r does.
	if _, err := c.Lstat(h.ctx, p); err != nil {
		return fail(err)
	}
	return ret(c.RemoveAll(h.ctx, p))
}

//export goFffRename
func goFffRename(cid C.int64_t, cfrom, cto *C.char) (rc C.int) {
	defer guard(&rc)
	from, to := C.GoString(cfrom), C.GoString(cto)
	if err := pathArg("fff_rename", from); err != nil {
		return fail(err)
	}
	if err := pathArg("fff_rename", to); err != nil {
		return fail(err)
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	return ret(c.Rename(h.ctx, from, to))
}

// ---- files

//export goFffOpen
func goFffOpen(cid C.int64_t, cpath *C.char, flags C.int, mode C.uint32_t, out *C.int64_t) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_open", p); err != nil {
		return fail(err)
	}
	if err := outArg("fff_open", out); err != nil {
		return fail(err)
	}
	h, c, err := client(cid)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	// Linux open(2) flags are Go's os.O_* values.
	f, err := c.Open(h.ctx, p, int(flags), fs.FileMode(mode&0o7777))
	if err != nil {
		return fail(err)
	}
	*out = C.int64_t(register(kindFile, h, f).id)
	return 0
}

func file(id C.int64_t) (*handle, *libfff.File, error) {
	h, err := acquire(int64(id), kindFile)
	if err != nil {
		return nil, nil, err
	}
	return h, h.obj.(*libfff.File), nil
}

// goFffRead is fff_read (off < 0) and fff_pread.
//
//export goFffRead
func goFffRead(id C.int64_t, buf unsafe.Pointer, n C.int64_t, off C.int64_t) C.int64_t {
	return fileIO("fff_read", id, buf, n, func(f *libfff.File, p []byte) (int, error) {
		var got int
		var err error
		if off < 0 {
			got, err = f.Read(p)
		} else {
			got, err = f.ReadAt(p, int64(off))
		}
		if errors.Is(err, io.EOF) {
			err = nil
		}
		return got, err
	})
}

// goFffWrite is fff_write (off < 0) and fff_pwrite.
//
//export goFffWrite
func goFffWrite(id C.int64_t, buf unsafe.Pointer, n C.int64_t, off C.int64_t) C.int64_t {
	return fileIO("fff_write", id, buf, n, func(f *libfff.File, p []byte) (int, error) {
		if off < 0 {
			return f.Write(p)
		}
		return f.WriteAt(p, int64(off))
	})
}

// fileIO runs do on file id with the caller's n bytes at buf (nothing for
// n == 0) and returns its count or negated error code.
func fileIO(op string, id C.int64_t, buf unsafe.Pointer, n C.int64_t, do func(*libfff.File, []byte) (int, error)) (rc C.int64_t) {
	defer guard64(&rc)
	p, err := bytesOf(op, buf, n)
	if err != nil {
		return ret64(0, err)
	}
	h, f, err := file(id)
	if err != nil {
		return ret64(0, err)
	}
	defer h.release()
	if len(p) == 0 {
		return 0
	}
	got, err := do(f, p)
	return ret64(int64(got), err)
}

//export goFffSeek
func goFffSeek(id C.int64_t, off C.int64_t, whence C.int) (rc C.int64_t) {
	defer guard64(&rc)
	h, f, err := file(id)
	if err != nil {
		return ret64(0, err)
	}
	defer h.release()
	return ret64(f.Seek(int64(off), int(whence)))
}

//export goFffSize
func goFffSize(id C.int64_t) (rc C.int64_t) {
	defer guard64(&rc)
	h, f, err := file(id)
	if err != nil {
		return ret64(0, err)
	}
	defer h.release()
	return C.int64_t(f.Size())
}

//export goFffTruncate
func goFffTruncate(id C.int64_t, size C.int64_t) (rc C.int) {
	defer guard(&rc)
	if size < 0 {
		return fail(errf(cEINVAL, "fff_truncate: negative size %d", int64(size)))
	}
	h, f, err := file(id)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	return ret(f.Truncate(int64(size)))
}

//export goFffSync
func goFffSync(id C.int64_t) (rc C.int) {
	defer guard(&rc)
	h, f, err := file(id)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	return ret(f.Sync())
}

// ---- datasets

// datasetObj is an open dataset. sem bounds the asynchronous batches it
// reads at once; more wait (cancelably) for a slot.
type datasetObj struct {
	ds  *dataset.Dataset
	sem chan struct{}
}

// maxBatches bounds a dataset's concurrent asynchronous batches; the rest
// queue. The caller's prefetch depth decides how much is in flight: the
// data-path benchmark (docs/performance.md) shows the disk needs hundreds of
// samples in flight, i.e. several batches of a loader's size, so the bound
// only stops a runaway submitter, it does not pace a normal one.
const maxBatches = 64

// openVia resolves what a call named fn that opens dataset path p (local,
// or fff://) goes through: for a cluster path with a client handle cid,
// that client, its handle (held: release it) and its context; otherwise no
// client and the background context (dataset.Open and dataset.Create
// connect to fff://HOST:PORT themselves, and local paths need none).
func openVia(fn string, cid C.int64_t, p string) (parent *handle, c *libfff.Client, ctx context.Context, err error) {
	ref, err := libfff.ParsePath(p)
	if err != nil {
		return nil, nil, nil, errf(cEINVAL, "%s: %v", fn, err)
	}
	if !ref.Remote || cid == 0 {
		return nil, nil, context.Background(), nil
	}
	if parent, c, err = client(cid); err != nil {
		return nil, nil, nil, err
	}
	return parent, c, parent.ctx, nil
}

//export goFffDatasetOpen
func goFffDatasetOpen(cid C.int64_t, cpath *C.char, check C.int, out *C.int64_t) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_dataset_open", p); err != nil {
		return fail(err)
	}
	if err := outArg("fff_dataset_open", out); err != nil {
		return fail(err)
	}
	parent, c, parentCtx, err := openVia("fff_dataset_open", cid, p)
	if err != nil {
		return fail(err)
	}
	if parent != nil {
		defer parent.release()
	}
	ctx, cancel := context.WithTimeout(parentCtx, openTimeout)
	defer cancel()
	ds, err := dataset.Open(ctx, c, p, dataset.Options{Verify: check != 0})
	if err != nil {
		return fail(err)
	}
	o := &datasetObj{ds: ds, sem: make(chan struct{}, maxBatches)}
	*out = C.int64_t(register(kindDataset, parent, o).id)
	return 0
}

func datasetOf(id C.int64_t) (*handle, *ffrecord.Reader, error) {
	h, err := acquire(int64(id), kindDataset)
	if err != nil {
		return nil, nil, err
	}
	return h, h.obj.(*datasetObj).ds.Reader(), nil
}

//export goFffDatasetLen
func goFffDatasetLen(id C.int64_t) (rc C.int64_t) {
	defer guard64(&rc)
	h, r, err := datasetOf(id)
	if err != nil {
		return ret64(0, err)
	}
	defer h.release()
	return C.int64_t(r.Len())
}

//export goFffDatasetSizes
func goFffDatasetSizes(id C.int64_t, cidx *C.int64_t, n C.int64_t, cout *C.int64_t) (rc C.int) {
	defer guard(&rc)
	idx, err := int64sOf("fff_dataset_sizes: idx", cidx, n)
	if err != nil {
		return fail(err)
	}
	out, err := int64sOf("fff_dataset_sizes: out", cout, n)
	if err != nil {
		return fail(err)
	}
	h, r, err := datasetOf(id)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	for k, i := range idx {
		s, err := r.Size(i)
		if err != nil {
			return fail(err)
		}
		out[k] = s
	}
	return 0
}

// ticket is an asynchronous batch read.
type ticket struct {
	done   chan struct{} // closed when the read no longer touches the buffers
	err    error         // the batch's result, set before done is closed
	cancel context.CancelFunc
}

// goFffDatasetRead is fff_dataset_read (tout == nil) and
// fff_dataset_submit.
//
//export goFffDatasetRead
func goFffDatasetRead(id C.int64_t, cidx *C.int64_t, n C.int64_t, cbuf unsafe.Pointer, buflen C.int64_t, coffsets *C.int64_t, tout *C.int64_t) (rc C.int) {
	defer guard(&rc)
	fn := "fff_dataset_read"
	if tout != nil {
		fn = "fff_dataset_submit"
	}
	cidxs, err := int64sOf(fn+": idx", cidx, n)
	if err != nil {
		return fail(err)
	}
	if coffsets == nil {
		return fail(errf(cEINVAL, "%s: NULL offsets (it needs n+1 entries)", fn))
	}
	offsets := unsafe.Slice((*int64)(unsafe.Pointer(coffsets)), int(n)+1)
	buf, err := bytesOf(fn+": buf", cbuf, buflen)
	if err != nil {
		return fail(err)
	}
	h, r, err := datasetOf(id)
	if err != nil {
		return fail(err)
	}
	held := true
	defer func() {
		if held {
			h.release()
		}
	}()
	offsets[0] = 0
	for k, i := range cidxs {
		s, err := r.Size(i)
		if err != nil {
			return fail(err)
		}
		offsets[k+1] = offsets[k] + s
	}
	if need := offsets[len(cidxs)]; need > int64(len(buf)) {
		return fail(errf(cESHORTBUF, "%s: the %d samples take %d bytes, the buffer holds %d (offsets[n] is the size needed)", fn, len(cidxs), need, len(buf)))
	}
	dsts := make([][]byte, len(cidxs))
	for k := range dsts {
		dsts[k] = buf[offsets[k]:offsets[k+1]:offsets[k+1]]
	}
	if tout == nil {
		return ret(r.ReadBatch(h.ctx, cidxs, dsts))
	}

	// Asynchronous: the goroutine holds the dataset handle (so closing the
	// dataset waits for it, after canceling it) and writes only into the
	// caller's C buffer. The indices are copied: only buf and offsets must
	// outlive the call.
	idx := append([]int64(nil), cidxs...)
	o := h.obj.(*datasetObj)
	ctx, cancel := context.WithCancel(h.ctx)
	t := &ticket{done: make(chan struct{}), cancel: cancel}
	th := register(kindTicket, nil, t)
	held = false
	go func() {
		defer close(t.done)
		defer h.release()
		defer cancel()
		defer func() {
			if r := recover(); r != nil {
				t.err = errf(cEINTERNAL, "libfff: internal error in ticket %d (please report it): %v", th.id, r)
			}
		}()
		select {
		case o.sem <- struct{}{}:
			defer func() { <-o.sem }()
			t.err = r.ReadBatch(ctx, idx, dsts)
		case <-ctx.Done():
			t.err = ctx.Err()
		}
		if t.err != nil && ctx.Err() != nil {
			switch {
			case h.ctx.Err() != nil:
				t.err = errf(cECANCELED, "ticket %d: dataset handle %d was closed while the read was in flight", th.id, h.id)
			default:
				t.err = errf(cECANCELED, "ticket %d was canceled", th.id)
			}
		}
	}()
	*tout = C.int64_t(th.id)
	return 0
}

//export goFffTicketWait
func goFffTicketWait(id C.int64_t, timeoutMS C.int64_t) (rc C.int) {
	defer guard(&rc)
	h, err := lookup(int64(id), kindTicket)
	if err != nil {
		return fail(err)
	}
	t := h.obj.(*ticket)
	switch {
	case timeoutMS < 0:
		<-t.done
	case timeoutMS == 0:
		select {
		case <-t.done:
		default:
			return fail(errf(cEAGAIN, "ticket %d has not finished yet", h.id))
		}
	default:
		timer := time.NewTimer(time.Duration(timeoutMS) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-t.done:
		case <-timer.C:
			return fail(errf(cEAGAIN, "ticket %d has not finished within %d ms", h.id, int64(timeoutMS)))
		}
	}
	if !unregister(h) {
		return fail(errf(cEBADF, "ticket handle %d was released by another thread's wait or cancel", h.id))
	}
	return ret(t.err)
}

//export goFffTicketCancel
func goFffTicketCancel(id C.int64_t) (rc C.int) {
	defer guard(&rc)
	h, err := lookup(int64(id), kindTicket)
	if err != nil {
		return fail(err)
	}
	return cancelTicket(h)
}

// cancelTicket cancels h's read, waits until it no longer touches the
// caller's buffers and releases h.
func cancelTicket(h *handle) C.int {
	t := h.obj.(*ticket)
	t.cancel()
	<-t.done
	unregister(h) // a concurrent wait may have taken it: the buffers are free either way
	return 0
}

// ---- writers

type writerObj struct {
	mu sync.Mutex
	w  *dataset.Writer
}

//export goFffWriterOpen
func goFffWriterOpen(cid C.int64_t, cpath *C.char, version C.int, out *C.int64_t) (rc C.int) {
	defer guard(&rc)
	p := C.GoString(cpath)
	if err := pathArg("fff_writer_open", p); err != nil {
		return fail(err)
	}
	if err := outArg("fff_writer_open", out); err != nil {
		return fail(err)
	}
	if version != 1 && version != 2 {
		return fail(errf(cEINVAL, "fff_writer_open: version %d: FFRecord versions are 1 (HFAiLab-compatible) and 2", int(version)))
	}
	parent, c, parentCtx, err := openVia("fff_writer_open", cid, p)
	if err != nil {
		return fail(err)
	}
	if parent != nil {
		defer parent.release()
	}
	ctx, cancel := context.WithTimeout(parentCtx, connectTimeout)
	defer cancel()
	w, err := dataset.Create(ctx, c, p, dataset.WriterOptions{Format: ffrecord.Version(version)})
	if err != nil {
		return fail(err)
	}
	*out = C.int64_t(register(kindWriter, parent, &writerObj{w: w}).id)
	return 0
}

//export goFffWriterWrite
func goFffWriterWrite(id C.int64_t, ckey *C.char, keyed C.int, sample unsafe.Pointer, n C.int64_t) (rc C.int) {
	defer guard(&rc)
	fn := "fff_writer_write"
	if keyed != 0 {
		fn = "fff_writer_write_keyed"
	}
	p, err := bytesOf(fn, sample, n)
	if err != nil {
		return fail(err)
	}
	h, err := acquire(int64(id), kindWriter)
	if err != nil {
		return fail(err)
	}
	defer h.release()
	o := h.obj.(*writerObj)
	o.mu.Lock()
	defer o.mu.Unlock()
	if keyed != 0 && o.w.Format() != ffrecord.V2 {
		return fail(errf(cEINVAL, "%s: writer handle %d writes a version 1 file, which has no keys: open the writer with version 2, or use fff_writer_write", fn, h.id))
	}
	return ret(o.w.WriteKeyed(C.GoString(ckey), p))
}

//export goFffWriterCommit
func goFffWriterCommit(id C.int64_t) (rc C.int) {
	defer guard(&rc)
	h, err := acquire(int64(id), kindWriter)
	if err != nil {
		return fail(err)
	}
	h.release()
	if !retire(h) {
		return fail(errf(cEBADF, "writer handle %d is already closed", h.id))
	}
	o := h.obj.(*writerObj)
	o.mu.Lock()
	defer o.mu.Unlock()
	return ret(o.w.Commit(context.Background()))
}

// headerCodes returns fff.h's codes by name (TestHeaderCodes).
func headerCodes() map[string]int {
	return map[string]int{
		"OK": C.FFF_OK, "EPERM": C.FFF_EPERM, "ENOENT": C.FFF_ENOENT, "EIO": C.FFF_EIO,
		"EBADF": C.FFF_EBADF, "EAGAIN": C.FFF_EAGAIN, "EACCES": C.FFF_EACCES, "EEXIST": C.FFF_EEXIST,
		"EXDEV": C.FFF_EXDEV, "ENOTDIR": C.FFF_ENOTDIR, "EISDIR": C.FFF_EISDIR, "EINVAL": C.FFF_EINVAL,
		"EFBIG": C.FFF_EFBIG, "ENOSPC": C.FFF_ENOSPC, "EROFS": C.FFF_EROFS, "ENAMETOOLONG": C.FFF_ENAMETOOLONG,
		"ENOTEMPTY": C.FFF_ENOTEMPTY, "ELOOP": C.FFF_ELOOP, "ENOTSUP": C.FFF_ENOTSUP,
		"ETIMEDOUT": C.FFF_ETIMEDOUT, "ECANCELED": C.FFF_ECANCELED, "ECHECKSUM": C.FFF_ECHECKSUM,
		"ECORRUPT": C.FFF_ECORRUPT, "EUNAVAILABLE": C.FFF_EUNAVAILABLE, "EAUTH": C.FFF_EAUTH,
		"ESHORTBUF": C.FFF_ESHORTBUF, "EFORKED": C.FFF_EFORKED, "EINTERNAL": C.FFF_EINTERNAL,
	}
}
