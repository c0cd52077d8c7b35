"""DDPM: denoising diffusion probabilistic models, with DDIM sampling.

Papers:
- Ho, Jain, Abbeel, *Denoising Diffusion Probabilistic Models*, NeurIPS 2020 (arXiv:2006.11239);
  reference code https://github.com/hojonathanho/diffusion.
- Nichol, Dhariwal, *Improved Denoising Diffusion Probabilistic Models*, ICML 2021
  (arXiv:2102.09672): the cosine schedule.
- Salimans, Ho, *Progressive Distillation for Fast Sampling of Diffusion Models*, ICLR 2022
  (arXiv:2202.00512): v-prediction, v = sqrt(abar) * eps - sqrt(1 - abar) * x0.
- Song, Meng, Ermon, *Denoising Diffusion Implicit Models*, ICLR 2021 (arXiv:2010.02502).
- Hang et al., *Efficient Diffusion Training via Min-SNR Weighting Strategy*, ICCV 2023
  (arXiv:2303.09556): the optional loss weighting.

The U-Net is diffusers' ``UNet2DModel`` and sampling steps through diffusers' ``DDIMScheduler`` /
``DDPMScheduler``, so a trained model exports to a diffusers ``DDIMPipeline`` / ``DDPMPipeline``
folder (:meth:`DDPM.to_diffusers`) and a diffusers ``UNet2DModel`` checkpoint imports into a
ganzoo model (:meth:`DDPM.from_diffusers`). diffusers is imported lazily, on first construction.

The presets form a track, each step adding one change to the previous one:
``ddpm`` (linear betas, eps-prediction) -> ``ddpm_cosine`` (+ cosine schedule) -> ``ddpm_vpred``
(+ v-prediction) -> ``ddpm_wide`` (+ base 192 channels and attention at 32x32 too). Each comes
at 32, 64 and 128 px (``ddpm_32``, ``ddpm_cosine_128``, ...); the unsuffixed names are 64 px.

Departures from the reference implementation:
- Channel multipliers per resolution: 32 px (1, 2, 2, 2) as in the paper's CIFAR-10 model;
  64 px (1, 2, 3, 4) and 128 px (1, 1, 2, 3, 4) follow Improved DDPM / ADM (the DDPM paper has
  no 64 or 128 px models). Attention is at 16x16 and 8x8 (docs/workflows/generator_evolution.md,
  "Stage 4: DDPM track"; the CIFAR-10 model had 16x16
  only), plus the middle block, single-head as in the paper (``attention_head_dim=None``).
- The optimiser is AdamW (lr 2e-4, no weight decay, gradient clipping at 1.0), the settings
  of that workflow's DDPM track; the paper's 5000-step learning-rate warm-up is left to the
  trainer.
- The time embedding, GroupNorm epsilon and downsampling padding follow the reference
  (sin-then-cos, frequency shift 1, eps 1e-6, "SAME" padding of the stride-2 conv), which is
  also how diffusers' ports of the original checkpoints (``google/ddpm-*``) are configured.
- Timesteps are 0-based (t = 0 .. T-1, the diffusers convention); the paper counts 1 .. T.
"""

from __future__ import annotations

import math
import os
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .. import config as cfg
from ..registry import MODELS, register_model
from .base import Batch, GenerativeModel, OptimizerSpec, SquareImages

__all__ = ["DDPMConfig", "DDPM", "build_unet", "make_betas", "config_from_diffusers"]

PredictionType = Literal["epsilon", "v_prediction", "sample"]
BetaSchedule = Literal["linear", "cosine"]
Sampler = Literal["ddim", "ddpm"]

# Our schedule names -> diffusers' ``beta_schedule``. ``squaredcos_cap_v2`` computes exactly the
# cosine schedule of Nichol & Dhariwal 2021, arXiv:2102.09672 (s = 0.008, beta clamped at 0.999;
# checked in tests/test_ddpm.py), so
# exported schedulers carry the name rather than 1000 explicit betas.
_DIFFUSERS_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
COSINE_S = 0.008
MAX_BETA = 0.999


