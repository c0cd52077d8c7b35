"""GeneGAN, and the multi-resolution GeneGAN of genegan_torch.

Paper: Shuchang Zhou, Taihong Xiao, Yi Yang, Dieqiao Feng, Qinyao He, Weiran He, "GeneGAN:
Learning Object Transfiguration and Attribute Subspace from Unpaired Data", BMVC 2017
(arXiv:1705.04932). Reference code: github.com/Prinsphield/GeneGAN (official, TensorFlow, 64 px);
the multi-resolution model and its list of ablations (EXP00-EXP06, ``queue.md``):
github.com/zsc/genegan_torch; the queue that runs them: docs/workflows/genegan_multires.md.

A *splitter* encodes an image into a background code and an object (attribute) code,
``Au -> [A, u]`` for an image with the attribute and ``B0 -> [B, eps]`` for one without; a
*joiner* decodes a pair of codes. The generator step trains both on

- reconstruction ``|Au - join(A, u)| + |B0 - join(B, 0)|`` (L1),
- the nulling loss ``|eps|`` (the object code of an image without the attribute is zero),
- the parallelogram loss ``lambda * |Au + B0 - A0 - Bu|`` with ``A0 = join(A, 0)`` and
  ``Bu = join(B, u)`` (lambda = 0.01),
- WGAN adversarial terms from two critics, one for the with-attribute domain (scores ``Bu``)
  and one for the without domain (scores ``A0``): no sigmoid, weights clipped to +-0.01 after
  every critic step, RMSprop (decay 0.8, lr 5e-5) for both sides,

plus the official weight decay ``sum 0.5 * wd * mean(W**2)`` over the generator's conv
weights (wd = 5e-5). The critic is stepped 100 times every 500 iterations and once otherwise.

Presets: ``genegan`` (the official 64 px network: three stride-2 convs to an 8x8x512 code of
which the last quarter of the channels is the object code; mirrored deconvs; a 4-conv critic
with an fc head), ``genegan_128`` (one more down/up block, as in genegan_torch), and
``genegan_multires`` (EXP00, the baseline of genegan_torch's ``queue.md``):

- inputs and outputs at 64, 96 and 128 px; the splitter's bottleneck is 16x16 at 64 and 128
  and 12x12 at 96 (conv 4/2, conv 4/2, conv 3/1, then a fourth conv 4/2 for every resolution
  but the smallest);
- the joiner is one shared up-sampling trunk and one shared ``to_rgb``; the third up-block runs
  for every resolution but the smallest;
- ``SwitchableBN`` keeps BatchNorm statistics *and* affine parameters per resolution;
- the critics are one fully shared conv trunk, ``adaptive_avg_pool2d`` to 4x4, then fc;
- each iteration averages the losses over the 64, 96 and 128 px versions of the batch in one
  critic step and one generator step.

Config options for the queued experiments: EXP01 ``obj_blockconv`` / ``obj_block_size`` /
``blockconv_subspace`` (a residual block-conv at the bottleneck), EXP02 ``multiscale_outputs``
/ ``multiscale_critics``, EXP03 ``multi_res_mode``, EXP04 ``norm``, EXP05
``scale_weighting``, EXP06 ``init_vqvae_ckpt`` / ``init_vqvae_map``.

The ``genegan`` preset was run against the official model.py with copied weights (every
network in training and test mode, every ``G_loss`` / ``D_loss`` term, their gradients):
tools/compare_genegan.py, docs/genegan.md "Against the authors' code".

Departures, each deliberate:

- Units. Images are in [-1, 1] (ganzoo's convention); the official code works on 0..255
  pixels, feeds x/255 to the splitter and critics, divides the L1 reconstruction by 255 and
  applies lambda = 0.01 to the parallelogram residual *in 0..255 pixels*. We keep those units
  for the losses so the official weights keep their meaning: the reconstruction is measured on
  [0, 1] pixels (``0.5 * |diff|`` of [-1, 1] tensors) and the parallelogram residual on 0..255
  pixels (``127.5 * |diff|``); the splitter and critics see ``(x + 1) / 2``.
- Multi-resolution batches. genegan_torch's trainer draws a separate batch per resolution; the
  ganzoo trainer hands the family one batch at the dataset's resolution, which we resize
  (bilinear, antialiased) to each training resolution. The three resolutions therefore see
  the same images in one iteration.
- ``multi_res_mode="random"`` draws one resolution per iteration with a generator seeded from
  ``(config.seed, step)``, so the critic and generator steps of an iteration agree and a resumed
  run draws the same sequence. Its loss is multiplied by the number of resolutions times that
  resolution's scale weight, an unbiased estimate of the ``all`` objective.
- Block-conv (EXP01): every block of the bottleneck grid has its own kernel, but a block's
  convolution reads its neighbours across the block edge (zero padding only at the border of
  the map); genegan_torch's implementation zero-pads every block on its own. Ours equals one plain
  ``Conv2d`` exactly when all blocks share a kernel.
- BatchNorm running statistics. The official ``d_opt`` and ``g_opt`` are built under
  ``control_dependencies(UPDATE_OPS)`` (model.py), so every critic step and every generator
  step moves the moving statistics of every BatchNorm of the graph; its test.py builds
  ``Model(is_train=False)`` and infers with them. We update the splitter's and joiner's in
  generator steps only, as genegan_torch does (``generator_bn_update="all_steps"`` gives the
  official behaviour), and the critics' with the images they score in each step (the
  official generator step also passes the real images through them; the critics' running
  statistics are never used). BatchNorm uses TF's eps 1e-3 and momentum 0.01.
- RMSprop: torch's accumulator starts at 0 (TensorFlow's ``RMSPropOptimizer`` at 1) and adds
  eps 1e-8 outside the square root (TensorFlow: 1e-10 inside). The learning rate is a
  constant 5e-5 in both (the official ``decay_rate`` is 1 since its commit d57128a).
- No EMA of the splitter/joiner: neither reference uses one, the critic weight clipping and
  RMSprop at 5e-5 already move the generator slowly, and genegan_torch's FIDs were measured on the
  live weights, so EMA would make the experiments incomparable to them.
- ``transfer`` and the evaluation outputs use the networks in whatever mode the model is in;
  the ganzoo trainer calls them in ``eval()`` mode (running statistics), as the official
  test.py does (``is_train=False``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import config as cfg
from ..layers.common import init_weights, is_pow2
from ..losses.adversarial import WGANLoss, clip_weights
from ..registry import register_model
from .base import DONOR, INPUT, Batch, GenerativeModel, OptimizerSpec
from .warmstart import warm_start

__all__ = [
    "GeneGANConfig", "SwitchableBN", "BlockConv2d", "GeneGANSplitter", "GeneGANJoiner",
    "GeneGANCritic", "GeneGAN",
]


@dataclass
class GeneGANConfig(cfg.Config):
    """Hyperparameters of every GeneGAN preset. Loss weights use the official units (above)."""
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "image_channels": "channels",
        "critic_steps": "n_critic",
    }

    arch: Literal["genegan", "multires"] = "genegan"
    resolutions: tuple[int, ...] = (64,)  # training / output resolutions, ascending
    channels: int = 3
    base_channels: int = 128  # widths: b, 2b, 4b (the official 128, 256, 512)
    object_ratio: float = 0.25  # share of the bottleneck channels that is the object code
    norm: Literal["switchable_bn", "group_norm"] = "switchable_bn"  # EXP04, in G and D
    norm_groups: int = 32
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01
    # Which steps update the splitter's and joiner's BatchNorm running statistics:
    # "generator_steps" (genegan_torch) or "all_steps" (Prinsphield/GeneGAN model.py, whose
    # d_opt and g_opt both run every UPDATE_OPS of the graph); see docs/genegan.md.
    generator_bn_update: Literal["generator_steps", "all_steps"] = "generator_steps"
    init_std: float = 0.02
    # multi-resolution training
    multi_res_mode: Literal["all", "random"] = "all"  # EXP03
    scale_weighting: Literal["equal", "s2", "inv_s2"] = "equal"  # EXP05
    seed: int = 0  # seeds the per-step resolution draw of multi_res_mode="random"
    # EXP01: residual block-conv at the bottleneck
    obj_blockconv: bool = False
    obj_block_size: int = 4  # side of one block in bottleneck pixels (16x16 -> 4x4 grid)
    blockconv_subspace: Literal["object", "both"] = "object"
    blockconv_kernel: int = 3
    # EXP02: 128-in, outputs at every resolution through 1x1 heads, multi-scale losses
    multiscale_outputs: bool = False
    multiscale_critics: bool = False  # adversarial loss at every scale (default: largest)
    # EXP06: warm start of splitter/joiner from a VQ-VAE checkpoint
    init_vqvae_ckpt: str | None = None
    init_vqvae_map: str | None = None  # JSON {checkpoint key: "splitter.*" / "joiner.*" key}
    # Model tensors neither mapped nor named alike take checkpoint tensors of the same shape
    # (ganzoo.models.warmstart), as genegan_torch's EXP06b runs without a mapping file.
    init_vqvae_shape_match: bool = True
    # loss weights
    cycle_weight: float = 1.0
    nulling_weight: float = 1.0
    parallelogram_weight: float = 0.01
    adversarial_weight: float = 1.0
    weight_decay: float = 5e-5
    # optimisation
    lr: float = 5e-5
    rmsprop_alpha: float = 0.8
    n_critic: int = 1
    critic_burst_steps: int = 100  # critic steps on every critic_burst_every-th iteration
    critic_burst_every: int = 500  # 0 disables the bursts
    clip_value: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        res = tuple(self.resolutions)
        if not res:
            raise ValueError("resolutions must name at least one resolution")
        if list(res) != sorted(set(res)):
            raise ValueError(f"resolutions must be strictly ascending, got {list(res)}")
        if any(r < 16 or r % 8 for r in res):
            raise ValueError(f"resolutions must be multiples of 8 and >= 16, got {list(res)}")
        if self.arch == "genegan":
            if len(res) != 1 or not is_pow2(res[0] // 8) or res[0] % 8:
                raise ValueError(f"resolutions: arch 'genegan' takes one power-of-two "
                                 f"resolution >= 16, got {list(res)}")
        else:
            if not is_pow2(res[0] // 4) or res[0] % 4:
                raise ValueError(f"resolutions: the smallest multires resolution divided by 4 "
                                 f"must be a power of two, got {res[0]}")
        if self.multiscale_outputs and (self.arch != "multires" or len(res) < 2):
            raise ValueError("multiscale_outputs needs arch='multires' and several resolutions")
        if self.multiscale_outputs and self.multi_res_mode != "all":
            raise ValueError("multi_res_mode must be 'all' with multiscale_outputs (the input "
                             "is always the largest resolution)")
        if self.multiscale_critics and not self.multiscale_outputs:
            raise ValueError("multiscale_critics needs multiscale_outputs=True")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.base_channels < 1:
            raise ValueError(f"base_channels must be >= 1, got {self.base_channels}")
        if not 0.0 < self.object_ratio < 1.0:
            raise ValueError(f"object_ratio must be in (0, 1), got {self.object_ratio}")
        n_obj = int(self.bottleneck_channels * self.object_ratio)
        if not 0 < n_obj < self.bottleneck_channels:
            raise ValueError(f"object_ratio {self.object_ratio} of {self.bottleneck_channels} "
                             f"bottleneck channels leaves an empty code")
        if self.norm == "group_norm":
            widths = {self.base_channels * m for m in (1, 2, 4)} | {n_obj}
            if self.blockconv_subspace == "both":
                widths.add(self.bottleneck_channels - n_obj)
            bad = sorted(w for w in widths if w % self.norm_groups)
            if self.norm_groups < 1 or bad:
                raise ValueError(f"norm_groups={self.norm_groups} must divide every normalised "
                                 f"width; these do not: {bad}")
        if self.obj_block_size < 1:
            raise ValueError(f"obj_block_size must be >= 1, got {self.obj_block_size}")
        if self.obj_blockconv:
            bad = [s for s in self.bottleneck_sizes if s % self.obj_block_size]
            if bad:
                raise ValueError(f"obj_block_size={self.obj_block_size} must divide every "
                                 f"bottleneck size; it does not divide {bad}")
        if self.blockconv_kernel < 1 or self.blockconv_kernel % 2 == 0:
            raise ValueError(f"blockconv_kernel must be odd, got {self.blockconv_kernel}")
        for name in ("cycle_weight", "nulling_weight", "parallelogram_weight",
                     "adversarial_weight", "weight_decay", "bn_eps", "init_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in [0, 1], got {self.bn_momentum}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0.0 <= self.rmsprop_alpha < 1.0:
            raise ValueError(f"rmsprop_alpha must be in [0, 1), got {self.rmsprop_alpha}")
        if self.n_critic < 1 or self.critic_burst_steps < 1 or self.critic_burst_every < 0:
            raise ValueError("n_critic and critic_burst_steps must be >= 1 and "
                             "critic_burst_every >= 0")
        if self.clip_value <= 0:
            raise ValueError(f"clip_value must be positive, got {self.clip_value}")
        if self.init_vqvae_map is not None and self.init_vqvae_ckpt is None:
            raise ValueError("init_vqvae_map needs init_vqvae_ckpt")

    # -- derived sizes -----------------------------------------------------------------------
    @property
    def input_resolutions(self) -> tuple[int, ...]:
        """Resolutions the splitter sees: only the largest with ``multiscale_outputs``."""
        return (self.resolutions[-1],) if self.multiscale_outputs else tuple(self.resolutions)

    def uses_deep_block(self, resolution: int) -> bool:
        """Multires: the fourth down-block and third up-block run above the smallest size."""
        return self.arch == "multires" and resolution != self.resolutions[0]

    def bottleneck_size(self, resolution: int) -> int:
        if self.arch == "genegan":
            return 8
        return resolution // 8 if self.uses_deep_block(resolution) else resolution // 4

    @property
    def bottleneck_sizes(self) -> tuple[int, ...]:
        return tuple(sorted({self.bottleneck_size(r) for r in self.input_resolutions}))

    @property
    def encoder_widths(self) -> list[int]:
        b = self.base_channels
        if self.arch == "multires":
            return [b, 2 * b, 4 * b, 4 * b]
        n_down = int(math.log2(self.resolutions[0] // 8))
        return [min(b * 2 ** i, 4 * b) for i in range(n_down)]

    @property
    def bottleneck_channels(self) -> int:
        return self.encoder_widths[-1]

    @property
    def object_channels(self) -> int:
        return int(self.bottleneck_channels * self.object_ratio)

    @property
    def critic_depth(self) -> int:
        """Stride-2 convs of the critic: down to 4x4 at the smallest resolution."""
        return int(math.log2(self.resolutions[0] // 4))


# -- blocks -----------------------------------------------------------------------------------
class SwitchableBN(nn.Module):
    """BatchNorm with separate running statistics and affine parameters per resolution."""

    def __init__(self, channels: int, resolutions, eps: float = 1e-3, momentum: float = 0.01):
        super().__init__()
        self.resolutions = tuple(int(r) for r in resolutions)
        self.bns = nn.ModuleDict({str(r): nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
                                  for r in self.resolutions})

    def forward(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        key = str(int(resolution))
        if key not in self.bns:
            raise ValueError(f"SwitchableBN has statistics for {list(self.resolutions)}, "
                             f"not {resolution}")
        return self.bns[key](x)


class _GroupNorm(nn.GroupNorm):
    """GroupNorm with SwitchableBN's call signature (the resolution is ignored)."""

    def forward(self, x: torch.Tensor, resolution: int | None = None) -> torch.Tensor:
        return super().forward(x)


