"""``ganzoo.evaluate``: the one code path behind the Python API, ``ganzoo eval`` and the
trainer's ``--eval-every``.

Flow: resolve both inputs (:mod:`.sources`); for a model, one task per output of
``model.generate`` with its reference view from ``model.eval_references``; generate and extract
the generated side batch by batch (sharded over ranks, gathered in sample order); take the
reference side from the cache (:mod:`.cache`) or extract and store it; compute every metric;
return (and optionally write) ``{"metrics": {...}, "protocol": {...}}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Iterable, Literal

import torch

from . import cache as _cache
from .base import FeatureMetric, Metric, PairedMetric, RealFeatures, SampleMetric
from .distributed import all_min, gather_rows, rank_world
from .sources import DatasetSource, ImageSource, resolve_input

__all__ = ["evaluate", "build_metrics"]

Resizer = Literal["torch", "pil_bicubic"]
QUANTIZATION = "uint8, rounded as torchvision.utils.save_image"


def build_metrics(metrics: Iterable[str | Metric] | str,
                  metric_kwargs: dict[str, dict[str, Any]] | None = None) -> list[Metric]:
    """Metric objects from registry names (with per-name kwargs) or instances."""
    from ..registry import METRICS

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
        from torch.utils.data import default_collate

        ds, n = self.source.dataset, len(self.source)
        batch = default_collate([ds[j % n] for j in range(start, stop)])
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()} \
            if isinstance(batch, dict) else batch

    @torch.no_grad()
    def __call__(self, i: int, start: int, stop: int) -> dict[str, torch.Tensor]:
        g = torch.Generator(device=self.device).manual_seed(self.seed * 1_000_003 + i)
        batch = self._batch(start, stop) if self.source is not None else None
        outs = self.model.generate(batch, stop - start, generator=g)
        if torch.is_tensor(outs):
            outs = {"sample": outs}
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
    from .extractors import resize_pil_bicubic, to_uint8

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
    """A tqdm bar over ``items`` on rank 0: on in a terminal (``enabled=None``), as the trainer."""
    from tqdm.auto import tqdm

    show = (sys.stderr.isatty() if enabled is None else enabled) and rank == 0
    return tqdm(items, desc=desc, disable=not show, file=sys.stderr, dynamic_ncols=True,
                leave=False)


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
            scored against (e.g. ``fid/bu`` against ``subset="with"``).
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
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be positive, got n={n}, batch_size={batch_size}")
    if resizer not in ("torch", "pil_bicubic"):
        raise ValueError(f"resizer must be 'torch' or 'pil_bicubic', got {resizer!r}")
    rank, world = rank_world()
    metric_objs = build_metrics(metrics, metric_kwargs)
    feature_metrics = [m for m in metric_objs if isinstance(m, FeatureMetric)]
    sample_metrics = [m for m in metric_objs if isinstance(m, SampleMetric)]
    paired_metrics = [m for m in metric_objs if isinstance(m, PairedMetric)]

    dkw = dict(dataset_kwargs or {})
    if split is not None:
        dkw["split"] = split
    if dkw.get("augment", "none") != "none":
        dkw["augment"] = "none"  # training augmentation never enters the evaluation
    gen = resolve_input(generated, "generated", dkw, resolution, image_key)
    model = gen[1] if gen[0] == "model" else None
    if model is not None and isinstance(generated, (str, os.PathLike)):
        # Built here from a name or folder (on the CPU): run it where the extractor runs.
        model.to(device if device is not None else _default_device(None))
    if resolution is None and model is not None:
        from ..datasets import dataset_kwargs_for

        resolution = dataset_kwargs_for(model).get("resolution")
    if resolution is not None:
        dkw.setdefault("resolution", resolution)
        for side in (gen,):
            if side[0] == "dataset":
                side[1].kwargs.setdefault("resolution", resolution)
    ref = resolve_input(reference, "reference", dkw, resolution, image_key)
    if ref is not None and ref[0] == "model":
        raise TypeError("the reference must be images (folder, dataset, Dataset or tensor), "
                        "not a model")
    if ref is None and any(m.uses_reference for m in metric_objs):
        needs = [m.name for m in metric_objs if m.uses_reference]
        raise ValueError(f"metrics {needs} compare against reference images; pass reference=...")

    # -- tasks: one per scored output --------------------------------------------------------
    if model is not None:
        references = dict(getattr(model, "eval_references", {"sample": {}}))
        names = list(outputs) if outputs is not None else list(references)
        unknown = [o for o in names if o not in references]
        if unknown:
            raise KeyError(f"{type(model).__name__} has no evaluation output {unknown}; it "
                           f"has {sorted(references)}")
        source = None
        if getattr(model, "task", "sample") != "sample":
            if ref is None:
                raise ValueError(f"a '{model.task}' model needs input batches: pass the "
                                 f"dataset as reference=...")
            source = ref[1].view({}) if ref[0] == "dataset" else ref[1]
            if not isinstance(source, DatasetSource):
                raise TypeError(f"a '{model.task}' model draws its inputs from a dataset; "
                                f"pass a dataset name or a Dataset as reference")
        n_fake = n
        runner = _Runner(model, source, names, seed)
        ref_views = {o: _reference_view(ref, references[o], o) for o in names}
        suffix = {o: ("" if names == ["sample"] else f"/{o}") for o in names}
        gen_desc = f"model:{model.preset or type(model).__name__}"
    else:
        gen_src = gen[1].view({}) if gen[0] == "dataset" else gen[1]
        n_fake = min(n, len(gen_src))
        names = ["images"]
        runner = None
        ref_views = {"images": _reference_view(ref, {}, None)}
        suffix = {"images": ""}
        gen_desc = gen_src.description

    extractor = None
    if feature_metrics:
        from .extractors import build_feature_extractor

        extractor = build_feature_extractor(feature_extractor, feature_extractor_weights,
                                            device or _default_device(model))
    fake_layers = sorted({extractor.layers[m.layer] for m in feature_metrics}) if extractor else []
    needs_real_feats = any(m.uses_reference for m in feature_metrics)
    k_samples = max((m.max_samples for m in sample_metrics), default=0)

    # -- generated side ----------------------------------------------------------------------
    was_training = model.training if model is not None else False
    if model is not None:
        model.eval()
    feats = {o: {layer: ([], []) for layer in fake_layers} for o in names}
    samples = {o: ([], []) for o in names}
    pairs = {o: {m.name: ([], []) for m in paired_metrics} for o in names}
    fake_res: dict[str, list[int]] = {}
    try:
        for i, start, stop in _progress(_batches(n_fake, batch_size)[rank::world],
                                        "generate + features" if runner else "features",
                                        progress, rank):
            outs = runner(i, start, stop) if runner is not None else \
                {"images": gen_src.images(start, stop)}
            idx = torch.arange(start, stop)
            for o, imgs in outs.items():
                fake_res.setdefault(o, list(imgs.shape[-2:]))
                if extractor is not None:
                    f = extractor(_prepare(imgs, resizer, extractor.input_size))
                    for layer in fake_layers:
                        feats[o][layer][0].append(f[layer])
                        feats[o][layer][1].append(idx)
                if start < k_samples:
                    samples[o][0].append(_to_signed(imgs[: k_samples - start]).cpu())
                    samples[o][1].append(idx[: k_samples - start])
                if paired_metrics:
                    rsrc = ref_views[o]
                    m_ref = len(rsrc)
                    real = torch.cat([rsrc.images(j % m_ref, j % m_ref + 1)
                                      for j in range(start, stop)]) \
                        if stop > m_ref else rsrc.images(start, stop)
                    fu, ru = _to_unit(imgs).cpu(), _to_unit(real)
                    for m in paired_metrics:
                        pairs[o][m.name][0].append(m.per_pair(fu, ru).double())
                        pairs[o][m.name][1].append(idx)
    finally:
        if model is not None:
            model.train(was_training)

    # -- per output: reference side, then the metrics ----------------------------------------
    results: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    tag = ""
    if extractor is not None and extractor.name != "inception_v3":
        tag = f"@{extractor.name}"
    for o in names:
        rsrc = ref_views[o]
        info: dict[str, Any] = {"reference": rsrc.description if rsrc is not None else None,
                                "generated_resolution": fake_res.get(o)}
        if model is not None:
            info["reference_view"] = model.eval_references.get(o, {}) if hasattr(
                model, "eval_references") else {}
        real, save_key = None, None
        if rsrc is not None:
            n_r = min(n_real or n, len(rsrc))
            first = rsrc.images(0, 1)
            info.update(n_real=n_r, split=rsrc.split or dkw.get("split"),
                        reference_resolution=list(first.shape[-2:]))
        if needs_real_feats:
            layer = extractor.layers["fid"]
            key = None
            status = "off"
            if cache and rsrc.cache_id is not None:
                key = {"reference": rsrc.cache_id, "split": info["split"],
                       "resolution": info["reference_resolution"], "n": n_r,
                       "extractor": extractor.name, "weights": extractor.weights_id,
                       "layer": layer, "resizer": resizer, "quantization": QUANTIZATION}
                hit = _cache.load_real(key, cache_dir)
                if all_min(int(hit is not None)):
                    real = RealFeatures(*hit)
                    status = "hit"
                    if hit[3] is None:
                        save_key = key  # an entry from before ganzoo 0.3 gains sqrt_sigma
                else:
                    status = "miss"
            elif cache:
                status = "not cacheable"
            if real is None:
                real = RealFeatures(_extract_real(rsrc, n_r, batch_size, extractor, layer,
                                                  resizer, rank, world, progress))
                save_key = key
            info["real_stats_cache"] = status
        details[o] = info

        for m in feature_metrics:
            layer = extractor.layers[m.layer]
            fake = gather_rows(*feats[o][layer])
            for k, v in m.compute(fake, real if m.uses_reference else None).items():
                if tag and k == "fid":
                    k = "fd"  # a Fréchet distance in another feature space is not an FID
                results[f"{k}{tag}{suffix[o]}"] = v
        if save_key is not None and rank == 0:
            # After the metrics, so that the square root of sigma the Fréchet distance
            # computed (when one was asked for) is cached with the statistics.
            _cache.save_real(save_key, real.features, real.stats["mu"], real.stats["sigma"],
                             cache_dir, sqrt_sigma=real._sqrt_sigma)
        for m in sample_metrics:
            imgs = gather_rows(*samples[o])
            for k, v in m.compute(imgs[: m.max_samples]).items():
                results[f"{k}{suffix[o]}"] = v
        for m in paired_metrics:
            values = gather_rows(*pairs[o][m.name], dtype=torch.float64)
            for k, v in m.compute(values).items():
                results[f"{k}{suffix[o]}"] = v

    results = {k: float(v) for k, v in results.items()}
    protocol = _protocol(metric_objs, extractor, feature_extractor_weights, resizer, gen_desc,
                         reference, ref, details, n_fake, dkw, step, seed, batch_size, world,
                         model)
    protocol["time_s"] = round(time.perf_counter() - t0, 3)
    result = {"metrics": results, "protocol": protocol}
    if out is not None and rank == 0:
        path = os.fspath(out)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=2, default=str)
            f.write("\n")
    return result


def _protocol(metric_objs, extractor, weights_arg, resizer, gen_desc, reference, ref, details,
              n_fake, dkw, step, seed, batch_size, world, model) -> dict[str, Any]:
    import torch_fidelity

    import ganzoo

    def one(field):
        values = {o: d.get(field) for o, d in details.items()}
        distinct = {json.dumps(v, default=str) for v in values.values()}
        return next(iter(values.values())) if len(distinct) == 1 else values

    feature = any(isinstance(m, FeatureMetric) for m in metric_objs)
    protocol: dict[str, Any] = {
        "ganzoo_version": ganzoo.__version__,
        "implementation": "torch-fidelity" if feature else "ganzoo",
        "implementation_version": torch_fidelity.__version__ if feature else ganzoo.__version__,
        "metrics": {m.name: m.config() for m in metric_objs},
        "feature_extractor": extractor.name if extractor else None,
        "feature_extractor_weights": extractor.weights_source if extractor else None,
        "feature_extractor_weights_id": extractor.weights_id if extractor else None,
        "feature_layers": dict(extractor.layers) if extractor else None,
        "resizer": resizer if extractor else None,
        "quantization": QUANTIZATION if extractor else None,
        "generated": gen_desc,
        "reference": one("reference"),
        "n_fake": n_fake,
        "n_real": one("n_real"),
        "split": one("split"),
        "dataset_kwargs": json.loads(json.dumps(dkw, default=str)),
        "resolution": one("generated_resolution"),
        "reference_resolution": one("reference_resolution"),
        "real_stats_cache": one("real_stats_cache"),
        "step": step,
        "seed": seed,
        "batch_size": batch_size,
        "world_size": world,
    }
    if model is not None:
        protocol["model"] = {"preset": model.preset, "family": getattr(model, "family", None),
                             "task": getattr(model, "task", None)}
    if len(details) > 1 or next(iter(details)) != "images":
        protocol["outputs"] = details
    return protocol
