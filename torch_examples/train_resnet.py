#!/usr/bin/env python3
"""ResNet-18 training steps over the ImageNet-style dataset: fff.torch.DataLoader next to ImageFolder.

A real training loop (torchvision's resnet18, SGD with momentum, cross
entropy, on the CPU here; on CUDA when there is one) over the JPEGs of
imagenet_style.py: through fff.torch.DataLoader from the FFRecord shards in
fff, and through torch's DataLoader over torchvision's ImageFolder on the
local JPEG files. Both decode and augment in their workers (PIL decode,
RandomResizedCrop(160), flip, ToTensor), with the same batch size, workers
and shuffling. For each it reports:

- images/s over the measured steps (after --warmup steps, which pay for
  starting workers and the first batches);
- the fraction of step time spent waiting for data: the time the loop was
  blocked in next(loader), over the whole step time (waiting + forward,
  backward and optimizer step).

What the numbers mean on a machine without a GPU: the model's compute runs
on the same few CPUs as the loader's workers, so a loader that needs less
CPU for its IO leaves more for the model, and waiting for data shows where
the workers' decoding cannot keep up. With a GPU, the wait fraction is what
decides whether the GPU idles.

    python3 torch_examples/train_resnet.py                    # 2,000 images, 20 steps each (make demo)
    python3 torch_examples/train_resnet.py --steps 100 --batch-size 64 --workers 4

Needs what imagenet_style.py needs (a running cluster for fff:// paths, the
fff package, torch, torchvision, Pillow); generates and packs the images if
they are not there yet (the same cache and dataset as imagenet_style.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import imagenet_style as ims  # noqa: E402  (its functions are what the workers unpickle)


def train(name: str, make_loader: Callable[[], Any], steps: int, warmup: int, device: str, seed: int) -> Dict[str, Any]:
    """Runs warmup + steps training steps of a new ResNet-18 on the loader's batches."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = torchvision.models.resnet18(num_classes=ims.NUM_CLASSES).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    loader = make_loader()
    it = iter(loader)
    wait = compute = 0.0
    images = 0
    losses: List[float] = []
    t_measured = 0.0
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:  # a short dataset: the next epoch
            it = iter(loader)
            x, y = next(it)
        t1 = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))  # waits for the device, so the step's time is all in
        t2 = time.perf_counter()
        if step >= warmup:
            wait += t1 - t0
            compute += t2 - t1
            images += len(y)
            t_measured += t2 - t0
        ims.log(f"{name}: step {step + 1}/{warmup + steps}{' (warm-up)' if step < warmup else ''}: "
                f"loss {losses[-1]:.3f}, data {1e3 * (t1 - t0):.0f} ms, compute {1e3 * (t2 - t1):.0f} ms")
    del it
    # fff's loader keeps these figures itself (whole run, warm-up included):
    # the share of the loop's time spent blocked in next() is the same
    # measure as wait_fraction above.
    loader_stats = loader.stats() if hasattr(loader, "stats") else None
    if hasattr(loader, "close"):
        loader.close()
    return {
        "loader_stats": loader_stats,
        "name": name,
        "steps": steps,
        "images": images,
        "images_per_s": images / t_measured if t_measured > 0 else 0.0,
        "wait_fraction": wait / t_measured if t_measured > 0 else 0.0,
        "wait_ms_per_step": 1e3 * wait / max(steps, 1),
        "compute_ms_per_step": 1e3 * compute / max(steps, 1),
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
    }


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--num-images", type=int, default=2000, help="JPEGs in the dataset (default 2000, as make demo)")
    ap.add_argument("--jpeg-dir", default=None, help="the JPEG cache (default ~/.cache/fff-examples/imagenet-style-N)")
    ap.add_argument("--dest", default=None, help="the FFRecord dataset (default fff:///demo/imagenet-style/N)")
    ap.add_argument("--steps", type=int, default=20, help="measured training steps per loader")
    ap.add_argument("--warmup", type=int, default=3, help="steps before measuring (workers start, first batches)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers of both (default: the CPU count)")
    ap.add_argument("--loaders", default="fff,imagefolder", help="which loaders: fff, imagefolder or both")
    ap.add_argument("--threads", type=int, default=None, help="torch's compute threads (default: the CPU count)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads or os.cpu_count() or 1)  # Debian's torch starts with one

    import fff.torch as ft

    n = args.num_images
    root = args.jpeg_dir or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fff-examples", f"imagenet-style-{n}")
    dest = args.dest or f"fff:///demo/imagenet-style/{n}"
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    loaders = [x.strip() for x in args.loaders.split(",") if x.strip()]
    for x in loaders:
        if x not in ("fff", "imagefolder"):
            ap.error(f"--loaders: unknown loader {x!r} (fff, imagefolder)")
    try:
        import torchvision  # noqa: F401
        from torchvision.datasets import ImageFolder
    except ImportError:
        ims.log("train_resnet needs torchvision (ResNet-18): `apt-get install python3-torchvision` "
                "(Debian) or `pip install torchvision`, or run scripts/bootstrap.sh demo")
        return 1

    ims.generate(root, n, os.cpu_count() or 1, show=False)
    items = ims.list_images(root)
    if len(items) != n:
        ims.log(f"error: {root} holds {len(items)} JPEGs, expected {n}: remove it and run again")
        return 1
    ims.pack(items, root, dest, 256 << 20, repack=False, show=False)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    pin = device == "cuda"

    def fff_loader() -> Any:
        ds = ft.FFRecordDataset(dest, transform=ims.fff_decode)
        return ft.DataLoader(ds, batch_size=args.batch_size, shuffle=True, seed=args.seed, drop_last=True,
                             num_workers=workers, pin_memory=pin)

    def folder_loader() -> Any:
        ds = ImageFolder(root, loader=ims.pil_decode, transform=ims._aug)
        g = torch.Generator()
        g.manual_seed(args.seed)
        return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, generator=g, drop_last=True,
                                           num_workers=workers, pin_memory=pin, persistent_workers=workers > 0,
                                           multiprocessing_context="forkserver" if workers else None)

    makers = {"fff": ("fff.torch.DataLoader (fff)", fff_loader), "imagefolder": ("ImageFolder (local files)", folder_loader)}
    results = []
    for key in loaders:
        name, make = makers[key]
        results.append(train(name, make, args.steps, args.warmup, device, args.seed))

    print()
    print(f"ResNet-18 training on {device} ({torch.get_num_threads()} threads), {n} images, batch {args.batch_size}, "
          f"{workers} workers decoding (PIL + RandomResizedCrop({ims.CROP}) + flip + ToTensor), "
          f"{args.steps} steps measured after {args.warmup}")
    print()
    print("| loader | images/s | waiting for data | data wait per step | compute per step | loss: first / last |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['name']} | {r['images_per_s']:.1f} | {100 * r['wait_fraction']:.1f}% | "
              f"{r['wait_ms_per_step']:.0f} ms | {r['compute_ms_per_step']:.0f} ms | "
              f"{r['first_loss']:.2f} / {r['last_loss']:.2f} |")
    for r in results:
        if r["loader_stats"]:
            from fff.torch import format_stats

            print()
            print(f"{r['name']}, its own stats() over the whole run: {format_stats(r['loader_stats'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
