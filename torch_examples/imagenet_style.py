#!/usr/bin/env python3
"""An ImageNet-style input pipeline: fff.torch.DataLoader next to torchvision's ImageFolder.

1. Generates N JPEGs (default 20,000, ~100 KiB each: 360-440 x 300-370 RGB
   with structured noise at quality 95) in 10 class directories, the layout
   torchvision.datasets.ImageFolder expects, with a pool of worker processes.
   They are cached (default ~/.cache/fff-examples/imagenet-style-N) and not
   generated again when present.
2. Packs them into FFRecord shards in fff (default
   fff:///demo/imagenet-style/N/, shards of 256 MiB), in ImageFolder's order.
   Sample format: bytes 0-1 are the class index (uint16, little endian), the
   rest is the JPEG file as is; each sample's key is its path under the JPEG
   directory (`fff ffr cat --key DATASET I`).
3. Measures in one run, with the same batch size and shuffling:
   fff.torch.DataLoader over the fff dataset and torch.utils.data.DataLoader
   over ImageFolder on the local JPEGs, each (i) without decoding (the raw
   bytes reach the training loop) and (ii) with PIL decode + augmentation
   (RandomResizedCrop(160), RandomHorizontalFlip, ToTensor). Without decode
   each side runs at several worker counts (fff: --fff-workers 0,2,4;
   ImageFolder: --if-workers 2,4,8, its workers handing the files over either
   as pickled bytes or as one shared-memory tensor per batch, --if-transports)
   and the table shows each side at its best; with decode both use
   --decode-workers (default: the CPU count). The sides alternate, every
   configuration --repeat times (medians). The page cache is dropped before
   every measurement when the script runs as root (else the table says the
   local files were warm). Prints a markdown table of samples/s and the
   fff / ImageFolder ratio (--json FILE: the results as JSON, for
   `go run ./bench -suites loader`).
4. Peers (--peers, default litdata,streaming,webdataset; torch_examples/peers.py):
   the same samples written once in LitData's, MosaicML Streaming's (MDS) and
   WebDataset's (tar) formats on local disk (<jpeg-dir>-<peer>, conversion
   time and size recorded), read with each one's own loader, shuffled, raw
   and with the same decode, alternating with the sides above (raw: each at
   its best of --peer-workers). A peer that does not import is reported as
   skipped. Every measurement records the CPU seconds it cost (this process,
   its children and the forkserver's DataLoader workers, and fffd with
   --server-pid), shown per epoch.

    python3 torch_examples/imagenet_style.py                 # 20,000 images, one epoch each
    python3 torch_examples/imagenet_style.py --quick         # 2,000 images (make demo)
    python3 torch_examples/imagenet_style.py --num-images 5000 --max-batches 50 --workers 4   # one worker count

Needs a running cluster for fff:// paths (`bin/fff up --daemon`), the fff
Python package (`scripts/bootstrap.sh python`), torch, torchvision and Pillow
(`scripts/bootstrap.sh demo`: Debian python3-torch python3-torchvision python3-pil).
Without torchvision the ImageFolder rows are skipped (and the decode rows use
a plain-PIL augmentation).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import struct
import sys
import time

import numpy as np

NUM_CLASSES = 10
JPEG_QUALITY = 95
CROP = 160
GEN_VERSION = 1  # bump when the generated images change
LABEL = struct.Struct("<H")
WHAT = {"raw": "raw bytes (no decode)", "decode": f"decode + RandomResizedCrop({CROP}) + flip + ToTensor",
        "batch": f"batch decode (fff.vision.ImageBatchDecoder({CROP}): uint8 batch)"}


def progress(iterable, total=None, desc="", unit="it", enabled=True):
    """tqdm when it is installed (Debian python3-tqdm), else the iterable as is."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True, file=sys.stdout)
        except ImportError:
            pass
    return iterable


def log(msg: str) -> None:
    print(msg, flush=True)


# --- 1. generating the JPEGs -------------------------------------------------


def class_name(c: int) -> str:
    return f"class_{c:02d}"


def image_path(root: str, i: int) -> str:
    return os.path.join(root, class_name(i % NUM_CLASSES), f"img_{i:06d}.jpg")


def _upsampled(rng, n: int, w: int, h: int, amp: float, Image) -> np.ndarray:
    a = rng.integers(0, 256, (n, n, 3), dtype=np.uint8)
    return (np.asarray(Image.fromarray(a).resize((w, h), Image.BICUBIC), dtype=np.float32) - 128.0) * amp


def make_jpeg(i: int) -> bytes:
    """Image i: a class-dependent colour field plus noise at three scales, as a JPEG of ~100 KiB."""
    from PIL import Image

    c = i % NUM_CLASSES
    crng = np.random.default_rng(1000 + c)  # the same large-scale colours for a whole class
    rng = np.random.default_rng(i)
    w, h = int(rng.integers(360, 441)), int(rng.integers(300, 371))
    img = (
        128.0
        + _upsampled(crng, 4, w, h, 0.6, Image)
        + _upsampled(rng, 4, w, h, 0.3, Image)
        + _upsampled(rng, 24, w, h, 0.4, Image)
        + _upsampled(rng, 96, w, h, 0.3, Image)
        + rng.normal(0.0, 16.0, (h, w, 3)).astype(np.float32)
    )
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _gen_one(job) -> int:
    root, i = job
    p = image_path(root, i)
    data = make_jpeg(i)
    tmp = p + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, p)
    return len(data)


