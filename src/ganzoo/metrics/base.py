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

from .gaussian import as_float64, mean_and_factor

__all__ = ["Metric", "FeatureMetric", "SampleMetric", "PairedMetric", "RealFeatures"]


class RealFeatures:
    """Reference-side features and their FID statistics, computed on first use in float64 and
    cached with the features: the mean ``mu`` and ``sigma_factor``, an ``L`` with ``L L^T =
    sigma`` (:func:`~ganzoo.metrics.gaussian.mean_and_factor`; any factor works, e.g. the
    symmetric square root). ``sigma`` itself is formed only when asked for (:attr:`stats`)."""

    def __init__(self, features: torch.Tensor, mu=None, sigma=None, sigma_factor=None):
        self.features = features
        self._mu, self._sigma, self._factor = mu, sigma, sigma_factor

    def __len__(self) -> int:
        return len(self.features)

    def mean_and_factor(self, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, sigma_factor)`` in float64 on ``device``, computed from the features once."""
        if self._factor is None:
            mu, self._factor = mean_and_factor(self.features, device)
            if self._mu is None:
                self._mu = mu
        elif self._mu is None:
            self._mu = as_float64(self.features, device).mean(0)
        return as_float64(self._mu, device), as_float64(self._factor, device)

    @property
    def stats(self) -> dict:
        """``{"mu", "sigma"}``: torch-fidelity's FID statistics, as float64 numpy arrays."""
        mu, factor = (t.cpu() for t in self.mean_and_factor())
        if self._sigma is None:
            self._sigma = (factor @ factor.T).numpy()
        return {"mu": mu.numpy(), "sigma": self._sigma}

    @property
    def known_sigma_factor(self) -> torch.Tensor | None:
        """The factor if it was loaded or computed already, else None."""
        return self._factor


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
