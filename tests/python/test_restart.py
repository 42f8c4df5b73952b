"""A mount, a running fff.torch loader and a `fff get` ride through
`fff down; fff up` of the cluster they read from (docs/operations.md: the
cluster comes back at its recorded address; clients wait for it).

Each reader is surely mid-read when the cluster stops: the mount and `fff
get` have read a part of a file (the rest is not read ahead yet: the file is
far larger than their readahead), and the loader has delivered some batches
of an epoch. After `fff up` every one of them finishes and gets exactly the
bytes that were written.
"""

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, Iterator, List, Tuple

import numpy as np
import pytest

import fff
import fff.torch

BIG = 320 << 20  # bytes: more than `fff get`'s 64 MiB and the mount's readahead
N = 3000  # samples of the loader's dataset


def sample(i: int) -> bytes:
    return i.to_bytes(4, "little") * (1024 + i % 7)


def run(bin_dir: str, env: Dict[str, str], *args: str) -> str:
    r = subprocess.run([os.path.join(bin_dir, "fff"), *args], env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise AssertionError(f"fff {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r.stdout


@pytest.fixture
def own_cluster(cluster) -> Iterator[Tuple[str, str, str, Dict[str, str]]]:
    """A cluster of this test's own, started with `fff up --daemon`."""
    tmp = tempfile.mkdtemp(prefix="fff-restart-")
    data = os.path.join(tmp, "data")
    env = dict(os.environ, XDG_CONFIG_HOME=os.path.join(tmp, "config"))
    for k in ("FFF_CLUSTER", "FFF_TOKEN"):
        env.pop(k, None)
    try:
        run(cluster.bin_dir, env, "up", "--daemon", "--data", data)
        with open(os.path.join(data, "fffd.json")) as f:
            addr = json.load(f)["address"]
        with open(os.path.join(data, "admin.token")) as f:
            token = f.read().strip()
        env.update(FFF_CLUSTER=addr, FFF_TOKEN=token)
        yield addr, token, data, env
    finally:
        subprocess.run([os.path.join(cluster.bin_dir, "fff"), "down", "--data", data], env=env, capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def can_mount() -> bool:
    return os.geteuid() == 0 and os.path.exists("/dev/fuse")


def test_mount_loader_and_get_ride_through_down_up(cluster, own_cluster) -> None:
    addr, token, data, env = own_cluster
    c = fff.connect(addr, token)
    big = np.random.default_rng(7).integers(0, 256, BIG, dtype=np.uint8).tobytes()
    want = hashlib.sha256(big).hexdigest()
    with c.open("/big", "wb") as f:
        f.write(big)
    with fff.ffrecord.Writer(f"fff://{addr}/ds.ffr", client=c) as w:
        for i in range(N):
            w.write(sample(i))

    # fff get, to a pipe it fills and then waits on.
    get = subprocess.Popen([os.path.join(cluster.bin_dir, "fff"), "get", "/big", "-"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got_get = hashlib.sha256()
    assert get.stdout is not None
    first = get.stdout.read(1 << 20)
    got_get.update(first)

    # The mount, with a file open and partly read.
    mnt = None
    mf = None
    got_mnt = hashlib.sha256()
    if can_mount():
        mnt = tempfile.mkdtemp(prefix="fff-restart-mnt-")
        run(cluster.bin_dir, env, "mount", "--daemon", mnt)
        mf = open(os.path.join(mnt, "big"), "rb", buffering=0)
        got_mnt.update(mf.read(1 << 20))

    # The loader, mid-epoch.
    ds = fff.torch.FFRecordDataset(f"fff://{addr}/ds.ffr", client=c)
    loader = fff.torch.DataLoader(ds, batch_size=50, shuffle=True, seed=3, num_workers=0)
    seen: List[int] = []
    it = iter(loader)
    for _ in range(5):
        for s in next(it):
            seen.append(int.from_bytes(bytes(s[:4]), "little"))

    def finish_loader() -> None:
        for batch in it:
            for s in batch:
                i = int.from_bytes(bytes(s[:4]), "little")
                assert bytes(s) == sample(i), f"sample {i} differs after the restart"
                seen.append(i)

    def finish_get() -> None:
        assert get.stdout is not None
        while True:
            b = get.stdout.read(4 << 20)
            if not b:
                break
            got_get.update(b)

    def finish_mount() -> None:
        if mf is None:
            return
        while True:
            b = mf.read(4 << 20)
            if not b:
                break
            got_mnt.update(b)

    try:
        before = addr
        run(cluster.bin_dir, env, "down", "--data", data)
        # The readers go on while the cluster is down: they meet refused
        # connections and wait for it (how far each gets before `fff up`
        # does not change what the test expects).
        with ThreadPoolExecutor(3) as pool:
            jobs = [pool.submit(f) for f in (finish_loader, finish_get, finish_mount)]
            time.sleep(1)
            run(cluster.bin_dir, env, "up", "--daemon", "--data", data)
            with open(os.path.join(data, "fffd.json")) as f:
                assert json.load(f)["address"] == before, "fff up came back at another address"
            for j in jobs:
                j.result(timeout=180)
        assert sorted(seen) == list(range(N)), "the epoch lost or repeated samples across the restart"
        _, err = get.communicate(timeout=60)
        assert get.returncode == 0, f"fff get failed across the restart: {err.decode(errors='replace')}"
        assert got_get.hexdigest() == want, "fff get delivered other bytes across the restart"
        if mf is not None:
            assert got_mnt.hexdigest() == want, "the mount delivered other bytes across the restart"
            assert sorted(os.listdir(mnt)) == ["big", "ds.ffr"]
    finally:
        loader.close()
        if get.poll() is None:
            get.kill()
            get.wait()
        if mf is not None:
            mf.close()
        if mnt is not None:
            subprocess.run([os.path.join(cluster.bin_dir, "fff"), "umount", mnt], env=env, capture_output=True, timeout=60)
            os.rmdir(mnt)
        c.close()
