"""Exceptions raised by the fff package.

Every exception fff raises for a failed library call derives from
:class:`fff.Error`. Where a built-in exception says the same thing, the fff
class derives from it too, so ``except FileNotFoundError`` and
``except fff.Error`` both catch a missing file. Exceptions that derive from
:class:`OSError` carry ``errno`` (a POSIX errno) and ``filename``; every fff
exception carries ``code``, the C API's error code (see ``libfff/capi/fff.h``).
"""

from __future__ import annotations

import errno as _errno
from typing import Dict, Optional, Type

__all__ = [
    "Error",
    "NotFoundError",
    "AlreadyExistsError",
    "PermissionDeniedError",
    "NotDirectoryError",
    "IsDirectoryError",
    "DirectoryNotEmptyError",
    "OperationTimeoutError",
    "CancelledError",
    "ChecksumError",
    "CorruptFileError",
    "ClusterUnavailableError",
    "AuthenticationError",
    "BufferTooSmallError",
    "ForkError",
    "FileSystemError",
    "InternalError",
    "from_code",
    "FORK_HINT",
]

# C API error codes (libfff/capi/fff.h). POSIX codes keep their Linux values.
FFF_OK = 0
FFF_EPERM = 1
FFF_ENOENT = 2
FFF_EIO = 5
FFF_EBADF = 9
FFF_EAGAIN = 11
FFF_EACCES = 13
FFF_EEXIST = 17
FFF_EXDEV = 18
FFF_ENOTDIR = 20
FFF_EISDIR = 21
FFF_EINVAL = 22
FFF_EFBIG = 27
FFF_ENOSPC = 28
FFF_ENAMETOOLONG = 36
FFF_ENOTEMPTY = 39
FFF_ETIMEDOUT = 110
FFF_ECANCELED = 125
FFF_ECHECKSUM = 1001
FFF_ECORRUPT = 1002
FFF_EUNAVAILABLE = 1003
FFF_EAUTH = 1004
FFF_ESHORTBUF = 1005
FFF_EFORKED = 1006
FFF_EINTERNAL = 1099

FORK_HINT = (
    "this process was forked after the fff library was loaded in its parent, and the "
    "library's runtime does not survive fork (a call would hang). Use "
    "fff.torch.DataLoader (it starts workers with forkserver), or pass "
    "multiprocessing_context='forkserver' or 'spawn' to torch.utils.data.DataLoader, "
    "or open the dataset only inside the worker (fff objects pickle as their path "
    "and settings and reopen lazily in the process that uses them)"
)

UNAVAILABLE_HINT = (
    "start a local cluster with `fff up --daemon`, or point at a running one with "
    "FFF_CLUSTER=HOST:PORT (and FFF_TOKEN), or fff.connect(address=..., token=...)"
)

AUTH_HINT = (
    "check the token: FFF_TOKEN, fff.connect(token=...), or the one `fff up` recorded "
    "in ~/.config/fff/cluster.json; an admin issues a new one with `fff admin user token NAME`"
)

CHECKSUM_HINT = (
    "the stored bytes are damaged; `fff ffr verify PATH` lists every damaged sample, "
    "rewrite them from the source data"
)

CORRUPT_HINT = "the file is not a valid FFRecord file; check it with `fff ffr inspect PATH`"


class Error(Exception):
    """Base class of every error the fff library reports."""

    code: int = FFF_EINTERNAL

    def __str__(self) -> str:
        msg = getattr(self, "strerror", None)
        if isinstance(self, OSError) and msg:
            fn = self.filename
            if fn is not None and str(fn) not in msg:
                return f"{msg}: {fn!s}"
            return str(msg)
        return super().__str__()


class NotFoundError(Error, FileNotFoundError):
    """A path does not exist (ENOENT)."""

    code = FFF_ENOENT


class AlreadyExistsError(Error, FileExistsError):
    """A path already exists (EEXIST)."""

    code = FFF_EEXIST


class PermissionDeniedError(Error, PermissionError):
    """The cluster refused the operation for this user (EACCES, EPERM)."""

    code = FFF_EACCES


class NotDirectoryError(Error, NotADirectoryError):
    """A path component is not a directory (ENOTDIR)."""

    code = FFF_ENOTDIR


class IsDirectoryError(Error, IsADirectoryError):
    """A file operation named a directory (EISDIR)."""

    code = FFF_EISDIR


class DirectoryNotEmptyError(Error, OSError):
    """A directory to remove is not empty (ENOTEMPTY): pass recursive=True."""

    code = FFF_ENOTEMPTY


