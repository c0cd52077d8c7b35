"""Evaluation hooks for BlobGAN: LPIPS for inversion quality, and FID (deprecated wrappers).

- :func:`load_lpips`: LPIPS (:mod:`ganzoo.losses.lpips`) when its weights are present (a local
  file, ``$GANZOO_LPIPS_WEIGHTS`` or the cache), else None, so inversion/counterfactual metrics
  fall back to MSE/L1 only.
- :func:`fid` and :func:`setup_fid` are ``ganzoo.evaluate(model, reference, metrics=["fid"],
  ...)``, which draws the reference at the model's ``image_size`` (height *and* width) and caches
  its statistics on disk (the first call computes them). They warn: a model module does not
  call the metrics, which sit above the models; call ``ganzoo.evaluate`` instead.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import torch

from ...losses.lpips import LPIPS

__all__ = ["fid", "setup_fid", "load_lpips"]


def fid(model, reference: str = "shapes_scenes", n: int = 50_000, *, n_real: int | None = None,
        resizer: str = "torch", dataset_kwargs: dict | None = None,
        **kwargs: Any) -> dict[str, Any]:
    """Deprecated: ``ganzoo.evaluate(model, reference, metrics=["fid"], ...)``, which returns
    ``{"metrics", "protocol"}``."""
    warnings.warn("ganzoo.models.blobgan.evaluation.fid is ganzoo.evaluate(model, reference, "
                  "metrics=['fid'], ...); it will be removed", DeprecationWarning, stacklevel=2)
    # Looked up at call time, by name: ganzoo.metrics sits above the models and is not imported.
    evaluate = importlib.import_module("ganzoo.metrics").evaluate
    return evaluate(model, reference, metrics=["fid"], n=n, n_real=n_real, resizer=resizer,
                    dataset_kwargs=dataset_kwargs, **kwargs)


def setup_fid(model, reference: str = "shapes_scenes", n_real: int = 50_000,
              **kwargs: Any) -> dict[str, Any]:
    """Deprecated: compute and cache the reference statistics (scores one generated batch to do
    so); ``ganzoo.evaluate`` does this on its first call."""
    return fid(model, reference, n=kwargs.pop("batch_size", 50), n_real=n_real, **kwargs)


def load_lpips(net: str = "vgg", weights: str | None = None,
               device: torch.device | str = "cpu"):
    """LPIPS (``ganzoo.losses.lpips.LPIPS``) if its weights can be had, else None."""
    try:
        return LPIPS(net, weights=weights).to(device).eval().requires_grad_(False)
    except (OSError, RuntimeError, ValueError):
        return None
