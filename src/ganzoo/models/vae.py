"""VAE track: a convolutional VAE, + VGG perceptual loss, + PatchGAN discriminator.

Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014 (arXiv:1312.6114). The perceptual
term follows Johnson et al. 2016 (arXiv:1603.08155) as used in DFC-VAE (Hou et al. 2016,
arXiv:1610.00291); the adversarial step follows VQGAN (Esser et al., Taming Transformers,
CVPR 2021, arXiv:2012.09841, github.com/CompVis/taming-transformers) and its KL-regularised
autoencoder in latent diffusion (Rombach et al. 2022, arXiv:2112.10752), with pix2pix's
70x70 PatchGAN (arXiv:1611.07004).

Presets (64 px; ``_128`` variants at 128 px with one more stage):

- ``vae``: conv encoder -> diagonal Gaussian over a 256-d latent -> conv decoder;
  L = MSE + beta * KL, beta = 1; Adam lr 1e-3.
- ``vae_perceptual``: + lambda_perc * L_vgg (VGG-16 relu1_2, relu2_2, relu3_3), lambda_perc = 0.1.
- ``vae_patchgan``: L = MSE + 0.1 * L_vgg + 0.1 * L_adv + 1e-4 * KL, with a separately
  optimised PatchGAN discriminator (hinge loss), starting at step ``disc_start`` (1000).

Networks. Encoder: 3x3 stem, then one 4x4 stride-2 conv per entry of ``widths`` (each with
GroupNorm and LeakyReLU 0.2) down to ``resolution / 2**len(widths)``, then a linear layer to
(mu, log sigma^2). Decoder (mirror): linear layer to the bottleneck map, then per stage
Upsample(x2, nearest) + 3x3 conv + GroupNorm + LeakyReLU, and a 3x3 conv to the image. The
decoder never uses transposed convolutions (no checkerboard artefacts, Odena et al. 2016).

Loss scaling (the paper leaves it to the likelihood): every term is per pixel. MSE is the mean
over all pixels and channels; KL (closed form, ``ganzoo.losses.kl``) is summed over the latent
dimensions, averaged over the batch and divided by D = C*H*W. With beta = 1 the loss is
therefore the negative ELBO per data dimension of a Gaussian decoder with variance 1/2, up to a
constant. The perceptual term is the mean squared VGG feature difference per layer, summed
over layers; the adversarial term is the generator side of the hinge loss, -mean D(x_hat).
Logs report the KL in nats per image.

Departures, all deliberate:

- VQGAN scales the adversarial term by an adaptive weight (ratio of gradient norms at the last
  decoder layer) times 0.8-1.0; here it is a fixed adversarial_weight (0.1 in vae_patchgan;
  docs/workflows/generator_evolution.md, "Stage 3: VAE track").
- VQGAN/LDM reconstruct with L1 + LPIPS; the track uses MSE + VGG feature MSE (LPIPS's learned
  layer weights need a download of their own).
- The discriminator sees the sampled-latent reconstruction (as in VQGAN), not the posterior
  mean; its optimiser is pix2pix's (Adam 2e-4, betas (0.5, 0.999)). Its loss keeps VQGAN's
  factor 0.5 (``disc_loss_scale``; taming-transformers' ``hinge_d_loss``).
- GroupNorm instead of BatchNorm: batch-independent outputs, identical in train and eval mode.
- No EMA by default (the VAE objective is a likelihood bound fitted at a moderate learning rate
  and neither reference uses one); ``ema=True`` keeps EMA copies of encoder and decoder.
- The frozen VGG is not saved with the model (see ``ganzoo.losses.perceptual``); building a
  preset with a perceptual term needs its weights. For inference without them, build with
  ``perceptual_weight=0`` (e.g. ``ganzoo.from_pretrained(path, perceptual_weight=0)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import config as cfg
from ..layers.common import make_norm
from ..layers.patchgan import PatchGANDiscriminator, patchgan_output_size
from ..latent import interpolate
from ..losses.adversarial import HingeLoss, NonSaturatingLoss
from ..losses.kl import kl_normal
from ..losses.perceptual import VGG16_LAYERS, VGGPerceptualLoss

from ..registry import register_model
from .base import INPUT, Batch, GenerativeModel, OptimizerSpec, SquareImages

__all__ = ["VAEConfig", "VAE", "VAEEncoder", "VAEDecoder"]

Norm = Literal["group", "batch", "none"]


@dataclass
class VAEConfig(cfg.Config):
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "beta": "kl_weight",
    }
    resolution: int = 64
    channels: int = 3  # image channels
    latent_dim: int = 256
    widths: tuple[int, ...] = (64, 128, 256, 512)  # one stride-2 stage each; decoder mirrors
    norm: Norm = "group"
    kl_weight: float = 1.0  # beta of the beta-VAE (Higgins et al. 2017)
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    # perceptual term (0 = off; no VGG is built)
    perceptual_weight: float = 0.0
    perceptual_weights: str = "imagenet"  # "imagenet", a weights file, or "random" (tests)
    perceptual_layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_3")
    # adversarial term (0 = off; no discriminator is built)
    adversarial_weight: float = 0.0
    adversarial_loss: Literal["hinge", "nonsaturating"] = "hinge"
    disc_start: int = 0  # first step at which D trains and the adversarial term is on
    disc_channels: int = 64
    disc_layers: int = 3  # 3 = 70x70 PatchGAN
    disc_norm: Literal["batch", "instance", "none"] = "batch"
    disc_spectral_norm: bool = False
    disc_lr: float = 2e-4
    disc_betas: tuple[float, float] = (0.5, 0.999)
    # Factor on the discriminator's loss: 0.5 is taming-transformers' hinge_d_loss /
    # vanilla_d_loss (0.5 * (real term + fake term)); 1.0 is the plain sum.
    disc_loss_scale: float = 0.5
    ema: bool = False

    def __post_init__(self):
        super().__post_init__()
        r = self.resolution
        if not isinstance(r, int) or r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {r!r}")
        for field in ("channels", "latent_dim", "disc_channels", "disc_layers"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty tuple of positive ints, "
                             f"got {self.widths}")
        if r >> len(self.widths) < 2:
            raise ValueError(f"widths: {len(self.widths)} stride-2 stages leave less than 2x2 "
                             f"at resolution {r}; use at most {int(math.log2(r)) - 1}")
        if self.norm not in ("group", "batch", "none"):
            raise ValueError(f"norm must be 'group', 'batch' or 'none', got {self.norm!r}")
        for field in ("kl_weight", "perceptual_weight", "adversarial_weight"):
            if getattr(self, field) < 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)}")
        for field in ("lr", "disc_lr"):
            if getattr(self, field) <= 0:
                raise ValueError(f"{field} must be positive, got {getattr(self, field)}")
        if self.disc_loss_scale <= 0:
            raise ValueError(f"disc_loss_scale must be positive, got {self.disc_loss_scale}")
        if self.disc_start < 0:
            raise ValueError(f"disc_start must be >= 0, got {self.disc_start}")
        if self.adversarial_loss not in ("hinge", "nonsaturating"):
            raise ValueError(f"adversarial_loss must be 'hinge' or 'nonsaturating', "
                             f"got {self.adversarial_loss!r}")
        if self.disc_norm not in ("batch", "instance", "none"):
            raise ValueError(f"disc_norm must be 'batch', 'instance' or 'none', "
                             f"got {self.disc_norm!r}")
        if not self.perceptual_weights:
            raise ValueError("perceptual_weights must be 'imagenet', 'random' or a file path")

        bad = [n for n in self.perceptual_layers if n not in VGG16_LAYERS]
        if not self.perceptual_layers or bad:
            raise ValueError(f"perceptual_layers must name VGG-16 layers "
                             f"({', '.join(VGG16_LAYERS)}), got {self.perceptual_layers}")
        if self.adversarial_weight > 0:
            try:
                patchgan_output_size(r, self.disc_layers)
            except ValueError:
                raise ValueError(f"disc_layers: {self.disc_layers} layers are too many for "
                                 f"resolution {r}") from None

    @property
    def bottleneck(self) -> int:
        """Side of the encoder's last feature map."""
        return self.resolution >> len(self.widths)


