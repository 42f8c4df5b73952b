"""FFRecord datasets: read samples in batches, write new files.

A dataset is one ``.ffr`` file or a directory of them (sorted by name), in a
cluster (``fff:///a/b``, ``fff://HOST:PORT/a/b``) or on local disk (any other
path, read with io_uring and O_DIRECT). Samples come back as numpy ``uint8``
arrays; the samples of one batch are views into one buffer, filled by one
library call.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import mmap
import os
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, Iterable, List, Optional, Sequence, Union

import numpy as np

from . import _native, errors
from ._native import PathLike

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Reader", "Writer", "PendingBatch", "alloc_buffer", "is_fff_path"]

PAGE_SIZE = 4096
HUGE_PAGE_SIZE = 2 << 20

Indices = Union[int, Sequence[int], "np.ndarray", range, slice]


def is_fff_path(path: PathLike) -> bool:
    """Whether path names a file in a cluster (fff:///a/b, fff://HOST:PORT/a/b)."""
    p = os.fspath(path)
    return p.startswith(b"fff://") if isinstance(p, bytes) else p.startswith("fff://")


def alloc_buffer(nbytes: int) -> np.ndarray:
    """A new uint8 array of nbytes whose memory suits direct reads.

    The start is aligned to 4096 bytes (O_DIRECT reads of local files land in
    it without a bounce copy). Buffers of 2 MiB or more are anonymous mmap
    memory aligned to 2 MiB and advised MADV_HUGEPAGE (fewer page faults and
    TLB misses when the kernel has transparent huge pages in madvise mode).
    The memory is not zeroed for small buffers.
    """
    if nbytes < 0:
        raise ValueError(f"buffer size {nbytes} is negative")
    if nbytes >= HUGE_PAGE_SIZE:
        mm = mmap.mmap(-1, nbytes + HUGE_PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        base = np.frombuffer(mm, dtype=np.uint8)
        off = (-int(base.ctypes.data)) % HUGE_PAGE_SIZE
        advice = getattr(mmap, "MADV_HUGEPAGE", None)
        if advice is not None:
            try:
                mm.madvise(advice, off, nbytes)
            except OSError:
                pass  # transparent huge pages disabled: 4 KiB pages work too
        return base[off : off + nbytes]
    base = np.empty(nbytes + PAGE_SIZE, dtype=np.uint8)
    off = (-int(base.ctypes.data)) % PAGE_SIZE
    return base[off : off + nbytes]


def _client_handle(path: str, client: Optional["Client"]) -> int:
    """The client handle fff_dataset_open/fff_writer_open get for path.

    Local paths need none (0). fff:///a/b without a client uses the default
    client (made from FFF_CLUSTER/FFF_TOKEN as os.environ has them now: the
    library's own view of the environment is the one of the process start);
    fff://HOST:PORT/a/b without a client lets the library connect to HOST:PORT.
    """
    if not is_fff_path(path):
        return 0
    if client is not None:
        return client.handle
    if path.startswith("fff:///"):
        from .client import default_client

        return default_client().handle
    return 0


def _as_u8(buf: Any) -> np.ndarray:
    """A flat uint8 view of a writable buffer."""
    if isinstance(buf, np.ndarray) and buf.dtype == np.uint8 and buf.ndim == 1:
        a = buf
    else:
        a = np.frombuffer(buf, dtype=np.uint8)
    if not a.flags.writeable:
        raise TypeError(f"the buffer ({type(buf).__name__}) is read-only: pass a writable buffer, e.g. a numpy array")
    if not a.flags.c_contiguous:
        raise BufferError("the buffer must be C-contiguous (numpy.ascontiguousarray)")
    return a


def _slices(buf: np.ndarray, offsets: np.ndarray) -> List[np.ndarray]:
    o = offsets.tolist()
    return [buf[o[i] : o[i + 1]] for i in range(len(o) - 1)]


class Reader(_native.Closing):
    """Reads samples of an FFRecord dataset.

    ``check`` verifies every sample's checksum (a damaged sample raises
    :class:`fff.ChecksumError`). ``client`` serves fff paths (default: the
    default cluster); local paths need none.

    The dataset opens when the Reader is made. A Reader pickles as its path,
    check flag and the client's address and token, and opens again, lazily,
    in the process that unpickles it (a DataLoader worker). In a child forked
    after the library was loaded it raises :class:`fff.ForkError`: start
    workers with forkserver or spawn.

    Thread-safe: several threads may read at once.
    """

    def __init__(self, path: PathLike, check: bool = True, client: Optional["Client"] = None) -> None:
        self.path: str = _native.display(path)
        self.check: bool = bool(check)
        self._client = client
        self._address: Optional[str] = client.address if client is not None else None
        self._token: Optional[str] = client.token if client is not None else None
        self._init_state()
        self._handle()

    def _init_state(self) -> None:
        self._h = 0
        self._pid = 0
        self._closed = False
        self._len: Optional[int] = None
        self._sizes: Optional[np.ndarray] = None
        self._mu = threading.Lock()

    # --- pickling ----------------------------------------------------------

    def __getstate__(self) -> dict:
        return {"path": self.path, "check": self.check, "address": self._address, "token": self._token}

    def __setstate__(self, state: dict) -> None:
        self.path = state["path"]
        self.check = state["check"]
        self._address = state.get("address")
        self._token = state.get("token")
        self._client = None
        self._init_state()

    # --- handle ------------------------------------------------------------

    def _handle(self) -> int:
        h = self._h
        if h:
            if self._pid != os.getpid():
                raise errors.ForkError()
            return h
        if self._closed:
            raise ValueError(f"the fff.ffrecord.Reader for {self.path!r} is closed")
        with self._mu:
            if self._h:
                return self._h
            L = _native.lib()
            if self._client is None and (self._address or self._token) and is_fff_path(self.path):
                from .client import Client

                # Kept: handles opened through a client fail once it is closed.
                self._client = Client(self._address, self._token, _lazy=True)
            ch = _client_handle(self.path, self._client)
            out = ctypes.c_int64(0)
            _native.check(L.fff_dataset_open(ch, _native.fspath(self.path), int(self.check), ctypes.byref(out)), self.path)
            self._h, self._pid = out.value, os.getpid()
            return self._h

    def close(self) -> None:
        """Release the dataset. Reads after close raise ValueError."""
        if self._closed:
            return
        self._closed = True
        h, self._h = self._h, 0
        if h and self._pid == os.getpid() and not _native.forked():
            _native.check(_native.lib().fff_close(h), self.path)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<fff.ffrecord.Reader {self.path!r} check={self.check}{state}>"

    # --- sizes -------------------------------------------------------------

    def __len__(self) -> int:
        if self._len is None:
            h = self._handle()
            self._len = _native.check64(_native.lib().fff_dataset_len(h), self.path)
        return self._len

    @property
    def sizes(self) -> np.ndarray:
        """The size in bytes of every sample (int64, read-only, cached)."""
        if self._sizes is None:
            idx = np.arange(len(self), dtype=np.int64)
            s = self._sizes_of(idx)
            s.flags.writeable = False
            self._sizes = s
        return self._sizes

    def _sizes_of(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty(len(idx), dtype=np.int64)
        if len(idx):
            h = self._handle()
            rc = _native.lib().fff_dataset_sizes(h, idx.ctypes.data, len(idx), out.ctypes.data)
            _native.check(rc, self.path)
        return out

    def size_of(self, indices: Indices) -> np.ndarray:
        """Sizes of the given samples (int64)."""
        return self._sizes_of(self._indices(indices))

    def _indices(self, indices: Indices) -> np.ndarray:
        n = len(self)
        if isinstance(indices, slice):
            return np.arange(*indices.indices(n), dtype=np.int64)
        seq = indices if isinstance(indices, (list, tuple)) else [indices]
        for x in seq:
            # numpy turns Python ints past int64 into uint64, float or object
            # arrays, and casting wraps them: refuse them by value first.
            if isinstance(x, int) and not -(1 << 63) <= x < (1 << 63):
                raise IndexError(f"sample index {x} does not fit in int64: {self.path} has {n} samples")
        a = np.asarray(indices)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim != 1:
            raise ValueError(f"indices must be one-dimensional, got shape {a.shape}")
        if a.size and a.dtype.kind not in "iu":
            raise TypeError(f"sample indices must be integers, got {a.dtype}")
        if a.size and a.dtype.kind == "u" and int(a.max()) > np.iinfo(np.int64).max:
            # np.array(..., dtype=int64) would wrap 2**63 to -2**63.
            raise IndexError(f"sample index {int(a.max())} does not fit in int64: {self.path} has {n} samples")
        idx = np.array(a, dtype=np.int64, copy=True)
        neg = idx < 0
        if neg.any():
            idx[neg] += n
        bad = (idx < 0) | (idx >= n)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise IndexError(f"sample index {int(a[i])} is out of range: {self.path} has {n} samples")
        return idx

    # --- reads -------------------------------------------------------------

    def read_one(self, i: int) -> np.ndarray:
        """Sample i as a uint8 array."""
        return self.read([i])[0]

    def __getitem__(self, i: Union[int, slice]) -> Any:
        if isinstance(i, slice):
            return self.read(i)
        return self.read_one(i)

    def read(self, indices: Indices) -> List[np.ndarray]:
        """Samples as uint8 arrays: views into one buffer, filled by one read."""
        idx = self._indices(indices)
        if len(idx) == 0:
            return []
        sizes = self._sizes[idx] if self._sizes is not None else self._sizes_of(idx)
        total = int(sizes.sum())
        buf = alloc_buffer(total)
        offsets = np.empty(len(idx) + 1, dtype=np.int64)
        h = self._handle()
        rc = _native.lib().fff_dataset_read(
            h, idx.ctypes.data, len(idx), buf.ctypes.data, total, offsets.ctypes.data
        )
        _native.check(rc, self.path)
        return _slices(buf, offsets)

    def read_into(self, indices: Indices, buf: Any) -> np.ndarray:
        """Read samples back to back into buf (any writable buffer, e.g. a numpy
        array or shared memory); returns offsets (int64, n+1 entries): sample i
        is buf[offsets[i]:offsets[i+1]]. Raises fff.BufferTooSmallError when buf
        is smaller than the samples (see size_of)."""
        idx = self._indices(indices)
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        if len(idx) == 0:
            return offsets
        h = self._handle()
        addr, n, pin = _native.buffer_address(buf, writable=True)
        try:
            rc = _native.lib().fff_dataset_read(h, idx.ctypes.data, len(idx), addr, n, offsets.ctypes.data)
            _native.check(rc, self.path)
        finally:
            pin.release()
        return offsets

    def submit(self, indices: Indices, buf: Any = None) -> "PendingBatch":
        """Start reading samples in the background; returns a PendingBatch.

        buf: where the samples go (default: a new aligned buffer of the right
        size). Several batches may be in flight at once.
        """
        idx = self._indices(indices)
        if buf is None:
            buf = alloc_buffer(int(self._sizes_of(idx).sum()) if len(idx) else 0)
        u8 = _as_u8(buf)
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        if len(idx) == 0:
            return PendingBatch(self, 0, idx, u8, offsets, None)
        h = self._handle()
        addr, n, pin = _native.buffer_address(u8, writable=True)
        ticket = ctypes.c_int64(0)
        try:
            rc = _native.lib().fff_dataset_submit(
                h, idx.ctypes.data, len(idx), addr, n, offsets.ctypes.data, ctypes.byref(ticket)
            )
            _native.check(rc, self.path)
        except BaseException:
            pin.release()
            raise
        return PendingBatch(self, ticket.value, idx, u8, offsets, pin)


class PendingBatch:
    """A batch read in flight (see :meth:`Reader.submit`).

    Holds the index, buffer and offset arrays until the batch finished or was
    cancelled. Dropping an unfinished batch cancels it.
    """

    def __init__(
        self,
        reader: Reader,
        ticket: int,
        indices: np.ndarray,
        buf: np.ndarray,
        offsets: np.ndarray,
        pin: Optional[_native._Pin],
    ) -> None:
        self.reader = reader  # keeps the dataset open while the batch runs
        self.indices = indices
        self.buffer = buf
        self.offsets = offsets  # filled when submit returned
        self._ticket = ticket
        self._pin = pin
        self._pid = os.getpid()
        self._error: Optional[BaseException] = None
        self._state = "pending" if ticket else "done"

    def __len__(self) -> int:
        return len(self.indices)

    def _finish(self, rc: int) -> None:
        if rc != 0:
            self._error = _native.error(rc, self.reader.path)
            self._state = "cancelled" if rc == errors.FFF_ECANCELED else "failed"
        else:
            self._state = "done"
        self._ticket = 0
        if self._pin is not None:
            self._pin.release()
            self._pin = None

    def _lib(self) -> Any:
        if self._pid != os.getpid():
            raise errors.ForkError()
        return _native.lib()

    def done(self) -> bool:
        """Whether the batch finished (successfully or not); never blocks."""
        if self._state != "pending":
            return True
        rc = self._lib().fff_ticket_wait(self._ticket, 0)
        if rc == errors.FFF_EAGAIN:
            return False
        self._finish(rc)
        return True

    def wait(self, timeout: Optional[float] = None) -> List[np.ndarray]:
        """Wait for the batch; return its samples (views into its buffer).

        Raises the batch's error (e.g. fff.ChecksumError naming the sample),
        fff.CancelledError after cancel(), or fff.OperationTimeoutError
        (a TimeoutError) when timeout seconds pass first (the batch goes on:
        wait again or cancel it).
        """
        if self._state == "pending":
            L = self._lib()
            deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
            while True:
                # Wait in slices so Ctrl-C (KeyboardInterrupt) gets through.
                step = 200
                if deadline is not None:
                    step = max(0, min(step, int((deadline - time.monotonic()) * 1000)))
                rc = L.fff_ticket_wait(self._ticket, step)
                if rc != errors.FFF_EAGAIN:
                    self._finish(rc)
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    raise errors.OperationTimeoutError(
                        _errno.ETIMEDOUT,
                        f"the batch of {len(self)} samples from {self.reader.path} did not finish within "
                        f"{timeout}s: wait() again, or cancel() it",
                    )
        if self._state == "cancelled":
            raise self._error or errors.CancelledError(_errno.ECANCELED, "the batch was cancelled")
        if self._error is not None:
            raise self._error
        return _slices(self.buffer, self.offsets)

    def cancel(self) -> None:
        """Stop the batch; returns once the library no longer touches its buffer."""
        if self._state != "pending":
            return
        t, self._ticket = self._ticket, 0
        try:
            rc = self._lib().fff_ticket_cancel(t)
            if rc not in (0, errors.FFF_ECANCELED):
                self._error = _native.error(rc, self.reader.path)
        finally:
            self._state = "cancelled"
            if self._error is None:
                self._error = errors.CancelledError(_errno.ECANCELED, "the batch was cancelled")
            if self._pin is not None:
                self._pin.release()
                self._pin = None

    def __del__(self) -> None:
        try:
            if self._state == "pending" and self._pid == os.getpid() and not _native.forked():
                self.cancel()
        except Exception:
            pass

    def __getstate__(self) -> Any:
        raise TypeError("a PendingBatch cannot be pickled: wait() for it and pickle the samples")

    def __repr__(self) -> str:
        return f"<fff.ffrecord.PendingBatch {len(self)} samples from {self.reader.path!r} {self._state}>"


class Writer:
    """Writes a new FFRecord file (v2 by default; v1 is HFAiLab-compatible).

    The file appears atomically when :meth:`close` commits it. As a context
    manager the writer commits on success and discards the file when the
    block raises. ``client`` serves fff paths (default: the default cluster).
    """

    def __init__(self, path: PathLike, version: int = 2, client: Optional["Client"] = None) -> None:
        if version not in (1, 2):
            raise ValueError(f"FFRecord version must be 1 or 2, not {version!r}")
        self.path: str = _native.display(path)
        self.version = version
        self.count = 0  # samples written
        self._h = 0
        self._pid = os.getpid()
        ch = _client_handle(self.path, client)
        L = _native.lib()
        out = ctypes.c_int64(0)
        _native.check(L.fff_writer_open(ch, _native.fspath(path), version, ctypes.byref(out)), self.path)
        self._h = out.value
        self._client = client

    def _handle(self) -> int:
        if not self._h:
            raise ValueError(f"the fff.ffrecord.Writer for {self.path!r} is closed")
        if self._pid != os.getpid():
            raise errors.ForkError()
        return self._h

    @property
    def closed(self) -> bool:
        return self._h == 0

    def write(self, data: Any) -> None:
        """Append one sample (any bytes-like object)."""
        h = self._handle()
        addr, n, pin = _native.buffer_address(data, writable=False)
        try:
            _native.check(_native.lib().fff_writer_write(h, addr, n), self.path)
        finally:
            pin.release()
        self.count += 1

    def write_keyed(self, key: Union[str, bytes], data: Any) -> None:
        """Append one sample with a key (v2 only)."""
        if self.version != 2:
            raise ValueError("keyed samples need FFRecord v2: make the Writer with version=2")
        k = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if b"\0" in k:
            raise ValueError(f"sample keys cannot contain NUL bytes: {key!r}")
        h = self._handle()
        addr, n, pin = _native.buffer_address(data, writable=False)
        try:
            _native.check(_native.lib().fff_writer_write_keyed(h, k, addr, n), self.path)
        finally:
            pin.release()
        self.count += 1

    def write_all(self, samples: Iterable[Any]) -> None:
        """Append every sample of an iterable."""
        for s in samples:
            self.write(s)

    def close(self) -> None:
        """Finish and publish the file (commit). A second close does nothing."""
        if not self._h:
            return
        h = self._handle()
        self._h = 0
        _native.check(_native.lib().fff_writer_commit(h), self.path)

    commit = close

    def abort(self) -> None:
        """Discard the file: nothing appears at path."""
        if not self._h:
            return
        h, self._h = self._h, 0
        if self._pid == os.getpid() and not _native.forked():
            _native.check(_native.lib().fff_close(h), self.path)

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        try:
            if self._h and self._pid == os.getpid() and not _native.forked():
                warnings.warn(
                    f"fff.ffrecord.Writer for {self.path!r} was never closed: its file is discarded "
                    "(call close() to publish it, or use it as a context manager)",
                    ResourceWarning,
                    stacklevel=2,
                )
                self.abort()
        except Exception:
            pass

    def __getstate__(self) -> Any:
        raise TypeError("an fff.ffrecord.Writer cannot be pickled: write in one process")

    def __repr__(self) -> str:
        return f"<fff.ffrecord.Writer {self.path!r} v{self.version} {self.count} samples{' closed' if self.closed else ''}>"
