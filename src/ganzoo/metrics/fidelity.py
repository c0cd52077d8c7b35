"""FID, KID, Inception Score, precision/recall and MiFID on feature-extractor features.

The statistics are torch-fidelity's own functions (``fid_features_to_statistics``,
``kid_features_to_metric``, ``isc_features_to_metric``, ``prc_features_to_metric``) with
torch-fidelity's defaults, so for the same features ganzoo and
``torch_fidelity.calculate_metrics`` give the same numbers. The one exception is FID's: its
mean and covariance are computed in float64 from the features as given (torch-fidelity keeps
the mean in the features' float32), and ``fid_statistics_to_metric``'s general eigenproblem is
replaced by the SVD of a product of covariance factors. The value is torch-fidelity's within
its own rounding and exact to about 1e-12 against a 50-digit reference (see
:func:`frechet_distance_to_real`; docs/evaluation.md, "FID", for accuracy and speed). MiFID
is not in torch-fidelity and is computed here, on the same features as FID.

- FID: Heusel et al., NeurIPS 2017 (arXiv 1706.08500).
- KID: Bińkowski et al., ICLR 2018 (arXiv 1801.01401); cubic polynomial kernel, 100 subsets of
  1000. With fewer samples the subset size shrinks to ``min(n_fake, n_real)``; the protocol
  records the size used. When that size is both sides' whole set (``n_fake == n_real <=
  subset_size``), every subset is the whole set and ``kid_std`` is rounding, not a spread:
  it is :class:`NotAvailable` (docs/evaluation.md, "KID").
- IS: Salimans et al., NeurIPS 2016 (arXiv 1606.03498); 10 splits, torch-fidelity's
  ``logits_unbiased`` layer.
- Precision/recall: Kynkäänniemi et al., NeurIPS 2019 (arXiv 1904.06991); k = 3.
  Departure: computed on the evaluation's extractor (Inception pool3 by default), not VGG-16
  fc2 as in the paper and torch-fidelity's default; pass ``feature_extractor="vgg16"`` for the
  paper's features (the values are then tagged ``precision@vgg16``).
- MiFID: the Kaggle "Generative Dog Images" / "I'm Something of a Painter Myself" metric
  (Bai et al., KDD 2021, arXiv 2106.03062): ``FID / (d_thr + 1e-14)`` with ``d`` the mean over
  generated images of the minimum cosine distance ``1 - |cos|`` to any training image, and
  ``d_thr = d`` if ``d < eps`` (0.1) else 1. All-zero feature rows are dropped as in Kaggle's
  scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..registry import register_metric
from .base import FeatureMetric, RealFeatures
from .gaussian import as_float64, mean_and_factor, psd_sqrt, trace_sqrt_product

__all__ = ["FID", "KID", "InceptionScore", "PrecisionRecall", "MiFID", "frechet_distance",
           "frechet_distance_to_real", "frechet_distance_from_factors", "psd_sqrt",
           "memorization_distance", "NotAvailable"]


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma2=None, device=None) -> float:
    """Fréchet distance between two Gaussians, ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr
    (S1 S2)^½`` (Dowson & Landau 1982), the value of torch-fidelity's
    ``fid_statistics_to_metric`` from statistics alone.

    torch-fidelity takes ``sum sqrt(eigvals(S1 @ S2))``: a general, non-symmetric 2048 x 2048
    eigenproblem, 20-40 s on 2 CPU cores. With factors ``S1 = L1 L1^T``, ``S2 = L2 L2^T`` the
    trace is the sum of the singular values of ``L1^T L2``
    (:func:`~ganzoo.metrics.gaussian.trace_sqrt_product`); here the factors are the symmetric
    square roots (one ``eigh`` each), or ``sqrt_sigma2``: any ``L2`` with ``L2 L2^T = S2``.
    :func:`frechet_distance_to_real` is more exact (it factors the features, not their
    covariance); use this one when only statistics exist. Float64 (on ``device``
    if given; CUDA runs ``torch.linalg`` there).
    """
    l2 = psd_sqrt(sigma2, device) if sqrt_sigma2 is None else as_float64(sqrt_sigma2, device)
    return frechet_distance_from_factors(as_float64(mu1, device), psd_sqrt(sigma1, device),
                                         as_float64(mu2, device), l2)


def frechet_distance_to_real(fake: torch.Tensor, real: RealFeatures, device=None) -> float:
    """:func:`frechet_distance` between the Gaussian of ``fake`` features (N, D) and the
    reference's, from covariance factors: neither covariance is formed.

    Both sides are factored from their features in float64 by a QR decomposition of the
    centred rows (:func:`~ganzoo.metrics.gaussian.mean_and_factor`; the reference's factor is
    computed once and cached with its statistics), and ``tr (S1 S2)^½`` is the sum of the
    singular values of ``L1^T L2``, a ``min(N, D) x min(M, D)`` matrix: exact to about 1e-12
    relative on ill-conditioned and large-offset features, where an eigenproblem of a squared
    matrix is not (docs/evaluation.md, "FID").
    """
    return frechet_distance_from_factors(*mean_and_factor(fake, device),
                                         *real.mean_and_factor(device))


def frechet_distance_from_factors(mu1, l1, mu2, l2) -> float:
    """The Fréchet distance from float64 means and covariance factors ``L L^T = S``:
    ``tr S = |L|_F^2``, and ``tr (S1 S2)^½`` by
    :func:`~ganzoo.metrics.gaussian.trace_sqrt_product`."""
    diff = mu1 - mu2
    return float(diff @ diff + (l1 * l1).sum() + (l2 * l2).sum()
                 - 2 * trace_sqrt_product(l1, l2))


@dataclass(frozen=True)
class NotAvailable:
    """A value a metric cannot give, and why: :func:`ganzoo.evaluate` writes it as ``None``
    and the reason into the protocol's ``not_available``."""

    reason: str