def _norm(config: GeneGANConfig, channels: int, resolutions) -> nn.Module:
    if config.norm == "group_norm":
        return _GroupNorm(config.norm_groups, channels)
    return SwitchableBN(channels, resolutions, eps=config.bn_eps, momentum=config.bn_momentum)


class _ConvBlock(nn.Module):
    """conv (or deconv) -> optional resolution-aware norm -> activation."""

    def __init__(self, conv: nn.Module, norm: nn.Module | None, act: nn.Module | None):
        super().__init__()
        self.conv = conv
        self.norm = norm
        self.act = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x, resolution)
        return self.act(x)


class BlockConv2d(nn.Module):
    """A convolution whose kernel changes from one spatial block to the next.

    The (H, W) map is cut into a ``grid x grid`` array of non-overlapping blocks; the output in
    block k is ``conv2d(x, weight[k])`` evaluated on that block, reading neighbours across block
    edges ("same" zero padding only at the map border). With one kernel for all blocks this is
    exactly ``nn.Conv2d(..., padding=k // 2, bias=False)``. Runs as one batched matmul.
    """

    def __init__(self, in_channels: int, out_channels: int, grid: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.grid, self.kernel_size = grid, kernel_size
        self.weight = nn.Parameter(
            torch.empty(grid * grid, out_channels, in_channels, kernel_size, kernel_size))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g, k = self.grid, self.kernel_size
        if h % g or w % g:
            raise ValueError(f"BlockConv2d with a {g}x{g} grid needs H and W divisible by {g}, "
                             f"got {h}x{w}")
        bh, bw = h // g, w // g
        cols = F.unfold(x, k, padding=k // 2)  # (n, c*k*k, h*w)
        cols = cols.view(n, c * k * k, g, bh, g, bw).permute(2, 4, 0, 3, 5, 1)
        cols = cols.reshape(g * g, n * bh * bw, c * k * k)
        weight = self.weight.view(g * g, self.out_channels, c * k * k).transpose(1, 2)
        out = torch.bmm(cols, weight)  # (g*g, n*bh*bw, out)
        out = out.view(g, g, n, bh, bw, self.out_channels).permute(2, 5, 0, 3, 1, 4)
        return out.reshape(n, self.out_channels, h, w)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, grid={self.grid}, "
                f"kernel_size={self.kernel_size}")


class _ResidualBlockConv(nn.Module):
    """``x + lrelu(norm(blockconv(x)))`` with one block-conv per bottleneck size."""

    def __init__(self, config: GeneGANConfig, channels: int):
        super().__init__()
        self.convs = nn.ModuleDict({
            str(s): BlockConv2d(channels, channels, s // config.obj_block_size,
                                config.blockconv_kernel)
            for s in config.bottleneck_sizes})
        self.norm = _norm(config, channels, config.input_resolutions)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor, resolution: int) -> torch.Tensor:
        return x + self.act(self.norm(self.convs[str(x.shape[-1])](x), resolution))


