"""fff.ffrecord against real files: local and in a cluster, v1 and v2."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from multiprocessing import shared_memory
from typing import List, Tuple

import numpy as np
import pytest

import fff
from fff import ffrecord


def make_samples(n: int, seed: int = 1, big: bool = False) -> List[bytes]:
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 4095, 4096, 4097] + [int(s) for s in rng.integers(1, 20000, max(n - 5, 0))]
    if big:
        sizes[-1] = (4 << 20) + 1
    return [rng.integers(0, 256, s, dtype=np.uint8).tobytes() for s in sizes[:n]]


def write(path: str, samples: List[bytes], version: int = 2) -> None:
    with ffrecord.Writer(path, version=version) as w:
        for s in samples:
            w.write(s)
        assert w.count == len(samples)


def check_reader(r: ffrecord.Reader, samples: List[bytes]) -> None:
    n = len(samples)
    assert len(r) == n
    assert r.sizes.tolist() == [len(s) for s in samples]
    assert r.sizes.dtype == np.int64
    for i in (0, n // 2, n - 1, -1, -n):
        a = r.read_one(i)
        assert a.dtype == np.uint8 and a.tobytes() == samples[i]
    idx = [n - 1, 0, 3, 3, -2]
    got = r.read(idx)
    assert [g.tobytes() for g in got] == [samples[i] for i in idx]
    # One buffer: the samples are views into it, back to back.
    base = got[0].base
    assert all(g.base is base for g in got)
    assert [g.tobytes() for g in r.read(np.arange(n))] == samples
    assert [g.tobytes() for g in r.read(range(1, 4))] == samples[1:4]
    assert [g.tobytes() for g in r[2:5]] == samples[2:5]
    assert r.read([]) == []
    with pytest.raises(IndexError):
        r.read_one(n)
    with pytest.raises(IndexError):
        r.read([0, -n - 1])


@pytest.mark.parametrize("version", [1, 2])
def test_local_roundtrip(tmp_path, version: int) -> None:
    samples = make_samples(40, seed=version, big=True)
    p = str(tmp_path / f"v{version}.ffr")
    write(p, samples, version)
    with ffrecord.Reader(p) as r:
        check_reader(r, samples)
    with ffrecord.Reader(p, check=False) as r:
        check_reader(r, samples)


@pytest.mark.parametrize("version", [1, 2])
def test_fff_roundtrip(fff_dir: str, version: int) -> None:
    samples = make_samples(30, seed=10 + version, big=True)
    p = f"fff://{fff_dir}/v{version}.ffr"
    write(p, samples, version)
    assert fff.stat(p).st_size > sum(map(len, samples))
    with ffrecord.Reader(p) as r:
        check_reader(r, samples)
    c = fff.connect()
    with ffrecord.Reader(p, client=c) as r:
        check_reader(r, samples)
    c.close()


def test_ordinary_user_reads(cluster, fff_dir: str) -> None:
    """An ordinary user's batched reads go through the capabilities meta
    grants on open (storage refuses a chunk without one), and a file the
    user may not read is refused before any byte is read."""
    samples = make_samples(20, seed=77, big=True)
    p = f"fff://{fff_dir}/shared.ffr"
    write(p, samples, 2)
    with fff.open(f"{fff_dir}/secret", "wb", perm=0o600) as f:
        f.write(b"admin only")
    r = cluster.cli("admin", "user", "add", f"reader{os.getpid()}", "--uid", "4343")
    token = r.stdout.strip().splitlines()[-1]
    with fff.connect(token=token) as user:
        with ffrecord.Reader(p, client=user) as rd:
            check_reader(rd, samples)
        with pytest.raises(PermissionError):
            with user.open(f"{fff_dir}/secret", "rb") as f:
                f.read()


def test_keyed_writer(tmp_path) -> None:
    p = str(tmp_path / "keyed.ffr")
    with ffrecord.Writer(p) as w:
        w.write_keyed("a", b"alpha")
        w.write_keyed(b"b", np.frombuffer(b"beta", dtype=np.uint8))
    r = ffrecord.Reader(p)
    assert [x.tobytes() for x in r.read([0, 1])] == [b"alpha", b"beta"]
    w1 = ffrecord.Writer(str(tmp_path / "v1.ffr"), version=1)
    with pytest.raises(ValueError, match="v2"):
        w1.write_keyed("a", b"x")
    w1.abort()


def test_writer_discards_on_error(tmp_path, fff_dir: str) -> None:
    for p in (str(tmp_path / "gone.ffr"), f"fff://{fff_dir}/gone.ffr"):
        with pytest.raises(RuntimeError):
            with ffrecord.Writer(p) as w:
                w.write(b"x")
                raise RuntimeError("boom")
        assert w.closed
        with pytest.raises(FileNotFoundError):
            ffrecord.Reader(p)
        w = ffrecord.Writer(p)
        w.write(b"y")
        w.abort()
        with pytest.raises(FileNotFoundError):
            ffrecord.Reader(p)
    with pytest.raises(ValueError):
        ffrecord.Writer(str(tmp_path / "x.ffr"), version=3)


@pytest.mark.parametrize("where", ["local", "fff"])
def test_directory_dataset(tmp_path, fff_dir: str, where: str) -> None:
    if where == "local":
        d = str(tmp_path / "ds")
        os.makedirs(d)
    else:
        d = f"fff://{fff_dir}/ds"
        fff.makedirs(d)
    parts = [make_samples(7, seed=20 + i) for i in range(3)]
    # Files are taken in name order, whatever order they were written in; v1 and v2 mix.
    for i in (2, 0, 1):
        write(f"{d}/part-{i}.ffr", parts[i], version=1 if i == 1 else 2)
    samples = [s for p in parts for s in p]
    with ffrecord.Reader(d) as r:
        check_reader(r, samples)


def test_submit_wait(tmp_path) -> None:
    samples = make_samples(64, seed=5, big=True)
    p = str(tmp_path / "async.ffr")
    write(p, samples)
    r = ffrecord.Reader(p)
    rng = np.random.default_rng(0)
    batches = [rng.permutation(len(samples))[:16] for _ in range(6)]
    pending = [r.submit(b) for b in batches]  # several in flight
    assert all(len(pb) == 16 and len(pb.offsets) == 17 for pb in pending)
    for b, pb in zip(batches, pending):
        got = pb.wait(timeout=30)
        assert pb.done()
        assert [g.tobytes() for g in got] == [samples[i] for i in b]
        assert pb.wait() is not None  # waiting again returns the samples again
    # done() polls without blocking.
    pb = r.submit(np.arange(len(samples)))
    while not pb.done():
        pass
    assert [g.tobytes() for g in pb.wait()] == samples
    # A caller's buffer, offsets filled at submit.
    need = int(r.size_of([1, 2, 3]).sum())
    buf = np.zeros(need + 100, dtype=np.uint8)
    pb = r.submit([1, 2, 3], buf)
    assert pb.offsets.tolist() == [0, 1, 4096, need]
    got = pb.wait()
    assert [g.tobytes() for g in got] == samples[1:4]
    assert buf[: 1 + 4095].tobytes() == samples[1] + samples[2]
    # Cancel: returns once the library no longer touches the buffer.
    pb = r.submit(np.arange(len(samples)))
    pb.cancel()
    with pytest.raises(fff.CancelledError):
        pb.wait()
    assert r.submit([]).wait() == []
    # Dropping an unfinished batch cancels it.
    for _ in range(3):
        r.submit(np.arange(len(samples)))
    r.close()
    with pytest.raises(ValueError, match="closed"):
        r.read([0])


def test_read_into(tmp_path) -> None:
    samples = make_samples(20, seed=6)
    p = str(tmp_path / "into.ffr")
    write(p, samples)
    r = ffrecord.Reader(p)
    idx = [5, 6, 7, 0]
    need = int(r.size_of(idx).sum())
    shm = shared_memory.SharedMemory(create=True, size=need)
    try:
        offs = r.read_into(idx, shm.buf)
        assert offs.dtype == np.int64 and len(offs) == len(idx) + 1 and offs[-1] == need
        for k, i in enumerate(idx):
            assert bytes(shm.buf[offs[k] : offs[k + 1]]) == samples[i]
        with pytest.raises(fff.BufferTooSmallError):
            r.read_into(idx, bytearray(need - 1))
        with pytest.raises(TypeError):
            r.read_into(idx, bytes(need))
    finally:
        shm.close()
        shm.unlink()


def test_corrupt_sample_raises_checksum_error(tmp_path) -> None:
    marker = b"\xa5\x5a" * 3000
    samples = [b"first sample", marker, b"last sample"]
    p = str(tmp_path / "bad.ffr")
    write(p, samples)
    raw = bytearray(open(p, "rb").read())
    at = raw.find(marker)
    assert at > 0
    raw[at + 100] ^= 0xFF
    open(p, "wb").write(bytes(raw))
    r = ffrecord.Reader(p)
    assert r.read_one(0).tobytes() == b"first sample"
    with pytest.raises(fff.ChecksumError) as ei:
        r.read([0, 1, 2])
    e = ei.value
    assert isinstance(e, IOError) and isinstance(e, fff.Error)
    assert "bad.ffr" in str(e) and "1" in str(e)
    with pytest.raises(fff.ChecksumError):
        r.submit([1]).wait(timeout=30)
    # Without checking, the damaged bytes come back as they are.
    got = ffrecord.Reader(p, check=False).read_one(1).tobytes()
    assert got != marker and len(got) == len(marker)


def test_not_an_ffrecord_file(tmp_path) -> None:
    p = tmp_path / "junk.ffr"
    p.write_bytes(b"this is not an ffrecord file at all" * 10)
    with pytest.raises(fff.CorruptFileError) as ei:
        ffrecord.Reader(str(p))
    assert isinstance(ei.value, ValueError) and "junk.ffr" in str(ei.value)
    with pytest.raises(FileNotFoundError):
        ffrecord.Reader(str(tmp_path / "missing.ffr"))


def test_alloc_buffer_alignment() -> None:
    for n in (0, 1, 4096, 100000, 2 << 20, (8 << 20) + 3):
        b = ffrecord.alloc_buffer(n)
        assert b.dtype == np.uint8 and b.nbytes == n and b.flags.writeable
        if n:
            assert b.ctypes.data % 4096 == 0
        if n >= 2 << 20:
            assert b.ctypes.data % (2 << 20) == 0
        b[:] = 7


# --- pickling and other processes ------------------------------------------------


def _read_in_child(reader: ffrecord.Reader, idx: List[int]) -> Tuple[int, List[bytes]]:
    return os.getpid(), [a.tobytes() for a in reader.read(idx)]


@pytest.mark.parametrize("where", ["local", "fff"])
def test_pickled_reader_in_spawned_process(tmp_path, fff_dir: str, where: str) -> None:
    samples = make_samples(12, seed=8)
    p = str(tmp_path / "spawn.ffr") if where == "local" else f"fff://{fff_dir}/spawn.ffr"
    write(p, samples)
    client = fff.connect() if where == "fff" else None
    r = ffrecord.Reader(p, check=True, client=client)
    r.read_one(0)  # the library is loaded and the dataset open here
    state = pickle.loads(pickle.dumps(r)).__getstate__()
    assert state == {"path": p, "check": True, "address": None, "token": None}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_read_in_child, [(r, [0, 5, 11]), (r, [3])])
    assert results[0][0] != os.getpid()
    assert results[0][1] == [samples[i] for i in (0, 5, 11)]
    assert results[1][1] == [samples[3]]
    # Unpickling in this process reopens lazily.
    r2 = pickle.loads(pickle.dumps(r))
    assert r2.read_one(-1).tobytes() == samples[-1]


def test_header_claiming_1e10_samples_is_corrupt(tmp_path) -> None:
    # A v1 header claiming 10^10 samples in a 4 KiB file: once an abort of
    # the whole process (the reader allocated the 120 GB index); now a
    # clear error naming the file, found before any allocation.
    p = str(tmp_path / "claims.ffr")
    hdr = bytearray(4096)
    hdr[4:12] = (10**10).to_bytes(8, "little")
    with open(p, "wb") as f:
        f.write(hdr)
    with pytest.raises(fff.CorruptFileError, match="claims.ffr"):
        r = ffrecord.Reader(p)
        len(r)


def test_index_past_int64_is_rejected(tmp_path) -> None:
    p = str(tmp_path / "a.ffr")
    write(p, make_samples(3))
    with ffrecord.Reader(p) as r:
        # numpy would wrap 2**63 to -2**63 and ctypes 2**64 + 1 to 1.
        for bad in (2**63, 2**64 + 1, [0, 2**63], np.array([2**63], dtype=np.uint64)):
            with pytest.raises(IndexError, match="int64|out of range"):
                r.read(bad)


def test_file_offsets_past_int64_are_rejected(fff_dir: str) -> None:
    import errno

    p = fff_dir + "/big"
    with fff.open(p, "wb") as f:
        f.write(b"start of the file")
    with fff.open(p, "r+b", buffering=0) as f:
        # ctypes would pass 2**64 + 5 as 5: a write onto the file's start.
        for off in (2**64 + 5, 2**63, 1 << 44):
            with pytest.raises(OSError) as ei:
                f.pwrite(b"X", off)
            assert ei.value.errno == errno.EFBIG, (off, ei.value)
        with pytest.raises(OSError) as ei:
            f.pwrite(b"X", -1)
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(OSError) as ei:
            f.truncate(2**64)
        assert ei.value.errno == errno.EFBIG
    with fff.open(p, "rb") as f:
        assert f.read() == b"start of the file"
