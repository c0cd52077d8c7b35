"""The report's images: curves (matplotlib), sample-grid picks, latent interpolations and the
worst samples of a run.

The worst samples make failure modes measurable (docs/workflows/generator_evolution.md,
"Stage 5"): the generated images
farthest from every real image in the evaluation's own feature space (its extractor and its
``fid`` layer, e.g. Inception pool3), i.e. ``max_i min_j ||f(g_i) - f(r_j)||``. A fixed seed
draws the generated pool and the real side is the first images of the evaluation's reference
view, so the pick is deterministic; both sizes are small (64 and 256 by default) so that the
report stays cheap next to the evaluation itself.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch

from .._factory import from_pretrained
from ..latent import LatentGenerator, interpolation_grid, save_grid
from ..metrics.evaluation import reference_views
from ..metrics.extractors import build_feature_extractor, to_uint8
from ..rundir import RunDir
from .checkpoint_model import load_checkpoint_model
from .runs import RunInfo, latest_checkpoint

__all__ = ["MissingExtra", "plot_curves", "pick_progression", "load_run_model",
           "interpolation_strip", "worst_samples"]

EXTRA_LINE = "matplotlib is not installed (pip install 'ganzoo[report]')"


class MissingExtra(ImportError):
    """matplotlib, the ``report`` extra, is not installed."""


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise MissingExtra(EXTRA_LINE) from None
    matplotlib.use("Agg")  # files only; never a window, and no display needed
    import matplotlib.pyplot as plt

    return plt


def _loss_keys(records: list[dict[str, Any]], limit: int = 12) -> list[str]:
    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if "/" in k and not k.startswith("lr/") and k not in keys and \
                    isinstance(v, (int, float)) and not isinstance(v, bool):
                keys.append(k)
    # Losses first: with many logged values, those are the curves a reader looks for.
    keys.sort(key=lambda k: (not k.endswith("loss"), k))
    return keys[:limit]


def _grid_figure(plt, series: dict[str, list[tuple[int, float]]], title: str, path: Path,
                 marker: str = ""):
    n = len(series)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), squeeze=False)
    for ax, (key, points) in zip(axes.flat, series.items()):
        xs, ys = zip(*points)
        # Values logged at a few steps only (one resolution of a random-mode multi-res run,
        # evaluations) would be invisible as a line alone.
        ax.plot(xs, ys, marker=marker or ("." if len(points) < 30 else ""), linewidth=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_curves(info: RunInfo, folder: Path) -> dict[str, Path]:
    """``losses.png`` (every logged value of each optimizer group over steps) and
    ``metrics.png`` (evaluations over steps); only those with data. Raises
    :class:`MissingExtra` without matplotlib."""
    plt = _pyplot()
    out: dict[str, Path] = {}
    series: dict[str, list[tuple[int, float]]] = {}
    for key in _loss_keys(info.records):
        pts = [(r["step"], float(r[key])) for r in info.records
               if isinstance(r.get("step"), int) and isinstance(r.get(key), (int, float))
               and math.isfinite(float(r[key]))]
        if pts:
            series[key] = pts
    if series:
        out["losses"] = folder / "losses.png"
        _grid_figure(plt, series, f"{info.name}: training logs", out["losses"])
    curves = info.eval_curve()
    if curves:
        out["metrics"] = folder / "metrics.png"
        _grid_figure(plt, curves, f"{info.name}: evaluations", out["metrics"], marker="o")
    return out


def pick_progression(grids: list[tuple[int, Path]], total: int | None,
                     fractions=(0.1, 0.5, 1.0)) -> list[tuple[int, Path, float]]:
    """The sample grids nearest to each fraction of the run (step 0 only if nothing else)."""
    if not grids:
        return []
    later = [g for g in grids if g[0] > 0] or grids
    last = total or later[-1][0]
    picked: list[tuple[int, Path, float]] = []
    for f in fractions:
        step, path = min(later, key=lambda g: abs(g[0] - f * last))
        if all(step != p[0] for p in picked):
            picked.append((step, path, step / last if last else 1.0))
    return picked


def load_run_model(info: RunInfo, device: torch.device):
    """The run's newest weights: ``final/``, else its newest checkpoint (a run stopped early)."""
    if info.finished:
        model = from_pretrained(RunDir(info.dir).final)
    else:
        latest = latest_checkpoint(info.dir)
        if latest is None:
            raise FileNotFoundError(f"{info.dir} holds no weights yet (no final/, no checkpoint)")
        model = load_checkpoint_model(latest[1])
    return model.to(device).eval()


