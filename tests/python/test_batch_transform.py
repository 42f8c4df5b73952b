"""fff.torch.DataLoader(batch_transform=...), fff.torch.shared_empty and
fff.vision.ImageBatchDecoder against a real cluster (conftest), with real
(forkserver) worker processes, no mocks.

The batch transforms the workers run are module-level functions or classes of
this file (the workers unpickle them by name, as test_torch.py's transforms).
Image references are made with PIL directly: decode the whole image, take
the crop box, resize bilinear (antialiased) to the output size.
"""

from __future__ import annotations

import io
import os
import random
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
Image = pytest.importorskip("PIL.Image")

import fff  # noqa: E402
from fff import ffrecord  # noqa: E402
from fff.torch import DataLoader, FFRecordDataset, TransformError, shared_empty  # noqa: E402
from fff.vision import ImageBatchDecoder, _torchvision_decoder  # noqa: E402

N = 23  # samples of the plain dataset: no batch size below divides it
BAD = 13  # the sample the raising transforms refuse
HEADER = 2  # bytes of label in front of every image sample

HAVE_TV = _torchvision_decoder() is not None
needs_tv = pytest.mark.skipif(not HAVE_TV, reason="torchvision with decode_jpeg is not installed")
BACKENDS = ["pil", pytest.param("torchvision", marks=needs_tv)]


# --- the plain dataset ---------------------------------------------------------


def sample(i: int) -> bytes:
    """Sample i: its index as int32, then (i * 7) % 11 bytes; sample 5 is empty."""
    if i == 5:
        return b""
    return np.int32(i).tobytes() + bytes((i * 31 + k) % 256 for k in range((i * 7) % 11))


@pytest.fixture(scope="module")
def fff_root(cluster: Any) -> str:
    d = f"/t/batch-transform-{os.getpid()}"
    fff.makedirs(d, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def plain_ds(fff_root: str) -> str:
    path = f"fff://{fff_root}/plain.ffr"
    with ffrecord.Writer(path) as w:
        for i in range(N):
            w.write(sample(i))
    return path


# --- batch transforms (module level: the workers unpickle them) ----------------


def record(samples: List[np.ndarray], indices: np.ndarray) -> Dict[str, Any]:
    """Everything the transform was given, copied (the buffer is reused)."""
    return {
        "indices": np.array(indices, copy=True),
        "indices_dtype": str(indices.dtype),
        "indices_type": type(indices).__name__,
        "samples": [bytes(s) for s in samples],
        "sample_types": sorted({(type(s).__name__, str(s.dtype), s.ndim) for s in samples}),
        "pid": os.getpid(),
        "worker": -1 if torch.utils.data.get_worker_info() is None else torch.utils.data.get_worker_info().id,
    }


def fail_on_bad(samples: List[np.ndarray], indices: np.ndarray) -> int:
    if BAD in indices.tolist():
        raise ValueError("bad batch")
    return len(samples)


class RaiseOwn:
    """Raises its own TransformError(index=BAD) on the batch holding BAD,
    optionally with a path and indices of its own."""

    def __init__(self, path: Optional[str] = None, indices: Optional[List[int]] = None) -> None:
        self.path = path
        self.indices = indices

    def __call__(self, samples: List[np.ndarray], indices: np.ndarray) -> int:
        if BAD in indices.tolist():
            raise TransformError(f"sample {BAD} is odd", index=BAD, path=self.path, indices=self.indices)
        return len(samples)


class SharedOut:
    """Writes (index, size, position) of each sample into a shared_empty tensor."""

    def __init__(self, dtype: Any) -> None:
        self.dtype = dtype

    def __call__(self, samples: List[np.ndarray], indices: np.ndarray) -> Tuple[bool, Any, int]:
        t = shared_empty((len(samples), 3), self.dtype)
        assert tuple(t.shape) == (len(samples), 3) and t.dtype == self.dtype
        for k, (s, i) in enumerate(zip(samples, indices.tolist())):
            t[k, 0] = i
            t[k, 1] = len(s)
            t[k, 2] = k
        return t.is_shared(), t, os.getpid()


# --- batch_transform: what it is given ------------------------------------------

# (num_workers, batch_size, shuffle, drop_last, rank, world_size)
SEES_CASES = [
    (0, 5, False, False, 0, 1),
    (0, 4, True, False, 1, 2),  # padded by wrapping: 24 positions over 2 ranks
    (0, 2, True, True, 2, 3),
    (2, 5, True, False, 0, 1),
    (2, 3, True, True, 1, 3),
    (2, 4, False, False, 1, 2),
]


@pytest.mark.parametrize("num_workers,batch_size,shuffle,drop_last,rank,world_size", SEES_CASES)
def test_batch_transform_gets_each_batch(
    plain_ds: str, num_workers: int, batch_size: int, shuffle: bool, drop_last: bool, rank: int, world_size: int
) -> None:
    ds = FFRecordDataset(plain_ds)
    check = FFRecordDataset(plain_ds)  # the reference reads, one sample at a time
    me = os.getpid()
    with DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=7,
        drop_last=drop_last,
        rank=rank,
        world_size=world_size,
        num_workers=num_workers,
        prefetch_batches=3,
        batch_transform=record,
    ) as dl:
        for epoch in (0, 1):
            want = dl.batches(epoch)
            assert want and all(len(b) for b in want)
            got = list(dl)  # the loop moves on to the next epoch by itself
            assert len(got) == len(want) == len(dl)
            for k, (g, idx) in enumerate(zip(got, want)):
                assert g["indices_type"] == "ndarray" and g["indices_dtype"] == "int64", k
                assert g["indices"].tolist() == idx.tolist(), (epoch, k)
                assert g["sample_types"] == [("ndarray", "uint8", 1)], (epoch, k)
                assert g["samples"] == [check[int(i)].tobytes() for i in idx], (epoch, k)
                assert g["samples"] == [sample(int(i)) for i in idx], (epoch, k)
            pids = {g["pid"] for g in got}
            if num_workers == 0:
                assert pids == {me} and {g["worker"] for g in got} == {-1}
            else:
                assert me not in pids and pids <= set(dl.worker_pids()), (pids, dl.worker_pids())
                # torch hands batch k to worker k % num_workers
                assert [g["worker"] for g in got] == [k % num_workers for k in range(len(got))]
        assert dl.epoch == 2


