"""Input pipeline: images/s the trainer's loader delivers from an ``image_folder`` of JPEGs,
against what ``dcgan`` at 64 px consumes, per worker count.

The folder holds ``--n`` JPEGs of CelebA's aligned size (178x218, quality 95), cut from the
photographs in ``skimage.data``. The loader is the trainer's own (``make_loader``: seeded
endless epochs, persistent workers, 4 batches prefetched each), built over the registered
``image_folder`` dataset at 64 px, so each image is decoded, cropped and resized as in a run.
Delivery is timed over ``--batches`` batches after the first (worker start-up excluded).
Consumption is ``dcgan``'s training step at 64 px through the model API on an in-memory batch
on ``--device`` (the rate ``bench_gan.py`` reports), or ``--consume`` images/s given by hand,
e.g. a GPU's figure from the README.

    python benchmarks/bench_loader.py                       # workers 0..cores, dcgan on CPU
    python benchmarks/bench_loader.py --consume 10004       # the H100 rate from the README
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts src/ on the path)
import torch

from ganzoo.training.data import build_dataset, make_loader


def write_folder(root: Path, n: int) -> None:
    """``n`` 178x218 JPEGs: random crops of skimage's colour photographs, resized."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [Image.fromarray(getattr(data, name)()).convert("RGB")
              for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")]
    rng = np.random.default_rng(0)
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = photo.size
        cw = int(rng.integers(w // 3, w // 2))
        ch = min(h, int(cw * 218 / 178))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        photo.crop((x, y, x + cw, y + ch)).resize((178, 218), Image.BICUBIC).save(
            root / f"{i:06d}.jpg", quality=95)


def delivered(dataset, batch_size: int, workers: int, batches: int, pin: bool) -> float:
    loader = make_loader(dataset, batch_size, seed=0, start=0, workers=workers, pin_memory=pin)
    it = iter(loader)
    next(it)  # workers started, first batch decoded
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * batch_size / (time.perf_counter() - t0)
    del it, loader
    return rate


def consumed(device: torch.device, batch_size: int, iters: int) -> float:
    """dcgan's images/s at 64 px: bench_gan's model-API runner on one in-memory batch."""
    from bench_gan import Ganzoo, _time

    runner = Ganzoo("dcgan", device, batch_size)
    real = torch.rand(batch_size, 3, 64, 64, device=device) * 2 - 1
    _time(runner, real, 2, device, 0)  # warm-up
    return iters * batch_size / _time(runner, real, iters, device, 2)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="JPEGs in the folder")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--batches", type=int, default=20, help="timed batches per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=None,
                   help="worker counts (default 0 1 2 ... cores)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--consume", type=float, default=None,
                   help="the model's images/s, instead of measuring dcgan on --device")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = args.workers or list(range(0, (cores or 1) + 1))
    with tempfile.TemporaryDirectory(prefix="bench_loader_") as tmp:
        t0 = time.perf_counter()
        write_folder(Path(tmp), args.n)
        print(f"{args.n} JPEGs (178x218) written in {time.perf_counter() - t0:.1f} s")
        dataset = build_dataset("image_folder", {"root": tmp, "resolution": 64})
        rates = {w: statistics.median(delivered(dataset, args.batch_size, w, args.batches,
                                                device.type == "cuda")
                                      for _ in range(args.repeats)) for w in workers}
    consume = args.consume or consumed(device, args.batch_size, iters=10)
    source = "given" if args.consume else f"dcgan 64 px, batch {args.batch_size}, {device}"
    print(f"\n{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {cores} cores; consumption "
          f"{consume:,.0f} img/s ({source}); medians of {args.repeats} x {args.batches} batches\n")
    print("| workers | delivered img/s | delivered / consumed |")
    print("| ---: | ---: | ---: |")
    for w, r in rates.items():
        print(f"| {w} | {r:,.0f} | {r / consume:.2f} |")
    enough = [w for w, r in rates.items() if r >= consume]
    per_worker = max(rates[w] / w for w in rates if w > 0) if any(w > 0 for w in rates) else \
        rates[0]
    print(f"\nloading stops being the bottleneck at "
          f"{f'{enough[0]} worker(s)' if enough else 'none of the worker counts measured'}; "
          f"one worker delivers up to {per_worker:,.0f} img/s, so {consume:,.0f} img/s needs "
          f"about {math.ceil(consume / per_worker)} (on free cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
