"""Embedded dataset speed: 10,000 `shapes` images at 64 px, through a DataLoader.

The issue's bar: under 10 s on 2 cores. The reference is the usual hand-written alternative,
Pillow's ImageDraw drawing the same number of shapes image by image, converted to tensors.
Both run in this process, alternating, and medians are reported.

    python benchmarks/bench_datasets.py            # 10,000 images, 3 repeats
    python benchmarks/bench_datasets.py --quick    # 2,000 images
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch


def ganzoo_path(n: int, res: int, name: str, batch_size: int = 256) -> float:
    import ganzoo

    ds = ganzoo.build_dataset(name, resolution=res, size=n)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=0)
    t = time.perf_counter()
    count = 0
    for batch in loader:
        count += next(iter(batch.values())).shape[0]
    assert count == n
    return time.perf_counter() - t


def pil_reference(n: int, res: int) -> float:
    from PIL import Image, ImageDraw
    from torchvision.transforms.v2 import functional as F

    rng = random.Random(0)
    t = time.perf_counter()
    out = []
    for _ in range(n):
        img = Image.new("RGB", (res, res), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.randint(1, 3)):
            x, y, r = rng.uniform(0, res), rng.uniform(0, res), rng.uniform(0.1, 0.28) * res
            fill = tuple(rng.randrange(256) for _ in range(3))
            kind = rng.randrange(3)
            if kind == 0:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
            elif kind == 1:
                draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
            else:
                draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
        out.append(F.pil_to_tensor(img).float().div(127.5).sub(1))
        if len(out) == 256:
            torch.stack(out)
            out = []
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.n, args.repeats = 2_000, 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, n={args.n}, "
          f"{args.res} px")
    names = ["shapes", "shapes_attr", "shapes_unpaired", "shapes_scenes"]
    times = {k: [] for k in names + ["pil_reference"]}
    for _ in range(args.repeats):
        for name in names:
            times[name].append(ganzoo_path(args.n, args.res, name))
        times["pil_reference"].append(pil_reference(args.n, args.res))
    ref = statistics.median(times["pil_reference"])
    print("\n| dataset | images/item | median s for n | images/s | vs PIL ImageDraw |")
    print("| --- | --- | --- | --- | --- |")
    per_item = {"shapes": 1, "shapes_attr": 2, "shapes_unpaired": 2, "shapes_scenes": 1}
    for name in names:
        med = statistics.median(times[name])
        print(f"| {name} | {per_item[name]} | {med:.2f} | {per_item[name] * args.n / med:,.0f} "
              f"| {ref / med:.2f}x |")
    print(f"| PIL ImageDraw (reference, flat shapes, no anti-aliasing) | 1 | {ref:.2f} "
          f"| {args.n / ref:,.0f} | 1.00x |")
    shapes_10k = statistics.median(times["shapes"]) * 10_000 / args.n
    print(f"\nshapes: 10,000 images at {args.res} px take {shapes_10k:.2f} s "
          f"(bar: < 10 s on 2 cores)")


if __name__ == "__main__":
    main()
