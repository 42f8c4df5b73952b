"""fff.torch: FFRecord datasets for PyTorch.

Two pieces::

    from fff.torch import FFRecordDataset, DataLoader

    ds = FFRecordDataset("fff:///data/train", transform=decode)
    loader = DataLoader(ds, batch_size=256, shuffle=True, seed=1, num_workers=4,
                        rank=rank, world_size=world_size)
    for epoch in range(epochs):
        for batch in loader:      # the epoch advances by itself after a full pass
            step(batch)
            if time_to_checkpoint:
                save({"model": ..., "loader": loader.state_dict()})
    # later, in a new process: loader.load_state_dict(ckpt["loader"]) and the
    # loop yields exactly the batches the interrupted run had not yet yielded.

:class:`FFRecordDataset` is a map-style ``torch.utils.data.Dataset``:
``ds[i]`` is one sample, ``ds[[i, j, k]]`` (and ``ds.__getitems__``, which
torch >= 2.1 calls for a batch) reads the samples of a batch with ONE native
batched read. Without a transform a sample is a numpy ``uint8`` array that is
a view into the batch's read buffer (no copy); the transform, if any, gets
that array and returns anything.

:class:`DataLoader` yields the batches of one rank: shuffled per
``(seed, epoch)``, sharded by ``rank``/``world_size`` with the same number of
batches on every rank, ``prefetch_batches`` batches read ahead (with workers:
each worker submits the batches it will get next), resumable in
the middle of an epoch through ``state_dict()``/``load_state_dict()``.

Fork safety (the library's Go runtime does not survive ``fork``): the dataset
pickles as its path and settings and opens the file again, lazily, in the
process that uses it; :class:`DataLoader` starts its workers with
``forkserver`` (``spawn`` where that is missing), never ``fork``; a plain
``torch.utils.data.DataLoader`` with the default ``fork`` workers gets an
immediate :class:`fff.ForkError` in the worker (re-raised in the parent by
torch) when the parent had loaded the library, never a hang. The error says
what to do: use this DataLoader, or ``multiprocessing_context="forkserver"``.

Works with torch 1.13 (Debian's python3-torch) and torch 2.x. torch 1.13 has
no ``__getitems__`` batching in its fetcher, so the worker path does not rely
on it: the torch DataLoader underneath runs with ``batch_size=None`` and a
sampler that yields one index array per batch, so each worker makes one
``dataset[indices]`` call, i.e. one native batched read, per batch.

``import fff`` never imports torch; ``import fff.torch`` does.
"""

from __future__ import annotations

import ast
import itertools
import logging
import math
import multiprocessing
import os
import sys
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

try:
    import torch
    import torch.utils.data as _tud
except ImportError as _e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fff.torch needs PyTorch, which is not installed: `pip install torch` "
        "(or `pip install fff[torch]`; on Debian `apt-get install python3-torch`). "
        "The rest of the fff package works without it."
    ) from _e

try:  # torch >= 1.11 exports it; the private path is the fallback
    from torch.utils.data import default_collate as _default_collate
except ImportError:  # pragma: no cover
    from torch.utils.data._utils.collate import default_collate as _default_collate

from . import ffrecord
from ._native import Closing, PathLike

__all__ = [
    "FFRecordDataset",
    "DataLoader",
    "WorkerStartError",
    "TransformError",
    "stack_samples",
    "default_collate",
    "shared_empty",
    "format_stats",
]

default_collate = _default_collate

ENV_CLUSTER = "FFF_CLUSTER"
ENV_TOKEN = "FFF_TOKEN"
PREFETCH_SAMPLES = 512  # the default prefetch_batches keeps at least this many samples in flight
MAX_PREFETCH_BATCHES = 64  # the C API's limit of batches in flight per dataset and process

Transform = Callable[[np.ndarray], Any]
Collate = Callable[[List[Any]], Any]
BatchTransform = Callable[[List[np.ndarray], np.ndarray], Any]


