package fusefs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/pawelgaczynski/giouring"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// The ring transport: FUSE over io_uring (Linux 6.14+).
//
// With /dev/fuse every request costs the server a read(2) and a writev(2),
// and the kernel a wake-up of a reader thread: ~25 µs of server CPU per
// request here. With the rings the server hands the kernel, per CPU, a
// queue of entries (a header buffer and a payload buffer each) through
// IORING_OP_URING_CMD on the /dev/fuse descriptor; the kernel writes a
// request into an entry of the queue of the CPU the caller runs on and
// completes the entry's command, and the server's reply goes back in the
// same entry with the command that also asks for the next request
// (COMMIT_AND_FETCH). FORGET, INTERRUPT and the INIT handshake stay on
// /dev/fuse.
//
// Requests are answered by go-fuse's ProtocolServer over the same FS as
// the /dev/fuse transport: one file system implementation for both.
//
// Threads. The kernel fills an entry in the context of the task that
// submitted its command (io_uring task work), then completes it. Each
// queue has one goroutine that submits and waits on its ring, not locked
// to a thread: the goroutine that waits in io_uring_enter is the one that
// submitted the commit of the entry the kernel reuses first (the most
// recently committed), so the copy-in runs in the waiting thread; task
// work for another thread interrupts it (not COOP_TASKRUN). Locking the
// goroutine to a thread (for SINGLE_ISSUER and DEFER_TASKRUN) measured
// slower: a locked goroutine that waits for the network costs a thread
// wake-up to resume.
//
// Each request runs on its own goroutine (operations wait on the
// network; see dispatch), and a finished one is put on the queue's done
// list; the ring goroutine commits every entry
// on the list with one io_uring_enter, and a worker writes the queue's
// eventfd (a read of which the ring always has in flight) only when the
// ring goroutine is waiting, so a burst of completions costs one wake-up.
//
// Buffers. Each entry's header and payload are mmap'd, outside the Go
// heap. A READ's reply is written by the file system straight into the
// entry's payload (the ProtocolServer hands Read that buffer), a WRITE's
// data is read from it: no buffer between the kernel and libfff.

const (
	uringCmdRegister       = 1 // FUSE_IO_URING_CMD_REGISTER
	uringCmdCommitAndFetch = 2 // FUSE_IO_URING_CMD_COMMIT_AND_FETCH

	// struct fuse_uring_req_header: in_out (fuse_in_header in, or
	// fuse_out_header out), op_in (the request's first argument),
	// ring_ent_in_out (flags, commit_id, payload_sz).
	hdrOpIn     = 128
	hdrEntInOut = 256
	hdrSize     = 288
	hdrIovec    = 512 // where the entry's two iovecs live, in the same page
	entPage     = 4096

	inHeaderSize  = 40
	outHeaderSize = 16

	sqeCmdOffset = 48 // the 80-byte command area of a 128-byte SQE

	// ringDepth is the number of entries per queue: requests in flight
	// from the callers on one CPU (more wait in the kernel's queue).
	ringDepth = 64

	efdUserData = 1 << 32 // user_data of the eventfd read; entries use their index

	fuseOpInit        = 26
	fuseOpForget      = 2
	fuseOpBatchForget = 42
	fuseOpInterrupt   = 36
)

var le = binary.LittleEndian

// ringServer serves one mount over /dev/fuse and the rings.
type ringServer struct {
	fd         int // /dev/fuse
	mountpoint string
	ps         *fuse.ProtocolServer
	log        zerolog.Logger
	maxIO      int

	queues []*ringQueue
	wg     sync.WaitGroup // the /dev/fuse reader and the ring goroutines

	outBufs sync.Pool // *[]byte replies of requests that came on /dev/fuse
}

