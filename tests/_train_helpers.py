"""Toy models and a toy dataset for the trainer tests, independent of the real families.

In the test process they are registered by the ``toys`` fixture (and removed afterwards, so
they never leak into other test files). Subprocesses (``python -m ganzoo.train``, ``torchrun``)
find them as a real plugin: :func:`plugin_env` writes a ``.dist-info`` whose entry points name
the factories below, exactly as a pip-installed plugin would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ganzoo.models.base import GenerativeModel, OptimizerSpec

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

MODELS = {"toytrain_gan": "toytrain_gan", "toytrain_ae": "toytrain_ae"}
DATASETS = {"toytrain_images": "toytrain_images", "toytrain_unpaired": "toytrain_unpaired"}


# -- a toy GAN: two groups, 2 critic steps per generator step, EMA, BatchNorm, clipping hook --
@dataclass
class ToyGANConfig:
    resolution: int = 8
    channels: int = 3
    z_dim: int = 8
    hidden: int = 32
    n_critic: int = 2
    nan_at: tuple[int, ...] = ()  # steps whose discriminator loss is NaN (guard tests)
    nan_from: int = -1  # every step from here on has a NaN loss (-1: never)
    inf_grad_at: tuple[int, ...] = ()  # steps whose discriminator gradients (not loss) are inf
    clip_value: float = 0.0  # > 0: WGAN-style weight clipping of D after its steps


class ToyGenerator(nn.Module):
    def __init__(self, c: ToyGANConfig):
        super().__init__()
        self.c = c
        self.net = nn.Sequential(nn.Linear(c.z_dim, c.hidden), nn.BatchNorm1d(c.hidden),
                                 nn.ReLU(), nn.Linear(c.hidden, c.channels * c.resolution ** 2))

    def forward(self, z):
        c = self.c
        return torch.tanh(self.net(z)).view(-1, c.channels, c.resolution, c.resolution)


class ToyDiscriminator(nn.Module):
    def __init__(self, c: ToyGANConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(c.channels * c.resolution ** 2,
                                                         c.hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(c.hidden, 1))

    def forward(self, x):
        return self.net(x).squeeze(1)


class ToyGAN(GenerativeModel):
    config_class = ToyGANConfig
    family = "toytrain_gan"
    ema_networks = ("generator",)
    default_ema_decay = 0.9

    def __init__(self, config: ToyGANConfig):
        super().__init__(config)
        self.generator = ToyGenerator(config)
        self.discriminator = ToyDiscriminator(config)

    @property
    def image_size(self):
        return self.config.resolution, self.config.resolution

    @property
    def channels(self):
        return 3

    def optimizer_groups(self):
        return {"discriminator": OptimizerSpec(("discriminator",), lr=2e-3, betas=(0.5, 0.999),
                                               steps=self.config.n_critic),
                "generator": OptimizerSpec(("generator",), lr=2e-3, betas=(0.5, 0.999))}

    def _nan(self, step):
        return step in self.config.nan_at or 0 <= self.config.nan_from <= step

    def loss(self, group, batch, step):
        # The trainer must enable gradients for the stepped group only.
        other = self.discriminator if group == "generator" else self.generator
        own = self.generator if group == "generator" else self.discriminator
        if any(p.requires_grad for p in other.parameters()) or \
                not all(p.requires_grad for p in own.parameters()):
            raise AssertionError(f"requires_grad is wrong during the {group} step")
        real = batch["image"]
        z = torch.randn(real.shape[0], self.config.z_dim, device=real.device)
        fake = self.generator(z)
        if group == "discriminator":
            loss = F.softplus(-self.discriminator(real)).mean() + \
                F.softplus(self.discriminator(fake.detach())).mean()
            if self._nan(step):
                loss = loss * float("nan")
            if step in self.config.inf_grad_at:
                loss.register_hook(lambda grad: grad * float("inf"))
        else:
            loss = F.softplus(-self.discriminator(fake)).mean()
            if 0 <= self.config.nan_from <= step:
                loss = loss * float("nan")
        return loss, {"d_out_real": self.discriminator(real).detach().mean()} \
            if group == "discriminator" else {}

    def after_step(self, group, step):
        if group == "discriminator" and self.config.clip_value > 0:
            with torch.no_grad():
                for p in self.discriminator.parameters():
                    p.clamp_(-self.config.clip_value, self.config.clip_value)

    @torch.no_grad()
    def sample(self, n, generator=None):
        z = torch.randn(n, self.config.z_dim, generator=generator, device=self.device)
        return self.inference_net("generator")(z)


# -- a toy single-group autoencoder whose preview shows fixed inputs over reconstructions ------
@dataclass
class ToyAEConfig:
    resolution: int = 8
    channels: int = 3
    latent: int = 16


class ToyAE(GenerativeModel):
    config_class = ToyAEConfig
    family = "toytrain_ae"
    task = "reconstruct"

    def __init__(self, config: ToyAEConfig):
        super().__init__(config)
        d = config.channels * config.resolution ** 2
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, config.latent))
        self.decoder = nn.Linear(config.latent, d)

    @property
    def image_size(self):
        return self.config.resolution, self.config.resolution

    @property
    def channels(self):
        return self.config.channels

    def optimizer_groups(self):
        return {"autoencoder": OptimizerSpec(("encoder", "decoder"), lr=1e-2)}

    def reconstruct(self, x):
        return torch.tanh(self.decoder(self.encoder(x))).view_as(x)

    def loss(self, group, batch, step):
        x = batch["image"]
        loss = F.mse_loss(self.reconstruct(x), x)
        return loss, {"mse": loss.detach()}

    @torch.no_grad()
    def preview(self, batch, n, generator=None):
        x = batch["image"][:n]
        return torch.cat([x, self.reconstruct(x)])


def toytrain_gan(**kwargs) -> ToyGAN:
    """Toy GAN for the trainer tests."""
    return ToyGAN.from_config(ToyGANConfig(), preset="toytrain_gan", **kwargs)


def toytrain_ae(**kwargs) -> ToyAE:
    """Toy autoencoder for the trainer tests."""
    return ToyAE.from_config(ToyAEConfig(), preset="toytrain_ae", **kwargs)


# -- toy datasets ----------------------------------------------------------------------------
class ToyImages(torch.utils.data.Dataset):
    """Deterministic random images with a random flip (an augmentation drawing on torch RNG)."""

    def __init__(self, resolution: int = 8, size: int = 64, seed: int = 0, keys=("image",)):
        g = torch.Generator().manual_seed(seed)
        self.data = {k: torch.rand(size, 3, resolution, resolution, generator=g) * 2 - 1
                     for k in keys}
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        flip = bool(torch.rand(()) < 0.5)
        return {k: (v[i].flip(-1) if flip else v[i]) for k, v in self.data.items()}


def toytrain_images(resolution: int = 8, size: int = 64, seed: int = 0) -> ToyImages:
    return ToyImages(resolution, size, seed)


def toytrain_unpaired(resolution: int = 8, size: int = 64, seed: int = 0) -> ToyImages:
    return ToyImages(resolution, size, seed, keys=("image_a", "image_b"))


# -- registration ----------------------------------------------------------------------------
def register_toys():
    """Register the toys in this process; returns a function that removes them again."""
    from ganzoo.registry import DATASETS as DREG, MODELS as MREG

    added = []
    for reg, names in ((MREG, MODELS), (DREG, DATASETS)):
        for name in names:
            if name not in reg._builtins:
                reg.register(name=name)(globals()[name])
                added.append((reg, name))

    def unregister():
        for reg, name in added:
            reg._builtins.pop(name, None)

    return unregister


def plugin_env(root: Path) -> dict[str, str]:
    """Environment for subprocesses in which the toys are an installed ganzoo plugin."""
    site = root / "toy_site"
    dist = site / "ganzoo_trainer_toys-0.1.dist-info"
    if not dist.exists():
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ganzoo-trainer-toys\n"
                                       "Version: 0.1\n")
        lines = ["[ganzoo.models]"] + [f"{n} = _train_helpers:{n}" for n in MODELS]
        lines += ["", "[ganzoo.datasets]"] + [f"{n} = _train_helpers:{n}" for n in DATASETS]
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), str(HERE), str(site)] + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "ganzoo.train", "--no-progress", *args]


def run_train(env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(*args), env=env, capture_output=True, text=True,
                          timeout=timeout)