class OperationTimeoutError(Error, TimeoutError):
    """An operation did not finish in time (ETIMEDOUT)."""

    code = FFF_ETIMEDOUT


class CancelledError(Error, OSError):
    """The operation was cancelled (ECANCELED), e.g. a cancelled PendingBatch."""

    code = FFF_ECANCELED


class ChecksumError(Error, IOError):
    """Stored bytes failed their checksum (CRC32C): the data is damaged."""

    code = FFF_ECHECKSUM


class CorruptFileError(Error, ValueError):
    """A file is not a valid FFRecord file (header, index, footer)."""

    code = FFF_ECORRUPT


class ClusterUnavailableError(Error, ConnectionError):
    """The cluster cannot be reached or has no serving storage target."""

    code = FFF_EUNAVAILABLE


class AuthenticationError(Error, PermissionError):
    """The cluster refused the token."""

    code = FFF_EAUTH


class BufferTooSmallError(Error, ValueError):
    """A caller's buffer is smaller than the data to read into it."""

    code = FFF_ESHORTBUF


class ForkError(Error, RuntimeError):
    """fff was used in a child forked after the library was loaded in its parent."""

    code = FFF_EFORKED

    def __init__(self, message: Optional[str] = None) -> None:
        super().__init__(message or FORK_HINT)


class FileSystemError(Error, OSError):
    """Any other POSIX error the cluster or the local file system reported."""

    code = FFF_EIO


class InternalError(Error):
    """A bug in fff: please report it with the message."""

    code = FFF_EINTERNAL


# OSError-derived classes by C code.
_OS_CLASSES: Dict[int, Type[Error]] = {
    FFF_ENOENT: NotFoundError,
    FFF_EEXIST: AlreadyExistsError,
    FFF_EACCES: PermissionDeniedError,
    FFF_EPERM: PermissionDeniedError,
    FFF_ENOTDIR: NotDirectoryError,
    FFF_EISDIR: IsDirectoryError,
    FFF_ENOTEMPTY: DirectoryNotEmptyError,
    FFF_ETIMEDOUT: OperationTimeoutError,
    FFF_ECANCELED: CancelledError,
    FFF_ECHECKSUM: ChecksumError,
    FFF_EUNAVAILABLE: ClusterUnavailableError,
    FFF_EAUTH: AuthenticationError,
}

# The POSIX errno an fff-specific code is reported with.
_POSIX_ERRNO: Dict[int, int] = {
    FFF_ECHECKSUM: _errno.EIO,
    FFF_EUNAVAILABLE: _errno.ECONNREFUSED,
    FFF_EAUTH: _errno.EACCES,
}

_HINTS: Dict[int, tuple] = {
    # code: (hint, words that show the message already says what to do)
    FFF_EUNAVAILABLE: (UNAVAILABLE_HINT, ("fff up",)),
    FFF_EAUTH: (AUTH_HINT, ("FFF_TOKEN", "token NAME")),
    FFF_ECHECKSUM: (CHECKSUM_HINT, ("verify",)),
    FFF_ECORRUPT: (CORRUPT_HINT, ("inspect", "verify")),
    FFF_ENOTEMPTY: ("remove it with recursive=True", ("recursive", "-r")),
}


def _with_hint(code: int, msg: str) -> str:
    h = _HINTS.get(code)
    if h is None:
        return msg
    hint, known = h
    if any(k in msg for k in known):
        return msg
    return f"{msg}: {hint}" if msg else hint


def from_code(code: int, message: str = "", filename: Optional[str] = None) -> Error:
    """Build the exception for C error code ``code`` with the library's message."""
    if code == FFF_EFORKED:
        return ForkError(f"{message}: {FORK_HINT}" if message else None)
    if not message:
        try:
            import os

            message = os.strerror(code) if code < 1000 else f"fff error {code}"
        except ValueError:
            message = f"fff error {code}"
    message = _with_hint(code, message)
    cls = _OS_CLASSES.get(code)
    e: Error
    if cls is not None:
        e = cls(_POSIX_ERRNO.get(code, code), message, filename)
    elif code == FFF_ECORRUPT:
        e = CorruptFileError(message)
    elif code == FFF_ESHORTBUF:
        e = BufferTooSmallError(message)
    elif 0 < code < 1000:
        e = FileSystemError(code, message, filename)
    else:
        e = InternalError(message)
    e.code = code
    return e
