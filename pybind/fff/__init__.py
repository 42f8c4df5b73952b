"""fff: Python client of the fff distributed file system for AI training data.

``import fff`` loads nothing native: the library (libfff.so) is loaded by the
first call that needs it. Quick tour::

    import fff
    fff.makedirs("/data", exist_ok=True)
    with fff.open("/data/x.bin", "wb") as f:
        f.write(b"hello")
    fff.listdir("/data")

    from fff import ffrecord
    with ffrecord.Writer("fff:///data/train.ffr") as w:
        w.write(b"sample 0")
    r = ffrecord.Reader("fff:///data/train.ffr")
    samples = r.read([0])          # numpy uint8 arrays

In a child forked after the library was loaded every call raises
:class:`fff.ForkError`: start workers with forkserver or spawn (see
docs/python.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, List

from . import _native
from ._native import PathLike
from .client import Client, StatResult, connect, default_client, stats
from .errors import (
    AlreadyExistsError,
    AuthenticationError,
    BufferTooSmallError,
    CancelledError,
    ChecksumError,
    ClusterUnavailableError,
    CorruptFileError,
    DirectoryNotEmptyError,
    Error,
    FileSystemError,
    ForkError,
    InternalError,
    IsDirectoryError,
    NotDirectoryError,
    NotFoundError,
    OperationTimeoutError,
    PermissionDeniedError,
)

if TYPE_CHECKING:
    from . import ffrecord as ffrecord  # noqa: F401
    from .file import FileObject

__version__ = "0.1.0"

__all__ = [
    "connect",
    "Client",
    "StatResult",
    "default_client",
    "stats",
    "open",
    "listdir",
    "stat",
    "exists",
    "isdir",
    "mkdir",
    "makedirs",
    "remove",
    "rename",
    "library_version",
    "ffrecord",
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
]


def open(path: PathLike, mode: str = "rb", buffering: int = -1, *, perm: int = 0o644) -> "FileObject":
    """Open a file in the default cluster, like Python's open() for binary modes.

    mode: 'rb', 'wb', 'ab', 'xb', 'r+b', 'w+b', 'a+b', 'x+b' (text modes raise
    ValueError: wrap the binary file in io.TextIOWrapper). buffering: 0 for
    the unbuffered fff.file.RawFile, -1 for a 1 MiB buffer, or a size. perm:
    permission bits of a new file. flush() makes written bytes durable.
    """
    from .file import _parse_mode

    _parse_mode(mode)  # a text mode is refused before connecting
    return default_client().open(path, mode, buffering, perm=perm)


def listdir(path: PathLike = "/") -> List[str]:
    """Names of a directory's entries, sorted."""
    return default_client().listdir(path)


def stat(path: PathLike) -> StatResult:
    """Status of a path: st_size, st_mode, st_uid, st_gid, st_mtime, ..., is_dir()."""
    return default_client().stat(path)


def exists(path: PathLike) -> bool:
    """Whether path exists."""
    return default_client().exists(path)


def isdir(path: PathLike) -> bool:
    """Whether path is a directory."""
    return default_client().isdir(path)


def mkdir(path: PathLike, mode: int = 0o777) -> None:
    """Make one directory (its parent must exist)."""
    default_client().mkdir(path, mode)


def makedirs(path: PathLike, mode: int = 0o777, exist_ok: bool = False) -> None:
    """Make a directory and its missing parents, like os.makedirs."""
    default_client().makedirs(path, mode, exist_ok=exist_ok)


def remove(path: PathLike, recursive: bool = False) -> None:
    """Remove a file or an empty directory; a whole tree with recursive=True."""
    default_client().remove(path, recursive=recursive)


def rename(src: PathLike, dst: PathLike) -> None:
    """Rename src to dst."""
    default_client().rename(src, dst)


def library_version() -> str:
    """Version of the loaded libfff.so (loads it)."""
    v = _native.lib().fff_version()
    return v.decode() if v else ""


_LAZY_SUBMODULES = ("ffrecord", "torch", "file")


def __getattr__(name: str) -> Any:
    # fff.ffrecord (numpy) and fff.torch (torch) are imported on first use.
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'fff' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
