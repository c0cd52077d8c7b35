"""Training throughput (images/s) of the VAE-track presets at 64 px.

Two paths run side by side in one process, on the same networks and batch:

- **ganzoo**: the model API exactly as the trainer drives it: for each group of
  ``model.schedule(step)``, gradients switched on for that group's parameters only, then
  ``model(group, batch, step)``, ``backward``, ``optimizer.step()``;
- **reference**: a plain PyTorch loop over copies of the same networks, loss written inline
  (MSE + beta KL / D [+ lambda_perc VGG] [+ adv_weight hinge G term], then the hinge D step on
  the detached reconstruction), one optimizer per network group, no requires_grad toggling.

The ratio ganzoo / reference shows the API's overhead (1.0 = none). Steps alternate between the
two paths; each figure is the median over ``--repeats`` timed steps after ``--warmup`` steps.
One "step" of ``vae_patchgan`` is an autoencoder step plus a discriminator step
(``disc_start=0``). The VGG of the perceptual term has random weights (timing only).

    python benchmarks/bench_vae.py                       # cuda if available, batch 64
    python benchmarks/bench_vae.py --quick               # CPU, batch 8, few steps (< 2 min)
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import ganzoo
from ganzoo.losses.kl import kl_normal

PRESETS = ("vae", "vae_perceptual", "vae_patchgan")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ganzoo_step_fn(model, batch):
    opts = {g: s.build(model.group_parameters(g)) for g, s in model.optimizer_groups().items()}
    own = {g: {id(p) for p in model.group_parameters(g)} for g in opts}
    trainable = [p for p in model.parameters() if p.requires_grad]
    step = [model.config.disc_start]

    def run():
        for group in model.schedule(step[0]):
            for p in trainable:  # the trainer's _set_trainable
                p.requires_grad_(id(p) in own[group])
                p.grad = None
            loss, logs = model(group, batch, step[0])
            loss.backward()
            opts[group].step()
        step[0] += 1

    return run


def reference_step_fn(model, batch):
    """Hand-written loop over deep copies of the model's networks."""
    c = model.config
    enc, dec = copy.deepcopy(model.encoder), copy.deepcopy(model.decoder)
    vgg = copy.deepcopy(model.perceptual) if model.perceptual is not None else None
    disc = copy.deepcopy(model.discriminator) if model.discriminator is not None else None
    opt_ae = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=c.lr, betas=c.kl_weights)
    opt_d = (torch.optim.Adam(disc.parameters(), lr=c.disc_lr, betas=c.disc_betas)
             if disc is not None else None)
    x = batch["image"]
    dims = x[0].numel()

    def run():
        opt_ae.zero_grad(set_to_none=True)
        mu, logvar = enc(x)
        recon = dec(mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
        loss = F.mse_loss(recon, x) + c.kl_weight * kl_normal(mu, logvar) / dims
        if vgg is not None:
            loss = loss + c.perceptual_weight * vgg(recon, x)
        if disc is not None:
            loss = loss - c.adversarial_weight * disc(recon).mean()
        loss.backward()
        opt_ae.step()
        if disc is not None:
            opt_d.zero_grad(set_to_none=True)
            fake = recon.detach()
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(fake)).mean()
            d_loss.backward()
            opt_d.step()

    return run


def bench(name: str, device: torch.device, batch_size: int, warmup: int, repeats: int):
    torch.manual_seed(0)
    overrides = {}
    if "perceptual" in name or "patchgan" in name:
        overrides["perceptual_weights"] = "random"
    if "patchgan" in name:
        overrides["disc_start"] = 0
    model = ganzoo.build(name, **overrides).to(device).train()
    r = model.config.resolution
    batch = {"image": torch.rand(batch_size, model.config.channels, r, r, device=device) * 2 - 1}
    runs = {"ganzoo": ganzoo_step_fn(model, batch), "reference": reference_step_fn(model, batch)}
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    times = {k: [] for k in runs}
    for _ in range(repeats):
        for k, fn in runs.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    n_params = sum(p.numel() for g in model.optimizer_groups()
                   for p in model.group_parameters(g))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"preset": name, "params_m": n_params / 1e6, "resolution": r,
            "ganzoo": batch_size / med["ganzoo"], "reference": batch_size / med["reference"]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=["cpu", "cuda"],
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="CPU, batch 8, 1 warmup, 3 repeats")
    ap.add_argument("--batch-size", type=int, default=None, help="default 64 (8 with --quick)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS))
    args = ap.parse_args(argv)
    if args.quick:
        args.device = "cpu"
    batch_size = args.batch_size or (8 if args.quick else 64)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 20)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"VAE training throughput on {name}, batch {batch_size}, median of {repeats} steps "
          f"after {warmup} warmup, torch {torch.__version__}\n")
    print("| preset | trainable params (M) | px | ganzoo (img/s) | reference (img/s) | "
          "ganzoo / reference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for preset in args.presets:
        r = bench(preset, device, batch_size, warmup, repeats)
        print(f"| {r['preset']} | {r['params_m']:.1f} | {r['resolution']} | {r['ganzoo']:.1f} | "
              f"{r['reference']:.1f} | {r['ganzoo'] / r['reference']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
