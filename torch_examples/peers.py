"""The other loaders a PyTorch user would pick, as peers of fff.torch in imagenet_style.py.

LitData (Lightning AI), MosaicML Streaming (MDS shards) and WebDataset (tar
shards): each gets the same samples (the JPEG file's bytes and its class
index), written once in its own format on local disk next to the JPEG cache
(<jpeg-dir>-<peer>, reused when it holds the same images), and is read back
with its own dataset/loader the way its documentation recommends, shuffled,
through torch DataLoader workers (started with forkserver, as every loader
here: see DESIGN §9).

What is not equal between them (docs/performance.md, "DataLoader epoch"):

- Shuffle quality. fff.torch and ImageFolder draw a uniform permutation of
  all samples. LitData shuffles the order of its chunks and then samples
  within the chunks a worker holds; WebDataset shuffles the shard order and
  then mixes samples in a buffer (here 1,000) as it streams each shard front
  to back; Streaming's default py1e shuffles shards and then samples within
  overlapping blocks. So the peers read their files near-sequentially, which
  a disk serves more cheaply than random reads.
- Integrity. Only fff (CRC32C of every sample, checked on every read) and
  HFAiLab's original FFRecord check every sample. LitData and WebDataset
  check nothing; Streaming can check whole-shard hashes when it downloads
  shards from a remote (validate_hash), never when reading local shards.

Nothing under tests/ imports this module: the peers are installed only by
`scripts/bootstrap.sh bench`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

PEERS = ("litdata", "streaming", "webdataset")
NAMES = {"litdata": "LitData", "streaming": "MosaicML Streaming", "webdataset": "WebDataset"}
MODULES = {"litdata": "litdata", "streaming": "streaming", "webdataset": "webdataset"}
FORMATS = {"litdata": "LitData chunks", "streaming": "MDS shards", "webdataset": "tar shards"}
VERIFIES = {
    "fff": "CRC32C of every sample, every read",
    "imagefolder": "nothing",
    "litdata": "nothing",
    "streaming": "nothing locally (shard hashes only on download from a remote)",
    "webdataset": "nothing",
}
SHUFFLE = {
    "fff": "uniform permutation",
    "imagefolder": "uniform permutation",
    "litdata": "chunk order, then within each worker's chunks",
    "streaming": "py1e: shards, then within blocks",
    "webdataset": "shard order + 1,000-sample buffer",
}
WDS_SHUFFLE_BUFFER = 1000
FORMAT_VERSION = 1  # bump when what is written changes


def available(names: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """The peers in names that import, and why each other one is skipped."""
    ok: List[str] = []
    skipped: Dict[str, str] = {}
    for name in names:
        try:
            mod = __import__(MODULES[name])
            ok.append(name)
            _ = getattr(mod, "__version__", None)
        except Exception as e:  # an ImportError, or a peer that breaks on this torch
            skipped[name] = f"cannot import {MODULES[name]}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return ok, skipped


def version(name: str) -> str:
    try:
        from importlib.metadata import version as v

        return v({"litdata": "litdata", "streaming": "mosaicml-streaming", "webdataset": "webdataset"}[name])
    except Exception:
        return getattr(__import__(MODULES[name]), "__version__", "?")


def du(path: str) -> int:
    """Bytes on disk under path (allocated blocks)."""
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(d, f)).st_blocks * 512
            except OSError:
                pass
    return total


# --- writing -----------------------------------------------------------------


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write_litdata(items, out: str, chunk_bytes: int) -> None:
    # litdata.optimize() runs a user function in worker processes over inputs
    # and writes with BinaryWriter; the samples here are ready, so the writer
    # is used directly, in one process, as fff's pack does.
    from litdata.streaming.writer import BinaryWriter

    w = BinaryWriter(out, chunk_bytes=chunk_bytes)
    for i, (path, label) in enumerate(items):
        w.add_item(i, {"image": _read(path), "label": int(label)})
    w.done()
    w.merge(1)


def _write_streaming(items, out: str, chunk_bytes: int) -> None:
    from streaming import MDSWriter

    with MDSWriter(out=out, columns={"image": "bytes", "label": "int"}, size_limit=chunk_bytes) as w:
        for path, label in items:
            w.write({"image": _read(path), "label": int(label)})


def _write_webdataset(items, out: str, chunk_bytes: int) -> None:
    import webdataset as wds

    os.makedirs(out, exist_ok=True)
    with wds.ShardWriter(os.path.join(out, "shard-%05d.tar"), maxsize=chunk_bytes, verbose=0) as w:
        for i, (path, label) in enumerate(items):
            w.write({"__key__": f"{i:07d}", "jpg": _read(path), "cls": str(int(label)).encode()})


WRITERS = {"litdata": _write_litdata, "streaming": _write_streaming, "webdataset": _write_webdataset}


def convert(name: str, items, jpeg_root: str, chunk_bytes: int, log: Callable[[str], None]) -> Dict[str, Any]:
    """Writes items ((path, label) in ImageFolder's order) in the peer's format
    under <jpeg_root>-<name>, unless it is there with the same images.
    Returns {dir, seconds (of the conversion that made it), bytes, cached}."""
    out = f"{jpeg_root.rstrip('/')}-{name}"
    marker = out + ".complete"
    want = {"num_images": len(items), "chunk_bytes": chunk_bytes, "version": FORMAT_VERSION, "peer_version": version(name)}
    try:
        with open(marker) as f:
            got = json.load(f)
        if got.get("want") == want and os.path.isdir(out):
            return {"dir": out, "seconds": got["seconds"], "bytes": got["bytes"], "cached": True}
    except (OSError, ValueError, KeyError):
        pass
    if os.path.exists(marker):
        os.remove(marker)
    if os.path.exists(out):
        shutil.rmtree(out)
    t0 = time.monotonic()
    WRITERS[name](items, out, chunk_bytes)
    os.sync()
    dt = time.monotonic() - t0
    size = du(out)
    with open(marker, "w") as f:
        json.dump({"want": want, "seconds": dt, "bytes": size}, f)
    log(f"{NAMES[name]}: wrote {len(items)} samples as {FORMATS[name]} ({size / 2**20:.0f} MiB) under {out} in {dt:.1f}s")
    return {"dir": out, "seconds": dt, "bytes": size, "cached": False}


# --- reading -----------------------------------------------------------------
# Module-level, so that forkserver workers unpickle them.


def collate_raw(batch):
    """[(JPEG bytes, label)] -> (list of bytes, label tensor): no decode."""
    import torch

    return [x for x, _ in batch], torch.tensor([int(y) for _, y in batch])


def collate_decoded(batch):
    import torch

    return torch.stack([x for x, _ in batch]), torch.tensor([int(y) for _, y in batch])


def decode_bytes(data) -> Any:
    """JPEG bytes -> the augmented 3x160x160 float tensor, as every other side decodes."""
    from PIL import Image

    from imagenet_style import _aug

    return _aug(Image.open(io.BytesIO(data)).convert("RGB"))


def _pair(sample: Dict[str, Any], raw: bool):
    x = sample["image"]
    return (x if raw else decode_bytes(x)), int(sample["label"])


def lit_raw(sample):
    return _pair(sample, True)


def lit_decode(sample):
    return _pair(sample, False)


def _pairs_class(base, name: str):
    """A subclass of the peer's dataset base yielding (bytes or decoded tensor, label)."""

    class Pairs(base):
        def __init__(self, *args, raw: bool = True, **kwargs):
            super().__init__(*args, **kwargs)
            self.raw = raw

        def __getitem__(self, index):
            return _pair(super().__getitem__(index), self.raw)

    Pairs.__name__ = name
    return Pairs


def _litdata_dataset_class():
    import litdata

    return _pairs_class(litdata.StreamingDataset, "LitPairs")


def _streaming_dataset_class():
    import streaming

    return _pairs_class(streaming.StreamingDataset, "MDSPairs")


def _module_level(make):
    """The class make() defines, named as this module's (workers unpickle
    instances by that name), or None when the peer does not import."""
    try:
        cls = make()
    except Exception:
        return None
    cls.__qualname__ = cls.__name__
    cls.__module__ = __name__
    return cls


_LAZY = {"LitPairs": _litdata_dataset_class, "MDSPairs": _streaming_dataset_class}


def __getattr__(name: str):
    """LitPairs and MDSPairs, made on first use (importing a peer costs seconds; a run without peers never does):
    pickle finds them here too, in the workers."""
    if name in _LAZY:
        cls = _module_level(_LAZY[name])
        if cls is None:
            raise AttributeError(f"{name}: its peer does not import")
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def wds_raw(sample):
    jpg, cls = sample
    return jpg, int(cls)


def wds_decode(sample):
    jpg, cls = sample
    return decode_bytes(jpg), int(cls)


def _no_version_check(version: str) -> None:
    pass


class Sized:
    """A loader with a length (WebDataset's has none: shards split among
    workers decide the number of batches); iterating is the loader's own."""

    def __init__(self, loader, n: int):
        self.loader = loader
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(self.loader)


def loader(name: str, path: str, mode: str, workers: int, batch_size: int, seed: int, num_samples: int):
    """The peer's loader over path: shuffled batches of (list of bytes | tensor, labels).

    mode: "raw" (bytes), "decode" (the per-sample decode in the dataset) or
    "batch" (bytes from the dataset, the batch decode in the collate_fn,
    which runs in the loader's workers)."""
    ctx = "forkserver" if workers else None
    raw = mode != "decode"
    if mode == "batch":
        from imagenet_style import collate_batch_decode as collate
    else:
        collate = collate_raw if raw else collate_decoded
    if name == "litdata":
        import litdata

        import litdata.streaming.dataset as lsd

        # LitData asks PyPI for a newer release of itself in every new
        # dataset's constructor (once per process): a network request inside
        # the measurement, and up to 30 s when PyPI is unreachable.
        lsd._check_version_and_prompt_upgrade = _no_version_check
        ds = __getattr__("LitPairs")(path, shuffle=True, seed=seed, drop_last=False, raw=raw)
        # prefetch_factor: LitData passes None without workers, which torch < 2 refuses (2 is its default there).
        return litdata.StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                           multiprocessing_context=ctx, prefetch_factor=2)
    if name == "streaming":
        from streaming import StreamingDataLoader

        ds = __getattr__("MDSPairs")(local=path, remote=None, shuffle=True, shuffle_seed=seed, batch_size=batch_size, raw=raw)
        return StreamingDataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate,
                                   multiprocessing_context=ctx, drop_last=False)
    if name == "webdataset":
        import webdataset as wds

        urls = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".tar"))
        # shardshuffle: a shuffle buffer of shards as large as their number, so the shard order is a permutation.
        ds = (wds.WebDataset(urls, shardshuffle=len(urls), seed=seed, empty_check=False)
              .shuffle(WDS_SHUFFLE_BUFFER)
              .to_tuple("jpg", "cls")
              .map(wds_raw if raw else wds_decode)
              .batched(batch_size, collation_fn=collate, partial=True))
        ld = wds.WebLoader(ds, batch_size=None, num_workers=workers, multiprocessing_context=ctx)
        return Sized(ld, -(-num_samples // batch_size))
    raise ValueError(f"unknown peer {name!r}")


# --- CPU time ------------------------------------------------------------------


def cpu_seconds(extra_pids: Sequence[int] = ()) -> float:
    """User + system seconds of this process, its children (reaped ones via
    RUSAGE_CHILDREN; live ones such as the forkserver, whose DataLoader workers
    are its children and are reaped by it, with their own children's times)
    and of extra_pids (fffd), so far. Differences of two calls are what a
    measurement cost the machine."""
    import resource

    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime
    try:
        import psutil
    except ImportError:
        return total
    procs = []
    try:
        procs = psutil.Process().children(recursive=False)
    except psutil.Error:
        pass
    for pid in extra_pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
        except psutil.Error:
            pass
    return total

