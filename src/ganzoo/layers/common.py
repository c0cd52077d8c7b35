"""The small pieces every family builds with: one norm factory, one spectral-norm wrapper, one
weight initialiser, and the resolution checks.

Each exists once so that a choice made for one family (say, whether InstanceNorm is affine) is
visible where it is made and cannot differ by accident between families.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

__all__ = ["Norm", "make_norm", "spectral_norm", "init_weights", "is_pow2", "check_resolution"]

Norm = Literal["batch", "group", "layer", "instance", "none"]
NORMS = ("batch", "group", "layer", "instance", "none")


def make_norm(kind: Norm, channels: int, *, bn_momentum: float = 0.1, groups: int = 32,
              instance_affine: bool = False) -> nn.Module:
    """A 2-D normalisation layer by name.

    - ``"batch"``: BatchNorm2d (PyTorch's ``momentum`` convention: the weight of the new
      batch);
    - ``"group"``: GroupNorm with gcd(groups, C) groups;
    - ``"layer"``: LayerNorm over (C, H, W) with a per-channel affine, i.e. GroupNorm with one
      group, as in the WGAN-GP authors' code;
    - ``"instance"``: InstanceNorm2d without running statistics; ``instance_affine`` adds a
      learned per-channel scale and shift (off, as in PyTorch and the CUT/pix2pix reference);
    - ``"none"``: the identity.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels, momentum=bn_momentum)
    if kind == "group":
        return nn.GroupNorm(math.gcd(groups, channels), channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=instance_affine)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


def spectral_norm(layer: nn.Module, on: bool = True) -> nn.Module:
    """``torch.nn.utils.parametrizations.spectral_norm`` (when ``on``).

    On the ``meta`` device (``ganzoo.model_info``, presets built without memory) it skips the
    15 power iterations the constructor runs, which are slow through meta decompositions and
    meaningless there; the parametrization class, buffers and state-dict keys are the same.
    If PyTorch's private class moves, the public path is taken.
    """
    if not on:
        return layer
    if not layer.weight.is_meta:
        return nn.utils.parametrizations.spectral_norm(layer)
    try:
        from torch.nn.utils import parametrize
        from torch.nn.utils.parametrizations import _SpectralNorm

        weight = layer.weight
        dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0
        sn = _SpectralNorm.__new__(_SpectralNorm)
        nn.Module.__init__(sn)
        sn.dim, sn.eps, sn.n_power_iterations = dim, 1e-12, 1
        sn.register_buffer("_u", torch.empty(weight.shape[dim], device="meta"))
        sn.register_buffer("_v", torch.empty(weight.numel() // weight.shape[dim], device="meta"))
        # unsafe: skip the registration check, a forward that would run meta decompositions
        parametrize.register_parametrization(layer, "weight", sn, unsafe=True)
        layer.parametrizations.weight.unsafe = False
        return layer
    except Exception:  # noqa: BLE001 - private API moved: take the slow, public path
        return nn.utils.parametrizations.spectral_norm(layer)


def _raw_weight(m: nn.Module) -> torch.Tensor:
    """The trained tensor behind ``m.weight`` (with spectral norm: the unnormalised one)."""
    if nn.utils.parametrize.is_parametrized(m, "weight"):
        return m.parametrizations.weight.original
    return m.weight


_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.InstanceNorm2d)


def init_weights(module: nn.Module, scheme: Literal["normal", "xavier"], scale: float = 0.02, *,
                 linear: bool = True, norms: bool = True,
                 extra: tuple[type[nn.Module], ...] = ()) -> None:
    """Initialise every conv (and, with ``linear``, linear) layer of ``module`` in place.

    ``"normal"``: weights ~ N(0, scale) (the DCGAN paper; GeneGAN's and pix2pix's
    ``init_type='normal'``); ``"xavier"``: Xavier-normal with gain ``scale`` (CUT's default
    ``init_type='xavier'``). Biases are zeroed. With ``norms``, affine norm scales ~ N(1,
    scale) and their shifts zeroed, as both references do. ``extra``: further module types
    whose ``weight`` is drawn like a conv's. Spectral-normalised layers get their raw weight
    initialised. Modules on the ``meta`` device are skipped (no values to set).
    """
    if scheme not in ("normal", "xavier"):
        raise ValueError(f"scheme must be 'normal' or 'xavier', got {scheme!r}")
    weighted = (nn.Conv2d, nn.ConvTranspose2d) + ((nn.Linear,) if linear else ()) + extra
    for m in module.modules():
        if any(p.is_meta for p in m.parameters(recurse=False)):
            continue
        if isinstance(m, weighted):
            w = _raw_weight(m)
            if scheme == "xavier":
                nn.init.xavier_normal_(w, gain=scale)
            else:
                nn.init.normal_(w, 0.0, scale)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif norms and isinstance(m, _NORM_LAYERS) and m.affine:
            nn.init.normal_(m.weight, 1.0, scale)
            nn.init.zeros_(m.bias)


def is_pow2(n: int) -> bool:
    return isinstance(n, int) and n > 0 and (n & (n - 1)) == 0


def check_resolution(resolution: int, attention_resolutions: tuple[int, ...] = (),
                     field: str = "resolution") -> int:
    """Raise ValueError unless ``resolution`` is a power of two >= 16; return its log2.
    ``attention_resolutions`` must be powers of two between 8 and ``resolution / 2``."""
    if isinstance(resolution, bool) or not is_pow2(resolution) or resolution < 16:
        raise ValueError(f"{field} must be a power of two >= 16, got {resolution!r}")
    for r in attention_resolutions:
        if r < 8 or r > resolution // 2 or not is_pow2(r):
            raise ValueError(f"attention_resolutions entries must be powers of two between 8 "
                             f"and resolution/2 = {resolution // 2}, got {r}")
    return int(math.log2(resolution))