def interpolation_strip(model, path: Path, rows: int = 3, steps: int = 8, seed: int = 0) -> bool:
    """Slerp between latent pairs (``ganzoo.latent``); False for a model without a latent
    space (DDPM, translation and transfer families)."""
    if not isinstance(model, LatentGenerator):
        return False
    g = torch.Generator(device=model.device).manual_seed(seed)
    with torch.no_grad():
        images = interpolation_grid(model, rows=rows, steps=steps, method="slerp", generator=g)
    save_grid(images, path, nrow=steps)
    return True


def _eval_settings(info: RunInfo) -> dict[str, Any]:
    """The evaluation's extractor and reference, from the queue's experiment record or the
    evaluation's protocol."""
    ev = dict(((info.experiment or {}).get("eval")) or {})
    protocol = info.protocol
    if not protocol:
        for r in reversed(info.records):
            if isinstance(r.get("eval"), dict) and r["eval"].get("protocol"):
                protocol = r["eval"]["protocol"]
                break
    ev.setdefault("feature_extractor", (protocol or {}).get("feature_extractor")
                  or "inception_v3")
    weights = (protocol or {}).get("feature_extractor_weights")
    if "feature_extractor_weights" not in ev and isinstance(weights, str) and \
            os.path.isfile(weights):
        ev["feature_extractor_weights"] = weights
    return ev


def _features(extractor, images: torch.Tensor, batch: int = 32) -> torch.Tensor:
    layer = extractor.layers["fid"]
    rows = [extractor(to_uint8(images[i:i + batch]))[layer].float().cpu()
            for i in range(0, len(images), batch)]
    return torch.cat(rows)


@torch.no_grad()
def worst_samples(model, info: RunInfo, path: Path, k: int = 8, pool: int = 64,
                  n_reference: int = 256, seed: int = 0, device=None) -> dict[str, Any]:
    """Save the ``k`` of ``pool`` generated images farthest from any of ``n_reference`` real
    images (nearest-neighbour distance in the evaluation's feature space) as one grid; returns
    their distances and how they were measured."""
    ev = _eval_settings(info)
    reference = ev.get("reference") or info.dataset or model.default_dataset
    dkw = dict(ev.get("dataset_kwargs") or {})
    if not ev.get("reference"):
        dkw = {**(info.config.get("dataset_args") or {}), **dkw}
    output = next(iter(model.eval_references))
    inputs, views = reference_views(model, reference, dkw, outputs=[output])
    real_src = views[output]
    batch = None if inputs is None else \
        model.collate([inputs.dataset[i % len(inputs)] for i in range(pool)])
    g = torch.Generator(device=model.device).manual_seed(seed)
    generated = model.generate(batch, pool, generator=g)[output][:pool].float()
    real = real_src.images(0, min(n_reference, len(real_src)))
    extractor = build_feature_extractor(ev["feature_extractor"],
                                        ev.get("feature_extractor_weights"), device)
    fake_f, real_f = _features(extractor, generated.cpu()), _features(extractor, real)
    distance = torch.cdist(fake_f.double(), real_f.double()).min(dim=1).values
    order = distance.argsort(descending=True)[:k]
    save_grid(generated.cpu()[order].clamp(-1, 1), path, nrow=min(k, 8))
    return {"distances": [float(distance[i]) for i in order], "output": output,
            "extractor": extractor.name, "layer": extractor.layers["fid"],
            "pool": len(generated), "n_reference": len(real), "reference": real_src.description,
            "median_distance": float(distance.median())}
