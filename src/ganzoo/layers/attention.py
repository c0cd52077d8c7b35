"""SAGAN self-attention block.

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
"""

from __future__ import annotations

import torch
from torch import nn

from .common import spectral_norm as apply_spectral_norm

__all__ = ["SelfAttention2d"]


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
