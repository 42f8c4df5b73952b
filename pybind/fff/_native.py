"""Loading libfff.so (ctypes) and calling it safely.

The library is loaded on the first call that needs it, never at import. Every
call goes through :func:`lib`, which refuses to run in a child forked after the
library was loaded (the Go runtime's threads do not survive fork: a call there
would hang forever) and raises :class:`fff.ForkError` instead.

``ctypes.CDLL`` releases the GIL around every foreign call, so blocking reads
in one Python thread never stall the others. Error messages are per OS thread
in the library (``fff_errmsg``): :func:`error` reads the message on the same
thread, right after the failing call.
"""

from __future__ import annotations

import ctypes
import os
import threading
from ctypes import POINTER, c_char_p, c_int, c_int64, c_uint32, c_uint64, c_void_p
from typing import Any, Optional, Tuple, TypeVar, Union

from . import errors

__all__ = [
    "lib", "loaded", "forked", "check", "check64", "error", "StatT", "library_path", "fspath", "buffer_address", "Closing",
]

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

_C = TypeVar("_C", bound="Closing")


class Closing:
    """``with`` support and a best-effort close when garbage-collected, for the
    package's objects that hold native resources and define ``close()``."""

    def close(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


LIBRARY_ENV = "FFF_LIBRARY"
LIBRARY_NAME = "libfff.so"


class StatT(ctypes.Structure):
    """fff_stat_t."""

    _fields_ = [
        ("ino", c_uint64),
        ("size", c_int64),
        ("mode", c_uint32),
        ("uid", c_uint32),
        ("gid", c_uint32),
        ("nlink", c_uint32),
        ("mtime_ns", c_int64),
        ("ctime_ns", c_int64),
        ("atime_ns", c_int64),
        ("chunk_size", c_uint32),
        ("stripe", c_uint32),
    ]


class StatsT(ctypes.Structure):
    """fff_stats_t: a client's counters (fff_client_stats)."""

    _fields_ = [
        (name, c_int64)
        for name in (
            "reads",
            "read_bytes",
            "read_errors",
            "read_calls",
            "local_bytes",
            "local_fallbacks",
            "retries",
            "writes",
            "write_bytes",
            "read_latency_count",
            "read_latency_sum_ns",
            "read_latency_p50_ns",
            "read_latency_p99_ns",
            "read_latency_max_ns",
        )
    ]


_P64 = POINTER(c_int64)

# name: (restype, argtypes). Buffers, index and offset arrays are passed as
# addresses (c_void_p) so numpy arrays and ctypes objects both fit.
_PROTOTYPES = {
    "fff_version": (c_char_p, []),
    "fff_errmsg": (c_char_p, []),
    "fff_free": (None, [c_void_p]),
    "fff_close": (c_int, [c_int64]),
    "fff_connect": (c_int, [c_char_p, c_char_p, _P64]),
    "fff_client_stats": (c_int, [c_int64, POINTER(StatsT)]),
    "fff_stat": (c_int, [c_int64, c_char_p, POINTER(StatT)]),
    "fff_listdir": (c_int, [c_int64, c_char_p, POINTER(c_void_p), _P64]),
    "fff_mkdir": (c_int, [c_int64, c_char_p, c_uint32, c_int]),
    "fff_remove": (c_int, [c_int64, c_char_p, c_int]),
    "fff_rename": (c_int, [c_int64, c_char_p, c_char_p]),
    "fff_open": (c_int, [c_int64, c_char_p, c_int, c_uint32, _P64]),
    "fff_read": (c_int64, [c_int64, c_void_p, c_int64]),
    "fff_pread": (c_int64, [c_int64, c_void_p, c_int64, c_int64]),
    "fff_write": (c_int64, [c_int64, c_void_p, c_int64]),
    "fff_pwrite": (c_int64, [c_int64, c_void_p, c_int64, c_int64]),
    "fff_seek": (c_int64, [c_int64, c_int64, c_int]),
    "fff_size": (c_int64, [c_int64]),
    "fff_truncate": (c_int, [c_int64, c_int64]),
    "fff_sync": (c_int, [c_int64]),
    "fff_dataset_open": (c_int, [c_int64, c_char_p, c_int, _P64]),
    "fff_dataset_len": (c_int64, [c_int64]),
    "fff_dataset_sizes": (c_int, [c_int64, c_void_p, c_int64, c_void_p]),
    "fff_dataset_read": (c_int, [c_int64, c_void_p, c_int64, c_void_p, c_int64, c_void_p]),
    "fff_dataset_submit": (c_int, [c_int64, c_void_p, c_int64, c_void_p, c_int64, c_void_p, _P64]),
    "fff_ticket_wait": (c_int, [c_int64, c_int64]),
    "fff_ticket_cancel": (c_int, [c_int64]),
    "fff_writer_open": (c_int, [c_int64, c_char_p, c_int, _P64]),
    "fff_writer_write": (c_int, [c_int64, c_void_p, c_int64]),
    "fff_writer_write_keyed": (c_int, [c_int64, c_char_p, c_void_p, c_int64]),
    "fff_writer_commit": (c_int, [c_int64]),
}

_lib: Optional[ctypes.CDLL] = None
_pid = 0  # the process that loaded _lib
_forked = False  # set in a child forked after _lib was loaded
_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _forked, _lock
    _lock = threading.Lock()  # another thread may have held it at fork time
    if _lib is not None:
        _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def library_path() -> str:
    """The libfff.so this process loads (or would load)."""
    env = os.environ.get(LIBRARY_ENV)
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, LIBRARY_NAME)
    if os.path.exists(installed):
        return installed
    # Running from the source tree (pybind/fff): the `make lib` output.
    dev = os.path.join(os.path.dirname(os.path.dirname(here)), "build", LIBRARY_NAME)
    if os.path.exists(dev):
        return dev
    return installed


