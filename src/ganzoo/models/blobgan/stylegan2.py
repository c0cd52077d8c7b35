"""StyleGAN2 building blocks with the spatially varying styles of BlobGAN.

Karras et al., Analyzing and Improving the Image Quality of StyleGAN, CVPR 2020 (arXiv
1912.04958); BlobGAN's layout-conditioned variant (Epstein et al., arXiv 2205.02837, reference
``dave-epstein/blobgan``, ``models/networks/layoutstylegan.py``) and the rectangular extension
of OCTET (Zemni et al., arXiv 2211.12380, ``valeoai/OCTET``).

Everything is pure PyTorch: the FIR up/down-sampling (``upfirdn2d``) and the fused bias +
leaky ReLU are written with native ops instead of the reference's CUDA extensions (same maths,
slower on GPU). Grids may be rectangular: a resolution is named by its height, the width is
``height * aspect_ratio``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "upfirdn2d", "EqualLinear", "EqualConv2d", "FusedLeakyReLU", "ModulatedConv2d", "StyledConv",
    "ToRGB", "LayoutStyleGANGenerator", "StyleGAN2Discriminator", "splat", "generator_channels",
]

_SQRT2 = math.sqrt(2.0)


def splat(scores: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Per-pixel mixture of per-blob vectors: (N, M, H, W) x (N, M, C) -> (N, C, H, W)."""
    return torch.einsum("nmhw,nmc->nchw", scores, values)


def _make_kernel(k) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with a 2-D FIR kernel, downsample (native ops)."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])  # negative pads crop
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class Blur(nn.Module):
    def __init__(self, kernel, pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = _make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k, persistent=False)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip branch."""

    def __init__(self, kernel, factor: int = 2):
        super().__init__()
        self.factor = factor
        k = _make_kernel(kernel) * factor ** 2
        self.register_buffer("kernel", k, persistent=False)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate (and optional lr multiplier)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x):
        bias = self.bias * self.lr_mul if self.bias is not None else None
        out = F.linear(x, self.weight * self.scale, bias)
        if self.activation:
            out = F.leaky_relu(out, 0.2) * _SQRT2
        return out

    def extra_repr(self):
        return (f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, "
                f"activation={self.activation}")


class EqualConv2d(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride,
                        padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """Bias, then leaky ReLU (slope 0.2) scaled by sqrt(2) to keep unit variance."""

    def __init__(self, channel: int, bias: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None

    def forward(self, x):
        if self.bias is not None:
            x = x + self.bias.view(1, -1, *([1] * (x.ndim - 2)))
        return F.leaky_relu(x, 0.2) * _SQRT2


class ModulatedConv2d(nn.Module):
    """Modulated convolution.

    ``style`` is either a vector per sample, ``(N, style_dim)``: StyleGAN2's per-sample weight
    modulation and demodulation (grouped convolution); or one style per blob,
    ``(N, M, style_dim)``, together with blob ``scores`` ``(N, M, H, W)`` at the input's
    resolution: BlobGAN's spatial modulation, where the modulated styles are splatted into a
    style map that scales the input pixel-wise, the map is normalised over channels and the
    weights are demodulated by their own norm (BlobGAN's approximation of demodulation with a
    spatially varying style).
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.eps = 1e-8
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1),
                             upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def extra_repr(self):
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, "
                f"upsample={self.upsample}, demodulate={self.demodulate}")

    def _conv(self, x, weight, groups: int = 1):
        if self.upsample:
            # (groups*out, in/groups, k, k) -> conv_transpose2d wants (in, out/groups, k, k)
            k = self.kernel_size
            w = weight.view(groups, -1, weight.shape[1], k, k).transpose(1, 2)
            w = w.reshape(-1, w.shape[2], k, k)
            return self.blur(F.conv_transpose2d(x, w, stride=2, groups=groups))
        return F.conv2d(x, weight, padding=self.padding, groups=groups)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                scores: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        weight = self.weight * self.scale
        if style.ndim == 2:  # StyleGAN2: per-sample weights through a grouped convolution
            s = self.modulation(style)  # (N, in)
            weight = weight[None] * s[:, None, :, None, None]
            if self.demodulate:
                weight = weight * torch.rsqrt(weight.square().sum((2, 3, 4), keepdim=True)
                                              + self.eps)
            out = self._conv(x.reshape(1, n * c, h, w),
                             weight.reshape(n * self.out_channel, c, *weight.shape[-2:]), groups=n)
            return out.view(n, self.out_channel, *out.shape[-2:])
        if scores is None:
            raise ValueError("a per-blob style (N, M, style_dim) needs blob scores (N, M, H, W)")
        s = splat(scores, self.modulation(style))  # (N, in, H, W)
        if self.demodulate:
            s = s * torch.rsqrt(s.square().mean(1, keepdim=True) + self.eps)
            weight = weight * torch.rsqrt(weight.square().sum((1, 2, 3), keepdim=True) + self.eps)
        return self._conv(x * s, weight)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x, noise=None, generator: torch.Generator | None = None):
        if noise is None:
            n, _, h, w = x.shape
            dev = generator.device if generator is not None else x.device
            noise = torch.randn(n, 1, h, w, generator=generator, device=dev).to(x)
        return x + self.weight * noise


