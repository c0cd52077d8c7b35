"""Phase 2 of the generator-evolution plan: train the GAN chain on one dataset, score each.

    python examples/gan_evolution.py                          # embedded `shapes`, 64 px
    python examples/gan_evolution.py --steps 20 --batch-size 8 --set ngf=16 --set ndf=16 \\
        --feature-extractor test_random_cnn --eval-n 64 --out runs/smoke   # a quick smoke run
    python examples/gan_evolution.py --dataset image_folder --data root=/data/celeba \\
        --presets dcgan wgan_gp_sn_attn --steps 20000 --cpu

For each preset of the chain (``dcgan -> dcgan_upsample -> wgan_gp -> wgan_gp_sn_attn``, and
the 128 px presets with ``--with-128``), the script

1. trains it through the trainer's entry point, ``ganzoo.train.main([...])`` (the same as
   ``python -m ganzoo.train`` / ``ganzoo train``), into ``OUT/<preset>/``;
2. evaluates the final EMA generator with ``ganzoo.evaluate`` (what ``ganzoo eval`` runs)
   against the training dataset at the preset's resolution;
3. reads ``OUT/<preset>/metrics.jsonl`` and writes the loss curves per step
   (``loss_curves.csv`` and a dependency-free ``loss_curves.svg``).

Then it writes the results table ``OUT/results.md`` and ``OUT/results.csv``: the metric(s),
the number of steps, training speed, the last sample grid (``samples/step_*.png``, the
trainer's fixed-noise grid) and the loss-curve files of every preset.

FID needs torch-fidelity's Inception weights (downloaded once, or ``$GANZOO_FID_WEIGHTS``);
offline, ``--feature-extractor test_random_cnn`` gives a random-feature stand-in that only
suits smoke runs. Every ``--set KEY=VALUE`` is passed to the trainer for every preset (model
config fields, e.g. ``ngf=32``); ``--data KEY=VALUE`` sets a dataset option.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

CHAIN = ["dcgan", "dcgan_upsample", "wgan_gp", "wgan_gp_sn_attn"]
CHAIN_128 = ["dcgan_128", "wgan_gp_128", "wgan_gp_sn_attn_128"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="shapes", help="registered dataset (default: shapes)")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. root=/data/celeba; repeatable")
    p.add_argument("--presets", nargs="+", default=None, help=f"default: {' '.join(CHAIN)}")
    p.add_argument("--with-128", action="store_true", help="also the 128 px presets")
    p.add_argument("--steps", type=int, default=5000, help="training iterations per preset")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--set", action="append", default=[], dest="model_set", metavar="KEY=VALUE",
                   help="model config override for every preset, e.g. ngf=32; repeatable")
    p.add_argument("--out", default="runs/gan_evolution", help="output folder")
    p.add_argument("--metric", action="append", dest="metrics", default=None,
                   help="metric name, repeatable (default: fid)")
    p.add_argument("--eval-n", type=int, default=5000, help="generated images per evaluation")
    p.add_argument("--feature-extractor", default="inception_v3")
    p.add_argument("--sample-every", type=int, default=None,
                   help="sample-grid period in steps (default: steps // 10)")
    p.add_argument("--ema-decay", type=float, default=None,
                   help="generator EMA decay (default: the family's 0.999; use ~0.99 for "
                   "runs of a few hundred steps, whose EMA would still be near the init)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is present")
    p.add_argument("--skip-train", action="store_true",
                   help="reuse OUT/<preset>/final from an earlier run; only evaluate and report")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.presets = args.presets or (CHAIN + (CHAIN_128 if args.with_128 else []))
    args.metrics = args.metrics or ["fid"]
    return args


def _kv_dict(items: list[str]) -> dict:
    """``["size=64", "root=/data"]`` -> ``{"size": 64, "root": "/data"}`` (YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value.strip())
    return out