# -- blocks ------------------------------------------------------------------------------------
def _conv_block(c_in: int, c_out: int, kernel: int, stride: int, norm: Norm) -> nn.Sequential:
    padding = 1  # 3x3 stride 1 keeps the size; 4x4 stride 2 halves it
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=norm == "none"),
                         make_norm(norm, c_out), nn.LeakyReLU(0.2, inplace=True))


class UpBlock(nn.Sequential):
    """Upsample(x2, nearest) + 3x3 conv + norm + LeakyReLU: the decoder's only upsampler."""

    def __init__(self, c_in: int, c_out: int, norm: Norm):
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"),
                         *_conv_block(c_in, c_out, 3, 1, norm))


# -- networks ----------------------------------------------------------------------------------
class VAEEncoder(nn.Module):
    """image (N, C, R, R) -> (mu, logvar), each (N, latent_dim)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c = config
        layers = [_conv_block(c.channels, c.widths[0], 3, 1, c.norm)]
        prev = c.widths[0]
        for w in c.widths:
            layers.append(_conv_block(prev, w, 4, 2, c.norm))
            prev = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(prev * c.bottleneck ** 2, 2 * c.latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar


class VAEDecoder(nn.Module):
    """z (N, latent_dim) -> image (N, C, R, R) (unbounded: the mean of the Gaussian decoder)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        c = config
        widths = tuple(reversed(c.widths))
        self.shape = (widths[0], c.bottleneck, c.bottleneck)
        self.project = nn.Linear(c.latent_dim, widths[0] * c.bottleneck ** 2)
        outs = widths[1:] + (widths[-1],)
        self.blocks = nn.Sequential(*[UpBlock(a, b, c.norm) for a, b in zip(widths, outs)])
        self.to_image = nn.Conv2d(outs[-1], c.channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.project(z).view(z.shape[0], *self.shape), 0.2)
        return self.to_image(self.blocks(h))