@dataclass
class DDPMConfig(cfg.Config):
    """Hyperparameters of a DDPM: U-Net, diffusion process, sampler and optimiser."""
    # Field names of ganzoo 0.1 (saved config.json files still load, with a FutureWarning).
    renamed: ClassVar[dict] = {
        "adam_betas": "betas",
    }

    # -- U-Net (diffusers UNet2DModel) --
    resolution: int = 64
    channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    # Feature-map sizes (in px) at which down/up blocks have self-attention.
    attention_resolutions: tuple[int, ...] = (16, 8)
    layers_per_block: int = 2
    attention_head_dim: int | None = None  # None: one head over all channels (DDPM)
    dropout: float = 0.1
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    flip_sin_to_cos: bool = False
    freq_shift: int = 1
    downsample_padding: int = 0
    # -- diffusion --
    num_train_timesteps: int = 1000
    beta_schedule: BetaSchedule = "linear"
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    prediction_type: PredictionType = "epsilon"
    min_snr_gamma: float | None = None  # None: plain MSE (DDPM's L_simple)
    # -- sampling --
    sampler: Sampler = "ddim"
    num_inference_steps: int = 100  # DDIM steps; ancestral DDPM defaults to all T steps
    eta: float = 0.0
    timestep_spacing: Literal["leading", "trailing", "linspace"] = "leading"
    clip_sample: bool = True
    ddpm_variance: Literal["fixed_small", "fixed_large"] = "fixed_small"
    # -- optimiser --
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    clip_grad_norm: float | None = 1.0

    def __post_init__(self):
        super().__post_init__()
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            if typing.get_origin(hints[f.name]) is Literal:
                choices = typing.get_args(hints[f.name])
                if getattr(self, f.name) not in choices:
                    raise ValueError(f"DDPMConfig.{f.name} must be one of {list(choices)}, "
                                     f"got {getattr(self, f.name)!r}")
        for name in ("resolution", "channels", "base_channels", "layers_per_block",
                     "norm_num_groups", "num_train_timesteps", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"DDPMConfig.{name} must be >= 1, got {getattr(self, name)}")
        self.channel_mult = tuple(self.channel_mult)
        self.attention_resolutions = tuple(self.attention_resolutions)
        self.betas = tuple(self.betas)
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            raise ValueError(f"DDPMConfig.channel_mult must be positive integers, "
                             f"got {self.channel_mult}")
        levels = len(self.channel_mult)
        if self.resolution % 2 ** (levels - 1):
            raise ValueError(f"DDPMConfig.resolution {self.resolution} must be divisible by "
                             f"2**(len(channel_mult) - 1) = {2 ** (levels - 1)}")
        sizes = self.feature_sizes
        bad = [r for r in self.attention_resolutions if r not in sizes]
        if bad:
            raise ValueError(f"DDPMConfig.attention_resolutions {bad} are not feature-map sizes "
                             f"of this U-Net (resolution {self.resolution}, channel_mult "
                             f"{self.channel_mult}: {list(sizes)})")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.norm_num_groups:
                raise ValueError(f"DDPMConfig.norm_num_groups {self.norm_num_groups} must divide "
                                 f"every width base_channels * channel_mult "
                                 f"({self.base_channels * m} does not)")
        if self.attention_head_dim is not None and self.attention_head_dim < 1:
            raise ValueError(f"DDPMConfig.attention_head_dim must be >= 1 or None, "
                             f"got {self.attention_head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"DDPMConfig.dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(f"DDPMConfig.beta_start and beta_end need 0 < beta_start < beta_end "
                             f"< 1, got {self.beta_start}, {self.beta_end}")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ValueError(f"DDPMConfig.min_snr_gamma must be positive or None, "
                             f"got {self.min_snr_gamma}")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(f"DDPMConfig.num_inference_steps ({self.num_inference_steps}) cannot "
                             f"exceed num_train_timesteps ({self.num_train_timesteps})")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"DDPMConfig.eta must be in [0, 1], got {self.eta}")
        if self.lr <= 0:
            raise ValueError(f"DDPMConfig.lr must be positive, got {self.lr}")

    @property
    def feature_sizes(self) -> tuple[int, ...]:
        """Feature-map size of each U-Net level, from the input down."""
        return tuple(self.resolution >> i for i in range(len(self.channel_mult)))