def loaded() -> bool:
    """Whether this process (or the parent it was forked from) loaded the library."""
    return _lib is not None


def forked() -> bool:
    """Whether this process is a child forked after the library was loaded."""
    return _lib is not None and (_forked or os.getpid() != _pid)


def check_fork() -> None:
    """Raise ForkError in a child forked after the library was loaded."""
    if forked():
        raise errors.ForkError()


def _load() -> ctypes.CDLL:
    global _lib, _pid
    with _lock:
        if _lib is not None:
            return _lib
        path = library_path()
        if not os.path.exists(path):
            how = (
                f"{LIBRARY_ENV}={path} does not exist"
                if os.environ.get(LIBRARY_ENV)
                else f"{LIBRARY_NAME} is not installed next to {os.path.dirname(os.path.abspath(__file__))}"
            )
            raise errors.InternalError(
                f"cannot load the fff library: {how}. Install the package with `pip install .` "
                "from the fff repository (it builds the library with Go >= 1.26), or build it with "
                "`go build -buildmode=c-shared -o build/libfff.so ./libfff/capi` and set "
                f"{LIBRARY_ENV}=build/libfff.so"
            )
        try:
            L = ctypes.CDLL(path)
        except OSError as e:
            if "static TLS" in str(e):
                raise errors.InternalError(
                    f"cannot load the fff library {path}: {e}. The libraries loaded so far used up the "
                    "thread-local storage glibc keeps for libraries loaded later: start Python with "
                    "GLIBC_TUNABLES=glibc.rtld.optional_static_tls=65536 in the environment"
                ) from e
            raise errors.InternalError(
                f"cannot load the fff library {path}: {e}. Rebuild it (`pip install .` or "
                "`go build -buildmode=c-shared -o build/libfff.so ./libfff/capi`)"
            ) from e
        for name, (restype, argtypes) in _PROTOTYPES.items():
            try:
                fn = getattr(L, name)
            except AttributeError as e:
                raise errors.InternalError(
                    f"the fff library {path} has no {name}: it is older than this Python package; "
                    "rebuild it (`pip install .`)"
                ) from e
            fn.restype = restype
            fn.argtypes = argtypes
        _pid = os.getpid()
        _lib = L
        return L


