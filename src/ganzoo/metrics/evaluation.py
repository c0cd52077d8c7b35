"""``ganzoo.evaluate``: the one code path behind the Python API, ``ganzoo eval`` and the
trainer's ``--eval-every``.

Flow: resolve both inputs (:mod:`.sources`); for a model, one task per output of
``model.generate`` with its reference view from ``model.eval_references``; generate and extract
the generated side batch by batch (sharded over ranks, gathered in sample order); take the
reference side from the cache (:mod:`.cache`) or extract and store it; compute every metric;
return (and optionally write) ``{"metrics": {...}, "protocol": {...}}``. With ``repeats=K``
the generated side is drawn and scored K times, with generation seeds ``seed, ..., seed + K -
1``, against one reference side; the result adds each metric's spread over those seeds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import torch

from .._io import atomic_write_json
from .._stats import Summary, summarize
from .._progress import progress_bar
from ..datasets import dataset_kwargs_for
from ..registry import METRICS
from .._version import __version__
from . import cache as _cache
from .base import FeatureMetric, Metric, PairedMetric, RealFeatures, SampleMetric
from .distributed import all_min, gather_rows, rank_world
from .extractors import build_feature_extractor, resize_pil_bicubic, to_uint8
from .fidelity import NotAvailable
from .sources import DatasetSource, ImageSource, resolve_input

__all__ = ["evaluate", "build_metrics", "metric_keys", "EvalProtocol", "reference_views"]

Resizer = Literal["torch", "pil_bicubic"]
QUANTIZATION = "uint8, rounded as torchvision.utils.save_image"


def build_metrics(metrics: Iterable[str | Metric] | str,
                  metric_kwargs: dict[str, dict[str, Any]] | None = None) -> list[Metric]:
    """Metric objects from registry names (with per-name kwargs) or instances."""
    if isinstance(metrics, (str, Metric)):
        metrics = [metrics]
    metric_kwargs = metric_kwargs or {}
    unknown = set(metric_kwargs) - {m for m in metrics if isinstance(m, str)}
    if unknown:
        raise ValueError(f"metric_kwargs names metrics that are not requested: {sorted(unknown)}")
    out = []
    for m in metrics:
        if isinstance(m, str):
            m = METRICS.build(m, **metric_kwargs.get(m, {}))
        if not isinstance(m, Metric):
            raise TypeError(f"metric {m!r} is not a ganzoo.metrics.base.Metric")
        out.append(m)
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise ValueError(f"metrics requested twice: {names}")
    return out


def _default_device(model) -> torch.device:
    if model is not None:
        try:
            return next(model.parameters()).device
        except StopIteration:
            pass
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


class _Runner:
    """Draws generated images for global batch ``i`` deterministically (seed, batch index)."""

    def __init__(self, model, source: DatasetSource | None, outputs: list[str], seed: int):
        self.model, self.source, self.outputs, self.seed = model, source, outputs, seed
        self.device = _default_device(model)

    def _batch(self, start: int, stop: int):
        ds, n = self.source.dataset, len(self.source)
        return self.model.collate([ds[j % n] for j in range(start, stop)])

    @torch.no_grad()
    def __call__(self, i: int, start: int, stop: int) -> dict[str, torch.Tensor]:
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + i)
        batch = self._batch(start, stop) if self.source is not None else None
        outs = self.model.generate(batch, stop - start, generator=g)
        missing = [k for k in self.outputs if k not in outs]
        if missing:
            raise KeyError(f"{type(self.model).__name__}.generate returned {sorted(outs)}, "
                           f"not {missing} named in eval_references")
        return {k: outs[k][: stop - start].detach() for k in self.outputs}


def _reference_view(ref, overrides: dict, output: str | None) -> ImageSource | None:
    if ref is None:
        return None
    kind, obj = ref
    if kind == "dataset":
        return obj.view(overrides)
    if kind == "images":
        if overrides:
            raise ValueError(f"output '{output}' is scored against the dataset view "
                             f"{overrides}; pass the reference as a registered dataset name so "
                             f"that view can be built")
        return obj
    raise TypeError("a model as reference is not supported; pass its samples as a tensor")


def _prepare(images: torch.Tensor, resizer: str, size: int | None) -> torch.Tensor:
    u8 = to_uint8(images)
    if resizer == "pil_bicubic":
        if size is None:
            raise ValueError("resizer='pil_bicubic' needs an extractor with a fixed input size")
        u8 = resize_pil_bicubic(u8, size)
    return u8


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    if images.dtype == torch.uint8:
        return images.float() / 255
    return ((images.float() + 1) / 2).clamp(0, 1)


def _to_signed(images: torch.Tensor) -> torch.Tensor:
    return _to_unit(images) * 2 - 1


def _batches(n: int, batch_size: int) -> list[tuple[int, int, int]]:
    return [(i, s, min(s + batch_size, n)) for i, s in enumerate(range(0, n, batch_size))]


def _progress(items: list, desc: str, enabled: bool | None, rank: int):
    """Progress over ``items`` on rank 0, by the rule of every long command
    (:mod:`ganzoo._progress`: a bar on a terminal, with ``enabled`` a line in a log)."""
    return progress_bar(items, desc=desc, unit="batch", leave=False,
                        enabled=False if rank != 0 else enabled)


def _extract_real(src: ImageSource, n: int, batch_size: int, extractor, layer: str,
                  resizer: str, rank: int, world: int, progress: bool | None = None
                  ) -> torch.Tensor:
    rows, index = [], []
    for i, start, stop in _progress(_batches(n, batch_size)[rank::world], "reference features",
                                    progress, rank):
        feats = extractor(_prepare(src.images(start, stop), resizer, extractor.input_size))
        rows.append(feats[layer])
        index.append(torch.arange(start, stop))
    return gather_rows(rows, index)


@dataclass
class _Plan:
    """What one evaluation generates and what each generated output is compared with."""

    model: Any  # a GenerativeModel, or None when the generated side is images
    names: list[str]  # scored outputs ("images" for an image source)
    ref_views: dict[str, ImageSource | None]
    suffix: dict[str, str]  # metric-key suffix per output ("" for a single output)
    n_fake: int
    description: str
    runner: _Runner | None = None
    images: ImageSource | None = None  # the generated side when it is not a model

    def batch(self, i: int, start: int, stop: int) -> dict[str, torch.Tensor]:
        if self.runner is not None:
            return self.runner(i, start, stop)
        return {"images": self.images.images(start, stop)}


@dataclass
class _Generated:
    """The generated side, per output: features by layer, image samples and per-pair values
    (each as (rows, indices) lists, gathered across ranks in sample order)."""

    features: dict[str, dict[str, tuple[list, list]]]
    samples: dict[str, tuple[list, list]]
    pairs: dict[str, dict[str, tuple[list, list]]]
    resolution: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class EvalProtocol:
    """Everything needed to reproduce (or refuse to compare) a result; saved with it."""

    ganzoo_version: str
    implementation: str
    implementation_version: str
    metrics: dict[str, Any]
    feature_extractor: str | None
    feature_extractor_weights: str | None
    feature_extractor_weights_id: str | None
    feature_layers: dict[str, str] | None
    resizer: str | None
    quantization: str | None
    generated: str
    reference: Any
    n_fake: int
    n_real: Any
    split: Any
    dataset_kwargs: dict[str, Any]
    resolution: Any
    reference_resolution: Any
    real_stats_cache: Any
    step: int | None
    seed: int
    batch_size: int
    world_size: int
    model: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    time_s: float | None = None
    repeats: int | None = None  # with repeats > 1: how many generation seeds, and which
    repeat_seeds: list[int] | None = None
    not_available: dict[str, str] | None = None  # metric key -> why it has no value

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        optional = ("model", "outputs", "time_s", "repeats", "repeat_seeds", "not_available")
        return {k: v for k, v in out.items() if v is not None or k not in optional}


def _dataset_options(dataset_kwargs, split) -> dict[str, Any]:
    dkw = dict(dataset_kwargs or {})
    if split is not None:
        dkw["split"] = split
    if dkw.get("augment", "none") != "none":
        dkw["augment"] = "none"  # training augmentation never enters the evaluation
    return dkw


def _resolve_sides(generated, reference, metric_objs, dkw: dict, resolution, image_key, device):
    """Stage 1: the generated side (a model or images) and the reference side (images), with
    the reference drawn at the model's ``image_size``: its height *and* width."""
    gen = resolve_input(generated, "generated", dkw, resolution, image_key)
    model = gen[1] if gen[0] == "model" else None
    if model is not None and isinstance(generated, (str, os.PathLike)):
        # Built here from a name or folder (on the CPU): run it where the extractor runs.
        model.to(device if device is not None else _default_device(None))
    if resolution is not None:
        dkw.setdefault("resolution", resolution)
        if gen[0] == "dataset":
            gen[1].kwargs.setdefault("resolution", resolution)
        folder_size = resolution
    elif model is not None:
        for option, value in dataset_kwargs_for(model).items():
            dkw.setdefault(option, value)
        folder_size = tuple(model.image_size)
    else:
        folder_size = None
    ref = resolve_input(reference, "reference", dkw, folder_size, image_key)
    if ref is not None and ref[0] == "model":
        raise TypeError("the reference must be images (folder, dataset, Dataset or tensor), "
                        "not a model")
    if ref is None and any(m.uses_reference for m in metric_objs):
        needs = [m.name for m in metric_objs if m.uses_reference]
        raise ValueError(f"metrics {needs} compare against reference images; pass reference=...")
    return gen, ref, model


