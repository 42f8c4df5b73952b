"""Files in an fff cluster as Python binary file objects.

:func:`open_file` returns what Python's :func:`open` returns for binary modes:
an :class:`io.BufferedReader`, :class:`io.BufferedWriter` or
:class:`io.BufferedRandom` over a :class:`RawFile` (or the RawFile itself with
``buffering=0``). Reads into a caller's buffer (``readinto``) larger than the
buffer size go straight from the library into the caller's memory, without an
intermediate copy.
"""

from __future__ import annotations

import ctypes
import io
import os
from typing import TYPE_CHECKING, Any, Optional, Union

from . import _native, errors
from ._native import PathLike

if TYPE_CHECKING:
    from .client import Client

__all__ = ["RawFile", "BufferedWriter", "BufferedRandom", "open_file", "DEFAULT_BUFFER_SIZE"]

# Each read or write that reaches the cluster is a round trip: buffer more
# than Python's 8 KiB default.
DEFAULT_BUFFER_SIZE = 1 << 20

_O_FLAGS = {
    # mode letter: (flags, readable, writable)
    "r": (os.O_RDONLY, True, False),
    "w": (os.O_WRONLY | os.O_CREAT | os.O_TRUNC, False, True),
    "a": (os.O_WRONLY | os.O_CREAT | os.O_APPEND, False, True),
    "x": (os.O_WRONLY | os.O_CREAT | os.O_EXCL, False, True),
}


def _parse_mode(mode: str) -> "tuple[int, bool, bool, str]":
    if not isinstance(mode, str):
        raise TypeError(f"mode must be a str, not {type(mode).__name__}")
    chars = set(mode)
    if "t" in chars or ("b" not in chars and chars <= set("rwax+")):
        raise ValueError(
            f"fff files are binary only, mode {mode!r} is a text mode: open with {mode.replace('t', '') + ('b' if 'b' not in mode else '')!r} "
            "and wrap the result in io.TextIOWrapper(f, encoding='utf-8') to read or write text"
        )
    if len(mode) != len(chars) or not chars <= set("rwaxb+") or sum(c in chars for c in "rwax") != 1:
        raise ValueError(f"invalid mode {mode!r}: use 'rb', 'wb', 'ab', 'xb', 'r+b', 'w+b', 'a+b' or 'x+b'")
    letter = next(c for c in "rwax" if c in chars)
    flags, readable, writable = _O_FLAGS[letter]
    if "+" in chars:
        flags = (flags & ~(os.O_RDONLY | os.O_WRONLY)) | os.O_RDWR
        readable = writable = True
    canonical = {"r": "rb", "w": "wb", "a": "ab", "x": "xb"}[letter]
    if "+" in chars:
        canonical = canonical[0] + "+b"
    return flags, readable, writable, canonical