class TransformError(RuntimeError):
    """The dataset's transform raised on a sample. The message names the
    sample's index and the dataset (also when it crosses from a worker
    process, where torch re-raises it by message); ``index`` and ``path``
    hold them in the process that raised it, and ``__cause__`` is the
    transform's own exception."""

    def __init__(
        self,
        message: str,
        index: Optional[int] = None,
        path: Optional[str] = None,
        indices: Optional[Sequence[int]] = None,
    ) -> None:
        super().__init__(message)
        self.index = index
        self.path = path
        # A batch transform's error: the batch's sample indices (index is
        # then the failing sample's when the transform said which).
        self.indices = None if indices is None else list(indices)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _batch_transform(fn: BatchTransform, samples: List[np.ndarray], indices: Any, path: str) -> Any:
    """fn(samples, indices); an exception as a TransformError that names the
    batch's samples (a TransformError of fn's own, naming one sample, gains
    the dataset's path and the batch's indices)."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    try:
        return fn(samples, idx)
    except TransformError as e:
        if e.path is None:
            e.path = path
        if e.indices is None:
            e.indices = idx.tolist()
        raise
    except Exception as e:
        shown = ", ".join(str(i) for i in idx[:8].tolist()) + (", ..." if len(idx) > 8 else "")
        raise TransformError(
            f"the batch transform {_name(fn)} raised on the batch of samples [{shown}] ({len(idx)} samples) "
            f"of {path}: {type(e).__name__}: {e}",
            None,
            path,
            idx.tolist(),
        ) from e


def shared_empty(shape: Sequence[int], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """An uninitialized tensor for a batch transform's output: in shared
    memory inside a DataLoader worker process (so that it reaches the
    training process without a copy, as torch's default_collate does for
    its stacked batches), plain memory elsewhere."""
    shape = tuple(int(d) for d in shape)
    if _tud.get_worker_info() is None:
        return torch.empty(shape, dtype=dtype)
    n = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    return _shared_u8(n).view(dtype).view(shape) if n else torch.empty(shape, dtype=dtype)


def _as_indices(indices: Any) -> Union[np.ndarray, slice]:
    if isinstance(indices, slice):
        return indices
    if isinstance(indices, torch.Tensor):
        indices = indices.numpy()
    return np.asarray(indices, dtype=np.int64).reshape(-1)


def _is_int(i: Any) -> bool:
    if isinstance(i, (bool, np.bool_)):
        return False
    if isinstance(i, (int, np.integer)):
        return True
    return isinstance(i, torch.Tensor) and i.ndim == 0 and not i.is_floating_point()


class FFRecordDataset(_tud.Dataset):
    """A map-style dataset over an FFRecord file or directory of files.

    path: local path, ``fff:///a/b`` (default cluster) or ``fff://HOST:PORT/a/b``.
    transform: applied to every sample (a numpy ``uint8`` array, a view into
    the batch's buffer: copy it if you keep it beyond the batch's life, or
    return a new object) in the process that reads it. check: verify every
    sample's checksum (:class:`fff.ChecksumError` on damage). client: an
    :class:`fff.Client` for fff paths (default: the default client).

    - ``ds[i]`` (int, negative from the end): one sample.
    - ``ds[[i, j, ...]]`` / ``ds[np_array]`` / ``ds[a:b]`` /
      ``ds.__getitems__(indices)``: a list of samples read with one native
      batched read; without a transform the arrays are views into one buffer.
    - ``len(ds)``: number of samples.

    The file is opened on first use (``len``, a read), not when the dataset is
    made. Pickling keeps only the path and settings (and the client's address
    and token, or the ``FFF_CLUSTER``/``FFF_TOKEN`` of the pickling process):
    an unpickled copy opens the file again, lazily, in its own process. Used in
    a child forked after this process loaded the library, it raises
    :class:`fff.ForkError` at once. The transform must be picklable (a
    module-level function or callable object) when workers are used.
    """

    def __init__(
        self,
        path: PathLike,
        transform: Optional[Transform] = None,
        check: bool = True,
        client: Optional[Any] = None,
    ) -> None:
        self.path: str = os.fsdecode(os.fspath(path))
        self.transform = transform
        self.check = bool(check)
        self.client = client
        self._reader: Optional[ffrecord.Reader] = None
        self._lock = threading.Lock()

    # --- pickling: path + settings, never a handle --------------------------

    def __getstate__(self) -> Dict[str, Any]:
        client = self.client
        if client is None and self.path.startswith("fff:///"):
            # The default cluster as this process sees it: a forkserver or
            # spawn child may have another environment.
            addr, tok = os.environ.get(ENV_CLUSTER), os.environ.get(ENV_TOKEN)
            if addr or tok:
                from .client import Client

                client = Client(addr or None, tok or None, _lazy=True)
        return {"path": self.path, "transform": self.transform, "check": self.check, "client": client}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.path = state["path"]
        self.transform = state["transform"]
        self.check = state["check"]
        self.client = state["client"]
        self._reader = None
        self._lock = threading.Lock()

    # --- the reader -----------------------------------------------------------

    @property
    def reader(self) -> ffrecord.Reader:
        """The :class:`fff.ffrecord.Reader` (opened on first use)."""
        r = self._reader
        if r is None:
            with self._lock:
                r = self._reader
                if r is None:
                    r = self._reader = ffrecord.Reader(self.path, check=self.check, client=self.client)
        return r

    def close(self) -> None:
        """Close the file; the next use opens it again."""
        r, self._reader = self._reader, None
        if r is not None:
            r.close()

    def __len__(self) -> int:
        return len(self.reader)

    @property
    def sizes(self) -> np.ndarray:
        """Every sample's size in bytes (int64)."""
        return self.reader.sizes

    def __repr__(self) -> str:
        t = f" transform={self.transform!r}" if self.transform is not None else ""
        return f"<fff.torch.FFRecordDataset {self.path!r} check={self.check}{t}>"

    # --- reads ----------------------------------------------------------------

    def __getitem__(self, index: Any) -> Any:
        if _is_int(index):
            s = self.reader.read_one(int(index))
            return s if self.transform is None else self._transform(s, int(index))
        return self.__getitems__(index)

    def __getitems__(self, indices: Any) -> List[Any]:
        """The samples at indices (a list), read with one native batched read."""
        idx = _as_indices(indices)
        samples = self.reader.read(idx)
        if self.transform is None:
            return samples
        if isinstance(idx, slice):
            idx = np.arange(len(self))[idx]
        return [self._transform(s, int(i)) for s, i in zip(samples, idx.tolist())]

    def _transform(self, sample: np.ndarray, index: int) -> Any:
        """The transform of sample index; its exception as a TransformError
        that names the sample."""
        try:
            return self.transform(sample)  # type: ignore[misc]
        except Exception as e:
            raise TransformError(
                f"the transform {_name(self.transform)} raised on "
                f"sample {index} of {self.path}: {type(e).__name__}: {e}",
                index,
                self.path,
            ) from e

    # --- whole batches (DataLoader) -------------------------------------------

    def _batch_from_buffer(
        self,
        buf: torch.Tensor,
        offsets: np.ndarray,
        collate_fn: Optional[Collate],
        indices: Any,
        batch_transform: Optional[BatchTransform] = None,
    ) -> Any:
        """Transform and collate the samples of one batch buffer (the samples
        at indices), or hand them to batch_transform."""
        if batch_transform is not None or self.transform is not None:
            arr = buf.numpy()
            o = offsets.tolist()
            samples = [arr[o[i] : o[i + 1]] for i in range(len(o) - 1)]
            if batch_transform is not None:
                return _batch_transform(batch_transform, samples, indices, self.path)
            idx = np.asarray(indices).tolist()
            return (collate_fn or _default_collate)([self._transform(s, i) for s, i in zip(samples, idx)])
        views = _split(buf, offsets)
        return views if collate_fn is None else collate_fn(views)


def _split(buf: torch.Tensor, offsets: np.ndarray) -> List[torch.Tensor]:
    """The samples of a batch buffer as 1-D views (one C++ call, not one per sample)."""
    n = len(offsets) - 1
    if n <= 0:
        return []
    start, end = int(offsets[0]), int(offsets[-1])
    return list(torch.split(buf[start:end], np.diff(offsets).tolist()))


def _shared_u8(n: int) -> torch.Tensor:
    """An uninitialized uint8 tensor of n bytes in shared memory (page aligned)."""
    if n <= 0:
        return torch.empty(0, dtype=torch.uint8)
    try:
        st = torch.UntypedStorage._new_shared(n)  # type: ignore[attr-defined]
        return torch.empty(0, dtype=torch.uint8).set_(st)  # type: ignore[arg-type]
    except (AttributeError, TypeError, RuntimeError):  # pragma: no cover - other torch versions
        return torch.empty(n, dtype=torch.uint8).share_memory_()


