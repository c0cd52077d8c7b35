"""Compare ganzoo's BlobGAN with the authors' code on copied weights.

    python tools/compare_blobgan.py --official PATH [--preset test_blobgan] [--seed 0]
                                    [--dtype float64] [--batch 4] [--json OUT]

``PATH`` is a checkout of https://github.com/dave-epstein/blobgan that the user fetched (the
folder holding ``src/models/blobgan.py``). Nothing of it is copied into ganzoo: this script
imports it from the checkout, builds its networks at the sizes of a ganzoo preset, copies
ganzoo's (randomised) weights into them through an explicit name map that must cover every
parameter on both sides, runs both on the same inputs (same noise, latents, blobs and images)
and prints two markdown tables: each network's parameter count and the largest absolute
difference of its outputs, and each loss term on the same batch. ``docs/blobgan.md`` ("Against
the authors' code") holds the measured tables and what each difference means.

Running the authors' code on a CPU without its training stack:

- ``src/models/networks/op`` compiles its CUDA kernels at import (``torch.utils.cpp_extension
  .load``). The load is replaced by a stub that raises if a kernel is ever called, so the ops'
  own CPU branches run (``upfirdn2d_native``, the CPU branch of ``fused_leaky_relu``, and
  ``conv2d_gradfix``'s fallback to ``torch.nn.functional``): the authors' pure-PyTorch paths.
- PyTorch Lightning, clean-fid, LPIPS and omegaconf are replaced by stubs, and the ``utils``
  package is assembled from its ``misc``, ``training``, ``distributed`` and ``logging`` modules
  (its ``io``, ``colab`` and ``wandb_logger`` need wandb, ipywidgets and moviepy and hold no
  maths used here). The Lightning stub records what ``shared_step`` logs, so the loss terms are
  the ones the authors' training step computes. The LPIPS stub returns 0: its VGG weights need
  a download, and ganzoo's encoder uses a VGG perceptual loss instead (a documented departure),
  so the LPIPS terms are not compared.
- ``einops`` must be installed (the official code computes with it).

The official networks are square (``splat_features`` renders an S x S grid, the discriminator
has no aspect ratio), so rectangular presets are refused. The splatting jitter draws its offsets
differently on the two sides, so it is turned off for the comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import types
from pathlib import Path

EXIT_BAD_INPUT = 2


class BadInput(Exception):
    """A problem with the command line or the checkout (exit code 2, one line on stderr)."""


# -- the authors' code --------------------------------------------------------------------------
def official_src(path: str) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise BadInput(f"--official {path}: no such directory")
    for src in (root / "src", root):
        if (src / "models" / "blobgan.py").is_file() and (src / "utils" / "misc.py").is_file():
            return src.resolve()
    raise BadInput(f"--official {path}: not a checkout of dave-epstein/blobgan "
                   f"(no src/models/blobgan.py)")


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


class _NoKernel:
    """Stands for a CUDA extension that was not compiled; calling into it is an error."""

    def __init__(self, name):
        self.name = name

    def __getattr__(self, attr):
        raise RuntimeError(f"the CUDA kernel {self.name}.{attr} was called: the comparison must "
                           f"run on the CPU paths")


@contextlib.contextmanager
def _no_cuda_build():
    import logging

    # (its import logs that no CUDA runtime is found: expected here)
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    import torch.utils.cpp_extension as ext

    saved = ext.load
    ext.load = lambda name, *a, **k: _NoKernel(name)
    try:
        yield
    finally:
        ext.load = saved


def _install_stubs(torch) -> None:
    """Stand-ins for the training stack the official modules import (see the module doc)."""
    nn = torch.nn

    class LightningModule(nn.Module):
        def save_hyperparameters(self, *args, **kwargs):
            pass

        def log_dict(self, values, **kwargs):
            self.__dict__.setdefault("logged", {}).update(values)

        def all_gather(self, x):
            return x

        @property
        def device(self):
            return next(self.parameters()).device

    class LPIPS(nn.Module):
        def __init__(self, *args, **kwargs):
            super().__init__()

        def forward(self, x, y):
            return x.new_zeros(x.shape[0], 1, 1, 1)

    _module("pytorch_lightning", LightningModule=LightningModule)
    _module("cleanfid", fid=types.SimpleNamespace(compute_fid=None))
    _module("lpips", LPIPS=LPIPS)
    _module("omegaconf", DictConfig=dict)


def import_official(src: Path):
    """Import the official ``models`` package from ``src`` (stubs first; see the module doc)."""
    import torch

    try:
        import einops  # noqa: F401  (the official code computes with it)
    except ImportError as e:
        raise BadInput("the official code needs einops: pip install einops") from e
    _install_stubs(torch)
    sys.path.insert(0, str(src))
    utils = _module("utils", __path__=[str(src / "utils")])
    _module("utils.io", load_pretrained_weights=lambda name, pretrained, model, strict=True: model,
            get_checkpoint_path=None)  # checkpoints are never read: weights come from ganzoo
    import importlib

    for sub in ("io", "distributed", "misc", "training", "logging"):
        mod = importlib.import_module(f"utils.{sub}")
        utils.__dict__.update({k: v for k, v in vars(mod).items() if not k.startswith("__")})
    with _no_cuda_build():
        models = importlib.import_module("models")
    return models


# -- building both sides ------------------------------------------------------------------------
def official_disc_channels(res: int, multiplier: int) -> int:
    """The official StyleGANDiscriminator's channel table (``models/networks/stylegan.py``)."""
    return min(256 * multiplier, 16384 * multiplier // res)


def channel_multiplier(resolution: int, base: int, cap: int) -> int | None:
    """The official channel multiplier whose table equals ganzoo's ``min(cap, base / res)``."""
    sizes = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
    for m in (1, 2, 4):
        if all(min(cap, base // r) == official_disc_channels(r, m) for r in sizes):
            return m
    return None


def official_blobgan_kwargs(c, d_multiplier: int) -> dict:
    """Keyword arguments of the official ``BlobGAN`` (``experiment/blobgan.yaml``'s layout) for
    a ganzoo ``BlobGANConfig``."""
    return dict(
        generator=dict(name="models.networks.layoutstylegan.LayoutStyleGANGenerator",
                       size=c.resolution, style_dim=c.style_dim, n_mlp=8, size_in=c.size_in,
                       c_model=c.c_model, spatial_style=True, override_c_in=c.override_c_in),
        layout_net=dict(name="models.networks.layoutnet.LayoutGenerator",
                        n_features_max=c.n_blobs, feature_dim=c.feature_dim,
                        style_dim=c.style_dim, noise_dim=c.latent_dim,
                        norm_features=c.norm_features, mlp_lr_mul=c.mlp_lr_mul,
                        mlp_hidden_dim=c.mlp_hidden_dim, mlp_n_layers=c.mlp_n_layers,
                        spatial_style=True),
        discriminator=dict(name="StyleGANDiscriminator", size=c.resolution,
                           channel_multiplier=d_multiplier),
        dim=c.style_dim, noise_dim=c.latent_dim, resolution=c.resolution, lr=c.lr, eps=c.eps,
        D_reg_every=c.r1_every, G_reg_every=-1,
        # The official R1 term is D_R1 * E||grad||^2, ganzoo's r1_gamma * 0.5 E||grad||^2.
        λ=dict(D_real=1, D_fake=1, D_R1=c.r1_gamma / 2, G=1, G_path=2, G_feature_mean=10,
               G_feature_variance=10),
        n_features_min=c.n_blobs, n_features_max=c.n_blobs, spatial_style=True,
        ab_norm=c.ab_norm, log_images_every_n_steps=10 ** 9, log_fid_every_epoch=False)


class _Trainer:
    """What the official ``shared_step`` reads of its Lightning trainer."""
    global_step = 0
    log_every_n_steps = 10 ** 9


# -- weight copy --------------------------------------------------------------------------------
def _same(name):
    return name, lambda t: t


def _modulated_conv_weight(name):
    # The official ModulatedConv2d keeps a leading singleton axis: (1, out, in, k, k).
    return name, lambda t: t.unsqueeze(0)


# ganzoo parameter name (regex) -> official name and tensor transform, per network. Every
# parameter on each side must be matched exactly once.
NAME_MAPS = {
    "layout_net": [(r"mlp\.\d+\.(weight|bias)", _same)],
    "generator": [
        (r"(conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+)\.conv\.weight", _modulated_conv_weight),
        (r"(conv1|convs\.\d+|to_rgb1|to_rgbs\.\d+)\.conv\.modulation\.(weight|bias)", _same),
        (r"(conv1|convs\.\d+)\.(noise\.weight|activate\.bias)", _same),
        (r"(to_rgb1|to_rgbs\.\d+)\.bias", _same),
    ],
    "discriminator": [
        (r"convs\.0\.(0\.weight|1\.bias)", _same),  # fromRGB: EqualConv2d + FusedLeakyReLU
        (r"convs\.\d+\.(conv1\.0\.weight|conv1\.1\.bias|conv2\.1\.weight|conv2\.2\.bias"
         r"|skip\.1\.weight)", _same),  # ResBlock (conv2/skip: Blur, EqualConv2d[, act])
        (r"final_conv\.(0\.weight|1\.bias)", _same),
        (r"final_linear\.[01]\.(weight|bias)", _same),
    ],
}
NAME_MAPS["encoder"] = NAME_MAPS["discriminator"]  # the official inverter is a StyleGAN2 D


def copy_weights(kind: str, ours, theirs) -> None:
    """Copy ``ours``' parameters into ``theirs`` through ``NAME_MAPS[kind]``; raise unless the
    map covers every parameter on both sides with matching shapes."""
    import re

    import torch

    src = dict(ours.named_parameters())
    dst = dict(theirs.named_parameters())
    done: dict[str, str] = {}
    for name, p in src.items():
        rules = [rule for rule in NAME_MAPS[kind] if re.fullmatch(rule[0], name)]
        if len(rules) != 1:
            raise AssertionError(f"{kind}: ganzoo parameter {name} matches {len(rules)} rules")
        target, fn = rules[0][1](name)
        if target not in dst:
            raise AssertionError(f"{kind}: ganzoo {name} -> official {target}, which is missing")
        value = fn(p.detach())
        if value.shape != dst[target].shape:
            raise AssertionError(f"{kind}: {name} {tuple(value.shape)} vs official {target} "
                                 f"{tuple(dst[target].shape)}")
        if target in done.values():
            raise AssertionError(f"{kind}: official {target} mapped twice")
        with torch.no_grad():
            dst[target].copy_(value)
        done[name] = target
    missing = sorted(set(dst) - set(done.values()))
    if missing:
        raise AssertionError(f"{kind}: official parameters left unmapped: {missing}")


def n_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def randomise_(net, seed: int, scale: float = 0.1) -> None:
    """Perturb every parameter (zero-initialised biases and noise strengths included), so that a
    parameter left out of the copy, or used differently, changes the outputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g).to(p))


def max_diff(a, b) -> float:
    if isinstance(a, dict):
        if set(a) != set(b):
            raise AssertionError(f"keys differ: {sorted(a)} vs {sorted(b)}")
        return max(max_diff(a[k], b[k]) for k in a)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.detach().double() - b.detach().double()).abs().max())


def max_abs(a) -> float:
    if isinstance(a, dict):
        return max(max_abs(v) for v in a.values())
    return float(a.detach().abs().max())


# -- the comparison -----------------------------------------------------------------------------
def build_pair(preset: str, official, notes: list[str]):
    """ganzoo's BlobGAN and encoder (official-behaviour flags on) and the official BlobGAN and
    BlobGANInverter at the same sizes, with ganzoo's randomised weights copied across."""
    import torch

    import ganzoo
    from ganzoo.models.blobgan import BlobGANEncoder, BlobGANEncoderConfig

    with torch.device("meta"):  # the preset's config, without allocating its weights
        c = ganzoo.build(preset).config
    if c.aspect_ratio != 1.0:
        raise BadInput(f"--preset {preset}: aspect_ratio {c.aspect_ratio}; the official "
                       f"networks are square (use a square preset, e.g. test_blobgan)")
    overrides: dict = {"pixel_coordinates": "corner"}
    if c.feature_jitter_xy or c.feature_jitter_shift or c.feature_jitter_angle:
        overrides.update(feature_jitter_xy=0.0, feature_jitter_shift=0.0,
                         feature_jitter_angle=0.0)
        notes.append("splatting jitter turned off (the two sides draw its offsets differently)")
    mult = channel_multiplier(c.resolution, c.disc_channel_base, c.disc_channel_max)
    if mult is None:
        mult = 1
        overrides.update(disc_channel_base=16384, disc_channel_max=256)
        notes.append(f"discriminator widened to the official table with channel multiplier 1 "
                     f"(disc_channel_base=16384, disc_channel_max=256): {preset}'s "
                     f"({c.disc_channel_base}, {c.disc_channel_max}) has no official equivalent")
    ours = ganzoo.build(preset, **overrides)
    c = ours.config
    enc_mult = 2 if c.resolution >= 64 else 1
    enc_base, enc_max = 16384 * enc_mult, 256 * enc_mult
    if enc_mult == 1:
        notes.append("encoder: StyleGAN2 discriminator with channel multiplier 1 (the official "
                     "inverter's default is 2; 1 keeps the test-size run small)")
    # The official inverter: a StyleGAN2 discriminator without minibatch std that predicts the
    # layout MLP's output (``mlp_idx=len(mlp)``), trained on generated and real images at once.
    enc = BlobGANEncoder.from_config(BlobGANEncoderConfig(
        blobgan=preset, blobgan_overrides={k: v for k, v in overrides.items()
                                           if not k.startswith("disc_")},
        resolution=c.resolution, backbone="stylegan2_discriminator", disc_channel_base=enc_base,
        disc_channel_max=enc_max, mlp_idx=c.mlp_n_layers + 1, perceptual_weights="none",
        real_from_step=0, truncation=0.0))
    kwargs = official_blobgan_kwargs(c, mult)
    theirs = official.BlobGAN(**kwargs)
    inv = official.BlobGANInverter(
        inverter=dict(name="StyleGANDiscriminator", size=c.resolution, discriminate_stddev=False,
                      channel_multiplier=enc_mult),
        generator=kwargs, λ=dict(real_LPIPS=1, real_MSE=1, fake_LPIPS=1, fake_MSE=1,
                                 fake_latents_MSE=1),
        generator_pretrained=types.SimpleNamespace(log_dir="unused"),
        log_images_every_n_steps=10 ** 9, trunc_min=0.0, trunc_max=0.0)
    return ours, enc, theirs, inv


def load_same_weights(ours, enc, theirs, inv, seed: int) -> None:
    import torch

    randomise_(ours, seed)
    randomise_(enc.encoder, seed + 1)
    with torch.no_grad():  # EMA = live weights on both sides
        for name in ("layout_net", "generator"):
            ours.ema[name].load_state_dict(getattr(ours, name).state_dict())
        enc.blobgan.ema.load_state_dict(ours.ema.state_dict())
    copy_weights("layout_net", ours.layout_net, theirs.layout_net)
    copy_weights("layout_net", ours.layout_net, theirs.layout_net_ema)
    copy_weights("layout_net", ours.layout_net, inv.generator.layout_net_ema)
    copy_weights("generator", ours.generator, theirs.generator)
    copy_weights("generator", ours.generator, theirs.generator_ema)
    copy_weights("generator", ours.generator, inv.generator.generator_ema)
    copy_weights("discriminator", ours.discriminator, theirs.discriminator)
    copy_weights("encoder", enc.encoder, inv.inverter)


def draw_noise(c, n: int, seed: int):
    """The per-layer noise ganzoo's generator draws from ``Generator().manual_seed(seed)``, in
    its order (the official generator takes it as its ``noise`` list)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sizes, res = [c.size_in], c.size_in
    while res < c.resolution:
        res *= 2
        sizes += [res, res]
    return [torch.randn(n, 1, s, s, generator=g) for s in sizes]


def compare_networks(ours, enc, theirs, inv, batch: int, seed: int) -> list[dict]:
    import torch

    from ganzoo.models.blobgan import layout as L
    from ganzoo.models.blobgan.stylegan2 import splat

    c = ours.config
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, c.latent_dim, generator=g)
    images = torch.rand(batch, 3, c.resolution, c.resolution, generator=g) * 2 - 1
    rows = []

    def row(module, a, b, ref, pa=None, pb=None):
        rows.append({"module": module, "params_ganzoo": pa, "params_official": pb,
                     "max_abs_diff": max_diff(a, b), "max_abs_output": max_abs(ref)})

    with torch.no_grad():
        lay_o = ours.layout_net(z)
        lay_t = theirs.layout_net(z, c.n_blobs)
        row("layout net (`LayoutMLP` / `LayoutGenerator`), z -> blobs", lay_o, lay_t, lay_t,
            n_params(ours.layout_net), n_params(theirs.layout_net))

        # Splatting of the same layout (the official dict, as its generator would get it).
        lay = {k: v.clone() for k, v in lay_t.items()}
        spl = theirs.splat_features(**lay, size=c.size_in, score_size=c.resolution)
        pyr_t = spl["scores_pyramid"]
        for grid in ("corner", "centre"):
            scores = L.render_scores(lay, c.resolution, c.resolution, c.ab_norm,
                                     pixel_coordinates=grid)
            pyr_o = L.score_pyramid(scores, c.size_in)
            out_o = {**{f"scores_{k}": v for k, v in pyr_o.items()},
                     "feature_grid": splat(pyr_o[c.size_in], lay["features"])}
            out_t = {**{f"scores_{k}": v for k, v in pyr_t.items()},
                     "feature_grid": spl["feature_grid"]}
            what = ("official pixel corners, `pixel_coordinates=\"corner\"`" if grid == "corner"
                    else "ganzoo default pixel centres")
            row(f"splatting, blobs -> score pyramid + feature grid ({what})", out_o, out_t, out_t,
                0, 0)

        noise = draw_noise(c, batch, seed)
        img_o = ours.generator(spl["feature_grid"], lay["spatial_style"], pyr_t,
                               generator=torch.Generator().manual_seed(seed))
        img_t = theirs.generator({"spatial_style": lay["spatial_style"], "scores_pyramid": pyr_t},
                                 input=spl["feature_grid"], noise=noise, return_image_only=True)
        row("generator (`LayoutStyleGANGenerator`), same grid, styles, pyramid and noise",
            img_o, img_t, img_t, n_params(ours.generator), n_params(theirs.generator))

        img_o = ours._render(ours.layout_net(z), ours.generator,
                             generator=torch.Generator().manual_seed(seed))
        img_t = theirs.gen(z, noise=noise)
        row("z -> image (layout net + splatting + generator)", img_o, img_t, img_t)

        d_o, d_t = ours.discriminator(images), theirs.discriminator(images)
        row("discriminator (`StyleGAN2Discriminator` / `StyleGANDiscriminator`), logits", d_o,
            d_t, d_t, n_params(ours.discriminator), n_params(theirs.discriminator))

        e_o, e_t = enc.encode(images), inv.inverter(images)
        row("encoder (StyleGAN2 D backbone / `BlobGANInverter.inverter`), image -> layout vector",
            e_o, e_t, e_t, n_params(enc.encoder), n_params(inv.inverter))

        rec_o = enc.blobgan.render(enc.invert(images),
                                   generator=torch.Generator().manual_seed(seed))
        rec_t = inv.generator.gen(e_t, ema=True, mlp_idx=len(inv.generator.layout_net_ema.mlp),
                                  noise=noise)
        row("image -> reconstruction (encoder + EMA layout net + EMA generator)", rec_o, rec_t,
            rec_t)
    return rows, images


def _official_step(model, batch, **kwargs) -> dict:
    model.logged = {}
    model.trainer = _Trainer()
    total = model.shared_step((batch.clone(), {}), mode="train", **kwargs)
    out = {k.split("/", 1)[1]: float(v) for k, v in model.logged.items()}
    out["_returned"] = float(total.detach())
    return out


def compare_losses(ours, enc, theirs, inv, images, seed: int) -> list[dict]:
    import torch

    c = ours.config
    batch = {"image": images}
    rows = []

    def row(term, a, b):
        a, b = float(torch.as_tensor(a).detach()), float(torch.as_tensor(b).detach())
        rows.append({"term": term, "ganzoo": a, "official": b, "abs_diff": abs(a - b)})

    # Generator step (official: optimizer 0). Both draw z, then the generator's noise.
    torch.manual_seed(seed)
    loss, logs = ours.loss("generator", batch, step=1)
    torch.manual_seed(seed)
    off = _official_step(theirs, images, batch_idx=0, optimizer_idx=0)
    row("G: softplus(-D(G(z)))", logs["g_loss"], off["G"])
    row("G: total", loss, off["total_loss_G"])

    # Discriminator step with lazy R1 (ganzoo: step % r1_every == 0; official: (step + 1) %
    # D_reg_every == 0).
    torch.manual_seed(seed)
    loss, logs = ours.loss("discriminator", batch, step=0)
    torch.manual_seed(seed)
    off = _official_step(theirs, images, batch_idx=c.r1_every - 1, optimizer_idx=1)
    row("D: mean D(x)", logs["d_real"], off["score_real"])
    row("D: mean D(G(z))", logs["d_fake"], off["score_fake"])
    row("D: softplus(-D(x)) + softplus(D(G(z)))", logs["d_loss"], off["D_real"] + off["D_fake"])
    row("D: R1 E‖∇D(x)‖² (unweighted)", 2 * logs["r1"], off["D_R1_unscaled"])
    row("D: R1 term as added to the loss", c.r1_gamma * c.r1_every * logs["r1"],
        theirs.λ.D_R1 * off["D_R1"])
    row("D: total", loss, off["total_loss_D"])

    # Encoder step (official BlobGANInverter; LPIPS stubbed to 0, ganzoo's perceptual off).
    inv.generator.mean_latent = torch.zeros(c.mlp_hidden_dim)  # truncation 0: 0 * mean
    torch.manual_seed(seed)
    loss, logs = enc.loss("encoder", batch, step=enc.config.real_from_step)
    torch.manual_seed(seed)
    off = _official_step(inv, images, batch_idx=0)
    row("encoder: MSE(reconstruction of G(z), G(z))", logs["fake_mse"], off["fake_MSE"])
    row("encoder: latent MSE (xs, ys, covs, sizes, features, styles)",
        logs["fake_latent_mse"], off["fake_latents_MSE"])
    row("encoder: MSE(reconstruction of x, x)", logs["real_mse"], off["real_MSE"])
    row("encoder: total (perceptual/LPIPS terms excluded)", loss, off["total_loss"])
    return rows


def _grads(net) -> dict:
    import torch

    return {n: (p.grad if p.grad is not None else torch.zeros_like(p))
            for n, p in net.named_parameters()}


def _mapped(kind: str, ours, theirs, what) -> tuple[dict, dict]:
    """``what(net)`` ({name: tensor}) of both networks, keyed and shaped as ganzoo's."""
    import re

    a, b = what(ours), what(theirs)
    out = {}
    for name in a:
        rule = next(r for r in NAME_MAPS[kind] if re.fullmatch(r[0], name))
        out[name] = b[rule[1](name)[0]].reshape(a[name].shape)
    return a, out


def compare_training(ours, enc, theirs, inv, images, seed: int) -> list[dict]:
    """Two G and two D steps (the first D step with R1) with each side's own optimizers and
    EMA update: gradients at every step, then parameters and EMA weights."""
    import torch

    c = ours.config
    batch = {"image": images}
    opt_o = {g: spec.build(ours.group_parameters(g))
             for g, spec in ours.optimizer_groups().items()}
    with contextlib.redirect_stdout(io.StringIO()):
        opt_t = dict(zip(("generator", "discriminator"), theirs.configure_optimizers()))
    nets = {"generator": ("layout_net", "generator"), "discriminator": ("discriminator",)}
    rows = []

    def row(what, kind, a, b):
        rows.append({"quantity": what, "max_abs_diff": max_diff(a, b),
                     "max_abs_value": max_abs(b), "network": kind})

    def params(net):
        return dict(net.named_parameters())

    for it in range(2):
        for group in ("generator", "discriminator"):
            for m in (ours, theirs):
                m.zero_grad(set_to_none=True)
            r1 = group == "discriminator" and it == 0
            torch.manual_seed(seed + 10 + it)
            loss, _ = ours.loss(group, batch, step=0 if r1 else 1)
            loss.backward()
            torch.manual_seed(seed + 10 + it)
            theirs.trainer = _Trainer()
            with contextlib.redirect_stdout(io.StringIO()):
                total = theirs.shared_step(
                    (images.clone(), {}), mode="train", optimizer_idx=int(group != "generator"),
                    batch_idx=c.r1_every - 1 if r1 else c.r1_every)
            total.backward()
            label = {"generator": "G", "discriminator": "D"}[group]
            for kind in nets[group]:
                a, b = _mapped(kind, getattr(ours, kind), getattr(theirs, kind), _grads)
                row(f"{label} step {it + 1}{' (with R1)' if r1 else ''}: gradients of the "
                    f"{kind.replace('_', ' ')}", kind, a, b)
            if group == "generator":
                # The official step averages the EMA inside shared_step, before its optimizer
                # step; ganzoo's trainer calls update_ema after it. Here ganzoo follows the
                # official order, so that the EMA row measures the update rule alone.
                ours.update_ema(ours.default_ema_decay)
            opt_o[group].step()
            opt_t[group].step()
    for kind in ("layout_net", "generator", "discriminator"):
        a, b = _mapped(kind, getattr(ours, kind), getattr(theirs, kind), params)
        row(f"after 2 G and 2 D Adam steps: parameters of the {kind.replace('_', ' ')}", kind,
            a, b)
    for kind in ("layout_net", "generator"):
        a, b = _mapped(kind, ours.ema[kind], getattr(theirs, f"{kind}_ema"), params)
        row(f"after 2 G steps: EMA of the {kind.replace('_', ' ')} (decay 0.5^(32/10000))",
            kind, a, b)
    return rows


def _fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.3g}" if x != 0 else "0"


def markdown(rows: list[dict], losses: list[dict], steps: list[dict]) -> str:
    lines = ["| module | params ganzoo | params official | max abs Δ of outputs | "
             "max abs output |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['module']} | {_fmt(r['params_ganzoo'])} | "
                     f"{_fmt(r['params_official'])} | {_fmt(r['max_abs_diff'])} | "
                     f"{_fmt(r['max_abs_output'])} |")
    lines += ["", "| loss term | ganzoo | official | abs Δ |", "| --- | ---: | ---: | ---: |"]
    for r in losses:
        lines.append(f"| {r['term']} | {r['ganzoo']:.10g} | {r['official']:.10g} | "
                     f"{_fmt(r['abs_diff'])} |")
    lines += ["", "| training step | max abs Δ | max abs value |", "| --- | ---: | ---: |"]
    for r in steps:
        lines.append(f"| {r['quantity']} | {_fmt(r['max_abs_diff'])} | "
                     f"{_fmt(r['max_abs_value'])} |")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, exit 2
        raise BadInput(message)


def parse_args(argv=None):
    p = _Parser(description=__doc__.split("\n\n")[0],
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", required=True,
                   help="checkout of github.com/dave-epstein/blobgan")
    p.add_argument("--preset", default="test_blobgan", help="square ganzoo BlobGAN preset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4, help="batch size (a multiple of 4 or < 4: "
                   "the official minibatch-std layer needs groups of min(batch, 4))")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    p.add_argument("--json", help="also write the tables as JSON to this file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    try:
        args = parse_args(argv)
        src = official_src(args.official)
        if args.batch < 1 or (args.batch > 4 and args.batch % 4):
            raise BadInput(f"--batch {args.batch}: must be < 4 or a multiple of 4")
        import torch

        import ganzoo

        if args.preset not in ganzoo.list_models("*blobgan*") or "encoder" in args.preset:
            raise BadInput(f"--preset {args.preset}: not a ganzoo BlobGAN preset")
        official = import_official(src)
    except BadInput as e:
        print(f"compare_blobgan: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    import warnings

    # the official R1 step enters torch.cuda.amp.autocast(enabled=False), deprecated in torch 2
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast",
                            category=FutureWarning)
    torch.set_default_dtype(getattr(torch, args.dtype))
    notes: list[str] = []
    torch.manual_seed(args.seed)  # the initial weights (then randomised and copied)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the official code's "Froze ..." prints
            ours, enc, theirs, inv = build_pair(args.preset, official, notes)
    except BadInput as e:
        print(f"compare_blobgan: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    dtype = getattr(torch, args.dtype)
    for m in (ours, enc, theirs, inv):
        m.to(dtype)
    load_same_weights(ours, enc, theirs, inv, args.seed)
    rows, images = compare_networks(ours, enc, theirs, inv, args.batch, args.seed)
    with contextlib.redirect_stdout(io.StringIO()):  # the official code's progress prints
        losses = compare_losses(ours, enc, theirs, inv, images, args.seed)
    steps = compare_training(ours, enc, theirs, inv, images, args.seed)
    print(f"ganzoo preset {args.preset}, batch {args.batch}, seed {args.seed}, {args.dtype}, "
          f"official checkout {src.parent}")
    for n in notes:
        print(f"note: {n}")
    print()
    print(markdown(rows, losses, steps))
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"preset": args.preset, "seed": args.seed, "batch": args.batch, "dtype": args.dtype,
             "notes": notes, "networks": rows, "losses": losses, "training": steps},
            indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