def _plan(gen, ref, model, outputs, n: int, seed: int) -> _Plan:
    """Stage 2: one task per scored output of the model (``model.eval_references``), or one
    for an image source."""
    if model is None:
        images = gen[1].view({}) if gen[0] == "dataset" else gen[1]
        return _Plan(None, ["images"], {"images": _reference_view(ref, {}, None)},
                     {"images": ""}, min(n, len(images)), images.description, images=images)
    names = list(outputs) if outputs is not None else list(model.eval_references)
    source, views = _task_views(model, ref, names)
    return _Plan(model, names, views, {o: ("" if names == ["sample"] else f"/{o}") for o in names},
                 n, f"model:{model.preset or type(model).__name__}",
                 runner=_Runner(model, source, names, seed))


def _task_views(model, ref, names: list[str]) -> tuple[DatasetSource | None,
                                                       dict[str, ImageSource | None]]:
    """A model's two uses of the reference side: the source of its task's inputs (``None``
    for a model without inputs) and, for each output in ``names``, the view of the reference
    it is scored against (``model.eval_references``)."""
    references = model.eval_references
    unknown = [o for o in names if o not in references]
    if unknown:
        raise KeyError(f"{type(model).__name__} has no evaluation output {unknown}; it has "
                       f"{sorted(references)}")
    source = None
    if model.takes_inputs:
        if ref is None:
            raise ValueError(f"a '{model.task}' model needs input batches: pass the dataset "
                             f"as reference=...")
        source = ref[1].view({}) if ref[0] == "dataset" else ref[1]
        if not isinstance(source, DatasetSource):
            raise TypeError(f"a '{model.task}' model draws its inputs from a dataset; pass a "
                            f"dataset name or a Dataset as reference")
    return source, {o: _reference_view(ref, references[o], o) for o in names}