# -- networks ---------------------------------------------------------------------------------
class GeneGANSplitter(nn.Module):
    """Image -> (background code, object code); the object code is the last channels."""

    def __init__(self, config: GeneGANConfig):
        super().__init__()
        self.config = config
        res = config.input_resolutions
        widths = config.encoder_widths
        blocks, c_in = [], config.channels
        for i, c_out in enumerate(widths):
            if config.arch == "multires" and i == 2:
                conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)  # keeps the size
            else:
                conv = nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False)
            used_at = [r for r in res
                       if config.arch == "genegan" or i < 3 or config.uses_deep_block(r)]
            norm = None if i == 0 else _norm(config, c_out, used_at)
            blocks.append(_ConvBlock(conv, norm, nn.LeakyReLU(0.2)))
            c_in = c_out
        if config.arch == "multires" and not any(config.uses_deep_block(r) for r in res):
            blocks = blocks[:3]  # e.g. resolutions=(64,): the fourth block would never run
        self.blocks = nn.ModuleList(blocks)
        self.n_object = config.object_channels
        self.n_background = config.bottleneck_channels - self.n_object
        self.object_blockconv = self.background_blockconv = None
        if config.obj_blockconv:
            self.object_blockconv = _ResidualBlockConv(config, self.n_object)
            if config.blockconv_subspace == "both":
                self.background_blockconv = _ResidualBlockConv(config, self.n_background)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = x.shape[-1]
        if x.shape[-2] != r or r not in self.config.input_resolutions:
            raise ValueError(f"splitter takes square inputs at "
                             f"{list(self.config.input_resolutions)} px, got {tuple(x.shape)}")
        h = x * 0.5 + 0.5  # the official splitter sees pixels in [0, 1]
        n_blocks = len(self.blocks)
        if self.config.arch == "multires" and not self.config.uses_deep_block(r):
            n_blocks = 3
        for block in self.blocks[:n_blocks]:
            h = block(h, r)
        bg, obj = torch.split(h, [self.n_background, self.n_object], dim=1)
        if self.object_blockconv is not None:
            obj = self.object_blockconv(obj, r)
        if self.background_blockconv is not None:
            bg = self.background_blockconv(bg, r)
        return bg, obj