def generate(root: str, n: int, workers: int, show: bool) -> None:
    """Generates the JPEGs into root unless a complete set is there already."""
    marker = os.path.join(root, ".complete")
    want = {"num_images": n, "version": GEN_VERSION, "classes": NUM_CLASSES}
    try:
        with open(marker) as f:
            if json.load(f) == want:
                log(f"JPEGs: {n} already in {root} (cached)")
                return
    except (OSError, ValueError):
        pass
    for c in range(NUM_CLASSES):
        os.makedirs(os.path.join(root, class_name(c)), exist_ok=True)
    todo = [(root, i) for i in range(n) if not os.path.exists(image_path(root, i))]
    t0 = time.monotonic()
    total = 0
    # fork is safe here: neither torch nor fff's native library is loaded yet.
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        for size in progress(pool.imap_unordered(_gen_one, todo, chunksize=16), total=len(todo),
                             desc="generating JPEGs", unit="img", enabled=show):
            total += size
    with open(marker, "w") as f:
        json.dump(want, f)
    dt = time.monotonic() - t0
    if todo:
        log(f"JPEGs: generated {len(todo)} in {root} in {dt:.1f}s "
            f"({total / len(todo) / 1024:.0f} KiB average, {workers} processes)")


def list_images(root: str):
    """(path, class index) in ImageFolder's order: classes sorted, files sorted within a class."""
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
    out = []
    for ci, c in enumerate(classes):
        d = os.path.join(root, c)
        for name in sorted(os.listdir(d)):
            if name.lower().endswith((".jpg", ".jpeg")):
                out.append((os.path.join(d, name), ci))
    return out


# --- 2. packing into fff -----------------------------------------------------


def pack(items, root: str, dest: str, shard_bytes: int, repack: bool, show: bool) -> None:
    """Packs (path, label) items into FFRecord shards under dest (a directory); keys are paths under root."""
    import fff
    from fff import ffrecord

    dest = dest.rstrip("/")
    in_fff = dest.startswith("fff://")
    exists = fff.exists(dest) if in_fff else os.path.exists(dest)
    if exists and not repack:
        try:
            if len(ffrecord.Reader(dest, check=False)) == len(items):
                log(f"FFRecord: {dest} already holds {len(items)} samples (--repack packs again)")
                return
        except Exception:
            pass
    if exists:
        if in_fff:
            fff.remove(dest, recursive=True)
        else:
            import shutil

            shutil.rmtree(dest)
    if in_fff:
        fff.makedirs(dest, exist_ok=True)
    else:
        os.makedirs(dest, exist_ok=True)

    t0 = time.monotonic()
    shard = 0
    w = None
    size = 0
    nbytes = 0
    try:
        for path, label in progress(items, total=len(items), desc="packing into fff", unit="img", enabled=show):
            if w is None or size >= shard_bytes:
                if w is not None:
                    w.close()
                w = ffrecord.Writer(f"{dest}/shard-{shard:05d}.ffr", version=2)
                shard += 1
                size = 0
            with open(path, "rb") as f:
                data = f.read()
            w.write_keyed(os.path.relpath(path, root), LABEL.pack(label) + data)
            size += len(data) + LABEL.size
            nbytes += len(data) + LABEL.size
        if w is not None:
            w.close()
    except BaseException:
        if w is not None:
            w.abort()
        raise
    dt = time.monotonic() - t0
    log(f"FFRecord: packed {len(items)} samples ({nbytes / 2**20:.0f} MiB) into {shard} shard(s) under {dest} "
        f"in {dt:.1f}s ({nbytes / 2**20 / max(dt, 1e-9):.0f} MiB/s)")


# --- 3. the loaders ----------------------------------------------------------
# Module-level functions, so that worker processes (forkserver/spawn) can unpickle them.


def _augmentation():
    try:
        import torchvision.transforms as T

        return T.Compose([T.RandomResizedCrop(CROP), T.RandomHorizontalFlip(), T.ToTensor()])
    except ImportError:
        return _pil_augment


