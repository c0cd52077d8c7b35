"""Benchmark of ganzoo's evaluation: cold vs cached reference statistics, and extraction speed.

1. ``ganzoo.evaluate(generated, "shapes", metrics=["fid"], n=N)`` at 128 px with an empty cache
   (both sides extracted) and again with the reference statistics cached (generated side only).
   Target: cached <= 60% of cold.
2. Feature-extraction throughput (images/s over both sides of an FID) of ganzoo's path
   (``evaluate`` on two tensors, cache off) against ``torch_fidelity.calculate_metrics`` called
   directly on the same uint8 images with the same weights, in this process; and the cached
   re-evaluation against that whole torch-fidelity computation (target <= 0.3 at N = 64).
3. The FID statistic step alone (features -> value), 2048-d: torch-fidelity's
   ``fid_features_to_statistics`` + ``fid_statistics_to_metric`` (a general eigenproblem of
   S1 S2) against ganzoo's ``frechet_distance_to_real`` (QR factors of the centred features,
   SVD of their product), at N = 64, N and ``--stat-n`` generated rows against ``--stat-n``
   reference rows. First run: nothing cached, both sides' statistics computed (target:
   ganzoo <= 1.0x torch-fidelity). Cached: the reference statistics (and ganzoo's factor) kept
   from before. The values agree to 1e-6 (asserted). ``--stat-only`` runs this part alone (no
   Inception, a few minutes on 2 CPU cores).

Every figure is the median over ``--repeats`` runs. Inception weights: ``--weights``,
``$GANZOO_FID_WEIGHTS`` or the torch hub cache; otherwise (offline) random weights written to a
temporary file, which time exactly like the real ones. The generated side is a tensor of
``shapes`` images (seed 1) made before timing, so model sampling time is not part of the figures.

    python benchmarks/bench_metrics.py                 # N = 5000, cuda if available
    python benchmarks/bench_metrics.py --quick         # CPU, N = 8, 3 repeats
    python benchmarks/bench_metrics.py --stat-only     # part 3 alone
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


def _statistic_step(ns, stat_n: int, repeats: int, d: int = 2048) -> dict:
    """Medians ``{(run, n): (torch-fidelity s, ganzoo s)}`` of features -> FID, ``run`` "first"
    (nothing cached) or "cached" (reference statistics kept), the four timings alternated."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    from ganzoo.metrics.base import RealFeatures
    from ganzoo.metrics.fidelity import frechet_distance_to_real

    def theirs(fake_f, real_stats):
        return fid_statistics_to_metric(fid_features_to_statistics(fake_f), real_stats,
                                        verbose=False)["frechet_inception_distance"]

    g = torch.Generator().manual_seed(0)
    mix = torch.randn(d, d, generator=g) / d ** 0.5  # correlated features, as a CNN's are
    real_f = torch.randn(stat_n, d, generator=g).relu() @ mix
    real_stats = fid_features_to_statistics(real_f)
    cached = RealFeatures(real_f)
    cached.mean_and_factor()  # computed once, as the cache keeps it
    runs = {
        "first": (lambda f: theirs(f, fid_features_to_statistics(real_f)),
                  lambda f: frechet_distance_to_real(f, RealFeatures(real_f))),
        "cached": (lambda f: theirs(f, real_stats),
                   lambda f: frechet_distance_to_real(f, cached)),
    }
    out = {}
    for n in ns:
        fake_f = torch.randn(n, d, generator=g).relu() @ mix
        times = {(run, side): [] for run in runs for side in (0, 1)}
        for _ in range(repeats):
            for run, fns in runs.items():
                values = []
                for side, fn in enumerate(fns):
                    t = time.perf_counter()
                    values.append(fn(fake_f))
                    times[run, side].append(time.perf_counter() - t)
                want, got = values
                assert abs(got - want) <= 1e-6 * abs(want), (run, n, got, want)
        for run in runs:
            out[run, n] = (statistics.median(times[run, 0]), statistics.median(times[run, 1]))
    return out


def _print_statistic_step(stat_times: dict, stat_n: int) -> None:
    print(f"| FID statistic step (features -> FID, 2048-d, {stat_n} reference rows) | "
          f"torch-fidelity s | ganzoo s | ganzoo / torch-fidelity |")
    print("| --- | ---: | ---: | ---: |")
    for (run, n), (tf_s, gz_s) in sorted(stat_times.items(), key=lambda kv: kv[0][0] != "first"):
        label = ("first run (nothing cached)" if run == "first" else
                 "cached reference statistics")
        verdict = f" {'PASS' if gz_s <= tf_s else 'FAIL'} (target <= 1.0)" if run == "first" \
            else ""
        print(f"| {label}, N = {n} generated | {tf_s:.2f} | {gz_s:.3f} | "
              f"{gz_s / tf_s:.3f}{verdict} |")


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
    p.add_argument("--stat-only", action="store_true",
                   help="only the statistic step (features -> FID), no Inception")
    args = p.parse_args(argv)
    if args.quick:
        args.device = "cpu"
    n = args.n or (8 if args.quick else 5000)
    bs = args.batch_size or (8 if args.quick else 100)
    repeats = args.repeats or 3
    cuda = args.device.startswith("cuda")
    if args.stat_only:
        print(f"# ganzoo FID statistic step: {repeats} repeats, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads")
        _print_statistic_step(_statistic_step(sorted({64, args.stat_n} | (
            {args.n} if args.n else set())), args.stat_n, repeats), args.stat_n)
        return 0

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

        stat_times = _statistic_step(sorted({n, 64, args.stat_n}), args.stat_n, repeats)

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
    _print_statistic_step(stat_times, args.stat_n)
    print()
    print("| feature extraction, 2N images | median s | images/s |")
    print("| --- | ---: | ---: |")
    print(f"| ganzoo.evaluate | {med(ours):.2f} | {2 * n / med(ours):.1f} |")
    print(f"| torch_fidelity.calculate_metrics | {med(theirs):.2f} | {2 * n / med(theirs):.1f} |")
    print(f"| ratio ganzoo / torch-fidelity (throughput) | | {med(theirs) / med(ours):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
