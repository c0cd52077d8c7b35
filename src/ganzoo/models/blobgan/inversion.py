"""Inversion by optimisation: refine blob parameters so that BlobGAN renders a given image.

OCTET's ``inv_optim`` (``valeoai/OCTET``): start from the encoder's guess, optimise the blob
parameters with Adam (lr 0.02, twice that for sizes; step decay x0.5 every 100 iterations) for
400 iterations against ``lambda_perceptual * LPIPS + lambda_mse * MSE + lambda_prox *
sum_k MSE(param_k, guess_k)`` (weights 1, 0.1, 0.1), optionally plus a decision-model
feature-matching term. Images are processed in batches; every image has its own loss (the batch
loss is the sum), so results do not depend on the batch size.

Departures: the VGG perceptual loss (``ganzoo.losses.perceptual``) stands in for LPIPS unless an
LPIPS-like callable is passed; the generator's noise inputs are held fixed during the
optimisation (drawn once per batch from ``seed``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .layout import LAYOUT_KEYS, concat

__all__ = ["invert", "InversionResult", "inversion_metrics"]

Layout = dict[str, torch.Tensor]


@dataclass
class InversionResult:
    layout: Layout  # optimised blob parameters (detached)
    reconstruction: torch.Tensor  # rendered images in [-1, 1]
    initial: torch.Tensor  # renders of the starting layouts (the encoder's guess)
    initial_layout: Layout
    losses: dict[str, torch.Tensor] = field(default_factory=dict)  # per image, final
    seconds: float = 0.0


def _per_image_mse(a, b):
    return (a - b).square().flatten(1).mean(1)


def _render(model, layout, seed):
    g = torch.Generator(device=model.device).manual_seed(seed)
    return model.render(layout, generator=g)


def invert(model, images: torch.Tensor, *, encoder=None, init_layout: Layout | None = None,
           params: Sequence[str] = LAYOUT_KEYS, steps: int = 400, lr: float = 0.02,
           lr_mult: dict[str, float] | None = None, lr_step: int = 100, lr_gamma: float = 0.5,
           lambda_mse: float = 0.1, lambda_perceptual: float = 1.0, lambda_prox: float = 0.1,
           perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
           decision_features: Callable[[torch.Tensor], torch.Tensor] | None = None,
           lambda_decision: float = 0.1, batch_size: int = 8, seed: int = 0) -> InversionResult:
    """Invert ``images`` (N, 3, H, W) in [-1, 1] into BlobGAN layouts.

    Args:
        model: a :class:`BlobGAN` (its EMA networks render).
        encoder: a :class:`BlobGANEncoder` giving the starting layouts; else ``init_layout``;
            else the mean layout (full truncation).
        params: the layout keys optimised (any of xs, ys, covs, sizes, features,
            spatial_style).
        perceptual: ``fn(x, y) -> scalar batch mean`` (e.g. ``VGGPerceptualLoss`` or LPIPS);
            skipped when None.
        decision_features: optional feature extractor of the decision model (OCTET's feature
            matching keeps the decision-relevant content of the image).
    """
    unknown = set(params) - set(LAYOUT_KEYS)
    if unknown:
        raise ValueError(f"params: unknown layout keys {sorted(unknown)}; use {LAYOUT_KEYS}")
    lr_mult = {"sizes": 2.0} if lr_mult is None else lr_mult
    device = model.device
    start = time.perf_counter()
    outs = []
    for b0 in range(0, len(images), batch_size):
        target = images[b0:b0 + batch_size].to(device)
        n = len(target)
        with torch.no_grad():
            if encoder is not None:
                init = encoder.invert(target)
            elif init_layout is not None:
                init = {k: v[b0:b0 + n].to(device) for k, v in init_layout.items()}
            else:
                init = model.sample_layout(n, truncation=1.0)
            init = {k: v.detach() for k, v in init.items()}
            initial = _render(model, init, seed + b0).clamp(-1, 1)
            target_feats = decision_features(target) if decision_features else None
        layout = {k: v.clone().requires_grad_(k in params) for k, v in init.items()}
        groups = [{"params": [layout[k]], "lr": lr * lr_mult.get(k, 1.0)} for k in params]
        opt = torch.optim.Adam(groups, lr=lr)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=lr_step, gamma=lr_gamma)
        with torch.enable_grad():
            for _ in range(steps):
                img = _render(model, layout, seed + b0)
                loss = lambda_mse * _per_image_mse(img, target).sum()
                if perceptual is not None and lambda_perceptual:
                    loss = loss + lambda_perceptual * n * perceptual(img, target)
                if lambda_prox:
                    prox = sum(_per_image_mse(layout[k], init[k]).sum() for k in params)
                    loss = loss + lambda_prox * prox
                if target_feats is not None and lambda_decision:
                    loss = loss + lambda_decision * n * F.mse_loss(decision_features(img),
                                                                   target_feats)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        with torch.no_grad():
            final = {k: v.detach() for k, v in layout.items()}
            recon = _render(model, final, seed + b0).clamp(-1, 1)
            losses = {"mse": _per_image_mse(recon, target)}
        outs.append((final, recon, initial, init, losses))
    return InversionResult(
        layout=concat([o[0] for o in outs]), reconstruction=torch.cat([o[1] for o in outs]),
        initial=torch.cat([o[2] for o in outs]), initial_layout=concat([o[3] for o in outs]),
        losses={k: torch.cat([o[4][k] for o in outs]) for k in outs[0][4]},
        seconds=time.perf_counter() - start)


@torch.no_grad()
def inversion_metrics(images: torch.Tensor, reconstructions: torch.Tensor,
                      lpips: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                      ) -> dict[str, float]:
    """Reconstruction quality: MSE (images in [-1, 1]) and, given an LPIPS callable, LPIPS."""
    out = {"mse": float(_per_image_mse(reconstructions, images.to(reconstructions)).mean())}
    if lpips is not None:
        out["lpips"] = float(lpips(reconstructions, images.to(reconstructions)).mean())
    return out
