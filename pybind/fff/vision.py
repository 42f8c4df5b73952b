"""fff.vision: decoding whole batches of images where the batch is read.

:class:`ImageBatchDecoder` is a ``batch_transform`` for
:class:`fff.torch.DataLoader`: it decodes a batch's JPEG samples, crops and
resizes each (RandomResizedCrop + horizontal flip for training, a center crop
for evaluation) and writes them into ONE ``uint8`` tensor ``[B, 3, size,
size]``, allocated in shared memory inside a worker, so the batch reaches the
training process without pickling or copying a sample::

    from fff.torch import FFRecordDataset, DataLoader
    from fff.vision import ImageBatchDecoder

    decode = ImageBatchDecoder(224)
    loader = DataLoader(FFRecordDataset("fff:///data/train"), batch_size=256, shuffle=True,
                        num_workers=8, batch_transform=decode)
    for images in loader:                    # uint8 [256, 3, 224, 224]
        x = images.cuda(non_blocking=True).float().div_(255)   # normalise on the GPU

Why it is faster than torchvision's per-sample ``Compose([RandomResizedCrop,
RandomHorizontalFlip, ToTensor])`` on the CPU (measured in ``make bench``,
suite ``loader``; docs/performance.md):

- the output stays ``uint8``: ToTensor's float conversion (4 bytes per pixel
  value written, then copied again by default_collate's stacking) moves to
  the GPU, where it costs nothing that matters;
- each image is resized straight into its slot of the batch tensor;
- JPEGs are decoded by the faster decoder available (``backend``):
  ``"torchvision"`` (``torchvision.io.decode_jpeg``, libjpeg-turbo without
  PIL's image objects) or ``"pil"`` with draft mode, which decodes at 1/2,
  1/4 or 1/8 scale in the DCT domain when the crop is at least that many
  times larger than the output (the same pixels an antialiased downscale
  would give, for a fraction of the work). ``"auto"`` is PIL: on the
  ImageNet-style samples of ``make bench`` the two cost the same CPU per
  image within the runs' noise (1,527 against 1,550 µs in one run, 1,742
  against 1,617 in the next: entropy decoding, which neither avoids, is most
  of a JPEG's cost), and PIL reads every format, converts CMYK, and needs no
  torchvision. Images that are not JPEG, and JPEGs decode_jpeg refuses
  (CMYK), go through PIL with either backend.

The crop follows torchvision's RandomResizedCrop (area fraction ``scale``,
aspect ratio ``ratio`` drawn log-uniformly, ten tries, then a center crop),
drawn from Python's ``random`` module, which torch seeds in every worker.
Resizing is bilinear with antialiasing, as PIL's and torchvision's are.

Needs Pillow; torchvision is optional.
"""

from __future__ import annotations

import io
import math
import random
from typing import Any, Optional, Sequence, Tuple

import numpy as np

try:
    import torch
except ImportError as _e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fff.vision needs PyTorch, which is not installed: `pip install torch` "
        "(on Debian `apt-get install python3-torch`)."
    ) from _e

from .torch import TransformError, shared_empty

__all__ = ["ImageBatchDecoder"]

BACKENDS = ("auto", "pil", "torchvision")
CROPS = ("random", "center")

_JPEG_MAGIC = b"\xff\xd8"


def _torchvision_decoder() -> Any:
    """(decode_jpeg, ImageReadMode, resize) from torchvision, or None."""
    try:
        import torchvision.transforms.functional as F
        from torchvision.io import ImageReadMode, decode_jpeg
    except Exception:  # ImportError, or a torchvision built without its image library
        return None
    return decode_jpeg, ImageReadMode, F


