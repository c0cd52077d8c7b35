"""The metric interface that :func:`ganzoo.evaluate` drives.

A metric declares what it consumes, and the evaluation loop feeds it exactly that:

- ``"features"``: feature-extractor features of the generated images and, when
  ``uses_reference``, of the reference images (FID, KID, IS, precision/recall, MiFID);
- ``"samples"``: the generated images themselves, up to ``max_samples`` (LPIPS diversity);
- ``"pairs"``: generated image *i* next to reference image *i*, one value per pair (PSNR,
  SSIM), averaged over pairs.

``compute`` returns ``{name: float}``. The evaluation adds the extractor tag
(``fd@dinov2-vit-s-14``) and the task-output suffix (``fid/bu``) itself.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

__all__ = ["Metric", "FeatureMetric", "SampleMetric", "PairedMetric", "RealFeatures"]


class RealFeatures:
    """Reference-side features with lazily computed FID statistics (``mu``, ``sigma``) and the
    symmetric square root of ``sigma`` that the Fréchet distance reuses (cached with them)."""

    def __init__(self, features: torch.Tensor, mu=None, sigma=None, sqrt_sigma=None):
        self.features = features
        self._stats = None if mu is None else {"mu": mu, "sigma": sigma}
        self._sqrt_sigma = sqrt_sigma

    def __len__(self) -> int:
        return len(self.features)

    @property
    def stats(self) -> dict:
        if self._stats is None:
            self._stats = fid_statistics(self.features)
        return self._stats

    @property
    def known_sqrt_sigma(self) -> torch.Tensor | None:
        """The square root of sigma if it was loaded or computed already, else None (for the
        cache, which stores it without computing it)."""
        return self._sqrt_sigma

    @property
    def sqrt_sigma(self) -> torch.Tensor:
        if self._sqrt_sigma is None:
            from .fidelity import psd_sqrt

            self._sqrt_sigma = psd_sqrt(self.stats["sigma"])
        return self._sqrt_sigma


def fid_statistics(features: torch.Tensor) -> dict:
    """Mean and covariance of features, by torch-fidelity's own function."""
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.float().cpu())


class Metric:
    name: ClassVar[str] = ""
    consumes: ClassVar[Literal["features", "samples", "pairs"]] = "features"
    uses_reference: ClassVar[bool] = True

    def config(self) -> dict[str, Any]:
        """The metric's settings, recorded in the protocol."""
        return {}


class FeatureMetric(Metric):
    consumes = "features"
    layer: ClassVar[str] = "fid"  # which of the extractor's layers: "fid" or "isc"

    def compute(self, fake: torch.Tensor, real: RealFeatures | None) -> dict[str, float]:
        raise NotImplementedError


class SampleMetric(Metric):
    consumes = "samples"
    uses_reference = False
    max_samples: int = 100

    def compute(self, images: torch.Tensor) -> dict[str, float]:
        """``images``: float in [-1, 1], (N, C, H, W)."""
        raise NotImplementedError


class PairedMetric(Metric):
    consumes = "pairs"

    def per_pair(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """One value per pair; images are float in [0, 1], (B, C, H, W)."""
        raise NotImplementedError

    def compute(self, values: torch.Tensor) -> dict[str, float]:
        return {self.name: float(values.double().mean())}
