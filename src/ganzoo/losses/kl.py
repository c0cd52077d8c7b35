"""KL divergence of a diagonal Gaussian posterior from the standard normal prior.

Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014 (arXiv:1312.6114), appendix B:

    KL(N(mu, sigma^2) || N(0, 1)) = -1/2 * sum(1 + log sigma^2 - mu^2 - sigma^2)

The encoder predicts ``logvar = log sigma^2`` (unconstrained, numerically safe).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..registry import register_loss

__all__ = ["kl_normal", "GaussianKL", "kl"]

Reduction = Literal["batchmean", "sum", "mean", "none"]


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor,
              reduction: Reduction = "batchmean") -> torch.Tensor:
    """Closed-form KL(N(mu, exp(logvar)) || N(0, I)), elementwise then reduced.

    ``reduction``: ``"batchmean"`` sums over every dimension but the first and averages over
    the batch (nats per sample, the ELBO's KL term); ``"sum"``; ``"mean"`` over every element;
    ``"none"`` keeps the elementwise terms.
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and "
                         f"{tuple(logvar.shape)}")
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)
    if reduction == "none":
        return kl
    if reduction == "sum":
        return kl.sum()
    if reduction == "mean":
        return kl.mean()
    if reduction == "batchmean":
        return kl.sum() / mu.shape[0]
    raise ValueError(f"reduction must be 'batchmean', 'sum', 'mean' or 'none', got {reduction!r}")


class GaussianKL(nn.Module):
    """``GaussianKL(reduction)(mu, logvar)``: :func:`kl_normal` as a module."""

    def __init__(self, reduction: Reduction = "batchmean"):
        super().__init__()
        if reduction not in ("batchmean", "sum", "mean", "none"):
            raise ValueError(f"reduction must be 'batchmean', 'sum', 'mean' or 'none', "
                             f"got {reduction!r}")
        self.reduction = reduction

    def forward(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return kl_normal(mu, logvar, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register_loss
def kl(**kwargs) -> GaussianKL:
    """Closed-form KL of N(mu, sigma^2) from N(0, 1) (Kingma & Welling 2014)."""
    return GaussianKL(**kwargs)