class ImageBatchDecoder:
    """A batch transform: image samples -> one ``uint8`` tensor ``[B, 3, size, size]``.

    Arguments:

    - size: the output's height and width.
    - crop: ``"random"`` (RandomResizedCrop with ``scale`` and ``ratio``,
      then a horizontal flip with probability 0.5 when ``flip``) or
      ``"center"`` (the central square of ``center_fraction`` of the
      shorter side, as ``Resize(size / center_fraction)`` +
      ``CenterCrop(size)`` take; no flip).
    - offset: bytes to skip at the start of every sample (a header, such as
      a label, in front of the image file's bytes).
    - backend: ``"auto"``, ``"torchvision"`` or ``"pil"`` (module doc).

    Called as ``decoder(samples, indices=None)`` with the samples as numpy
    ``uint8`` arrays or bytes; a sample that does not decode raises
    :class:`fff.torch.TransformError` naming its index.
    """

    def __init__(
        self,
        size: int,
        *,
        crop: str = "random",
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        center_fraction: float = 0.875,
        offset: int = 0,
        backend: str = "auto",
    ) -> None:
        if int(size) != size or size < 1:
            raise ValueError(f"size must be a positive integer, not {size!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, not {crop!r}")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must be (lo, hi) with 0 < lo <= hi <= 1, not {scale!r}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (lo, hi) with 0 < lo <= hi, not {ratio!r}")
        if not 0 < center_fraction <= 1:
            raise ValueError(f"center_fraction must be in (0, 1], not {center_fraction!r}")
        if int(offset) != offset or offset < 0:
            raise ValueError(f"offset must be a non-negative integer, not {offset!r}")
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        if backend == "torchvision" and _torchvision_decoder() is None:
            raise ValueError(
                "backend='torchvision' needs torchvision with torchvision.io.decode_jpeg "
                "(`pip install torchvision`, or Debian's python3-torchvision); backend='pil' needs only Pillow"
            )
        self.size = int(size)
        self.crop = crop
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        self.flip = bool(flip) and crop == "random"
        self.center_fraction = float(center_fraction)
        self.offset = int(offset)
        self.backend = backend
        self._tv: Any = None  # torchvision's functions, looked up in the process that decodes

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_tv"] = None
        return d

    def __repr__(self) -> str:
        return f"ImageBatchDecoder(size={self.size}, crop={self.crop!r}, backend={self.resolved_backend()!r})"

    def resolved_backend(self) -> str:
        """The backend JPEGs are decoded with here (``auto`` resolved)."""
        return "pil" if self.backend == "auto" else self.backend

    # --- the crop ---------------------------------------------------------------

    def box(self, w: int, h: int, rng: Any = random) -> Tuple[int, int, int, int]:
        """The crop (x, y, width, height) of a w x h image."""
        if self.crop == "center":
            c = max(1, int(round(min(w, h) * self.center_fraction)))
            return (w - c) // 2, (h - c) // 2, c, c
        area = w * h
        lo, hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(10):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            ar = math.exp(rng.uniform(lo, hi))
            cw = int(round(math.sqrt(target * ar)))
            ch = int(round(math.sqrt(target / ar)))
            if 0 < cw <= w and 0 < ch <= h:
                return rng.randint(0, w - cw), rng.randint(0, h - ch), cw, ch
        # torchvision's fallback: the whole image cut to the nearest allowed ratio
        r = w / h
        if r < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif r > self.ratio[1]:
            cw, ch = int(round(h * self.ratio[1])), h
        else:
            cw, ch = w, h
        return (w - cw) // 2, (h - ch) // 2, cw, ch

    # --- decoding -----------------------------------------------------------------

    def __call__(self, samples: Sequence[Any], indices: Optional[Sequence[int]] = None) -> torch.Tensor:
        n = len(samples)
        out = shared_empty((n, 3, self.size, self.size), torch.uint8)
        if n == 0:
            return out
        use_tv = self.resolved_backend() == "torchvision"
        if use_tv and self._tv is None:
            self._tv = _torchvision_decoder()
        dst = out.numpy()
        for i, s in enumerate(samples):
            data = np.frombuffer(s, dtype=np.uint8) if isinstance(s, (bytes, bytearray, memoryview)) else s
            data = data[self.offset :]
            try:
                if use_tv and bytes(data[:2]) == _JPEG_MAGIC:
                    try:
                        self._decode_tv(data, out[i])
                    except RuntimeError:
                        # decode_jpeg refuses what libjpeg cannot convert to
                        # RGB itself (CMYK, YCCK): PIL can, or says why not.
                        self._decode_pil(data, dst[i])
                else:
                    self._decode_pil(data, dst[i])
            except Exception as e:
                index = None if indices is None else int(indices[i])
                what = f"sample {index}" if index is not None else f"sample {i} of the batch"
                raise TransformError(
                    f"ImageBatchDecoder could not decode {what} ({len(data)} bytes after offset {self.offset}): "
                    f"{type(e).__name__}: {e}",
                    index,
                ) from e
        return out

    def _decode_pil(self, data: np.ndarray, dst: np.ndarray) -> None:
        from PIL import Image

        im = Image.open(io.BytesIO(memoryview(data)))
        w, h = im.size
        x, y, cw, ch = self.box(w, h)
        box: Tuple[float, float, float, float] = (x, y, x + cw, y + ch)
        # Draft: decode at 1/s scale (s = 2, 4, 8) in the DCT domain when the
        # crop stays at least the output's size; JPEG only (a no-op otherwise).
        s = 1
        while s < 8 and min(cw, ch) >= self.size * 2 * s:
            s *= 2
        if s > 1 and im.format == "JPEG":
            im.draft("RGB", ((w + s - 1) // s, (h + s - 1) // s))
            fx, fy = im.size[0] / w, im.size[1] / h
            box = (x * fx, y * fy, min((x + cw) * fx, im.size[0]), min((y + ch) * fy, im.size[1]))
        if im.mode != "RGB":
            im = im.convert("RGB")
        im = im.resize((self.size, self.size), Image.BILINEAR, box=box)
        a = np.asarray(im)
        if self.flip and random.random() < 0.5:
            a = a[:, ::-1]
        dst[...] = a.transpose(2, 0, 1)

    def _decode_tv(self, data: np.ndarray, dst: torch.Tensor) -> None:
        decode_jpeg, mode, F = self._tv
        if not data.flags.writeable:  # torch wants writable memory (bytes samples)
            data = data.copy()
        img = decode_jpeg(torch.from_numpy(np.ascontiguousarray(data)), mode=mode.RGB)
        h, w = int(img.shape[1]), int(img.shape[2])
        x, y, cw, ch = self.box(w, h)
        r = F.resize(img[:, y : y + ch, x : x + cw], [self.size, self.size], antialias=True)
        if self.flip and random.random() < 0.5:
            r = r.flip(2)
        dst.copy_(r)
