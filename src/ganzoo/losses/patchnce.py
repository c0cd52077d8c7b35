"""PatchNCE: the patch-wise contrastive loss of CUT (Park et al., ECCV 2020, arXiv 2007.15651).

For one layer, ``feat_q`` are projected features of patches of the translated image and
``feat_k`` the features of the same locations in the source image. Query ``i`` must pick its
own key ``i`` (the positive, on the diagonal of the query-key similarity matrix) among the
keys of the other sampled locations of the same image (the negatives)::

    loss_i = -log( exp(q_i . k_i / T) / sum_j exp(q_i . k_j / T) )

with ``q`` and ``k`` L2-normalised and the keys detached, as in the reference implementation
(taesungp/contrastive-unpaired-translation, ``models/patchnce.py``).

Departures from the reference:

- The reference puts the positive in an extra first column and fills the diagonal of the
  negative block with -10 (so that it contributes ``exp(-10 / T)``, about 1e-62 at T = 0.07).
  Here the positive is simply the diagonal entry of one ``P x P`` logit matrix; the two agree
  to within that 1e-62 term.
- Numerical safeguards from the CUT baseline: features are normalised as ``x / (|x| + eps)``
  with ``eps = 1e-6`` (an all-zero feature stays zero instead of becoming NaN), and the logits
  are clamped to ``[-clamp, clamp]`` (50) before the softmax. The loss is not made finite by
  force: a NaN coming from the features still propagates so that the trainer's non-finite
  guard sees it; :func:`patchnce_loss` callers read :func:`nonfinite_flag` for logging.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_loss

__all__ = ["patchnce_loss", "l2_normalize", "nonfinite_flag", "PatchNCELoss", "patchnce"]


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-6) -> torch.Tensor:
    """``x / (||x||_2 + eps)`` along ``dim``; zero vectors stay zero with a finite gradient."""
    return x / (torch.linalg.vector_norm(x, dim=dim, keepdim=True) + eps)


def patchnce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, *, batch_size: int,
                  temperature: float = 0.07, negatives_from_minibatch: bool = False,
                  normalize: bool = True, eps: float = 1e-6, clamp: float | None = 50.0,
                  reduction: str = "mean") -> torch.Tensor:
    """PatchNCE loss of one layer.

    Args:
        feat_q: ``(batch_size * P, D)`` query features (from the translated image), ordered
            image by image, the same ``P`` locations in each image.
        feat_k: ``(batch_size * P, D)`` key features (from the source image); detached here.
        batch_size: number of images; negatives come from the same image unless
            ``negatives_from_minibatch`` (the reference's single-image setting).
        temperature: ``T`` (0.07 in CUT).
        normalize: L2-normalise ``q`` and ``k`` with ``eps`` first.
        clamp: clamp the logits ``q.k / T`` to ``[-clamp, clamp]``; None disables.
        reduction: ``"mean"`` over patches, or ``"none"`` for the per-patch losses.
    """
    if feat_q.shape != feat_k.shape or feat_q.dim() != 2:
        raise ValueError(f"feat_q and feat_k must be (N, D) of the same shape, got "
                         f"{tuple(feat_q.shape)} and {tuple(feat_k.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    feat_k = feat_k.detach()
    if normalize:
        feat_q = l2_normalize(feat_q, eps=eps)
        feat_k = l2_normalize(feat_k, eps=eps)
    groups = 1 if negatives_from_minibatch else batch_size
    n, d = feat_q.shape
    if n % groups:
        raise ValueError(f"{n} features do not split into {groups} images")
    q = feat_q.reshape(groups, n // groups, d)
    k = feat_k.reshape(groups, n // groups, d)
    logits = torch.bmm(q, k.transpose(1, 2)) / temperature  # (G, P, P); positives on diagonal
    if clamp is not None:
        logits = logits.clamp(-clamp, clamp)
    p = logits.shape[1]
    target = torch.arange(p, device=logits.device).repeat(groups)
    # The softmax in at least float32 (half-precision logits lose it); float64 stays float64.
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    loss = F.cross_entropy(logits.reshape(groups * p, p), target, reduction="none")
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def nonfinite_flag(loss: torch.Tensor) -> torch.Tensor:
    """1.0 where ``loss`` is NaN or inf, else 0.0 (a detached tensor: no device sync)."""
    return (~torch.isfinite(loss.detach())).any().float()


class PatchNCELoss(torch.nn.Module):
    """Module form of :func:`patchnce_loss` holding its hyperparameters."""

    def __init__(self, temperature: float = 0.07, negatives_from_minibatch: bool = False,
                 eps: float = 1e-6, clamp: float | None = 50.0):
        super().__init__()
        self.temperature = temperature
        self.negatives_from_minibatch = negatives_from_minibatch
        self.eps = eps
        self.clamp = clamp

    def forward(self, feat_q: torch.Tensor, feat_k: torch.Tensor, batch_size: int,
                reduction: str = "mean") -> torch.Tensor:
        return patchnce_loss(feat_q, feat_k, batch_size=batch_size, temperature=self.temperature,
                             negatives_from_minibatch=self.negatives_from_minibatch,
                             eps=self.eps, clamp=self.clamp, reduction=reduction)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, eps={self.eps}, clamp={self.clamp}, "
                f"negatives_from_minibatch={self.negatives_from_minibatch}")


@register_loss
def patchnce(**kwargs) -> PatchNCELoss:
    """PatchNCE (CUT, Park et al. 2020): T = 0.07, eps = 1e-6, logits clamped to +-50."""
    return PatchNCELoss(**kwargs)