def _pil_augment(img):
    """RandomResizedCrop(160) + horizontal flip + to tensor without torchvision (scale 0.08-1, ratio 3/4-4/3)."""
    import math
    import random

    import torch
    from PIL import Image

    w, h = img.size
    for _ in range(10):
        area = w * h * random.uniform(0.08, 1.0)
        ar = math.exp(random.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * ar))), int(round(math.sqrt(area / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = random.randint(0, w - cw), random.randint(0, h - ch)
            break
    else:
        cw, ch = min(w, h), min(w, h)
        x, y = (w - cw) // 2, (h - ch) // 2
    img = img.resize((CROP, CROP), Image.BILINEAR, box=(x, y, x + cw, y + ch))
    if random.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)


_AUG = None


def _aug(img):
    global _AUG
    if _AUG is None:
        _AUG = _augmentation()
    return _AUG(img)


def fff_collate_raw(views):
    """fff batch without a transform (uint8 tensors, views into the batch's one
    buffer) -> (list of JPEG byte tensors, labels): no decoding, no copy."""
    import torch

    if not views:
        return [], torch.zeros(0, dtype=torch.long)
    head = torch.stack([v[: LABEL.size] for v in views]).long()
    labels = head[:, 0] | (head[:, 1] << 8)
    return [v[LABEL.size:] for v in views], labels


def fff_decode(sample):
    """fff sample -> (augmented 3x160x160 float tensor, label)."""
    from PIL import Image

    (label,) = LABEL.unpack_from(sample, 0)
    img = Image.open(io.BytesIO(memoryview(sample)[LABEL.size:])).convert("RGB")
    return _aug(img), label


_DECODERS = {}


def batch_decoder(offset=0):
    """fff.vision.ImageBatchDecoder(CROP) (RandomResizedCrop + flip into one
    uint8 batch tensor), one per process and offset."""
    d = _DECODERS.get(offset)
    if d is None:
        from fff.vision import ImageBatchDecoder

        d = _DECODERS[offset] = ImageBatchDecoder(CROP, offset=offset)
    return d


def fff_batch_decode(samples, indices):
    """fff batch transform: the batch's samples -> (uint8 [B, 3, CROP, CROP], labels),
    decoded where the batch was read (the batch tensor in shared memory)."""
    import torch

    labels = torch.tensor([int(s[0]) | int(s[1]) << 8 for s in samples], dtype=torch.long)
    return batch_decoder(LABEL.size)(samples, indices), labels


def collate_batch_decode(batch):
    """The same batch decode for loaders of (JPEG bytes, label) pairs (ImageFolder
    with file_bytes, the peers): a collate_fn, so it runs in their workers too."""
    import torch

    return batch_decoder()([x for x, _ in batch]), torch.tensor([int(y) for _, y in batch])


def file_bytes(path):
    """ImageFolder loader for the raw rows: the file's bytes."""
    with open(path, "rb") as f:
        return f.read()


def pil_decode(path):
    """ImageFolder's default loader (PIL, RGB)."""
    from PIL import Image

    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def _shared_u8(n):
    import torch

    try:
        return torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(max(n, 1)))[:n]
    except (AttributeError, TypeError, RuntimeError):
        return torch.empty(n, dtype=torch.uint8).share_memory_()


def collate_raw(batch):
    """ImageFolder raw rows, in the worker: the batch's files back to back in ONE
    shared-memory uint8 tensor, their offsets and the labels. One tensor per
    batch crosses to the training process (a tensor per file would cost a file
    descriptor each: ~5,000 samples/s at most with 2 workers); split_batch
    makes the per-file views there, the same batch format fff's loader yields."""
    import torch

    sizes = [len(x) for x, _ in batch]
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = _shared_u8(int(offsets[-1]))
    a = buf.numpy()
    for (x, _), o in zip(batch, offsets.tolist()):
        a[o : o + len(x)] = np.frombuffer(x, dtype=np.uint8)
    return buf, torch.from_numpy(offsets), torch.tensor([y for _, y in batch])


class InMemorySamples:
    """The decode-only bound's dataset: fff samples already in memory, in ONE
    shared-memory tensor (workers get it by file descriptor, not by
    pickling the bytes), each decoded with fff_decode as the fff side does.
    A map-style dataset for torch's DataLoader."""

    def __init__(self, buf, offsets):
        self.buf, self.offsets = buf, offsets

    def __len__(self):
        return len(self.offsets) - 1

    def __getitem__(self, i):
        o = self.offsets
        if isinstance(i, list):  # a batch (the batch-decode bound: sampler=BatchSampler)
            a = self.buf.numpy()
            return fff_batch_decode([a[int(o[k]) : int(o[k + 1])] for k in i], np.asarray(i, dtype=np.int64))
        return fff_decode(self.buf[int(o[i]) : int(o[i + 1])].numpy())


def decode_costs(buf, offsets, count: int = 384, rounds: int = 3) -> dict:
    """CPU microseconds per sample of each way to decode + augment, in this
    process on one thread, over the same count in-memory samples (best of
    rounds): the per-sample pipeline (fff_decode + default_collate) and
    fff.vision.ImageBatchDecoder with each backend. Backends that cannot run
    here are left out."""
    import torch
    from fff.vision import ImageBatchDecoder, _torchvision_decoder
    from torch.utils.data import default_collate

    a = buf.numpy()
    o = offsets[: count + 1]
    samples = [a[int(o[k]) : int(o[k + 1])] for k in range(len(o) - 1)]
    ways = {"per-sample (PIL + ToTensor, default_collate)": lambda: [default_collate([fff_decode(x) for x in samples[i : i + 64]])
                                                                  for i in range(0, len(samples), 64)],
            "ImageBatchDecoder, PIL + draft": ImageBatchDecoder(CROP, offset=LABEL.size, backend="pil")}
    if _torchvision_decoder() is not None:
        ways["ImageBatchDecoder, torchvision.io.decode_jpeg"] = ImageBatchDecoder(CROP, offset=LABEL.size, backend="torchvision")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a DataLoader worker
    try:
        costs = {}
        for name, fn in ways.items():
            best = None
            for _ in range(rounds):
                t0 = time.process_time()
                if isinstance(fn, ImageBatchDecoder):
                    for i in range(0, len(samples), 64):
                        fn(samples[i : i + 64])
                else:
                    fn()
                dt = time.process_time() - t0
                best = dt if best is None else min(best, dt)
            costs[name] = best / len(samples) * 1e6
        return costs
    finally:
        torch.set_num_threads(threads)


def load_in_memory(dest: str, count: int, seed: int):
    """count samples of the fff dataset at dest (the first of a seeded
    permutation) copied into one shared-memory tensor: (tensor, offsets)."""
    import fff.torch as ft

    ds = ft.FFRecordDataset(dest, check=True)
    idx = np.random.default_rng(seed).permutation(len(ds))[:count]
    sizes = ds.sizes[idx]
    offsets = np.zeros(len(idx) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = _shared_u8(int(offsets[-1]))
    a = buf.numpy()
    for lo in range(0, len(idx), 256):
        for k, smp in enumerate(ds[idx[lo : lo + 256]], start=lo):
            a[offsets[k] : offsets[k + 1]] = smp
    ds.close()
    return buf, offsets


def split_batch(b):
    """collate_raw's (buffer, offsets, labels) -> (list of uint8 views, labels), in the training process."""
    import torch

    buf, offsets, labels = b
    return list(torch.split(buf, torch.diff(offsets).tolist())), labels


def drop_caches() -> bool:
    """Drops the page cache (root only); whether it did."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def measure(name: str, make_loader, max_batches: int, epochs: int, cold: bool, show: bool, post=None,
            cpu=None) -> dict:
    """Iterates a loader; samples/s over everything after the first batch (start-up reported apart).

    post: applied to every batch the loader yields (in this process) before it is counted.
    cpu: a function giving the CPU seconds spent so far (peers.cpu_seconds); the
    result's "cpu" is what the measurement cost, from creating the loader to closing it."""
    dropped = drop_caches() if cold else False
    c0 = cpu() if cpu else 0.0
    t0 = time.monotonic()
    loader = make_loader()
    n = nbytes = 0
    first = None
    t_first = t0
    steady = 0
    batches = 0
    for epoch in range(epochs):
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)
        total = len(loader) if not max_batches else min(len(loader), max_batches - batches)
        it = iter(loader)
        for b in progress(it, total=total, desc=name, unit="batch", enabled=show):
            x, y = post(b) if post is not None else b
            k = len(y)
            n += k
            if isinstance(x, (list, tuple)):
                nbytes += sum(len(t) if isinstance(t, bytes) else int(t.numel()) for t in x)
            else:
                nbytes += int(x.numel()) * x.element_size()
            if first is None:
                first = time.monotonic() - t0
                t_first = time.monotonic()
            else:
                steady += k
            batches += 1
            if max_batches and batches >= max_batches:
                break
        del it
        if max_batches and batches >= max_batches:
            break
    end = time.monotonic()
    if hasattr(loader, "close"):
        loader.close()  # fff.torch.DataLoader keeps its workers until closed
    del loader
    c1 = cpu() if cpu else 0.0
    rate = steady / (end - t_first) if end > t_first and steady else n / max(end - t0, 1e-9)
    return {"name": name, "samples": n, "batches": batches, "seconds": end - t0, "first": first or 0.0,
            "rate": rate, "mib_s": nbytes / 2**20 / max(end - t0, 1e-9), "cold": dropped,
            "cpu": (c1 - c0) if cpu else None}


def _counts(spec: str, flag: str):
    try:
        out = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        out = []
    if not out or any(w < 0 for w in out):
        raise SystemExit(f"imagenet_style: {flag} {spec!r}: want worker counts like 0,2,4")
    return out


def median(results):
    if not results:
        return None
    rs = sorted(results, key=lambda r: r["rate"])
    m = dict(rs[len(rs) // 2])
    m["range"] = (rs[0]["rate"], rs[-1]["rate"])
    m["runs"] = len(rs)
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-images", type=int, default=None, help="JPEGs to generate (default 20000; 2000 with --quick)")
    ap.add_argument("--jpeg-dir", default=None, help="where the JPEGs are cached (default ~/.cache/fff-examples/imagenet-style-N)")
    ap.add_argument("--dest", default=None, help="FFRecord dataset directory (default fff:///demo/imagenet-style/N)")
    ap.add_argument("--shard-mib", type=int, default=256, help="shard size in MiB")
    ap.add_argument("--repack", action="store_true", help="pack again even if the dataset is there")
    ap.add_argument("--epochs", type=int, default=1, help="epochs per measurement")
    ap.add_argument("--max-batches", type=int, default=0, help="stop each raw measurement after this many batches (0: no limit)")
    ap.add_argument("--decode-max-batches", type=int, default=None,
                    help="stop each decode measurement after this many batches (default: --max-batches)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=None,
                    help="one worker count for both loaders and both rows (overrides the three options below)")
    ap.add_argument("--fff-workers", default=None,
                    help="raw row: worker counts tried for fff.torch.DataLoader; the table shows the best "
                         "(default 0,2,4; 0,2 with --quick)")
    ap.add_argument("--if-workers", default=None,
                    help="raw row: worker counts tried for ImageFolder; the table shows the best "
                         "(default 2,4,8; 2,4 with --quick)")
    ap.add_argument("--if-transports", default=None,
                    help="raw row: how ImageFolder's workers hand the files over, tried as well (the best counts): "
                         "bytes (the loader's bytes, pickled through the worker's pipe, default_collate) and/or shm "
                         "(collate_raw: the batch joined in one shared-memory tensor); default both (bytes with --quick)")
    ap.add_argument("--decode-workers", type=int, default=None,
                    help="decode row: workers for both loaders (default: CPUs; decoding is CPU-bound)")
    ap.add_argument("--gen-workers", type=int, default=None, help="processes generating JPEGs (default: CPUs)")
    ap.add_argument("--modes", default="raw,decode", help="which rows: raw, decode or both")
    ap.add_argument("--no-imagefolder", action="store_true", help="only the fff rows")
    ap.add_argument("--warm", action="store_true", help="do not drop the page cache before each measurement")
    ap.add_argument("--quick", action="store_true", help="2,000 images, each row measured 3 times (what make demo runs)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="measure everything this many times (the sides alternating) and report medians "
                         "(default 1; 3 with --quick)")
    ap.add_argument("--peers", default=None,
                    help="other loaders measured too (litdata, streaming, webdataset; 'none' for none); default all "
                         "three (none with --quick), each skipped with the reason when it does not import "
                         "(scripts/bootstrap.sh bench installs them)")
    ap.add_argument("--peer-workers", default=None,
                    help="raw row: worker counts tried for each peer; the table shows the best (default 0,2,4; 0,2 with --quick)")
    ap.add_argument("--peer-chunk-mib", type=int, default=64,
                    help="the peers' chunk/shard size in MiB (64: LitData's and Streaming's default size)")
    ap.add_argument("--server-pid", type=int, default=None,
                    help="fffd's pid: its CPU time is counted in every measurement's CPU seconds (bench passes it)")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this file (bench -suites loader)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    n = args.num_images or (2000 if args.quick else 20000)
    if args.repeat is None:
        args.repeat = 3 if args.quick else 1
    cpus = os.cpu_count() or 1
    if args.workers is not None:
        fff_counts = if_counts = [args.workers]
        decode_workers = args.workers
    else:
        fff_counts = _counts(args.fff_workers or ("0,2" if args.quick else "0,2,4"), "--fff-workers")
        if_counts = _counts(args.if_workers or ("2,4" if args.quick else "2,4,8"), "--if-workers")
        decode_workers = args.decode_workers if args.decode_workers is not None else cpus
    peer_counts = [args.workers] if args.workers is not None else _counts(
        args.peer_workers or ("0,2" if args.quick else "0,2,4"), "--peer-workers")
    # make demo runs --quick: the peers only when asked for there.
    peer_spec = args.peers if args.peers is not None else ("none" if args.quick else "litdata,streaming,webdataset")
    peer_names = [p.strip() for p in peer_spec.split(",") if p.strip() and p.strip() != "none"]
    args.if_transports = args.if_transports or ("bytes" if args.quick else "bytes,shm")
    transports = [t.strip() for t in args.if_transports.split(",") if t.strip()]
    if not transports or any(t not in ("bytes", "shm") for t in transports):
        ap.error(f"--if-transports {args.if_transports!r}: bytes, shm or both")
    decode_max = args.max_batches if args.decode_max_batches is None else args.decode_max_batches
    show = not args.no_progress
    root = args.jpeg_dir or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fff-examples", f"imagenet-style-{n}")
    dest = args.dest or f"fff:///demo/imagenet-style/{n}"
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in WHAT:
            ap.error(f"--modes: unknown mode {m!r} ({', '.join(WHAT)})")

    # 1. JPEGs, in a process pool started before torch or fff's library is loaded.
    generate(root, n, args.gen_workers or cpus, show)
    items = list_images(root)
    if len(items) != n:
        log(f"error: {root} holds {len(items)} JPEGs, expected {n}: remove it and run again")
        return 1

    # 2. Pack into fff.
    pack(items, root, dest, args.shard_mib << 20, args.repack, show)

    # 3. Measure.
    import warnings

    import torch

    import fff.torch as ft

    # More workers than CPUs is what the raw row tries on purpose.
    warnings.filterwarnings("ignore", message="This DataLoader will create")

    try:
        import torchvision  # noqa: F401
        from torchvision.datasets import ImageFolder
    except ImportError:
        ImageFolder = None
        log("torchvision is not installed: the ImageFolder rows are skipped and the decode rows augment with plain PIL. "
            "Install it with `apt-get install python3-torchvision` (Debian) or `scripts/bootstrap.sh demo`.")
    if args.no_imagefolder:
        ImageFolder = None

    # 4. The peers: their formats written next to the JPEGs (once).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import peers

    unknown = [p for p in peer_names if p not in peers.PEERS]
    if unknown:
        ap.error(f"--peers: unknown {', '.join(unknown)} (known: {', '.join(peers.PEERS)})")
    peer_ok, peer_skipped = peers.available(peer_names)
    peer_info = {}
    for name in list(peer_ok):
        try:
            c = peers.convert(name, items, root, args.peer_chunk_mib << 20, log)
        except Exception as e:
            peer_skipped[name] = f"writing its format failed: {type(e).__name__}: {e}"
            peer_ok.remove(name)
            continue
        if c["cached"]:
            log(f"{peers.NAMES[name]}: {n} samples already under {c['dir']} (cached; written in {c['seconds']:.1f}s)")
        peer_info[name] = dict(c, name=peers.NAMES[name], version=peers.version(name), format=peers.FORMATS[name],
                               verifies=peers.VERIFIES[name], shuffle=peers.SHUFFLE[name])
    for name, why in peer_skipped.items():
        log(f"{peers.NAMES[name]}: skipped: {why}")
    cpu_pids = [args.server_pid] if args.server_pid else []

    def cpu_now():
        return peers.cpu_seconds(cpu_pids)

    cold = not args.warm
    if cold and not drop_caches():
        log("note: cannot drop the page cache (needs root): the local JPEGs are read warm, from memory")
        cold = False

    def fff_loader(mode, workers):
        if mode == "batch":
            return ft.DataLoader(ft.FFRecordDataset(dest, check=True), batch_size=args.batch_size, shuffle=True,
                                 seed=args.seed, drop_last=False, num_workers=workers, batch_transform=fff_batch_decode)
        raw = mode == "raw"
        ds = ft.FFRecordDataset(dest, transform=None if raw else fff_decode, check=True)
        return ft.DataLoader(ds, batch_size=args.batch_size, shuffle=True, seed=args.seed, drop_last=False,
                             num_workers=workers, collate_fn=fff_collate_raw if raw else None)

    bound_data = None  # (buffer, offsets): the decode-only bound's samples, loaded once

    def bound_loader(mode, workers):
        """torch's DataLoader over samples already in memory, with fff's
        decode (per sample, or the batch decode on whole batches) and the same
        batch size, shuffling and workers: what the decode allows without any
        IO."""
        nonlocal bound_data
        if bound_data is None:
            count = min(n, decode_max * args.batch_size) if decode_max else n
            bound_data = load_in_memory(dest, count, args.seed)
        g = torch.Generator()
        g.manual_seed(args.seed)
        ds = InMemorySamples(*bound_data)
        ctx = "forkserver" if workers else None
        if mode == "batch":
            batches = torch.utils.data.BatchSampler(torch.utils.data.RandomSampler(ds, generator=g), args.batch_size, False)
            return torch.utils.data.DataLoader(ds, batch_size=None, sampler=batches, num_workers=workers,
                                               multiprocessing_context=ctx)
        return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, generator=g,
                                           num_workers=workers, multiprocessing_context=ctx)

    def folder_loader(mode, workers, transport="bytes"):
        raw = mode != "decode"  # the batch decode reads the files' bytes and decodes in its collate_fn
        ds = ImageFolder(root, loader=file_bytes if raw else pil_decode, transform=None if raw else _aug)
        g = torch.Generator()
        g.manual_seed(args.seed)
        collate = collate_batch_decode if mode == "batch" else collate_raw if raw and transport == "shm" else None
        return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, generator=g,
                                           num_workers=workers, collate_fn=collate,
                                           multiprocessing_context="forkserver" if workers else None)

    # What to measure, in order: fff and ImageFolder alternate (drift hits
    # both), and which side goes first swaps every round.
    # A configuration: (mode, side, workers, transport); its label is
    # "workers" (fff, decode rows) or "workers/transport" (ImageFolder raw).
    # The peers join each group: fff, ImageFolder, then each peer.
    plan = []
    for mode in modes:
        if mode == "raw":
            fc = [(w, "") for w in fff_counts]
            ic = [(w, t) for w in if_counts for t in transports] if ImageFolder is not None else []
            pc = [(w, "") for w in peer_counts]
        else:
            fc, ic = [(decode_workers, "")], [(decode_workers, "")] if ImageFolder is not None else []
            pc = [(decode_workers, "")]
        for i in range(max(len(fc), len(ic), len(pc) if peer_ok else 0)):
            pair = []
            if i < len(fc):
                pair.append((mode, "fff") + fc[i])
                if mode != "raw":
                    pair.append((mode, "bound") + fc[i])
            if i < len(ic):
                pair.append((mode, "if") + ic[i])
            if i < len(pc):
                pair.extend((mode, name) + pc[i] for name in peer_ok)
            plan.append(pair)

    log(f"measuring: batch size {args.batch_size}; raw row: fff with {fff_counts} workers, ImageFolder with "
        f"{if_counts if ImageFolder is not None else '-'} x transports {transports}"
        f"{f', {peer_ok} with {peer_counts}' if peer_ok else ''} (best of each shown); decode row: {decode_workers} workers "
        f"each; {'cold page cache before each run' if cold else 'warm page cache'}; {args.epochs} epoch(s)"
        f"{f', at most {args.max_batches} batches raw' if args.max_batches else ''}"
        f"{f', at most {decode_max} batches decoded' if decode_max else ''}; {args.repeat} round(s)")
    if any(c[2] for pair in plan for c in pair):
        # Both loaders start workers from the same fork server: start it (with
        # fff.torch preloaded) before measuring, so neither pays for it.
        warm = fff_loader("raw", 1)
        next(iter(warm))
        warm.close()
        del warm

    names = {"fff": "fff.torch.DataLoader", "if": "ImageFolder + torch DataLoader",
             "bound": "decode-only bound (samples in memory)", **peers.NAMES}
    results = {}
    for rep in range(args.repeat):
        tag = f" #{rep + 1}" if args.repeat > 1 else ""
        for pair in plan:
            for mode, side, w, tr in (pair if rep % 2 == 0 else pair[::-1]):
                raw = mode == "raw"
                label = f"{w}/{tr}" if tr else str(w)
                if side == "fff":
                    mk = lambda: fff_loader(mode, w)  # noqa: E731
                elif side == "if":
                    mk = lambda: folder_loader(mode, w, tr or "bytes")  # noqa: E731
                elif side == "bound":
                    mk = lambda: bound_loader(mode, w)  # noqa: E731
                else:
                    mk = lambda: peers.loader(side, peer_info[side]["dir"], mode, w, args.batch_size,  # noqa: E731
                                              args.seed, n)
                r = measure(f"{side} {mode} {label}{tag}", mk, args.max_batches if raw else decode_max, args.epochs,
                            cold, show, post=split_batch if tr == "shm" else None, cpu=cpu_now)
                r["cpu_epoch"] = r["cpu"] * n / r["samples"] if r["samples"] else None
                results.setdefault((mode, side, label), []).append(r)
                log(f"  {names[side]}, {WHAT[mode]}, {w} workers{f' ({tr})' if tr else ''}{tag}: "
                    f"{r['rate']:.0f} samples/s ({r['samples']} samples, first batch {r['first']:.2f}s, "
                    f"{r['cpu']:.1f} CPU-s)")

    costs = {}
    if "batch" in modes and bound_data is not None:
        # Which decoder is faster here (ImageBatchDecoder's backend), on one thread, no IO.
        costs = decode_costs(*bound_data)
        log("decode + augmentation, CPU per sample on one thread (samples in memory): "
            + "; ".join(f"{k}: {v:.0f} us" for k, v in costs.items()))

    def best(mode, side):
        ms = {w: median(rs) for (m, s_, w), rs in results.items() if m == mode and s_ == side}
        if not ms:
            return None, {}
        w = max(ms, key=lambda k: ms[k]["rate"])
        return dict(ms[w], workers=w), ms

    def rounds(mode, a, side, b):
        """fff's rate (a) over side's (b), round by round, each at its best
        worker count: the two were measured next to each other in every
        round, so a ratio per round cancels the machine's drift between
        rounds, which the ratio of the two medians does not."""
        if a is None or b is None:
            return []
        ra = [r["rate"] for r in results.get((mode, "fff", a["workers"]), [])]
        rb = [r["rate"] for r in results.get((mode, side, b["workers"]), [])]
        return [x / y for x, y in zip(ra, rb) if y]

    mean_kib = sum(os.path.getsize(p) for p, _ in items[:: max(1, n // 500)]) / len(items[:: max(1, n // 500)]) / 1024
    rows = []
    for mode in modes:
        a, a_all = best(mode, "fff")
        b, b_all = best(mode, "if")
        rows.append({
            "mode": mode, "what": WHAT[mode],
            "fff": a, "imagefolder": b,
            "fff_by_workers": {w: m["rate"] for w, m in a_all.items()},
            "imagefolder_by_workers": {w: m["rate"] for w, m in b_all.items()},
            "ratio": (a["rate"] / b["rate"]) if a and b else None,
            "ratio_rounds": rounds(mode, a, "if", b),
            "target": 3.0 if mode == "raw" else None,
            "peers": {},
        })
        c, _ = best(mode, "bound")
        if c is not None:
            rows[-1]["bound"] = dict(c, fff_share=(a["rate"] / c["rate"]) if a and c["rate"] else None,
                                     fff_share_rounds=rounds(mode, a, "bound", c))
        for name in peer_ok:
            c, c_all = best(mode, name)
            if c is not None:
                rows[-1]["peers"][name] = dict(c, by_workers={w: m["rate"] for w, m in c_all.items()},
                                               fff_ratio=(a["rate"] / c["rate"]) if a and c["rate"] else None,
                                               fff_ratio_rounds=rounds(mode, a, name, c))

    print()
    print(f"Loader throughput: {n} JPEGs of ~{mean_kib:.0f} KiB, batch {args.batch_size}, {cpus} CPUs, "
          f"page cache {'dropped before each run' if cold else 'warm'}; samples/s after the first batch"
          f"{f', median of {args.repeat} runs' if args.repeat > 1 else ''}; each side at its best worker count "
          f"(raw: fff of {fff_counts}, ImageFolder of {if_counts} x {transports}; decode: {decode_workers})")
    print()
    print("| pipeline | fff.torch.DataLoader (fff) samples/s | ImageFolder (local disk) samples/s | fff / ImageFolder | "
          "workers fff / ImageFolder | first batch fff / ImageFolder |")
    print("|---|---:|---:|---:|---:|---:|")

    def rate(r):
        lo, hi = r["range"]
        return f"{r['rate']:.0f}" + (f" ({lo:.0f}-{hi:.0f})" if args.repeat > 1 else "")

    for row in rows:
        a, b = row["fff"], row["imagefolder"]
        if a is None:
            continue
        if b is None:
            print(f"| {row['what']} | {rate(a)} | skipped | | {a['workers']} / - | {a['first']:.2f}s / - |")
        else:
            print(f"| {row['what']} | {rate(a)} | {rate(b)} | {row['ratio']:.2f} | {a['workers']} / {b['workers']} | "
                  f"{a['first']:.2f}s / {b['first']:.2f}s |")
    for row in rows:
        c = row.get("bound")
        if c is not None and c.get("fff_share") is not None:
            print(f"  {row['mode']}: decode-only bound (the same decode of the same samples already in memory, "
                  f"{c['workers']} workers): {rate(c)} samples/s; fff reaches {c['fff_share']:.2f} of it"
                  + (f" (round by round: {', '.join(f'{x:.2f}' for x in c['fff_share_rounds'])}; median "
                     f"{sorted(c['fff_share_rounds'])[len(c['fff_share_rounds']) // 2]:.2f})"
                     if len(c["fff_share_rounds"]) > 1 else ""))
    for row in rows:
        for side, key in (("fff", "fff_by_workers"), ("ImageFolder", "imagefolder_by_workers")):
            if len(row[key]) > 1:
                print(f"  {row['mode']} {side} by workers: " + ", ".join(f"{w}: {r:.0f}" for w, r in row[key].items()))
        for name, p in row["peers"].items():
            if len(p["by_workers"]) > 1:
                print(f"  {row['mode']} {peers.NAMES[name]} by workers: "
                      + ", ".join(f"{w}: {r:.0f}" for w, r in p["by_workers"].items()))
    for k, v in costs.items():
        print(f"  CPU per sample on one thread, {k}: {v:.0f} us")
    print()
    if peer_names:
        def cpu(r):
            return f"{r['cpu_epoch']:.1f}" if r and r.get("cpu_epoch") is not None else "-"

        print(f"Peers, same samples on the same disk; CPU-s per epoch: this process, the DataLoader workers"
              f"{' and fffd' if cpu_pids else ' (not fffd: pass --server-pid)'}, scaled to {n} samples")
        print()
        print("| pipeline | loader | format (local disk) | samples/s | fff / it | workers | CPU-s / epoch | first batch | "
              "conversion | size on disk | verifies | shuffle |")
        print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for row in rows:
            a, b = row["fff"], row["imagefolder"]
            if a is not None:
                print(f"| {row['mode']} | fff.torch.DataLoader | FFRecord v2 in fff | {rate(a)} | 1.00 | {a['workers']} | "
                      f"{cpu(a)} | {a['first']:.2f}s | | | {peers.VERIFIES['fff']} | {peers.SHUFFLE['fff']} |")
            if b is not None:
                print(f"| {row['mode']} | ImageFolder | JPEG files | {rate(b)} | {row['ratio']:.2f} | {b['workers']} | "
                      f"{cpu(b)} | {b['first']:.2f}s | | | {peers.VERIFIES['imagefolder']} | {peers.SHUFFLE['imagefolder']} |")
            for name in peer_names:
                if name in peer_skipped:
                    print(f"| {row['mode']} | {peers.NAMES[name]} | skipped: {peer_skipped[name]} | | | | | | | | | |")
                    continue
                p, info = row["peers"].get(name), peer_info[name]
                if p is None:
                    continue
                ratio = f"{p['fff_ratio']:.2f}" if p["fff_ratio"] else ""
                print(f"| {row['mode']} | {info['name']} {info['version']} | {info['format']} | {rate(p)} | {ratio} | "
                      f"{p['workers']} | {cpu(p)} | {p['first']:.2f}s | {info['seconds']:.1f}s | "
                      f"{info['bytes'] / 2**20:.0f} MiB | {info['verifies']} | {info['shuffle']} |")
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "num_images": n, "mean_kib": mean_kib, "batch_size": args.batch_size, "cpus": cpus,
                "cold": cold, "repeat": args.repeat, "epochs": args.epochs,
                "max_batches": args.max_batches, "decode_max_batches": decode_max,
                "fff_workers": fff_counts, "if_workers": if_counts, "if_transports": transports, "decode_workers": decode_workers,
                "peer_workers": peer_counts, "peer_chunk_mib": args.peer_chunk_mib,
                "peers": peer_info, "peers_skipped": peer_skipped, "cpu_includes_server": bool(cpu_pids),
                "decode_costs": costs,
                "rows": rows,
            }, f, indent=1, default=lambda o: list(o) if isinstance(o, tuple) else str(o))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        import fff

        if not isinstance(e, fff.ClusterUnavailableError):
            raise
        # No cluster: say what to do instead of a traceback.
        print(f"imagenet_style: {e}\n(start one with `bin/fff up --daemon`, or pass a local path)", file=sys.stderr)
        sys.exit(2)
