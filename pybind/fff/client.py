"""Clients of an fff cluster and the namespace calls (stat, listdir, ...)."""

from __future__ import annotations

import ctypes
import os
import stat as _stat
import threading
import weakref
from typing import Any, Dict, List, Optional

from . import _native, errors
from ._native import PathLike

__all__ = ["Client", "StatResult", "connect", "default_client"]

ENV_CLUSTER = "FFF_CLUSTER"
ENV_TOKEN = "FFF_TOKEN"


class StatResult:
    """What :meth:`Client.stat` reports; reads like :class:`os.stat_result`."""

    __slots__ = (
        "st_mode",
        "st_ino",
        "st_dev",
        "st_nlink",
        "st_uid",
        "st_gid",
        "st_size",
        "st_atime_ns",
        "st_mtime_ns",
        "st_ctime_ns",
        "chunk_size",
        "stripe",
    )

    def __init__(self, st: _native.StatT) -> None:
        self.st_mode: int = st.mode
        self.st_ino: int = st.ino
        self.st_dev: int = 0
        self.st_nlink: int = st.nlink
        self.st_uid: int = st.uid
        self.st_gid: int = st.gid
        self.st_size: int = st.size
        self.st_atime_ns: int = st.atime_ns
        self.st_mtime_ns: int = st.mtime_ns
        self.st_ctime_ns: int = st.ctime_ns
        self.chunk_size: int = st.chunk_size  # bytes per chunk; 0 for directories and symlinks
        self.stripe: int = st.stripe  # chains the file is striped over

    @property
    def st_atime(self) -> float:
        return self.st_atime_ns / 1e9

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9

    @property
    def st_ctime(self) -> float:
        return self.st_ctime_ns / 1e9

    def is_dir(self) -> bool:
        return _stat.S_ISDIR(self.st_mode)

    def is_file(self) -> bool:
        return _stat.S_ISREG(self.st_mode)

    def is_symlink(self) -> bool:
        return _stat.S_ISLNK(self.st_mode)

    def __repr__(self) -> str:
        return (
            f"fff.StatResult(st_mode={_stat.filemode(self.st_mode)}, st_ino={self.st_ino}, "
            f"st_nlink={self.st_nlink}, st_uid={self.st_uid}, st_gid={self.st_gid}, "
            f"st_size={self.st_size}, st_mtime={self.st_mtime:.3f}, chunk_size={self.chunk_size}, "
            f"stripe={self.stripe})"
        )