class GeneGANJoiner(nn.Module):
    """(background code, object code) -> image in [-1, 1] at the requested resolution."""

    def __init__(self, config: GeneGANConfig):
        super().__init__()
        self.config = config
        res = config.input_resolutions
        c = config.bottleneck_channels
        blocks = []
        if config.arch == "genegan":
            # Official: the first deconv keeps the width, the next ones halve it, the last
            # one maps to RGB (64 px: 512 -> 512 -> 256 -> 3).
            n_up = len(config.encoder_widths)
            widths = [c // 2 ** i for i in range(n_up - 1)]
            c_in = c
            for c_out in widths:
                blocks.append(_ConvBlock(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False),
                                         _norm(config, c_out, res), nn.ReLU()))
                c_in = c_out
            self.to_rgb = nn.ConvTranspose2d(c_in, config.channels, 4, 2, 1, bias=True)
        else:
            # Multires: a shared trunk 4b -> 2b -> 2b (-> 2b) and a shared 3x3 to_rgb.
            b2 = 2 * config.base_channels
            n_up = 3 if any(config.uses_deep_block(r) for r in res) else 2
            c_in = c
            for i in range(n_up):
                used_at = [r for r in res if i < 2 or config.uses_deep_block(r)]  # multires
                blocks.append(_ConvBlock(nn.ConvTranspose2d(c_in, b2, 4, 2, 1, bias=False),
                                         _norm(config, b2, used_at), nn.ReLU()))
                c_in = b2
            self.to_rgb = nn.Conv2d(b2, config.channels, 3, 1, 1, bias=True)
        self.blocks = nn.ModuleList(blocks)
        # EXP02: light 1x1 heads on the largest output resized to each smaller scale.
        self.heads = nn.ModuleDict()
        if config.multiscale_outputs:
            for s in config.resolutions[:-1]:
                head = nn.Conv2d(config.channels, config.channels, 1)
                self.heads[str(s)] = head

    def logits(self, bg: torch.Tensor, obj: torch.Tensor, resolution: int) -> torch.Tensor:
        """Pre-tanh output at ``resolution`` (one of the input resolutions)."""
        h = torch.cat([bg, obj], dim=1)
        n_blocks = len(self.blocks)
        if self.config.arch == "multires" and not self.config.uses_deep_block(resolution):
            n_blocks = 2
        for block in self.blocks[:n_blocks]:
            h = block(h, resolution)
        out = self.to_rgb(h)
        if out.shape[-1] != resolution:
            raise ValueError(f"joiner made {out.shape[-1]} px from a {bg.shape[-1]}x"
                             f"{bg.shape[-2]} code, but {resolution} px was requested")
        return out

    def forward(self, bg: torch.Tensor, obj: torch.Tensor, resolution: int) -> torch.Tensor:
        return torch.tanh(self.logits(bg, obj, resolution))

    def multiscale(self, bg: torch.Tensor, obj: torch.Tensor) -> dict[int, torch.Tensor]:
        """EXP02: the largest output and, through the 1x1 heads, every smaller scale."""
        top = self.config.resolutions[-1]
        logits = self.logits(bg, obj, top)
        outs = {top: torch.tanh(logits)}
        for s in self.config.resolutions[:-1]:
            outs[s] = torch.tanh(self.heads[str(s)](_resize(logits, s)))
        return outs


