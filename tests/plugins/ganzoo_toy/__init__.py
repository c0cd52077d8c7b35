"""A third-party ganzoo plugin, as a user would write one: a tiny GAN and a dataset.

It is found only through its entry points (``ganzoo_toy-0.1.dist-info/entry_points.txt``);
ganzoo itself knows nothing about it.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ganzoo.models.base import GenerativeModel, OptimizerSpec


@dataclass
class ToyGANConfig:
    latent_dim: int = 4
    resolution: int = 8
    hidden: int = 16

    def __post_init__(self):
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")


class ToyGAN(GenerativeModel):
    config_class = ToyGANConfig
    family = "toy"
    paper = "none (test plugin)"
    ema_networks = ("generator",)

    def __init__(self, config):
        super().__init__(config)
        r, h = config.resolution, config.hidden
        self.generator = nn.Sequential(nn.Linear(config.latent_dim, h), nn.ReLU(),
                                       nn.Linear(h, 3 * r * r), nn.Tanh())
        self.discriminator = nn.Sequential(nn.Flatten(), nn.Linear(3 * r * r, h),
                                           nn.LeakyReLU(0.2), nn.Linear(h, 1))

    @property
    def image_size(self):
        return self.config.resolution, self.config.resolution

    @property
    def channels(self):
        return 3

    def optimizer_groups(self):
        return {"discriminator": OptimizerSpec(("discriminator",), lr=1e-3),
                "generator": OptimizerSpec(("generator",), lr=1e-3)}

    def _fake(self, n, generator=None, net=None):
        z = torch.randn(n, self.config.latent_dim, generator=generator).to(self.device)
        r = self.config.resolution
        return (net or self.generator)(z).view(n, 3, r, r)

    def loss(self, group, batch, step):
        real = batch["image"]
        if group == "discriminator":
            fake = self._fake(real.shape[0]).detach()
            loss = F.softplus(-self.discriminator(real)).mean() + \
                F.softplus(self.discriminator(fake)).mean()
        else:
            loss = F.softplus(-self.discriminator(self._fake(real.shape[0]))).mean()
        return loss, {f"loss_{group}": loss.detach()}

    @torch.no_grad()
    def sample(self, n, generator=None):
        return self._fake(n, generator, self.inference_net("generator"))


def toy_gan(**kwargs):
    return ToyGAN.from_config(preset="toy_gan", **kwargs)


class _Noise(torch.utils.data.Dataset):
    keys = ("image",)

    def __init__(self, resolution=8, size=16, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.rand(size, 3, resolution, resolution, generator=g) * 2 - 1

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i]}


def toy_noise(resolution=8, size=16, seed=0):
    return _Noise(resolution, size, seed)
