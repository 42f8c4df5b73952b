"""The fff package against a real cluster: loading, files, namespace, errors, fork."""

from __future__ import annotations

import errno
import io
import json
import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fff

SIZES = [0, 1, 4095, 4096, (4 << 20) + 1]


def payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed + n).integers(0, 256, n, dtype=np.uint8).tobytes()


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (this one), with the tests' environment."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def test_import_loads_nothing_native(libfff_path: str) -> None:
    r = run_python(
        """
        import sys, fff
        maps = open("/proc/self/maps").read()
        assert "libfff" not in maps, "libfff.so loaded at import"
        assert not fff._native.loaded()
        assert "numpy" not in sys.modules, "import fff imported numpy"
        from fff import ffrecord  # numpy, still no library
        assert "libfff" not in open("/proc/self/maps").read()
        print(fff.library_version())
        assert "libfff" in open("/proc/self/maps").read()
        """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "empty library version"


# --- files ----------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_file_roundtrip(fff_dir: str, size: int) -> None:
    data = payload(size)
    path = f"{fff_dir}/f{size}.bin"
    with fff.open(path, "wb") as f:
        assert f.write(data) == size
    st = fff.stat(path)
    assert st.st_size == size and st.is_file() and not st.is_dir()

    with fff.open(path, "rb") as f:
        assert f.read() == data
    with fff.open("fff://" + path, "rb") as f:  # fff:///a/b names /a/b
        assert f.read() == data

    # readinto: into a numpy array, a bytearray and a memoryview slice.
    with fff.open(path, "rb", buffering=0) as f:
        a = np.zeros(size + 10, dtype=np.uint8)
        got = 0
        while True:
            n = f.readinto(memoryview(a)[got:])
            if n == 0:
                break
            got += n
        assert got == size and a[:size].tobytes() == data
    with fff.open(path, "rb") as f:
        b = bytearray(size)
        assert f.readinto(b) == size and bytes(b) == data

    # pread through seek.
    if size:
        with fff.open(path, "rb", buffering=0) as f:
            off = size // 2
            assert f.seek(off) == off and f.tell() == off
            b = bytearray(size - off)
            assert f.readinto(b) == size - off and bytes(b) == data[off:]
            assert f.seek(-1, os.SEEK_END) == size - 1 and f.read(5) == data[-1:]
            c = bytearray(min(7, size))
            assert f.pread(c, 0) == len(c) and bytes(c) == data[: len(c)]


def test_file_write_modes(fff_dir: str) -> None:
    p = f"{fff_dir}/modes.bin"
    with fff.open(p, "xb") as f:
        f.write(b"hello ")
    with pytest.raises(FileExistsError) as ei:
        fff.open(p, "xb")
    assert isinstance(ei.value, fff.Error) and ei.value.errno == errno.EEXIST
    with fff.open(p, "ab") as f:
        f.write(b"world")
    with fff.open(p, "rb") as f:
        assert f.read() == b"hello world"
    with fff.open(p, "r+b") as f:
        f.seek(6)
        f.write(b"WORLD")
        f.seek(0)
        assert f.read() == b"hello WORLD"
        assert f.truncate(5) == 5
    assert fff.stat(p).st_size == 5
    with fff.open(p, "wb") as f:  # truncates
        f.write(memoryview(b"xyz"))
        f.write(np.frombuffer(b"123", dtype=np.uint8))
        f.flush()  # durable: another reader sees it now
        assert fff.stat(p).st_size == 6
    with fff.open(p, "rb") as f:
        assert f.read() == b"xyz123"
        assert f.name == p and f.mode == "rb"
        assert isinstance(f, io.BufferedReader)
        with pytest.raises(io.UnsupportedOperation):
            f.write(b"x")
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
    with fff.open(p, "rb", buffering=0) as raw:
        assert isinstance(raw, io.RawIOBase)
        assert raw.read(2) == b"xy" and raw.readall() == b"z123"
    f = fff.open(p, "rb")
    f.close()
    with pytest.raises(ValueError):
        f.read()


@pytest.mark.parametrize("mode", ["r", "w", "rt", "a+"])
def test_text_mode_refused(cluster: object, mode: str) -> None:
    with pytest.raises(ValueError, match="binary"):
        fff.open("/x", mode)


def test_large_unaligned_readinto(fff_dir: str) -> None:
    data = payload(3 << 20, 7)
    p = f"{fff_dir}/big.bin"
    with fff.open(p, "wb") as f:
        f.write(data)
    with fff.open(p, "rb") as f:
        buf = np.empty(len(data) + 1, dtype=np.uint8)[1:]  # unaligned on purpose
        assert f.readinto(buf) == len(data)
        assert buf.tobytes() == data


# --- namespace --------------------------------------------------------------------


def test_namespace(fff_dir: str) -> None:
    d = fff_dir
    fff.makedirs(f"{d}/a/b/c")
    fff.makedirs(f"{d}/a/b/c", exist_ok=True)
    with pytest.raises(FileExistsError):
        fff.makedirs(f"{d}/a/b/c")
    assert fff.stat(f"{d}/a/b").is_dir()
    assert fff.stat(f"fff://{d}/a").is_dir()
    for name in ("z", "y", "x"):
        with fff.open(f"{d}/a/{name}", "wb") as f:
            f.write(name.encode())
    assert fff.listdir(f"{d}/a") == ["b", "x", "y", "z"]
    fff.rename(f"{d}/a/x", f"{d}/a/b/x2")
    assert fff.listdir(f"{d}/a/b") == ["c", "x2"]
    assert fff.exists(f"{d}/a/b/x2") and not fff.exists(f"{d}/a/x")
    fff.remove(f"{d}/a/y")
    with pytest.raises(OSError) as ei:
        fff.remove(f"{d}/a")
    assert ei.value.errno == errno.ENOTEMPTY and "recursive" in str(ei.value)
    fff.remove(f"{d}/a", recursive=True)
    assert fff.listdir(d) == []
    st = fff.stat(d)
    assert st.st_mtime > 0 and st.st_nlink >= 1 and "StatResult" in repr(st)


def test_namespace_errors(fff_dir: str) -> None:
    d = fff_dir
    with pytest.raises(FileNotFoundError) as ei:
        fff.stat(f"{d}/missing")
    e = ei.value
    assert isinstance(e, fff.NotFoundError) and isinstance(e, fff.Error)
    assert e.errno == errno.ENOENT and e.filename == f"{d}/missing"
    assert "missing" in str(e)
    with pytest.raises(FileNotFoundError):
        fff.open(f"{d}/missing", "rb")
    with pytest.raises(FileNotFoundError):
        fff.remove(f"{d}/missing")
    with pytest.raises(FileNotFoundError):
        fff.listdir(f"{d}/missing")
    with fff.open(f"{d}/file", "wb") as f:
        f.write(b"x")
    with pytest.raises(NotADirectoryError) as ei2:
        fff.listdir(f"{d}/file")
    assert isinstance(ei2.value, fff.NotDirectoryError)
    with pytest.raises(NotADirectoryError):
        fff.mkdir(f"{d}/file/sub")
    with pytest.raises(IsADirectoryError):
        with fff.open(d, "wb"):
            pass
    with pytest.raises(FileExistsError):
        fff.mkdir(f"{d}/file")


def test_permission_denied(cluster, fff_dir: str) -> None:
    d = fff_dir
    fff.mkdir(f"{d}/private", 0o700)
    r = cluster.cli("admin", "user", "add", f"bob{os.getpid()}", "--uid", "4242")
    token = r.stdout.strip().splitlines()[-1]
    with fff.connect(token=token) as bob:
        assert bob.stat(d).is_dir()
        with pytest.raises(PermissionError) as ei:
            bob.mkdir(f"{d}/private/x")
        assert isinstance(ei.value, fff.PermissionDeniedError) and ei.value.errno in (errno.EACCES, errno.EPERM)
        with pytest.raises(PermissionError):
            bob.listdir(f"{d}/private")


def test_bad_token(cluster) -> None:
    with pytest.raises(fff.AuthenticationError) as ei:
        with fff.connect(token="not-a-token") as c:
            c.listdir("/")
    assert isinstance(ei.value, PermissionError)
    assert "token" in str(ei.value).lower()


def test_cluster_unavailable(cluster) -> None:
    with pytest.raises(fff.ClusterUnavailableError) as ei:
        with fff.connect(address="127.0.0.1:1", token=cluster.token) as c:
            c.listdir("/")
    assert isinstance(ei.value, ConnectionError)
    assert "fff up" in str(ei.value)


def test_client_object(cluster, fff_dir: str) -> None:
    c = fff.connect()
    with c.open(f"{fff_dir}/c.bin", "wb") as f:
        f.write(b"abc")
    c2 = pickle.loads(pickle.dumps(c))  # address and token; connects lazily
    assert c2.listdir(fff_dir) == ["c.bin"]
    c2.close()
    c.close()
    with pytest.raises(ValueError, match="closed"):
        c.listdir("/")
    assert fff.default_client() is fff.default_client()


# --- fork safety ------------------------------------------------------------------


def test_forked_child_gets_fork_error(cluster, fff_dir: str, tmp_path) -> None:
    local = str(tmp_path / "fork.ffr")
    remote = f"{fff_dir}/fork.bin"
    with fff.open(remote, "wb") as f:
        f.write(b"data")
    code = """
        import json, os, sys, time
        import fff
        from fff import ffrecord
        local, remote = sys.argv[1], sys.argv[2]
        with ffrecord.Writer(local) as w:
            w.write(b"sample")
        r = ffrecord.Reader(local)
        assert r.read_one(0).tobytes() == b"sample"
        f = fff.open(remote, "rb")
        fff.listdir("/")
        pid = os.fork()
        if pid == 0:
            out = {}
            calls = {
                "listdir": lambda: fff.listdir("/"),
                "connect": lambda: fff.connect(),
                "file": lambda: f.read(),
                "reader": lambda: r.read([0]),
                "new_reader": lambda: ffrecord.Reader(local),
                "writer": lambda: ffrecord.Writer(local + ".2"),
                "version": fff.library_version,
            }
            for name, fn in calls.items():
                t = time.monotonic()
                try:
                    fn()
                    out[name] = "no error"
                except fff.ForkError as e:
                    out[name] = "ForkError" if "forkserver" in str(e) and isinstance(e, RuntimeError) else "bad message: " + str(e)
                except BaseException as e:
                    out[name] = type(e).__name__ + ": " + str(e)
                if time.monotonic() - t > 2:
                    out[name] += " (slow)"
            print(json.dumps(out), flush=True)
            sys.exit(0)  # a normal exit: finalizers of inherited objects must not hang
        deadline = time.monotonic() + 30
        while True:
            p, status = os.waitpid(pid, os.WNOHANG)
            if p:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                print("child hung", flush=True)
                sys.exit(3)
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(status) == 0, status
        # The parent goes on working.
        assert f.read() == b"data" and r.read_one(0).tobytes() == b"sample"
        print("parent ok", flush=True)
    """
    r = run_python(code, local, remote, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "parent ok", r.stdout + r.stderr
    child = json.loads(lines[0])
    assert child == {k: "ForkError" for k in child}, child
    assert len(child) == 7
    assert "Exception ignored" not in r.stderr, r.stderr  # finalizers in the child stay quiet
