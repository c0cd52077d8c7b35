"""CUT and FastCUT: contrastive unpaired image-to-image translation.

Park, Efros, Zhang and Zhu, "Contrastive Learning for Unpaired Image-to-Image Translation",
ECCV 2020 (arXiv 2007.15651). Reference implementation: taesungp/contrastive-unpaired-translation.

A ResNet generator ``G`` translates domain A (photos) to domain B (Monet paintings). Besides the
adversarial loss, PatchNCE ties each patch of ``G(a)`` to the patch at the same place in ``a``:
features of both are taken from ``G``'s own encoder (layers ``0, 4, 8, 12, 16`` of the
reference's flat layer list: the padded input, the two downsampling convolutions, and the
outputs of the 1st and 5th residual blocks), 256 locations per layer are sampled, and a small
MLP per layer (the projection head, ``netF`` in the reference) maps them to 256-d vectors.

Presets: ``cut`` (the photo->Monet baseline, see below), ``fastcut`` and ``cut_nce_idt``
(the reference's FastCUT and CUT settings of the NCE loss, in the baseline's training frame),
``cut_reference`` and ``fastcut_reference`` (the reference's objective end to end: LSGAN,
the anti-aliased discriminator with Xavier init, no DiffAugment, clipping or EMA, and its data
pipeline, ``data_augment="crop_flip"``), plus the tiny ``test_cut`` / ``test_fastcut`` /
``test_cut_reference`` at 32 px. docs/cut.md compares ``cut_reference`` with the reference on
copied weights (``tools/compare_cut.py``) and at a training budget.

Departures from the reference, all on purpose:

- ``cut`` is the photo->Monet baseline of docs/workflows/cut_monet.md, not the reference's CUT
  mode: hinge adversarial loss (the reference: LSGAN, ``adv_loss="lsgan"``), the single-scale
  70x70 PatchGAN with strided convs and N(0, 0.02) init (the reference: stride-1 convs and
  blur-pool, Xavier init, ``disc_antialias=True, disc_init="xavier"``), DiffAugment on the
  discriminator's inputs, an L1 identity loss on domain-B images weighted 0.1 for
  ``identity_warmup_steps`` steps and 0 after (instead of identity NCE, ``nce_idt=True``),
  gradient clipping at max-norm 10 for G and D, and an EMA of the generator used for
  generation. ``fastcut`` and ``cut_nce_idt`` keep that training frame with the reference's
  FastCUT and CUT NCE settings; ``cut_reference`` / ``fastcut_reference`` drop it.
- The reference's learning rate is constant for ``n_epochs`` and then decays linearly to zero
  over ``n_epochs_decay``; schedules are the trainer's (``--lr-schedule linear
  --lr-decay-start N``; ``configs/cut_reference.yaml`` sets it), per step rather than per
  epoch; ``--lr-decay-every K`` (K = one epoch's steps) gives the reference's staircase.
- Data: the reference pairs each A with a B drawn at random every time; ganzoo's ``unpaired``
  folders pair A[i] with B[perm[i]] for a seeded permutation, and the sampler reshuffles the
  items every epoch. No loss term reads a pair (D sees B, PatchNCE sees A, identity NCE sees
  B), so at batch 1 the two differ only in drawing B with or without replacement;
  ``data.pairing=random`` draws as the reference does. The reference's ``resize_and_crop`` +
  flip is ``data_augment="crop_flip"``; it stops cropping (resizes to the crop size) once the
  learning rate decays, which ganzoo's dataset does with ``data.crop_until_epoch=n_epochs``
  only (by default it crops throughout). docs/cut.md lists the flags that reproduce the
  reference's training.
- The projection MLP is built eagerly from the known channel counts of the tapped layers (the
  reference builds it on the first forward pass), so the optimizer sees it from the start and
  the model can be built on the ``meta`` device.
- The projection MLP is trained together with the generator (one optimizer group, "generator"),
  where the reference gives it a separate Adam with the same hyperparameters: same update.
- The NCE keys of the source image are taken from the generator's main forward pass when no
  flip is applied and the norm is per-image (instance/none), instead of a second encoder pass:
  the same features, one encoder pass fewer.
- Each optimizer group computes ``G(a)`` itself (the trainer steps D and G from separate
  ``loss`` calls, on the same batch), so one iteration costs one generator forward more than
  the reference.
- Numerical safeguards (from the baseline): feature normalisation with eps = 1e-6, logits
  clamped to +-50 before the softmax, and a non-finite NCE loss flagged in the logs
  (``nce_nonfinite``) and returned as is, so the trainer's non-finite guard takes over.
- Ablation modules the baseline removed are kept as options, off by default: a multi-scale
  and/or spectrally normalised discriminator, self-attention, channel (squeeze-excitation)
  attention and AdaIN-style gates in the residual trunk, feature matching, and a palette prior
  on Lab colour statistics. The CLIP-feature k-NN repulsion loss is left out: it needs
  pretrained CLIP weights, which cannot be fetched offline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import config as cfg
from ..layers.blurpool import BlurDownsample, BlurUpsample
from ..layers.attention import SelfAttention2d
from ..layers.common import init_weights, make_norm
from ..layers.diffaugment import DiffAugment, parse_policy
from ..layers.patchgan import PatchGANDiscriminator
from ..losses.adversarial import feature_matching_loss, r1_penalty
from ..losses.patchnce import nonfinite_flag, patchnce_loss
from ..registry import build_loss, register_model
from .base import INPUT, Batch, GenerativeModel, OptimizerSpec

__all__ = ["CUTConfig", "ResnetGenerator", "PatchProjector", "CUT", "rgb_to_lab"]


# -- config ------------------------------------------------------------------------------------
@dataclass
class CUTConfig(cfg.Config):
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "d_layers": "disc_layers",
        "d_norm": "disc_norm",
        "d_num_scales": "disc_num_scales",
        "d_spectral_norm": "disc_spectral_norm",
        "lambda_adv": "adv_weight",
        "lambda_nce": "nce_weight",
        "lambda_identity_warm": "identity_warm_weight",
        "lambda_identity_final": "identity_final_weight",
        "lambda_r1": "r1_gamma",
        "lambda_feature_matching": "feature_matching_weight",
        "lambda_palette": "palette_weight",
        "beta1": ("betas", 0),
        "beta2": ("betas", 1),
    }
    resolution: int = 256  # training image side (the generator is fully convolutional)
    in_channels: int = 3
    out_channels: int = 3
    # Generator: ResNet with 2 downsamplings, ``n_blocks`` residual blocks, 2 upsamplings.
    ngf: int = 64
    n_blocks: int = 9
    norm: Literal["instance", "batch", "none"] = "instance"
    antialias: bool = True  # blur-pool down/upsampling as in the reference (else strided convs)
    init_gain: float = 0.02  # xavier-normal gain (G, projector; D with disc_init="xavier"),
    # as the reference's --init_type xavier --init_gain 0.02
    # Generator ablations (off in the baseline).
    self_attention: bool = False  # SAGAN self-attention after residual block ``attention_block``
    attention_block: int = 4
    channel_attention: bool = False  # squeeze-excitation on each residual branch
    adain_gates: bool = False  # residual branch scaled/shifted per channel from input stats
    # Discriminator: the shared PatchGAN (70x70 receptive field with 3 layers).
    ndf: int = 64
    disc_layers: int = 3
    disc_norm: Literal["instance", "batch", "none"] = "instance"
    # The reference's D downsamples with a stride-1 conv + blur-pool (its default, unless
    # --no_antialias) and is Xavier-initialised; the baseline's PatchGAN uses strided convs and
    # N(0, 0.02).
    disc_antialias: bool = False
    disc_init: Literal["normal", "xavier"] = "normal"
    disc_num_scales: int = 1  # ablation: multi-scale discriminator
    disc_spectral_norm: bool = False  # ablation
    # PatchNCE.
    nce_layers: tuple[int, ...] = (0, 4, 8, 12, 16)  # indices in the generator's layer list
    nce_temperature: float = 0.07
    num_patches: int = 256
    projector_channels: int = 256  # netF_nc
    nce_idt: bool = False  # identity NCE on G(b) vs b (the reference's CUT default)
    nce_negatives_from_minibatch: bool = False
    flip_equivariance: bool = False  # FastCUT
    nce_eps: float = 1e-6  # x / (|x| + eps): the baseline's; the reference's Normalize: 1e-7
    nce_logit_clamp: float = 50.0
    # Loss weights.
    # Shared ganzoo losses; "lsgan" is the reference's (D loss halved, as its compute_D_loss).
    adv_loss: Literal["hinge", "nonsaturating", "lsgan"] = "hinge"
    adv_weight: float = 1.0
    nce_weight: float = 1.0
    identity_warm_weight: float = 0.1  # L1 identity on domain-B images during the warm-up
    identity_final_weight: float = 0.0  # ... and after it
    identity_warmup_steps: int = 1000
    r1_gamma: float = 0.0  # R1 penalty weight (gamma); 0 disables
    feature_matching_weight: float = 0.0  # ablation: L1 between D features of real b and G(a)
    palette_weight: float = 0.0  # ablation: Lab mean/std of G(a) vs b
    diffaugment: str = "color,translation,cutout"  # policy for D inputs; "" disables
    # Optimisation.
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    clip_grad_norm: float | None = 10.0
    ema: bool = True  # EMA of the generator for translation (the reference keeps none)
    # Augmentation of the training images (ganzoo.datasets.transforms), unless the run sets
    # data.augment: "crop_flip" is the reference's resize_and_crop (286/256) + flip.
    data_augment: Literal["none", "flip", "structure", "crop_flip"] = "none"

    def __post_init__(self):
        super().__post_init__()
        for name in ("resolution", "in_channels", "out_channels", "ngf", "ndf", "disc_layers",
                     "disc_num_scales", "num_patches", "projector_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"CUTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.resolution % 4:
            raise ValueError(f"CUTConfig.resolution must be a multiple of 4 (two downsamplings), "
                             f"got {self.resolution}")
        if self.n_blocks < 0:
            raise ValueError(f"CUTConfig.n_blocks must be >= 0, got {self.n_blocks}")
        if self.self_attention and not 0 <= self.attention_block < self.n_blocks:
            raise ValueError(f"CUTConfig.attention_block must index a residual block "
                             f"(0..{self.n_blocks - 1}), got {self.attention_block}")
        self.nce_layers = tuple(self.nce_layers)
        if not self.nce_layers:
            raise ValueError("CUTConfig.nce_layers must name at least one layer")
        if list(self.nce_layers) != sorted(set(self.nce_layers)):
            raise ValueError(f"CUTConfig.nce_layers must be strictly increasing, "
                             f"got {self.nce_layers}")
        n_enc = encoder_length(self.n_blocks, self.antialias)
        if self.nce_layers[0] < 0 or self.nce_layers[-1] >= n_enc:
            raise ValueError(f"CUTConfig.nce_layers must index encoder layers 0..{n_enc - 1} "
                             f"(n_blocks={self.n_blocks}, antialias={self.antialias}), "
                             f"got {self.nce_layers}")
        if self.nce_temperature <= 0:
            raise ValueError(f"CUTConfig.nce_temperature must be positive, "
                             f"got {self.nce_temperature}")
        if self.nce_eps <= 0 or self.nce_logit_clamp <= 0:
            raise ValueError("CUTConfig.nce_eps and nce_logit_clamp must be positive")
        for name in ("adv_weight", "nce_weight", "identity_warm_weight", "identity_final_weight",
                     "r1_gamma", "feature_matching_weight", "palette_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"CUTConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.identity_warmup_steps < 0:
            raise ValueError(f"CUTConfig.identity_warmup_steps must be >= 0, "
                             f"got {self.identity_warmup_steps}")
        if self.lr <= 0:
            raise ValueError(f"CUTConfig.lr must be positive, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"CUTConfig.betas must lie in [0, 1), got {self.betas}")
        if self.clip_grad_norm is not None and self.clip_grad_norm <= 0:
            raise ValueError(f"CUTConfig.clip_grad_norm must be positive or None, "
                             f"got {self.clip_grad_norm}")
        parse_policy(self.diffaugment, "CUTConfig.diffaugment")


def encoder_length(n_blocks: int, antialias: bool) -> int:
    """Number of layers before the first upsampling layer in the generator's layer list."""
    return 4 + 2 * (4 if antialias else 3) + n_blocks


