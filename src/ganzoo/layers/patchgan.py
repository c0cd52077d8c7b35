"""N-layer PatchGAN discriminator (pix2pix / CycleGAN).

Isola et al., Image-to-Image Translation with Conditional Adversarial Networks, CVPR 2017
(arXiv:1611.07004); reference: junyanz/pytorch-CycleGAN-and-pix2pix, ``NLayerDiscriminator``.

The network classifies overlapping patches: every output logit sees one square patch of the
input (70 x 70 pixels for ``n_layers=3``, the paper's default). Layout, as in the reference:

- conv 4x4 stride 2 (no norm) + LeakyReLU(0.2);
- ``n_layers - 1`` times conv 4x4 stride 2 + norm + LeakyReLU(0.2), channels doubling up to
  ``base_channels * max_mult``;
- conv 4x4 stride 1 + norm + LeakyReLU(0.2);
- conv 4x4 stride 1 to one logit channel (no activation: losses take logits).

Every conv uses padding 1. Convs followed by batch norm have no bias (the norm's shift makes it
redundant); with instance norm (affine=False, as in the reference) or no norm they keep it.
Initialisation follows the reference's ``init_weights('normal', 0.02)``.

``antialias=True`` gives CUT's discriminator (taesungp/contrastive-unpaired-translation,
``NLayerDiscriminator`` without ``--no_antialias``, its default): each stride-2 conv becomes a
stride-1 4x4 conv followed, after its norm and LeakyReLU, by a blur-pool
(:class:`~ganzoo.layers.blurpool.BlurDownsample`: reflect pad, [1, 2, 1] blur, stride 2). Same
parameters and the same 30x30 map at 256 px; the receptive field grows from 70 to 84 px.
``init="xavier"`` is CUT's ``--init_type xavier`` (Xavier-normal, gain ``init_gain``).

Departures from the reference: optional spectral norm on every conv (off by default; when it is
on the norm layers are kept, so pass ``norm="none"`` for the usual SN-only discriminator).
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from .blurpool import BlurDownsample
from .common import init_weights, make_norm
from .common import spectral_norm as apply_spectral_norm

__all__ = ["PatchGANDiscriminator", "patchgan_receptive_field", "receptive_field",
           "patchgan_output_size"]

Norm = Literal["batch", "instance", "none"]


def receptive_field(module: nn.Module) -> int:
    """Receptive field (pixels, one side) of the chain of convs/pools in ``module``, in order.

    Only square kernels, strides and dilations are supported; layers without spatial extent
    (norms, activations) are ignored. r_in = (r_out - 1) * stride + dilation * (kernel - 1) + 1,
    applied from the output back to the input.
    """
    spatial = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, BlurDownsample)
    layers = [m for m in module.modules() if isinstance(m, spatial)]
    r = 1
    for m in reversed(layers):
        k, s = m.kernel_size, m.stride
        d = getattr(m, "dilation", 1)
        k = k[0] if isinstance(k, tuple) else k
        s = s[0] if isinstance(s, tuple) else s
        d = d[0] if isinstance(d, tuple) else d
        r = (r - 1) * s + d * (k - 1) + 1
    return r


def patchgan_receptive_field(n_layers: int = 3, antialias: bool = False) -> int:
    """Receptive field of :class:`PatchGANDiscriminator` with ``n_layers`` (70 for 3; 84 with
    ``antialias``)."""
    if n_layers < 0:
        raise ValueError(f"n_layers must be >= 0, got {n_layers}")
    # (kernel, stride) from the output back: two stride-1 4x4 convs, then per downsampling a
    # stride-2 4x4 conv, or (antialias) a 3-tap stride-2 blur after a stride-1 4x4 conv
    down = [(3, 2), (4, 1)] if antialias else [(4, 2)]
    r = 1
    for k, s in [(4, 1), (4, 1)] + down * n_layers:
        r = (r - 1) * s + k
    return r


def patchgan_output_size(input_size: int, n_layers: int = 3, antialias: bool = False) -> int:
    """Side of the logit map for a square input of side ``input_size``."""
    n = input_size
    for _ in range(n_layers):
        if antialias:  # 4x4 conv, stride 1, padding 1; then blur: pad 1, 3 taps, stride 2
            n = (n - 1 + 2 - 3) // 2 + 1
        else:
            n = (n + 2 - 4) // 2 + 1
    for _ in range(2):
        n = n + 2 - 4 + 1
    if n < 1:
        raise ValueError(f"input_size {input_size} is too small for a {n_layers}-layer PatchGAN")
    return n


class PatchGANDiscriminator(nn.Module):
    """N-layer PatchGAN: ``(N, C, H, W)`` images -> ``(N, 1, H', W')`` patch logits.

    Args:
        in_channels: input image channels (6 for a conditional pix2pix D on concatenated pairs).
        base_channels: channels of the first conv (``ndf``, 64 in the paper).
        n_layers: number of stride-2 convs (3 gives the 70x70 PatchGAN).
        norm: ``"batch"`` (reference default), ``"instance"`` or ``"none"``.
        spectral_norm: wrap every conv in spectral normalisation.
        max_mult: channel multiplier cap (``base_channels * max_mult`` at most; 8 in the paper).
        antialias: CUT's anti-aliased downsampling (stride-1 conv, then blur-pool).
        init: ``"normal"`` (pix2pix, N(0, init_gain)) or ``"xavier"`` (CUT, Xavier-normal
            with gain ``init_gain``).
        init_gain: 0.02 in both references.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 64, n_layers: int = 3,
                 norm: Norm = "batch", spectral_norm: bool = False, max_mult: int = 8,
                 antialias: bool = False, init: Literal["normal", "xavier"] = "normal",
                 init_gain: float = 0.02):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {base_channels}")
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        if max_mult < 1:
            raise ValueError(f"max_mult must be >= 1, got {max_mult}")
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")
        if init not in ("normal", "xavier"):
            raise ValueError(f"init must be 'normal' or 'xavier', got {init!r}")
        if init_gain <= 0:
            raise ValueError(f"init_gain must be positive, got {init_gain}")
        self.n_layers, self.antialias = n_layers, antialias
        self.init, self.init_gain = init, init_gain
        use_bias = norm != "batch"

        def conv(c_in, c_out, stride, bias=True):
            return apply_spectral_norm(nn.Conv2d(c_in, c_out, kernel_size=4, stride=stride,
                                                 padding=1, bias=bias), spectral_norm)

        def down(c_in, c_out, bias, normed):
            """One downsampling: a strided conv, or CUT's stride-1 conv then blur-pool."""
            body = [conv(c_in, c_out, 1 if antialias else 2, bias=bias)]
            if normed:
                body.append(make_norm(norm, c_out))
            body.append(nn.LeakyReLU(0.2, True))
            return body + ([BlurDownsample(c_out)] if antialias else [])

        layers: list[nn.Module] = down(in_channels, base_channels, True, normed=False)
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, max_mult)
            layers += down(base_channels * prev, base_channels * mult, use_bias, normed=True)
        prev, mult = mult, min(2 ** n_layers, max_mult)
        layers += [conv(base_channels * prev, base_channels * mult, 1, bias=use_bias),
                   make_norm(norm, base_channels * mult), nn.LeakyReLU(0.2, True)]
        layers.append(conv(base_channels * mult, 1, 1))
        self.model = nn.Sequential(*layers)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``init`` conv weights (N(0, 0.02) or Xavier-normal with gain 0.02), N(1, 0.02)
        batch-norm scales, zero biases (the references' ``init_weights``).

        A no-op for parameters on the ``meta`` device (nothing to initialise)."""
        init_weights(self, self.init, self.init_gain, linear=False)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.model)

    def output_size(self, input_size: int) -> int:
        return patchgan_output_size(input_size, self.n_layers, self.antialias)

    def forward(self, x):
        return self.model(x)