class StyledConv(nn.Module):
    def __init__(self, in_channel, out_channel, kernel_size, style_dim, upsample=False,
                 blur_kernel=(1, 3, 3, 1), demodulate=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x, style, scores=None, noise=None, generator=None):
        out = self.conv(x, style, scores)
        return self.activate(self.noise(out, noise, generator))


class ToRGB(nn.Module):
    def __init__(self, in_channel, style_dim, upsample=True, blur_kernel=(1, 3, 3, 1),
                 c_out: int = 3):
        super().__init__()
        self.upsample = Upsample(blur_kernel) if upsample else None
        self.conv = ModulatedConv2d(in_channel, c_out, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x, style, scores=None, skip=None):
        out = self.conv(x, style, scores) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


def generator_channels(res: int, c_model: int) -> int:
    """BlobGAN's channel table (channel multiplier 2): 8 c_model up to 64 px, then halving."""
    return max(1, min(8 * c_model, 512 * c_model // res))


class LayoutStyleGANGenerator(nn.Module):
    """StyleGAN2 synthesis network that starts from a splatted feature grid at ``size_in``.

    Every layer is modulated by the per-blob spatial styles, splatted with the blob scores at
    that layer's input resolution (``scores_pyramid[height]``).
    """

    def __init__(self, size: int, size_in: int, style_dim: int, c_model: int,
                 c_in: int | None = None, aspect_ratio: float = 1.0, c_out: int = 3,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.size, self.size_in, self.aspect_ratio = size, size_in, aspect_ratio
        ch = lambda r: generator_channels(r, c_model)  # noqa: E731
        self.c_in = c_in or ch(size_in)
        self.conv1 = StyledConv(self.c_in, ch(size_in), 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch(size_in), style_dim, upsample=False, c_out=c_out)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channel = ch(size_in)
        res = size_in
        while res < size:
            res *= 2
            out_channel = ch(res)
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim,
                                         blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, c_out=c_out))
            in_channel = out_channel

    def forward(self, feature_grid: torch.Tensor, spatial_style: torch.Tensor,
                scores_pyramid: dict[int, torch.Tensor],
                generator: torch.Generator | None = None) -> torch.Tensor:
        h = feature_grid.shape[-2]
        out = self.conv1(feature_grid, spatial_style, scores_pyramid[h], generator=generator)
        skip = self.to_rgb1(out, spatial_style, scores_pyramid[h])
        for up, conv, to_rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            out = up(out, spatial_style, scores_pyramid[out.shape[-2]], generator=generator)
            s = scores_pyramid[out.shape[-2]]
            out = conv(out, spatial_style, s, generator=generator)
            skip = to_rgb(out, spatial_style, s, skip)
        return skip


class ConvLayer(nn.Sequential):
    def __init__(self, in_channel, out_channel, kernel_size, downsample=False,
                 blur_kernel=(1, 3, 3, 1), bias=True, activate=True):
        layers = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, stride=stride,
                                  padding=padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_channel, out_channel, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, activate=False,
                              bias=False, blur_kernel=blur_kernel)

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / _SQRT2


class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2's residual discriminator, for square or rectangular (``aspect_ratio``) inputs.

    Residual blocks halve the resolution down to a height of 4 (a 4 x 4*aspect map), then the
    minibatch standard deviation, a 3x3 conv and two linear layers give ``d_out`` logits.
    """

    def __init__(self, size: int, aspect_ratio: float = 1.0, channel_base: int = 16384,
                 channel_max: int = 512, minibatch_std: bool = True, d_out: int = 1,
                 blur_kernel=(1, 3, 3, 1), stddev_group: int = 4):
        super().__init__()
        ch = lambda r: max(1, min(channel_max, channel_base // r))  # noqa: E731
        convs = [ConvLayer(3, ch(size), 1)]
        res, in_channel = size, ch(size)
        while res > 4:
            res //= 2
            convs.append(ResBlock(in_channel, ch(res), blur_kernel))
            in_channel = ch(res)
        self.convs = nn.Sequential(*convs)
        self.minibatch_std, self.stddev_group = minibatch_std, stddev_group
        self.final_conv = ConvLayer(in_channel + int(minibatch_std), ch(4), 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch(4) * 4 * round(4 * aspect_ratio), ch(4), activation=True),
            EqualLinear(ch(4), d_out))

    def forward(self, x):
        out = self.convs(x)
        n, c, h, w = out.shape
        if self.minibatch_std:
            # StyleGAN2 groups samples by min(4, N); the group size must divide the batch.
            group = min(n, self.stddev_group)
            while n % group:
                group -= 1
            std = out.view(group, -1, 1, c, h, w)
            std = torch.sqrt(std.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True)
            std = std.squeeze(2).repeat(group, 1, h, w)
            out = torch.cat([out, std], 1)
        out = self.final_conv(out)
        return self.final_linear(out.reshape(n, -1))
