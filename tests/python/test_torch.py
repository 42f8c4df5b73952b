"""fff.torch against real datasets: local files and a real cluster (conftest).

Every test has a hard limit (TORCH_TEST_TIMEOUT, SIGALRM: a hang fails the
test instead of blocking the run; conftest's limit is the backstop). Worker
tests use fff.torch.DataLoader's forkserver workers; the fork test checks that
a plain torch DataLoader with fork workers works or fails fast with
fff.ForkError, never hangs.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import traceback
from typing import Any, Iterator, List

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fff  # noqa: E402
from fff import ffrecord  # noqa: E402
from fff.torch import DataLoader, FFRecordDataset, stack_samples  # noqa: E402

TORCH_TEST_TIMEOUT = int(os.environ.get("FFF_TORCH_TEST_TIMEOUT", "60"))

N = 60  # samples: divisible by world_size*batch_size = 3*4 (and 3*5)


class _Timeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _alarm() -> Iterator[None]:
    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout(f"test did not finish within {TORCH_TEST_TIMEOUT}s (hang?)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TORCH_TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --- datasets ----------------------------------------------------------------


def sample(i: int) -> bytes:
    """Sample i: its index as int64, then i % 5 bytes of filler."""
    return np.int64(i).tobytes() + bytes([i % 256]) * (i % 5)


def index_of(s: Any) -> int:
    a = s.numpy() if isinstance(s, torch.Tensor) else np.asarray(s)
    return int(np.frombuffer(a[:8].tobytes(), dtype=np.int64)[0])


def decode(s: np.ndarray) -> int:
    """A transform (module level: workers unpickle it)."""
    assert isinstance(s, np.ndarray) and s.dtype == np.uint8
    return index_of(s)


def write_dataset(path: str, n: int = N) -> str:
    with ffrecord.Writer(path) as w:
        for i in range(n):
            w.write(sample(i))
    return path


@pytest.fixture(scope="module")
def local_ds(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_dataset(str(tmp_path_factory.mktemp("torch") / "ds.ffr"))


@pytest.fixture(scope="module")
def fff_ds(cluster: Any) -> str:
    d = f"/t/torch-{os.getpid()}"
    fff.makedirs(d, exist_ok=True)
    return write_dataset(f"fff://{d}/ds.ffr")


@pytest.fixture(params=["local", "fff"])
def ds_path(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue(f"{request.param}_ds")


def batch_ids(batch: Any) -> List[int]:
    if isinstance(batch, torch.Tensor):  # collated ints (transform=decode)
        return batch.tolist()
    return [index_of(s) for s in batch]


def run(loader: DataLoader, limit: int = -1) -> List[List[int]]:
    out = []
    for b in loader:
        out.append(batch_ids(b))
        if len(out) == limit:
            break
    return out


# --- the dataset -------------------------------------------------------------


def test_getitem_int_and_list(ds_path: str) -> None:
    ds = FFRecordDataset(ds_path)
    assert len(ds) == N
    s = ds[7]
    assert isinstance(s, np.ndarray) and s.dtype == np.uint8 and s.tobytes() == sample(7)
    assert ds[-1].tobytes() == sample(N - 1)
    assert ds[np.int64(3)].tobytes() == sample(3)
    assert ds[torch.tensor(4)].tobytes() == sample(4)
    idx = [9, 0, 33, 9, -2]
    got = ds[idx]
    assert [g.tobytes() for g in got] == [sample(i % N) for i in idx]
    # One batched read: the samples are views into one buffer.
    assert len({id(g.base) for g in got}) == 1 and got[0].base is not None
    assert [g.tobytes() for g in ds.__getitems__(np.array([1, 2]))] == [sample(1), sample(2)]
    assert [g.tobytes() for g in ds[2:5]] == [sample(i) for i in range(2, 5)]
    assert [g.tobytes() for g in ds[torch.tensor([5, 6])]] == [sample(5), sample(6)]
    with pytest.raises(IndexError):
        ds[N]
    with pytest.raises(IndexError):
        ds[[0, N]]
    ds.close()
    assert ds[1].tobytes() == sample(1)  # reopens


def test_transform(ds_path: str) -> None:
    ds = FFRecordDataset(ds_path, transform=decode)
    assert ds[11] == 11
    assert ds[[3, 1, 2]] == [3, 1, 2]
    assert ds.__getitems__([5]) == [5]


def test_dataset_pickles_as_path_and_settings(ds_path: str) -> None:
    ds = FFRecordDataset(ds_path, transform=decode, check=False)
    assert len(ds) == N  # opened here
    data = pickle.dumps(ds)
    assert len(data) < 1000
    ds2 = pickle.loads(data)
    assert ds2._reader is None  # lazily reopened
    assert (ds2.path, ds2.check, ds2.transform) == (ds_path, False, decode)
    assert ds2[[4, 5]] == [4, 5]


def test_import_fff_does_not_import_torch() -> None:
    code = "import sys, fff; assert 'torch' not in sys.modules and 'fff.torch' not in sys.modules; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


# --- the three DataLoader modes ----------------------------------------------


def _as_list(batch: List[Any]) -> List[Any]:
    return batch


def test_three_modes_never_hang_and_agree(fff_ds: str) -> None:
    ds = FFRecordDataset(fff_ds)
    assert len(ds) == N  # the parent loads the library and opens the dataset

    # 1. torch's own DataLoader with its default (fork) workers: works, or
    #    fails fast with fff.ForkError naming the fix. Never hangs.
    plain = torch.utils.data.DataLoader(ds, batch_size=8, num_workers=2, collate_fn=_as_list, timeout=30)
    t0 = time.monotonic()
    it = iter(plain)
    try:
        got_plain = sorted(i for b in it for i in batch_ids(b))
    except fff.ForkError as e:
        assert time.monotonic() - t0 < 20
        msg = str(e)
        assert "fff.torch.DataLoader" in msg and "forkserver" in msg
        # torch 2.x's re-raise leaves the iterator in a reference cycle through
        # the traceback; collected later by gc its workers take 5 s each to
        # stop. Free it now instead.
        traceback.clear_frames(e.__traceback__)
    else:
        assert got_plain == list(range(N))
    del it, plain

    # 2. fff.torch.DataLoader with (forkserver) workers, and 3. without.
    with DataLoader(ds, batch_size=8, shuffle=True, seed=5, num_workers=2) as dl:
        with_workers = run(dl)
    no_workers = run(DataLoader(ds, batch_size=8, shuffle=True, seed=5, num_workers=0))
    assert with_workers == no_workers
    assert [len(b) for b in no_workers] == [8] * 7 + [4]
    assert sorted(i for b in no_workers for i in b) == list(range(N))


def test_batches_are_views_of_one_buffer(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    for nw in (0, 2):
        with DataLoader(ds, batch_size=6, num_workers=nw) as dl:
            b = next(iter(dl))
        assert all(isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in b)
        assert [s.numpy().tobytes() for s in b] == [sample(i) for i in range(6)]
        ptrs = [s.data_ptr() for s in b]
        sizes = [len(sample(i)) for i in range(6)]
        assert ptrs == [ptrs[0] + sum(sizes[:k]) for k in range(6)], nw  # back to back, no copies


def test_workers_transform_and_collate(ds_path: str) -> None:
    ds = FFRecordDataset(ds_path, transform=decode)
    with DataLoader(ds, batch_size=5, num_workers=2) as dl:
        batches = list(dl)
    assert all(isinstance(b, torch.Tensor) for b in batches)  # default_collate of ints
    assert torch.cat(batches).tolist() == list(range(N))
    batches0 = list(DataLoader(ds, batch_size=5, num_workers=0, collate_fn=sorted))
    assert batches0[0] == [0, 1, 2, 3, 4]


def where_read(s: np.ndarray) -> List[int]:
    """A transform that reports the process it ran in."""
    info = torch.utils.data.get_worker_info()
    return [index_of(s), os.getpid(), os.getppid(), -1 if info is None else info.id]


def test_workers_are_forkserver_children(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds, transform=where_read)
    assert len(ds) == N  # the library is loaded here: forked workers could not read
    with DataLoader(ds, batch_size=10, num_workers=2, collate_fn=list) as dl:
        rows = [r for b in dl for r in b]
    assert [r[0] for r in rows] == list(range(N))
    me = os.getpid()
    assert {r[3] for r in rows} == {0, 1}  # both workers read whole batches
    assert all(r[1] != me and r[2] != me for r in rows)  # children of the fork server, not of us
    rows0 = [r for b in DataLoader(ds, batch_size=10, collate_fn=list) for r in b]
    assert {(r[1], r[3]) for r in rows0} == {(me, -1)}  # num_workers=0: here


def test_stack_samples_fixed_size(tmp_path: Any) -> None:
    p = str(tmp_path / "fixed.ffr")
    with ffrecord.Writer(p) as w:
        for i in range(12):
            w.write(np.full(16, i, dtype=np.uint8))
    ds = FFRecordDataset(p)
    for nw in (0, 2):
        with DataLoader(ds, batch_size=4, num_workers=nw, collate_fn=stack_samples) as dl:
            batches = list(dl)
        assert [tuple(b.shape) for b in batches] == [(4, 16)] * 3
        assert batches[1][:, 0].tolist() == [4, 5, 6, 7]
    with pytest.raises(ValueError):
        stack_samples([torch.zeros(3), torch.zeros(4)])


# --- order, sharding, resume -------------------------------------------------


def test_shuffle_deterministic_per_seed_and_epoch(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    a = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    e0, e1 = run(a), run(a)  # the epoch advances after a full pass
    assert a.epoch == 2
    assert sorted(sum(e0, [])) == sorted(sum(e1, [])) == list(range(N))
    assert e0 != e1
    b = DataLoader(ds, batch_size=4, shuffle=True, seed=7)
    assert run(b) == e0
    b.set_epoch(1)
    assert run(b) == e1
    b.set_epoch(0)
    assert run(b) == e0
    assert run(DataLoader(ds, batch_size=4, shuffle=True, seed=8)) != e0
    assert sum(run(DataLoader(ds, batch_size=4)), []) == list(range(N))
    assert a.epoch_order(3).tolist() == b.epoch_order(3).tolist()


@pytest.mark.parametrize("drop_last", [False, True])
def test_rank_sharding_covers_every_sample_once(local_ds: str, drop_last: bool) -> None:
    ds = FFRecordDataset(local_ds)
    ws = 3
    for epoch in (0, 1):
        seen: List[int] = []
        counts = []
        for rank in range(ws):
            dl = DataLoader(ds, batch_size=4, shuffle=True, seed=1, rank=rank, world_size=ws, drop_last=drop_last)
            dl.set_epoch(epoch)
            bs = run(dl)
            assert len(bs) == len(dl) == N // ws // 4
            counts.append(len(bs))
            seen += sum(bs, [])
        assert len(set(counts)) == 1
        assert sorted(seen) == list(range(N))  # exactly once across ranks


def test_rank_sharding_uneven_pads_or_drops(tmp_path: Any) -> None:
    n, ws, bsz = 31, 3, 4
    ds = FFRecordDataset(write_dataset(str(tmp_path / "odd.ffr"), n))
    # Without drop_last: wrapped padding to 33 samples (2 repeated), 11 each,
    # 3 batches of 4, 4, 3 on every rank.
    seen: List[int] = []
    for rank in range(ws):
        bs = run(DataLoader(ds, batch_size=bsz, shuffle=True, seed=2, rank=rank, world_size=ws))
        assert [len(b) for b in bs] == [4, 4, 3]
        seen += sum(bs, [])
    assert len(seen) == 33 and set(seen) == set(range(n))
    assert sum(c - 1 for c in np.bincount(seen) if c > 1) == 33 - n
    # drop_last: 10 samples a rank, only full batches (2 of 4), no repeats.
    seen = []
    for rank in range(ws):
        bs = run(DataLoader(ds, batch_size=bsz, shuffle=True, seed=2, rank=rank, world_size=ws, drop_last=True))
        assert [len(b) for b in bs] == [4, 4]
        seen += sum(bs, [])
    assert len(seen) == len(set(seen)) == 24


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_is_exact(ds_path: str, num_workers: int) -> None:
    ds = FFRecordDataset(ds_path, transform=decode)
    kw = dict(batch_size=7, shuffle=True, seed=11, num_workers=num_workers, prefetch_batches=3)
    ref = DataLoader(ds, **kw)  # uninterrupted: epochs 0 and 1 (reads in the main process)
    ref.num_workers = 0
    full = run(ref) + run(ref)
    nb = len(ref)
    k = 3

    first = DataLoader(ds, **kw)
    head = run(first, limit=k)  # interrupted after k batches (more were read ahead)
    state = first.state_dict()
    assert (state["epoch"], state["batches_yielded"]) == (0, k)
    state = json.loads(json.dumps(state))  # plain data
    first.close()

    resumed = DataLoader(ds, **{**kw, "seed": 0})  # the seed comes from the state
    resumed.load_state_dict(state)
    rest = run(resumed) + run(resumed)
    resumed.close()
    assert head + rest == full
    assert len(rest) == 2 * nb - k

    # Breaking out keeps the position; the same loader continues.
    again = DataLoader(ds, **kw)
    part = run(again, limit=k) + run(again, limit=2)
    assert part == full[: k + 2]
    again.close()

    # Saved after the last batch of an epoch: that epoch has nothing left,
    # then the next one follows.
    end = DataLoader(ds, **kw)
    end.load_state_dict({**state, "batches_yielded": nb})
    assert run(end) == [] and end.epoch == 1
    assert run(end) == full[nb:]
    end.close()


def test_load_state_dict_refuses_other_order(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    state = DataLoader(ds, batch_size=4, shuffle=True).state_dict()
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(ds, batch_size=5, shuffle=True).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        DataLoader(ds, batch_size=4, shuffle=True, rank=0, world_size=2).load_state_dict(state)
    with pytest.raises(ValueError, match="position"):
        DataLoader(ds, batch_size=4, shuffle=True).load_state_dict({**state, "batches_yielded": 99})


def test_stale_iterator_raises(local_ds: str) -> None:
    dl = DataLoader(FFRecordDataset(local_ds), batch_size=4)
    it1 = iter(dl)
    next(it1)
    it2 = iter(dl)
    assert batch_ids(next(it2)) == [4, 5, 6, 7]
    with pytest.raises(RuntimeError, match="stale"):
        next(it1)


def test_prefetch_keeps_batches_in_flight(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    submitted = []
    real = ds.reader.submit

    def counting_submit(idx: Any, buf: Any = None) -> Any:
        submitted.append(len(idx))
        return real(idx, buf)

    ds.reader.submit = counting_submit  # type: ignore[method-assign]
    dl = DataLoader(ds, batch_size=4, prefetch_batches=3)
    it = iter(dl)
    next(it)
    assert len(submitted) == 4  # 3 ahead, and the next one submitted when the first was taken
    assert len(list(it)) == len(dl) - 1
    assert len(submitted) == len(dl)


def test_empty_and_tiny_datasets(tmp_path: Any) -> None:
    ds = FFRecordDataset(write_dataset(str(tmp_path / "empty.ffr"), 0))
    dl = DataLoader(ds, batch_size=4, shuffle=True)
    assert len(dl) == 0 and list(dl) == []
    ds1 = FFRecordDataset(write_dataset(str(tmp_path / "one.ffr"), 1))
    # One sample, three ranks: padding repeats it so every rank has one batch.
    for rank in range(3):
        assert run(DataLoader(ds1, batch_size=4, rank=rank, world_size=3)) == [[0]]
    assert list(DataLoader(ds1, batch_size=4, drop_last=True)) == []


def test_argument_errors(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    with pytest.raises(TypeError):
        DataLoader([1, 2, 3])  # type: ignore[arg-type]
    for bad in (dict(batch_size=0), dict(rank=3, world_size=3), dict(seed=-1), dict(prefetch_batches=0)):
        with pytest.raises(ValueError):
            DataLoader(ds, **bad)


# --- worker look-ahead and batch transport -----------------------------------


def _pid_collate(views: List[Any]) -> Any:
    """A collate_fn that reports where it ran."""
    return [index_of(v) for v in views], os.getpid()


@pytest.mark.parametrize("num_workers,prefetch", [(2, 2), (2, 8), (3, 9), (4, 64)])
def test_lookahead_yields_the_plain_order(ds_path: str, num_workers: int, prefetch: int) -> None:
    ds = FFRecordDataset(ds_path)
    ref = DataLoader(ds, batch_size=4, shuffle=True, seed=3, num_workers=0, prefetch_batches=1)
    want = run(ref) + run(ref)  # one batch at a time, no look-ahead, two epochs
    with DataLoader(ds, batch_size=4, shuffle=True, seed=3, num_workers=num_workers, prefetch_batches=prefetch) as dl:
        got = run(dl) + run(dl)
        # Interrupted and restarted passes: the look-ahead of the abandoned
        # pass is dropped, the new one is exact.
        dl.set_epoch(0)
        assert run(dl, limit=2) == want[:2]
        assert run(dl, limit=1) == want[2:3]
        dl.set_epoch(1)
        assert run(dl) == want[len(want) // 2 :]
    assert got == want


@pytest.mark.parametrize("num_workers", [0, 2])
def test_raw_batches_stay_valid_while_kept(local_ds: str, num_workers: int) -> None:
    """Without a transform batch buffers are reused once this process has let
    a batch go (the workers' shared memory; the main process's own buffers
    with 0 workers): batches that are kept must never change."""
    ds = FFRecordDataset(local_ds)
    with DataLoader(ds, batch_size=4, shuffle=True, seed=9, num_workers=num_workers, prefetch_batches=4) as dl:
        kept = [list(b) for b in dl]  # one epoch, every batch kept
        for _ in range(3):  # more epochs: buffers cycle, kept ones must not be touched
            for b in dl:
                assert len(b) > 0
        order = dl.batches(0)
    assert [[index_of(s) for s in b] for b in kept] == [o.tolist() for o in order]
    assert all(s.numpy().tobytes() == sample(index_of(s)) for b in kept for s in b)


def storage_of(t: Any) -> Any:
    return t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()  # torch 1.13: storage()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_raw_batches_reuse_pool_buffers(local_ds: str, num_workers: int) -> None:
    """Batches dropped by the training loop hand their buffer back: a long run
    needs a few buffers (per worker), not one per batch."""
    ds = FFRecordDataset(local_ds)
    with DataLoader(ds, batch_size=4, num_workers=num_workers, prefetch_batches=4) as dl:
        buffers = set()
        batches = 0
        for _ in range(4):
            for b in dl:
                st = storage_of(b[0])
                if num_workers:
                    fd, _ = st._share_fd_cpu_()  # the worker's shared-memory file behind the batch
                    buffers.add(os.fstat(fd).st_ino)
                else:
                    buffers.add(st.data_ptr())
                batches += 1
                del b, st
        held = sum(len(v) for v in dl._sampler.held.values())
    assert batches == 60
    # Workers: depth 2 per worker + torch's queue + the batch in use, a
    # handful each. Main process: 4 in flight + 4 spare + the batch in use.
    assert len(buffers) <= (16 if num_workers else 9), len(buffers)
    assert held <= 8, held


def test_local_buffers_lend_only_free_memory() -> None:
    """A pooled buffer is lent again only when nothing made from the last loan
    is alive: tensors, tensor views, numpy slices."""
    from fff.torch import _LocalBuffers

    pool = _LocalBuffers(max_buffers=2)
    addr = lambda a: a.__array_interface__["data"][0]  # noqa: E731
    a = pool.take(1000)
    first = addr(a)
    assert len(a) >= 1000
    assert addr(pool.take(1000)) != first  # a is lent out
    for keep in (
        lambda a: torch.from_numpy(a),
        lambda a: torch.from_numpy(a)[10:20],
        lambda a: a[5:10],
        lambda a: torch.from_numpy(a).numpy()[3:],
        lambda a: memoryview(a)[1:],
    ):
        a = pool.take(1000)
        kept = keep(a)
        was = addr(a)
        del a
        b = pool.take(1000)
        assert addr(b) != was, "memory still referenced was lent again"
        del kept, b
    b = pool.take(1000)
    assert addr(b) in {addr(x) for x in pool.bufs}  # free memory is lent again...
    held = [b, pool.take(1000)]
    extra = pool.take(1000)  # ...and past max_buffers lent memory is not pooled
    assert addr(extra) not in {addr(h) for h in held}
    del held, extra
    big = pool.take(8 << 20)  # too big for the free ones: replaces one
    assert len(big) >= 8 << 20 and len(pool.bufs) == 2


def test_collate_without_transform_runs_here(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    with DataLoader(ds, batch_size=10, num_workers=2, collate_fn=_pid_collate) as dl:
        out = list(dl)
    assert [ids for ids, _ in out] == [list(range(i, i + 10)) for i in range(0, N, 10)]
    assert {pid for _, pid in out} == {os.getpid()}  # the worker shipped one buffer; sliced and collated here


def _items_for_worker(sampler: Any, w: int) -> List[Any]:
    return [it for it in sampler if it[1] % sampler.workers == w]


def test_worker_lookahead_mechanics(local_ds: str) -> None:
    """_BatchDataset in this process, fed the items worker 1 of 3 would get."""
    from fff.torch import _BatchDataset, _PlanSampler

    ds = FFRecordDataset(local_ds)
    plan = DataLoader(ds, batch_size=2).batches(0)  # 30 batches
    sp = _PlanSampler()
    sp.plan, sp.plan_id, sp.workers, sp.depth = plan, 1, 3, 4
    items = _items_for_worker(sp, 1)
    assert [it[1] for it in items] == list(range(1, 30, 3))
    assert [k for k, _ in items[0][3]] == [4, 7, 10]  # the first item: the whole window
    assert [k for k, _ in items[1][3]] == [13]  # later items: the one batch entering it

    bd = _BatchDataset(ds, None, depth=4)
    submitted: List[List[int]] = []
    real = ds.reader.submit

    def counting_submit(idx: Any, buf: Any = None) -> Any:
        submitted.append(np.asarray(idx).tolist())
        return real(idx, buf)

    ds.reader.submit = counting_submit  # type: ignore[method-assign]
    r = bd[items[0]]
    assert [index_of(s) for s in _split_raw(r)] == plan[1].tolist()
    assert submitted == [plan[k].tolist() for k in (1, 4, 7, 10)]  # batch 1, then 3 ahead
    assert sorted(bd._pending) == [4, 7, 10]
    r = bd[items[1]]  # batch 4 was in flight: only batch 13 is new
    assert [index_of(s) for s in _split_raw(r)] == plan[4].tolist()
    assert submitted[4:] == [plan[13].tolist()] and sorted(bd._pending) == [7, 10, 13]

    # Resume: the worker's next item skips positions (a restarted plan would
    # too): everything before it is cancelled, not leaked.
    r = bd[items[3]]  # position 10: 7 is stale
    assert [index_of(s) for s in _split_raw(r)] == plan[10].tolist()
    assert 7 not in bd._pending and all(k > 10 for k in bd._pending)
    # A new plan: every submission of the old one is cancelled.
    pend = [e[0] for e in bd._pending.values()]
    sp.plan_id = 2
    first_new = _items_for_worker(sp, 1)[0]
    bd[first_new]
    assert all(pb._state == "cancelled" for pb in pend)
    assert sorted(bd._pending) == [4, 7, 10]
    assert bd.cancel() == 3 and not bd._pending
    # Cancelled and returned buffers went back to the pool (nothing holds them here).
    assert len(bd.pool.free) >= 3


def _split_raw(r: Any) -> List[Any]:
    from fff.torch import _RawBatch, _split

    assert isinstance(r, _RawBatch)
    return _split(r.buf, r.offsets)


def test_default_prefetch_keeps_hundreds_of_samples_in_flight(local_ds: str) -> None:
    ds = FFRecordDataset(local_ds)
    assert DataLoader(ds, batch_size=64).prefetch_batches == 8
    assert DataLoader(ds, batch_size=256).prefetch_batches == 4
    assert DataLoader(ds, batch_size=4).prefetch_batches == 64  # the C API's limit per process
    assert DataLoader(ds, batch_size=64, num_workers=2)._worker_depth() == 4
    assert DataLoader(ds, batch_size=4, num_workers=2, prefetch_batches=500)._worker_depth() == 64
    assert len(run(DataLoader(ds, batch_size=4, prefetch_batches=100))) == N // 4  # 64 in flight at most


def test_close_after_break_does_not_hang(fff_ds: str) -> None:
    ds = FFRecordDataset(fff_ds)
    dl = DataLoader(ds, batch_size=2, num_workers=2, prefetch_batches=16)
    it = iter(dl)
    next(it)  # the workers have look-ahead reads in flight
    t0 = time.monotonic()
    del it
    dl.close()
    assert time.monotonic() - t0 < 15
    assert run(dl) == [[i, i + 1] for i in range(2, N, 2)]  # new workers continue the epoch
    dl.close()


# --- workers passed on between loaders ----------------------------------------


def test_collected_loader_passes_its_workers_on(ds_path: str) -> None:
    """A loader made per epoch over one dataset object takes over the workers
    of the collected one (the same processes), and yields exactly the batches
    a loader with fresh workers does, whole epochs and resumed mid-epoch."""
    import gc

    ds = FFRecordDataset(ds_path, transform=decode)
    kw = dict(batch_size=3, shuffle=True, seed=5, num_workers=2, prefetch_batches=4)
    fresh = DataLoader(FFRecordDataset(ds_path, transform=decode), **kw)
    want = run(fresh) + run(fresh) + run(fresh)  # epochs 0, 1, 2
    fresh_pids = fresh.worker_pids()
    fresh.close()
    nb = len(want) // 3

    first = DataLoader(ds, **kw)
    got = run(first)  # epoch 0
    pids = first.worker_pids()
    assert len(pids) == 2 and not set(pids) & set(fresh_pids)
    del first
    gc.collect()

    second = DataLoader(ds, **kw)
    second.set_epoch(1)
    got += run(second)  # epoch 1, on the first loader's workers
    assert second.worker_pids() == pids
    head = run(second, limit=3)  # epoch 2, interrupted (more read ahead)
    state = second.state_dict()
    del second
    gc.collect()

    third = DataLoader(ds, **kw)
    third.set_epoch(0)
    third.load_state_dict(state)  # its iteration count now matches the second's
    rest = run(third)
    assert third.worker_pids() == pids
    assert got + head + rest == want
    assert len(rest) == nb - 3

    # Other worker settings or another dataset object: new workers.
    other = DataLoader(ds, **{**kw, "num_workers": 3})
    run(other, limit=1)
    assert not set(other.worker_pids()) & set(pids)
    other.close()
    third.close()  # close stops them: nothing is passed on
    del third
    gc.collect()
    again = DataLoader(ds, **kw)
    run(again, limit=1)
    assert not set(again.worker_pids()) & set(pids)
    again.close()


def fails_on_13(s: np.ndarray) -> int:
    """A transform that raises on sample 13 (module level: workers unpickle it)."""
    i = index_of(s)
    if i == 13:
        raise ValueError("bad sample")
    return i


@pytest.mark.parametrize("num_workers", [0, 2])
def test_transform_error_names_the_sample(local_ds: str, num_workers: int) -> None:
    ds = FFRecordDataset(local_ds, transform=fails_on_13)
    with pytest.raises(fff.torch.TransformError) as e:
        ds[13]
    assert e.value.index == 13 and isinstance(e.value.__cause__, ValueError)
    with pytest.raises(fff.torch.TransformError, match="sample 13 of"):
        ds[[12, 13]]
    ld = DataLoader(ds, batch_size=4, shuffle=True, seed=3, num_workers=num_workers)
    with pytest.raises(fff.torch.TransformError, match=r"sample 13 of .*ValueError: bad sample"):
        run(ld)
    ld.close()


# --- stats ---------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loader_stats(fff_ds: str, num_workers: int, caplog: pytest.LogCaptureFixture) -> None:
    """DataLoader.stats() counts what the loop got and how long it waited;
    log_every logs it; fff.stats() counts this process's reads."""
    before = fff.stats()
    ds = FFRecordDataset(fff_ds)
    loader = DataLoader(ds, batch_size=4, num_workers=num_workers, log_every=5)
    with caplog.at_level("INFO", logger="fff.torch"):
        got = run(loader)
        run(loader, limit=3)  # a second, partial iteration adds up
    loader.close()
    st = loader.stats()
    assert st["batches"] == len(got) + 3 == N // 4 + 3
    assert st["samples"] == N + 12
    assert st["bytes"] == int(ds.sizes.sum()) + sum(len(sample(i)) for i in range(12))
    assert 0 <= st["wait_seconds"] <= st["seconds"]
    assert 0 <= st["wait_fraction"] <= 1
    assert st["samples_per_s"] > 0 and st["first_batch_seconds"] >= 0
    logged = [r.getMessage() for r in caplog.records if r.name == "fff.torch"]
    assert len(logged) == (N // 4 + 3) // 5, logged
    assert "samples/s" in logged[0] and "waited for data" in logged[0]
    after = st["client"]
    if num_workers == 0:  # the reads were this process's
        assert after["reads"] - before["reads"] >= N + 12
        assert after["read_bytes"] - before["read_bytes"] >= st["bytes"]
        assert after["read_calls"] > before["read_calls"]
        assert after["read_latency_p99_s"] > 0 and after["read_latency_max_s"] >= after["read_latency_p50_s"]
        assert after["local_bytes"] + after["socket_bytes"] == after["read_bytes"]


def test_client_stats(cluster: Any) -> None:
    """A client's counters: writes and reads with their bytes."""
    c = fff.connect()
    try:
        s0 = c.stats()
        with c.open(f"/t/stats-{os.getpid()}", "wb") as f:
            f.write(b"x" * 100_000)
        with c.open(f"/t/stats-{os.getpid()}", "rb") as f:
            assert f.read() == b"x" * 100_000
        s1 = c.stats()
        assert s1["writes"] > s0["writes"] and s1["write_bytes"] - s0["write_bytes"] == 100_000
        assert s1["read_bytes"] - s0["read_bytes"] >= 100_000 and s1["read_errors"] == s0["read_errors"]
        total = fff.stats()
        assert total["write_bytes"] >= s1["write_bytes"]
    finally:
        c.close()
    assert c.stats()["reads"] == 0  # a closed client reports nothing