# -- the family --------------------------------------------------------------------------------
class VAE(SquareImages, GenerativeModel):
    """Convolutional VAE with optional perceptual and PatchGAN adversarial terms.

    Networks: ``encoder``, ``decoder`` (optimizer group ``autoencoder``) and, when
    ``adversarial_weight > 0``, ``discriminator`` (group ``discriminator``). The frozen VGG of
    the perceptual term is ``perceptual`` and belongs to no group.
    """

    config_class = VAEConfig
    family = "vae"
    paper = ("Kingma & Welling, Auto-Encoding Variational Bayes, ICLR 2014 (arXiv:1312.6114)")
    task = "reconstruct"
    batch_keys = ("image",)
    default_dataset = "shapes"
    eval_references: ClassVar[dict[str, dict[str, Any]]] = {"sample": {}, "reconstruction": {}}

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        self.ema_networks = ("encoder", "decoder") if c.ema else ()
        self.encoder = VAEEncoder(c)
        self.decoder = VAEDecoder(c)
        self.perceptual = None
        if c.perceptual_weight > 0:
            self.perceptual = VGGPerceptualLoss(layers=c.perceptual_layers,
                                                weights=c.perceptual_weights)
        self.discriminator = None
        self.adv_loss = None
        if c.adversarial_weight > 0:
            self.discriminator = PatchGANDiscriminator(
                c.channels, c.disc_channels, c.disc_layers, norm=c.disc_norm,
                spectral_norm=c.disc_spectral_norm)
            loss_cls = HingeLoss if c.adversarial_loss == "hinge" else NonSaturatingLoss
            self.adv_loss = loss_cls(d_scale=c.disc_loss_scale)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    # -- training ------------------------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        groups = {"autoencoder": OptimizerSpec(("encoder", "decoder"), "adam", lr=c.lr,
                                               betas=c.betas)}
        if self.discriminator is not None:
            groups["discriminator"] = OptimizerSpec(("discriminator",), "adam", lr=c.disc_lr,
                                                    betas=c.disc_betas)
        return groups

    def adversarial_active(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.disc_start

    def schedule(self, step: int) -> list[str]:
        """The autoencoder every step; the discriminator from ``disc_start`` on."""
        return ["autoencoder"] + (["discriminator"] if self.adversarial_active(step) else [])

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): differentiable in mu and logvar."""
        if generator is None:
            eps = torch.randn_like(mu)
        else:
            eps = torch.randn(mu.shape, generator=generator, device=generator.device,
                              dtype=mu.dtype).to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    def _reconstruct_train(self, x: torch.Tensor):
        mu, logvar = self.encoder(x)
        return self.decoder(self.reparameterize(mu, logvar)), mu, logvar

    def loss(self, group: str, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        c = self.config
        x = batch["image"]
        if group == "autoencoder":
            recon, mu, logvar = self._reconstruct_train(x)
            mse = F.mse_loss(recon, x)
            kl = kl_normal(mu, logvar, "batchmean")  # nats per image
            loss = mse + c.kl_weight * kl / x[0].numel()
            logs: dict[str, Any] = {"mse": mse.detach(), "kl": kl.detach()}
            if self.perceptual is not None:
                perc = self.perceptual(recon, x.detach())
                loss = loss + c.perceptual_weight * perc
                logs["perceptual"] = perc.detach()
            if self.adversarial_active(step):
                g_adv = self.adv_loss.g_loss(self.discriminator(recon))
                loss = loss + c.adversarial_weight * g_adv
                logs["g_adv"] = g_adv.detach()
            logs["loss"] = loss.detach()
            return loss, logs
        with torch.no_grad():  # the discriminator step trains D only
            recon = self._reconstruct_train(x)[0]
        real_logits = self.discriminator(x)
        fake_logits = self.discriminator(recon)
        loss = self.adv_loss.d_loss(real_logits, fake_logits)
        return loss, {"d_loss": loss.detach(), "real_score": real_logits.detach().mean(),
                      "fake_score": fake_logits.detach().mean()}

    # -- task ----------------------------------------------------------------------------------
    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device, next(self.encoder.parameters()).dtype)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logvar)`` of images ``x`` in [-1, 1]."""
        with self.inference():
            return self.inference_net("encoder")(self._to_model(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (the decoder mean, clamped) from latents ``z``."""
        net = self.inference_net("decoder")
        with self.inference():
            return net(z.to(self.device, next(net.parameters()).dtype)).clamp(-1, 1)

    generate_from_latent = decode  # ganzoo.latent protocol

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents from the prior N(0, I) on the model's device
        (``GenerativeModel.randn``)."""
        return self.randn(n, self.latent_dim, generator=generator)

    def reconstruct(self, x: torch.Tensor, generator: torch.Generator | None = None,
                    sample_posterior: bool = False) -> torch.Tensor:
        """Decode the posterior mean of ``x`` (or a posterior sample, drawn on ``generator``)."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator) if sample_posterior else mu
        return self.decode(z)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` images decoded from prior samples."""
        return self.decode(self.sample_latents(n, generator))

    @torch.no_grad()
    def interpolate(self, x1: torch.Tensor, x2: torch.Tensor, steps: int = 8,
                    method: Literal["lerp", "slerp"] = "lerp") -> torch.Tensor:
        """Decode ``steps`` points between the posterior means of ``x1`` and ``x2``.

        ``x1``, ``x2``: (C, H, W) or (N, C, H, W). Returns (steps, C, H, W) or
        (steps, N, C, H, W); the first and last entries are the two reconstructions.
        """
        single = x1.dim() == 3
        if single:
            x1, x2 = x1[None], x2[None]
        if x1.shape != x2.shape:
            raise ValueError(f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and "
                             f"{tuple(x2.shape)}")
        z = interpolate(self.encode(x1)[0], self.encode(x2)[0], steps, method)  # (S, N, D)
        images = self.decode(z.flatten(0, 1)).unflatten(0, z.shape[:2])
        return images[:, 0] if single else images

    def generate(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                 **options) -> dict[str, torch.Tensor]:
        """``"sample"``: ``n`` prior samples; ``"reconstruction"``: reconstructions of the
        first ``n`` images of ``batch["image"]``, in order (paired with them for PSNR/SSIM).
        A batch of outside images (``INPUT``) gives their reconstructions alone."""
        self.check_sampling_options(options)
        if batch is not None and INPUT in batch:
            return {"reconstruction": self.reconstruct(batch[INPUT][:n])}
        out = {"sample": self.sample(n, generator=generator)}
        if batch is not None and "image" in batch:
            out["reconstruction"] = self.reconstruct(batch["image"][:n])
        return out

    def preview(self, batch: Batch | None, n: int, generator: torch.Generator | None = None,
                **options) -> torch.Tensor:
        """Rows of the sample grid: inputs, their reconstructions, prior samples."""
        if batch is None or "image" not in batch:
            return self.generate(None, n, generator, **options)["sample"]
        x = self._to_model(batch["image"][:n]).clamp(-1, 1)
        out = self.generate({"image": x}, x.shape[0], generator, **options)
        return torch.cat([x, out["reconstruction"], out["sample"]])


# -- presets -----------------------------------------------------------------------------------
_128 = dict(resolution=128, widths=(64, 128, 256, 512, 512))
_PERCEPTUAL = dict(perceptual_weight=0.1)
_PATCHGAN = dict(perceptual_weight=0.1, adversarial_weight=0.1, kl_weight=1e-4, disc_start=1000)
_TEST = dict(resolution=32, widths=(16, 32, 64), latent_dim=32)


@register_model
def vae(**kwargs) -> VAE:
    """Convolutional VAE at 64 px: latent 256, MSE + KL (beta 1), Adam 1e-3."""
    return VAE.from_config(VAEConfig(), preset="vae", **kwargs)


@register_model
def vae_128(**kwargs) -> VAE:
    """``vae`` at 128 px (five stages)."""
    return VAE.from_config(VAEConfig(**_128), preset="vae_128", **kwargs)


@register_model
def vae_perceptual(**kwargs) -> VAE:
    """``vae`` + 0.1 * VGG-16 perceptual loss (relu1_2, relu2_2, relu3_3), 64 px."""
    return VAE.from_config(VAEConfig(**_PERCEPTUAL), preset="vae_perceptual", **kwargs)


@register_model
def vae_perceptual_128(**kwargs) -> VAE:
    """``vae_perceptual`` at 128 px."""
    return VAE.from_config(VAEConfig(**_128, **_PERCEPTUAL), preset="vae_perceptual_128",
                           **kwargs)


@register_model
def vae_patchgan(**kwargs) -> VAE:
    """VQGAN-lite at 64 px: MSE + 0.1 VGG + 0.1 PatchGAN hinge + 1e-4 KL, D from step 1000."""
    return VAE.from_config(VAEConfig(**_PATCHGAN), preset="vae_patchgan", **kwargs)


@register_model
def vae_patchgan_128(**kwargs) -> VAE:
    """``vae_patchgan`` at 128 px."""
    return VAE.from_config(VAEConfig(**_128, **_PATCHGAN), preset="vae_patchgan_128", **kwargs)


@register_model
def test_vae(**kwargs) -> VAE:
    """Tiny VAE for tests: 32 px, widths (16, 32, 64), latent 32, no perceptual term."""
    return VAE.from_config(VAEConfig(**_TEST), preset="test_vae", **kwargs)


@register_model
def test_vae_patchgan(**kwargs) -> VAE:
    """Tiny vae_patchgan for tests: 32 px; random-weight VGG cut at relu1_2 (explicitly, no
    download), PatchGAN with 16 base channels, D from step 0."""
    return VAE.from_config(
        VAEConfig(**_TEST, **{**_PATCHGAN, "disc_start": 0}, perceptual_weights="random",
                  perceptual_layers=("relu1_2",), disc_channels=16),
        preset="test_vae_patchgan", **kwargs)