def test_batch_transform_resumes_mid_epoch(plain_ds: str) -> None:
    """A resumed loader hands the transform exactly the batches left."""
    kw = dict(batch_size=4, shuffle=True, seed=3, batch_transform=record, num_workers=0)
    dl = DataLoader(FFRecordDataset(plain_ds), **kw)
    it = iter(dl)
    head = [next(it)["indices"].tolist() for _ in range(2)]
    state = dl.state_dict()
    del it
    dl2 = DataLoader(FFRecordDataset(plain_ds), **kw)
    dl2.load_state_dict(state)
    rest = [g["indices"].tolist() for g in dl2]
    assert head + rest == [b.tolist() for b in dl.batches(0)]


# --- argument errors ---------------------------------------------------------------


def decode_one(s: np.ndarray) -> int:
    return len(s)


@pytest.mark.parametrize(
    "transform,collate_fn,batch_transform,exc",
    [
        (decode_one, None, record, ValueError),
        (None, list, record, ValueError),
        (decode_one, list, record, ValueError),
        (None, None, 42, TypeError),
        (None, None, "record", TypeError),
        (None, None, [record], TypeError),
    ],
    ids=["with-transform", "with-collate", "with-both", "int", "str", "list"],
)
def test_batch_transform_argument_errors(
    plain_ds: str, transform: Any, collate_fn: Any, batch_transform: Any, exc: type
) -> None:
    ds = FFRecordDataset(plain_ds, transform=transform)
    for nw in (0, 2):
        with pytest.raises(exc):
            DataLoader(ds, batch_size=4, num_workers=nw, collate_fn=collate_fn, batch_transform=batch_transform)


# --- errors of the batch transform ----------------------------------------------------


