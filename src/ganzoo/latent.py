"""Latent-space tools for any generator that maps a latent vector to an image.

Protocol (:class:`LatentGenerator`): a model exposes

- ``latent_dim: int``;
- ``generate_from_latent(z) -> images``: ``z`` of shape ``(N, latent_dim)`` to images in
  ``[-1, 1]``, under ``torch.no_grad()``, with the inference (EMA) network;
- optionally ``sample_latents(n, generator) -> z``: the prior (standard normal when absent).

Every GAN family in ganzoo (``dcgan``, ``wgan_gp``...) implements it; a VAE implements it with
its decoder. Example::

    import ganzoo, torch
    from ganzoo.latent import interpolation_grid, save_grid
    model = ganzoo.build("test_dcgan")
    grid = interpolation_grid(model, rows=4, steps=8, method="slerp",
                              generator=torch.Generator().manual_seed(0))
    save_grid(grid, "interp.png", nrow=8)

``slerp`` follows the great circle between two latents (White 2016, "Sampling Generative
Networks", arXiv:1609.04468), which keeps a Gaussian latent's norm typical along the path;
``lerp`` is the straight line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import torch

from ._io import save_grid as _write_grid

__all__ = ["LatentGenerator", "lerp", "slerp", "interpolate", "sample_latents",
           "interpolation_grid", "save_grid"]


@runtime_checkable
class LatentGenerator(Protocol):
    latent_dim: int

    def generate_from_latent(self, z: torch.Tensor) -> torch.Tensor: ...


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Linear interpolation ``(1 - t) z0 + t z1``; ``t`` broadcasts against the last dim."""
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    return z0 + t * (z1 - z0)


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor | float,
          eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dimension; falls back to ``lerp`` where the two
    vectors are (nearly) parallel."""
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    n0 = z0 / z0.norm(dim=-1, keepdim=True).clamp_min(eps)
    n1 = z1 / z1.norm(dim=-1, keepdim=True).clamp_min(eps)
    cos = (n0 * n1).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    out = (torch.sin((1 - t) * omega) / so) * z0 + (torch.sin(t * omega) / so) * z1
    return torch.where(so.abs() < 1e-4, lerp(z0, z1, t), out)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int,
                method: Literal["lerp", "slerp"] = "slerp") -> torch.Tensor:
    """``steps`` points from ``z0`` to ``z1`` inclusive: ``(steps, *z0.shape)``."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if method not in ("lerp", "slerp"):
        raise ValueError(f"method must be 'lerp' or 'slerp', got {method!r}")
    fn = slerp if method == "slerp" else lerp
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)
    t = t.view(steps, *([1] * z0.dim()))
    return fn(z0.unsqueeze(0), z1.unsqueeze(0), t)


def sample_latents(model, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` latents from the model's prior (its ``sample_latents`` or a standard normal drawn
    on the generator's device, CPU by default)."""
    if hasattr(model, "sample_latents"):
        return model.sample_latents(n, generator)
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(n, model.latent_dim, generator=generator, device=device)


@torch.no_grad()
def interpolation_grid(model: LatentGenerator, rows: int = 4, steps: int = 8,
                       method: Literal["lerp", "slerp"] = "slerp",
                       generator: torch.Generator | None = None,
                       endpoints: tuple[torch.Tensor, torch.Tensor] | None = None,
                       batch_size: int = 64) -> torch.Tensor:
    """Images of ``rows`` interpolations of ``steps`` points each, row-major:
    ``(rows * steps, C, H, W)`` in [-1, 1] (``save_grid(..., nrow=steps)`` lays them out).

    Endpoints are drawn from the prior with ``generator`` unless given as ``(z0, z1)``, each
    ``(rows, latent_dim)``.
    """
    if not isinstance(model, LatentGenerator):
        raise TypeError(f"{type(model).__name__} does not expose latent_dim and "
                        f"generate_from_latent(z); see ganzoo.latent.LatentGenerator")
    if endpoints is None:
        z = sample_latents(model, 2 * rows, generator)
        z0, z1 = z[:rows], z[rows:]
    else:
        z0, z1 = endpoints
        if z0.shape != z1.shape or z0.shape[0] != rows:
            raise ValueError(f"endpoints must both be (rows={rows}, latent_dim), got "
                             f"{tuple(z0.shape)} and {tuple(z1.shape)}")
    path = interpolate(z0, z1, steps, method)  # (steps, rows, D)
    zs = path.transpose(0, 1).reshape(rows * steps, -1)
    return torch.cat([model.generate_from_latent(chunk) for chunk in zs.split(batch_size)])


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, padding: int = 2) -> Path:
    """Save images in [-1, 1] as one PNG grid (ganzoo's one grid writer); returns the path."""
    _write_grid(images, path, nrow=nrow, padding=padding)
    return Path(path)
