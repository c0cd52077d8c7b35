"""Self-attention blocks: SAGAN's, and a scaled variant (``kind="plan"``).

Zhang, Goodfellow, Metaxas & Odena, "Self-Attention Generative Adversarial Networks",
ICML 2019 (arXiv:1805.08318); reference repo brain-research/self-attention-gan.

``y = x + gamma * v(softmax(q(x)^T k(x)) h(x))`` with 1×1 convolutions ``q, k, h: C -> C/r``
and ``v: C/r -> C`` (r = 8 in the paper), attention over all ``H·W`` positions, no
``1/sqrt(d)`` scaling (as in the paper), and a learned scalar ``gamma`` initialised to 0, so
the block is the identity at initialisation and the network learns how much non-local
evidence to use.

Departures: none in the maths; the attention is written with ``matmul``/``softmax`` instead of
``scaled_dot_product_attention`` because fused attention kernels do not support the double
backward that WGAN-GP's gradient penalty needs through a critic.

``spectral_norm=True`` wraps the four convolutions with
``torch.nn.utils.parametrizations.spectral_norm`` (SAGAN uses spectral norm in both networks).

:class:`ScaledSelfAttention2d` is the block that step 2.3 of the generator-evolution workflow
specifies (docs/workflows/generator_evolution.md, "The scaled self-attention block"): query and
key 1×1 convs to ``mid = max(C // 8, 1)`` channels, a value conv C -> C, no output conv, logits
scaled by ``mid ** -0.5`` (scaled dot-product attention, Vaswani et al. 2017), and ``gamma`` of
shape (1,) initialised to 0. Its parameters are named ``q``, ``k``, ``v``, ``gamma``, so a
state dict of a module written to that description loads as it is.
:func:`self_attention` builds either by name.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import spectral_norm as apply_spectral_norm

__all__ = ["SelfAttention2d", "ScaledSelfAttention2d", "self_attention", "ATTENTION_KINDS"]

ATTENTION_KINDS = ("sagan", "plan")


class _ResidualSelfAttention(nn.Module):
    """The skeleton both blocks share: 1×1 convolutions (spectrally normalised on request)
    read the feature map, :meth:`attend` mixes its ``H·W`` positions, and the result joins
    the input through ``gamma``, a learned scale initialised to 0 (the block starts as the
    identity, as SAGAN's)."""

    def __init__(self, channels: int, spectral_norm: bool):
        super().__init__()
        if channels < 1:
            raise ValueError(f"{type(self).__name__} needs channels >= 1, got {channels}")
        self.channels = channels
        self._spectral_norm = spectral_norm

    def _conv(self, cin: int, cout: int) -> nn.Module:
        return apply_spectral_norm(nn.Conv2d(cin, cout, kernel_size=1, bias=False),
                                   self._spectral_norm)

    def _init_gamma(self, *shape: int) -> None:
        # Registered after the convolutions, so state-dict keys keep their order.
        self.gamma = nn.Parameter(torch.zeros(shape))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """The non-local term for ``x`` (N, C, H, W), before ``gamma``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.attend(x)


class SelfAttention2d(_ResidualSelfAttention):
    """Self-attention over the spatial positions of an (N, C, H, W) feature map.

    Args:
        channels: input and output channels ``C``.
        reduction: ``C / reduction`` channels for query, key and value (at least 1).
        spectral_norm: wrap the 1×1 convolutions with spectral normalisation.
    """

    def __init__(self, channels: int, reduction: int = 8, spectral_norm: bool = False):
        if reduction < 1:
            raise ValueError(f"SelfAttention2d needs channels >= 1 and reduction >= 1, got "
                             f"channels={channels}, reduction={reduction}")
        super().__init__(channels, spectral_norm)
        inner = max(1, channels // reduction)
        self.inner = inner
        self.query = self._conv(channels, inner)
        self.key = self._conv(channels, inner)
        self.value = self._conv(channels, inner)
        self.out = self._conv(inner, channels)
        self._init_gamma()  # a scalar, as SAGAN's

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, d)
        k = self.key(x).flatten(2)  # (N, d, HW)
        v = self.value(x).flatten(2).transpose(1, 2)  # (N, HW, d)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (N, HW, HW): rows sum to 1
        return self.out(torch.bmm(attn, v).transpose(1, 2).reshape(n, self.inner, h, w))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner={self.inner}"


class ScaledSelfAttention2d(_ResidualSelfAttention):
    """Scaled self-attention: ``x + gamma * v(x) softmax(q(x)^T k(x) / sqrt(mid))``
    with ``q, k: C -> mid``, ``v: C -> C`` (no output conv), ``mid = max(C // 8, 1)``.

    Args:
        channels: input and output channels ``C``.
        spectral_norm: wrap the three 1×1 convolutions with spectral normalisation (the
            block is specified with plain convs; a spectrally normalised critic wraps them, as
            SAGAN does).
    """

    def __init__(self, channels: int, spectral_norm: bool = False):
        super().__init__(channels, spectral_norm)
        mid = max(channels // 8, 1)
        self.mid = mid
        self.q = self._conv(channels, mid)
        self.k = self._conv(channels, mid)
        self.v = self._conv(channels, channels)
        self._init_gamma(1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (N, HW, mid)
        k = self.k(x).flatten(2)  # (N, mid, HW)
        v = self.v(x).flatten(2)  # (N, C, HW)
        attn = torch.softmax(torch.bmm(q, k) * self.mid ** -0.5, dim=-1)  # rows sum to 1
        return torch.bmm(v, attn.transpose(1, 2)).view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mid={self.mid}"


def self_attention(kind: str, channels: int, spectral_norm: bool = False) -> nn.Module:
    """``"sagan"``: :class:`SelfAttention2d`; ``"plan"``: :class:`ScaledSelfAttention2d`."""
    if kind == "sagan":
        return SelfAttention2d(channels, spectral_norm=spectral_norm)
    if kind == "plan":
        return ScaledSelfAttention2d(channels, spectral_norm=spectral_norm)
    raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
