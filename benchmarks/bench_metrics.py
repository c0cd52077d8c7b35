"""Benchmark of ganzoo's evaluation: cold vs cached reference statistics, and extraction speed.

1. ``ganzoo.evaluate(generated, "shapes", metrics=["fid"], n=N)`` at 128 px with an empty cache
   (both sides extracted) and again with the reference statistics cached (generated side only).
   Target: cached <= 60% of cold.
2. Feature-extraction throughput (images/s over both sides of an FID) of ganzoo's path
   (``evaluate`` on two tensors, cache off) against ``torch_fidelity.calculate_metrics`` called
   directly on the same uint8 images with the same weights, in this process; and the cached
   re-evaluation against that whole torch-fidelity computation (target <= 0.3 at N = 64).
3. The FID statistic step alone (features -> value): torch-fidelity's
   ``fid_statistics_to_metric`` (a general eigenproblem of S1 S2) against ganzoo's
   ``frechet_distance_to_real`` (symmetric eigenproblems, cached reference square root), at
   N = 64, N and ``--stat-n`` generated features; the values agree to 1e-6 (asserted).

Every figure is the median over ``--repeats`` runs. Inception weights: ``--weights``,
``$GANZOO_FID_WEIGHTS`` or the torch hub cache; otherwise (offline) random weights written to a
temporary file, which time exactly like the real ones. The generated side is a tensor of
``shapes`` images (seed 1) made before timing, so model sampling time is not part of the figures.

    python benchmarks/bench_metrics.py                 # N = 5000, cuda if available
    python benchmarks/bench_metrics.py --quick         # CPU, N = 8, 3 repeats
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _weights(args, tmp: Path) -> tuple[str, str]:
    from ganzoo.metrics.extractors import INCEPTION_URL, random_inception_state_dict

    if args.weights:
        return args.weights, "given file"
    if os.environ.get("GANZOO_FID_WEIGHTS"):
        return os.environ["GANZOO_FID_WEIGHTS"], "$GANZOO_FID_WEIGHTS"
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(INCEPTION_URL)
    if cached.is_file():
        return str(cached), "torch hub cache"
    path = tmp / "random-inception.pth"
    torch.save(random_inception_state_dict(0), path)
    return str(path), "RANDOM weights (real ones unavailable; timing does not depend on values)"


class _Uint8(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def _shapes(n: int, resolution: int, seed: int) -> torch.Tensor:
    import ganzoo

    ds = ganzoo.build_dataset("shapes", resolution=resolution, size=n, seed=seed)
    return torch.stack([ds[i]["image"] for i in range(n)])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="CPU and N = 8: Inception at 299 px takes ~0.5 s per image on 2 cores")
    p.add_argument("--n", type=int, default=None)
    p.add_argument("--resolution", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--weights", default=None)
    p.add_argument("--stat-n", type=int, default=5000,
                   help="reference features for the statistic-step timing")
    args = p.parse_args(argv)
    if args.quick:
        args.device = "cpu"
    n = args.n or (8 if args.quick else 5000)
    bs = args.batch_size or (8 if args.quick else 100)
    repeats = args.repeats or 3
    cuda = args.device.startswith("cuda")

    import torch_fidelity

    import ganzoo

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        weights, origin = _weights(args, tmp)
        print(f"# ganzoo evaluation benchmark: N={n} at {args.resolution} px, batch {bs}, "
              f"device {args.device}, {repeats} repeats, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads" + (" (--quick)" if args.quick else ""))
        print(f"# Inception weights: {origin}")
        fake = _shapes(n, args.resolution, seed=1)
        common = dict(metrics=["fid"], n=n, batch_size=bs, feature_extractor_weights=weights,
                      device=args.device, dataset_kwargs={"resolution": args.resolution,
                                                          "size": n, "seed": 0})
        # Warm-up: builds the extractor once (as a long-lived process would) and the kernels.
        ganzoo.evaluate(fake[:bs], fake[:bs], **{**common, "n": bs, "dataset_kwargs": {}},
                        cache=False)

        cold, warm = [], []
        for r in range(repeats):
            cache_dir = tmp / f"cache{r}"
            t = time.perf_counter()
            a = ganzoo.evaluate(fake, "shapes", cache_dir=cache_dir, **common)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            b = ganzoo.evaluate(fake, "shapes", cache_dir=cache_dir, **common)
            warm.append(time.perf_counter() - t)
            assert a["protocol"]["real_stats_cache"] == "miss"
            assert b["protocol"]["real_stats_cache"] == "hit"
            assert abs(a["metrics"]["fid"] - b["metrics"]["fid"]) <= 1e-6 * max(
                1.0, abs(a["metrics"]["fid"]))

        real = _shapes(n, args.resolution, seed=0)
        ours, theirs = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            x = ganzoo.evaluate(fake, real, cache=False, **{k: v for k, v in common.items()
                                                            if k != "dataset_kwargs"})
            ours.append(time.perf_counter() - t)
            from ganzoo.metrics.extractors import to_uint8

            t = time.perf_counter()
            y = torch_fidelity.calculate_metrics(
                input1=_Uint8(to_uint8(fake)), input2=_Uint8(to_uint8(real)), cuda=cuda,
                batch_size=bs, fid=True, feature_extractor="inception-v3-compat",
                feature_extractor_weights_path=weights, cache=False, verbose=False,
                save_cpu_ram=args.quick)
            theirs.append(time.perf_counter() - t)
            fid_tf = y["frechet_inception_distance"]
            assert abs(x["metrics"]["fid"] - fid_tf) <= 1e-3 * max(1.0, abs(fid_tf)), (x, y)

        # The statistic step alone: features -> FID. torch-fidelity: statistics of both sides,
        # then eigvals of the 2048 x 2048 product; ganzoo: the fake side's features against the
        # cached reference statistics and square root (symmetric eigenproblems only).
        from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

        from ganzoo.metrics.base import RealFeatures
        from ganzoo.metrics.fidelity import frechet_distance_to_real

        g = torch.Generator().manual_seed(0)
        mix = torch.randn(2048, 2048, generator=g) / 2048 ** 0.5
        real_f = torch.randn(args.stat_n, 2048, generator=g).relu() @ mix
        real_stats = fid_features_to_statistics(real_f)
        cached = RealFeatures(real_f, real_stats["mu"], real_stats["sigma"])
        cached.mean_and_factor()  # computed once, as the cache keeps it
        stat_times = {}
        for n_stat in sorted({n, 64, args.stat_n}):
            fake_f = torch.randn(n_stat, 2048, generator=g).relu() @ mix
            tf_t, gz_t = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                want = fid_statistics_to_metric(fid_features_to_statistics(fake_f), real_stats,
                                                verbose=False)["frechet_inception_distance"]
                tf_t.append(time.perf_counter() - t)
                t = time.perf_counter()
                got = frechet_distance_to_real(fake_f, cached)
                gz_t.append(time.perf_counter() - t)
                assert abs(got - want) <= 1e-6 * abs(want), (got, want)
            stat_times[n_stat] = (statistics.median(tf_t), statistics.median(gz_t))

    med = statistics.median
    ratio = med(warm) / med(cold)
    print()
    print("| evaluation (FID, N = %d, %d px) | median s |" % (n, args.resolution))
    print("| --- | ---: |")
    print(f"| cold: both sides extracted | {med(cold):.2f} |")
    print(f"| cached reference statistics | {med(warm):.2f} |")
    print(f"| ratio cached / cold (target <= 0.60) | {ratio:.2f} "
          f"{'PASS' if ratio <= 0.6 else 'FAIL'} |")
    print(f"| cached re-evaluation / torch_fidelity.calculate_metrics on the same inputs "
          f"(target <= 0.30) | {med(warm) / med(theirs):.2f} "
          f"{'PASS' if med(warm) / med(theirs) <= 0.3 else 'FAIL'} |")
    print()
    print("| FID statistic step (features -> FID, 2048-d) | torch-fidelity s | ganzoo s | "
          "speed-up |")
    print("| --- | ---: | ---: | ---: |")
    for n_stat, (tf_s, gz_s) in stat_times.items():
        print(f"| N = {n_stat} generated vs {args.stat_n} reference | {tf_s:.2f} | {gz_s:.3f} | "
              f"{tf_s / gz_s:.1f}x |")
    print()
    print("| feature extraction, 2N images | median s | images/s |")
    print("| --- | ---: | ---: |")
    print(f"| ganzoo.evaluate | {med(ours):.2f} | {2 * n / med(ours):.1f} |")
    print(f"| torch_fidelity.calculate_metrics | {med(theirs):.2f} | {2 * n / med(theirs):.1f} |")
    print(f"| ratio ganzoo / torch-fidelity (throughput) | | {med(theirs) / med(ours):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
