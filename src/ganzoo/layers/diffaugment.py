"""DiffAugment: differentiable augmentation for data-efficient GAN training.

Zhao, Liu, Lin, Zhu & Han, "Differentiable Augmentation for Data-Efficient GAN Training",
NeurIPS 2020 (arXiv:2006.10738); reference repo mit-han-lab/data-efficient-gans.

The same policy is applied to every image the discriminator sees, real and fake, in both the
D and the G step, and every op is differentiable with respect to the images, so the generator
is trained through the augmentation. Ops (parameters drawn per sample, as in the reference):

- ``color``: brightness ``+ U(-0.5, 0.5)``, saturation ``× U(0, 2)`` around the per-pixel
  channel mean, contrast ``× U(0.5, 1.5)`` around the per-image mean;
- ``translation``: integer shifts up to ``1/8`` of the side in x and y, zero fill;
- ``cutout``: one zeroed square of half the side, centred anywhere in the image.

API::

    y = diff_augment(x, "color,translation,cutout", generator=g)      # one batch
    ya, yb = diff_augment((a, b), "translation", generator=g)          # SAME ops on both
    aug = DiffAugment("color,translation,cutout"); y = aug(x)          # as a module

Random parameters are drawn with ``generator`` on its device (on ``x``'s device when None) and
then moved, so a seeded CPU generator gives the same augmentation on every device. Images are
assumed in ``[-1, 1]`` (the ganzoo batch convention); the colour ops act on that range as the
reference does. An empty policy is the identity.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["diff_augment", "DiffAugment", "parse_policy", "POLICIES"]

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(policy: str | Sequence[str], field: str = "diffaugment") -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; unknown ops raise ValueError
    naming ``field`` (a config's ``diffaugment`` field: every family validates it here)."""
    ops = [p.strip() for p in policy.split(",")] if isinstance(policy, str) else list(policy)
    ops = tuple(p for p in ops if p)
    bad = [p for p in ops if p not in POLICIES]
    if bad:
        raise ValueError(f"{field}: unknown DiffAugment op(s) {bad}; choose from "
                         f"{', '.join(POLICIES)} ('' disables it)")
    return ops


def _rand(shape, generator, device) -> torch.Tensor:
    src = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=src).to(device)


def _randint(low, high, shape, generator, device) -> torch.Tensor:
    src = generator.device if generator is not None else device
    return torch.randint(low, high, shape, generator=generator, device=src).to(device)


def _color(xs, generator):
    x0 = xs[0]
    n, dev = x0.shape[0], x0.device
    brightness = _rand((n, 1, 1, 1), generator, dev).to(x0.dtype) - 0.5
    saturation = _rand((n, 1, 1, 1), generator, dev).to(x0.dtype) * 2.0
    contrast = _rand((n, 1, 1, 1), generator, dev).to(x0.dtype) + 0.5
    out = []
    for x in xs:
        x = x + brightness
        mean_c = x.mean(dim=1, keepdim=True)
        x = (x - mean_c) * saturation + mean_c
        mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean_all) * contrast + mean_all
        out.append(x)
    return out


def _shift_index(size: int, shift: torch.Tensor) -> torch.Tensor:
    """Per-sample gather indices into a 1-pixel zero-padded axis: out[i] = in[i + shift]."""
    idx = torch.arange(size, device=shift.device).unsqueeze(0) + shift.unsqueeze(1)
    return idx.clamp(-1, size) + 1  # -1 and `size` land on the zero padding


def _translation(xs, generator):
    x0 = xs[0]
    n, _, h, w = x0.shape
    dev = x0.device
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    ty = _randint(-sh, sh + 1, (n,), generator, dev)
    tx = _randint(-sw, sw + 1, (n,), generator, dev)
    iy, ix = _shift_index(h, ty), _shift_index(w, tx)  # (N, H), (N, W)
    out = []
    for x in xs:
        c = x.shape[1]
        xp = F.pad(x, (1, 1, 1, 1))
        rows = torch.gather(xp, 2, iy.view(n, 1, h, 1).expand(n, c, h, w + 2))
        out.append(torch.gather(rows, 3, ix.view(n, 1, 1, w).expand(n, c, h, w)))
    return out


def _cutout(xs, generator):
    x0 = xs[0]
    n, _, h, w = x0.shape
    dev = x0.device
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    cy = _randint(0, h + (1 - ch % 2), (n,), generator, dev)
    cx = _randint(0, w + (1 - cw % 2), (n,), generator, dev)
    y0, x0_ = (cy - ch // 2).view(n, 1, 1), (cx - cw // 2).view(n, 1, 1)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs_ = torch.arange(w, device=dev).view(1, 1, w)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs_ >= x0_) & (xs_ < x0_ + cw)
    mask = (~inside).unsqueeze(1).to(x0.dtype)  # (N, 1, H, W)
    return [x * mask for x in xs]


_OPS = {"color": _color, "translation": _translation, "cutout": _cutout}


def diff_augment(x: torch.Tensor | Sequence[torch.Tensor],
                 policy: str | Sequence[str] = "color,translation,cutout",
                 generator: torch.Generator | None = None):
    """Apply the DiffAugment ``policy`` to ``x`` (N, C, H, W).

    Pass a tuple/list of same-shaped batches to apply the very same sampled transform to each
    (returns a tuple); pass one tensor to get one tensor. Real and fake batches in GAN
    training normally get independent draws (two calls), as in the reference.
    """
    single = isinstance(x, torch.Tensor)
    xs = [x] if single else list(x)
    if not xs:
        raise ValueError("diff_augment needs at least one tensor")
    shape = xs[0].shape
    if len(shape) != 4 or any(t.shape != shape for t in xs):
        raise ValueError(f"diff_augment needs (N, C, H, W) tensors of one shape, got "
                         f"{[tuple(t.shape) for t in xs]}")
    for op in parse_policy(policy):
        xs = _OPS[op](xs, generator)
    return xs[0] if single else tuple(xs)


class DiffAugment(nn.Module):
    """``diff_augment`` as a module; the identity when ``policy`` is empty."""

    def __init__(self, policy: str = "color,translation,cutout"):
        super().__init__()
        self.ops = parse_policy(policy)

    @property
    def policy(self) -> str:
        return ",".join(self.ops)

    def forward(self, x, generator: torch.Generator | None = None):
        if not self.ops:
            return x
        return diff_augment(x, self.ops, generator=generator)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"