def _linalg_device() -> torch.device | None:
    """Where the Fréchet distance's float64 linear algebra runs: the GPU when there is one."""
    return torch.device("cuda") if torch.cuda.is_available() else None


def _require_real(metric: str, real: RealFeatures | None) -> RealFeatures:
    if real is None:
        raise ValueError(f"metric '{metric}' compares against reference images; "
                         f"pass reference=...")
    return real


class FID(FeatureMetric):
    name = "fid"

    def compute(self, fake, real):
        real = _require_real(self.name, real)
        return {"fid": frechet_distance_to_real(fake, real, device=_linalg_device())}


class KID(FeatureMetric):
    name = "kid"
    keys = ("kid_mean", "kid_std")

    def __init__(self, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
                 gamma: float | None = None, coef0: float = 1.0, seed: int = 2020):
        if subsets < 1 or subset_size < 2:
            raise ValueError("KID.subsets must be >= 1 and KID.subset_size >= 2")
        self.subsets, self.subset_size = subsets, subset_size
        self.degree, self.gamma, self.coef0, self.seed = degree, gamma, coef0, seed
        self.used_subset_size = subset_size

    def kwargs(self, subset_size: int) -> dict[str, Any]:
        return dict(kid_subsets=self.subsets, kid_subset_size=subset_size, kid_kernel="poly",
                    kid_kernel_poly_degree=self.degree, kid_kernel_poly_gamma=self.gamma,
                    kid_kernel_poly_coef0=self.coef0, rng_seed=self.seed, verbose=False)

    def compute(self, fake, real):
        from torch_fidelity.metric_kid import (KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD,
                                               kid_features_to_metric)

        real = _require_real(self.name, real)
        self.used_subset_size = min(self.subset_size, len(fake), len(real))
        out = kid_features_to_metric(fake, real.features, **self.kwargs(self.used_subset_size))
        no_spread = self._no_spread(len(fake), len(real))
        return {"kid_mean": out[KEY_METRIC_KID_MEAN],
                "kid_std": out[KEY_METRIC_KID_STD] if no_spread is None else no_spread}

    def _no_spread(self, n_fake: int, n_real: int) -> NotAvailable | None:
        """Why the std over subsets is no spread: torch-fidelity draws each subset without
        replacement, so at ``subset_size >= n_fake == n_real`` every subset is the whole set
        and the subsets' MMDs differ by summation order only."""
        if self.used_subset_size == n_fake == n_real:
            return NotAvailable(f"every KID subset is the whole set (N = {n_fake} generated "
                                f"and reference <= subset_size {self.subset_size}): the std "
                                f"over subsets is rounding, not a spread")
        if self.subsets == 1:
            return NotAvailable("one KID subset (subsets=1): no spread over subsets")
        return None

    def config(self):
        return {"subsets": self.subsets, "subset_size": self.subset_size,
                "subset_size_used": self.used_subset_size, "kernel": "poly",
                "degree": self.degree, "gamma": self.gamma, "coef0": self.coef0,
                "seed": self.seed}


