"""The Gaussian statistics of features and the trace term of the Fréchet distance, in float64.

A covariance is kept as a factor ``L`` with ``L L^T = sigma``, and ``tr (S1 S2)^½`` is the sum
of the singular values of ``L1^T L2`` (the eigenvalues of ``S1 S2`` are those of
``(L1^T L2)(L1^T L2)^T``): the product is never squared, so the small directions of a
low-rank-plus-noise spectrum (CNN features) keep their digits.

Each side's factor is the Cholesky factor of its centred Gram matrix ``X_c^T X_c`` when that is
well conditioned (half the flops of a QR decomposition), and ``R^T`` from the QR decomposition
``X_c = Q R`` otherwise: with fewer rows than features, or a covariance singular to about half
the working precision, where the Gram matrix's rounding would reach the trace term.
docs/evaluation.md ("FID") gives the accuracy and speed against the alternatives.
"""

from __future__ import annotations

import math

import torch

__all__ = ["as_float64", "mean_and_factor", "psd_sqrt", "trace_sqrt_product"]


def as_float64(x, device=None) -> torch.Tensor:
    return torch.as_tensor(x).to(device=device, dtype=torch.float64)


# The Gram matrix's rounding is about eps times its norm: harmless to the trace term unless this
# side's covariance is nearly singular in directions where the other's is not (a collapsed
# generator against real data). A Cholesky pivot below this fraction of the largest variance
# marks that case (X_c's condition above about 1e5), and the QR route is taken. Measured on
# low-rank-plus-noise features (tools/fid_exactness.py, tests/test_metrics.py): with pivots
# above it the Gram route was within 2e-11 of the exact FID; with pivots of 1e-15 it was up to
# 6e-9 off, where the QR route stays within 1e-13.
GRAM_PIVOT_MIN = 1e-10


def _gram(xc: torch.Tensor) -> torch.Tensor:
    """``X_c^T X_c``. On the CPU through numpy, whose ``a.T @ a`` is a BLAS ``syrk`` (one
    triangle: half the flops of torch's ``gemm``; 0.29 s against 0.53 s for 5,000 x 2,048 on two
    cores, docs/evaluation.md "Benchmark")."""
    if xc.device.type == "cpu":
        a = xc.detach().numpy()
        return torch.from_numpy(a.T @ a)
    return xc.T @ xc


def _gram_factor(xc: torch.Tensor, pivot_min: float = GRAM_PIVOT_MIN) -> torch.Tensor | None:
    """The Cholesky factor of ``X_c^T X_c``, or None when a pivot falls below ``pivot_min``
    of the largest diagonal entry (or the matrix is not positive definite)."""
    gram = _gram(xc)
    factor, info = torch.linalg.cholesky_ex(gram)
    if info == 0 and factor.diagonal().square().min() >= pivot_min * gram.diagonal().max():
        return factor
    return None


def _qr_factor(xc: torch.Tensor) -> torch.Tensor:
    """``R^T`` from the QR decomposition ``X_c = Q R``: ``R^T R = X_c^T X_c``."""
    return torch.linalg.qr(xc, mode="r").R.T


def mean_and_factor(features, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float64 mean of features (N, D) and a factor ``L`` (D, min(N, D)) with ``L L^T`` their
    covariance with the ``N - 1`` divisor (``np.cov(features, rowvar=False)``, as
    torch-fidelity's ``fid_features_to_statistics``); lower triangular when N > D.

    ``L`` is the Cholesky factor of ``X_c^T X_c / (N - 1)`` when every pivot is at least
    :data:`GRAM_PIVOT_MIN` of the largest variance, else ``R^T / sqrt(N - 1)`` with ``R`` from
    the QR decomposition of the centred features ``X_c``."""
    x = as_float64(features, device)
    n, d = x.shape
    if n < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 images on each side, got {n}")
    mu = x.mean(0)
    xc = x - mu
    factor = _gram_factor(xc) if n > d else None
    if factor is None:
        factor = _qr_factor(xc)
    return mu, factor / math.sqrt(n - 1)


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