def lib() -> Any:
    """The loaded library; loads it on first use. Raises ForkError after fork."""
    L = _lib
    if L is not None:
        if _forked or os.getpid() != _pid:
            raise errors.ForkError()
        return L
    return _load()


def errmsg() -> str:
    L = _lib
    if L is None:
        return ""
    m = L.fff_errmsg()
    return m.decode("utf-8", "replace") if m else ""


def error(code: int, filename: Optional[str] = None) -> errors.Error:
    """The exception for a failed call's code; call right after the failure."""
    return errors.from_code(code, errmsg(), filename)


INT64_MAX = (1 << 63) - 1


def offset_arg(value: Any, filename: Optional[str] = None, what: str = "offset") -> int:
    """Check a file offset or size before ctypes sees it: ctypes silently
    wraps an int that does not fit int64 (2**64 + 5 becomes 5, a write onto
    the file's start). Negative: EINVAL; past int64: EFBIG (the library
    refuses anything past its largest file size with EFBIG too)."""
    try:
        v = int(value.__index__())
    except AttributeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None
    if v < 0:
        raise errors.from_code(errors.FFF_EINVAL, f"{what} {v} is negative", filename)
    if v > INT64_MAX:
        raise errors.from_code(errors.FFF_EFBIG, f"{what} {v} does not fit in 64 bits: beyond the largest file size", filename)
    return v


def check(rc: int, filename: Optional[str] = None) -> None:
    """Raise the exception for a non-zero return code."""
    if rc != 0:
        raise error(rc, filename)


def check64(n: int, filename: Optional[str] = None) -> int:
    """Return a count, or raise the exception for a negated error code."""
    if n < 0:
        raise error(-n, filename)
    return n


def fspath(path: PathLike) -> bytes:
    """A path argument as the bytes the C API takes."""
    return os.fsencode(os.fspath(path))


def display(path: PathLike) -> str:
    p = os.fspath(path)
    return p if isinstance(p, str) else os.fsdecode(p)


class _Pin:
    """Keeps a buffer's export alive while the library uses its memory."""

    __slots__ = ("obj", "view", "anchor")

    def __init__(self, obj: Any, view: Optional[memoryview], anchor: Any) -> None:
        self.obj = obj
        self.view = view
        self.anchor = anchor

    def release(self) -> None:
        self.anchor = None
        if self.view is not None:
            try:
                self.view.release()
            except (BufferError, ValueError):
                pass
            self.view = None
        self.obj = None


def buffer_address(obj: Any, writable: bool) -> Tuple[int, int, _Pin]:
    """(address, length in bytes, pin) of a C-contiguous buffer, without a copy.

    Release the pin (``pin.release()``) when the library is done with the
    memory: it holds the buffer export.
    """
    if not writable and isinstance(obj, bytes):
        # ctypes hands the bytes object's own storage to C.
        n = len(obj)
        if n == 0:
            return 0, 0, _Pin(obj, None, None)
        cp = ctypes.c_char_p(obj)
        return ctypes.cast(cp, c_void_p).value or 0, n, _Pin(obj, None, cp)
    view = memoryview(obj)
    n = view.nbytes
    if n == 0:
        return 0, 0, _Pin(obj, view, None)
    if not view.c_contiguous:
        view.release()
        raise BufferError("fff needs a C-contiguous buffer (e.g. numpy.ascontiguousarray(a))")
    if view.readonly:
        if writable:
            view.release()
            raise TypeError(f"fff needs a writable buffer, got a read-only {type(obj).__name__}")
        # ctypes cannot address read-only memory; numpy can.
        import numpy as np

        a = np.frombuffer(view, dtype=np.uint8)
        return int(a.ctypes.data), n, _Pin(obj, view, a)
    anchor = ctypes.c_ubyte.from_buffer(view)  # the first byte: its address is the buffer's
    return ctypes.addressof(anchor), n, _Pin(obj, view, anchor)