// mountRing mounts fs on mountpoint (root only: the kernel is asked
// directly), answers INIT and sets up one ring per possible CPU. A kernel
// that refuses the rings after all (io_uring disabled, registration
// failed) leaves the mount working over /dev/fuse, which is logged.
func mountRing(fs *FS, mountpoint string, mo *fuse.MountOptions) (*ringServer, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return nil, &os.PathError{Op: "stat", Path: mountpoint, Err: err}
	}
	fd, err := syscall.Open("/dev/fuse", os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/dev/fuse", Err: err}
	}
	data := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&syscall.S_IFMT),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", mo.MaxWrite),
	}
	data = append(data, mo.Options...)
	if mo.AllowOther {
		data = append(data, "allow_other")
	}
	if err := syscall.Mount(mo.FsName, mountpoint, "fuse."+mo.Name, syscall.MS_NOSUID|syscall.MS_NODEV, strings.Join(data, ",")); err != nil {
		syscall.Close(fd)
		return nil, &os.PathError{Op: "mount", Path: mountpoint, Err: err}
	}
	opts := *mo
	opts.ExtraCapabilities |= fuse.CAP_OVER_IO_URING
	s := &ringServer{fd: fd, mountpoint: mountpoint, ps: fuse.NewProtocolServer(fs, &opts), log: fs.log, maxIO: mo.MaxWrite}
	s.outBufs.New = func() any { b := make([]byte, outHeaderSize+s.maxIO+entPage); return &b }
	fail := func(err error) (*ringServer, error) {
		syscall.Unmount(mountpoint, syscall.MNT_DETACH)
		syscall.Close(fd)
		return nil, err
	}
	rings, err := s.init()
	if err != nil {
		return fail(fmt.Errorf("mount %s: INIT: %w", mountpoint, err))
	}
	if !rings {
		s.log.Warn().Msg("FUSE over io_uring: the kernel did not offer it at INIT; serving through /dev/fuse")
	} else if err := s.startQueues(); err != nil {
		// The kernel turned the rings off (fc->io_uring = 0) and sends
		// everything on /dev/fuse.
		s.log.Warn().Err(err).Msg("FUSE over io_uring: registering the rings failed; serving through /dev/fuse")
	} else {
		s.log.Info().Int("queues", len(s.queues)).Int("depth", ringDepth).Msg("FUSE over io_uring: serving through the rings")
	}
	s.wg.Add(1)
	go s.devLoop()
	return s, nil
}

// init answers the kernel's INIT, asking for the rings; it reports whether
// they were agreed on.
func (s *ringServer) init() (bool, error) {
	// The kernel refuses reads into less than its largest request.
	buf := make([]byte, inHeaderSize+entPage+s.maxIO)
	for {
		n, err := syscall.Read(s.fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return false, err
		}
		if n < inHeaderSize || le.Uint32(buf[4:]) != fuseOpInit {
			return false, fmt.Errorf("first request is not INIT (%d bytes)", n)
		}
		out := make([]byte, entPage)
		m, st := s.ps.HandleRequest([][]byte{buf[:n]}, [][]byte{out})
		if !st.Ok() || m < outHeaderSize {
			return false, fmt.Errorf("INIT: %v", st)
		}
		if _, err := syscall.Write(s.fd, out[:m]); err != nil {
			return false, err
		}
		if int32(le.Uint32(out[4:])) != 0 {
			return false, fmt.Errorf("INIT refused: errno %d", -int32(le.Uint32(out[4:])))
		}
		// fuse_init_out.flags2 (offset 32 after the out header) holds
		// FUSE_OVER_IO_URING, bit 41 of the flags.
		return m >= outHeaderSize+36 && le.Uint32(out[outHeaderSize+32:])&(1<<(41-32)) != 0, nil
	}
}

// possibleCPUs is the kernel's number of ring queues: one per possible CPU
// (not only the online ones); the rings are used once every queue has an
// entry.
func possibleCPUs() int {
	b, err := os.ReadFile("/sys/devices/system/cpu/possible")
	if err != nil {
		return runtime.NumCPU()
	}
	n := 0
	for _, r := range strings.Split(strings.TrimSpace(string(b)), ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err1 := strconv.Atoi(lo)
		z := a
		var err2 error
		if isRange {
			z, err2 = strconv.Atoi(hi)
		}
		if err1 != nil || err2 != nil || z < a {
			return runtime.NumCPU()
		}
		n += z - a + 1
	}
	return max(n, 1)
}