def _bad_batch(dl: DataLoader) -> Tuple[int, List[int]]:
    """The position and indices of the first batch of epoch 0 holding BAD."""
    for k, b in enumerate(dl.batches(0)):
        if BAD in b.tolist():
            return k, b.tolist()
    raise AssertionError("no batch holds BAD")


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("batch_size", [4, 10])
def test_raising_batch_transform_names_the_batch(plain_ds: str, num_workers: int, batch_size: int) -> None:
    ds = FFRecordDataset(plain_ds)
    dl = DataLoader(
        ds, batch_size=batch_size, shuffle=True, seed=1, num_workers=num_workers, batch_transform=fail_on_bad
    )
    k, idx = _bad_batch(dl)
    shown = ", ".join(str(i) for i in idx[:8]) + (", ..." if len(idx) > 8 else "")
    yielded = []
    try:
        with pytest.raises(TransformError) as e:
            for b in dl:
                yielded.append(b)
    finally:
        dl.close()
    msg = str(e.value)
    assert f"[{shown}]" in msg and f"({len(idx)} samples)" in msg, msg
    assert "fail_on_bad" in msg and "ValueError: bad batch" in msg and plain_ds in msg, msg
    # The batches before the failing one arrived, in order.
    assert yielded == [len(b) for b in dl.batches(0)[:k]]
    if num_workers == 0:
        assert e.value.indices == idx
        assert e.value.index is None
        assert e.value.path == plain_ds
        assert isinstance(e.value.__cause__, ValueError)


# (the transform's own path and indices, the path and indices expected)
OWN_CASES = [
    (None, None, "DATASET", "BATCH"),
    ("elsewhere.ffr", None, "elsewhere.ffr", "BATCH"),
    (None, [BAD], "DATASET", [BAD]),
]


@pytest.mark.parametrize("own_path,own_indices,want_path,want_indices", OWN_CASES)
def test_own_transform_error_keeps_its_index(
    plain_ds: str, own_path: Any, own_indices: Any, want_path: Any, want_indices: Any
) -> None:
    ds = FFRecordDataset(plain_ds)
    dl = DataLoader(ds, batch_size=6, shuffle=True, seed=4, batch_transform=RaiseOwn(own_path, own_indices))
    _, idx = _bad_batch(dl)
    with pytest.raises(TransformError) as e:
        list(dl)
    assert str(e.value) == f"sample {BAD} is odd"
    assert e.value.index == BAD
    assert e.value.path == (plain_ds if want_path == "DATASET" else want_path)
    assert e.value.indices == (idx if want_indices == "BATCH" else want_indices)


def test_own_transform_error_from_a_worker(plain_ds: str) -> None:
    ds = FFRecordDataset(plain_ds)
    with DataLoader(ds, batch_size=6, shuffle=True, seed=4, num_workers=2, batch_transform=RaiseOwn()) as dl:
        with pytest.raises(TransformError, match=rf"sample {BAD} is odd"):
            list(dl)


# --- shared_empty ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape,dtype",
    [
        ((2, 3), torch.uint8),
        ((5,), torch.float32),
        ([2, 3, 4], torch.int64),
        ((3, 2), torch.float64),
        ((0, 7), torch.uint8),
        ((4, 1, 2), torch.int16),
        ((), torch.float32),
    ],
)
def test_shared_empty_in_main_process(shape: Sequence[int], dtype: Any) -> None:
    t = shared_empty(shape, dtype)
    assert isinstance(t, torch.Tensor)
    assert tuple(t.shape) == tuple(shape) and t.dtype == dtype
    assert not t.is_shared()
    assert t.is_contiguous()
    t.fill_(3)
    assert t.numel() == 0 or t.eq(3).all()


def test_shared_empty_default_dtype() -> None:
    t = shared_empty((2, 2))
    assert t.dtype == torch.uint8 and tuple(t.shape) == (2, 2)


@pytest.mark.parametrize(
    "num_workers,dtype",
    [(0, torch.int64), (2, torch.uint8), (2, torch.float32), (2, torch.int64), (2, torch.float64)],
)
def test_shared_empty_in_workers(plain_ds: str, num_workers: int, dtype: Any) -> None:
    ds = FFRecordDataset(plain_ds)
    with DataLoader(
        ds, batch_size=5, shuffle=True, seed=2, num_workers=num_workers, batch_transform=SharedOut(dtype)
    ) as dl:
        want = dl.batches(0)
        got = list(dl)
    assert len(got) == len(want)
    for (shared, t, pid), idx in zip(got, want):
        assert shared == (num_workers > 0)  # is_shared() where the transform ran
        assert (pid != os.getpid()) == (num_workers > 0)
        assert t.dtype == dtype and tuple(t.shape) == (len(idx), 3)
        if num_workers:
            assert t.is_shared()  # came over as shared memory
        exp = [[int(i), len(sample(int(i))), k] for k, i in enumerate(idx)]
        assert t.to(torch.int64).tolist() == exp


