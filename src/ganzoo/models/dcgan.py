"""DCGAN: deep convolutional GANs, and an upsample + conv variant (docs/workflows/dcgan_faces.md).

Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016 (arXiv:1511.06434); architecture as in
pytorch/examples ``dcgan/main.py``.

Presets:

- ``dcgan`` (64 px) / ``dcgan_128``: G = ConvTranspose 4×4 blocks with BatchNorm and ReLU
  from a 4×4 map of ``ngf·2^k`` channels, Tanh output; D = strided 4×4 convolutions with
  LeakyReLU 0.2 and BatchNorm except on the input layer, a 4×4 valid conv to one logit.
  Weights from N(0, 0.02) (BatchNorm scales from N(1, 0.02)); BCE loss; Adam lr 2e-4,
  betas (0.5, 0.999); z = 100. ``dcgan_128`` is one block deeper in both networks
  (``16·ngf`` channels at 4×4).
- ``dcgan_upsample``: the network of docs/workflows/dcgan_faces.md. G = Linear(z -> 8·ngf·4·4),
  reshape; three Upsample(×2) + Conv 3×3 + BatchNorm + LeakyReLU 0.2 blocks (512 -> 256 ->
  128 -> 64 channels at 64 px); a fourth Upsample(×2) + Conv 3×3 (64 -> 3) + Tanh. D = four
  Conv 3×3 stride-2 blocks, Conv -> BatchNorm -> LeakyReLU 0.2 -> Dropout2d 0.25 (no
  BatchNorm in the first), 64 -> 512 channels, then Linear(512·4·4 -> 1). BCE with label
  smoothing (real 0.9, fake 0.1). BatchNorm momentum: the workflow asks for 0.8 against a
  default of 0.9, i.e. the weight kept on the running statistics (Keras's convention;
  PyTorch's default 0.1 keeps 0.9), so the preset uses PyTorch's ``bn_momentum=0.2``;
  ``--set bn_momentum=0.8`` takes the number literally. The workflow also anneals the
  learning rate with a cosine from 2e-4 to 1e-5: schedules are the trainer's
  job, so run it with ``--lr-schedule cosine --lr-end 1e-5``; the family keeps a constant
  default.

Departures, all deliberate:

- Discriminators output logits and the loss applies the sigmoid (``BCEWithLogits``), which
  is the same function as Sigmoid + BCE, numerically safer.
- ``sample`` runs the (EMA) generator with BatchNorm in eval mode (running statistics), so a
  sample does not depend on the other samples drawn with it and does not change the running
  statistics. The EMA copy takes the live network's BatchNorm buffers.
- ``dcgan_upsample``: convolutions are initialised N(0, 0.02) as in the DCGAN paper (the
  workflow leaves the initialisation unspecified); Linear layers keep PyTorch's default.
  ``Upsample`` is nearest-neighbour, PyTorch's default for ``Upsample(scale_factor=2)``
  (``upsample_mode="bilinear"`` for bilinear). In the PyTorch-GAN code the network resembles
  (eriklindernoren/PyTorch-GAN, ``implementations/dcgan/dcgan.py``), the "0.8" of
  ``BatchNorm2d(c, 0.8)`` is the positional ``eps``; the workflow asks for a momentum, which
  the preset reads as above.

:class:`LatentGAN` is the shared unconditional GAN: WGAN-GP (``wgan_gp.py``) reuses it and the
networks below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from .. import config as cfg
from ..layers.attention import self_attention
from ..layers.common import Norm, check_resolution, init_weights, make_norm
from ..layers.common import spectral_norm as apply_spectral_norm
from ..layers.diffaugment import DiffAugment, parse_policy
from ..losses.adversarial import BCELoss, HingeLoss, NonSaturatingLoss
from ..registry import register_model
from .base import SHARED_FORWARD, Batch, GenerativeModel, OptimizerSpec, SquareImages

__all__ = ["DCGANConfig", "DCGAN", "LatentGAN", "DCGANGenerator", "DCGANDiscriminator",
           "UpsampleGenerator", "UpsampleDiscriminator"]


@dataclass
class DCGANConfig(cfg.Config):
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "d_dropout": "disc_dropout",
    }
    resolution: int = 64
    channels: int = 3
    latent_dim: int = 100
    ngf: int = 64
    ndf: int = 64
    arch: Literal["convtranspose", "upsample"] = "convtranspose"
    # PyTorch's convention (the weight of the new batch). dcgan_upsample: 0.2, a momentum of
    # 0.8 "against a default of 0.9" read in Keras's convention, where the default 0.9 is
    # PyTorch's 0.1; bn_momentum=0.8 takes the number literally
    # (docs/workflows/dcgan_faces.md, "BatchNorm momentum").
    bn_momentum: float = 0.1
    upsample_mode: Literal["nearest", "bilinear"] = "nearest"  # arch="upsample" only
    disc_dropout: float = 0.0  # Dropout2d after each D block; dcgan_upsample uses 0.25
    loss: Literal["bce", "nonsaturating", "hinge"] = "bce"
    real_label: float = 1.0  # bce label smoothing (dcgan_upsample: 0.9)
    fake_label: float = 0.0  # (dcgan_upsample: 0.1)
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    diffaugment: str = ""  # DiffAugment policy, e.g. "color,translation,cutout"
    init_std: float = 0.02
    # True (the default): one generator forward per iteration, the D step's fakes, with their
    # graph, are the G step's (pytorch/examples dcgan/main.py): 5-12 % faster on a CPU,
    # quality the same within the seed spread (docs/gan.md, "Training step"). False:
    # fresh fakes for the G step, as Goodfellow et al.'s Algorithm 1 samples a new minibatch
    # of noise.
    share_fakes: bool = True

    def __post_init__(self):
        super().__post_init__()
        check_resolution(self.resolution)
        for field in ("channels", "latent_dim", "ngf", "ndf"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not 0.0 < self.bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        if not 0.0 <= self.disc_dropout < 1.0:
            raise ValueError(f"disc_dropout must be in [0, 1), got {self.disc_dropout}")
        for field in ("real_label", "fake_label"):
            if not 0.0 <= getattr(self, field) <= 1.0:
                raise ValueError(f"{field} must be in [0, 1], got {getattr(self, field)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive, got {self.init_std}")
        parse_policy(self.diffaugment, "DCGANConfig.diffaugment")


# -- networks ----------------------------------------------------------------------------------
class DCGANGenerator(nn.Module):
    """z (N, latent_dim) -> image (N, C, R, R) in [-1, 1] with ConvTranspose 4×4 blocks.

    4×4 map of ``ngf·2^(log2 R - 3)`` channels, halving the channels at each ×2 block, with
    optional self-attention (``attention``: ``"sagan"`` or the scaled ``"plan"``)
    after the blocks whose output side is in ``attention_resolutions``.
    """

    def __init__(self, latent_dim: int = 100, ngf: int = 64, channels: int = 3,
                 resolution: int = 64, norm: Norm = "batch", bn_momentum: float = 0.1,
                 attention_resolutions: tuple[int, ...] = (), attention: str = "sagan"):
        super().__init__()
        n_up = check_resolution(resolution, attention_resolutions) - 3
        self.latent_dim = latent_dim
        ch = ngf * 2 ** n_up
        bias = norm == "none"
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, ch, 4, 1, 0, bias=bias),
            make_norm(norm, ch, bn_momentum=bn_momentum), nn.ReLU(True),
        ]
        size = 4
        for _ in range(n_up):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=bias),
                       make_norm(norm, ch // 2, bn_momentum=bn_momentum), nn.ReLU(True)]
            ch, size = ch // 2, size * 2
            if size in attention_resolutions:
                layers.append(self_attention(attention, ch))
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """image (N, C, R, R) -> logits (N,) with strided 4×4 convolutions and LeakyReLU 0.2.

    No normalisation on the input layer; ``norm`` on the others (BatchNorm for DCGAN,
    LayerNorm/InstanceNorm/none for WGAN critics); optional spectral norm on every conv and
    self-attention (``attention``, as in the generator) where the feature side is in
    ``attention_resolutions``.
    """

    def __init__(self, ndf: int = 64, channels: int = 3, resolution: int = 64,
                 norm: Norm = "batch", bn_momentum: float = 0.1, spectral_norm: bool = False,
                 attention_resolutions: tuple[int, ...] = (), dropout: float = 0.0,
                 attention: str = "sagan"):
        super().__init__()
        n_down = check_resolution(resolution, attention_resolutions) - 3
        bias = norm == "none"
        ch, size = ndf, resolution // 2
        layers: list[nn.Module] = [apply_spectral_norm(nn.Conv2d(channels, ch, 4, 2, 1, bias=bias), spectral_norm),
                                   nn.LeakyReLU(0.2, True)]
        if dropout:
            layers.append(nn.Dropout2d(dropout))
        for _ in range(n_down):
            if size in attention_resolutions:
                layers.append(self_attention(attention, ch, spectral_norm=spectral_norm))
            layers += [apply_spectral_norm(nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=bias), spectral_norm),
                       # affine InstanceNorm: a learned per-channel scale, as the layer-norm
                       # option it stands in for has (wgan_gp critic_norm="instance")
                       make_norm(norm, ch * 2, bn_momentum=bn_momentum, instance_affine=True),
                       nn.LeakyReLU(0.2, True)]
            if dropout:
                layers.append(nn.Dropout2d(dropout))
            ch, size = ch * 2, size // 2
        layers.append(apply_spectral_norm(nn.Conv2d(ch, 1, 4, 1, 0, bias=False), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


class UpsampleGenerator(nn.Module):
    """``dcgan_upsample``'s generator: Linear(z -> 8·ngf·4·4), reshape, Upsample(×2) +
    Conv 3×3 + BatchNorm + LeakyReLU 0.2 blocks halving the channels down to ``ngf``, then a last
    Upsample(×2) + Conv 3×3 to the image channels + Tanh (4 upsamplings at 64 px)."""

    def __init__(self, latent_dim: int = 100, ngf: int = 64, channels: int = 3,
                 resolution: int = 64, bn_momentum: float = 0.2,
                 upsample_mode: str = "nearest"):
        super().__init__()
        n_up = check_resolution(resolution) - 2
        self.latent_dim = latent_dim
        self.ch0 = ngf * 2 ** (n_up - 1)  # 8·ngf at 64 px

        def up():
            return nn.Upsample(scale_factor=2, mode=upsample_mode)

        self.project = nn.Linear(latent_dim, self.ch0 * 16)
        layers: list[nn.Module] = []
        ch = self.ch0
        for _ in range(n_up - 1):
            layers += [up(), nn.Conv2d(ch, ch // 2, 3, 1, 1),
                       nn.BatchNorm2d(ch // 2, momentum=bn_momentum), nn.LeakyReLU(0.2, True)]
            ch //= 2
        layers += [up(), nn.Conv2d(ch, channels, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z.flatten(1)).view(z.shape[0], self.ch0, 4, 4))


class UpsampleDiscriminator(nn.Module):
    """``dcgan_upsample``'s discriminator: Conv 3×3 stride-2 -> BatchNorm (not in the first block)
    -> LeakyReLU 0.2 -> Dropout2d blocks down to 4×4, then Linear to one logit."""

    def __init__(self, ndf: int = 64, channels: int = 3, resolution: int = 64,
                 bn_momentum: float = 0.2, dropout: float = 0.25):
        super().__init__()
        n_down = check_resolution(resolution) - 2
        layers: list[nn.Module] = []
        ch_in = channels
        for i in range(n_down):
            ch = ndf * 2 ** min(i, 3)
            layers.append(nn.Conv2d(ch_in, ch, 3, 2, 1))
            if i > 0:
                layers.append(nn.BatchNorm2d(ch, momentum=bn_momentum))
            layers.append(nn.LeakyReLU(0.2, True))
            if dropout:
                layers.append(nn.Dropout2d(dropout))
            ch_in = ch
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(ch_in * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.net(x).flatten(1)).flatten()


# -- the shared unconditional GAN ------------------------------------------------------------
class LatentGAN(SquareImages, GenerativeModel):
    """An unconditional GAN ``G: z -> x`` with a discriminator (or critic) ``D``.

    Subclasses build ``self.generator``, the discriminator under the name ``d_name``, and
    ``self.adv_loss`` (an :class:`~ganzoo.losses.adversarial.AdversarialLoss`), and define
    ``optimizer_groups``. Latent protocol (see :mod:`ganzoo.latent`): ``latent_dim``,
    ``sample_latents(n, generator)`` and ``generate_from_latent(z)``.
    """

    d_name: ClassVar[str] = "discriminator"
    ema_networks = ("generator",)
    # Decay 0.9999 (docs/workflows/generator_evolution.md, "Shared settings"). Averaging starts
    # at iteration 20,000, as in BigGAN-PyTorch's launch scripts (--ema_start 20000); until then
    # the EMA copies the live weights, so sample() gives the live generator: at 500-2,000
    # iterations an EMA was sometimes far better than the live generator and sometimes far
    # worse (docs/training.md, "EMA"). After the start the window grows as sqrt(1 + t): power
    # 1/2 followed the still fast-improving generator best.
    default_ema_decay = 0.9999
    default_ema_warmup_power = 0.5
    default_ema_start = 20_000
    eval_references: ClassVar[dict[str, dict[str, Any]]] = {"sample": {}}

    def __init__(self, config):
        super().__init__(config)
        # DiffAugment of the discriminator's real and fake inputs (Zhao et al. 2020); the
        # identity for diffaugment = "". It holds no state: saved weights do not change.
        self.augment = DiffAugment(config.diffaugment)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def shared_graph(self) -> tuple[str, ...]:
        """The D group's graph_networks: the generator when the config shares one fake
        batch between the D and G steps of an iteration (``share_fakes``)."""
        return ("generator",) if self.config.share_fakes else ()

    @property
    def discriminator_net(self) -> nn.Module:
        return getattr(self, self.d_name)

    def _d_real_fake(self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor):
        """D on real and fake: one forward of the concatenated batch when D has no
        BatchNorm (every layer is per-sample, so this is the same function, with half the
        kernel launches); two forwards otherwise, so BatchNorm statistics stay per batch as
        in the papers."""
        per_sample = self.__dict__.get("_d_per_sample")
        if per_sample is None:
            per_sample = not any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                 for m in d.modules())
            self.__dict__["_d_per_sample"] = per_sample
        if per_sample and real.shape[1:] == fake.shape[1:]:
            logits = d(torch.cat([real, fake.to(real.dtype)]))
            return logits[: real.shape[0]], logits[real.shape[0]:]
        return d(real), d(fake)

    def _fakes(self, real: torch.Tensor) -> torch.Tensor:
        z = torch.randn(real.shape[0], self.latent_dim, device=real.device, dtype=real.dtype)
        return self.generator(z)

    def loss(self, group: str, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        real = batch["image"]
        d = self.discriminator_net
        share = batch.get(SHARED_FORWARD)
        if group == self.d_name:
            if share is not None and self.config.share_fakes and \
                    next(self.generator.parameters()).requires_grad:
                # The first D step of the iteration (the trainer enables G's graph for it,
                # graph_networks): one G forward with a graph, detached here and reused, graph
                # intact, by the G step, as pytorch/examples' dcgan/main.py does.
                fake = self._fakes(real)
                share.put(fake)
                fake = fake.detach()
            else:  # fresh fakes without a graph (an extra critic step, or share_fakes off)
                with torch.no_grad():
                    fake = self._fakes(real)
            real_in, fake_in = self.augment(real), self.augment(fake)
            real_logits, fake_logits = self._d_real_fake(d, real_in, fake_in)
            loss = self.adv_loss.d_loss(real_logits, fake_logits)
            logs = {"d_loss": loss.detach(), "real_score": real_logits.detach().mean(),
                    "fake_score": fake_logits.detach().mean()}
            penalty = self.adv_loss.penalty(d, real_in, fake_in)
            if penalty is not None:
                loss = loss + penalty
                logs["penalty"] = penalty.detach()
            return loss, logs
        fake = share.take() if share is not None else None  # the generator step
        fake_logits = d(self.augment(fake if fake is not None else self._fakes(real)))
        loss = self.adv_loss.g_loss(fake_logits)
        return loss, {"g_loss": loss.detach()}

    # -- latent protocol and task ------------------------------------------------------------
    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` standard-normal latents on the model's device (``GenerativeModel.randn``: a
        CPU generator gives the same latents on every device)."""
        return self.randn(n, self.latent_dim, generator=generator)

    def generate_from_latent(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] from latents ``z`` (N, latent_dim) with the inference generator
        (EMA when present), BatchNorm in eval mode."""
        net = self.inference_net("generator")
        with self.inference():
            return net(z.to(self.device, next(net.parameters()).dtype)).clamp(-1, 1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generate_from_latent(self.sample_latents(n, generator))


class DCGAN(LatentGAN):
    config_class = DCGANConfig
    family = "dcgan"
    paper = ("Radford, Metz & Chintala, Unsupervised Representation Learning with Deep "
             "Convolutional Generative Adversarial Networks, ICLR 2016 (arXiv:1511.06434)")
    d_name = "discriminator"
    # channels_last on CPU only: it sped up this family's training there, while wgan_gp, vae
    # and ddpm gained nothing (figures: docs/training.md, "Speed options"). No GPU figures
    # yet, so CUDA keeps NCHW.
    default_channels_last = frozenset({"cpu"})

    def __init__(self, config: DCGANConfig):
        super().__init__(config)
        c = config
        if c.arch == "convtranspose":
            self.generator = DCGANGenerator(c.latent_dim, c.ngf, c.channels, c.resolution,
                                            norm="batch", bn_momentum=c.bn_momentum)
            self.discriminator = DCGANDiscriminator(c.ndf, c.channels, c.resolution,
                                                    norm="batch", bn_momentum=c.bn_momentum,
                                                    dropout=c.disc_dropout)
        else:
            self.generator = UpsampleGenerator(c.latent_dim, c.ngf, c.channels, c.resolution,
                                               bn_momentum=c.bn_momentum,
                                               upsample_mode=c.upsample_mode)
            self.discriminator = UpsampleDiscriminator(c.ndf, c.channels, c.resolution,
                                                       bn_momentum=c.bn_momentum,
                                                       dropout=c.disc_dropout)
        # The DCGAN paper: N(0, 0.02) convs, N(1, 0.02) BatchNorm scales; the upsample
        # generator's Linear keeps PyTorch's default (docs/workflows/dcgan_faces.md).
        init_weights(self.generator, "normal", c.init_std, linear=False)
        init_weights(self.discriminator, "normal", c.init_std, linear=False)

        if c.loss == "bce":
            self.adv_loss = BCELoss(real_label=c.real_label, fake_label=c.fake_label)
        elif c.loss == "nonsaturating":
            self.adv_loss = NonSaturatingLoss()
        else:
            self.adv_loss = HingeLoss()

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        return {
            "discriminator": OptimizerSpec(("discriminator",), "adam", lr=c.lr, betas=c.betas,
                                           graph_networks=self.shared_graph),
            "generator": OptimizerSpec(("generator",), "adam", lr=c.lr, betas=c.betas),
        }


# -- presets -----------------------------------------------------------------------------------
# docs/workflows/dcgan_faces.md; its BatchNorm momentum 0.8 is Keras's convention, PyTorch's
# 0.2 (see DCGANConfig.bn_momentum).
_UPSAMPLE = dict(arch="upsample", bn_momentum=0.2, disc_dropout=0.25, real_label=0.9,
                 fake_label=0.1)


@register_model
def dcgan(**kwargs) -> DCGAN:
    """DCGAN at 64 px, faithful to Radford et al. 2015 (z = 100, BCE, Adam 2e-4 (0.5, 0.999))."""
    return DCGAN.from_config(DCGANConfig(), preset="dcgan", **kwargs)


@register_model
def dcgan_upsample(**kwargs) -> DCGAN:
    """Upsample + Conv 3×3 G, dropout D, label smoothing 0.9/0.1, 64 px
    (docs/workflows/dcgan_faces.md)."""
    return DCGAN.from_config(DCGANConfig(**_UPSAMPLE), preset="dcgan_upsample", **kwargs)


@register_model
def dcgan_128(**kwargs) -> DCGAN:
    """DCGAN at 128 px: one block deeper in G and D (16·ngf channels at 4×4)."""
    return DCGAN.from_config(DCGANConfig(resolution=128), preset="dcgan_128", **kwargs)


@register_model
def test_dcgan(**kwargs) -> DCGAN:
    """Tiny DCGAN for tests: 32 px, ngf = ndf = 16, z = 32."""
    return DCGAN.from_config(DCGANConfig(resolution=32, ngf=16, ndf=16, latent_dim=32),
                             preset="test_dcgan", **kwargs)


@register_model
def test_dcgan_upsample(**kwargs) -> DCGAN:
    """Tiny dcgan_upsample for tests: 32 px, ngf = ndf = 16, z = 32."""
    return DCGAN.from_config(DCGANConfig(resolution=32, ngf=16, ndf=16, latent_dim=32,
                                         **_UPSAMPLE), preset="test_dcgan_upsample", **kwargs)
