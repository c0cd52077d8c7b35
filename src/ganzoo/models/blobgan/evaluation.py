"""Evaluation hooks for BlobGAN: FID through ``ganzoo.evaluate``, inversion quality, LPIPS.

- :func:`fid`: FID of a BlobGAN (or of its encoder's reconstructions) against a dataset, with
  the dataset drawn at the model's ``image_size`` (height *and* width). Reference statistics are
  cached on disk by ``ganzoo.evaluate`` (the first call computes them; :func:`setup_fid` does
  only that; docs/workflows/blobgan_layouts.md, "2. FID statistics once").
  ``resizer="pil_bicubic"`` is the clean-fid-style resizing.
- :func:`load_lpips`: LPIPS when its weights are present (a local file, ``$GANZOO_LPIPS_WEIGHTS``
  or the cache), else None, so inversion/counterfactual metrics fall back to MSE/L1 only.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["fid", "setup_fid", "load_lpips"]


def fid(model, reference: str = "shapes_scenes", n: int = 50_000, *, n_real: int | None = None,
        resizer: str = "torch", dataset_kwargs: dict | None = None,
        **kwargs: Any) -> dict[str, Any]:
    """``ganzoo.evaluate(model, reference, metrics=["fid"], ...)``: the reference dataset is
    drawn at the model's ``image_size`` (aspect ratio included), as for every model. Returns
    evaluate's ``{"metrics", "protocol"}``."""
    import ganzoo

    return ganzoo.evaluate(model, reference, metrics=["fid"], n=n, n_real=n_real,
                           resizer=resizer, dataset_kwargs=dataset_kwargs, **kwargs)


def setup_fid(model, reference: str = "shapes_scenes", n_real: int = 50_000,
              **kwargs: Any) -> dict[str, Any]:
    """Compute and cache the reference statistics (scores one generated batch to do so)."""
    return fid(model, reference, n=kwargs.pop("batch_size", 50), n_real=n_real, **kwargs)


def load_lpips(net: str = "vgg", weights: str | None = None,
               device: torch.device | str = "cpu"):
    """LPIPS (``ganzoo.metrics.lpips.LPIPS``) if its weights can be had, else None."""
    from ganzoo.metrics.lpips import LPIPS

    try:
        return LPIPS(net, weights=weights).to(device).eval().requires_grad_(False)
    except (OSError, RuntimeError, ValueError):
        return None