class RawFile(io.RawIOBase):
    """An open file in an fff cluster: unbuffered binary I/O (io.RawIOBase).

    Every call is one library call (one or more round trips to the cluster).
    ``flush()`` makes the written bytes durable and their length visible to
    other clients (fff_sync); ``close()`` does the same first.
    """

    def __init__(self, client: "Client", path: PathLike, mode: str = "rb", *, perm: int = 0o644) -> None:
        super().__init__()
        flags, self._readable, self._writable, self.mode = _parse_mode(mode)
        self.name = _native.display(path)
        self._client = client  # keeps the connection alive
        self._dirty = False
        self._fh = 0
        self._pid = os.getpid()
        ch = client.handle
        h = ctypes.c_int64(0)
        _native.check(_native.lib().fff_open(ch, _native.fspath(path), flags, perm, ctypes.byref(h)), self.name)
        self._fh = h.value
        self._pid = os.getpid()

    # --- helpers -----------------------------------------------------------

    def _h(self) -> int:
        if self.closed:
            raise ValueError(f"I/O operation on closed fff file {self.name!r}")
        if self._pid != os.getpid():
            raise errors.ForkError()
        return self._fh

    def _check_readable(self) -> None:
        if not self._readable:
            raise io.UnsupportedOperation(f"fff file {self.name!r} is not open for reading (mode {self.mode!r})")

    def _check_writable(self) -> None:
        if not self._writable:
            raise io.UnsupportedOperation(f"fff file {self.name!r} is not open for writing (mode {self.mode!r})")

    # --- io.RawIOBase ------------------------------------------------------

    def readable(self) -> bool:
        self._h()
        return self._readable

    def writable(self) -> bool:
        self._h()
        return self._writable

    def seekable(self) -> bool:
        self._h()
        return True

    def fileno(self) -> int:
        raise io.UnsupportedOperation("fff files have no OS file descriptor")

    def isatty(self) -> bool:
        self._h()
        return False

    def _buffer_call(self, b: Any, write: bool, fn: str, *offset: int) -> int:
        """Call fff_<fn>(handle, address of b, len(b), *offset) on b's memory
        (pinned for the call, no copy); 0 for an empty b."""
        h = self._h()
        if write:
            self._check_writable()
        else:
            self._check_readable()
        addr, n, pin = _native.buffer_address(b, writable=not write)
        try:
            if n == 0:
                return 0
            if write:
                self._dirty = True
            return _native.check64(getattr(_native.lib(), fn)(h, addr, n, *offset), self.name)
        finally:
            pin.release()

    def readinto(self, b: Any) -> int:
        """Read up to len(b) bytes straight into b (any writable buffer)."""
        return self._buffer_call(b, False, "fff_read")

    def pread(self, b: Any, offset: int) -> int:
        """Read up to len(b) bytes at offset into b, leaving the file position alone.

        Short only at the end of the file.
        """
        return self._buffer_call(b, False, "fff_pread", _native.offset_arg(offset, self.name))

    def read(self, size: Optional[int] = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        h = self._h()
        self._check_readable()
        if size == 0:
            return b""
        buf = ctypes.create_string_buffer(size)
        n = _native.check64(_native.lib().fff_read(h, buf, size), self.name)
        return buf.raw[:n]

    def readall(self) -> bytes:
        h = self._h()
        self._check_readable()
        L = _native.lib()
        pos = _native.check64(L.fff_seek(h, 0, os.SEEK_CUR), self.name)
        size = _native.check64(L.fff_size(h), self.name)
        chunks = []
        want = max(size - pos, 0)
        while True:
            buf = bytearray(want if want > 0 else DEFAULT_BUFFER_SIZE)
            got = self.readinto(buf)
            if got == 0:
                break
            if got < len(buf):
                del buf[got:]
            chunks.append(buf)
            want = 0  # the file grew: read on in buffer-size steps
        if len(chunks) == 1:
            return bytes(chunks[0])
        return b"".join(chunks)

    def write(self, b: Any) -> int:
        """Write all of b (any bytes-like object); returns len(b) in bytes."""
        return self._buffer_call(b, True, "fff_write")

    def pwrite(self, b: Any, offset: int) -> int:
        """Write b at offset, leaving the file position alone."""
        return self._buffer_call(b, True, "fff_pwrite", _native.offset_arg(offset, self.name))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        h = self._h()
        if whence not in (os.SEEK_SET, os.SEEK_CUR, os.SEEK_END):
            raise ValueError(f"invalid whence {whence}: use os.SEEK_SET, os.SEEK_CUR or os.SEEK_END")
        if not -_native.INT64_MAX - 1 <= offset <= _native.INT64_MAX:  # ctypes would wrap it
            raise errors.from_code(errors.FFF_EINVAL, f"seek offset {offset} does not fit in 64 bits", self.name)
        return _native.check64(_native.lib().fff_seek(h, offset, whence), self.name)

    def tell(self) -> int:
        return self.seek(0, os.SEEK_CUR)

    def size(self) -> int:
        """The file's current length in bytes."""
        return _native.check64(_native.lib().fff_size(self._h()), self.name)

    def truncate(self, size: Optional[int] = None) -> int:
        h = self._h()
        self._check_writable()
        if size is None:
            size = self.tell()
        size = _native.offset_arg(size, self.name, "size")
        self._dirty = True
        _native.check(_native.lib().fff_truncate(h, size), self.name)
        return size

    def flush(self) -> None:
        """Make written bytes durable and their length visible (fff_sync)."""
        if self.closed or not self._dirty:
            return
        h = self._h()
        _native.check(_native.lib().fff_sync(h), self.name)
        self._dirty = False

    def sync(self) -> None:
        """Same as flush()."""
        self.flush()

    def close(self) -> None:
        if self.closed:
            return
        h, self._fh = self._fh, 0
        if not h or self._pid != os.getpid() or _native.forked():
            # Inherited over fork: the library cannot be called here; drop it.
            self._mark_closed()
            return
        L = _native.lib()
        try:
            if self._dirty:
                self._dirty = False
                _native.check(L.fff_sync(h), self.name)
        finally:
            self._mark_closed()
            _native.check(L.fff_close(h), self.name)

    def _mark_closed(self) -> None:
        # io.RawIOBase.close() calls flush(); we did that already.
        self._dirty = False
        io.RawIOBase.close(self)

    def __del__(self) -> None:
        try:
            if not self.closed and self._pid == os.getpid() and not _native.forked():
                self.close()
            elif not self.closed:
                self._fh = 0
                self._mark_closed()
        except Exception:
            pass

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle an open fff file ({self.name!r}): pickle its path and open it again")

    def __repr__(self) -> str:
        return f"<fff.RawFile name={self.name!r} mode={self.mode!r}{' closed' if self.closed else ''}>"


class BufferedWriter(io.BufferedWriter):
    """io.BufferedWriter whose flush() also syncs the file (fff_sync)."""

    def flush(self) -> None:
        super().flush()
        if not self.closed:
            self.raw.flush()


class BufferedRandom(io.BufferedRandom):
    """io.BufferedRandom whose flush() also syncs the file (fff_sync)."""

    def flush(self) -> None:
        super().flush()
        if not self.closed:
            self.raw.flush()


FileObject = Union[RawFile, io.BufferedReader, BufferedWriter, BufferedRandom]


def open_file(client: "Client", path: PathLike, mode: str = "rb", buffering: int = -1, *, perm: int = 0o644) -> FileObject:
    """Open path in client's cluster like Python's open() opens a binary file."""
    _parse_mode(mode)  # reject text modes before any library call
    raw = RawFile(client, path, mode, perm=perm)
    if buffering == 0:
        return raw
    if buffering == 1:
        raise ValueError("line buffering (buffering=1) needs text mode; fff files are binary")
    size = DEFAULT_BUFFER_SIZE if buffering < 0 else buffering
    try:
        if raw._readable and raw._writable:
            return BufferedRandom(raw, size)
        if raw._writable:
            return BufferedWriter(raw, size)
        return io.BufferedReader(raw, size)
    except BaseException:
        raw.close()
        raise
