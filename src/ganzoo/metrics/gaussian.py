"""The Gaussian statistics of features and the trace term of the Fréchet distance, in float64.

A covariance is kept as a factor ``L`` with ``L L^T = sigma``, from a QR decomposition of the
centred features (``X_c = Q R``, so ``X_c^T X_c / (N - 1) = R^T R / (N - 1)``), never by
forming ``sigma`` and taking its square root: that squares the condition number, and on the
low-rank-plus-noise spectra of CNN features the small directions drown in rounding. With
factors of both covariances, ``tr (S1 S2)^½`` is the sum of the singular values of ``L1^T L2``
(the eigenvalues of ``S1 S2`` are those of ``(L1^T L2)(L1^T L2)^T``), again without squaring.
docs/evaluation.md ("FID") gives the accuracy and speed against the alternatives.
"""

from __future__ import annotations

import math

import torch

__all__ = ["as_float64", "mean_and_factor", "psd_sqrt", "trace_sqrt_product"]


def as_float64(x, device=None) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=torch.float64)


def mean_and_factor(features, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 mean of features (N, D) and ``L`` (D, min(N, D)) with ``L L^T`` their
    covariance with the ``N - 1`` divisor (``np.cov(features, rowvar=False)``, as
    torch-fidelity's ``fid_features_to_statistics``). ``L = R^T / sqrt(N - 1)`` with ``R``
    from the QR decomposition of the centred features; lower triangular when N >= D."""
    x = as_float64(features, device)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 images on each side, got {n}")
    mu = x.mean(0)
    r = torch.linalg.qr(x - mu, mode="r").R
    return mu, r.T / math.sqrt(n - 1)


def psd_sqrt(sigma, device=None) -> torch.Tensor:
    """The symmetric square root of a covariance (eigenvalues below 0, rounding, clamped): a
    factor of ``sigma`` when only ``sigma`` is known (no features to factor)."""
    s = as_float64(sigma, device)
    w, v = torch.linalg.eigh((s + s.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def trace_sqrt_product(l1: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """``tr (S1 S2)^½`` for ``S1 = L1 L1^T`` and ``S2 = L2 L2^T``: the nuclear norm of
    ``L1^T L2``. The SVD is backward stable, so each singular value is exact to a few ulps of
    the largest; ``eigvalsh`` of ``(L1^T L2)^T (L1^T L2)`` would give the ones below
    ``sqrt(eps)`` times the largest as rounding noise of that size."""
    return torch.linalg.svdvals(l1.T @ l2).sum()