class Client(_native.Closing):
    """A connection to an fff cluster. Make one with :func:`fff.connect`.

    A client is thread-safe. It pickles as its address and token and connects
    again, lazily, in the process that unpickles it. In a child forked after
    it connected it raises :class:`fff.ForkError`.
    """

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, *, _lazy: bool = False) -> None:
        self.address = address
        self.token = token
        self._handle = 0
        self._pid = 0
        self._closed = False
        self._mu = threading.Lock()
        if not _lazy:
            self._connect()

    # --- handle management -------------------------------------------------

    def _connect(self) -> int:
        L = _native.lib()
        h = ctypes.c_int64(0)
        # The library's Go runtime sees the environment of the process start
        # only: resolve FFF_CLUSTER/FFF_TOKEN here so os.environ changes count.
        address = self.address or os.environ.get(ENV_CLUSTER) or None
        token = self.token or os.environ.get(ENV_TOKEN) or None
        a = address.encode() if address else None
        t = token.encode() if token else None
        _native.check(L.fff_connect(a, t, ctypes.byref(h)))
        self._handle, self._pid = h.value, os.getpid()
        _connected.add(self)
        return self._handle

    @property
    def handle(self) -> int:
        """The C handle; connects in a process that unpickled this client."""
        if self._closed:
            raise ValueError("the fff client is closed: make a new one with fff.connect()")
        h = self._handle
        if h and self._pid == os.getpid():
            _native.check_fork()
            return h
        if h:  # inherited over fork
            raise errors.ForkError()
        with self._mu:
            if self._handle:
                return self._handle
            return self._connect()

    def close(self) -> None:
        """Disconnect. Files and datasets opened through the client fail afterwards."""
        if self._closed:
            return
        self._closed = True
        h, self._handle = self._handle, 0
        if h and self._pid == os.getpid() and not _native.forked():
            _native.check(_native.lib().fff_close(h))

    def __getstate__(self) -> dict:
        return {"address": self.address, "token": self.token}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["address"], state["token"], _lazy=True)  # type: ignore[misc]

    def __repr__(self) -> str:
        where = self.address or "default cluster"
        return f"<fff.Client {where}{' closed' if self._closed else ''}>"

    def stats(self) -> Dict[str, float]:
        """This client's counters since it connected (see :func:`fff.stats`)."""
        if not self._handle or self._pid != os.getpid() or self._closed:
            return _stats_dict(_native.StatsT())
        st = _native.StatsT()
        _native.check(_native.lib().fff_client_stats(self.handle, ctypes.byref(st)))
        return _stats_dict(st)

    # --- namespace ---------------------------------------------------------

    def stat(self, path: PathLike) -> StatResult:
        """Status of a path ("/a/b" or "fff:///a/b"); follows no symlink at the end."""
        h = self.handle
        st = _native.StatT()
        _native.check(_native.lib().fff_stat(h, _native.fspath(path), ctypes.byref(st)), _native.display(path))
        return StatResult(st)

    def exists(self, path: PathLike) -> bool:
        """Whether path exists."""
        try:
            self.stat(path)
            return True
        except FileNotFoundError:
            return False

    def isdir(self, path: PathLike) -> bool:
        """Whether path is a directory."""
        try:
            return self.stat(path).is_dir()
        except FileNotFoundError:
            return False

    def listdir(self, path: PathLike = "/") -> List[str]:
        """Names of a directory's entries (without "." and ".."), sorted."""
        h = self.handle
        L = _native.lib()
        names = ctypes.c_void_p()
        count = ctypes.c_int64(0)
        _native.check(
            L.fff_listdir(h, _native.fspath(path), ctypes.byref(names), ctypes.byref(count)), _native.display(path)
        )
        out: List[str] = []
        p = names.value
        if not p:
            return out
        try:
            for _ in range(count.value):
                b = ctypes.string_at(p)
                out.append(os.fsdecode(b))
                p += len(b) + 1
        finally:
            L.fff_free(names)
        out.sort()
        return out

    def mkdir(self, path: PathLike, mode: int = 0o777) -> None:
        """Make one directory; its parent must exist."""
        h = self.handle
        _native.check(_native.lib().fff_mkdir(h, _native.fspath(path), mode, 0), _native.display(path))

    def makedirs(self, path: PathLike, mode: int = 0o777, exist_ok: bool = False) -> None:
        """Make a directory and any missing parents, like :func:`os.makedirs`."""
        h = self.handle
        L = _native.lib()
        p = _native.fspath(path)
        if exist_ok:
            try:
                _native.check(L.fff_mkdir(h, p, mode, 1), _native.display(path))
            except FileExistsError:
                if not self.isdir(path):
                    raise
            return
        try:
            _native.check(L.fff_mkdir(h, p, mode, 0), _native.display(path))
        except FileNotFoundError:
            parent = p.rstrip(b"/").rsplit(b"/", 1)[0]
            if parent in (b"", b"fff://", b"fff:"):
                raise
            self.makedirs(parent, mode, exist_ok=True)
            _native.check(L.fff_mkdir(h, p, mode, 0), _native.display(path))

    def remove(self, path: PathLike, recursive: bool = False) -> None:
        """Remove a file, symlink or empty directory; a whole tree with recursive=True."""
        h = self.handle
        _native.check(_native.lib().fff_remove(h, _native.fspath(path), int(bool(recursive))), _native.display(path))

    def rename(self, src: PathLike, dst: PathLike) -> None:
        """Rename src to dst (replacing a file at dst)."""
        h = self.handle
        _native.check(
            _native.lib().fff_rename(h, _native.fspath(src), _native.fspath(dst)), _native.display(src)
        )

    def open(
        self,
        path: PathLike,
        mode: str = "rb",
        buffering: int = -1,
        *,
        perm: int = 0o644,
    ) -> Any:
        """Open a file in the cluster; see :func:`fff.open`."""
        from .file import open_file

        return open_file(self, path, mode, buffering, perm=perm)


