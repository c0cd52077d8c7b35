"""BlobGAN: scenes as compositions of blobs (Epstein et al., ECCV 2022, arXiv 2205.02837).

Reference implementation: ``dave-epstein/blobgan``; the rectangular 256x512 driving-scene
set-up, the encoder and the counterfactual workflow follow OCTET (Zemni et al., CVPR 2023,
arXiv 2211.12380, ``valeoai/OCTET``).

A layout MLP maps noise to K blobs (centre, size, covariance, feature and spatial style, plus a
background feature and style); the blobs are splatted into opacity maps, alpha-composited into
a feature grid at ``size_in`` (``size_in x size_in*aspect_ratio``) and a pyramid of blob scores;
a StyleGAN2 synthesis network starts from the feature grid and modulates every layer with the
splatted per-blob styles. A StyleGAN2 residual discriminator (square or rectangular) is trained
with the non-saturating logistic loss and lazy R1.

Defaults follow the reference configs (``experiment/blobgan.yaml``, OCTET's ``bdd.yaml`` and
``invertblobgan_rect.yaml``): lr 0.002, Adam betas (0, 0.99), eps 1e-5, R1 weight 50 on
``E||grad D(x)||^2`` every 16 D steps (scaled by 16, with StyleGAN2's lr/beta correction
``c = 16/17`` for the D optimizer), no G regulariser (``G_reg_every = -1``), EMA of the layout
MLP and generator with decay ``0.5 ** (32 / 10000)`` per step.

Departures (every one deliberate):

- No path-length regulariser: the reference configs disable it (``G_reg_every: -1``) and the
  ``G_feature_mean``/``G_feature_variance`` weights of its config are never used by its code.
- The rectangular grid is rendered directly (coordinates normalised per axis, i.e. the same
  stretch as OCTET's), instead of rendering a square grid and resizing it.
- Blob coordinates are measured at pixel centres (the reference: pixel corners,
  ``pixel_coordinates="corner"``); the score pyramid is built with 2x2 average pooling (equal to
  the reference's bilinear halving). See ``layout.py``.
- Native PyTorch up/down-sampling and activations instead of the reference's CUDA kernels.
- Splatting jitter (``feature_jitter_xy/shift/angle``, on in ``blobgan_256x512`` as in
  OCTET's ``blobgan40.yaml``) is applied to the training renders only (G and D steps);
  ``sample``/``render`` never jitter (the reference jitters unless ``no_jitter``; its logged
  EMA images pass ``no_jitter``). The angle jitter rotates instead of the reference's
  ``arccos`` reconstruction, which mirrors some blobs (see ``layout.py``).
- No random blob dropout, shuffling or style swapping (off in the reference configs); the
  number of blobs is fixed at K (``n_features_min = n_features_max``).
- ``sample`` clamps images to [-1, 1] (the generator's raw output is unbounded).
- Training loop: the trainer's EMA warm-up (``--ema-warmup-power 0``: the reference's constant
  decay), the EMA updated after the G optimizer step (the reference: before it), D then G in
  each iteration (the reference's Lightning loop: G then D), lazy R1 at D steps 0, 16, ... (the
  reference: 15, 31, ...).

``tools/compare_blobgan.py`` runs the reference's networks, losses and optimizer steps against
these on copied weights; docs/blobgan.md ("Against the authors' code") has the measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from ... import config as cfg
from ...layers.common import is_pow2
from ...losses.adversarial import NonSaturatingLoss, r1_penalty
from ...registry import register_model
from ..base import GenerativeModel, OptimizerSpec
from . import layout as L
from .layout import LayoutMLP, render_scores, score_pyramid
from .stylegan2 import LayoutStyleGANGenerator, StyleGAN2Discriminator, generator_channels, splat

__all__ = ["BlobGAN", "BlobGANConfig", "BlobGANEncoder", "BlobGANEncoderConfig", "blobgan_256",
           "blobgan_256x512", "test_blobgan", "test_blobgan_rect"]


@dataclass
class BlobGANConfig(cfg.Config):
    """BlobGAN hyperparameters (defaults: the reference's 256 px LSUN model)."""
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "noise_dim": "latent_dim",
        "d_channel_base": "disc_channel_base",
        "d_channel_max": "disc_channel_max",
    }

    resolution: int = 256  # output height
    aspect_ratio: float = 1.0  # width / height (2.0 for 256x512)
    n_blobs: int = 10  # K
    latent_dim: int = 512
    feature_dim: int = 768  # layout feature dim = generator input channels
    style_dim: int = 512  # spatial style dim
    mlp_hidden_dim: int = 1024
    mlp_n_layers: int = 8
    mlp_lr_mul: float = 0.01
    norm_features: bool = True  # pixel-norm features and styles (reference: true)
    ab_norm: float = 0.02  # covariance determinant^(1/2)
    size_in: int = 16  # feature grid height
    c_model: int = 96  # generator width: 8*c_model channels up to 64 px, halving above
    override_c_in: int | None = None  # generator input channels (= feature_dim) if not the table's
    # Discriminator channels min(disc_channel_max, base / res): 32768 is StyleGAN2's channel
    # multiplier 2, the BlobGAN/OCTET discriminator (512/256/128 at 64/128/256 px); ganzoo
    # 0.1 used 16384 (half width; its saved config.json files keep that value).
    disc_channel_base: int = 32768
    disc_channel_max: int = 512
    lr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-5
    r1_gamma: float = 100.0  # R1 = r1_gamma/2 * E||grad D(x)||^2 (reference: 50 * E||.||^2)
    r1_every: int = 16  # lazy R1 interval (0 disables R1)
    mlp_idx: int = -1  # layout-MLP layer the encoder predicts the input of
    # Splatting jitter of the training renders (OCTET's names): centres by U(-xy, xy), size
    # logits by U(-shift, shift), rotations by U(-angle, angle) radians; 0 disables each.
    feature_jitter_xy: float = 0.0
    feature_jitter_shift: float = 0.0
    feature_jitter_angle: float = 0.0
    # Where splatting puts pixel j of a row: its centre (j + 0.5) / W, or its corner j / W (the
    # reference's splat_features; see layout.py and docs/blobgan.md, "Against the authors' code").
    pixel_coordinates: Literal["centre", "corner"] = "centre"

    def __post_init__(self):
        super().__post_init__()
        if not is_pow2(self.resolution) or self.resolution < 8:
            raise ValueError(f"resolution must be a power of two >= 8, got {self.resolution}")
        if not is_pow2(self.size_in) or not 4 <= self.size_in <= self.resolution:
            raise ValueError(f"size_in must be a power of two in [4, resolution], "
                             f"got {self.size_in}")
        if self.aspect_ratio <= 0 or (4 * self.aspect_ratio) % 1:
            raise ValueError(f"aspect_ratio must be a positive multiple of 0.25, "
                             f"got {self.aspect_ratio}")
        if self.n_blobs < 1:
            raise ValueError(f"n_blobs must be >= 1, got {self.n_blobs}")
        for name in ("latent_dim", "feature_dim", "style_dim", "mlp_hidden_dim", "c_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mlp_n_layers < 1:
            raise ValueError(f"mlp_n_layers must be >= 1, got {self.mlp_n_layers}")
        c_in = self.override_c_in or generator_channels(self.size_in, self.c_model)
        if c_in != self.feature_dim:
            raise ValueError(f"feature_dim ({self.feature_dim}) must equal the generator's input "
                             f"channels ({c_in}); set override_c_in={self.feature_dim}")
        if self.r1_every < 0 or self.r1_gamma < 0:
            raise ValueError("r1_every and r1_gamma must be >= 0")
        for name in ("feature_jitter_xy", "feature_jitter_shift", "feature_jitter_angle"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not -(self.mlp_n_layers + 1) <= self.mlp_idx <= self.mlp_n_layers:
            raise ValueError(f"mlp_idx must index the layout MLP's {self.mlp_n_layers + 1} "
                             f"modules, got {self.mlp_idx}")

    @property
    def width(self) -> int:
        return round(self.resolution * self.aspect_ratio)

    @property
    def grid_shape(self) -> tuple[int, int]:
        """Feature grid (height, width): ``size_in`` x ``size_in * aspect_ratio``."""
        return self.size_in, round(self.size_in * self.aspect_ratio)


EditOp = Literal["move", "resize", "remove", "add", "feature", "style"]


class BlobGAN(GenerativeModel):
    """BlobGAN: layout MLP + blob splatting + layout-conditioned StyleGAN2 (see module doc)."""

    config_class = BlobGANConfig
    family = "blobgan"
    paper = ("Epstein, Park, Zhang, Shechtman, Efros, BlobGAN: Spatially Disentangled Scene "
             "Representations, ECCV 2022 (arXiv 2205.02837)")
    task = "sample"
    batch_keys = ("image",)
    default_dataset = "shapes_scenes"
    ema_networks = ("layout_net", "generator")
    default_ema_decay = 0.5 ** (32 / 10_000)

    def __init__(self, config: BlobGANConfig):
        super().__init__(config)
        c = config
        self.layout_net = LayoutMLP(c.n_blobs, c.latent_dim, c.feature_dim, c.style_dim,
                                    c.mlp_hidden_dim, c.mlp_n_layers, c.mlp_lr_mul,
                                    c.norm_features)
        self.generator = LayoutStyleGANGenerator(c.resolution, c.size_in, c.style_dim, c.c_model,
                                                 c_in=c.override_c_in, aspect_ratio=c.aspect_ratio)
        self.discriminator = StyleGAN2Discriminator(c.resolution, c.aspect_ratio,
                                                    c.disc_channel_base, c.disc_channel_max)
        self._mean_latent: tuple | None = None  # (cache key, mean latent)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.resolution, self.config.width

    @property
    def channels(self) -> int:
        return 3

    # -- training ---------------------------------------------------------------------------
    @property
    def double_backward_networks(self) -> tuple[str, ...]:
        c = self.config
        return ("discriminator",) if c.r1_every > 0 and c.r1_gamma > 0 else ()

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        # StyleGAN2's lazy-regularisation correction of the D optimizer (c = k / (k + 1)).
        ratio = c.r1_every / (c.r1_every + 1) if c.r1_every > 0 else 1.0
        return {
            "discriminator": OptimizerSpec(("discriminator",), lr=c.lr * ratio,
                                           betas=(c.betas[0] ** ratio, c.betas[1] ** ratio),
                                           eps=c.eps),
            "generator": OptimizerSpec(("layout_net", "generator"), lr=c.lr, betas=c.betas,
                                       eps=c.eps),
        }

    def _noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.randn(n, self.config.latent_dim, generator=generator)

    def check_images(self, images: torch.Tensor) -> None:
        """Raise a clear error when real images do not have the model's (H, W)."""
        c = self.config
        if tuple(images.shape[-2:]) != (c.resolution, c.width):
            raise ValueError(
                f"{self.preset or 'BlobGAN'} expects {c.resolution}x{c.width} images "
                f"(resolution {c.resolution}, aspect_ratio {c.aspect_ratio}), got "
                f"{images.shape[-2]}x{images.shape[-1]}: build the dataset with "
                f"aspect_ratio={c.aspect_ratio} (trainer: --set data.aspect_ratio="
                f"{c.aspect_ratio})")

    def loss(self, group: str, batch, step: int):
        adv = NonSaturatingLoss()
        real = batch["image"]
        self.check_images(real)
        n = real.shape[0]
        if group == "generator":
            fake = self._render(self.layout_net(self._noise(n)), self.generator, jitter=True)
            loss = adv.g_loss(self.discriminator(fake))
            return loss, {"g_loss": loss.detach()}
        c = self.config  # the discriminator step
        with torch.no_grad():
            fake = self._render(self.layout_net(self._noise(n)), self.generator, jitter=True)
        do_r1 = c.r1_every > 0 and c.r1_gamma > 0 and step % c.r1_every == 0
        if do_r1:
            real = real.detach().requires_grad_(True)
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(fake)
        loss = adv.d_loss(real_logits, fake_logits)
        logs: dict[str, Any] = {"d_loss": loss.detach(),
                                "d_real": real_logits.detach().mean(),
                                "d_fake": fake_logits.detach().mean()}
        if do_r1:
            r1 = r1_penalty(real_logits, real)
            loss = loss + c.r1_gamma * c.r1_every * r1
            logs["r1"] = r1.detach()
        return loss, logs

    # -- layout API (EMA networks unless model.use_ema is off) --------------------------------
    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Mean of the layout latent at ``mlp_idx`` (for truncation); cached until the layout
        MLP's weights change (optimizer steps and loads bump the parameters' versions)."""
        net = self.inference_net("layout_net")
        key = (id(net), n, seed, self.device, tuple(p._version for p in net.parameters()))
        if self._mean_latent is None or self._mean_latent[0] != key:
            g = torch.Generator().manual_seed(seed)
            z = torch.randn(n, self.config.latent_dim, generator=g).to(self.device)
            self._mean_latent = (key, net.latent(z, self.config.mlp_idx).mean(0))
        return self._mean_latent[1]

    def layout_from_latent(self, latent: torch.Tensor,
                           mlp_idx: int | None = None) -> L.Layout:
        """Blob parameters from a layout-MLP latent at ``mlp_idx`` (the encoder's output)."""
        idx = self.config.mlp_idx if mlp_idx is None else mlp_idx
        return self.inference_net("layout_net")(latent, mlp_idx=idx)

    def sample_layout(self, n: int, generator: torch.Generator | None = None,
                      truncation: float = 0.0) -> L.Layout:
        """``n`` random layouts. ``truncation`` in [0, 1] pulls the latent at ``mlp_idx``
        towards its mean (0: none, 1: the mean layout), as the reference's ``truncate``."""
        z = self._noise(n, generator)
        net = self.inference_net("layout_net")
        if not truncation:
            return net(z)
        h = net.latent(z, self.config.mlp_idx)
        h = torch.lerp(h, self.mean_latent().to(h), truncation)
        return net(h, mlp_idx=self.config.mlp_idx)

    def blob_scores(self, layout: L.Layout, height: int | None = None,
                    width: int | None = None,
                    jitter: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Composited blob weights (N, K + 1, H, W), background first (output size default;
        ``jitter``: offsets of :meth:`draw_jitter`)."""
        c = self.config
        return render_scores(layout, height or c.resolution, width or c.width, c.ab_norm,
                             jitter, c.pixel_coordinates)

    def draw_jitter(self, layout: L.Layout,
                    generator: torch.Generator | None = None) -> dict[str, torch.Tensor] | None:
        """The config's splatting-jitter offsets for ``layout`` (None when jitter is off)."""
        c = self.config
        return L.draw_jitter(layout, c.feature_jitter_xy, c.feature_jitter_shift,
                             c.feature_jitter_angle, generator)

    def render(self, layout: L.Layout,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Images (raw generator output, about [-1, 1]) of a layout; differentiable (inversion
        and the encoder optimise through it)."""
        return self._render(layout, self.inference_net("generator"), generator)

    def _render(self, layout: L.Layout, net: nn.Module,
                generator: torch.Generator | None = None, jitter: bool = False) -> torch.Tensor:
        """Images of ``layout`` through ``net``; ``jitter`` (training renders only) splats
        with the config's jitter, drawn from ``generator``."""
        c = self.config
        offsets = self.draw_jitter(layout, generator) if jitter else None
        pyramid = score_pyramid(self.blob_scores(layout, jitter=offsets), c.size_in)
        feature_grid = splat(pyramid[c.size_in], layout["features"])
        return net(feature_grid, layout["spatial_style"], pyramid, generator=generator)

    def feature_grid(self, layout: L.Layout) -> torch.Tensor:
        """The splatted feature grid (N, feature_dim, size_in, size_in*aspect)."""
        c = self.config
        scores = self.blob_scores(layout)
        return splat(score_pyramid(scores, c.size_in)[c.size_in], layout["features"])

    @torch.no_grad()
    def visualize_layout(self, layout: L.Layout, seed: int = 0) -> torch.Tensor:
        """Blob map in [-1, 1]: each blob splatted in a fixed random colour, background grey."""
        k = L.num_blobs(layout)
        g = torch.Generator().manual_seed(seed)
        colours = torch.rand(k + 1, 3, generator=g) * 2 - 1
        colours[0] = 0.0
        scores = self.blob_scores(layout)
        return splat(scores, colours.to(scores).expand(scores.shape[0], -1, -1)).clamp(-1, 1)

    def edit(self, layout: L.Layout, op: EditOp, *args, **kwargs) -> L.Layout:
        """Edit a layout: ``move`` (k, x=, y= or dx=, dy=), ``resize`` (k, scale= or size=),
        ``remove`` (k), ``add`` (x, y, size, feature, style, covs=None), ``feature`` (k, f),
        ``style`` (k, s). Returns a new layout; the input is left unchanged."""
        fns = {"move": L.move_blob, "resize": L.resize_blob, "remove": L.remove_blob,
               "add": L.add_blob, "feature": L.set_blob_feature, "style": L.set_blob_style}
        if op not in fns:
            raise ValueError(f"op must be one of {sorted(fns)}, got {op!r}")
        return fns[op](layout, *args, **kwargs)

    # -- task -------------------------------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        with self.inference():
            layout = self.sample_layout(n, generator=generator)
            return self.render(layout, generator=generator).clamp(-1, 1)


# -- presets -----------------------------------------------------------------------------------
# OCTET's blobgan40.yaml: model.dim 256 (style), layout_net.feature_dim 256, override_c_in 256,
# 40 blobs, size_in 8, aspect 2, c_model 96, and the jitter it enables: a blob space of about
# 40 * (256 + 256) (docs/workflows/blobgan_layouts.md, "1. Train the generator").
_BLOBGAN40 = dict(aspect_ratio=2.0, n_blobs=40, feature_dim=256, style_dim=256,
                  override_c_in=256, size_in=8, feature_jitter_xy=0.04,
                  feature_jitter_shift=0.5, feature_jitter_angle=0.1)


@register_model
def blobgan_256(**kwargs) -> BlobGAN:
    """BlobGAN at 256x256 with 20 blobs and 256-d features (OCTET's square BDD100K set-up)."""
    return BlobGAN.from_config(BlobGANConfig(n_blobs=20, feature_dim=256, override_c_in=256),
                               preset="blobgan_256", **kwargs)


@register_model
def blobgan_256x512(**kwargs) -> BlobGAN:
    """BlobGAN at 256x512 (aspect 2, 8x16 grid), 40 blobs of 256-d features and styles, with
    splatting jitter: OCTET's ``src/configs/experiment/blobgan40.yaml``."""
    return BlobGAN.from_config(BlobGANConfig(**_BLOBGAN40), preset="blobgan_256x512", **kwargs)


_TINY = dict(n_blobs=4, latent_dim=32, feature_dim=32, style_dim=32, mlp_hidden_dim=64,
             mlp_n_layers=3, c_model=4, disc_channel_base=512, disc_channel_max=32, r1_every=4)


@register_model
def test_blobgan(**kwargs) -> BlobGAN:
    """Tiny BlobGAN for tests: 32x32, 4 blobs, 8x8 grid."""
    return BlobGAN.from_config(BlobGANConfig(resolution=32, size_in=8, **_TINY),
                               preset="test_blobgan", **kwargs)


@register_model
def test_blobgan_rect(**kwargs) -> BlobGAN:
    """Tiny rectangular BlobGAN for tests: 16x32 (aspect 2), 4 blobs, 4x8 grid."""
    return BlobGAN.from_config(BlobGANConfig(resolution=16, size_in=4, aspect_ratio=2.0, **_TINY),
                               preset="test_blobgan_rect", **kwargs)


# The encoder presets register from their own module (timm is imported only when one is built).
from .encoder import BlobGANEncoder, BlobGANEncoderConfig  # noqa: E402