# --- images ----------------------------------------------------------------------------


def _smooth(w: int, h: int, seed: int, mode: str = "RGB") -> Any:
    """A w x h test picture: low-frequency noise plus a horizontal red ramp
    (not left-right symmetric, so a flip shows)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 40), max(2, w // 40), 3), dtype=np.uint8)
    a = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.float32)
    a[..., 0] = a[..., 0] * 0.4 + 150.0 * np.arange(w, dtype=np.float32)[None, :] / w
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert(mode)


def _encode(im: Any, fmt: str) -> bytes:
    b = io.BytesIO()
    if fmt == "PJPEG":
        im.save(b, "JPEG", quality=95, progressive=True)
    else:
        im.save(b, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return b.getvalue()


# name: (width, height, PIL mode, format)
IMAGE_SPECS = {
    "rgb300x200": (300, 200, "RGB", "JPEG"),
    "rgb200x300": (200, 300, "RGB", "JPEG"),
    "gray256": (256, 256, "L", "JPEG"),
    "png120x90": (120, 90, "RGBA", "PNG"),
    "rgb640x480": (640, 480, "RGB", "JPEG"),  # large: PIL's draft (DCT-scaled) decoding
    "tiny13x9": (13, 9, "RGB", "JPEG"),  # upscaled
    "progressive240x160": (240, 160, "RGB", "PJPEG"),
    "cmyk96x64": (96, 64, "CMYK", "JPEG"),
}
NAMES = list(IMAGE_SPECS)
# CMYK JPEGs exist in real data sets (ImageNet has some); the torchvision
# backend cannot decode them (see test_cmyk_jpeg_with_torchvision).
COMMON = [n for n in NAMES if n != "cmyk96x64"]


@pytest.fixture(scope="module")
def images() -> Dict[str, bytes]:
    return {
        name: _encode(_smooth(w, h, seed, mode), fmt) for seed, (name, (w, h, mode, fmt)) in enumerate(IMAGE_SPECS.items())
    }


def _pil_ref(data: bytes, size: int, box: Optional[Tuple[int, int, int, int]] = None) -> np.ndarray:
    """[3, size, size] uint8: PIL decodes the whole image, crops box (x, y, w, h;
    default: the whole image) and resizes bilinear."""
    im = Image.open(io.BytesIO(data))
    im.load()
    im = im.convert("RGB")
    w, h = im.size
    x, y, cw, ch = box if box is not None else (0, 0, w, h)
    return np.asarray(im.resize((size, size), Image.BILINEAR, box=(x, y, x + cw, y + ch))).transpose(2, 0, 1)


def _center_box(w: int, h: int, fraction: float = 0.875) -> Tuple[int, int, int, int]:
    c = max(1, int(round(min(w, h) * fraction)))
    return (w - c) // 2, (h - c) // 2, c, c


def _center_ref(data: bytes, size: int) -> np.ndarray:
    w, h = Image.open(io.BytesIO(data)).size
    return _pil_ref(data, size, _center_box(w, h))


def _mad(a: Any, b: np.ndarray) -> float:
    a = a.numpy() if isinstance(a, torch.Tensor) else a
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


def _with_header(data: bytes, label: int) -> np.ndarray:
    return np.frombuffer(np.uint16(label).tobytes() + data, dtype=np.uint8)


@pytest.mark.parametrize("crop", ["random", "center"])
@pytest.mark.parametrize("backend", ["auto"] + BACKENDS)
@pytest.mark.parametrize("size,as_bytes", [(32, True), (57, False)])
def test_decoder_output_is_one_uint8_tensor(
    images: Dict[str, bytes], crop: str, backend: str, size: int, as_bytes: bool
) -> None:
    data = [images[n] for n in COMMON]
    samples: List[Any] = list(data) if as_bytes else [np.frombuffer(d, dtype=np.uint8) for d in data]
    dec = ImageBatchDecoder(size, crop=crop, backend=backend)
    out = dec(samples, np.arange(len(samples), dtype=np.int64))
    assert isinstance(out, torch.Tensor)
    assert tuple(out.shape) == (len(samples), 3, size, size) and out.dtype == torch.uint8
    assert out.is_contiguous() and not out.is_shared()  # main process: plain memory
    assert all(out[i].float().std() > 5 for i in range(len(samples)))  # pictures, not a constant
    empty = dec([], np.zeros(0, dtype=np.int64))
    assert tuple(empty.shape) == (0, 3, size, size) and empty.dtype == torch.uint8


def test_resolved_backend() -> None:
    assert ImageBatchDecoder(8, backend="pil").resolved_backend() == "pil"
    assert ImageBatchDecoder(8).resolved_backend() == "pil"  # auto: PIL (docs: the two cost the same here)
    if HAVE_TV:
        assert ImageBatchDecoder(8, backend="torchvision").resolved_backend() == "torchvision"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [32, 57])
@pytest.mark.parametrize("name", COMMON)
def test_center_crop_matches_pil(images: Dict[str, bytes], backend: str, size: int, name: str) -> None:
    # The image in the middle of a batch, behind a 2-byte header.
    batch = [_with_header(images[n], i) for i, n in enumerate(COMMON)]
    pos = COMMON.index(name)
    out = ImageBatchDecoder(size, crop="center", offset=HEADER, backend=backend)(batch, list(range(len(batch))))
    ref = _center_ref(images[name], size)
    assert _mad(out[pos], ref) < 3, (name, backend, _mad(out[pos], ref))
    # ... and not close to another image's reference (each slot holds its own).
    other = COMMON[(pos + 1) % len(COMMON)]
    assert _mad(out[pos], _center_ref(images[other], size)) > 10


# crop, center_fraction, scale, ratio, w, h -> box
BOX_CASES = [
    ("center", 0.875, None, None, 300, 200, (62, 12, 175, 175)),
    ("center", 0.875, None, None, 200, 300, (12, 62, 175, 175)),
    ("center", 1.0, None, None, 256, 256, (0, 0, 256, 256)),
    ("center", 0.875, None, None, 13, 9, (2, 0, 8, 8)),
    ("center", 0.5, None, None, 1, 1, (0, 0, 1, 1)),
    ("random", 0.875, (1.0, 1.0), (1.5, 1.5), 300, 200, (0, 0, 300, 200)),  # the whole image
    ("random", 0.875, (1.0, 1.0), (0.01, 100.0), 300, 200, (0, 0, 300, 200)),  # fallback, ratio allowed
    ("random", 0.875, (1.0, 1.0), (1.0, 1.0), 300, 200, (50, 0, 200, 200)),  # fallback, cut to ratio 1
    ("random", 0.875, (1.0, 1.0), (0.5, 0.75), 300, 200, (75, 0, 150, 200)),
    ("random", 0.875, (1.0, 1.0), (1.0, 2.0), 200, 300, (0, 50, 200, 200)),
]


@pytest.mark.parametrize("crop,fraction,scale,ratio,w,h,want", BOX_CASES)
def test_box(crop: str, fraction: float, scale: Any, ratio: Any, w: int, h: int, want: Tuple[int, ...]) -> None:
    kw: Dict[str, Any] = {"crop": crop, "center_fraction": fraction, "backend": "pil"}
    if scale is not None:
        kw.update(scale=scale, ratio=ratio)
    dec = ImageBatchDecoder(16, **kw)
    for seed in range(5):
        assert dec.box(w, h, random.Random(seed)) == want


@pytest.mark.parametrize("w,h", [(300, 200), (200, 300), (64, 64)])
def test_random_box_is_inside_and_follows_scale_and_ratio(w: int, h: int) -> None:
    dec = ImageBatchDecoder(16, scale=(0.2, 0.6), ratio=(0.8, 1.25), backend="pil")
    rng = random.Random(5)
    boxes = [dec.box(w, h, rng) for _ in range(300)]
    for x, y, cw, ch in boxes:
        assert 0 <= x and 0 <= y and 0 < cw and 0 < ch and x + cw <= w and y + ch <= h
        assert 0.2 * 0.9 <= cw * ch / (w * h) <= 0.6 * 1.1, (x, y, cw, ch)
        assert 0.8 * 0.9 <= cw / ch <= 1.25 * 1.1, (x, y, cw, ch)
    assert len(set(boxes)) > 200  # random: positions and sizes vary


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ratio_kind", ["exact", "fallback"])
@pytest.mark.parametrize("name", COMMON)
def test_random_full_image_crop_is_a_plain_resize(
    images: Dict[str, bytes], backend: str, ratio_kind: str, name: str
) -> None:
    w, h = IMAGE_SPECS[name][:2]
    ratio = (w / h, w / h) if ratio_kind == "exact" else (0.01, 100.0)
    dec = ImageBatchDecoder(40, crop="random", scale=(1.0, 1.0), ratio=ratio, flip=False, backend=backend)
    random.seed(0)
    out = dec([images[name], images[name]], [0, 1])
    ref = _pil_ref(images[name], 40)
    for i in range(2):
        assert _mad(out[i], ref) < 3, (name, backend, ratio_kind, _mad(out[i], ref))


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_flip(images: Dict[str, bytes], backend: str) -> None:
    data = images["rgb300x200"]
    dec = ImageBatchDecoder(40, scale=(1.0, 1.0), ratio=(1.5, 1.5), flip=True, backend=backend)
    ref = _pil_ref(data, 40)
    flipped = ref[:, :, ::-1]
    assert _mad(ref, flipped) > 10  # the picture is not symmetric
    random.seed(1)
    out = dec([data] * 16)
    kinds = []
    for i in range(16):
        a, b = _mad(out[i], ref), _mad(out[i], flipped)
        assert min(a, b) < 3, (i, a, b)
        kinds.append(a < b)
    assert set(kinds) == {True, False}  # both, with 16 fair coin flips
    # flip=False and crop="center" never flip
    assert not ImageBatchDecoder(40, flip=False).flip
    assert not ImageBatchDecoder(40, crop="center", flip=True).flip


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_crop_follows_the_random_seed(images: Dict[str, bytes], backend: str) -> None:
    dec = ImageBatchDecoder(32, backend=backend)
    batch = [images[n] for n in COMMON]
    random.seed(11)
    a = dec(batch)
    random.seed(11)
    b = dec(batch)
    c = dec(batch)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_cmyk_jpeg_with_pil(images: Dict[str, bytes]) -> None:
    out = ImageBatchDecoder(24, crop="center", backend="pil")([images["cmyk96x64"]], [0])
    assert _mad(out[0], _center_ref(images["cmyk96x64"], 24)) < 3


@needs_tv
def test_cmyk_jpeg_with_torchvision(images: Dict[str, bytes]) -> None:
    # torchvision's decode_jpeg cannot convert CMYK to RGB: the decoder falls back to PIL.
    out = ImageBatchDecoder(24, crop="center", backend="torchvision")([images["cmyk96x64"]], [0])
    assert _mad(out[0], _center_ref(images["cmyk96x64"], 24)) < 3


def _half(d: bytes) -> bytes:
    return d[: len(d) // 2]


# what a bad sample is (after the 2-byte header)
CORRUPT = {
    "garbage": lambda d: b"this is not an image" * 5,
    "truncated": _half,
    "headers-only": lambda d: d[:300],
    "jpeg-magic-then-garbage": lambda d: b"\xff\xd8" + bytes(range(256)),
    "empty": lambda d: b"",
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(CORRUPT))
def test_corrupt_sample_raises_transform_error(images: Dict[str, bytes], backend: str, kind: str) -> None:
    good = images["rgb300x200"]
    bad = CORRUPT[kind](good)
    dec = ImageBatchDecoder(24, crop="center", offset=HEADER, backend=backend)
    batch = [_with_header(good, 1), _with_header(bad, 2), _with_header(good, 3)]
    with pytest.raises(TransformError) as e:
        dec(batch, np.array([7, 42, 9], dtype=np.int64))
    assert e.value.index == 42
    assert "sample 42" in str(e.value) and f"{len(bad)} bytes after offset {HEADER}" in str(e.value)
    assert e.value.__cause__ is not None
    with pytest.raises(TransformError, match="sample 1 of the batch") as e:
        dec(batch)  # no indices: its position
    assert e.value.index is None


def test_sample_shorter_than_offset_raises(images: Dict[str, bytes]) -> None:
    with pytest.raises(TransformError, match="sample 3 ") as e:
        ImageBatchDecoder(24, offset=HEADER, backend="pil")([np.zeros(1, dtype=np.uint8)], [3])
    assert e.value.index == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(size=0),
        dict(size=-3),
        dict(size=2.5),
        dict(crop="left"),
        dict(crop="Center"),
        dict(scale=(0.0, 1.0)),
        dict(scale=(0.6, 0.5)),
        dict(scale=(0.1, 1.5)),
        dict(ratio=(0.0, 1.0)),
        dict(ratio=(2.0, 1.0)),
        dict(center_fraction=0.0),
        dict(center_fraction=1.5),
        dict(offset=-1),
        dict(offset=1.5),
        dict(backend="cv2"),
        dict(backend="PIL"),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_decoder_argument_errors(kwargs: Dict[str, Any]) -> None:
    kw = {"size": 32, **kwargs}
    with pytest.raises(ValueError):
        ImageBatchDecoder(kw.pop("size"), **kw)


# --- images through the DataLoader --------------------------------------------------

IMAGE_ORDER = COMMON  # the image dataset: every image behind a 2-byte label
assert len(IMAGE_ORDER) == 7


@pytest.fixture(scope="module")
def image_ds(fff_root: str, images: Dict[str, bytes]) -> str:
    path = f"fff://{fff_root}/images.ffr"
    with ffrecord.Writer(path) as w:
        for i, n in enumerate(IMAGE_ORDER):
            w.write(_with_header(images[n], 100 + i))
    return path


@pytest.fixture(scope="module")
def bad_image_ds(fff_root: str, images: Dict[str, bytes]) -> str:
    """Five samples; sample 3 is a truncated JPEG."""
    path = f"fff://{fff_root}/bad-images.ffr"
    good = images["rgb200x300"]
    with ffrecord.Writer(path) as w:
        for i in range(5):
            w.write(_with_header(_half(good) if i == 3 else good, i))
    return path


# crop, backend, reference of image n at size s
LOADER_CASES = [
    ("center", "pil"),
    pytest.param("center", "torchvision", marks=needs_tv),
    ("full", "auto"),  # random crop of the whole image, no flip
]


@pytest.mark.parametrize("crop,backend", LOADER_CASES)
def test_decoder_in_loader_workers(image_ds: str, images: Dict[str, bytes], crop: str, backend: str) -> None:
    size = 48
    if crop == "center":
        dec = ImageBatchDecoder(size, crop="center", offset=HEADER, backend=backend)
        ref = {n: _center_ref(images[n], size) for n in IMAGE_ORDER}
    else:
        dec = ImageBatchDecoder(size, scale=(1.0, 1.0), ratio=(0.01, 100.0), flip=False, offset=HEADER, backend=backend)
        ref = {n: _pil_ref(images[n], size) for n in IMAGE_ORDER}
    ds = FFRecordDataset(image_ds)
    with DataLoader(ds, batch_size=4, shuffle=True, seed=2, num_workers=2, batch_transform=dec) as dl:
        want = dl.batches(0)
        got = list(dl)
    assert [len(b) for b in want] == [4, 3]  # 7 images: a short last batch
    assert len(got) == len(want)
    for out, idx in zip(got, want):
        assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
        assert tuple(out.shape) == (len(idx), 3, size, size)
        assert out.is_shared()  # shared_empty in the worker: no copy on the way
        for k, i in enumerate(idx.tolist()):
            name = IMAGE_ORDER[i]
            assert _mad(out[k], ref[name]) < 3, (name, _mad(out[k], ref[name]))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_decoder_error_in_loader_names_the_sample(bad_image_ds: str, num_workers: int) -> None:
    ds = FFRecordDataset(bad_image_ds)
    dec = ImageBatchDecoder(16, crop="center", offset=HEADER, backend="pil")
    with DataLoader(ds, batch_size=2, num_workers=num_workers, batch_transform=dec) as dl:
        it = iter(dl)
        first = next(it)
        assert tuple(first.shape) == (2, 3, 16, 16)
        with pytest.raises(TransformError, match=r"could not decode sample 3 \(") as e:
            next(it)
    if num_workers == 0:
        assert e.value.index == 3
        assert e.value.indices == [2, 3]
        assert e.value.path == bad_image_ds
        assert re.search("truncated", str(e.value), re.I)
