"""Training throughput of the GAN presets, and ganzoo's DCGAN against a plain reference loop.

    python benchmarks/bench_gan.py                  # cuda if available: batch 64, every preset
    python benchmarks/bench_gan.py --quick          # CPU, small batch, few iterations (< 2 min)
    python benchmarks/bench_gan.py --presets dcgan wgan_gp --batch-size 64 --repeats 7
    python benchmarks/bench_gan.py --presets dcgan --trainer-variants none --profile 10

The ganzoo side is driven exactly as the trainer drives a model, through the model API only:
for each group of ``model.schedule(step)``, only that group's parameters require gradients
(and, on its first step of the iteration, its ``graph_networks``': the D step's fakes go to the
G step with ``share_fakes``), ``loss, logs = model(group, batch, step)``, backward, the group's
optimizer (built from ``model.optimizer_groups()``) steps, ``model.after_step``; then
``model.update_ema``. (The trainer's own loop adds Accelerate, logging and checkpoints; this
isolates the family.) ``--trainer-variants ';--set share_fakes=true'`` times one generator
forward per iteration through ``ganzoo train`` beside the default fresh fakes.

Beside them, for ``dcgan``, ``ganzoo train`` itself (the Trainer on in-memory images, with each
flag set of ``--trainer-variants``): what a user of the command gets, against the same reference
(target >= 1.2x with the best flags).

The reference is pytorch/examples' ``dcgan/main.py`` loop with its architecture written out
below: one generator forward per iteration whose output feeds both the D and the G step,
BCELoss on a Sigmoid output, Adam 2e-4 (0.5, 0.999). Both sides see the same fixed batch of
real images on the device (data loading is not measured), run in this one process, alternate
repeat by repeat, and the table quotes the median images/s over the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import _common  # noqa: E402
import ganzoo  # noqa: E402
from ganzoo.models.base import SHARED_FORWARD, SharedForward  # noqa: E402

PRESETS = ["dcgan", "dcgan_upsample", "wgan_gp", "wgan_gp_sn_attn", "dcgan_128", "wgan_gp_128",
           "wgan_gp_sn_attn_128"]


# -- the reference: pytorch/examples dcgan/main.py (architecture and loop) ----------------------
class RefGenerator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, x):
        return self.main(x)


class RefDiscriminator(nn.Module):
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


def _ref_init(m):
    name = type(m).__name__
    if "Conv" in name:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in name:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


class Reference:
    """pytorch/examples DCGAN: state and one training iteration."""

    def __init__(self, device, batch_size):
        self.netG = RefGenerator().to(device)
        self.netD = RefDiscriminator().to(device)
        self.netG.apply(_ref_init)
        self.netD.apply(_ref_init)
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.device, self.n = device, batch_size

    def step(self, real, step):
        n, device = self.n, self.device
        self.netD.zero_grad()
        label = torch.full((n,), 1.0, device=device)
        err_real = self.criterion(self.netD(real), label)
        err_real.backward()
        noise = torch.randn(n, 100, 1, 1, device=device)
        fake = self.netG(noise)
        label.fill_(0.0)
        err_fake = self.criterion(self.netD(fake.detach()), label)
        err_fake.backward()
        self.optD.step()
        self.netG.zero_grad()
        label.fill_(1.0)
        err_g = self.criterion(self.netD(fake), label)
        err_g.backward()
        self.optG.step()


# -- the ganzoo side: the model API, driven as the trainer drives it ------------------------
class Ganzoo:
    def __init__(self, name, device, batch_size, ema_decay=None):
        self.model = ganzoo.build(name).to(device).train()
        groups = self.specs = self.model.optimizer_groups()
        self.params = {g: self.model.group_parameters(g) for g in groups}
        self.opts = {g: spec.build(self.params[g]) for g, spec in groups.items()}
        self.all_params = [p for n, p in self.model.named_parameters() if not n.startswith("ema.")]
        self.ema_decay = self.model.default_ema_decay if ema_decay is None else ema_decay
        self.resolution = self.model.config.resolution

    def step(self, real, step):
        model = self.model
        batch = {"image": real, SHARED_FORWARD: SharedForward()}
        seen = set()
        for group in model.schedule(step):
            for p in self.all_params:
                p.requires_grad_(False)
            for p in self.params[group]:
                p.requires_grad_(True)
            if group not in seen:  # its first step: its graph_networks may build a graph
                seen.add(group)
                for name in self.specs[group].graph_networks:
                    getattr(model, name).requires_grad_(True)
            opt = self.opts[group]
            opt.zero_grad(set_to_none=True)
            loss, _ = model(group, batch, step)
            loss.backward()
            opt.step()
            model.after_step(group, step)
        model.update_ema(self.ema_decay)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter


def _time(runner, real, iters, device, start_step) -> float:
    _sync(device)
    t0 = CLOCK()
    for i in range(iters):
        runner.step(real, start_step + i)
    _sync(device)
    return CLOCK() - t0


def measure(runners: dict, reals: dict, args, device) -> dict[str, list[float]]:
    """images/s per runner per repeat; runners alternate within each repeat."""
    out = {k: [] for k in runners}
    for k, r in runners.items():  # warm-up (cudnn autotune, allocator, lazy init)
        _time(r, reals[k], args.warmup, device, 0)
    for rep in range(args.repeats):
        for k, r in runners.items():
            dt = _time(r, reals[k], args.iters, device, args.warmup + rep * args.iters)
            out[k].append(args.batch_size * args.iters / dt)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="CPU, batch 16, 64 px presets only, few iterations")
    p.add_argument("--presets", nargs="+", default=None)
    p.add_argument("--batch-size", type=int, default=None, help="default 64 (quick: 16)")
    p.add_argument("--iters", type=int, default=None,
                   help="iterations per repeat, default 20 (quick: 2)")
    p.add_argument("--repeats", type=int, default=None, help="default 5")
    p.add_argument("--warmup", type=int, default=None, help="default 5 (quick: 1)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--trainer-variants", default="",
                   help="';'-separated ganzoo train flag sets timed for dcgan beside the "
                   "reference, e.g. ';--channels-last;--compile' ('' = the defaults); "
                   "'none' skips the trainer rows")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N iterations of the reference and of dcgan's model-API "
                   "loop (torch.profiler): where the time goes on each side")
    p.add_argument("--clock", choices=["wall", "process"], default="wall",
                   help="'process': CPU time of this process (CPU runs on a shared, loaded "
                   "machine; ignores time spent waiting for a core)")
    _common.add_heap_argument(p)
    args = p.parse_args(argv)
    defaults = dict(batch_size=64, iters=20, repeats=5, warmup=5)
    if args.quick:
        args.device = "cpu"
        defaults = dict(batch_size=16, iters=2, repeats=5, warmup=1)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        if args.presets is None:
            args.presets = [n for n in PRESETS if not n.endswith("128")]
    presets = args.presets or PRESETS
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    _common.steady_heap(device, args.system_malloc)
    if args.clock == "process":
        if device.type == "cuda":
            p.error("--clock process measures CPU time; use it with --device cpu")
        global CLOCK
        CLOCK = time.process_time
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)

    def real_batch(res):
        return torch.rand(args.batch_size, 3, res, res, device=device) * 2 - 1

    rows = []
    # dcgan against the reference, side by side in one measurement
    if "dcgan" in presets:
        runners = {"reference": Reference(device, args.batch_size),
                   "dcgan": Ganzoo("dcgan", device, args.batch_size)}
        reals = {k: real_batch(64) for k in runners}
        res = measure(runners, reals, args, device)
        ref = statistics.median(res["reference"])
        med = statistics.median(res["dcgan"])
        rows.append(("pytorch/examples DCGAN (reference loop)", 64, ref, None))
        rows.append(("dcgan (model API loop)", 64, med, med / ref))
        if args.profile:
            for k, r in runners.items():
                with _common.Profile(device) as prof:
                    _time(r, reals[k], args.profile, device, 10**6)
                print(prof.summary(k, args.profile), flush=True)
        del runners
        if args.trainer_variants != "none":
            _common.use_items({"image": torch.rand(4 * args.batch_size, 3, 64, 64) * 2 - 1})
            for variant in args.trainer_variants.split(";"):
                rate = _common.trainer_rate("dcgan", args.batch_size, args.iters * args.repeats,
                                            args.warmup, device, variant.split())
                label = f"`ganzoo train {variant}`" if variant else "`ganzoo train` (defaults)"
                rows.append((f"dcgan through {label}", 64, rate, rate / ref))
    for name in presets:
        if name == "dcgan":
            continue
        runner = Ganzoo(name, device, args.batch_size)
        reals = {name: real_batch(runner.resolution)}
        res = measure({name: runner}, reals, args, device)
        rows.append((name, runner.resolution, statistics.median(res[name]), None))
        del runner

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nGAN training throughput on {dev}, torch {torch.__version__}, batch "
          f"{args.batch_size}, median of {args.repeats} repeats x {args.iters} iterations "
          f"(after {args.warmup} warm-up), {args.clock} clock; one iteration = every group "
          f"of model.schedule() (WGAN-GP: 2 critic steps + 1 generator step) + EMA update\n")
    print("| model | px | train images/s | ratio to reference |")
    print("| --- | --- | --- | --- |")
    for name, px, ips, ratio in rows:
        print(f"| {name} | {px} | {ips:.1f} | {'' if ratio is None else f'{ratio:.3f}'} |")
    ratios = [(name, r) for name, _, _, r in rows if r is not None]
    if ratios:
        name, ratio = max(ratios, key=lambda x: x[1])
        verdict = "meets" if ratio >= 1.2 else "misses"
        print(f"\nbest: {name} / reference = {ratio:.3f} ({verdict} the >= 1.2 target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