def reference_views(model, reference, dataset_kwargs: dict[str, Any] | None = None,
                    outputs: Iterable[str] | None = None) -> tuple[DatasetSource | None,
                                                                   dict[str, ImageSource]]:
    """What :func:`evaluate` compares ``model``'s outputs with, for callers that score or
    pick samples themselves (the report's worst samples): ``(inputs, views)``, the source of
    the task's inputs (``None`` for a model without inputs) and, per output of
    ``model.eval_references`` (or of ``outputs``), the reference view it is scored against.
    ``reference`` and ``dataset_kwargs`` are :func:`evaluate`'s; the reference is drawn at the
    model's ``image_size``, without training augmentation."""
    dkw = _dataset_options(dataset_kwargs, None)
    _, ref, _ = _resolve_sides(model, reference, [], dkw, None, None, None)
    names = list(outputs) if outputs is not None else list(model.eval_references)
    return _task_views(model, ref, names)


def _generate_and_extract(plan: _Plan, extractor, layers: list[str], k_samples: int,
                          paired_metrics: list, resizer: str, batch_size: int, rank: int,
                          world: int, progress: bool | None) -> _Generated:
    """Stage 3: this rank's share of the generated batches, generated (a model, in
    ``inference()``) and reduced at once to features, the first samples and per-pair values."""
    out = _Generated({o: {layer: ([], []) for layer in layers} for o in plan.names},
                     {o: ([], []) for o in plan.names},
                     {o: {m.name: ([], []) for m in paired_metrics} for o in plan.names})
    batches = _batches(plan.n_fake, batch_size)[rank::world]
    desc = "generate + features" if plan.model is not None else "features"
    with plan.model.inference() if plan.model is not None else contextlib.nullcontext():
        for i, start, stop in _progress(batches, desc, progress, rank):
            idx = torch.arange(start, stop)
            for o, imgs in plan.batch(i, start, stop).items():
                out.resolution.setdefault(o, list(imgs.shape[-2:]))
                if extractor is not None:
                    f = extractor(_prepare(imgs, resizer, extractor.input_size))
                    for layer in layers:
                        out.features[o][layer][0].append(f[layer])
                        out.features[o][layer][1].append(idx)
                if start < k_samples:
                    out.samples[o][0].append(_to_signed(imgs[: k_samples - start]).cpu())
                    out.samples[o][1].append(idx[: k_samples - start])
                if paired_metrics:
                    real = _paired_references(plan.ref_views[o], start, stop)
                    fu, ru = _to_unit(imgs).cpu(), _to_unit(real)
                    for m in paired_metrics:
                        out.pairs[o][m.name][0].append(m.per_pair(fu, ru).double())
                        out.pairs[o][m.name][1].append(idx)
    return out