class InceptionScore(FeatureMetric):
    name = "isc"
    keys = ("isc_mean", "isc_std")
    layer = "isc"
    uses_reference = False

    def __init__(self, splits: int = 10, shuffle: bool = True, seed: int = 2020):
        self.splits, self.shuffle, self.seed = splits, shuffle, seed

    def compute(self, fake, real=None):
        from torch_fidelity.metric_isc import (KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD,
                                               isc_features_to_metric)

        if len(fake) < self.splits:
            raise ValueError(f"Inception Score with {self.splits} splits needs at least "
                             f"{self.splits} samples, got {len(fake)}")
        out = isc_features_to_metric(fake, self.splits, self.shuffle, self.seed)
        return {"isc_mean": out[KEY_METRIC_ISC_MEAN], "isc_std": out[KEY_METRIC_ISC_STD]}

    def config(self):
        return {"splits": self.splits, "shuffle": self.shuffle, "seed": self.seed}


PRC_FULL_MAX = 10_000  # rows; see PrecisionRecall.compute and docs/evaluation.md


class PrecisionRecall(FeatureMetric):
    name = "prc"
    keys = ("precision", "recall", "f_score")

    def __init__(self, neighborhood: int = 3, batch_size: int = 10000):
        self.neighborhood, self.batch_size = neighborhood, batch_size

    def compute(self, fake, real):
        from torch_fidelity.metric_prc import (KEY_METRIC_F_SCORE, KEY_METRIC_PRECISION,
                                               KEY_METRIC_RECALL, prc_features_to_metric)

        real = _require_real(self.name, real)
        # torch-fidelity >= 0.4 reads (generated, real). Its full path keeps N x N distance
        # matrices (float32: 10 GB each at N = 50,000); above PRC_FULL_MAX rows it takes the
        # blockwise path, which gives the same values in bounded memory.
        out = prc_features_to_metric(fake, real.features, prc_neighborhood=self.neighborhood,
                                     prc_batch_size=self.batch_size,
                                     save_cpu_ram=max(len(fake), len(real)) > PRC_FULL_MAX,
                                     verbose=False)
        return {"precision": out[KEY_METRIC_PRECISION], "recall": out[KEY_METRIC_RECALL],
                "f_score": out[KEY_METRIC_F_SCORE]}

    def config(self):
        return {"neighborhood": self.neighborhood}


def memorization_distance(fake: torch.Tensor, real: torch.Tensor, chunk: int = 4096) -> float:
    """Mean over generated rows of the minimum cosine distance ``1 - |cos|`` to any real row."""
    fake = fake.double()
    real = real.double()
    fake = fake[fake.sum(dim=1) != 0]
    real = real[real.sum(dim=1) != 0]
    if len(fake) == 0 or len(real) == 0:
        raise ValueError("MiFID: every feature row is zero")
    fake = fake / fake.norm(dim=1, keepdim=True)
    real = real / real.norm(dim=1, keepdim=True)
    mins = torch.cat([(1.0 - (f @ real.T).abs()).min(dim=1).values for f in fake.split(chunk)])
    return float(mins.mean())


class MiFID(FeatureMetric):
    name = "mifid"
    keys = ("mifid", "mifid_distance")

    def __init__(self, eps: float = 0.1, fid_epsilon: float = 1e-14):
        if eps <= 0:
            raise ValueError(f"MiFID.eps must be positive, got {eps}")
        self.eps, self.fid_epsilon = eps, fid_epsilon

    def compute(self, fake, real):
        real = _require_real(self.name, real)
        fid = frechet_distance_to_real(fake, real, device=_linalg_device())
        d = memorization_distance(fake, real.features)
        d_thr = d if d < self.eps else 1.0
        return {"mifid": fid / (d_thr + self.fid_epsilon), "mifid_distance": d}

    def config(self):
        return {"eps": self.eps, "fid_epsilon": self.fid_epsilon,
                "distance": "mean_i min_j (1 - |cos(fake_i, real_j)|)"}


@register_metric
def fid(**kwargs) -> FID:
    """Fréchet Inception Distance (torch-fidelity statistics)."""
    return FID(**kwargs)


@register_metric
def kid(**kwargs) -> KID:
    """Kernel Inception Distance, mean and std over subsets (torch-fidelity)."""
    return KID(**kwargs)


@register_metric
def isc(**kwargs) -> InceptionScore:
    """Inception Score of the generated images alone (torch-fidelity)."""
    return InceptionScore(**kwargs)


@register_metric
def prc(**kwargs) -> PrecisionRecall:
    """Improved precision, recall and F-score with k-NN manifolds (torch-fidelity)."""
    return PrecisionRecall(**kwargs)


@register_metric
def mifid(**kwargs) -> MiFID:
    """Memorization-informed FID (Kaggle definition, cosine-distance threshold 0.1)."""
    return MiFID(**kwargs)