# The clients connected in this process, for fff.stats().
_connected: "weakref.WeakSet[Client]" = weakref.WeakSet()

# The counters of fff_stats_t (the rest are read latencies).
_COUNTERS = tuple(name for name, _ in _native.StatsT._fields_ if not name.startswith("read_latency_"))


def _stats_dict(st: _native.StatsT) -> Dict[str, float]:
    d: Dict[str, float] = {k: int(getattr(st, k)) for k in _COUNTERS}
    d["socket_bytes"] = d["read_bytes"] - d["local_bytes"]
    n = int(st.read_latency_count)
    d["read_latency_mean_s"] = st.read_latency_sum_ns / n / 1e9 if n else 0.0
    d["read_latency_p50_s"] = st.read_latency_p50_ns / 1e9
    d["read_latency_p99_s"] = st.read_latency_p99_ns / 1e9
    d["read_latency_max_s"] = st.read_latency_max_ns / 1e9
    return d


def stats() -> Dict[str, float]:
    """What this process's fff clients did since they connected, summed.

    Counters: ``reads`` (read operations: each sample of a batch, each
    pread), ``read_bytes`` (``local_bytes`` read from a same-host node's
    files directly, ``socket_bytes`` through storage nodes),
    ``read_errors``, ``read_calls`` (batched calls), ``local_fallbacks``,
    ``retries`` (chunk reads sent again: failovers, outages, chunks being
    written), ``writes`` and ``write_bytes`` (chunk writes sent). Read
    latency of the batched calls: ``read_latency_mean_s``, ``_p50_s``,
    ``_p99_s`` (bucket upper bounds, at most 2x off; over several clients
    the largest) and ``_max_s``. Reads in DataLoader workers happen in the
    workers' processes: :meth:`fff.torch.DataLoader.stats` reports the
    loader's side.
    """
    total: Dict[str, float] = _stats_dict(_native.StatsT())
    latency_sum = 0.0
    for c in list(_connected):
        s = c.stats()
        for k in (*_COUNTERS, "socket_bytes"):
            total[k] += s[k]
        latency_sum += s["read_latency_mean_s"] * s["read_calls"]
        for k in ("read_latency_p50_s", "read_latency_p99_s", "read_latency_max_s"):
            total[k] = max(total[k], s[k])
    total["read_latency_mean_s"] = latency_sum / total["read_calls"] if total["read_calls"] else 0.0
    return total


def connect(address: Optional[str] = None, token: Optional[str] = None) -> Client:
    """Connect to a cluster.

    address "HOST:PORT" (default: FFF_CLUSTER, then the cluster `fff up`
    recorded); token (default: FFF_TOKEN, then the recorded one). Raises
    :class:`fff.ClusterUnavailableError` when no cluster answers and
    :class:`fff.AuthenticationError` when the token is refused.
    """
    return Client(address, token)


_default: Optional[Client] = None
_default_lock = threading.Lock()


def _reset_default_after_fork() -> None:
    global _default, _default_lock
    _default_lock = threading.Lock()
    # The inherited client cannot be used here; never close it (no library calls).
    if _default is not None:
        _default._closed = True
        _default._handle = 0
    _default = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_default_after_fork)


def default_client() -> Client:
    """The process's default client (made on first use, from FFF_CLUSTER/FFF_TOKEN)."""
    global _default
    c = _default
    if c is not None and c._pid == os.getpid() and not c._closed:
        _native.check_fork()
        return c
    with _default_lock:
        c = _default
        if c is None or c._pid != os.getpid() or c._closed:
            c = _default = connect()
        return c