def _paired_references(src: ImageSource, start: int, stop: int) -> torch.Tensor:
    """Reference images ``start:stop``, wrapping around a reference shorter than the run."""
    m = len(src)
    if stop <= m:
        return src.images(start, stop)
    return torch.cat([src.images(j % m, j % m + 1) for j in range(start, stop)])


def _reference_features(src: ImageSource, info: dict[str, Any], extractor, resizer: str,
                        batch_size: int, cache: bool, cache_dir, rank: int, world: int,
                        progress: bool | None):
    """Stage 4: the reference side's features, from the disk cache or extracted. Returns
    ``(features, cache key to store them under or None)`` and records the cache status."""
    layer = extractor.layers["fid"]
    key = None
    if not cache:
        info["real_stats_cache"] = "off"
    elif src.cache_id is None:
        info["real_stats_cache"] = "not cacheable"
    else:
        key = {"reference": src.cache_id, "split": info["split"],
               "resolution": info["reference_resolution"], "n": info["n_real"],
               "extractor": extractor.name, "weights": extractor.weights_id, "layer": layer,
               "resizer": resizer, "quantization": QUANTIZATION}
        hit = _cache.load_real(key, cache_dir)
        if all_min(int(hit is not None)):
            info["real_stats_cache"] = "hit"
            # A format v1 entry comes without statistics: store it again with them.
            return RealFeatures(*hit), (key if hit[3] is None else None)
        info["real_stats_cache"] = "miss"
    return RealFeatures(_extract_real(src, info["n_real"], batch_size, extractor, layer,
                                      resizer, rank, world, progress)), key


def _extractor_tag(name: str | None) -> str:
    """``@<extractor>`` in a feature metric's key, or nothing for Inception (an FID)."""
    return f"@{name}" if name is not None and name != "inception_v3" else ""


def _feature_key(k: str, tag: str, suffix: str) -> str:
    """A feature metric's key; a Fréchet distance outside Inception's space is ``fd``."""
    return f"{'fd' if tag and k == 'fid' else k}{tag}{suffix}"


