"""BlobGAN encoder: images -> the layout MLP's latent at ``mlp_idx`` (default -1).

The reference inverter (``dave-epstein/blobgan``, ``models/invertblobgan.py``; OCTET's
``train_encoder.py``) regresses the latent that the last layout-MLP layer(s) turn into blobs,
from generated images (with a loss on the images and on the blob parameters) and real images
(image loss only), against a frozen, pretrained BlobGAN (its EMA networks).

Here the encoder is a registered ganzoo model trained by ``ganzoo.train`` like any other: one
optimizer group (``encoder``); for ``step < real_from_step`` the loss uses generated images only,
afterwards real images are added (the two phases of OCTET: pre-training on generated images,
then fine-tuning on real + generated). Image losses are MSE + VGG perceptual
(``ganzoo.losses.perceptual``; the reference uses LPIPS-VGG). The latent loss on generated
images is the reference's ``fake_latents_MSE``: the mean over ``xs, ys, covs, sizes, features,
spatial_style`` of each one's MSE, with ``covs`` compared as the 2x2 covariance matrices the
reference's layouts carry (:func:`layout_latent_loss`), not as their raw parameters (two raw
directions ``(u, v)`` and ``(2u, 2v)`` are the same blob).

Departures: the backbone is any timm model (``num_classes=0``, global pooling) plus a linear
head, instead of a StyleGAN2 discriminator (the reference and OCTET) - pass ``backbone`` to
choose; ``backbone="stylegan2_discriminator"`` builds the reference's inverter (StyleGAN2's
residual discriminator without the minibatch-std layer, ``d_out`` = the latent width, channels
from ``disc_channel_base``/``disc_channel_max``). The reference inverter predicts the layout
MLP's output (``mlp_idx = len(mlp)``, here ``mlp_n_layers + 1``), OCTET's and ganzoo's default
the input of its last layer (``mlp_idx = -1``); ``tools/compare_blobgan.py`` compares the
reference's choice against the authors' code. The VGG
perceptual loss replaces LPIPS (no LPIPS weights can be downloaded here); OCTET's
decision-model feature-matching term is left out (it needs the decision model at training time);
the reference renders its generated training layouts with the BlobGAN's splatting jitter, here
they are rendered without it (the target layout is then exactly what the image shows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ... import config as cfg
from ..._io import load_state_dict
from ...hub import WEIGHTS_NAME, resolve_folder
from ...losses.perceptual import VGGPerceptualLoss
from ...registry import MODELS, register_model
from ..base import INPUT, GenerativeModel, OptimizerSpec
from .layout import LAYOUT_KEYS, blob_covariance
from .stylegan2 import StyleGAN2Discriminator

__all__ = ["BlobGANEncoder", "BlobGANEncoderConfig", "LatentEncoder", "layout_latent_loss",
           "blobgan_encoder_256", "blobgan_encoder_256x512", "test_blobgan_encoder"]


def layout_latent_loss(pred: dict[str, torch.Tensor], true: dict[str, torch.Tensor],
                       ab_norm: float = 0.02) -> torch.Tensor:
    """OCTET's ``fake_latents_MSE``: the mean over the six layout keys of each key's MSE, the
    raw ``covs`` turned into covariance matrices (``blob_covariance``) first, as the
    reference compares its layouts' ``covs``."""
    terms = []
    for k in LAYOUT_KEYS:
        p, t = pred[k], true[k].detach()
        if k == "covs":
            p, t = blob_covariance(p, ab_norm), blob_covariance(t, ab_norm)
        terms.append(F.mse_loss(p, t))
    return sum(terms) / len(terms)


STYLEGAN2_BACKBONE = "stylegan2_discriminator"