// startQueues starts one ring goroutine per possible CPU and waits until each
// has registered its entries.
func (s *ringServer) startQueues() error {
	n := possibleCPUs()
	errs := make(chan error, n)
	for qid := range n {
		q := &ringQueue{s: s, qid: uint16(qid)}
		s.queues = append(s.queues, q)
		s.wg.Add(1)
		go q.run(errs)
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// devLoop serves /dev/fuse until the mount is gone: FORGET and INTERRUPT
// (which never come through the rings), and every request when the rings
// are not in use.
func (s *ringServer) devLoop() {
	defer s.wg.Done()
	buf := make([]byte, inHeaderSize+entPage+s.maxIO)
	for {
		n, err := syscall.Read(s.fd, buf)
		switch err {
		case nil:
		case syscall.EINTR, syscall.EAGAIN, syscall.ENOENT: // ENOENT: interrupted before it was read
			continue
		default: // ENODEV: unmounted
			return
		}
		if n < inHeaderSize {
			continue
		}
		switch le.Uint32(buf[4:]) {
		case fuseOpForget, fuseOpBatchForget, fuseOpInterrupt:
			s.devServe(buf[:n])
		default:
			req := append([]byte(nil), buf[:n]...)
			go s.devServe(req)
		}
	}
}

// devServe answers one request that came on /dev/fuse.
func (s *ringServer) devServe(req []byte) {
	bp := s.outBufs.Get().(*[]byte)
	defer s.outBufs.Put(bp)
	n, st := s.ps.HandleRequest([][]byte{req}, [][]byte{*bp})
	if !st.Ok() {
		n = errorReply(*bp, req, st)
	}
	if n == 0 {
		return // no reply (FORGET, an INTERRUPT that found its request)
	}
	for {
		_, err := syscall.Write(s.fd, (*bp)[:n])
		if err != syscall.EINTR {
			return // ENOENT: the request was interrupted meanwhile
		}
	}
}

// errorReply writes into out a reply to request in failing with st.
func errorReply(out, in []byte, st fuse.Status) int {
	le.PutUint32(out[0:], outHeaderSize)
	le.PutUint32(out[4:], uint32(-int32(st)))
	copy(out[8:16], in[8:16]) // unique
	return outHeaderSize
}

// unmount detaches the mount; the loops end when the kernel has let go of
// the connection.
func (s *ringServer) unmount() error {
	var err error
	for range 5 {
		if err = syscall.Unmount(s.mountpoint, 0); err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return &os.PathError{Op: "umount", Path: s.mountpoint, Err: err}
	}
	s.wait()
	return nil
}

// wait waits until the mount is gone and its loops have ended, then
// closes /dev/fuse (once: Unmount and Wait both come here).
func (s *ringServer) wait() {
	s.wg.Wait()
	if fd := s.fd; fd >= 0 {
		s.fd = -1
		syscall.Close(fd)
	}
}

// ringQueue is the ring of one CPU's queue.
type ringQueue struct {
	s    *ringServer
	qid  uint16
	ring *giouring.Ring
	mem  []byte // the entries' header pages, then their payloads
	ents []ringEntry
	efd  int
	efdv []byte // the eventfd read's buffer, in mem

	spare []*ringEntry // the ring goroutine's: the done list it committed last

	mu       sync.Mutex
	done     []*ringEntry // answered, to be committed
	sleeping bool         // the ring goroutine waits for completions: wake it
}

// ringEntry is one request slot of a queue.
type ringEntry struct {
	q       *ringQueue
	idx     int
	hdr     []byte // fuse_uring_req_header (and the iovecs, at hdrIovec)
	payload []byte
}

// run is the queue's ring goroutine: it registers the entries, reports the
// outcome on ready, then moves entries until the kernel has ended them
// all (the mount is gone).
func (q *ringQueue) run(ready chan<- error) {
	defer q.s.wg.Done()
	if err := q.setup(); err != nil {
		q.release()
		ready <- err
		return
	}
	live := len(q.ents)
	for i := range q.ents {
		q.prep(&q.ents[i], uringCmdRegister, 0)
	}
	q.prepEventfd()
	if _, err := q.ring.SubmitAndGetEvents(); err != nil {
		q.release()
		ready <- fmt.Errorf("queue %d: registering: %w", q.qid, err)
		return
	}
	// A registration the kernel refused completes at once.
	var regErr error
	for {
		cqe, _ := q.ring.PeekCQE()
		if cqe == nil {
			break
		}
		if cqe.UserData != efdUserData && cqe.Res < 0 {
			regErr = fmt.Errorf("queue %d: FUSE_IO_URING_CMD_REGISTER: %w", q.qid, syscall.Errno(-cqe.Res))
			live--
		} else if cqe.UserData != efdUserData {
			q.dispatch(cqe.UserData) // a request came already
		}
		q.ring.CQESeen(cqe)
	}
	ready <- regErr
	q.loop(live)
	q.release()
}

// setup creates the ring, the eventfd and the entries' memory.
func (q *ringQueue) setup() error {
	q.efd = -1
	r := giouring.NewRing()
	// Not SINGLE_ISSUER or COOP_TASKRUN: see "Threads" above.
	if err := r.QueueInit(ringDepth+2, giouring.SetupSQE128); err != nil {
		return fmt.Errorf("queue %d: io_uring_setup: %w", q.qid, err)
	}
	q.ring = r
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("queue %d: eventfd: %w", q.qid, err)
	}
	q.efd = efd
	payload := (q.s.maxIO + entPage - 1) &^ (entPage - 1)
	size := ringDepth*(entPage+payload) + entPage // and a page for efdv
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("queue %d: %d bytes of ring buffers: %w", q.qid, size, err)
	}
	q.mem = mem
	q.efdv = mem[size-entPage : size-entPage+8]
	q.ents = make([]ringEntry, ringDepth)
	for i := range q.ents {
		e := &q.ents[i]
		e.q, e.idx = q, i
		e.hdr = mem[i*entPage : (i+1)*entPage]
		off := ringDepth*entPage + i*payload
		e.payload = mem[off : off+payload]
		iov := (*[2]unix.Iovec)(unsafe.Pointer(&e.hdr[hdrIovec]))
		iov[0].Base, iov[1].Base = &e.hdr[0], &e.payload[0]
		iov[0].SetLen(hdrSize)
		iov[1].SetLen(len(e.payload))
	}
	return nil
}

