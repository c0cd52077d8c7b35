"""FID, KID, Inception Score, precision/recall and MiFID on feature-extractor features.

The statistics are torch-fidelity's own functions (``fid_features_to_statistics``,
``kid_features_to_metric``, ``isc_features_to_metric``, ``prc_features_to_metric``) with
torch-fidelity's defaults, so for the same features ganzoo and
``torch_fidelity.calculate_metrics`` give the same numbers. The one exception is the last step of
FID, ``fid_statistics_to_metric``: the same value (to 1e-7 relative, tested against it) from
symmetric eigenproblems instead of a general one, several times faster (see
:func:`frechet_distance`). MiFID is not in torch-fidelity and is computed here, on the same
features as FID.

- FID: Heusel et al., NeurIPS 2017 (arXiv 1706.08500).
- KID: Bińkowski et al., ICLR 2018 (arXiv 1801.01401); cubic polynomial kernel, 100 subsets of
  1000. With fewer samples the subset size shrinks to ``min(n_fake, n_real)``; the protocol
  records the size used.
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

import math
from typing import Any

import torch

from ..registry import register_metric
from .base import FeatureMetric, RealFeatures

__all__ = ["FID", "KID", "InceptionScore", "PrecisionRecall", "MiFID", "frechet_distance",
           "frechet_distance_to_real", "psd_sqrt",
           "memorization_distance"]


def _f64(x, device=None) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=torch.float64)


def psd_sqrt(sigma, device=None) -> torch.Tensor:
    """The symmetric square root of a covariance (eigenvalues below 0, rounding, clamped)."""
    s = _f64(sigma, device)
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2, sqrt_sigma2=None, device=None) -> float:
    """Fréchet distance between two Gaussians, ``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr
    (S1 S2)^½`` (Dowson & Landau 1982), the value of torch-fidelity's
    ``fid_statistics_to_metric`` by symmetric eigenproblems only.

    torch-fidelity takes ``sum sqrt(eigvals(S1 @ S2))``: a general, non-symmetric 2048 x 2048
    eigenproblem, 20-40 s on 2 CPU cores. ``S1 S2`` is similar to ``S2^½ S1 S2^½`` (conjugate
    by ``S2^½``), which is symmetric positive semi-definite, so the same eigenvalues come from
    ``eigvalsh`` of that, with ``S2^½`` from one ``eigh``. ``sqrt_sigma2`` passes ``S2^½`` when
    it is cached with the reference statistics (:class:`RealFeatures.sqrt_sigma`); then one
    symmetric eigenvalue problem remains. Computed in float64 (on ``device`` if given; CUDA
    runs ``torch.linalg`` there). Negative eigenvalues from rounding count as 0, as the real
    part of torch-fidelity's complex square root does.
    """
    s1 = _f64(sigma1, device)
    r = psd_sqrt(sigma2, device) if sqrt_sigma2 is None else _f64(sqrt_sigma2, device)
    m = r @ s1 @ r
    tr_covmean = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    diff = _f64(mu1, device) - _f64(mu2, device)
    s2_trace = (r * r).sum()  # tr S2 = |S2^½|_F^2
    return float(diff @ diff + torch.trace(s1) + s2_trace - 2 * tr_covmean)


def frechet_distance_to_real(fake: torch.Tensor, real: RealFeatures, device=None) -> float:
    """:func:`frechet_distance` between the Gaussian of ``fake`` features (N, D) and the cached
    reference statistics, without forming the fake covariance.

    With ``X`` the centred fake features, ``S1 = X^T X / (N - 1)`` (``np.cov``, as
    torch-fidelity's ``fid_features_to_statistics``), so ``S2^½ S1 S2^½ = A^T A`` with ``A = X
    S2^½ / sqrt(N - 1)``, whose nonzero eigenvalues are those of the N x N matrix ``A A^T``:
    for N < D (a 64-image check at D = 2048) the eigenproblem is N x N.
    """
    x = _f64(fake, device)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 generated images, got {n}")
    mu1 = x.mean(0)
    x = x - mu1
    r = _f64(real.sqrt_sigma, device)
    a = (x @ r) / math.sqrt(n - 1)
    gram = a @ a.T if n < a.shape[1] else a.T @ a
    tr_covmean = torch.linalg.eigvalsh((gram + gram.T) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - _f64(real.stats["mu"], device)
    return float(diff @ diff + (x * x).sum() / (n - 1) + (r * r).sum() - 2 * tr_covmean)


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
        return {"kid_mean": out[KEY_METRIC_KID_MEAN], "kid_std": out[KEY_METRIC_KID_STD]}

    def config(self):
        return {"subsets": self.subsets, "subset_size": self.subset_size,
                "subset_size_used": self.used_subset_size, "kernel": "poly",
                "degree": self.degree, "gamma": self.gamma, "coef0": self.coef0,
                "seed": self.seed}


class InceptionScore(FeatureMetric):
    name = "isc"
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
