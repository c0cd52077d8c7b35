"""``ganzoo eval``: the command-line entry to :func:`ganzoo.evaluate`.

    ganzoo eval GENERATED --ref REFERENCE --metric fid --metric kid --n 5000 \\
        --batch-size 50 --out result.json

GENERATED and REFERENCE take the same meanings as in Python: a saved-model folder, a preset
name, an image folder, a registered dataset name (``model:``, ``dataset:``, ``folder:`` and
``hf-hub:`` prefixes disambiguate). Prints the result JSON on stdout; on stderr, a line per
metric with ``--repeats K`` (mean ± sd over K generation seeds, and the per-seed values) and a
line per value that is not available, with the reason. Exits 2 with one line on a
missing-weights or input error, 130 on Ctrl-C (the scheme of ``ganzoo --help``).
"""

from __future__ import annotations

import argparse
import json
import sys

from .._progress import EXIT_CODES, EXIT_USAGE, report_interrupted
from .evaluation import evaluate
from .extractors import FeatureExtractorWeightsError

__all__ = ["main", "build_parser", "summary_lines"]


def _kv(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser(prog: str = "ganzoo eval") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Score generated images against a "
                                "reference (FID, KID, IS, precision/recall, MiFID, LPIPS "
                                "diversity, PSNR, SSIM).", epilog=EXIT_CODES)
    p.add_argument("generated", help="model folder, preset name, image folder or dataset name")
    p.add_argument("--ref", "--reference", dest="reference", default=None,
                   help="reference: image folder or dataset name")
    p.add_argument("--metric", "-m", action="append", dest="metrics", default=None,
                   help="metric name (repeatable; default: fid); see `ganzoo list metrics`")
    p.add_argument("--n", type=int, default=5000, help="generated images per output")
    p.add_argument("--n-real", type=int, default=None, help="reference images (default: --n)")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--feature-extractor", default="inception_v3")
    p.add_argument("--fid-weights", "--feature-extractor-weights", dest="weights", default=None,
                   help="local feature-extractor weights file (else $GANZOO_FID_WEIGHTS)")
    p.add_argument("--resizer", choices=("torch", "pil_bicubic"), default="torch")
    p.add_argument("--dataset-kwarg", "-d", action="append", type=_kv, default=[],
                   metavar="KEY=VALUE", help="dataset kwarg (repeatable), e.g. -d size=5000")
    p.add_argument("--metric-kwarg", action="append", type=_kv, default=[],
                   metavar="METRIC.KEY=VALUE", help="e.g. --metric-kwarg kid.subset_size=100")
    p.add_argument("--split", default=None)
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--output", action="append", dest="outputs", default=None,
                   help="evaluate only this model output (repeatable)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step for the protocol")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1, metavar="K",
                   help="score K generation seeds (--seed, --seed+1, ...) against one "
                        "reference and report each metric's mean, sample sd and per-seed "
                        "values (default 1)")
    p.add_argument("--cache-dir", default=None, help="default: $GANZOO_CACHE or ~/.cache/ganzoo")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default=None, help="write the result JSON here")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress of generation and feature extraction: a bar on a terminal "
                        "(the default there); --progress also prints a line every 30 s into "
                        "a log; --no-progress: none")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt as e:  # nothing is written before the end: no resume to offer
        return report_interrupted("ganzoo eval", e)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)

    metric_kwargs: dict[str, dict] = {}
    for key, value in args.metric_kwarg:
        metric, dot, field = key.partition(".")
        if not dot:
            print(f"ganzoo eval: error: --metric-kwarg needs METRIC.KEY=VALUE, got {key!r}",
                  file=sys.stderr)
            return EXIT_USAGE
        metric_kwargs.setdefault(metric, {})[field] = value
    metrics = args.metrics or ["fid"]
    try:
        result = evaluate(
            args.generated, args.reference, metrics=metrics, n=args.n,
            batch_size=args.batch_size, n_real=args.n_real,
            feature_extractor=args.feature_extractor, feature_extractor_weights=args.weights,
            resizer=args.resizer, dataset_kwargs=dict(args.dataset_kwarg), split=args.split,
            resolution=args.resolution, outputs=args.outputs, metric_kwargs=metric_kwargs,
            step=args.step, seed=args.seed, repeats=args.repeats, cache=not args.no_cache,
            cache_dir=args.cache_dir,
            device=args.device, out=args.out, progress=args.progress)
    except (FeatureExtractorWeightsError, FileNotFoundError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ganzoo eval: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result, indent=2, default=str))
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    return 0


def _num(value: float) -> str:
    return f"{value:.6g}"


def summary_lines(result: dict) -> list[str]:
    """The readable lines of a result, in the order of its metrics: over K > 1 generation
    seeds, ``"fid: 41.2 ± 0.611 over 3 generation seeds (0, 1, 2): 40.6, 41.1, 41.8"``; for a
    value that is not available, ``"kid_std: n/a (reason)"``. No lines for a one-seed result
    where every value is available."""
    protocol = result.get("protocol") or {}
    not_available = protocol.get("not_available") or {}
    spread = result.get("repeats") or {}
    seeds = ", ".join(str(s) for s in protocol.get("repeat_seeds") or [])
    lines = []
    for key in result.get("metrics") or {}:
        if key in not_available:
            lines.append(f"{key}: n/a ({not_available[key]})")
        elif key in spread:
            s = spread[key]
            sd = f" ± {s['std']:.3g}" if s["std"] is not None else ""
            lines.append(f"{key}: {_num(s['mean'])}{sd} over {s['n']} generation seeds "
                         f"({seeds}): {', '.join(_num(v) for v in s['values'])}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