// release frees what setup made; closing the ring also ends any command
// the kernel still holds.
func (q *ringQueue) release() {
	if q.ring != nil {
		q.ring.QueueExit()
		q.ring = nil
	}
	if q.efd >= 0 {
		unix.Close(q.efd)
		q.efd = -1
	}
	if q.mem != nil {
		unix.Munmap(q.mem)
		q.mem = nil
	}
}

// prep queues entry e's command: REGISTER, or COMMIT_AND_FETCH of the
// reply to request commitID.
func (q *ringQueue) prep(e *ringEntry, op uint32, commitID uint64) {
	sqe := q.ring.GetSQE() // never nil: at most ringDepth commands and the eventfd read per submission
	b := (*[128]byte)(unsafe.Pointer(sqe))
	clear(b[:])
	sqe.OpCode = giouring.OpUringCmd
	sqe.Fd = int32(q.s.fd)
	sqe.Off = uint64(op) // cmd_op
	sqe.Addr = uint64(uintptr(unsafe.Pointer(&e.hdr[hdrIovec])))
	sqe.Len = 2
	sqe.UserData = uint64(e.idx)
	cmd := b[sqeCmdOffset:]
	le.PutUint64(cmd[8:], commitID)
	le.PutUint16(cmd[16:], q.qid)
}

// prepEventfd queues the read of the eventfd that wakes the ring goroutine.
func (q *ringQueue) prepEventfd() {
	sqe := q.ring.GetSQE()
	b := (*[128]byte)(unsafe.Pointer(sqe))
	clear(b[:])
	sqe.PrepareRead(q.efd, uintptr(unsafe.Pointer(&q.efdv[0])), 8, 0)
	sqe.UserData = efdUserData
}