def train(preset: str, args, run_dir: Path) -> None:
    from ganzoo.train import main as train_main

    argv = ["--model", preset, "--dataset", args.dataset, "--output-dir", str(run_dir),
            "--max-steps", str(args.steps), "--batch-size", str(args.batch_size),
            "--seed", str(args.seed), "--save-every", "0", "--keep", "1",
            "--sample-every", str(args.sample_every or max(1, args.steps // 10)),
            "--log-every", str(max(1, args.steps // 200)),
            "--overwrite"]
    for item in args.model_set:
        argv += ["--set", item]
    for item in args.data:
        argv += ["--set", f"data.{item}"]
    if args.ema_decay is not None:
        argv += ["--ema-decay", str(args.ema_decay)]
    if args.cpu:
        argv.append("--cpu")
    if args.no_progress:
        argv.append("--no-progress")
    print(f"[{preset}] python -m ganzoo.train {' '.join(argv)}", flush=True)
    rc = train_main(argv)
    if rc != 0:
        raise RuntimeError(f"training {preset} failed with exit code {rc}")


def evaluate(run_dir: Path, args) -> dict:
    import ganzoo

    model = ganzoo.from_pretrained(run_dir / "final").eval()
    if not args.cpu:
        import torch

        if torch.cuda.is_available():
            model = model.cuda()
    dataset_kwargs = _kv_dict(args.data)
    return ganzoo.evaluate(model, args.dataset, metrics=args.metrics, n=args.eval_n,
                           batch_size=min(args.batch_size, args.eval_n),
                           dataset_kwargs=dataset_kwargs,
                           feature_extractor=args.feature_extractor, seed=args.seed,
                           out=run_dir / "eval.json")


def read_log(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def loss_curves(records: list[dict], run_dir: Path) -> tuple[Path | None, Path | None]:
    """Write ``loss_curves.csv`` (step + every ``*loss``/``*penalty`` column) and an SVG."""
    rows = [r for r in records if "step" in r and "eval" not in r and "eval_error" not in r]
    keys = sorted({k for r in rows for k in r if k.endswith(("loss", "penalty", "score"))})
    if not rows or not keys:
        return None, None
    csv_path = run_dir / "loss_curves.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step"] + keys)
        for r in rows:
            w.writerow([r["step"]] + [r.get(k, "") for k in keys])
    svg_path = run_dir / "loss_curves.svg"
    svg_path.write_text(_svg_plot(rows, [k for k in keys if k.endswith(("loss", "penalty"))]))
    return csv_path, svg_path


def _svg_plot(rows: list[dict], keys: list[str], width: int = 640, height: int = 320) -> str:
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]
    pad = 40
    steps = [r["step"] for r in rows]
    values = [float(r[k]) for r in rows for k in keys
              if isinstance(r.get(k), (int, float))]
    if not values:
        return "<svg xmlns='http://www.w3.org/2000/svg'/>"
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1.0
    s0, s1 = min(steps), max(steps) if max(steps) > min(steps) else min(steps) + 1

    def xy(step, v):
        x = pad + (step - s0) / (s1 - s0) * (width - 2 * pad)
        y = height - pad - (v - lo) / (hi - lo) * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"font-family='sans-serif' font-size='11'>",
             f"<rect width='{width}' height='{height}' fill='white'/>",
             f"<line x1='{pad}' y1='{height - pad}' x2='{width - pad}' y2='{height - pad}' "
             f"stroke='black'/><line x1='{pad}' y1='{pad}' x2='{pad}' y2='{height - pad}' "
             f"stroke='black'/>",
             f"<text x='{pad}' y='{height - pad + 15}'>{s0}</text>",
             f"<text x='{width - pad}' y='{height - pad + 15}' text-anchor='end'>{s1} steps</text>",
             f"<text x='{pad - 4}' y='{pad}' text-anchor='end'>{hi:.3g}</text>",
             f"<text x='{pad - 4}' y='{height - pad}' text-anchor='end'>{lo:.3g}</text>"]
    for i, k in enumerate(keys):
        pts = " ".join(xy(r["step"], float(r[k])) for r in rows
                       if isinstance(r.get(k), (int, float)))
        c = colours[i % len(colours)]
        parts.append(f"<polyline fill='none' stroke='{c}' stroke-width='1.5' points='{pts}'/>")
        parts.append(f"<text x='{width - pad}' y='{pad + 14 * i}' text-anchor='end' "
                     f"fill='{c}'>{k}</text>")
    parts.append("</svg>")
    return "\n".join(parts)


def main(argv=None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for preset in args.presets:
        run_dir = out / preset
        t0 = time.perf_counter()
        if not args.skip_train:
            train(preset, args, run_dir)
        train_s = time.perf_counter() - t0
        records = read_log(run_dir)
        curves_csv, curves_svg = loss_curves(records, run_dir)
        try:
            ev = evaluate(run_dir, args)
            metrics, error = ev.get("metrics", ev), None
        except Exception as e:  # noqa: BLE001 - report the failure, go on with the chain
            metrics, error = {}, f"{type(e).__name__}: {e}"
            print(f"[{preset}] evaluation failed: {error}", file=sys.stderr)
        grids = sorted((run_dir / "samples").glob("step_*.png"))
        speed = [r["it_per_s"] for r in records if "it_per_s" in r]
        results.append({
            "preset": preset,
            "steps": max((r.get("step", 0) for r in records), default=0),
            "it_per_s": round(sorted(speed)[len(speed) // 2], 3) if speed else "",
            "train_s": round(train_s, 1),
            **{m: metrics.get(m, "") for m in _metric_keys(metrics, args.metrics)},
            "eval_error": error or "",
            "samples": str(grids[-1].relative_to(out)) if grids else "",
            "loss_curves": str(curves_svg.relative_to(out)) if curves_svg else "",
            "loss_csv": str(curves_csv.relative_to(out)) if curves_csv else "",
        })
        print(f"[{preset}] {json.dumps(results[-1])}", flush=True)
    write_tables(results, out, args)
    return 0 if all(not r["eval_error"] for r in results) else 1


def _metric_keys(metrics: dict, wanted: list[str]) -> list[str]:
    # Outside Inception, evaluate() names the Fréchet distance "fd@<extractor>".
    prefixes = [p for w in wanted for p in (w + "@", w + "/", *(("fd@",) if w == "fid" else ()))]
    keys = [k for k in metrics if isinstance(metrics[k], (int, float))
            and (k in wanted or k.startswith(tuple(prefixes)))]
    return keys or wanted


def write_tables(results: list[dict], out: Path, args) -> None:
    cols = []
    for r in results:
        cols += [k for k in r if k not in cols]
    if not any(r["eval_error"] for r in results):
        cols.remove("eval_error")
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(results)

    def cell(k, v):
        if k in ("samples", "loss_curves") and v:
            return f"![{k}]({v})" if k == "samples" else f"[svg]({v})"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = [f"# GAN evolution on `{args.dataset}` ({args.steps} steps, batch "
             f"{args.batch_size}, {', '.join(args.metrics)} with {args.feature_extractor}, "
             f"n = {args.eval_n})", "",
             "| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for r in results:
        lines.append("| " + " | ".join(cell(k, r.get(k, "")) for k in cols) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / 'results.md'} and {out / 'results.csv'}")


if __name__ == "__main__":
    sys.exit(main())
