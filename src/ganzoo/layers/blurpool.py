"""Anti-aliased resampling with fixed binomial filters (Zhang, "Making Convolutional Networks
Shift-Invariant Again", ICML 2019, arXiv:1904.11486), as CUT's reference uses it
(taesungp/contrastive-unpaired-translation, ``models/networks.py``: ``Downsample`` with a 3-tap
filter and reflect padding, ``Upsample`` with a 4-tap filter and replicate padding).

Both filters are non-persistent buffers: they are fixed, so saved weights do not hold them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BlurDownsample", "BlurUpsample", "binomial_filter"]


def binomial_filter(taps: int, channels: int, gain: float = 1.0) -> torch.Tensor:
    """``(channels, 1, taps, taps)`` normalised binomial blur (3 taps: [1, 2, 1] ⊗ [1, 2, 1] /
    16), built from Python floats (no tensor arithmetic, so building on the ``meta`` device
    stays cheap)."""
    row = [math.comb(taps - 1, i) for i in range(taps)]
    total = sum(row) ** 2
    filt = [[gain * a * b / total for b in row] for a in row]
    return torch.tensor([[filt]] * channels, dtype=torch.float32)


class BlurDownsample(nn.Module):
    """Anti-aliased stride-2 downsampling: reflect pad 1, fixed [1, 2, 1] blur, stride 2."""

    kernel_size, stride = 3, 2  # read by ganzoo.layers.patchgan.receptive_field

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(3, channels), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.filt.to(x.dtype), stride=2,
                        groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class BlurUpsample(nn.Module):
    """Anti-aliased 2x upsampling: replicate pad, transposed [1, 3, 3, 1] blur (x4 gain), crop."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("filt", binomial_filter(4, channels, gain=4.0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.filt.to(x.dtype),
                               stride=2, padding=2, groups=self.channels)
        return y[:, :, 1:-1, 1:-1]

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