// loop moves entries until none is live.
func (q *ringQueue) loop(live int) {
	dispatched := false
	for live > 0 {
		if dispatched {
			// Let the requests just started run on this thread first:
			// one that needs no network (cached pages, attributes) is
			// done before the ring goroutine looks at the done list,
			// and one that waits parks, handing no thread a wake-up.
			runtime.Gosched()
			dispatched = false
		}
		q.mu.Lock()
		done := q.done
		q.done = q.spare[:0]
		wait := len(done) == 0
		q.sleeping = wait
		q.mu.Unlock()
		for _, e := range done {
			q.commit(e)
		}
		clear(done)
		q.spare = done
		var err error
		if wait {
			_, err = q.ring.SubmitAndWait(1)
		} else {
			_, err = q.ring.SubmitAndGetEvents()
		}
		if err != nil && !errors.Is(err, syscall.EINTR) && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EBUSY) {
			q.s.log.Error().Err(err).Uint16("queue", q.qid).Msg("FUSE over io_uring: io_uring_enter")
			return
		}
		for {
			cqe, _ := q.ring.PeekCQE()
			if cqe == nil {
				break
			}
			ud, res := cqe.UserData, cqe.Res
			q.ring.CQESeen(cqe)
			switch {
			case ud == efdUserData:
				q.prepEventfd()
			case res < 0:
				// The connection is gone (ENOTCONN, ECANCELED) or
				// the kernel refused a commit: the entry is done.
				if res != -int32(syscall.ENOTCONN) && res != -int32(syscall.ECANCELED) {
					q.s.log.Warn().Err(syscall.Errno(-res)).Uint16("queue", q.qid).Msg("FUSE over io_uring: an entry ended")
				}
				live--
			default:
				q.dispatch(ud)
				dispatched = true
			}
		}
	}
}

// dispatch hands the request in entry idx to a goroutine. None is answered
// on the ring goroutine, even a lone one on an idle queue (which saves a
// hand-off): a request can wait for the cluster for as long as the
// retry timeout, and every request of the queue's CPU would wait behind
// it — a FLUSH from a close(2) in an exec'ing child of a program that has
// files open on the mount included, which deadlocked a restart of fffd
// from a process reading through the mount.
func (q *ringQueue) dispatch(idx uint64) { go q.ents[idx].serve() }

// commit queues the commit of e's reply, which also fetches its next
// request.
func (q *ringQueue) commit(e *ringEntry) {
	q.prep(e, uringCmdCommitAndFetch, le.Uint64(e.hdr[hdrEntInOut+8:]))
}

// serve answers the request in e on a goroutine and gives e back to its
// ring goroutine.
func (e *ringEntry) serve() {
	e.answer()
	q := e.q
	q.mu.Lock()
	q.done = append(q.done, e)
	wake := q.sleeping
	q.sleeping = false
	q.mu.Unlock()
	if wake {
		var one [8]byte
		le.PutUint64(one[:], 1)
		unix.Write(q.efd, one[:])
	}
}

// answer writes the reply to the request in e into e.
func (e *ringEntry) answer() {
	h := e.hdr
	inLen := int(le.Uint32(h[0:]))
	payload := int(le.Uint32(h[hdrEntInOut+16:]))
	opLen := inLen - inHeaderSize - payload
	var n int
	if opLen < 0 || opLen > hdrEntInOut-hdrOpIn || payload > len(e.payload) {
		n = errorReply(h, h, fuse.EIO)
	} else {
		in := [][]byte{h[:inHeaderSize], h[hdrOpIn : hdrOpIn+opLen], e.payload[:payload]}
		// The reply's header goes where the request's was (its input
		// was parsed first), its arguments into the payload.
		out := [][]byte{h[:outHeaderSize], e.payload}
		var st fuse.Status
		n, st = e.q.s.ps.HandleRequest(in, out)
		if !st.Ok() || n < outHeaderSize {
			// Every ring request needs its commit: one without a
			// reply (never sent through the rings) fails instead.
			n = errorReply(h, h, cmpStatus(st, fuse.EIO))
		}
	}
	le.PutUint32(h[hdrEntInOut+16:], uint32(n-outHeaderSize))
}

func cmpStatus(st, fallback fuse.Status) fuse.Status {
	if st.Ok() {
		return fallback
	}
	return st
}
