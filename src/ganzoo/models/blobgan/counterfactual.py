"""Object-aware counterfactual explanations with BlobGAN layouts (OCTET, arXiv 2211.12380).

Given a decision model (any classifier ``images -> logits``), optimise chosen blob parameters of
an (inverted) layout until the decision flips to a target class, while a proximity loss keeps
the layout close to the original. As in OCTET's ``cf_optim`` (``valeoai/OCTET``): Adam for 100
iterations at lr 0.08 for the blob sizes (so that blobs can appear or vanish) and lr/8 for the
other parameters, cross-entropy of the decision towards the target, and an L1 proximity loss
weighted by ``lambda_prox``.

Additions to OCTET's procedure, documented in ``docs/blobgan.md``:

- *Blob targeting*: only the blobs in ``blobs`` (indices 0..K-1) change; the background entry
  changes only with ``include_background=True``.
- *Diverse counterfactuals*: ``n_diverse = M`` counterfactuals per image are optimised together.
  An assignment matrix ``A`` (M x K, entries in [0, 1]) says how much counterfactual m may move
  blob k (its change is ``A[m, k] * delta``); by default the targeted blobs are dealt out in
  turn (a hard partition), so each counterfactual explains through different objects. A
  diversity loss, the mean pairwise cosine similarity of the counterfactuals' absolute image
  changes, pushes them to change different regions (weight ``lambda_div``).

Decision models: ``decision="softmax"`` (multi-class; the target is a class and success is the
arg-max reaching it) or ``"sigmoid"`` (multi-label as OCTET's driving model; the target is an
attribute whose thresholded value flips).

Outputs of :func:`run_counterfactuals` per batch: ``snapshot_{i}.png`` (rows: images,
reconstructions, then the counterfactuals of each target), ``metadata_{i}.safetensors`` (every
tensor) and ``metadata_{i}.json`` (names, targets, hyperparameters, the tensor index). No
pickle. :func:`load_metadata` reads them back into the same nested dict. The keys are those of
the ``metadata_{i}.pt`` files of OCTET's ``octet_invert_counterfactual.py``: ``image_names``,
``blob_optim`` (the inverted layout), ``init_scores`` (the decision model's scores of the
reconstructions) and per target attribute
``att_{t}`` with ``blob_cf`` (the counterfactual layout) and ``final_scores``; ganzoo adds
``inversion_mse``, ``cf_kwargs`` and, per target, ``success`` and ``assignment``. Files written
before these names (``inverted_blobs``, ``initial_scores``, ``target_{t}``, ``blobs``) are read
back under the new ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..._io import atomic_path, save_grid
from ...registry import build_dataset
from .inversion import invert
from .layout import BLOB_KEYS, LAYOUT_KEYS

__all__ = [
    "counterfactual", "CounterfactualResult", "run_counterfactuals", "save_metadata",
    "load_metadata", "counterfactual_metrics", "TinyDecisionCNN", "train_decision_model",
    "default_assignment", "decision_scores",
]

Layout = dict[str, torch.Tensor]
DecisionKind = Literal["softmax", "sigmoid"]


# -- decision model ------------------------------------------------------------------------------
class TinyDecisionCNN(nn.Module):
    """A small CNN classifier (e.g. of ``shapes_scenes``'s left-of-centre label)."""

    def __init__(self, n_classes: int = 2, width: int = 16, in_channels: int = 3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.SiLU(), nn.AvgPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.SiLU())
        # Keep horizontal position: pool to a 1 x 4 strip, not to a single vector.
        self.pool = nn.AdaptiveAvgPool2d((1, 4))
        self.head = nn.Linear(2 * w * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def train_decision_model(dataset: str = "shapes_scenes", *, resolution: int = 32,
                         aspect_ratio: float = 1.0, n_images: int = 1024, steps: int = 300,
                         batch_size: int = 32, lr: float = 3e-3, width: int = 16, seed: int = 0,
                         device: str | torch.device = "cpu") -> TinyDecisionCNN:
    """Train :class:`TinyDecisionCNN` on the ``label`` of ``n_images`` images of an embedded
    dataset (rendered once), for ``steps`` minibatches; returned in eval mode, frozen."""
    data = build_dataset(dataset, resolution=resolution, aspect_ratio=aspect_ratio,
                         size=n_images, seed=seed)
    items = data.render(list(range(n_images)))
    images, labels = items["image"].to(device), items["label"].to(device)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = TinyDecisionCNN(width=width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(n_images, (batch_size,), generator=g).to(device)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


def decision_scores(decision_model, images: torch.Tensor, decision: DecisionKind = "softmax"):
    logits = decision_model(images)
    return logits.softmax(-1) if decision == "softmax" else logits.sigmoid()


# -- optimisation --------------------------------------------------------------------------------
@dataclass
class CounterfactualResult:
    layout: Layout  # (N*M, ...) counterfactual blobs, image-major (image i: rows i*M .. i*M+M-1)
    images: torch.Tensor  # (N*M, 3, H, W)
    initial_scores: torch.Tensor  # (N, C)
    final_scores: torch.Tensor  # (N*M, C)
    success: torch.Tensor  # (N*M,) bool
    assignment: torch.Tensor  # (M, K)
    target: int
    n_diverse: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def default_assignment(n_diverse: int, n_blobs: int, blobs: Sequence[int] | None = None):
    """Deal the targeted blobs out in turn: ``A[m, k] = 1`` for the m-th, (m+M)-th, ... blob."""
    blobs = list(range(n_blobs)) if blobs is None else list(blobs)
    a = torch.zeros(n_diverse, n_blobs)
    for j, k in enumerate(blobs):
        a[j % n_diverse if n_diverse > 1 else 0, k] = 1.0
    return a


def _success(scores, initial, target, decision):
    if decision == "softmax":
        return scores.argmax(-1) == target
    return (scores[:, target] > 0.5) != (initial[:, target] > 0.5)


def _repeat(t: torch.Tensor, m: int) -> torch.Tensor:
    return t.repeat_interleave(m, 0)


def counterfactual(model, layout: Layout, decision_model, target: int, *,
                   params: Sequence[str] = ("xs", "ys", "sizes", "covs", "features",
                                            "spatial_style"),
                   blobs: Sequence[int] | None = None, include_background: bool = False,
                   steps: int = 100, lr: float = 0.08, size_lr_mult: float = 8.0,
                   lambda_prox: float = 1.0, prox_weights: dict[str, float] | None = None,
                   n_diverse: int = 1, lambda_div: float = 1.0,
                   assignment: torch.Tensor | None = None, decision: DecisionKind = "softmax",
                   seed: int = 0) -> CounterfactualResult:
    """Counterfactuals of the scenes ``layout`` (N scenes) for class/attribute ``target``.

    The sizes are optimised at ``lr`` and every other parameter at ``lr / size_lr_mult``
    (OCTET: 0.08 and 0.01). The proximity loss is ``sum_p prox_weights[p] * L1(p, p_0)``
    (all weights 1 by default), times ``lambda_prox``.
    """
    unknown = set(params) - set(LAYOUT_KEYS)
    if unknown:
        raise ValueError(f"params: unknown layout keys {sorted(unknown)}; use {LAYOUT_KEYS}")
    if n_diverse < 1:
        raise ValueError(f"n_diverse must be >= 1, got {n_diverse}")
    device = model.device
    k = layout["xs"].shape[1]
    n, m = layout["xs"].shape[0], n_diverse
    blobs = list(range(k)) if blobs is None else [int(b) % k for b in blobs]
    if assignment is None:
        assignment = default_assignment(m, k, blobs)
    assignment = assignment.to(device, torch.float32)
    if assignment.shape != (m, k):
        raise ValueError(f"assignment must be (n_diverse, K) = ({m}, {k}), "
                         f"got {tuple(assignment.shape)}")
    targeted = torch.zeros(k, device=device)
    targeted[blobs] = 1.0
    mask_blob = assignment * targeted  # (M, K)
    mask_bg = torch.full((m, 1), float(include_background), device=device)
    masks = {"blob": mask_blob.repeat(n, 1), "all": torch.cat([mask_bg, mask_blob], 1).repeat(n, 1)}
    prox_weights = prox_weights or {}
    start = time.perf_counter()

    orig = {key: _repeat(v.detach().to(device), m) for key, v in layout.items()}
    delta = {key: torch.zeros_like(orig[key], requires_grad=True) for key in params}
    opt = torch.optim.Adam([{"params": [delta[key]],
                             "lr": lr if key == "sizes" else lr / size_lr_mult} for key in params])

    def current():
        out = dict(orig)
        for key, d in delta.items():
            mask = masks["blob"] if key in BLOB_KEYS else masks["all"]
            out[key] = orig[key] + d * mask.view(*mask.shape, *([1] * (d.ndim - 2)))
        return out

    g = lambda: torch.Generator(device=device).manual_seed(seed)  # noqa: E731 - fixed noise
    with torch.no_grad():
        base = model.render({key: v.to(device) for key, v in layout.items()}, generator=g())
        initial_scores = decision_scores(decision_model, base.clamp(-1, 1), decision)
    goal = torch.full((n * m,), target, device=device, dtype=torch.long)
    init_rep = _repeat(initial_scores, m)
    flip_to = (init_rep[:, target] <= 0.5).float()
    with torch.enable_grad():
        for _ in range(steps):
            lay = current()
            img = model.render(lay, generator=g()).clamp(-1, 1)
            logits = decision_model(img)
            if decision == "softmax":
                loss = F.cross_entropy(logits, goal, reduction="sum")
            else:
                loss = F.binary_cross_entropy_with_logits(logits[:, target], flip_to,
                                                          reduction="sum")
            if lambda_prox:
                prox = sum(prox_weights.get(key, 1.0) * (lay[key] - orig[key]).abs()
                           .flatten(1).mean(1).sum() for key in params)
                loss = loss + lambda_prox * prox
            if m > 1 and lambda_div:
                change = (img - _repeat(base, m)).abs().mean(1).flatten(1).view(n, m, -1)
                change = F.normalize(change, dim=-1)
                sim = change @ change.transpose(1, 2)  # (N, M, M)
                off = ~torch.eye(m, dtype=torch.bool, device=device)
                loss = loss + lambda_div * sim[:, off].mean(1).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        final = {key: v.detach() for key, v in current().items()}
        images = model.render(final, generator=g()).clamp(-1, 1)
        scores = decision_scores(decision_model, images, decision)
    return CounterfactualResult(
        layout=final, images=images, initial_scores=initial_scores, final_scores=scores,
        success=_success(scores, init_rep, target, decision), assignment=assignment.cpu(),
        target=int(target), n_diverse=m, seconds=time.perf_counter() - start,
        extra={"base_images": base})


@torch.no_grad()
def counterfactual_metrics(result: CounterfactualResult, layout: Layout,
                           lpips: Callable | None = None) -> dict[str, float]:
    """Success rate and proximity (mean L1 change of each blob parameter, image L1 and, given
    an LPIPS callable, LPIPS) of counterfactuals against the layout they started from."""
    m = result.n_diverse
    out = {"success_rate": float(result.success.float().mean())}
    for key in LAYOUT_KEYS:
        orig = _repeat(layout[key].to(result.layout[key]), m)
        out[f"proximity_{key}"] = float((result.layout[key] - orig).abs().mean())
    base = _repeat(result.extra["base_images"], m)
    out["proximity_image_l1"] = float((result.images - base).abs().mean())
    if lpips is not None:
        out["lpips"] = float(lpips(result.images, base).mean())
    return out


# -- outputs -------------------------------------------------------------------------------------
def _flatten(tree: dict, prefix: str = "") -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {}
    for key, v in tree.items():
        name = f"{prefix}{key}"
        if isinstance(v, torch.Tensor):
            tensors[name] = v.detach().cpu().contiguous()
            meta[key] = {"__tensor__": name}
        elif isinstance(v, dict):
            t, mt = _flatten(v, name + ".")
            tensors.update(t)
            meta[key] = mt
        else:
            meta[key] = v
    return tensors, meta


def _unflatten(meta, tensors):
    if isinstance(meta, dict):
        if set(meta) == {"__tensor__"}:
            return tensors[meta["__tensor__"]]
        return {k: _unflatten(v, tensors) for k, v in meta.items()}
    return meta


def save_metadata(metadata: dict, path_prefix: str | Path) -> tuple[Path, Path]:
    """Write a nested dict of tensors and JSON values to ``PREFIX.safetensors`` and
    ``PREFIX.json``."""
    from safetensors.torch import save_file

    prefix = Path(path_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = _flatten(metadata)
    st, js = prefix.with_suffix(".safetensors"), prefix.with_suffix(".json")
    with atomic_path(st) as tmp:  # safetensors' own file is 0600; this one has the umask's mode
        save_file(tensors, str(tmp))
    js.write_text(json.dumps(meta, indent=1) + "\n")
    return st, js


# Counterfactual metadata keys of ganzoo 0.1 -> OCTET's names.
_RENAMED_TOP = {"inverted_blobs": "blob_optim", "initial_scores": "init_scores"}
_RENAMED_TARGET = {"blobs": "blob_cf"}


def _upgrade_metadata(tree: dict) -> dict:
    out = {}
    for key, value in tree.items():
        if key.startswith("target_") and isinstance(value, dict):
            key = "att_" + key[len("target_"):]
            value = {_RENAMED_TARGET.get(k, k): v for k, v in value.items()}
        out[_RENAMED_TOP.get(key, key)] = value
    return out


def load_metadata(path_prefix: str | Path) -> dict:
    """Read back what :func:`save_metadata` wrote (counterfactual files of ganzoo 0.1 get
    OCTET's key names, see the module docstring)."""
    from safetensors.torch import load_file

    prefix = Path(path_prefix)
    meta = json.loads(prefix.with_suffix(".json").read_text())
    return _upgrade_metadata(_unflatten(meta, load_file(str(prefix.with_suffix(".safetensors")))))


def _save_grid(rows: list[torch.Tensor], path: Path) -> None:
    save_grid(torch.cat([r.detach().float().cpu() for r in rows]), path, nrow=len(rows[0]))


def run_counterfactuals(model, images: torch.Tensor, decision_model, targets: Sequence[int], *,
                        out_dir: str | Path, names: Sequence[str] | None = None, encoder=None,
                        batch_size: int = 8, invert_steps: int = 400,
                        invert_kwargs: dict | None = None, batch_offset: int = 0,
                        **cf_kwargs) -> list[dict]:
    """Invert ``images`` and compute counterfactuals for every target, writing per batch a
    snapshot grid and the metadata (safetensors + JSON). Returns the metadata dicts."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(names) if names is not None else [f"image_{i}" for i in range(len(images))]
    decision = cf_kwargs.get("decision", "softmax")
    results = []
    for bi, b0 in enumerate(range(0, len(images), batch_size)):
        batch = images[b0:b0 + batch_size]
        inv = invert(model, batch, encoder=encoder, steps=invert_steps, batch_size=len(batch),
                     **(invert_kwargs or {}))
        with torch.no_grad():
            init_scores = decision_scores(decision_model, inv.reconstruction, decision)
        # OCTET's metadata keys (blob_optim, init_scores, att_{t}: blob_cf and
        # final_scores), plus ganzoo's inversion_mse, cf_kwargs, success and assignment.
        meta = {"image_names": names[b0:b0 + len(batch)], "blob_optim": inv.layout,
                "init_scores": init_scores, "inversion_mse": inv.losses["mse"],
                "cf_kwargs": {k: v for k, v in cf_kwargs.items()
                              if isinstance(v, (int, float, str, bool, list, tuple))}}
        rows = [batch, inv.reconstruction]
        for t in targets:
            res = counterfactual(model, inv.layout, decision_model, int(t), **cf_kwargs)
            meta[f"att_{int(t)}"] = {"final_scores": res.final_scores, "blob_cf": res.layout,
                                        "success": res.success, "assignment": res.assignment}
            m = res.n_diverse
            for j in range(m):
                rows.append(res.images[j::m])
        idx = batch_offset + bi
        _save_grid(rows, out_dir / f"snapshot_{idx}.png")
        save_metadata(meta, out_dir / f"metadata_{idx}")
        results.append(meta)
    return results