class GeneGANCritic(nn.Module):
    """WGAN critic (no sigmoid): stride-2 convs, ``adaptive_avg_pool2d`` to 4x4, then fc.

    At the smallest resolution the trunk ends at 4x4 (official: 64 px -> 4x4x512 -> fc), so the
    pooling only acts on larger inputs.
    """

    def __init__(self, config: GeneGANConfig, resolutions):
        super().__init__()
        self.resolutions = tuple(resolutions)
        b = config.base_channels
        blocks, c_in = [], config.channels
        for i in range(config.critic_depth):
            c_out = min(b * 2 ** i, 4 * b)
            norm = None if i == 0 else _norm(config, c_out, self.resolutions)
            blocks.append(_ConvBlock(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), norm,
                                     nn.LeakyReLU(0.2)))
            c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c_in * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = x.shape[-1]
        h = x * 0.5 + 0.5  # the official critic sees pixels in [0, 1]
        for block in self.blocks:
            h = block(h, r)
        h = F.adaptive_avg_pool2d(h, 4)
        return self.fc(h.flatten(1)).squeeze(1)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=size < x.shape[-1])


@contextmanager
def _frozen_bn_statistics(*modules: nn.Module):
    """Use batch statistics but leave running statistics untouched (momentum 0)."""
    bns = [m for mod in modules for m in mod.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum


# -- the family -------------------------------------------------------------------------------
class GeneGAN(GenerativeModel):
    """GeneGAN: splitter + joiner trained against two WGAN critics (with / without)."""

    config_class = GeneGANConfig
    family = "genegan"
    paper = ("Zhou, Xiao, Yang, Feng, He, He, GeneGAN: Learning Object Transfiguration and "
             "Attribute Subspace from Unpaired Data, BMVC 2017 (arXiv:1705.04932)")
    task = "transfer"
    batch_keys = ("image_with", "image_without")
    default_dataset = "shapes_attr"
    eval_references = {"bu": {"subset": "with"}, "a0": {"subset": "without"}}
    # The authors' train.py feeds every critic and generator step a batch of its own.
    shares_batches = False

    def __init__(self, config: GeneGANConfig):
        super().__init__(config)
        self.splitter = GeneGANSplitter(config)
        self.joiner = GeneGANJoiner(config)
        top = config.resolutions[-1]
        critic_res = (top,) if config.multiscale_outputs else config.input_resolutions
        self.critic_with = GeneGANCritic(config, critic_res)
        self.critic_without = GeneGANCritic(config, critic_res)
        self.scale_critics = nn.ModuleDict()  # EXP02 option: "with_64", "without_64", ...
        if config.multiscale_critics:
            for s in config.resolutions[:-1]:
                self.scale_critics[f"with_{s}"] = GeneGANCritic(config, (s,))
                self.scale_critics[f"without_{s}"] = GeneGANCritic(config, (s,))
        for net in (self.splitter, self.joiner, self.critic_with, self.critic_without,
                    self.scale_critics):
            # N(0, init_std) weights, zero biases, norms at PyTorch's defaults (genegan_torch)
            init_weights(net, "normal", config.init_std, norms=False, extra=(BlockConv2d,))
        for head in self.joiner.heads.values():  # start as the identity on the resized output
            nn.init.eye_(head.weight.view(head.weight.shape[0], -1))
            nn.init.zeros_(head.bias)
        self.adversarial = WGANLoss()

    @classmethod
    def from_config(cls, config=None, *, preset: str | None = None, **overrides):
        model = super().from_config(config, preset=preset, **overrides)
        c = model.config
        if c.init_vqvae_ckpt is not None and model.device.type != "meta":
            model.vqvae_init_report = warm_start(
                model, c.init_vqvae_ckpt, c.init_vqvae_map, prefixes=("splitter.", "joiner."),
                shape_match=c.init_vqvae_shape_match, ckpt_field="init_vqvae_ckpt",
                map_field="init_vqvae_map")
        return model

    @property
    def image_size(self) -> tuple[int, int]:
        """The top resolution (``transfer`` outputs, the largest of ``resolutions``)."""
        return self.config.resolutions[-1], self.config.resolutions[-1]

    @property
    def channels(self) -> int:
        return self.config.channels

    # -- training contract ------------------------------------------------------------------
    @property
    def critic_networks(self) -> tuple[str, ...]:
        extra = ("scale_critics",) if self.config.multiscale_critics else ()
        return ("critic_with", "critic_without") + extra

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        rms = dict(optimizer="rmsprop", lr=c.lr, alpha=c.rmsprop_alpha)
        return {
            "critic": OptimizerSpec(self.critic_networks, steps=c.n_critic, **rms),
            "generator": OptimizerSpec(("splitter", "joiner"), **rms),
        }

    def schedule(self, step: int) -> list[str]:
        """Official schedule: 100 critic steps every 500th iteration, else ``n_critic``."""
        c = self.config
        burst = c.critic_burst_every > 0 and step % c.critic_burst_every == 0
        return ["critic"] * (c.critic_burst_steps if burst else c.n_critic) + ["generator"]

    def scale_weights(self) -> dict[int, float]:
        """EXP05: the weight of each resolution's loss (sums to 1)."""
        res = self.config.resolutions
        raw = {"equal": [1.0] * len(res), "s2": [float(s * s) for s in res],
               "inv_s2": [1.0 / (s * s) for s in res]}[self.config.scale_weighting]
        return {s: w / sum(raw) for s, w in zip(res, raw)}

    def iteration_resolutions(self, step: int) -> dict[int, float]:
        """Input resolutions trained in iteration ``step`` and their loss weights."""
        c = self.config
        if c.multiscale_outputs:
            return {c.resolutions[-1]: 1.0}
        weights = self.scale_weights()
        if c.multi_res_mode == "all" or len(c.resolutions) == 1:
            return weights
        gen = torch.Generator().manual_seed(c.seed * 1_000_003 + int(step))
        s = c.resolutions[int(torch.randint(len(c.resolutions), (1,), generator=gen))]
        return {s: weights[s] * len(c.resolutions)}

    def _split_join(self, au: torch.Tensor, b0: torch.Tensor, resolution: int):
        a, u = self.splitter(au)
        b, eps = self.splitter(b0)
        zero = torch.zeros_like(u)
        if self.config.multiscale_outputs:
            j = self.joiner.multiscale
            return eps, j(a, u), j(b, zero), j(a, zero), j(b, u)
        r = resolution
        return (eps, {r: self.joiner(a, u, r)}, {r: self.joiner(b, zero, r)},
                {r: self.joiner(a, zero, r)}, {r: self.joiner(b, u, r)})

    def _critics_at(self, s: int) -> tuple[nn.Module, nn.Module] | None:
        c = self.config
        if not c.multiscale_outputs or s == c.resolutions[-1]:
            return self.critic_with, self.critic_without
        if c.multiscale_critics:
            return self.scale_critics[f"with_{s}"], self.scale_critics[f"without_{s}"]
        return None

    def _adversarial_weights(self, res_weights: dict[int, float]) -> dict[int, float]:
        if not self.config.multiscale_outputs:
            return res_weights
        scales = [s for s in self.config.resolutions if self._critics_at(s) is not None]
        w = self.scale_weights()
        total = sum(w[s] for s in scales)
        return {s: w[s] / total for s in scales}

    def loss(self, group: str, batch: Batch, step: int = 0):
        au_full, b0_full = batch["image_with"], batch["image_without"]
        res_weights = self.iteration_resolutions(step)
        logs: dict[str, Any] = {}
        if len(res_weights) == 1 and len(self.config.input_resolutions) > 1:
            logs["resolution"] = float(next(iter(res_weights)))
        if group == "critic":
            total = self._critic_loss(au_full, b0_full, res_weights, logs)
        else:
            total = self._generator_loss(au_full, b0_full, res_weights, logs)
        logs[f"{group}_loss"] = total.detach()
        return total, logs

    def _critic_loss(self, au_full, b0_full, res_weights, logs) -> torch.Tensor:
        total = au_full.new_zeros(())
        for r, w_r in res_weights.items():
            au, b0 = _resize(au_full, r), _resize(b0_full, r)
            frozen = ((self.splitter, self.joiner)
                      if self.config.generator_bn_update == "generator_steps" else ())
            with torch.no_grad(), _frozen_bn_statistics(*frozen):
                _, _, _, a0s, bus = self._split_join(au, b0, r)
            adv_w = self._adversarial_weights({r: w_r})
            for s, w_s in adv_w.items():
                d_with, d_without = self._critics_at(s)
                au_s, b0_s = _resize(au, s), _resize(b0, s)
                l_with = self.adversarial.d_loss(d_with(au_s), d_with(bus[s]))
                l_without = self.adversarial.d_loss(d_without(b0_s), d_without(a0s[s]))
                total = total + w_s * (l_with + l_without)
                logs[f"d_with@{s}"] = l_with.detach()
                logs[f"d_without@{s}"] = l_without.detach()
        return self.config.adversarial_weight * total

    def _generator_loss(self, au_full, b0_full, res_weights, logs) -> torch.Tensor:
        c = self.config
        total = au_full.new_zeros(())
        for r, w_r in res_weights.items():
            au, b0 = _resize(au_full, r), _resize(b0_full, r)
            eps, au_hat, b0_hat, a0s, bus = self._split_join(au, b0, r)
            nulling = eps.abs().mean()
            total = total + w_r * c.nulling_weight * nulling
            logs[f"nulling@{r}"] = nulling.detach()
            scale_w = self.scale_weights() if c.multiscale_outputs else {r: w_r}
            for s, w_s in scale_w.items():
                au_s, b0_s = _resize(au, s), _resize(b0, s)
                terms = self.reconstruction_terms(au_s, b0_s, au_hat[s], b0_hat[s], a0s[s], bus[s])
                total = total + w_s * (c.cycle_weight * (terms["cycle_with"]
                                                         + terms["cycle_without"])
                                       + c.parallelogram_weight * terms["parallelogram"])
                for k, v in terms.items():
                    logs[f"{k}@{s}"] = v.detach()
            adv_w = self._adversarial_weights({r: w_r})
            for s, w_s in adv_w.items():
                d_with, d_without = self._critics_at(s)
                g_with = self.adversarial.g_loss(d_with(bus[s]))
                g_without = self.adversarial.g_loss(d_without(a0s[s]))
                total = total + w_s * c.adversarial_weight * (g_with + g_without)
                logs[f"g_with@{s}"] = g_with.detach()
                logs[f"g_without@{s}"] = g_without.detach()
        if c.weight_decay > 0:
            decay = self.generator_weight_decay()
            total = total + decay
            logs["weight_decay"] = decay.detach()
        return total

    @staticmethod
    def reconstruction_terms(au, b0, au_hat, b0_hat, a0, bu) -> dict[str, torch.Tensor]:
        """Unweighted image-space terms in the official units (see the module docstring).

        ``cycle_*``: mean L1 on [0, 1] pixels; ``parallelogram``: mean
        ``|Au + B0 - A0 - Bu|`` on 0..255 pixels (before ``parallelogram_weight`` = 0.01).
        """
        return {
            "cycle_with": 0.5 * (au - au_hat).abs().mean(),
            "cycle_without": 0.5 * (b0 - b0_hat).abs().mean(),
            "parallelogram": 127.5 * (au + b0 - a0 - bu).abs().mean(),
        }

    def generator_weight_decay(self) -> torch.Tensor:
        """Official ``sum 0.5 * wd * mean(W**2)`` over the generator's conv kernels."""
        kernels = [m.weight for net in (self.splitter, self.joiner) for m in net.modules()
                   if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, BlockConv2d))]
        return 0.5 * self.config.weight_decay * torch.stack(
            [w.square().mean() for w in kernels]).sum()

    def after_step(self, group: str, step: int) -> None:
        if group == "critic":
            for name in self.critic_networks:
                clip_weights(getattr(self, name), self.config.clip_value)

    # -- task -------------------------------------------------------------------------------
    def _resolutions_for(self, x: torch.Tensor, resolution: int | None) -> tuple[int, int]:
        """(encoder input resolution, output resolution) for images ``x``."""
        c = self.config
        if resolution is None:
            resolution = x.shape[-1] if x.shape[-1] in c.resolutions else c.resolutions[-1]
        if resolution not in c.resolutions:
            raise ValueError(f"resolution must be one of {list(c.resolutions)}, got {resolution}")
        return (c.resolutions[-1] if c.multiscale_outputs else resolution), resolution

    def _encode(self, x: torch.Tensor, resolution: int | None):
        r_in, r_out = self._resolutions_for(x, resolution)
        with self.inference():
            bg, obj = self.inference_net("splitter")(_resize(x, r_in))
        return bg, obj, r_out

    def _decode(self, bg: torch.Tensor, obj: torch.Tensor, r_out: int) -> torch.Tensor:
        joiner = self.inference_net("joiner")
        with self.inference():
            if self.config.multiscale_outputs:
                return joiner.multiscale(bg, obj)[r_out]
            return joiner(bg, obj, r_out)

    @torch.no_grad()
    def transfer(self, au: torch.Tensor, b0: torch.Tensor, strength: float = 1.0,
                 resolution: int | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Move the attribute from ``au`` to ``b0``: returns ``(A0, Bu)``.

        ``A0 = join(A, 0)`` is ``au`` with its attribute removed; ``Bu = join(B, strength * u)``
        is ``b0`` given ``au``'s attribute (``strength`` scales the object code: 0 removes it,
        values between 0 and 1 interpolate, above 1 exaggerate). Images are resized to the
        model's resolution when needed (``resolution``: the output size, default the input's
        when supported, else the largest). The model is deterministic; ``generator`` is
        accepted for API uniformity.
        """
        a, u, r = self._encode(au, resolution)
        b, _, _ = self._encode(b0, r)
        a0 = self._decode(a, torch.zeros_like(u), r)
        bu = self._decode(b, strength * u, r)
        return a0, bu

    @torch.no_grad()
    def swap(self, x: torch.Tensor, y: torch.Tensor,
             resolution: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Exchange the object codes of any two images.

        Returns ``(join(bg_x, obj_y), join(bg_y, obj_x))``; with ``x`` = Au and ``y`` = B0 the
        second image is Bu.
        """
        bx, ox, r = self._encode(x, resolution)
        by, oy, _ = self._encode(y, r)
        return self._decode(bx, oy, r), self._decode(by, ox, r)

    @torch.no_grad()
    def interpolate(self, image: torch.Tensor, reference: torch.Tensor, strengths,
                    resolution: int | None = None) -> torch.Tensor:
        """``join(B, s * u_ref)`` for each strength ``s``: a (len(strengths), N, C, H, W) stack
        that grows the reference's attribute on ``image`` (the official "interpolation" demo)."""
        b, _, r = self._encode(image, resolution)
        _, u, _ = self._encode(reference, r)
        return torch.stack([self._decode(b, float(s) * u, r) for s in strengths])

    def _pair(self, batch: Batch | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        if batch is None or "image_with" not in batch or "image_without" not in batch:
            raise ValueError("GeneGAN needs a batch with 'image_with' and 'image_without'")
        return batch["image_with"][:n], batch["image_without"][:n]

    @torch.no_grad()
    def generate(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                 **options) -> dict[str, torch.Tensor]:
        """``bu`` (scored against with-attribute images) and ``a0`` (against without) of a
        dataset's pairs. Outside images (``INPUT``) give one output each: ``bu``, the image
        with the ``DONOR``'s attribute, when there is a donor, else ``a0``, the image with
        its attribute removed."""
        self.check_sampling_options(options)
        if batch is not None and INPUT in batch:
            x = batch[INPUT][:n]
            if batch.get(DONOR) is None:
                return {"a0": self.transfer(x, x)[0]}
            return {"bu": self.transfer(batch[DONOR].expand(len(x), -1, -1, -1), x)[1]}
        au, b0 = self._pair(batch, n)
        a0, bu = self.transfer(au, b0)
        return {"bu": bu, "a0": a0}

    @torch.no_grad()
    def preview(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                **options) -> torch.Tensor:
        """Four rows of ``n``: Au, B0, A0, Bu (inputs resized to the output resolution)."""
        au, b0 = self._pair(batch, n)
        out = self.generate(batch, n, generator, **options)
        r = out["a0"].shape[-1]
        return torch.cat([_resize(au, r), _resize(b0, r), out["a0"], out["bu"]])


# -- presets ----------------------------------------------------------------------------------
@register_model
def genegan(**kwargs) -> GeneGAN:
    """GeneGAN at 64 px, the official network (Zhou et al. 2017)."""
    return GeneGAN.from_config(GeneGANConfig(), preset="genegan", **kwargs)


@register_model
def genegan_128(**kwargs) -> GeneGAN:
    """GeneGAN at 128 px: one more down/up block and critic conv (as in genegan_torch)."""
    return GeneGAN.from_config(GeneGANConfig(resolutions=(128,)), preset="genegan_128",
                               **kwargs)


@register_model
def genegan_multires(**kwargs) -> GeneGAN:
    """Multi-resolution GeneGAN at 64/96/128 px, genegan_torch's EXP00 baseline
    (docs/workflows/genegan_multires.md)."""
    return GeneGAN.from_config(GeneGANConfig(arch="multires", resolutions=(64, 96, 128)),
                               preset="genegan_multires", **kwargs)


@register_model
def test_genegan(**kwargs) -> GeneGAN:
    """Tiny GeneGAN at 32 px for tests."""
    return GeneGAN.from_config(
        GeneGANConfig(resolutions=(32,), base_channels=8, critic_burst_steps=2),
        preset="test_genegan", **kwargs)


@register_model
def test_genegan_multires(**kwargs) -> GeneGAN:
    """Tiny multi-resolution GeneGAN at 16/24/32 px (bottlenecks 4x4, 3x3, 4x4) for tests."""
    return GeneGAN.from_config(
        GeneGANConfig(arch="multires", resolutions=(16, 24, 32), base_channels=8,
                      norm_groups=4, obj_block_size=1, critic_burst_steps=2),
        preset="test_genegan_multires", **kwargs)
