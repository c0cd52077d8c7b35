"""Adversarial losses and regularisers shared by every GAN-like family.

Loss objects (built with ``ganzoo.build_loss(name, **kwargs)``) all have the same small API::

    loss = ganzoo.build_loss("hinge")
    d = loss.d_loss(real_logits, fake_logits)   # discriminator / critic step (fakes detached)
    g = loss.g_loss(fake_logits)                # generator step
    p = loss.penalty(critic, real, fake)        # extra D-step term, or None (only wgan_gp)

Logits are raw discriminator outputs of any shape (``(N,)``, ``(N, 1)``, PatchGAN maps); every
loss averages over all elements. Registered names:

- ``bce``: binary cross-entropy on logits with optional one-sided or two-sided label smoothing
  (``real_label=0.9, fake_label=0.1``); the generator targets ``g_label`` (1.0 by default), i.e.
  the non-saturating generator loss of Goodfellow et al. 2014, as in DCGAN.
- ``nonsaturating``: the logistic form ``softplus(-D(x)) + softplus(D(G(z)))`` /
  ``softplus(-D(G(z)))`` (StyleGAN's default); equal to ``bce`` without smoothing.
- ``wgan``: Wasserstein critic loss ``E[D(G(z))] - E[D(x)]``, generator ``-E[D(G(z))]``
  (Arjovsky et al. 2017, arXiv:1701.07875). Pair it with weight clipping (``clip_weights``)
  or a penalty.
- ``wgan_gp``: ``wgan`` plus ``gp_weight * gradient_penalty`` (Gulrajani et al. 2017,
  arXiv:1704.00028; λ = 10).
- ``hinge``: ``relu(1 - D(x)) + relu(1 + D(G(z)))`` / ``-D(G(z))`` (Lim & Ye 2017; SAGAN).
- ``lsgan``: least squares, ``½[(D(x) - 1)² + D(G(z))²]`` / ``(D(G(z)) - 1)²`` (Mao et al. 2017,
  arXiv:1611.04076, with a = 0, b = c = 1), in the form of pix2pix/CycleGAN and CUT: the
  generator's term is a plain MSE, the discriminator's the mean of its two MSEs.
- ``r1``: ``gamma * r1_penalty`` (Mescheder et al. 2018, arXiv:1801.04406), called as
  ``loss(real_logits, real_images)``.
- ``feature_matching``: ``feature_matching_loss`` as an object, called as
  ``loss(real_feats, fake_feats)``.
- ``weight_clip``: a post-step hook, called as ``hook(critic)``, that clamps every parameter to
  ``[-c, c]`` (WGAN's original Lipschitz constraint, c = 0.01).

``hinge``, ``nonsaturating`` and ``lsgan`` take ``d_scale``, a factor on the discriminator loss
(1, 1 and ½ by default): taming-transformers halves its hinge and non-saturating D losses,
pix2pix/CUT halve LSGAN's.

Plain functions: :func:`gradient_penalty`, :func:`r1_penalty`, :func:`feature_matching_loss`,
:func:`clip_weights`, :func:`input_gradient`.

Mixed precision. Both penalties differentiate the discriminator's output with respect to its
input. Under fp16 autocast those input gradients can underflow (they are often far below fp16's
smallest normal, 6e-5), so, following PyTorch's AMP gradient-penalty recipe ("Automatic Mixed
Precision examples", *Gradient penalty*), :func:`input_gradient` scales the output by the loss
scale of the GradScaler given with :func:`penalty_grad_scaler` before ``autograd.grad`` and
unscales the gradient after it. ``ganzoo.train`` sets the scaler of the group being stepped.
Without a scaler, :func:`gradient_penalty` under fp16 autocast runs its critic forward outside
autocast (in fp32), as BlobGAN's reference computes R1; :func:`r1_penalty` cannot (the caller ran
the forward), so call it inside :func:`penalty_grad_scaler` when training in fp16.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import register_loss

__all__ = [
    "AdversarialLoss", "BCELoss", "NonSaturatingLoss", "WGANLoss", "WGANGPLoss", "HingeLoss",
    "LSGANLoss", "R1Penalty", "FeatureMatchingLoss", "WeightClip", "gradient_penalty",
    "r1_penalty", "input_gradient", "penalty_grad_scaler", "feature_matching_loss",
    "clip_weights",
]


# -- input gradients under mixed precision --------------------------------------------------
_SCALER: contextvars.ContextVar = contextvars.ContextVar("ganzoo_penalty_scaler", default=None)


@contextlib.contextmanager
def penalty_grad_scaler(scaler) -> Iterator[None]:
    """Within the block, :func:`input_gradient` scales by ``scaler`` (a ``torch.amp.GradScaler``,
    or None for no scaling): the GradScaler that will scale the loss holding the penalty."""
    token = _SCALER.set(scaler)
    try:
        yield
    finally:
        _SCALER.reset(token)


def input_gradient(outputs: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """``d(sum outputs) / d inputs``, kept in the graph (``create_graph=True``).

    With a GradScaler set by :func:`penalty_grad_scaler`, the sum is multiplied by the current
    loss scale before ``autograd.grad`` and the gradient divided by it after, as in PyTorch's
    AMP gradient-penalty recipe, so that fp16 intermediate gradients do not underflow. The scale
    is read as a tensor (no host sync). A scale too large for the gradients makes them inf; the
    penalty, the loss and the scaled gradients are then inf too, and the GradScaler skips the
    step and lowers the scale, as it does for any overflow.
    """
    total = outputs.float().sum()
    scaler = _SCALER.get()
    if scaler is None or not scaler.is_enabled():
        (grad,) = torch.autograd.grad(total, inputs, create_graph=True)
        return grad
    scale = scaler.scale(torch.ones((), device=total.device))
    (grad,) = torch.autograd.grad(total * scale, inputs, create_graph=True)
    return grad / scale


def _fp16_autocast(device_type: str) -> bool:
    return (torch.is_autocast_enabled(device_type)
            and torch.get_autocast_dtype(device_type) == torch.float16)


# -- penalties and helpers (plain functions) -------------------------------------------------
def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor, generator: torch.Generator | None = None,
                     target: float = 1.0) -> torch.Tensor:
    """WGAN-GP gradient penalty ``E[(||grad D(x_hat)||_2 - target)^2]`` (no λ applied).

    ``x_hat = alpha * real + (1 - alpha) * fake`` with one ``alpha ~ U[0, 1)`` per sample,
    broadcast over all other dimensions; the gradient norm is taken over all non-batch
    dimensions. ``fake`` is detached here. ``generator`` (a ``torch.Generator``) makes the draw
    of ``alpha`` reproducible; ``alpha`` is drawn on the generator's device (the tensors'
    device when None) and then moved. The graph is kept (``create_graph=True``) so the penalty
    can be back-propagated into the critic's parameters. Under fp16 autocast see the module
    docstring: the gradient is taken with the GradScaler of :func:`penalty_grad_scaler`, or,
    without one, the critic runs on ``x_hat`` outside autocast.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty needs real and fake of one shape, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    n = real.shape[0]
    device = generator.device if generator is not None else real.device
    alpha = torch.rand(n, generator=generator, device=device).to(real.device, real.dtype)
    alpha = alpha.view(n, *([1] * (real.dim() - 1)))
    x_hat = torch.lerp(fake.detach(), real.detach(), alpha).requires_grad_(True)
    kind = x_hat.device.type
    if _SCALER.get() is None and _fp16_autocast(kind):
        with torch.autocast(kind, enabled=False):
            out = critic(x_hat.float())
    else:
        out = critic(x_hat)
    grad = input_gradient(out, x_hat)
    norm = grad.float().flatten(1).norm(2, dim=1)
    return (norm - target).pow(2).mean()


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 penalty ``0.5 * E[||grad_x D(x)||^2]`` on real data (no γ applied).

    ``real_images`` must have had ``requires_grad_(True)`` before the discriminator forward
    that produced ``real_logits``. Convention: this returns ``½·E‖∇D(x)‖²``, so the D loss
    term of Mescheder et al. (and StyleGAN's ``r1_gamma``) is ``gamma * r1_penalty(...)``,
    i.e. ``(γ/2)·E‖∇D(x)‖²``. The graph is kept for back-propagation. Under fp16 autocast,
    call it inside :func:`penalty_grad_scaler` (``ganzoo.train`` does).
    """
    grad = input_gradient(real_logits, real_images)
    return 0.5 * grad.float().pow(2).flatten(1).sum(1).mean()


def _as_list(feats) -> list[torch.Tensor]:
    return [feats] if isinstance(feats, torch.Tensor) else list(feats)


def feature_matching_loss(real_feats: torch.Tensor | Sequence[torch.Tensor],
                          fake_feats: torch.Tensor | Sequence[torch.Tensor],
                          mode: Literal["mean", "l1"] = "mean") -> torch.Tensor:
    """Feature matching between discriminator features of real and fake images.

    ``mode="mean"``: Salimans et al. 2016 (arXiv:1606.03498), the squared L2 distance between
    the batch means of the features, ``||E f(x) - E f(G(z))||^2`` (summed over features).
    ``mode="l1"``: pix2pixHD (arXiv:1711.11585), per-sample L1 between paired features.
    Accepts one tensor or a list (one per layer); the result is averaged over layers. Real
    features are detached: the loss trains the generator only.
    """
    real_list, fake_list = _as_list(real_feats), _as_list(fake_feats)
    if len(real_list) != len(fake_list) or not real_list:
        raise ValueError(f"feature_matching_loss needs as many real as fake features (>= 1), "
                         f"got {len(real_list)} and {len(fake_list)}")
    terms = []
    for r, f in zip(real_list, fake_list):
        r = r.detach()
        if mode == "mean":
            terms.append((r.mean(0) - f.mean(0)).pow(2).sum())
        elif mode == "l1":
            terms.append(F.l1_loss(f, r))
        else:
            raise ValueError(f"feature_matching_loss mode must be 'mean' or 'l1', got {mode!r}")
    return torch.stack(terms).mean()


@torch.no_grad()
def clip_weights(module: nn.Module, c: float = 0.01) -> None:
    """Clamp every parameter of ``module`` to ``[-c, c]`` in place (WGAN weight clipping).

    Call after each critic optimizer step, e.g. from a family's ``after_step``.
    """
    if c <= 0:
        raise ValueError(f"clip_weights needs c > 0, got {c}")
    params = [p for p in module.parameters()]
    if params:
        torch._foreach_clamp_min_(params, -c)
        torch._foreach_clamp_max_(params, c)


# -- loss objects ----------------------------------------------------------------------------
def _check_scale(name: str, d_scale: float) -> float:
    if not d_scale > 0:
        raise ValueError(f"{name} d_scale must be > 0, got {d_scale}")
    return float(d_scale)


class AdversarialLoss:
    """Base class: ``d_loss(real_logits, fake_logits)``, ``g_loss(fake_logits)`` and an
    optional D-step ``penalty(critic, real, fake, generator=None)`` (None when there is none).
    """

    name: str = ""

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, critic, real: torch.Tensor, fake: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor | None:
        return None

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


@register_loss(name="bce")
class BCELoss(AdversarialLoss):
    """Binary cross-entropy on logits; ``real_label``/``fake_label`` give label smoothing.

    The D loss is the sum of the real and fake terms (as in pytorch/examples' DCGAN); the
    generator's target is ``g_label`` (1.0: the non-saturating loss ``-log D(G(z))``).
    """

    name = "bce"

    def __init__(self, real_label: float = 1.0, fake_label: float = 0.0, g_label: float = 1.0):
        for field, v in (("real_label", real_label), ("fake_label", fake_label),
                         ("g_label", g_label)):
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"bce {field} must be in [0, 1], got {v}")
        self.real_label, self.fake_label, self.g_label = real_label, fake_label, g_label

    @staticmethod
    def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def d_loss(self, real_logits, fake_logits):
        return self._bce(real_logits, self.real_label) + self._bce(fake_logits, self.fake_label)

    def g_loss(self, fake_logits):
        return self._bce(fake_logits, self.g_label)


@register_loss(name="nonsaturating")
class NonSaturatingLoss(AdversarialLoss):
    """Logistic loss: D ``softplus(-D(x)) + softplus(D(G(z)))``, G ``softplus(-D(G(z)))``."""

    name = "nonsaturating"

    def __init__(self, d_scale: float = 1.0):
        self.d_scale = _check_scale("nonsaturating", d_scale)

    def d_loss(self, real_logits, fake_logits):
        return self.d_scale * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())

    def g_loss(self, fake_logits):
        return F.softplus(-fake_logits).mean()


@register_loss(name="wgan")
class WGANLoss(AdversarialLoss):
    """Wasserstein loss: critic ``E[D(G(z))] - E[D(x)]``, generator ``-E[D(G(z))]``."""

    name = "wgan"

    def d_loss(self, real_logits, fake_logits):
        return fake_logits.mean() - real_logits.mean()

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


@register_loss(name="wgan_gp")
class WGANGPLoss(WGANLoss):
    """Wasserstein loss whose ``penalty`` is ``gp_weight * gradient_penalty`` (λ = 10)."""

    name = "wgan_gp"

    def __init__(self, gp_weight: float = 10.0):
        if gp_weight < 0:
            raise ValueError(f"wgan_gp gp_weight must be >= 0, got {gp_weight}")
        self.gp_weight = gp_weight

    def penalty(self, critic, real, fake, generator=None):
        return self.gp_weight * gradient_penalty(critic, real, fake, generator=generator)


@register_loss(name="hinge")
class HingeLoss(AdversarialLoss):
    """Hinge loss: D ``d_scale * (relu(1 - D(x)) + relu(1 + D(G(z))))``, G ``-D(G(z))``.

    ``d_scale = 0.5`` is taming-transformers' ``hinge_d_loss`` (VQGAN)."""

    name = "hinge"

    def __init__(self, d_scale: float = 1.0):
        self.d_scale = _check_scale("hinge", d_scale)

    def d_loss(self, real_logits, fake_logits):
        return self.d_scale * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())

    def g_loss(self, fake_logits):
        return -fake_logits.mean()


@register_loss(name="lsgan")
class LSGANLoss(AdversarialLoss):
    """Least-squares GAN: D ``d_scale * (mean (D(x) - 1)² + mean D(G(z))²)``, G
    ``mean (D(G(z)) - 1)²``.

    ``d_scale = 0.5`` by default: pix2pix/CycleGAN's and CUT's ``GANLoss('lsgan')`` (an MSE to
    the target label) with their discriminator loss ``(loss_D_fake + loss_D_real) * 0.5``."""

    name = "lsgan"

    def __init__(self, d_scale: float = 0.5):
        self.d_scale = _check_scale("lsgan", d_scale)

    def d_loss(self, real_logits, fake_logits):
        return self.d_scale * ((real_logits - 1.0).pow(2).mean() + fake_logits.pow(2).mean())

    def g_loss(self, fake_logits):
        return (fake_logits - 1.0).pow(2).mean()


@register_loss(name="r1")
class R1Penalty:
    """``gamma * r1_penalty(real_logits, real_images)``, i.e. ``(γ/2)·E‖∇D(x)‖²``."""

    def __init__(self, gamma: float = 10.0):
        if gamma < 0:
            raise ValueError(f"r1 gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def __call__(self, real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
        return self.gamma * r1_penalty(real_logits, real_images)

    def __repr__(self) -> str:
        return f"R1Penalty(gamma={self.gamma})"


@register_loss(name="feature_matching")
class FeatureMatchingLoss:
    """``weight * feature_matching_loss(real_feats, fake_feats, mode)``."""

    def __init__(self, mode: Literal["mean", "l1"] = "mean", weight: float = 1.0):
        if mode not in ("mean", "l1"):
            raise ValueError(f"feature_matching mode must be 'mean' or 'l1', got {mode!r}")
        self.mode, self.weight = mode, weight

    def __call__(self, real_feats, fake_feats) -> torch.Tensor:
        return self.weight * feature_matching_loss(real_feats, fake_feats, self.mode)

    def __repr__(self) -> str:
        return f"FeatureMatchingLoss(mode={self.mode!r}, weight={self.weight})"


@register_loss(name="weight_clip")
class WeightClip:
    """Post-step hook ``hook(critic)`` clamping parameters to ``[-c, c]`` (WGAN, c = 0.01)."""

    def __init__(self, c: float = 0.01):
        if c <= 0:
            raise ValueError(f"weight_clip c must be > 0, got {c}")
        self.c = c

    def __call__(self, module: nn.Module) -> None:
        clip_weights(module, self.c)

    def __repr__(self) -> str:
        return f"WeightClip(c={self.c})"
