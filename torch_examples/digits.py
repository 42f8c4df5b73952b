#!/usr/bin/env python3
"""A small real training run that reads its data from fff.

scikit-learn's bundled digits dataset (1,797 8x8 grey images of the digits
0-9, shipped inside the sklearn package: nothing is downloaded) is split into
a training and a test set (stratified, fixed seed), each split is packed into
one FFRecord file in fff, and a small CNN trains on it through
fff.torch.DataLoader (shuffled with a seed, a new order every epoch). The test
accuracy is printed at the end; the script exits 1 when it is below
--min-accuracy (default 0.90).

Sample format (65 bytes): byte 0 is the label (0-9), bytes 1..64 the 8x8
pixels row by row, one uint8 each with values 0-16 (sklearn's scale).

    python3 torch_examples/digits.py                       # into fff:///demo/digits/
    python3 torch_examples/digits.py --path-prefix /tmp/d  # local FFRecord files instead

Needs a running cluster for fff:// paths (`bin/fff up --daemon`), the fff
Python package (`scripts/bootstrap.sh python`), torch and scikit-learn
(`scripts/bootstrap.sh demo`: Debian python3-torch python3-sklearn).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

SAMPLE_BYTES = 65  # label + 8x8 pixels


def progress(iterable, total=None, desc="", enabled=True):
    """tqdm when it is installed (Debian python3-tqdm), else the iterable as is."""
    if enabled:
        try:
            from tqdm import tqdm

            return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stdout)
        except ImportError:
            pass
    return iterable


def load_split(seed: int, test_fraction: float):
    """The digits dataset as (train, test), each (pixels uint8 [N,64], labels uint8 [N])."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.uint8)  # 0..16
    y = d.target.astype(np.uint8)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return (xtr, ytr), (xte, yte)


def encode(pixels: np.ndarray, label: int) -> bytes:
    return bytes([int(label)]) + pixels.astype(np.uint8).tobytes()


def decode(sample):
    """An FFRecord sample (uint8 array of 65 bytes) -> (1x8x8 float tensor in [0,1], label)."""
    import torch

    a = np.frombuffer(sample, dtype=np.uint8) if not isinstance(sample, np.ndarray) else sample
    if a.size != SAMPLE_BYTES:
        raise ValueError(f"a digits sample has {SAMPLE_BYTES} bytes, got {a.size}")
    x = torch.from_numpy(a[1:].astype(np.float32) / 16.0).reshape(1, 8, 8)
    return x, int(a[0])


def pack(path: str, xs: np.ndarray, ys: np.ndarray) -> None:
    """Writes one FFRecord file (v2) with a sample per image."""
    import fff
    from fff import ffrecord

    if path.startswith("fff://"):
        parent = path.rsplit("/", 1)[0]
        fff.makedirs(parent, exist_ok=True)
        if fff.exists(path):
            fff.remove(path)
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if os.path.exists(path):
            os.remove(path)
    with ffrecord.Writer(path, version=2) as w:
        for x, y in zip(xs, ys):
            w.write(encode(x, y))


def make_model():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),  # 64 x 4 x 4
        nn.Conv2d(64, 64, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.25),
        nn.Linear(64 * 4 * 4, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def evaluate(model, loader) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    model.train()
    return correct / max(total, 1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--path-prefix", default="fff:///demo/digits", help="where train.ffr and test.ffr go (fff:///… or a local directory)")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (forkserver); 0 reads in the training process")
    ap.add_argument("--seed", type=int, default=0, help="split, initial weights and shuffle order")
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--min-accuracy", type=float, default=0.90, help="exit 1 when the test accuracy is below this")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    t0 = time.monotonic()
    import torch

    import fff.torch as ft

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    prefix = args.path_prefix.rstrip("/")
    train_path, test_path = f"{prefix}/train.ffr", f"{prefix}/test.ffr"

    (xtr, ytr), (xte, yte) = load_split(args.seed, args.test_fraction)
    pack(train_path, xtr, ytr)
    pack(test_path, xte, yte)
    print(f"packed {len(ytr)} training and {len(yte)} test samples ({SAMPLE_BYTES} bytes each) "
          f"into {train_path} and {test_path} in {time.monotonic() - t0:.1f}s", flush=True)

    train_ds = ft.FFRecordDataset(train_path, transform=decode)
    test_ds = ft.FFRecordDataset(test_path, transform=decode)
    assert len(train_ds) == len(ytr) and len(test_ds) == len(yte)
    train_dl = ft.DataLoader(train_ds, batch_size=args.batch_size, shuffle=True, seed=args.seed, num_workers=args.workers)
    test_dl = ft.DataLoader(test_ds, batch_size=256, shuffle=False, num_workers=0)

    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    loss_fn = torch.nn.CrossEntropyLoss()

    t_train = time.monotonic()
    acc = 0.0
    for epoch in range(args.epochs):
        train_dl.set_epoch(epoch)
        seen = 0
        loss_sum = 0.0
        bar = progress(train_dl, total=len(train_dl), desc=f"epoch {epoch + 1}/{args.epochs}", enabled=not args.no_progress)
        for x, y in bar:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            seen += len(y)
            loss_sum += float(loss) * len(y)
        sched.step()
        acc = evaluate(model, test_dl)
        print(f"epoch {epoch + 1:2d}/{args.epochs}: train loss {loss_sum / max(seen, 1):.4f}, "
              f"test accuracy {acc:.4f} ({time.monotonic() - t_train:.1f}s)", flush=True)

    total = time.monotonic() - t0
    ok = acc >= args.min_accuracy
    print(f"digits: test accuracy {acc * 100:.2f}% on {len(yte)} held-out images after {args.epochs} epochs "
          f"({total:.1f}s in all, {time.monotonic() - t_train:.1f}s training) -- "
          f"{'OK' if ok else 'BELOW'} the {args.min_accuracy * 100:.0f}% bar", flush=True)
    return 0 if ok else 1


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
        print(f"digits: {e}\n(start one with `bin/fff up --daemon`, or pass a local path)", file=sys.stderr)
        sys.exit(2)