# -- blocks ------------------------------------------------------------------------------------
class ChannelAttention(nn.Module):
    """Squeeze-excitation channel attention (ablation; Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(True),
                                nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sigmoid(self.fc(x.mean(dim=(2, 3))))
        return x * w[:, :, None, None]


class AdaINGate(nn.Module):
    """AdaIN-style gate (ablation): the residual branch is rescaled and shifted per channel by
    an MLP of the block input's channel means and standard deviations. The last layer starts at
    zero, so the gate starts as the identity."""

    def __init__(self, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * channels, channels), nn.ReLU(True),
                                 nn.Linear(channels, 2 * channels))

    def forward(self, branch: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3))
        std = (x.var(dim=(2, 3), unbiased=False) + 1e-5).sqrt()
        scale, shift = self.mlp(torch.cat([mean, std], 1)).chunk(2, 1)
        return branch * (1 + torch.tanh(scale))[:, :, None, None] + shift[:, :, None, None]


class ResnetBlock(nn.Module):
    """x + [reflect-pad, conv3, norm, ReLU, reflect-pad, conv3, norm](x), with the optional
    ablation modules on the residual branch and optional self-attention after the sum."""

    def __init__(self, channels: int, norm: str, bias: bool, channel_attention: bool = False,
                 adain_gate: bool = False, attention: nn.Module | None = None):
        super().__init__()
        self.branch = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=bias),
            make_norm(norm, channels))
        self.channel_attention = ChannelAttention(channels) if channel_attention else None
        self.gate = AdaINGate(channels) if adain_gate else None
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.branch(x)
        if self.channel_attention is not None:
            h = self.channel_attention(h)
        if self.gate is not None:
            h = self.gate(h, x)
        out = x + h
        if self.attention is not None:
            out = self.attention(out)
        return out


# -- networks ----------------------------------------------------------------------------------
def _build_self_attention(channels: int) -> nn.Module:
    return SelfAttention2d(channels)


class ResnetGenerator(nn.Module):
    """The ResNet-9 translator (Johnson et al. 2016, as in CycleGAN and CUT).

    The layers form one flat list with the reference's indexing, so that ``nce_layers`` mean
    the same thing: 0 is the reflect-padded input, 1-3 the 7x7 conv block, then per
    downsampling (conv3, norm, ReLU, blur-pool) (or a strided conv3, norm, ReLU without
    anti-aliasing), then the residual blocks, the upsampling blocks and the output layers.
    """

    def __init__(self, config: CUTConfig):
        super().__init__()
        c = config
        bias = c.norm == "instance"  # the reference uses biases only with instance norm
        layers: list[nn.Module] = [nn.ReflectionPad2d(3),
                                   nn.Conv2d(c.in_channels, c.ngf, 7, bias=bias),
                                   make_norm(c.norm, c.ngf), nn.ReLU(True)]
        channels = [c.in_channels, c.ngf, c.ngf, c.ngf]
        ch = c.ngf
        for _ in range(2):
            if c.antialias:
                layers += [nn.Conv2d(ch, 2 * ch, 3, padding=1, bias=bias), make_norm(c.norm, 2 * ch),
                           nn.ReLU(True), BlurDownsample(2 * ch)]
                channels += [2 * ch] * 4
            else:
                layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1, bias=bias),
                           make_norm(c.norm, 2 * ch), nn.ReLU(True)]
                channels += [2 * ch] * 3
            ch *= 2
        for i in range(c.n_blocks):
            attn = (_build_self_attention(ch)
                    if c.self_attention and i == c.attention_block else None)
            layers.append(ResnetBlock(ch, c.norm, bias, c.channel_attention, c.adain_gates, attn))
            channels.append(ch)
        self.encoder_length = len(layers)
        for _ in range(2):
            if c.antialias:
                layers += [BlurUpsample(ch), nn.Conv2d(ch, ch // 2, 3, padding=1, bias=bias),
                           make_norm(c.norm, ch // 2), nn.ReLU(True)]
            else:
                layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1,
                                              output_padding=1, bias=bias),
                           make_norm(c.norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, c.out_channels, 7), nn.Tanh()]
        self.layers = nn.Sequential(*layers)
        self.layer_channels = channels  # output channels of each encoder layer
        init_weights(self, "xavier", c.init_gain)  # the reference's --init_type xavier

    def forward(self, x: torch.Tensor, taps: tuple[int, ...] = ()
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The translation; with ``taps``, also the outputs of those layers."""
        if not taps:
            return self.layers(x)
        feats = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in taps:
                feats.append(x)
        return x, feats

    def encode(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        """The outputs of layers ``taps`` (sorted), stopping after the last one."""
        feats = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in taps:
                feats.append(x)
                if i == taps[-1]:
                    break
        return feats


class PatchProjector(nn.Module):
    """The projection head (``netF``, "mlp_sample" in the reference): for each tapped layer,
    sample the same ``num_patches`` locations in every image and map their features with a
    2-layer MLP (Linear, ReLU, Linear) to ``out_channels``. Built eagerly from the tapped
    layers' channel counts. L2 normalisation happens in the PatchNCE loss."""

    def __init__(self, in_channels: list[int], out_channels: int = 256, init_gain: float = 0.02):
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(c, out_channels), nn.ReLU(True),
                          nn.Linear(out_channels, out_channels)) for c in in_channels)
        init_weights(self, "xavier", init_gain)

    def forward(self, feats: list[torch.Tensor], num_patches: int,
                patch_ids: list[torch.Tensor] | None = None
                ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(B*P, out_channels)`` features per layer and the sampled flat locations."""
        if len(feats) != len(self.mlps):
            raise ValueError(f"expected {len(self.mlps)} feature maps, got {len(feats)}")
        out, ids = [], []
        for i, (feat, mlp) in enumerate(zip(feats, self.mlps)):
            flat = feat.flatten(2).transpose(1, 2)  # (B, H*W, C)
            if patch_ids is None:
                hw = flat.shape[1]
                idx = torch.randperm(hw, device=feat.device)[:min(num_patches, hw)]
            else:
                idx = patch_ids[i]
            out.append(mlp(flat[:, idx].flatten(0, 1)))
            ids.append(idx)
        return out, ids


# -- colour statistics (palette prior ablation) -------------------------------------------------
def rgb_to_lab(x: torch.Tensor) -> torch.Tensor:
    """CIE Lab (D65) of sRGB images in [-1, 1]; L in [0, 100], a/b roughly in [-128, 127]."""
    rgb = ((x.float() + 1) / 2).clamp(0, 1)
    lin = torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)
    m = lin.new_tensor([[0.412453, 0.357580, 0.180423],
                        [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]])
    xyz = torch.einsum("ij,bjhw->bihw", m, lin)
    xyz = xyz / xyz.new_tensor([0.950456, 1.0, 1.088754])[None, :, None, None]
    eps = 216 / 24389
    f = torch.where(xyz > eps, xyz.clamp_min(eps).pow(1 / 3), (24389 / 27 * xyz + 16) / 116)
    lum = 116 * f[:, 1] - 16
    a = 500 * (f[:, 0] - f[:, 1])
    b = 200 * (f[:, 1] - f[:, 2])
    return torch.stack([lum, a, b], 1)


def palette_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between the Lab channel means and standard deviations of two image batches
    (Lab scaled by 1/100); the real side is detached."""
    lf, lr = rgb_to_lab(fake) / 100, rgb_to_lab(real.detach()) / 100
    dims = (0, 2, 3)
    return ((lf.mean(dims) - lr.mean(dims)).abs().mean()
            + (lf.std(dims) - lr.std(dims)).abs().mean())


class MultiScaleDiscriminator(nn.Module):
    """``num_scales`` shared PatchGANs on the image downsampled by 1, 2, 4, ... (average
    pooling, as pix2pixHD); returns one logit map per scale. One scale is the plain PatchGAN."""

    def __init__(self, config: CUTConfig):
        super().__init__()

        c = config
        self.scales = nn.ModuleList(
            PatchGANDiscriminator(c.out_channels, c.ndf, c.disc_layers, norm=c.disc_norm,
                                  spectral_norm=c.disc_spectral_norm,
                                  antialias=c.disc_antialias, init=c.disc_init,
                                  init_gain=c.init_gain if c.disc_init == "xavier" else 0.02)
            for _ in range(c.disc_num_scales))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        logits, feats = [], []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            if return_features:
                h = x
                for layer in d.model:
                    h = layer(h)
                    if isinstance(layer, nn.LeakyReLU):
                        feats.append(h)
                logits.append(h)
            else:
                logits.append(d(x))
        return (logits, feats) if return_features else logits


# -- the family --------------------------------------------------------------------------------
class CUT(GenerativeModel):
    """CUT / FastCUT: networks ``generator`` (ResNet), ``projector`` (the PatchNCE projection
    head, trained with the generator) and ``discriminator`` (PatchGAN, one per scale)."""

    config_class = CUTConfig
    family = "cut"
    paper = ("Park, Efros, Zhang, Zhu, Contrastive Learning for Unpaired Image-to-Image "
             "Translation, ECCV 2020 (arXiv 2007.15651)")
    task = "translate"
    batch_keys = ("image_a", "image_b")
    default_dataset = "shapes_unpaired"
    ema_networks = ("generator",)
    default_ema_decay = 0.999
    eval_references = {"translated": {"domain": "b"}}

    def __init__(self, config: CUTConfig):
        super().__init__(config)
        c = config
        self.ema_networks = ("generator",) if c.ema else ()
        self.default_augment = c.data_augment
        self.generator = ResnetGenerator(c)
        self.projector = PatchProjector([self.generator.layer_channels[i] for i in c.nce_layers],
                                        c.projector_channels, c.init_gain)
        self.discriminator = MultiScaleDiscriminator(c)
        self._adv = build_loss(c.adv_loss)
        self.augment = DiffAugment(c.diffaugment)  # of the discriminator's inputs
    @property
    def image_size(self) -> tuple[int, int]:
        """The training side; the generator is fully convolutional, so ``translate`` keeps
        the size of its input."""
        return self.config.resolution, self.config.resolution

    @property
    def channels(self) -> int:
        return self.config.out_channels

    # -- optimisation ---------------------------------------------------------------------------
    @property
    def double_backward_networks(self) -> tuple[str, ...]:
        return ("discriminator",) if self.config.r1_gamma > 0 else ()

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        common = dict(optimizer="adam", lr=c.lr, betas=c.betas,
                      clip_grad_norm=c.clip_grad_norm)
        return {"discriminator": OptimizerSpec(("discriminator",), **common),
                "generator": OptimizerSpec(("generator", "projector"), **common)}

    def identity_weight(self, step: int) -> float:
        """Weight of the L1 identity loss at ``step``: warm value during the warm-up, then final."""
        c = self.config
        return c.identity_warm_weight if step < c.identity_warmup_steps else c.identity_final_weight

    def _flip(self) -> bool:
        return self.config.flip_equivariance and bool(torch.rand(()) < 0.5)

    def loss(self, group: str, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if group == "discriminator":
            return self._d_loss(batch)
        return self._g_loss(batch, step)

    def _d_loss(self, batch: Batch):
        c = self.config
        real_a, real_b = batch["image_a"], batch["image_b"]
        with torch.no_grad():
            x = real_a.flip(3) if self._flip() else real_a
            fake = self.generator(x)
        if c.r1_gamma > 0:
            real_b = real_b.detach().requires_grad_(True)
        real_logits = self.discriminator(self.augment(real_b))
        fake_logits = self.discriminator(self.augment(fake))
        adv = sum(self._adv.d_loss(r, f) for r, f in zip(real_logits, fake_logits))
        total = c.adv_weight * adv
        logs = {"d_adv": adv.detach(),
                "d_real": torch.stack([r.detach().mean() for r in real_logits]).mean(),
                "d_fake": torch.stack([f.detach().mean() for f in fake_logits]).mean()}
        if c.r1_gamma > 0:
            r1 = sum(r1_penalty(r, real_b) for r in real_logits)
            total = total + c.r1_gamma * r1
            logs["r1"] = r1.detach()
        logs["d_loss"] = total.detach()
        return total, logs

    def _nce(self, src: torch.Tensor, fake: torch.Tensor, flipped: bool,
             src_feats: list[torch.Tensor] | None = None) -> torch.Tensor:
        """PatchNCE between ``fake = G(src)`` (queries) and ``src`` (keys), averaged over layers."""
        c = self.config
        taps = c.nce_layers
        feat_q = self.generator.encode(fake, taps)
        if flipped:
            feat_q = [f.flip(3) for f in feat_q]
        feat_k = src_feats if src_feats is not None else self.generator.encode(src, taps)
        feat_k = [f.detach() for f in feat_k]
        k_pool, ids = self.projector(feat_k, c.num_patches)
        q_pool, _ = self.projector(feat_q, c.num_patches, ids)
        total = 0.0
        for q, k in zip(q_pool, k_pool):
            total = total + patchnce_loss(
                q, k, batch_size=src.shape[0], temperature=c.nce_temperature,
                negatives_from_minibatch=c.nce_negatives_from_minibatch, eps=c.nce_eps,
                clamp=c.nce_logit_clamp)
        return total / len(taps)

    def _g_loss(self, batch: Batch, step: int):
        c = self.config
        real_a, real_b = batch["image_a"], batch["image_b"]
        n = real_a.shape[0]
        w_idt = self.identity_weight(step)
        need_b = c.nce_idt or w_idt > 0
        x = torch.cat([real_a, real_b]) if need_b else real_a
        flipped = self._flip()
        if flipped:
            x = x.flip(3)
        # Reuse the encoder features of the main pass as NCE keys where they equal a separate
        # encoder pass on the unflipped source (per-image norm, no flip).
        share = c.nce_weight > 0 and not flipped and c.norm != "batch"
        if share:
            out, feats = self.generator(x, c.nce_layers)
        else:
            out, feats = self.generator(x), None
        fake_b = out[:n]
        logs: dict[str, Any] = {}
        total = torch.zeros((), device=real_a.device)
        if c.adv_weight > 0 or c.feature_matching_weight > 0:
            if c.feature_matching_weight > 0:
                fake_logits, fake_feats = self.discriminator(self.augment(fake_b), True)
                with torch.no_grad():
                    _, real_feats = self.discriminator(self.augment(real_b), True)

                fm = feature_matching_loss(real_feats, fake_feats, mode="mean")
                total = total + c.feature_matching_weight * fm
                logs["feature_matching"] = fm.detach()
            else:
                fake_logits = self.discriminator(self.augment(fake_b))
            adv = sum(self._adv.g_loss(f) for f in fake_logits)
            total = total + c.adv_weight * adv
            logs["g_adv"] = adv.detach()
        if c.nce_weight > 0:
            nce = self._nce(real_a, fake_b, flipped, [f[:n] for f in feats] if share else None)
            logs["nce"] = nce.detach()
            if c.nce_idt:
                nce_y = self._nce(real_b, out[n:], flipped,
                                  [f[n:] for f in feats] if share else None)
                logs["nce_idt"] = nce_y.detach()
                nce = (nce + nce_y) / 2
            logs["nce_nonfinite"] = nonfinite_flag(nce)
            total = total + c.nce_weight * nce
        if w_idt > 0:
            idt_b = out[n:]
            if flipped:
                idt_b = idt_b.flip(3)
            idt = F.l1_loss(idt_b, real_b)
            total = total + w_idt * idt
            logs["identity"] = idt.detach()
        logs["identity_weight"] = w_idt
        if c.palette_weight > 0:
            pal = palette_loss(fake_b, real_b)
            total = total + c.palette_weight * pal
            logs["palette"] = pal.detach()
        logs["g_loss"] = total.detach()
        return total, logs

    # -- task -----------------------------------------------------------------------------------
    def translate(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Translate domain-A images in [-1, 1] to domain B with the EMA generator (when present).
        Deterministic: ``generator`` is accepted for API symmetry and unused."""
        net = self.inference_net("generator")
        with self.inference():
            return net(x.to(self.device, next(net.parameters()).dtype)).clamp(-1, 1)

    @staticmethod
    def _source(batch: Batch) -> torch.Tensor:
        if batch is None:
            raise ValueError("CUT translates images: pass a batch with 'image_a' (or 'image')")
        for key in ("image_a", "image", INPUT):
            if key in batch:
                return batch[key]
        raise KeyError(f"CUT needs 'image_a' (or 'image') in the batch, got {sorted(batch)}")

    def generate(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                 **options) -> dict[str, torch.Tensor]:
        """``{"translated": G(a)}`` for the first ``n`` source images of ``batch``; the
        reference side for evaluation is domain B (``eval_references``)."""
        self.check_sampling_options(options)
        return {"translated": self.translate(self._source(batch)[:n], generator=generator)}

    def preview(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                **options) -> torch.Tensor:
        """The ``n`` fixed source images followed by their translations (2n images: a grid with
        ``nrow=n`` shows sources on the first row and translations below)."""
        a = self._source(batch)[:n]
        translated = self.generate({INPUT: a}, n, generator, **options)["translated"]
        return torch.cat([a.clamp(-1, 1), translated])


# -- presets -----------------------------------------------------------------------------------
_TEST = dict(resolution=32, ngf=8, n_blocks=2, ndf=8, nce_layers=(0, 4, 8, 12, 13),
             num_patches=16, projector_channels=16, identity_warmup_steps=2)


@register_model
def cut(**kwargs) -> CUT:
    """CUT photo->Monet baseline at 256 px: ResNet-9, hinge + PatchNCE + warm-up identity L1."""
    return CUT.from_config(CUTConfig(), preset="cut", **kwargs)


@register_model
def fastcut(**kwargs) -> CUT:
    """FastCUT at 256 px: lambda_NCE = 10, flip-equivariance, no identity loss."""
    return CUT.from_config(CUTConfig(nce_weight=10.0, flip_equivariance=True,
                                     identity_warm_weight=0.0), preset="fastcut", **kwargs)


@register_model
def cut_nce_idt(**kwargs) -> CUT:
    """CUT with identity NCE on domain-B images (the reference's default CUT mode)."""
    return CUT.from_config(CUTConfig(nce_idt=True, identity_warm_weight=0.0),
                           preset="cut_nce_idt", **kwargs)


# The reference's training objective (taesungp/contrastive-unpaired-translation): LSGAN, its
# anti-aliased, Xavier-initialised discriminator, no DiffAugment, clipping, identity L1 or EMA,
# its data pipeline, and its PatchNCE normalisation x / (|x| + 1e-7) (``Normalize`` in
# models/networks.py). The eps matters: the Xavier-0.02 projection head starts with outputs
# of norm 1e-5 to 1e-3, which 1e-6 shrinks towards zero (docs/cut.md, "Against the authors'
# code").
_REFERENCE = dict(adv_loss="lsgan", disc_antialias=True, disc_init="xavier", diffaugment="",
                  identity_warm_weight=0.0, clip_grad_norm=None, ema=False,
                  data_augment="crop_flip", nce_eps=1e-7)


@register_model
def cut_reference(**kwargs) -> CUT:
    """The reference's CUT mode end to end: LSGAN, identity NCE, its anti-aliased D."""
    return CUT.from_config(CUTConfig(nce_idt=True, **_REFERENCE), preset="cut_reference",
                           **kwargs)


@register_model
def fastcut_reference(**kwargs) -> CUT:
    """The reference's FastCUT mode end to end: LSGAN, lambda_NCE = 10, flip-equivariance."""
    return CUT.from_config(CUTConfig(nce_weight=10.0, flip_equivariance=True, **_REFERENCE),
                           preset="fastcut_reference", **kwargs)


@register_model
def test_cut(**kwargs) -> CUT:
    """Tiny CUT for tests: 32 px, ngf 8, 2 residual blocks."""
    return CUT.from_config(CUTConfig(**_TEST), preset="test_cut", **kwargs)


@register_model
def test_fastcut(**kwargs) -> CUT:
    """Tiny FastCUT for tests: 32 px, ngf 8, 2 residual blocks."""
    return CUT.from_config(CUTConfig(**{**_TEST, "nce_weight": 10.0, "flip_equivariance": True,
                                        "identity_warm_weight": 0.0}),
                           preset="test_fastcut", **kwargs)


@register_model
def test_cut_reference(**kwargs) -> CUT:
    """Tiny cut_reference for tests: 32 px, ngf 8, 2 residual blocks."""
    return CUT.from_config(CUTConfig(**{**_TEST, "nce_idt": True, **_REFERENCE}),
                           preset="test_cut_reference", **kwargs)
