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


class SelfAttention2d(nn.Module):
    """Self-attention over the spatial positions of an (N, C, H, W) feature map.

    Args:
        channels: input and output channels ``C``.
        reduction: ``C / reduction`` channels for query, key and value (at least 1).
        spectral_norm: wrap the 1×1 convolutions with spectral normalisation.
    """

    def __init__(self, channels: int, reduction: int = 8, spectral_norm: bool = False):
        super().__init__()
        if channels < 1 or reduction < 1:
            raise ValueError(f"SelfAttention2d needs channels >= 1 and reduction >= 1, got "
                             f"channels={channels}, reduction={reduction}")
        inner = max(1, channels // reduction)
        self.channels, self.inner = channels, inner

        def conv(cin, cout):
            return apply_spectral_norm(nn.Conv2d(cin, cout, kernel_size=1, bias=False),
                                       spectral_norm)

        self.query = conv(channels, inner)
        self.key = conv(channels, inner)
        self.value = conv(channels, inner)
        self.out = conv(inner, channels)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (N, HW, d)
        k = self.key(x).flatten(2)  # (N, d, HW)
        v = self.value(x).flatten(2).transpose(1, 2)  # (N, HW, d)
        attn = torch.softmax(torch.bmm(q, k), dim=-1)  # (N, HW, HW): rows sum to 1
        o = torch.bmm(attn, v).transpose(1, 2).reshape(n, self.inner, h, w)
        return x + self.gamma * self.out(o)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, inner={self.inner}"


class ScaledSelfAttention2d(nn.Module):
    """Scaled self-attention: ``x + gamma * v(x) softmax(q(x)^T k(x) / sqrt(mid))``
    with ``q, k: C -> mid``, ``v: C -> C`` (no output conv), ``mid = max(C // 8, 1)``.

    Args:
        channels: input and output channels ``C``.
        spectral_norm: wrap the three 1×1 convolutions with spectral normalisation (the
            block is specified with plain convs; a spectrally normalised critic wraps them, as
            SAGAN does).
    """

    def __init__(self, channels: int, spectral_norm: bool = False):
        super().__init__()
        if channels < 1:
            raise ValueError(f"ScaledSelfAttention2d needs channels >= 1, got {channels}")
        mid = max(channels // 8, 1)
        self.channels, self.mid = channels, mid

        def conv(cin, cout):
            return apply_spectral_norm(nn.Conv2d(cin, cout, kernel_size=1, bias=False),
                                       spectral_norm)

        self.q = conv(channels, mid)
        self.k = conv(channels, mid)
        self.v = conv(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)  # (N, HW, mid)
        k = self.k(x).flatten(2)  # (N, mid, HW)
        v = self.v(x).flatten(2)  # (N, C, HW)
        attn = torch.softmax(torch.bmm(q, k) * self.mid ** -0.5, dim=-1)  # rows sum to 1
        return x + self.gamma * torch.bmm(v, attn.transpose(1, 2)).view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, mid={self.mid}"


def self_attention(kind: str, channels: int, spectral_norm: bool = False) -> nn.Module:
    """``"sagan"``: :class:`SelfAttention2d`; ``"plan"``: :class:`ScaledSelfAttention2d`."""
    if kind == "sagan":
        return SelfAttention2d(channels, spectral_norm=spectral_norm)
    if kind == "plan":
        return ScaledSelfAttention2d(channels, spectral_norm=spectral_norm)
    raise ValueError(f"attention must be one of {', '.join(ATTENTION_KINDS)}, got {kind!r}")
