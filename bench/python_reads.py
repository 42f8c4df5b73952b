"""Random batched sample reads through the fff Python package (bench -suites python).

Keeps --inflight batches of --batch random samples in flight with
fff.ffrecord.Reader.submit (the asynchronous C API), each into its own reused
aligned buffer, for --duration seconds, and prints one JSON line:
{"samples_per_s", "mib_per_s", "p50_s", "p99_s"} (latency: submit to wait).
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np

import fff.ffrecord as ffr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("path", help="dataset: fff:///… or a local .ffr file")
    ap.add_argument("--batch", type=int, default=32, help="samples per batch")
    ap.add_argument("--inflight", type=int, default=8, help="batches in flight")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds to measure")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-check", action="store_true", help="do not verify sample checksums")
    a = ap.parse_args()

    r = ffr.Reader(a.path, check=not a.no_check)
    n = len(r)
    size = int(r.sizes.max())
    rng = np.random.default_rng(a.seed)
    bufs = [ffr.alloc_buffer(a.batch * size) for _ in range(a.inflight)]
    pending: collections.deque = collections.deque()
    start = time.perf_counter()
    end = start + a.duration
    for b in bufs:
        pending.append((r.submit(rng.integers(0, n, a.batch), b), time.perf_counter(), b))
    samples = 0
    nbytes = 0
    lats = []
    while pending:
        batch, t0, b = pending.popleft()
        views = batch.wait()
        now = time.perf_counter()
        lats.append(now - t0)
        samples += len(views)
        nbytes += int(batch.offsets[-1])
        if now < end:
            pending.append((r.submit(rng.integers(0, n, a.batch), b), now, b))
    el = time.perf_counter() - start
    r.close()
    lats.sort()
    pct = lambda p: lats[min(len(lats) - 1, int(p * len(lats)))] if lats else 0.0
    print(json.dumps({
        "samples_per_s": samples / el,
        "mib_per_s": nbytes / el / (1 << 20),
        "p50_s": pct(0.5),
        "p99_s": pct(0.99),
    }))


if __name__ == "__main__":
    main()