@dataclass
class BlobGANEncoderConfig(cfg.Config):
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "lambda_mse_fake": "mse_fake_weight",
        "lambda_perceptual_fake": "perceptual_fake_weight",
        "lambda_latent": "latent_weight",
        "lambda_mse_real": "mse_real_weight",
        "lambda_perceptual_real": "perceptual_real_weight",
    }
    blobgan: str = "blobgan_256"  # BlobGAN preset the encoder inverts
    # BlobGANConfig fields that differ from that preset, e.g. {"style_dim": 512} for a
    # blobgan_256x512 trained with ganzoo 0.1's preset (encoders saved then load with it)
    blobgan_overrides: dict[str, Any] = field(default_factory=dict)
    blobgan_weights: str | None = None  # saved BlobGAN folder / Hub id, loaded at build
    resolution: int = 256  # image height: must match the BlobGAN's (sizes the dataset)
    aspect_ratio: float = 1.0  # must match the BlobGAN's
    # any timm model name, or "stylegan2_discriminator" (the reference inverter: StyleGAN2's
    # residual D without minibatch std, min(disc_channel_max, disc_channel_base / res) channels)
    backbone: str = "resnet34"
    pretrained_backbone: bool = False  # timm ImageNet weights (downloads)
    disc_channel_base: int = 32768  # stylegan2_discriminator only (the reference's multiplier 2)
    disc_channel_max: int = 512
    # predict the input of layout_net.mlp[mlp_idx]; mlp_n_layers + 1 = len(mlp): the MLP's
    # output, the reference inverter's target
    mlp_idx: int = -1
    lr: float = 0.002
    eps: float = 1e-5
    real_from_step: int = 10_000  # generated images only before this step, then real + generated
    mse_fake_weight: float = 1.0
    perceptual_fake_weight: float = 1.0
    latent_weight: float = 1.0  # MSE on the blob parameters of generated images
    mse_real_weight: float = 1.0
    perceptual_real_weight: float = 1.0
    perceptual_weights: str = "imagenet"  # VGG-16 weights: "imagenet", a path, "random", "none"
    truncation: float = 0.0  # truncation of the generated training layouts

    def __post_init__(self):
        super().__post_init__()
        if not self.blobgan:
            raise ValueError("blobgan must name a BlobGAN preset")
        if not self.backbone:
            raise ValueError("backbone must name a timm model")
        if self.backbone == STYLEGAN2_BACKBONE and self.pretrained_backbone:
            raise ValueError(f"pretrained_backbone needs a timm backbone, not {self.backbone!r}")
        if self.disc_channel_base < 1 or self.disc_channel_max < 1:
            raise ValueError("disc_channel_base and disc_channel_max must be >= 1")
        if self.real_from_step < 0:
            raise ValueError(f"real_from_step must be >= 0, got {self.real_from_step}")
        if not 0.0 <= self.truncation <= 1.0:
            raise ValueError(f"truncation must be in [0, 1], got {self.truncation}")
        for name in ("mse_fake_weight", "perceptual_fake_weight", "latent_weight",
                     "mse_real_weight", "perceptual_real_weight", "lr"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


class LatentEncoder(nn.Module):
    """A timm backbone (pooled features) and a linear head to ``latent_dim``."""

    def __init__(self, backbone: str, latent_dim: int, pretrained: bool = False):
        super().__init__()
        import timm  # heavy; imported only when an encoder is built

        self.backbone = timm.create_model(backbone, pretrained=pretrained, num_classes=0)
        self.head = nn.Linear(self.backbone.num_features, latent_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


class BlobGANEncoder(GenerativeModel):
    """Encoder of a frozen BlobGAN; ``reconstruct`` renders the predicted layouts."""

    config_class = BlobGANEncoderConfig
    family = "blobgan"
    paper = ("Epstein et al., BlobGAN, ECCV 2022 (arXiv 2205.02837); encoder as in Zemni et "
             "al., OCTET, CVPR 2023 (arXiv 2211.12380)")
    task = "reconstruct"
    batch_keys = ("image",)
    default_dataset = "shapes_scenes"
    eval_references = {"reconstruction": {}}

    def __init__(self, config: BlobGANEncoderConfig):
        super().__init__(config)
        blobgan = MODELS.build(config.blobgan, **config.blobgan_overrides)
        # Only the EMA layout MLP and generator are used (as in the reference inverter).
        del blobgan.discriminator, blobgan.layout_net, blobgan.generator
        blobgan.requires_grad_(False)
        self.blobgan = blobgan
        bc = blobgan.config
        if (bc.resolution, bc.aspect_ratio) != (config.resolution, config.aspect_ratio):
            raise ValueError(f"resolution/aspect_ratio ({config.resolution}, "
                             f"{config.aspect_ratio}) must match the BlobGAN '{config.blobgan}' "
                             f"({bc.resolution}, {bc.aspect_ratio})")
        layout_net = blobgan.ema["layout_net"]
        if not -len(layout_net.mlp) <= config.mlp_idx <= len(layout_net.mlp):
            raise ValueError(f"mlp_idx must be in [-{len(layout_net.mlp)}, "
                             f"{len(layout_net.mlp)}] (the layout MLP's modules), "
                             f"got {config.mlp_idx}")
        latent_dim = layout_net.latent_dim(config.mlp_idx)
        if config.backbone == STYLEGAN2_BACKBONE:
            self.encoder = StyleGAN2Discriminator(
                config.resolution, config.aspect_ratio, config.disc_channel_base,
                config.disc_channel_max, minibatch_std=False, d_out=latent_dim)
        else:
            self.encoder = LatentEncoder(config.backbone, latent_dim, config.pretrained_backbone)
        self._perceptual = None

    @classmethod
    def from_config(cls, config=None, *, preset=None, **overrides):
        model = super().from_config(config, preset=preset, **overrides)
        if model.config.blobgan_weights and not next(model.parameters()).is_meta:
            model.load_blobgan(model.config.blobgan_weights)
        return model

    def load_blobgan(self, source: str) -> None:
        """Load the EMA networks of a saved BlobGAN (folder or Hub id) into the frozen copy."""
        state = load_state_dict(resolve_folder(source) / WEIGHTS_NAME)
        ema = {k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")}
        if not ema:
            raise ValueError(f"{source} holds no EMA networks ('ema.' keys): not a BlobGAN")
        self.blobgan.ema.load_state_dict(ema, strict=True)

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        return {"encoder": OptimizerSpec(("encoder",), optimizer="adamw", lr=c.lr, eps=c.eps)}

    @property
    def image_size(self) -> tuple[int, int]:
        return self.blobgan.image_size

    @property
    def channels(self) -> int:
        return self.blobgan.channels

    def train(self, mode: bool = True):
        super().train(mode)
        self.blobgan.train(False)  # frozen
        return self

    # -- helpers ----------------------------------------------------------------------------
    @property
    def perceptual(self) -> nn.Module | None:
        if self.config.perceptual_weights == "none":
            return None
        if self._perceptual is None:
            # Kept out of the module tree (a frozen measuring instrument, not a trained part)
            # and built on first use, so that building the encoder reads no VGG weights.
            object.__setattr__(self, "_perceptual",
                               VGGPerceptualLoss(weights=self.config.perceptual_weights))
        return self._perceptual.to(self.device)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Predicted layout-MLP latents at ``mlp_idx`` (differentiable)."""
        return self.encoder(images)

    def invert(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """The encoder's guess of the blob parameters of ``images``."""
        return self.blobgan.layout_from_latent(self.encode(images), mlp_idx=self.config.mlp_idx)

    def _image_loss(self, recon, target, w_mse, w_perc, tag, logs):
        mse = F.mse_loss(recon, target)
        loss = w_mse * mse
        logs[f"{tag}_mse"] = mse.detach()
        perc = self.perceptual
        if perc is not None and w_perc > 0:
            p = perc(recon, target)
            loss = loss + w_perc * p
            logs[f"{tag}_perceptual"] = p.detach()
        return loss

    def loss(self, group: str, batch, step: int):
        c, bg = self.config, self.blobgan
        real = batch["image"]
        bg.check_images(real)
        logs = {}
        with torch.no_grad():
            true_layout = bg.sample_layout(real.shape[0], truncation=c.truncation)
            fake = bg.render(true_layout)
        pred_layout = self.invert(fake)
        loss = self._image_loss(bg.render(pred_layout), fake, c.mse_fake_weight,
                                c.perceptual_fake_weight, "fake", logs)
        if c.latent_weight > 0:
            latent = layout_latent_loss(pred_layout, true_layout, bg.config.ab_norm)
            loss = loss + c.latent_weight * latent
            logs["fake_latent_mse"] = latent.detach()
        if step >= c.real_from_step:
            loss = loss + self._image_loss(bg.render(self.invert(real)), real, c.mse_real_weight,
                                           c.perceptual_real_weight, "real", logs)
        return loss, logs

    # -- task -------------------------------------------------------------------------------
    def reconstruct(self, images: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        with self.inference():
            images = images.to(self.device)
            return self.blobgan.render(self.invert(images), generator=generator).clamp(-1, 1)

    def generate(self, batch, n: int, generator: torch.Generator | None = None, **options):
        """``{"reconstruction": ...}`` of the first ``n`` images of ``batch["image"]`` (or of
        outside images, ``INPUT``)."""
        self.check_sampling_options(options)
        if batch is None:
            raise ValueError("BlobGANEncoder reconstructs images: pass a batch with 'image'")
        images = batch[INPUT] if INPUT in batch else batch["image"]
        return {"reconstruction": self.reconstruct(images[:n], generator=generator)}

    def preview(self, batch, n: int, generator: torch.Generator | None = None,
                **options) -> torch.Tensor:
        """Inputs above their reconstructions (generated inputs when there is no batch)."""
        if batch is None:
            images = self.blobgan.sample(n, generator=generator)
        else:
            images = batch["image"][:n].to(self.device)
        out = self.generate({INPUT: images}, len(images), generator, **options)
        return torch.cat([images, out["reconstruction"]])


@register_model
def blobgan_encoder_256(**kwargs) -> BlobGANEncoder:
    """ResNet-34 encoder of ``blobgan_256`` (set ``blobgan_weights`` to a trained BlobGAN)."""
    return BlobGANEncoder.from_config(BlobGANEncoderConfig(), preset="blobgan_encoder_256",
                                      **kwargs)


@register_model
def blobgan_encoder_256x512(**kwargs) -> BlobGANEncoder:
    """ResNet-34 encoder of ``blobgan_256x512`` (OCTET's inverter weights: mse_real_weight=0.1,
    latent_weight=10)."""
    return BlobGANEncoder.from_config(
        BlobGANEncoderConfig(blobgan="blobgan_256x512", aspect_ratio=2.0, mse_real_weight=0.1,
                             latent_weight=10.0),
        preset="blobgan_encoder_256x512", **kwargs)


@register_model
def test_blobgan_encoder(**kwargs) -> BlobGANEncoder:
    """Tiny encoder (timm ``test_resnet``) of ``test_blobgan`` for tests; real images from
    step 2; no perceptual loss."""
    return BlobGANEncoder.from_config(
        BlobGANEncoderConfig(blobgan="test_blobgan", resolution=32, backbone="test_resnet",
                             real_from_step=2, perceptual_weights="none"),
        preset="test_blobgan_encoder", **kwargs)
