"""The metric interface that :func:`ganzoo.evaluate` drives.

A metric declares what it consumes, and the evaluation loop feeds it exactly that:

- ``"features"``: feature-extractor features of the generated images and, when
  ``uses_reference``, of the reference images (FID, KID, IS, precision/recall, MiFID);
- ``"samples"``: the generated images themselves, up to ``max_samples`` (LPIPS diversity);
- ``"pairs"``: generated image *i* next to reference image *i*, one value per pair (PSNR,
  SSIM), averaged over pairs.

``compute`` returns ``{name: float}``. The evaluation adds the extractor tag
(``fd@dinov2-vit-s-14``) and the task-output suffix (``fid/bu``) itself.

What the evaluation needs from a model is :class:`EvaluatedModel`, stated here as a
``typing.Protocol`` (as torch-fidelity's ``generative_model_base.py`` states its own), so that
``ganzoo.metrics`` imports no model module; every ganzoo family satisfies it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, ClassVar, Iterator, Literal, Protocol

import torch

from .gaussian import as_float64, mean_and_factor

__all__ = ["Metric", "FeatureMetric", "SampleMetric", "PairedMetric", "RealFeatures",
           "EvaluatedModel", "is_evaluated_model"]


class EvaluatedModel(Protocol):
    """The model interface :func:`ganzoo.evaluate` drives (``ganzoo.models.base.GenerativeModel``
    implements it).

    ``generate(batch, n, generator)`` returns the scored outputs by name, each (n, C, H, W) in
    [-1, 1]; ``eval_references`` maps each output name to the dataset overrides that give its
    reference view; ``task`` is ``"sample"`` for a model that needs no input batch;
    ``image_size`` is (H, W), the size the reference is drawn at; ``inference()`` is the
    no-grad, eval-mode context generation runs in.
    """

    preset: str | None
    family: str
    task: str
    eval_references: dict[str, dict[str, Any]]

    @property
    def image_size(self) -> tuple[int, int]: ...

    def generate(self, batch: dict[str, torch.Tensor] | None, n: int,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]: ...

    def inference(self) -> AbstractContextManager: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def to(self, device) -> EvaluatedModel: ...


# Looked up on the class, so that no property (image_size) runs for the check.
_MODEL_ATTRIBUTES = ("generate", "inference", "eval_references", "task", "family", "image_size")


def is_evaluated_model(obj) -> bool:
    """``obj`` is a module with :class:`EvaluatedModel`'s members."""
    return isinstance(obj, torch.nn.Module) and all(
        hasattr(type(obj), name) for name in _MODEL_ATTRIBUTES)


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
    # The names ``compute`` returns, before the evaluation adds the extractor tag and the
    # output suffix (empty: just ``name``); read by :func:`ganzoo.metrics.evaluation.metric_keys`.
    keys: ClassVar[tuple[str, ...]] = ()
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
