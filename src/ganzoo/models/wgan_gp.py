"""WGAN-GP, and WGAN-GP with spectral norm, GroupNorm and self-attention.

Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, "Improved Training of Wasserstein GANs",
NeurIPS 2017 (arXiv:1704.00028); reference repo igul222/improved_wgan_training (its 64×64
DCGAN-architecture experiment). Spectral norm: Miyato et al., ICLR 2018 (arXiv:1802.05957).
Self-attention: Zhang et al., SAGAN, ICML 2019 (arXiv:1805.08318).

Presets:

- ``wgan_gp`` (64 px) / ``wgan_gp_128``: the DCGAN architecture (``ganzoo.models.dcgan``)
  with a BatchNorm generator and a critic without BatchNorm (LayerNorm over (C, H, W) with
  per-channel affine, as the reference's ``Normalize`` in the critic); Wasserstein loss plus
  gradient penalty λ = 10 with one α per sample and the gradient norm over all non-batch
  dimensions; n_critic = 2; Adam lr 1e-4, betas (0.0, 0.9); z = 128.
- ``wgan_gp_sn_attn`` / ``wgan_gp_sn_attn_128``: generator with GroupNorm; critic with
  ``torch.nn.utils.parametrizations.spectral_norm`` on every convolution and no other
  normalisation; SAGAN self-attention (γ initialised to 0) at 16×16 in both networks, and also
  at 32×32 in the 128 px preset. Same loss (WGAN-GP) and optimiser.

Departures, all deliberate:

- n_critic = 2 (the reference uses 5), the setting of the generator-evolution workflow
  (docs/workflows/generator_evolution.md, "Stage 2: GAN track"); PyTorch default
  initialisation.
- Self-attention: the ``wgan_gp_sn_attn*`` presets default to SAGAN's block (value C -> C/8,
  an output 1×1 conv, unscaled logits). ``attention="plan"`` is the scaled block of the
  workflow's step 2.3 (value C -> C, no output conv, logits scaled by ``mid ** -0.5``;
  docs/workflows/generator_evolution.md, "The scaled self-attention block"). SAGAN stays
  the default because it is the published block these presets cite, with spectral norm on
  its convs in the critic as in SAGAN, and because changing it would change the weights of
  every saved ``wgan_gp_sn_attn*`` folder.
- Critic normalisation: the workflow's step 2.3 replaces the critic's InstanceNorm with
  spectral norm, implying an InstanceNorm critic in step 2.2; ``wgan_gp`` uses layer norm
  (``GroupNorm(1, C)``), the WGAN-GP paper's recommendation (section 4: layer normalisation
  as a drop-in replacement for batch normalisation, which would couple the per-sample
  penalty across the batch) and its code's ``Normalize``. InstanceNorm couples no samples
  either: ``critic_norm="instance"`` gives that reading (affine InstanceNorm;
  docs/workflows/generator_evolution.md, "The critic's normalisation in 2.2").

Everything else is a config field (``critic_norm``, ``generator_norm``, ``spectral_norm``,
``attention``, ``attention_resolutions``, ``gp_weight``, ``n_critic``, ``diffaugment``). The
critic's optimizer group is named ``"critic"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .. import config as cfg
from ..layers.common import check_resolution
from ..layers.diffaugment import parse_policy
from ..losses.adversarial import WGANGPLoss
from ..registry import register_model
from .base import OptimizerSpec
from .dcgan import DCGANDiscriminator, DCGANGenerator, LatentGAN

__all__ = ["WGANGPConfig", "WGANGP"]


@dataclass
class WGANGPConfig(cfg.Config):
    resolution: int = 64
    channels: int = 3
    latent_dim: int = 128
    ngf: int = 64
    ndf: int = 64
    generator_norm: Literal["batch", "group", "none"] = "batch"
    critic_norm: Literal["layer", "instance", "none"] = "layer"
    spectral_norm: bool = False  # on every critic convolution
    attention_resolutions: tuple[int, ...] = ()  # feature sides with self-attention (G and D)
    # "sagan" (SAGAN's block) or "plan" (value C -> C, no output conv, logits scaled by
    # mid ** -0.5; docs/workflows/generator_evolution.md, "The scaled self-attention block")
    attention: Literal["sagan", "plan"] = "sagan"
    gp_weight: float = 10.0
    n_critic: int = 2
    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    diffaugment: str = ""  # DiffAugment policy, e.g. "color,translation,cutout"
    # True: the G step reuses the first critic step's fakes and their graph (one generator
    # forward fewer per iteration; the extra critic steps draw fresh ones). False (the
    # default until its quality is measured over seeds, docs/gan.md): fresh fakes for the G
    # step, as Gulrajani et al.'s Algorithm 1.
    share_fakes: bool = False

    def __post_init__(self):
        super().__post_init__()
        check_resolution(self.resolution, tuple(self.attention_resolutions))
        for field in ("channels", "latent_dim", "ngf", "ndf", "n_critic"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if self.gp_weight < 0:
            raise ValueError(f"gp_weight must be >= 0, got {self.gp_weight}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        parse_policy(self.diffaugment, "WGANGPConfig.diffaugment")


class WGANGP(LatentGAN):
    config_class = WGANGPConfig
    family = "wgan_gp"
    paper = ("Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, Improved Training of "
             "Wasserstein GANs, NeurIPS 2017 (arXiv:1704.00028)")
    d_name = "critic"

    def __init__(self, config: WGANGPConfig):
        super().__init__(config)
        c = config
        attn = tuple(c.attention_resolutions)
        self.generator = DCGANGenerator(c.latent_dim, c.ngf, c.channels, c.resolution,
                                        norm=c.generator_norm, attention_resolutions=attn,
                                        attention=c.attention)
        self.critic = DCGANDiscriminator(c.ndf, c.channels, c.resolution, norm=c.critic_norm,
                                         spectral_norm=c.spectral_norm,
                                         attention_resolutions=attn, attention=c.attention)
        self.adv_loss = WGANGPLoss(gp_weight=c.gp_weight)

    @property
    def double_backward_networks(self) -> tuple[str, ...]:
        return ("critic",) if self.config.gp_weight > 0 else ()

    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        return {
            "critic": OptimizerSpec(("critic",), "adam", lr=c.lr, betas=c.betas,
                                    steps=c.n_critic, graph_networks=self.shared_graph),
            "generator": OptimizerSpec(("generator",), "adam", lr=c.lr, betas=c.betas),
        }


# -- presets -----------------------------------------------------------------------------------
_SN_ATTN = dict(generator_norm="group", critic_norm="none", spectral_norm=True,
                attention_resolutions=(16,))


@register_model
def wgan_gp(**kwargs) -> WGANGP:
    """WGAN-GP at 64 px: DCGAN architecture, LayerNorm critic, λ = 10, n_critic = 2, z = 128."""
    return WGANGP.from_config(WGANGPConfig(), preset="wgan_gp", **kwargs)


@register_model
def wgan_gp_sn_attn(**kwargs) -> WGANGP:
    """WGAN-GP at 64 px with a GroupNorm G, a spectral-norm critic and attention at 16×16."""
    return WGANGP.from_config(WGANGPConfig(**_SN_ATTN), preset="wgan_gp_sn_attn", **kwargs)


@register_model
def wgan_gp_128(**kwargs) -> WGANGP:
    """WGAN-GP at 128 px: one block deeper in G and critic."""
    return WGANGP.from_config(WGANGPConfig(resolution=128), preset="wgan_gp_128", **kwargs)


@register_model
def wgan_gp_sn_attn_128(**kwargs) -> WGANGP:
    """wgan_gp_sn_attn at 128 px, one block deeper, attention at 16×16 and 32×32."""
    return WGANGP.from_config(
        WGANGPConfig(resolution=128, **{**_SN_ATTN, "attention_resolutions": (16, 32)}),
        preset="wgan_gp_sn_attn_128", **kwargs)


@register_model
def test_wgan_gp(**kwargs) -> WGANGP:
    """Tiny WGAN-GP for tests: 32 px, ngf = ndf = 16, z = 32."""
    return WGANGP.from_config(WGANGPConfig(resolution=32, ngf=16, ndf=16, latent_dim=32),
                              preset="test_wgan_gp", **kwargs)


@register_model
def test_wgan_gp_sn_attn(**kwargs) -> WGANGP:
    """Tiny wgan_gp_sn_attn for tests: 32 px, ngf = ndf = 16, z = 32, attention at 16×16."""
    return WGANGP.from_config(WGANGPConfig(resolution=32, ngf=16, ndf=16, latent_dim=32,
                                           **_SN_ATTN), preset="test_wgan_gp_sn_attn", **kwargs)