def metric_keys(metrics: Iterable[str | Metric] | str, feature_extractor: str = "inception_v3",
                outputs: Iterable[str] = ("sample",),
                metric_kwargs: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """The keys of ``"metrics"`` that :func:`evaluate` will return for these metrics, this
    extractor and a model's evaluated ``outputs`` (its ``eval_references``), without
    computing anything (the trainer checks ``--keep-best`` against them at start-up)."""
    objs = build_metrics(metrics, metric_kwargs)
    outputs = list(outputs)
    suffixes = [""] if outputs == ["sample"] else [f"/{o}" for o in outputs]
    tag = _extractor_tag(feature_extractor)
    keys = []
    for suffix in suffixes:
        for m in objs:
            for k in m.keys or (m.name,):
                keys.append(_feature_key(k, tag, suffix) if isinstance(m, FeatureMetric)
                            else f"{k}{suffix}")
    return keys


def _compute_metrics(o: str, plan: _Plan, generated: _Generated, real, extractor,
                     feature_metrics, sample_metrics, paired_metrics
                     ) -> tuple[dict[str, float | None], dict[str, str]]:
    """Stage 5: every metric of one output, and why a value is not available (written as
    ``None``). Keys: ``<metric>[@<extractor>][/<output>]``; a Fréchet distance outside
    Inception's feature space is ``fd@<extractor>``, not an FID."""
    tag = _extractor_tag(extractor.name if extractor is not None else None)
    suffix, results = plan.suffix[o], {}
    for m in feature_metrics:
        fake = gather_rows(*generated.features[o][extractor.layers[m.layer]])
        for k, v in m.compute(fake, real if m.uses_reference else None).items():
            results[_feature_key(k, tag, suffix)] = v
    for m in sample_metrics:
        imgs = gather_rows(*generated.samples[o])
        for k, v in m.compute(imgs[: m.max_samples]).items():
            results[f"{k}{suffix}"] = v
    for m in paired_metrics:
        values = gather_rows(*generated.pairs[o][m.name], dtype=torch.float64)
        for k, v in m.compute(values).items():
            results[f"{k}{suffix}"] = v
    notes = {k: v.reason for k, v in results.items() if isinstance(v, NotAvailable)}
    return {k: None if k in notes else float(v) for k, v in results.items()}, notes


def evaluate(
    generated,
    reference=None,
    metrics: Iterable[str | Metric] | str = ("fid",),
    n: int = 5000,
    batch_size: int = 50,
    *,
    n_real: int | None = None,
    feature_extractor: str = "inception_v3",
    feature_extractor_weights: str | os.PathLike | None = None,
    resizer: Resizer = "torch",
    dataset_kwargs: dict[str, Any] | None = None,
    split: str | None = None,
    resolution: int | None = None,
    outputs: Iterable[str] | None = None,
    metric_kwargs: dict[str, dict[str, Any]] | None = None,
    step: int | None = None,
    seed: int = 0,
    repeats: int = 1,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    image_key: str | None = None,
    out: str | os.PathLike | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Score ``generated`` against ``reference`` and return ``{"metrics", "protocol"}``.

    Args:
        generated: a model (object, preset name, saved folder or ``hf-hub:`` id), an image
            folder, a registered dataset name, a ``Dataset`` or a tensor (N, C, H, W) in [-1, 1].
        reference: the same kinds (not a model). For a model whose task needs inputs
            (translation, attribute transfer), a dataset name: its default view feeds
            ``model.generate`` and ``model.eval_references`` picks the view each output is
            scored against (e.g. ``fid/bu`` against ``subset="with"``). A dataset or folder
            reference is drawn at the model's ``image_size`` (height and width).
        metrics: registry names (``ganzoo.list_metrics()``) or metric objects.
        n: generated images per output; ``n_real`` reference images (default ``n``; fewer if
            the reference is smaller).
        batch_size: images per generation / extraction batch (does not change the result).
        feature_extractor: ``inception_v3`` (torch-fidelity's TF-compatible Inception) or
            another registered extractor; values then read ``fd@<extractor>``.
        feature_extractor_weights: a local weights file (else ``$GANZOO_FID_WEIGHTS``, the
            torch hub cache, or a download).
        resizer: ``"torch"`` (default: uint8 at native size, resized inside the extractor by
            torch-fidelity's TF1-compatible bilinear, the standard FID protocol) or
            ``"pil_bicubic"`` (clean-fid style).
        dataset_kwargs: kwargs for dataset names (``resolution``, ``size``, ``seed``, ...);
            ``split`` and ``resolution`` are shortcuts that fill them. ``augment`` is forced to
            ``"none"``: training augmentation never enters an evaluation.
        outputs: restrict a model's evaluated outputs (default: all of ``eval_references``).
        metric_kwargs: per-metric kwargs, e.g. ``{"kid": {"subset_size": 100}}``.
        step: the checkpoint step, recorded in the protocol.
        seed: seeds generation: batch ``i`` uses ``torch.Generator().manual_seed(seed *
            1000003 + i)``, so results do not depend on the number of ranks.
        repeats: score a model's samples ``repeats`` times, with generation seeds ``seed``,
            ``seed + 1``, ..., against the same reference features (extracted or read from
            the cache once) and, for a model with inputs, the same input batches. Each
            value in ``"metrics"`` is then the mean over the repeats, and ``"repeats"`` gives
            per metric ``{"n", "mean", "std", "values"}`` (sample std, per-repeat values in
            seed order): the spread that generation alone causes (docs/evaluation.md,
            "Generation noise"). 1 (the default) gives the one-seed result without
            ``"repeats"``.
        cache, cache_dir: reference-side cache (default ``$GANZOO_CACHE`` or ``~/.cache/ganzoo``).
        device: where the extractor runs, and a model given by name or folder (default: a
            model object's device, else CUDA if available, else the CPU).
        image_key: which key of dataset items is the image (default ``"image"``).
        out: also write the result as JSON there (rank 0 only).
        progress: tqdm bars for generation and feature extraction (default: when stderr is a
            terminal).

    Under ``torch.distributed`` call it on every rank: each rank generates and extracts its
    share, features are gathered, and every rank returns the same result.
    """
    t0 = time.perf_counter()
    if n < 1 or batch_size < 1 or repeats < 1:
        raise ValueError(f"n, batch_size and repeats must be positive, got n={n}, "
                         f"batch_size={batch_size}, repeats={repeats}")
    if resizer not in ("torch", "pil_bicubic"):
        raise ValueError(f"resizer must be 'torch' or 'pil_bicubic', got {resizer!r}")
    rank, world = rank_world()
    metric_objs = build_metrics(metrics, metric_kwargs)
    dkw = _dataset_options(dataset_kwargs, split)

    # 1-2. resolve the two sides; plan one task per scored output
    gen, ref, model = _resolve_sides(generated, reference, metric_objs, dkw, resolution,
                                     image_key, device)
    plan = _plan(gen, ref, model, outputs, n, seed)
    if repeats > 1 and plan.runner is None:
        raise ValueError(f"repeats={repeats} scores a model's samples with several generation "
                         f"seeds; {plan.description} is images, which have no seed to vary")
    scoring = _Scoring(metric_objs, resizer, batch_size, cache, cache_dir, progress, rank,
                       world)
    if scoring.feature_metrics:
        scoring.extractor = build_feature_extractor(
            feature_extractor, feature_extractor_weights, device or _default_device(model))

    # 3-5. per generation seed: generate and extract, then per output the metrics against
    # the reference features (from the cache or extracted once, for every seed)
    details = {o: _output_details(plan, o, n_real or n, dkw) for o in plan.names}
    seeds = [seed + r for r in range(repeats)]
    runs, not_available = _score_seeds(plan, scoring, details, seeds)

    # 6. the protocol
    protocol = _protocol(metric_objs, scoring.extractor, resizer, plan, details, dkw, step,
                         seed, batch_size, world)
    protocol.time_s = round(time.perf_counter() - t0, 3)
    protocol.not_available = not_available or None
    result: dict[str, Any] = {"metrics": runs[0]}
    if repeats > 1:
        protocol.repeats, protocol.repeat_seeds = repeats, seeds
        spread = {k: _spread([run[k] for run in runs]) for k in runs[0]}
        result = {"metrics": {k: v["mean"] for k, v in spread.items()}, "repeats": spread}
    result["protocol"] = protocol.to_dict()
    if out is not None and rank == 0:
        atomic_write_json(out, result)
    return result


@dataclass
class _Scoring:
    """What every generation seed of one evaluation shares: the metrics, the extractor and
    the loop's settings."""

    metrics: list[Metric]
    resizer: str
    batch_size: int
    cache: bool
    cache_dir: Any
    progress: bool | None
    rank: int
    world: int
    extractor: Any = None

    def __post_init__(self):
        self.feature_metrics = [m for m in self.metrics if isinstance(m, FeatureMetric)]
        self.sample_metrics = [m for m in self.metrics if isinstance(m, SampleMetric)]
        self.paired_metrics = [m for m in self.metrics if isinstance(m, PairedMetric)]

    @property
    def layers(self) -> list[str]:
        if self.extractor is None:
            return []
        return sorted({self.extractor.layers[m.layer] for m in self.feature_metrics})

    @property
    def k_samples(self) -> int:
        return max((m.max_samples for m in self.sample_metrics), default=0)


def _output_details(plan: _Plan, o: str, n_real: int, dkw: dict) -> dict[str, Any]:
    """The protocol's record of one scored output: its reference (view, N, split,
    resolution); the generated resolution and the cache status are filled in later."""
    src = plan.ref_views[o]
    info = {"reference": src.description if src is not None else None,
            "generated_resolution": None}
    if plan.model is not None:
        info["reference_view"] = plan.model.eval_references.get(o, {})
    if src is not None:
        info.update(n_real=min(n_real, len(src)), split=src.split or dkw.get("split"),
                    reference_resolution=list(src.images(0, 1).shape[-2:]))
    return info


def _score_seeds(plan: _Plan, sc: _Scoring, details: dict[str, dict], seeds: list[int]
                 ) -> tuple[list[dict[str, float | None]], dict[str, str]]:
    """Stages 3-5 once per generation seed: the metrics of every output, per seed, and why a
    value is not available. The reference features of each output are taken (from the cache,
    or extracted and stored) at the first seed and reused for the others."""
    reals: dict[str, Any] = {}
    runs, not_available = [], {}
    for s in seeds:
        if plan.runner is not None:
            plan.runner.seed = s
        generated = _generate_and_extract(plan, sc.extractor, sc.layers, sc.k_samples,
                                          sc.paired_metrics, sc.resizer, sc.batch_size,
                                          sc.rank, sc.world, sc.progress)
        values: dict[str, float | None] = {}
        for o in plan.names:
            first = o not in reals
            if first:
                details[o]["generated_resolution"] = generated.resolution.get(o)
                reals[o] = (None, None)
                if any(m.uses_reference for m in sc.feature_metrics):
                    reals[o] = _reference_features(plan.ref_views[o], details[o], sc.extractor,
                                                   sc.resizer, sc.batch_size, sc.cache,
                                                   sc.cache_dir, sc.rank, sc.world,
                                                   sc.progress)
            real, save_key = reals[o]
            v, why = _compute_metrics(o, plan, generated, real, sc.extractor, sc.feature_metrics,
                                      sc.sample_metrics, sc.paired_metrics)
            values.update(v)
            not_available.update(why)
            if first and save_key is not None and sc.rank == 0:
                # After the metrics, so that the covariance factor the Fréchet distance
                # computed (when one was asked for) is reused rather than computed again.
                _cache.save_real(save_key, real.features, real.stats["mu"],
                                 real.stats["sigma"], real.known_sigma_factor, sc.cache_dir)
        runs.append(values)
    return runs, not_available


def _spread(values: list[float | None]) -> dict[str, Any]:
    """One metric over the generation seeds: ``{"n", "mean", "std", "values"}`` with the
    sample std (:func:`ganzoo._stats.summarize`); ``None`` mean and std for a value that is
    not available, and no std where a value is not finite."""
    if any(v is None for v in values):
        return {"n": len(values), "mean": None, "std": None, "values": list(values)}
    if all(math.isfinite(v) for v in values):
        return summarize(values).to_dict()
    return Summary(len(values), sum(values) / len(values), None, tuple(values)).to_dict()


def _protocol(metric_objs, extractor, resizer, plan: _Plan, details, dkw, step, seed,
              batch_size, world) -> EvalProtocol:
    import torch_fidelity

    def one(key):
        values = {o: d.get(key) for o, d in details.items()}
        distinct = {json.dumps(v, default=str) for v in values.values()}
        return next(iter(values.values())) if len(distinct) == 1 else values

    feature = any(isinstance(m, FeatureMetric) for m in metric_objs)
    model = plan.model
    return EvalProtocol(
        ganzoo_version=__version__,
        implementation="torch-fidelity" if feature else "ganzoo",
        implementation_version=torch_fidelity.__version__ if feature else __version__,
        metrics={m.name: m.config() for m in metric_objs},
        feature_extractor=extractor.name if extractor else None,
        feature_extractor_weights=extractor.weights_source if extractor else None,
        feature_extractor_weights_id=extractor.weights_id if extractor else None,
        feature_layers=dict(extractor.layers) if extractor else None,
        resizer=resizer if extractor else None,
        quantization=QUANTIZATION if extractor else None,
        generated=plan.description,
        reference=one("reference"),
        n_fake=plan.n_fake,
        n_real=one("n_real"),
        split=one("split"),
        dataset_kwargs=json.loads(json.dumps(dkw, default=str)),
        resolution=one("generated_resolution"),
        reference_resolution=one("reference_resolution"),
        real_stats_cache=one("real_stats_cache"),
        step=step,
        seed=seed,
        batch_size=batch_size,
        world_size=world,
        model={"preset": model.preset, "family": model.family, "task": model.task}
        if model is not None else None,
        outputs=details if plan.names != ["images"] else None,
    )