def stack_samples(samples: Sequence[Any]) -> torch.Tensor:
    """A collate_fn for fixed-size records: the batch as one 2-D tensor.

    Samples that lie back to back in one buffer (the uint8 tensors a batch
    has without a transform) become a ``[batch, size]`` view of that buffer:
    no copy. Anything else is stacked with ``torch.stack`` (numpy arrays are
    converted first). Raises ValueError when the samples differ in size.
    """
    ts = [s if isinstance(s, torch.Tensor) else torch.as_tensor(s) for s in samples]
    if not ts:
        return torch.empty((0, 0), dtype=torch.uint8)
    first = ts[0]
    if any(t.shape != first.shape for t in ts):
        raise ValueError(
            "stack_samples needs samples of one size (fixed-size records); "
            f"got shapes {sorted({tuple(t.shape) for t in ts})[:4]}: use the default collate (a list)"
        )
    if first.ndim == 1 and first.is_contiguous():
        size = first.numel()
        base = first.data_ptr()
        es = first.element_size()
        try:
            same = all(
                t.is_contiguous() and t.data_ptr() == base + i * size * es and _same_storage(t, first)
                for i, t in enumerate(ts)
            )
        except RuntimeError:
            same = False
        if same:
            return first.as_strided((len(ts), size), (size, 1))
    return torch.stack(ts)


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    except AttributeError:  # torch 1.13
        return a.storage().data_ptr() == b.storage().data_ptr()


def _identity(x: Any) -> Any:
    return x


class _RawBatch:
    """A batch a worker read without a transform: its one buffer (a uint8
    tensor in shared memory, from the worker's pool) and the samples' offsets.

    Crosses to the training process as ONE shared-memory tensor (one file
    descriptor) instead of one tensor per sample; the training process slices
    the per-sample views (:func:`_split`) and runs collate_fn on them.
    ``worker``/``pool``/``slot`` name the pool buffer, which the training
    process hands back (with a later sampler item) once it no longer uses it.
    """

    __slots__ = ("buf", "offsets", "worker", "pool", "slot")

    def __init__(self, buf: torch.Tensor, offsets: np.ndarray, worker: int, pool: int, slot: int) -> None:
        self.buf = buf
        self.offsets = offsets
        self.worker = worker
        self.pool = pool
        self.slot = slot

    def pin_memory(self, *args: Any, **kwargs: Any) -> "_RawBatch":  # torch's pin thread calls this
        buf = self.buf[: int(self.offsets[-1])] if len(self.offsets) else self.buf  # not the slot's spare room
        return _RawBatch(buf.pin_memory(*args, **kwargs), self.offsets, self.worker, self.pool, self.slot)

    def __reduce__(self) -> Any:
        return (_RawBatch, (self.buf, self.offsets, self.worker, self.pool, self.slot))


class _Item(tuple):
    """One sampler item: (plan, k, indices, ahead, freed).

    plan: which iteration (plan) of the loader; k: the batch's position in
    the plan; indices: its sample indices; ahead: ``[(k2, indices2), ...]``,
    later batches of the plan the same worker will get (torch hands items to
    workers round-robin: position k goes to worker k % W), which the worker
    submits now so that they are read while it waits for and processes batch
    k; freed: ``[(pool, slot), ...]``, buffers of this worker's pool that the
    training process no longer uses.
    """

    __slots__ = ()


_SLOT_ROUND = 1 << 20