# -- schedule ----------------------------------------------------------------------------------
def make_betas(schedule: BetaSchedule, num_timesteps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> torch.Tensor:
    """Betas as float64 on the CPU; index 0 is the paper's t = 1.

    ``cosine``: f(t) = cos((t/T + s)/(1 + s) * pi/2)^2, abar_t = f(t)/f(0),
    beta_t = min(1 - abar_t/abar_{t-1}, 0.999), s = 0.008 (Nichol & Dhariwal, eq. 17).
    """
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64,
                              device="cpu")
    if schedule == "cosine":
        def f(t):
            return math.cos((t / num_timesteps + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2

        betas = [min(1 - f(t) / f(t - 1), MAX_BETA) for t in range(1, num_timesteps + 1)]
        return torch.tensor(betas, dtype=torch.float64, device="cpu")
    raise ValueError(f"beta_schedule must be 'linear' or 'cosine', got {schedule!r}")


# -- network -----------------------------------------------------------------------------------
def _unet_kwargs(c: DDPMConfig) -> dict[str, Any]:
    """UNet2DModel arguments for a config. Down block i runs at resolution / 2**i, up block j at
    resolution / 2**(levels - 1 - j); a block gets attention when its size is listed."""
    sizes = c.feature_sizes
    attn = set(c.attention_resolutions)
    down = tuple("AttnDownBlock2D" if s in attn else "DownBlock2D" for s in sizes)
    up = tuple("AttnUpBlock2D" if s in attn else "UpBlock2D" for s in reversed(sizes))
    return dict(
        sample_size=c.resolution, in_channels=c.channels, out_channels=c.channels,
        center_input_sample=False, time_embedding_type="positional",
        flip_sin_to_cos=c.flip_sin_to_cos, freq_shift=c.freq_shift,
        down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2D",
        block_out_channels=tuple(c.base_channels * m for m in c.channel_mult),
        layers_per_block=c.layers_per_block, mid_block_scale_factor=1,
        downsample_padding=c.downsample_padding, downsample_type="conv", upsample_type="conv",
        dropout=c.dropout, act_fn="silu", attention_head_dim=c.attention_head_dim,
        norm_num_groups=c.norm_num_groups, attn_norm_num_groups=None, norm_eps=c.norm_eps,
        resnet_time_scale_shift="default", add_attention=True, class_embed_type=None,
        num_class_embeds=None,
    )


def build_unet(config: DDPMConfig) -> nn.Module:
    """The denoiser: a diffusers ``UNet2DModel`` configured from ``config``."""
    from diffusers import UNet2DModel

    return UNet2DModel(**_unet_kwargs(config))


# UNet2DModel settings that ganzoo configs do not expose, with the only value they can take.
_FIXED_UNET = {k: v for k, v in _unet_kwargs(DDPMConfig()).items() if k in (
    "center_input_sample", "time_embedding_type", "mid_block_type", "mid_block_scale_factor",
    "downsample_type", "upsample_type", "act_fn", "attn_norm_num_groups",
    "resnet_time_scale_shift", "add_attention", "class_embed_type", "num_class_embeds")}
_FIXED_UNET["time_embedding_dim"] = None


def config_from_diffusers(unet_config: dict[str, Any],
                          scheduler_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """DDPMConfig fields for a diffusers ``UNet2DModel`` config (and optionally its scheduler's);
    raises ValueError naming what a ganzoo DDPM cannot represent."""
    u = dict(unet_config)
    problems = []
    for key, value in _FIXED_UNET.items():
        got = u.get(key, value)
        if isinstance(got, list):
            got = tuple(got)
        if got != value:
            problems.append(f"{key}={got!r} (ganzoo needs {value!r})")
    if u.get("in_channels", 3) != u.get("out_channels", 3):
        problems.append(f"in_channels={u.get('in_channels')} != out_channels="
                        f"{u.get('out_channels')}")
    widths = list(u.get("block_out_channels", ()))
    down, up = list(u.get("down_block_types", ())), list(u.get("up_block_types", ()))
    size = u.get("sample_size")
    if not isinstance(size, int):
        problems.append(f"sample_size={size!r} (ganzoo needs one int)")
    if not widths or any(w % widths[0] for w in widths):
        problems.append(f"block_out_channels={widths} are not multiples of the first width")
    if not (len(down) == len(up) == len(widths)):
        problems.append(f"{len(down)} down blocks, {len(up)} up blocks, {len(widths)} widths")
    allowed_down, allowed_up = {"DownBlock2D", "AttnDownBlock2D"}, {"UpBlock2D", "AttnUpBlock2D"}
    if set(down) - allowed_down or set(up) - allowed_up:
        other = sorted((set(down) - allowed_down) | (set(up) - allowed_up))
        problems.append(f"block types {other} (ganzoo builds only DownBlock2D, AttnDownBlock2D, "
                        f"UpBlock2D and AttnUpBlock2D)")
    elif [d.startswith("Attn") for d in down] != [x.startswith("Attn") for x in reversed(up)]:
        problems.append(f"attention in down blocks {down} does not mirror up blocks {up}")
    if problems:
        raise ValueError("this diffusers UNet2DModel cannot be imported into a ganzoo DDPM: "
                         + "; ".join(problems))
    out: dict[str, Any] = dict(
        resolution=size, channels=u.get("in_channels", 3), base_channels=widths[0],
        channel_mult=tuple(w // widths[0] for w in widths),
        attention_resolutions=tuple(size >> i for i, d in enumerate(down)
                                    if d.startswith("Attn")),
        layers_per_block=u.get("layers_per_block", 2),
        attention_head_dim=u.get("attention_head_dim", 8), dropout=u.get("dropout", 0.0),
        norm_num_groups=u.get("norm_num_groups", 32), norm_eps=u.get("norm_eps", 1e-5),
        flip_sin_to_cos=u.get("flip_sin_to_cos", True), freq_shift=u.get("freq_shift", 0),
        downsample_padding=u.get("downsample_padding", 1),
    )
    if scheduler_config:
        s = scheduler_config
        if s.get("trained_betas") is not None:
            raise ValueError("the diffusers scheduler has explicit trained_betas; ganzoo DDPM "
                             "supports only the 'linear' and 'squaredcos_cap_v2' schedules")
        names = {v: k for k, v in _DIFFUSERS_SCHEDULE.items()}
        schedule = s.get("beta_schedule", "linear")
        if schedule not in names:
            raise ValueError(f"the diffusers scheduler's beta_schedule {schedule!r} is not one "
                             f"ganzoo supports ({sorted(names)})")
        out.update(num_train_timesteps=s.get("num_train_timesteps", 1000),
                   beta_schedule=names[schedule], beta_start=s.get("beta_start", 1e-4),
                   beta_end=s.get("beta_end", 0.02),
                   prediction_type=s.get("prediction_type", "epsilon"),
                   clip_sample=s.get("clip_sample", True))
        if "timestep_spacing" in s:
            out["timestep_spacing"] = s["timestep_spacing"]
        if s.get("variance_type") in ("fixed_small", "fixed_large"):
            out["ddpm_variance"] = s["variance_type"]
    return out


def _broadcast(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (N, 1, 1, 1) in ``like``'s dtype."""
    return values[t].to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


# -- family ------------------------------------------------------------------------------------
class DDPM(SquareImages, GenerativeModel):
    """A denoising diffusion model: a U-Net trained to predict eps, v or x0 from x_t and t.

    Networks: ``unet`` (one optimizer group of the same name) and its EMA copy. Sampling uses
    the EMA U-Net with DDIM (default, ``num_inference_steps``, ``eta``) or ancestral DDPM.
    """

    config_class = DDPMConfig
    family = "ddpm"
    paper = ("Ho, Jain, Abbeel, Denoising Diffusion Probabilistic Models, NeurIPS 2020 "
             "(arXiv:2006.11239)")
    task = "sample"
    batch_keys = ("image",)
    sampling_options = {"sampler": "'ddim' or 'ddpm' (default: the config's)",
                        "num_inference_steps": "denoising steps",
                        "eta": "DDIM's eta (0: deterministic)"}
    ema_networks = ("unet",)
    default_ema_decay = 0.9999  # DDPM
    default_ema_warmup_power = 0.75  # diffusers' train_unconditional.py (EMAModel, power 3/4)
    # The EMA copies the live U-Net for the first 10k iterations: early on the live U-Net still
    # improves fast and an average from step 0 lags behind it, at every warm-up power tried
    # (docs/training.md, "EMA"). Past the start the window is the same within 10 % from 100k
    # on, where DDPM's EMA matters.
    default_ema_start = 10_000

    def __init__(self, config: DDPMConfig):
        super().__init__(config)
        self.unet = build_unet(config)
        # Derived from the config, so not saved. Computed in float64 on the CPU (also when
        # building on the meta device) and stored as float32.
        betas = make_betas(config.beta_schedule, config.num_train_timesteps, config.beta_start,
                           config.beta_end)
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        for name, value in (("betas", betas), ("alphas_cumprod", alphas_cumprod),
                            ("sqrt_alphas_cumprod", alphas_cumprod.sqrt()),
                            ("sqrt_one_minus_alphas_cumprod", (1.0 - alphas_cumprod).sqrt()),
                            ("snr", alphas_cumprod / (1.0 - alphas_cumprod))):
            self.register_buffer(name, value.float(), persistent=False)
        self._schedulers: dict[str, Any] = {}  # sampler name -> diffusers scheduler

    # -- diffusion maths ----------------------------------------------------------------------
    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        return (_broadcast(self.sqrt_alphas_cumprod, t, x0) * x0
                + _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the U-Net learns to output for ``prediction_type``."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return (_broadcast(self.sqrt_alphas_cumprod, t, x0) * noise
                    - _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x0) * x0)
        return x0

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """x0 recovered from the U-Net output at (x_t, t), for any prediction type."""
        a = _broadcast(self.sqrt_alphas_cumprod, t, x_t)
        b = _broadcast(self.sqrt_one_minus_alphas_cumprod, t, x_t)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return (x_t - b * output) / a
        if kind == "v_prediction":
            return a * x_t - b * output
        return output

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor | None:
        """Per-sample min-SNR-gamma weight (Hang et al. 2023, eq. 10 and its v/x0 forms), or None.

        For x0-prediction the MSE is weighted by min(SNR, gamma); eps and v outputs are
        rescaled versions of x0, so the same weighting becomes min(SNR, gamma) / SNR and
        min(SNR, gamma) / (SNR + 1).
        """
        gamma = self.config.min_snr_gamma
        if gamma is None:
            return None
        snr = self.snr[t]
        clipped = snr.clamp(max=gamma)
        kind = self.config.prediction_type
        if kind == "epsilon":
            return clipped / snr
        if kind == "v_prediction":
            return clipped / (snr + 1)
        return clipped

    # -- training contract --------------------------------------------------------------------
    def optimizer_groups(self) -> dict[str, OptimizerSpec]:
        c = self.config
        return {"unet": OptimizerSpec(networks=("unet",), optimizer="adamw", lr=c.lr,
                                      betas=c.betas, weight_decay=c.weight_decay,
                                      clip_grad_norm=c.clip_grad_norm)}

    def loss(self, group: str, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, Any]]:
        x0 = batch["image"]
        n = x0.shape[0]
        t = torch.randint(0, self.config.num_train_timesteps, (n,), device=x0.device)
        noise = torch.randn_like(x0)
        x_t = self.q_sample(x0, t, noise)
        output = self.unet(x_t, t, return_dict=False)[0]
        target = self.target(x0, noise, t)
        per_sample = F.mse_loss(output.float(), target.float(), reduction="none")
        per_sample = per_sample.mean(dim=tuple(range(1, per_sample.dim())))
        weight = self.loss_weight(t)
        loss = per_sample.mean() if weight is None else (per_sample * weight).mean()
        logs = {"loss": loss.detach(), "mse": per_sample.mean().detach()}
        return loss, logs

    # -- sampling -----------------------------------------------------------------------------
    def make_scheduler(self, sampler: Sampler | None = None):
        """A fresh diffusers ``DDIMScheduler`` or ``DDPMScheduler`` for this model's process."""
        from diffusers import DDIMScheduler, DDPMScheduler

        c = self.config
        sampler = sampler or c.sampler
        common = dict(num_train_timesteps=c.num_train_timesteps, beta_start=c.beta_start,
                      beta_end=c.beta_end, beta_schedule=_DIFFUSERS_SCHEDULE[c.beta_schedule],
                      prediction_type=c.prediction_type, clip_sample=c.clip_sample,
                      timestep_spacing=c.timestep_spacing)
        if sampler == "ddim":
            return DDIMScheduler(**common, set_alpha_to_one=True, steps_offset=0)
        if sampler == "ddpm":
            return DDPMScheduler(**common, variance_type=c.ddpm_variance)
        raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, *,
               sampler: Sampler | None = None, num_inference_steps: int | None = None,
               eta: float | None = None, batch_size: int | None = None,
               noise: torch.Tensor | None = None, progress: bool | None = None) -> torch.Tensor:
        """``n`` images in [-1, 1], shape (n, C, H, W), from the EMA U-Net.

        ``sampler``: "ddim" (``num_inference_steps`` steps, default the config's 100, ``eta``)
        or "ddpm" (ancestral; all T steps unless ``num_inference_steps`` is given). The initial
        noise is drawn in one call from ``generator`` (on the generator's device, as diffusers
        pipelines do), or passed as ``noise``; the batch is denoised in chunks of
        ``batch_size`` (default: all at once). ``progress``: a tqdm bar (None: only on a TTY).
        """
        from tqdm.auto import tqdm

        c = self.config
        sampler = sampler or c.sampler
        steps = num_inference_steps or (c.num_inference_steps if sampler == "ddim"
                                        else c.num_train_timesteps)
        eta = c.eta if eta is None else eta
        unet = self.inference_net("unet")
        param = next(unet.parameters())
        device, dtype = param.device, param.dtype
        shape = (n, c.channels, c.resolution, c.resolution)
        if noise is None:
            noise = self.randn(*shape, generator=generator, dtype=dtype)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
        noise = noise.to(device=device, dtype=dtype)
        if sampler not in self._schedulers:  # built once: construction costs ~1 ms per call
            self._schedulers[sampler] = self.make_scheduler(sampler)
        scheduler = self._schedulers[sampler]
        scheduler.set_timesteps(steps)
        timesteps = scheduler.timesteps.tolist()
        # Timesteps go to the U-Net as device tensors made once, not one host copy per step.
        t_device = scheduler.timesteps.to(device)
        step_kwargs = {"eta": eta} if sampler == "ddim" else {}
        chunk = batch_size or n
        out = []
        bar = tqdm(total=len(timesteps) * math.ceil(n / chunk), desc=f"{sampler} sampling",
                   disable=None if progress is None else not progress, leave=False)
        # inference(): no dropout while sampling, whatever mode the trainer left the model in
        with self.inference(), bar:
            for start in range(0, n, chunk):
                x = noise[start:start + chunk]
                for i, t in enumerate(timesteps):
                    output = unet(x, t_device[i], return_dict=False)[0]
                    x = scheduler.step(output, t, x, generator=generator, return_dict=False,
                                       **step_kwargs)[0]
                    bar.update()
                out.append(x)
        return torch.cat(out).clamp(-1.0, 1.0)

    # -- diffusers interoperability -------------------------------------------------------------
    def to_diffusers(self, save_directory: str | os.PathLike, *, pipeline: Sampler = "ddim",
                     ema: bool = True, safe_serialization: bool = True) -> Path:
        """Write a diffusers ``DDIMPipeline`` (or ``DDPMPipeline``) folder of this model: the
        EMA U-Net (``ema=False``: the live one) and a scheduler with this model's process.
        Load it with ``diffusers.DDIMPipeline.from_pretrained(save_directory)``."""
        from diffusers import DDIMPipeline, DDPMPipeline

        unet = self.ema["unet"] if ema and "unet" in self.ema else self.unet
        cls = {"ddim": DDIMPipeline, "ddpm": DDPMPipeline}[pipeline]
        pipe = cls(unet=unet, scheduler=self.make_scheduler(pipeline))
        pipe.save_pretrained(save_directory, safe_serialization=safe_serialization)
        return Path(save_directory)

    @classmethod
    def from_diffusers(cls, source, preset: str | None = None, *, subfolder: str | None = None,
                       **overrides) -> DDPM:
        """A ganzoo DDPM holding a diffusers ``UNet2DModel``'s weights (live and EMA).

        ``source``: a ``UNet2DModel``, a folder saved by diffusers (a U-Net folder, or a pipeline
        folder with ``unet/`` and optionally ``scheduler/``), or a Hub repo id (with
        ``subfolder="unet"`` for a pipeline repo). Without ``preset`` the config is derived from
        the checkpoint (and its scheduler, when there is one) and the model is registered as
        preset ``ddpm`` with that full config; with ``preset`` the checkpoint must match that
        preset (after ``overrides``), or ValueError lists every field that differs.
        """
        from diffusers import UNet2DModel

        scheduler_config = None
        if isinstance(source, UNet2DModel):
            unet = source
        else:
            folder = Path(os.fspath(source))
            if subfolder is None and (folder / "unet").is_dir():
                subfolder = "unet"
            try:
                unet = UNet2DModel.from_pretrained(os.fspath(source), subfolder=subfolder)
            except (OSError, EnvironmentError, ValueError) as e:
                raise ValueError(f"cannot load a diffusers UNet2DModel from {source!r}: {e}") \
                    from e
            sched = folder / "scheduler" / "scheduler_config.json"  # local pipeline folders
            if sched.is_file():
                import json

                scheduler_config = json.loads(sched.read_text())
        derived = config_from_diffusers(dict(unet.config), scheduler_config)
        if preset is None:
            model = cls.from_config(DDPMConfig(**{**derived, **overrides}), preset="ddpm")
        else:
            model = MODELS.build(preset, **overrides)
            if not isinstance(model, cls):
                raise ValueError(f"preset {preset!r} is a {type(model).__name__}, not a DDPM")
            unet_fields = set(_unet_config_fields())
            mine = {k: v for k, v in model.config_dict.items() if k in derived}
            diff = [f"{k}: checkpoint {derived[k]!r} vs preset {mine[k]!r}" for k in derived
                    if _norm(derived[k]) != _norm(mine[k])
                    and (k in unet_fields or scheduler_config is not None)]
            if diff:
                raise ValueError(f"the diffusers checkpoint does not match preset {preset!r}: "
                                 + "; ".join(diff))
        state = unet.state_dict()
        missing, unexpected = model.unet.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ValueError(f"diffusers UNet2DModel weights do not fit: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
        model.ema["unet"].load_state_dict(state)
        return model


def _unet_config_fields() -> tuple[str, ...]:
    return ("resolution", "channels", "base_channels", "channel_mult", "attention_resolutions",
            "layers_per_block", "attention_head_dim", "dropout", "norm_num_groups", "norm_eps",
            "flip_sin_to_cos", "freq_shift", "downsample_padding")


def _norm(v):
    return list(v) if isinstance(v, (list, tuple)) else v


# -- presets -----------------------------------------------------------------------------------
_CHANNEL_MULT = {32: (1, 2, 2, 2), 64: (1, 2, 3, 4), 128: (1, 1, 2, 3, 4)}


def _track(variant: Literal["ddpm", "cosine", "vpred", "wide"], resolution: int) -> DDPMConfig:
    """The DDPM track at one resolution, each variant adding one change to the previous
    (docs/workflows/generator_evolution.md, "Stage 4: DDPM track")."""
    kw: dict[str, Any] = dict(resolution=resolution, channel_mult=_CHANNEL_MULT[resolution])
    if variant in ("cosine", "vpred", "wide"):
        kw["beta_schedule"] = "cosine"
    if variant in ("vpred", "wide"):
        kw["prediction_type"] = "v_prediction"
    if variant == "wide":
        kw.update(base_channels=192, attention_resolutions=(32, 16, 8))
    return DDPMConfig(**kw)


@register_model
def ddpm(**kwargs) -> DDPM:
    """DDPM at 64 px: linear betas, eps-prediction, T = 1000, base 128, attention at 16 and 8."""
    return DDPM.from_config(_track("ddpm", 64), preset="ddpm", **kwargs)


@register_model
def ddpm_32(**kwargs) -> DDPM:
    """DDPM at 32 px (the paper's CIFAR-10 U-Net widths, attention at 16 and 8)."""
    return DDPM.from_config(_track("ddpm", 32), preset="ddpm_32", **kwargs)


@register_model
def ddpm_128(**kwargs) -> DDPM:
    """DDPM at 128 px."""
    return DDPM.from_config(_track("ddpm", 128), preset="ddpm_128", **kwargs)


@register_model
def ddpm_cosine(**kwargs) -> DDPM:
    """DDPM at 64 px with the cosine schedule (Nichol & Dhariwal 2021)."""
    return DDPM.from_config(_track("cosine", 64), preset="ddpm_cosine", **kwargs)


@register_model
def ddpm_cosine_32(**kwargs) -> DDPM:
    """DDPM at 32 px with the cosine schedule."""
    return DDPM.from_config(_track("cosine", 32), preset="ddpm_cosine_32", **kwargs)


@register_model
def ddpm_cosine_128(**kwargs) -> DDPM:
    """DDPM at 128 px with the cosine schedule."""
    return DDPM.from_config(_track("cosine", 128), preset="ddpm_cosine_128", **kwargs)


@register_model
def ddpm_vpred(**kwargs) -> DDPM:
    """DDPM at 64 px, cosine schedule and v-prediction (Salimans & Ho 2022)."""
    return DDPM.from_config(_track("vpred", 64), preset="ddpm_vpred", **kwargs)


@register_model
def ddpm_vpred_32(**kwargs) -> DDPM:
    """DDPM at 32 px, cosine schedule and v-prediction."""
    return DDPM.from_config(_track("vpred", 32), preset="ddpm_vpred_32", **kwargs)


@register_model
def ddpm_vpred_128(**kwargs) -> DDPM:
    """DDPM at 128 px, cosine schedule and v-prediction."""
    return DDPM.from_config(_track("vpred", 128), preset="ddpm_vpred_128", **kwargs)


@register_model
def ddpm_wide(**kwargs) -> DDPM:
    """ddpm_vpred at 64 px widened: base 192 channels, attention at 32, 16 and 8."""
    return DDPM.from_config(_track("wide", 64), preset="ddpm_wide", **kwargs)


@register_model
def ddpm_wide_32(**kwargs) -> DDPM:
    """ddpm_vpred at 32 px widened: base 192 channels, attention at 32, 16 and 8."""
    return DDPM.from_config(_track("wide", 32), preset="ddpm_wide_32", **kwargs)


@register_model
def ddpm_wide_128(**kwargs) -> DDPM:
    """ddpm_vpred at 128 px widened: base 192 channels, attention at 32, 16 and 8."""
    return DDPM.from_config(_track("wide", 128), preset="ddpm_wide_128", **kwargs)


_TEST = dict(resolution=32, base_channels=16, channel_mult=(1, 2), attention_resolutions=(16,),
             layers_per_block=1, norm_num_groups=8, dropout=0.0, num_inference_steps=10)


@register_model
def test_ddpm(**kwargs) -> DDPM:
    """Tiny DDPM for tests: 32 px, widths 16/32, attention at 16, 10 DDIM steps."""
    return DDPM.from_config(DDPMConfig(**_TEST), preset="test_ddpm", **kwargs)


@register_model
def test_ddpm_vpred(**kwargs) -> DDPM:
    """Tiny DDPM for tests with cosine betas, v-prediction and min-SNR-5 weighting."""
    return DDPM.from_config(DDPMConfig(**_TEST, beta_schedule="cosine",
                                       prediction_type="v_prediction", min_snr_gamma=5.0),
                            preset="test_ddpm_vpred", **kwargs)