def _capacity(size: int) -> int:
    """A pooled batch buffer's size for a batch of size bytes: 1/8 spare, so
    later batches of a similar size fit, in whole MiB."""
    return max(_SLOT_ROUND, -(-(size + size // 8) // _SLOT_ROUND) * _SLOT_ROUND)


class _ShmPool:
    """A worker's shared-memory batch buffers, reused.

    A new shared-memory buffer costs the kernel a fresh zeroed page per 4 KiB
    (~4 ms for a 6 MiB batch, more than reading it); a buffer the training
    process has let go of is reused instead. A buffer is handed out (slot in
    use) until :meth:`release` names it; in-use slots beyond ``max_slots``
    are forgotten (never reused, freed by the kernel when both sides drop
    them), so a training loop that keeps batches costs memory, not errors.
    """

    def __init__(self, max_free: int, max_slots: int) -> None:
        self.token = int.from_bytes(os.urandom(8), "little") >> 1
        self.max_free = max_free
        self.max_slots = max_slots
        self.slots: Dict[int, torch.Tensor] = {}
        self.free: List[int] = []
        self._next = 0

    def take(self, size: int) -> tuple:
        best = None
        for s in self.free:
            cap = self.slots[s].numel()
            if cap >= size and (best is None or cap < self.slots[best].numel()):
                best = s
        if best is not None:
            self.free.remove(best)
            return best, self.slots[best]
        buf = _shared_u8(_capacity(size))
        slot, self._next = self._next, self._next + 1
        self.slots[slot] = buf
        if len(self.slots) > self.max_slots:  # forget the oldest slots in use
            busy = set(self.slots) - set(self.free) - {slot}
            for s in sorted(busy)[: len(self.slots) - self.max_slots]:
                del self.slots[s]
        return slot, buf

    def give_back(self, slot: int) -> None:
        """A slot this worker used itself (a cancelled or failed read)."""
        if slot in self.slots and slot not in self.free:
            self.free.append(slot)
        while len(self.free) > self.max_free:  # keep the big ones
            s = min(self.free, key=lambda j: self.slots[j].numel())
            self.free.remove(s)
            del self.slots[s]

    def release(self, freed: Sequence[tuple]) -> None:
        for token, slot in freed:
            if token == self.token:
                self.give_back(slot)


class _LocalBuffers:
    """The batch buffers of the num_workers=0 path, reused.

    A fresh buffer costs the kernel a zeroed page on first touch: for 6 MiB
    batches read at 2.5 GB/s that was ~6% of a 2-CPU machine. A buffer is
    lent out as a new array over its memory (:meth:`take`), and reused once
    that array is gone. Whatever the training loop keeps of a batch keeps the
    array: the batch's tensors come from ``torch.from_numpy(array)``, and
    numpy views of the array refer to it rather than to the memory's owner
    (it is made from a memoryview, which numpy does not look through). At
    most ``max_buffers`` are kept; beyond them a loop that holds on to
    batches gets new buffers, which cost memory, never a wrong sample.
    """

    def __init__(self, max_buffers: int) -> None:
        self.max_buffers = max_buffers
        self.bufs: List[np.ndarray] = []
        self.leases: List[Optional[weakref.ref]] = []

    def _free(self, i: int) -> bool:
        lease = self.leases[i]
        return lease is None or lease() is None

    def take(self, size: int) -> np.ndarray:
        best = -1
        for i, b in enumerate(self.bufs):
            if len(b) >= size and self._free(i) and (best < 0 or len(b) < len(self.bufs[best])):
                best = i
        if best < 0:
            buf = ffrecord.alloc_buffer(_capacity(size))
            if len(self.bufs) < self.max_buffers:
                self.bufs.append(buf)
                self.leases.append(None)
                best = len(self.bufs) - 1
            else:
                free = [i for i in range(len(self.bufs)) if self._free(i)]
                if not free:
                    return buf  # all lent out: not pooled
                best = min(free, key=lambda i: len(self.bufs[i]))  # too small for this batch
                self.bufs[best] = buf
        lent = np.frombuffer(memoryview(self.bufs[best]), dtype=np.uint8)
        self.leases[best] = weakref.ref(lent)
        return lent


class _BatchDataset(_tud.Dataset):
    """What fff.torch.DataLoader's workers see: item = one batch (an _Item).

    ``self[item]`` reads batch k with one native read (already submitted when
    an earlier item looked ahead to it), submits the look-ahead batches of
    the item, waits for batch k and returns it: without a transform as a
    :class:`_RawBatch` of the read buffer (shared memory from the worker's
    pool); with one, transformed and collated here (with a batch transform,
    handed to it); transformed batches are read into private buffers that
    are reused. At most ``depth``
    batches per worker are in flight; submissions of an earlier plan (an
    interrupted iteration) or of positions this worker has passed are
    cancelled when the next item shows they are stale.
    """

    def __init__(
        self,
        dataset: FFRecordDataset,
        collate_fn: Optional[Collate],
        depth: int,
        batch_transform: Optional[BatchTransform] = None,
    ) -> None:
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.depth = max(1, int(depth))
        self.batch_transform = batch_transform
        self._init_state()

    def _init_state(self) -> None:
        self._plan: Any = None
        self._pending: Dict[int, Any] = {}  # k -> (PendingBatch, buffer tensor, pool slot or None)
        self._pool: Optional[_ShmPool] = None
        self._private: Optional[_LocalBuffers] = None

    def __getstate__(self) -> Dict[str, Any]:
        return {
            "dataset": self.dataset,
            "collate_fn": self.collate_fn,
            "depth": self.depth,
            "batch_transform": self.batch_transform,
        }

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_state()

    @property
    def pool(self) -> _ShmPool:
        if self._pool is None:
            self._pool = _ShmPool(max_free=self.depth + 4, max_slots=4 * self.depth + 16)
        return self._pool

    def _submit(self, indices: np.ndarray) -> Any:
        r = self.dataset.reader
        idx = np.asarray(indices, dtype=np.int64)
        total = int(r.size_of(idx).sum()) if len(idx) else 0
        slot = None
        if self.dataset.transform is None and self.batch_transform is None:
            slot, buf = self.pool.take(total)  # shared memory: crosses to the training process as is
            arr = buf.numpy()
        else:
            # Transformed here: private memory, reused (a fresh buffer costs
            # its pages' zeroing, CPU the transforms need).
            if self._private is None:
                self._private = _LocalBuffers(max_buffers=self.depth + 2)
            arr = self._private.take(total)
            buf = torch.from_numpy(arr)
        try:
            return r.submit(idx, arr), buf, slot
        except BaseException:
            if slot is not None:
                self.pool.give_back(slot)
            raise

    def _drop(self, entry: Any) -> None:
        pb, _, slot = entry
        pb.cancel()  # returns once the library no longer writes to the buffer
        if slot is not None:
            self.pool.give_back(slot)

    def cancel(self, keep: Optional[Callable[[int], bool]] = None) -> int:
        """Cancel the pending submissions (those keep(k) rejects); how many."""
        stale = [k for k in self._pending if keep is None or not keep(k)]
        for k in stale:
            self._drop(self._pending.pop(k))
        return len(stale)

    def __getitem__(self, item: Any) -> Any:
        if not isinstance(item, _Item):  # a bare index array (not through the loader)
            item = _Item((None, 0, item, (), ()))
        plan, k, indices, ahead, freed = item
        if freed:
            self.pool.release(freed)
        if plan != self._plan:
            self.cancel()
            self._plan = plan
        elif self._pending:
            self.cancel(lambda j: j >= k)  # positions this worker will not get again
        entry = self._pending.pop(k, None)
        if entry is None:
            entry = self._submit(indices)
        try:
            for k2, idx2 in ahead:
                if len(self._pending) + 1 >= self.depth:
                    break
                if k2 not in self._pending:
                    self._pending[k2] = self._submit(idx2)
            pb, buf, slot = entry
            pb.wait()
        except BaseException:
            self._drop(entry)
            raise
        if slot is not None:
            info = _tud.get_worker_info()
            return _RawBatch(buf, pb.offsets, -1 if info is None else info.id, self.pool.token, slot)
        return self.dataset._batch_from_buffer(buf, pb.offsets, self.collate_fn, indices, self.batch_transform)

    def __len__(self) -> int:  # pragma: no cover - torch does not ask with a sampler
        raise TypeError("an fff batch dataset has no length")

    def __del__(self) -> None:
        try:
            if self._pending and not _native_forked():
                self.cancel()
        except Exception:
            pass


def _native_forked() -> bool:
    from . import _native

    return _native.forked()


def _storage_ref(t: torch.Tensor) -> Any:
    """A weak reference to t's storage: expired() once nothing in this process uses it."""
    from torch.multiprocessing.reductions import StorageWeakRef

    st = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return StorageWeakRef(st)


class _PlanSampler(_tud.Sampler):
    """Yields one _Item per batch still to read, with each worker's look-ahead
    and the pool buffers of that worker this process has let go of."""

    def __init__(self) -> None:  # Sampler.__init__ wants a data_source in torch 1.13
        self.plan: List[np.ndarray] = []
        self.plan_id: Any = None
        self.workers = 1
        self.depth = 1
        self.held: Dict[int, List[tuple]] = {}  # worker -> [(pool, slot, StorageWeakRef)]

    def hold(self, b: _RawBatch) -> None:
        """Remember a received pool buffer until its storage is freed here."""
        if b.worker >= 0:
            self.held.setdefault(b.worker, []).append((b.pool, b.slot, _storage_ref(b.buf)))

    def _freed(self, worker: int) -> List[tuple]:
        held = self.held.get(worker)
        if not held:
            return []
        freed, alive = [], []
        for h in held:
            (freed if h[2].expired() else alive).append(h)
        self.held[worker] = alive
        return [(p, s) for p, s, _ in freed]

    def __iter__(self) -> Iterator[_Item]:
        plan, pid, w, d = self.plan, self.plan_id, self.workers, self.depth
        n = len(plan)
        for k in range(n):
            # A worker's first item submits its whole look-ahead window; each
            # later item adds the one batch that entered the window (the rest
            # is in flight already; a missing one is read on demand).
            steps = range(1, d) if k < w else range(d - 1, d) if d > 1 else range(0)
            ahead = [(k + m * w, plan[k + m * w]) for m in steps if k + m * w < n]
            yield _Item((pid, k, plan[k], ahead, self._freed(k % w)))

    def __len__(self) -> int:
        return len(self.plan)


class WorkerStartError(RuntimeError):
    """Worker processes cannot start: the main script would run again in each
    of them (it has no ``if __name__ == "__main__":`` guard)."""


def _check_main_guard() -> None:
    """Refuse to start workers for a main script without a main guard.

    forkserver and spawn workers import the main script again (as
    ``__mp_main__``) to find the functions and classes they are handed. A
    script that builds and iterates its loader at the top level, unguarded,
    would do that again in every worker, which dies of it ("DataLoader
    worker exited unexpectedly"). A script without the guard that got here
    did exactly that, so say what to do before starting anything.
    Interactive sessions, ``python -c`` and notebooks have no main file and
    are not re-run.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or not path.endswith(".py"):
        return
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return
    for node in tree.body:
        if isinstance(node, ast.If) and _is_main_test(node.test):
            return
    raise WorkerStartError(
        f"fff.torch.DataLoader cannot start worker processes: {path} has no "
        '`if __name__ == "__main__":` guard. Workers start with forkserver/spawn '
        "(a forked child cannot use fff), and each of them imports the main script "
        "again, which would run your training loop in every worker. Put the code "
        'that builds and iterates the DataLoader under `if __name__ == "__main__":` '
        "(or use num_workers=0)."
    )


def _is_main_test(t: ast.expr) -> bool:
    """Whether t is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(t, ast.Compare) and len(t.ops) == 1 and isinstance(t.ops[0], ast.Eq)):
        return False
    sides = [t.left, t.comparators[0]]
    names = [x for x in sides if isinstance(x, ast.Name) and x.id == "__name__"]
    consts = [x for x in sides if isinstance(x, ast.Constant) and x.value == "__main__"]
    return len(names) == 1 and len(consts) == 1


def _start_method(name: Any) -> Any:
    """The multiprocessing context for workers: forkserver, else spawn."""
    if name is None:
        name = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(name) if isinstance(name, str) else name
    if ctx.get_start_method() == "forkserver":
        _preload_in_forkserver(ctx)
    return ctx


def _preload_in_forkserver(ctx: Any) -> None:
    # Workers fork from the fork server: with fff.torch (torch, numpy, fff —
    # never the native library) imported there once, each worker starts in
    # milliseconds instead of importing torch anew. Only before the server
    # starts; the list keeps what was asked for before ('__main__' by default).
    try:
        from multiprocessing import forkserver

        fs = forkserver._forkserver  # type: ignore[attr-defined]
        if getattr(fs, "_forkserver_pid", None) is not None:
            return
        mods = list(getattr(fs, "_preload_modules", ["__main__"]))
        if __name__ not in mods:
            ctx.set_forkserver_preload(mods + [__name__])
    except Exception:  # pragma: no cover - a private detail changed: workers just start slower
        pass


# Worker processes outlive the loader that started them: when an
# fff.torch.DataLoader is garbage-collected (not closed), its workers wait
# here for the next loader over the same dataset object with the same worker
# settings (the pattern of making a loader per epoch), which then starts
# without starting processes. At most _IDLE_MAX sets wait; older ones stop.
_IDLE_MAX = 2
_idle_lock = threading.Lock()
_idle: "OrderedDict[tuple, _Workers]" = OrderedDict()
# Plans are told apart by id across every loader of the process: workers
# passed on to another loader must not take its plan for the last one's.
_plan_ids = itertools.count(1)


class _Workers:
    """The torch DataLoader whose persistent workers read for an fff
    DataLoader, and its sampler. ``keep`` holds the objects whose ids are in
    ``key``, so that no other object takes one of those ids meanwhile."""

    def __init__(self, tl: _tud.DataLoader, sampler: "_PlanSampler", key: tuple, keep: tuple) -> None:
        self.tl, self.sampler, self.key, self.keep = tl, sampler, key, keep

    def alive(self) -> bool:
        """Whether every worker process runs (a loader that never iterated
        has none)."""
        it = getattr(self.tl, "_iterator", None)
        procs = getattr(it, "_workers", None)
        return bool(procs) and not getattr(it, "_shutdown", False) and all(p.is_alive() for p in procs)

    def pids(self) -> List[int]:
        it = getattr(self.tl, "_iterator", None)
        return [p.pid for p in getattr(it, "_workers", None) or []]

    def shutdown(self) -> None:
        it = getattr(self.tl, "_iterator", None)
        self.tl._iterator = None  # type: ignore[attr-defined]
        stop = getattr(it, "_shutdown_workers", None)
        if stop is not None:
            stop()


class _Holder:
    """What a DataLoader's finalizer needs: its workers, not the loader."""

    def __init__(self) -> None:
        self.workers: Optional[_Workers] = None


def _take_idle(key: tuple) -> Optional[_Workers]:
    with _idle_lock:
        w = _idle.pop(key, None)
    if w is not None and not w.alive():
        w.shutdown()
        return None
    return w


def _retire(holder: _Holder) -> None:
    """A collected loader's workers wait for the next loader (or stop)."""
    w, holder.workers = holder.workers, None
    if w is None:
        return
    if not w.alive():
        w.shutdown()
        return
    stop = []
    with _idle_lock:
        old = _idle.pop(w.key, None)
        if old is not None:
            stop.append(old)
        _idle[w.key] = w
        while len(_idle) > _IDLE_MAX:
            stop.append(_idle.popitem(last=False)[1])
    for x in stop:
        x.shutdown()


def _warm_forkserver(ctx: Any) -> None:
    """Start the fork server in the background, so that it is up (torch
    imported in it) when the loader's first iteration starts its workers."""
    if ctx.get_start_method() != "forkserver":
        return
    try:
        _check_main_guard()
    except WorkerStartError:
        return  # the first iteration says so
    from multiprocessing import forkserver

    def run() -> None:
        try:
            forkserver.ensure_running()
        except Exception:  # pragma: no cover - the first iteration starts it (and reports)
            pass

    threading.Thread(target=run, name="fff-forkserver-warmup", daemon=True).start()


def _default_rank() -> tuple:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # pragma: no cover
        pass
    return 0, 1


_log = logging.getLogger("fff.torch")


class _LoaderStats:
    """A DataLoader's delivery figures (DataLoader.stats)."""

    def __init__(self) -> None:
        self.batches = self.samples = self.bytes = 0
        self.seconds = self.wait = 0.0
        self.first_batch = 0.0
        self._since = 0.0
        self._first = False

    def begin(self) -> None:
        """An iteration starts: its first next() is being called."""
        self._since = time.perf_counter()
        self._first = True

    def batch(self, waited: float, samples: int, nbytes: int) -> None:
        now = time.perf_counter()
        self.seconds += now - self._since
        self._since = now
        self.wait += waited
        self.batches += 1
        self.samples += samples
        self.bytes += nbytes
        if self._first:
            self.first_batch, self._first = waited, False

    def as_dict(self) -> Dict[str, Any]:
        s = self.seconds
        return {
            "batches": self.batches,
            "samples": self.samples,
            "bytes": self.bytes,
            "seconds": s,
            "samples_per_s": self.samples / s if s > 0 else 0.0,
            "wait_seconds": self.wait,
            "wait_fraction": self.wait / s if s > 0 else 0.0,
            "first_batch_seconds": self.first_batch,
        }


def format_stats(st: Dict[str, Any]) -> str:
    """One line of :meth:`DataLoader.stats` for a log."""
    line = (
        f"fff.torch: {st['batches']} batches, {st['samples_per_s']:.0f} samples/s, "
        f"{st['bytes'] / max(st['seconds'], 1e-9) / 2**20:.0f} MiB/s, "
        f"waited for data {100 * st['wait_fraction']:.1f}% of {st['seconds']:.1f}s"
    )
    c = st.get("client")
    if c and c["reads"]:
        line += f"; reads here: {c['reads']}, p99 {1e3 * c['read_latency_p99_s']:.1f} ms, {c['retries']} retries"
    return line


class DataLoader(Closing):
    """Batches of an :class:`FFRecordDataset` for one rank, read ahead.

    Arguments:

    - batch_size: samples per batch.
    - shuffle, seed: the epoch's order is a permutation drawn from
      ``numpy.random.Generator(PCG64(SeedSequence([seed, epoch])))``: the same
      in every process, rank and run for a (seed, epoch), different between
      epochs. Without shuffle the order is 0..n-1.
    - rank, world_size (default: torch.distributed's, else 0 and 1): rank r
      takes positions r, r+world_size, ... of the epoch's order
      (DistributedSampler's rule). Every rank gets the same number of batches,
      and the k-th batch has the same size on every rank:

      - drop_last=False: when n is not a multiple of world_size the order is
        padded by wrapping around to the next multiple (as DistributedSampler
        does), so up to world_size-1 samples appear twice in the epoch; each
        rank's last batch may be short.
      - drop_last=True: each rank keeps ``n // world_size`` samples and only
        full batches; the rest of the epoch's order is left out.

      With n a multiple of world_size (and of world_size*batch_size with
      drop_last) every sample is read exactly once per epoch across ranks.
    - prefetch_batches: batches in flight at the storage (default None:
      ``max(4, ceil(512 / batch_size))``, at most 64, so that at least 512
      samples are queued, which a disk needs to stream). At most 64 are in
      flight per process (the C API's limit).
    - num_workers: 0 reads in the main process: ``prefetch_batches`` batches
      are submitted ahead with :meth:`fff.ffrecord.Reader.submit` (the reads
      overlap the training step) and the transform runs in the main thread.
      N > 0 runs a ``torch.utils.data.DataLoader`` with N worker processes
      started with ``forkserver`` (or ``spawn``; ``multiprocessing_context``
      overrides it): each worker reads whole batches (one native read per
      batch) and keeps ``max(2, ceil(prefetch_batches / N))`` of its batches
      in flight: torch hands batch k to worker k % N, and the sampler item of
      batch k carries the batches k+N, k+2N, ... that the worker submits
      before waiting for k (look-ahead; the reads of an abandoned iteration
      are cancelled by the next one). Without a transform the worker hands
      over the batch's ONE shared-memory buffer and the offsets (no copy, one
      file descriptor per batch) and this process slices the samples and
      runs collate_fn; the worker reuses the buffer once this process no
      longer references it (clone a batch before passing it to another
      process). With a transform the worker transforms and collates. Batches
      come back in order. Workers stay alive across epochs
      (``persistent_workers=True``) until :meth:`close`; a loader collected
      without close() leaves them to the next loader over the same dataset
      object with the same worker settings. The fork server is started in
      the background when the loader is made.
    - collate_fn: turns the list of a batch's samples into the batch. The
      default: without a transform, the list itself, whose samples are 1-D
      ``torch.uint8`` tensors that are views into the batch's one buffer (no
      copy; ``.numpy()`` is a view too); with a transform,
      ``torch.utils.data.default_collate`` of the transformed samples. Pass
      :func:`stack_samples` for fixed-size records (one ``[batch, size]``
      tensor, a view of the buffer). Without a transform it runs in this
      process (keep it cheap); with one, in the workers, and then it must be
      picklable.
    - batch_transform: ``fn(samples, indices) -> batch``, run once per batch
      where the batch is read (in the workers with num_workers > 0, else in
      this thread), instead of the dataset's transform and collate_fn (the
      dataset must have no transform, and collate_fn stays None). samples
      are the batch's samples as numpy ``uint8`` arrays, views into the
      batch's read buffer, which is reused after the call (copy what you
      keep); indices are their sample indices (int64 array). For decoding a
      whole batch into one preallocated tensor: :func:`shared_empty` gives
      memory that crosses from a worker without a copy, and
      :class:`fff.vision.ImageBatchDecoder` is such a transform for JPEG
      images. An exception becomes a :class:`TransformError` naming the
      batch's samples. Must be picklable with workers.
    - pin_memory, timeout, worker_init_fn, persistent_workers: as for torch's
      DataLoader (timeout: seconds to wait for a batch, 0 = forever).
    - log_every: log :meth:`stats` every this many batches (logger
      ``fff.torch``, level INFO; 0: never).

    Position and resume: the loader is a cursor over ``(epoch, batches
    yielded in that epoch)``. Iterating starts at the cursor and moves it by
    one per batch yielded; running an epoch to its end moves the cursor to
    the start of the next epoch (so ``set_epoch`` is optional; calling it
    every epoch as with DistributedSampler gives the same result). Breaking
    out of a loop keeps the cursor: the next loop continues that epoch (call
    ``set_epoch`` to start an epoch afresh). ``state_dict()`` is the cursor
    (plus the seed and what the order depends on); ``load_state_dict()`` on a
    new loader makes it yield exactly the batches the saved one had not yet
    yielded, then the following epochs. A new iterator makes older iterators
    of the same loader stale (advancing one raises RuntimeError).
    """

    def __init__(
        self,
        dataset: FFRecordDataset,
        batch_size: int = 1,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        num_workers: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        prefetch_batches: Optional[int] = None,
        collate_fn: Optional[Collate] = None,
        pin_memory: bool = False,
        timeout: float = 0,
        worker_init_fn: Optional[Callable[[int], None]] = None,
        persistent_workers: bool = True,
        multiprocessing_context: Any = None,
        batch_transform: Optional[BatchTransform] = None,
        log_every: int = 0,
    ) -> None:
        if not isinstance(dataset, FFRecordDataset):
            raise TypeError(
                f"fff.torch.DataLoader reads an fff.torch.FFRecordDataset, not {type(dataset).__name__}: "
                "use torch.utils.data.DataLoader for other datasets"
            )
        if batch_transform is not None:
            if not callable(batch_transform):
                raise TypeError(f"batch_transform must be callable, not {type(batch_transform).__name__}")
            if dataset.transform is not None or collate_fn is not None:
                raise ValueError(
                    "batch_transform replaces the dataset's transform and collate_fn: make the dataset "
                    "without a transform, leave collate_fn unset, and do both in batch_transform"
                )
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        if int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
        if int(num_workers) != num_workers or num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, not {num_workers!r}")
        if prefetch_batches is None:
            # Enough samples in flight for the storage to stream (the disk
            # wants hundreds of reads queued): at least 512 samples, 4 batches.
            prefetch_batches = min(MAX_PREFETCH_BATCHES, max(4, math.ceil(PREFETCH_SAMPLES / int(batch_size))))
        if int(prefetch_batches) != prefetch_batches or prefetch_batches < 1:
            raise ValueError(f"prefetch_batches must be >= 1 (or None), not {prefetch_batches!r}")
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, not {timeout!r}")
        if int(log_every) != log_every or log_every < 0:
            raise ValueError(f"log_every must be a non-negative integer, not {log_every!r}")
        if rank is None or world_size is None:
            r, w = _default_rank()
            rank = r if rank is None else rank
            world_size = w if world_size is None else world_size
        if int(world_size) != world_size or world_size < 1:
            raise ValueError(f"world_size must be >= 1, not {world_size!r}")
        if int(rank) != rank or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), not {rank!r}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.num_workers = int(num_workers)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.prefetch_batches = int(prefetch_batches)
        self.collate_fn = collate_fn
        self.batch_transform = batch_transform
        self.pin_memory = bool(pin_memory)
        self.timeout = float(timeout)
        self.worker_init_fn = worker_init_fn
        self.persistent_workers = bool(persistent_workers)
        self.multiprocessing_context = multiprocessing_context
        self._epoch = 0
        self._yielded = 0
        self._gen = 0  # which iterator is current
        self._n: Optional[int] = None
        # Workers (num_workers > 0): made on first iteration, or taken over
        # from a collected loader; passed on when this one is collected.
        self._holder = _Holder()
        fin = weakref.finalize(self, _retire, self._holder)
        fin.atexit = False  # at exit torch stops its workers itself
        if self.num_workers > 0:
            _warm_forkserver(_start_method(self.multiprocessing_context))
        self._local_buffers: Optional[_LocalBuffers] = None  # num_workers=0, made on first use
        self.log_every = int(log_every)
        self._stats = _LoaderStats()

    # --- the order of an epoch ------------------------------------------------

    def _num_samples(self) -> int:
        if self._n is None:
            self._n = len(self.dataset)
        return self._n

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n, ws, b = self._num_samples(), self.world_size, self.batch_size
        if self.drop_last:
            return (n // ws) // b
        return math.ceil(math.ceil(n / ws) / b)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The epoch's order of all sample indices (before sharding)."""
        n = self._num_samples()
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, int(epoch)])))
        return rng.permutation(n).astype(np.int64, copy=False)

    def batches(self, epoch: int) -> List[np.ndarray]:
        """This rank's batches of an epoch: index arrays, in the order yielded."""
        order = self.epoch_order(epoch)
        n, ws, b, r = len(order), self.world_size, self.batch_size, self.rank
        if self.drop_last:
            per = n // ws
            mine = order[r : per * ws : ws][: (per // b) * b]
        else:
            per = -(-n // ws)
            total = per * ws
            if total > n:
                order = np.resize(order, total)  # pad by wrapping around
            mine = order[r:total:ws]
        return [mine[i : i + b] for i in range(0, len(mine), b)]

    # --- cursor ---------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._epoch

    @property
    def batches_yielded(self) -> int:
        """Batches of the current epoch yielded so far."""
        return self._yielded

    def set_epoch(self, epoch: int) -> None:
        """Start epoch ``epoch`` from its first batch on the next iteration."""
        if int(epoch) != epoch or epoch < 0:
            raise ValueError(f"epoch must be a non-negative integer, not {epoch!r}")
        self._epoch = int(epoch)
        self._yielded = 0
        self._gen += 1

    def state_dict(self) -> Dict[str, Any]:
        """The position: ``epoch`` and ``batches_yielded`` (in that epoch), and
        what the order depends on (seed, shuffle, batch_size, drop_last,
        world_size, rank, num_samples). Plain ints and bools: save it with the
        model's checkpoint (torch.save, json, ...)."""
        return {
            "version": 1,
            "epoch": self._epoch,
            "batches_yielded": self._yielded,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "world_size": self.world_size,
            "rank": self.rank,
            "num_samples": self._num_samples(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue where the loader that made ``state`` stopped.

        Takes its epoch, batches_yielded and seed. The batch order must not
        depend on anything else that changed: a different shuffle, batch_size,
        drop_last, world_size or dataset length raises ValueError (the
        remaining batches would not be the ones the saved run had left). The
        rank may differ (ranks are at the same position).
        """
        missing = [k for k in ("epoch", "batches_yielded") if k not in state]
        if missing:
            raise ValueError(f"not an fff.torch.DataLoader state: missing {missing}")
        for key, mine in (
            ("shuffle", self.shuffle),
            ("batch_size", self.batch_size),
            ("drop_last", self.drop_last),
            ("world_size", self.world_size),
            ("num_samples", None),
        ):
            if key not in state:
                continue
            if key == "num_samples":
                mine = self._num_samples()
            if state[key] != mine:
                raise ValueError(
                    f"cannot resume: the saved loader had {key}={state[key]!r}, this one has {mine!r}; "
                    "the batch order would differ (make the loader with the saved settings)"
                )
        epoch, done = int(state["epoch"]), int(state["batches_yielded"])
        if "seed" in state:
            self.seed = int(state["seed"])
        if epoch < 0 or done < 0 or done > len(self):
            raise ValueError(f"invalid position: epoch {epoch}, {done} of {len(self)} batches yielded")
        self._epoch, self._yielded = epoch, done
        self._gen += 1

    # --- iteration ------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        self._gen += 1
        gen = self._gen
        epoch = self._epoch
        plan = self.batches(epoch)[self._yielded :]
        source = self._read_in_workers(plan) if self.num_workers > 0 else self._read_here(plan)
        st = self._stats
        sizes = self.dataset.sizes
        st.begin()
        try:
            for idx in plan:
                if self._gen != gen:
                    raise RuntimeError(
                        "this iterator of an fff.torch.DataLoader is stale: the loader was iterated "
                        "again, or set_epoch/load_state_dict was called"
                    )
                t0 = time.perf_counter()
                try:
                    batch = next(source)
                except StopIteration:
                    break
                st.batch(time.perf_counter() - t0, len(idx), int(sizes[idx].sum()))
                if self.log_every and st.batches % self.log_every == 0:
                    _log.info("%s", format_stats(self.stats()))
                self._yielded += 1
                yield batch
            self._epoch = epoch + 1
            self._yielded = 0
        finally:
            source.close()

    def _read_here(self, plan: List[np.ndarray]) -> Iterator[Any]:
        """num_workers=0: keep prefetch_batches batches in flight via submit."""
        if not plan:
            return
        reader = self.dataset.reader
        todo = iter(plan)
        pending: Deque[ffrecord.PendingBatch] = deque()
        plan_idx: Deque[np.ndarray] = deque()  # the indices of each pending batch
        depth = min(self.prefetch_batches, MAX_PREFETCH_BATCHES)
        if self._local_buffers is None:
            self._local_buffers = _LocalBuffers(max_buffers=depth + 4)
        bufs = self._local_buffers

        def submit() -> None:
            idx = next(todo, None)
            if idx is not None:
                pending.append(reader.submit(idx, bufs.take(int(reader.size_of(idx).sum()))))
                plan_idx.append(idx)

        pin = None
        if self.pin_memory and torch.cuda.is_available():
            from torch.utils.data._utils.pin_memory import pin_memory as pin

        wait_timeout = self.timeout or None
        try:
            for _ in range(depth):
                submit()
            while pending:
                pb = pending[0]
                pb.wait(wait_timeout)
                pending.popleft()
                idx = plan_idx.popleft()
                submit()  # the next read runs while this batch is processed and used
                batch = self.dataset._batch_from_buffer(
                    torch.from_numpy(pb.buffer), pb.offsets, self.collate_fn, idx, self.batch_transform
                )
                del pb
                if pin is not None:
                    batch = pin(batch)
                yield batch
        finally:
            for pb in pending:
                pb.cancel()
            pending.clear()

    def _workers(self) -> _Workers:
        w = self._holder.workers
        if w is not None:
            return w
        ctx = _start_method(self.multiprocessing_context)
        depth = self._worker_depth()
        key = (
            id(self.dataset), id(self.collate_fn), depth, self.num_workers, ctx.get_start_method(),
            id(self.worker_init_fn), self.pin_memory, self.timeout, id(self.batch_transform),
        )
        w = _take_idle(key) if self.persistent_workers else None
        if w is None:
            if ctx.get_start_method() != "fork":
                _check_main_guard()
            sampler = _PlanSampler()
            tl = _tud.DataLoader(
                _BatchDataset(self.dataset, self.collate_fn, depth, self.batch_transform),
                batch_size=None,
                sampler=sampler,
                num_workers=self.num_workers,
                collate_fn=_identity,
                pin_memory=self.pin_memory,
                timeout=self.timeout,
                worker_init_fn=self.worker_init_fn,
                multiprocessing_context=ctx,
                persistent_workers=self.persistent_workers,
                prefetch_factor=2,  # results queued per worker; the reads run ahead in the workers
            )
            w = _Workers(tl, sampler, key, (self.dataset, self.collate_fn, self.worker_init_fn, self.batch_transform))
        self._holder.workers = w
        return w

    @property
    def _sampler(self) -> "_PlanSampler":
        """The workers' sampler (a new empty one without workers)."""
        w = self._holder.workers
        return _PlanSampler() if w is None else w.sampler

    def worker_pids(self) -> List[int]:
        """The process ids of the workers (empty before the first iteration
        with num_workers > 0)."""
        w = self._holder.workers
        return [] if w is None else w.pids()

    def _worker_depth(self) -> int:
        """Batches each worker keeps in flight (its current one included)."""
        return min(MAX_PREFETCH_BATCHES, max(2, math.ceil(self.prefetch_batches / self.num_workers)))

    def _read_in_workers(self, plan: List[np.ndarray]) -> Iterator[Any]:
        if not plan:
            return
        w = self._workers()
        tl, sp = w.tl, w.sampler
        sp.plan, sp.plan_id, sp.workers, sp.depth = plan, next(_plan_ids), self.num_workers, self._worker_depth()
        # iter() resets persistent workers (torch drops what an unfinished
        # earlier pass had queued; the workers cancel that pass's look-ahead
        # reads on the first item of this one) and takes the plan; batches
        # come back in order.
        collate = self.collate_fn
        for b in iter(tl):
            if isinstance(b, _RawBatch):
                sp.hold(b)
                views = _split(b.buf, b.offsets)
                b = views if collate is None else collate(views)
            yield b

    # --- workers --------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """What the loader delivered and how long the training loop waited.

        Since the loader was made, over every iteration: ``batches``,
        ``samples``, ``bytes`` (the samples' stored sizes), ``seconds`` (time
        inside the loops, from the first ``next()`` to the latest batch:
        waiting for batches plus the work between them), ``samples_per_s``
        (over ``seconds``), ``wait_seconds`` (time the loop spent blocked in
        ``next()``: data the step had to wait for), ``wait_fraction``
        (``wait_seconds / seconds``: near 0, the loader keeps up and the
        step sets the pace; near 1, the step waits for data),
        ``first_batch_seconds`` (of the latest iteration: worker and
        read-ahead start-up), and ``client``: :func:`fff.stats` of this
        process (with workers the reads are the workers', in their own
        processes, so they do not show there).
        """
        from . import stats as client_stats

        d = self._stats.as_dict()
        d["client"] = client_stats()
        return d

    def close(self) -> None:
        """Stop the worker processes (a later iteration starts new ones) and
        let go of the batch buffers. A loader that is garbage-collected
        instead leaves its workers to the next loader over the same dataset
        object with the same worker settings (at most two such sets wait)."""
        w, self._holder.workers = self._holder.workers, None
        self._local_buffers = None
        self._gen += 1
        if w is not None:
            w.shutdown()

    def __del__(self) -> None:
        pass  # not Closing's close(): the finalizer passes the workers on

    def __repr__(self) -> str:
        return (
            f"<fff.torch.DataLoader {self.dataset.path!r} batch_size={self.batch_size} shuffle={self.shuffle} "
            f"seed={self.seed} rank={self.rank}/{self.world_size} num_workers={self.num_workers} "
            f"epoch={self._epoch} batches_yielded={self._yielded}>"
        )
