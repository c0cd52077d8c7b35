"""DDPM throughput: ganzoo against plain diffusers, same U-Net config, one process.

(a) training images/s: ``ganzoo train`` itself (the Trainer on in-memory images, with the
    variant's flags: ``--mixed-precision bf16``, ``--channels-last``, ``--compile``) and
    ganzoo's training step through the model API alone (``schedule`` -> ``model(group, batch,
    step)`` -> backward -> clip -> step -> ``after_step`` -> ``update_ema``), against the loop
    of diffusers' unconditional training example (UNet2DModel + DDPMScheduler.add_noise + MSE
    to the noise + AdamW + clip 1.0 + ``EMAModel.step``), given the same variant. Target: the
    trainer >= 1.2x the example with the best flags (issue 21), the model API loop >= 0.95 at
    equal flags.
(b) DDIM 50-step sampling images/s: ``DDPM.sample`` against ``diffusers.DDIMPipeline`` (with
    ``output_type="pt"``, so neither side copies to the host). Target ratio >= 1.2.
(c) variants: ``--variants fp32,bf16,channels_last,compile`` runs each (bf16 autocast,
    channels_last memory format, ``torch.compile`` of the U-Nets), building fresh models.

Usage::

    python benchmarks/bench_ddpm.py --quick                # CPU, small U-Net at 32 px
    python benchmarks/bench_ddpm.py --preset ddpm_32 --batch-size 128 \\
        --variants fp32,bf16,channels_last,bf16+channels_last,compile
    python benchmarks/bench_ddpm.py --quick --no-trainer --profile 2   # where the time goes

Every figure is the median over ``--repeats`` timed runs; the two sides alternate.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from contextlib import nullcontext

import _common
import torch
import torch.nn.functional as F

import ganzoo

QUICK_OVERRIDES = dict(resolution=32, base_channels=32, channel_mult=(1, 2, 2),
                       attention_resolutions=(16,), layers_per_block=1, norm_num_groups=8)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device):
    """Process CPU time for single-threaded CPU runs (other load on a shared machine does not
    skew it), wall time otherwise (CUDA work is synchronised before reading it)."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def timed(fn, device) -> float:
    now = clock(device)
    sync(device)
    start = now()
    fn()
    sync(device)
    return now() - start


def trainer_rate(args, device, overrides, flags) -> float:
    """images/s of ``ganzoo train`` with the variant's flags (bf16 -> ``--mixed-precision
    bf16``, channels_last -> ``--channels-last``, compile -> ``--compile``)."""
    argv = ["--mixed-precision", "bf16" if flags["bf16"] else "no"]
    argv += ["--channels-last"] if flags["channels_last"] else []
    argv += ["--compile"] if flags["compile"] else []
    return _common.trainer_rate(args.preset, args.batch_size, args.train_iters, args.warmup,
                                device, argv, overrides)


def parse_variant(name: str) -> dict[str, bool]:
    parts = set(name.split("+"))
    unknown = parts - {"fp32", "bf16", "channels_last", "compile"}
    if unknown:
        raise SystemExit(f"unknown variant part(s) {sorted(unknown)} in {name!r}")
    return {"bf16": "bf16" in parts, "channels_last": "channels_last" in parts,
            "compile": "compile" in parts}


def setup(args, device, flags):
    """The ganzoo model and the diffusers side with identical U-Net weights."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel
    from diffusers.training_utils import EMAModel

    overrides = QUICK_OVERRIDES if args.quick else {}
    torch.manual_seed(0)
    model = ganzoo.build(args.preset, **overrides).to(device)
    model.train()
    ref = UNet2DModel.from_config(model.unet.config).to(device)
    ref.load_state_dict(model.unet.state_dict())
    ref.train()
    ref_sample = copy.deepcopy(ref).eval()  # what a pipeline built from a checkpoint holds
    if flags["channels_last"]:
        for net in (model.unet, model.ema["unet"], ref, ref_sample):
            net.to(memory_format=torch.channels_last)
    if flags["compile"]:
        for net in (model.unet, model.ema["unet"], ref, ref_sample):
            net.compile()

    spec = model.optimizer_groups()["unet"]
    opt = spec.build(model.group_parameters("unet"))
    ref_opt = torch.optim.AdamW(ref.parameters(), lr=spec.lr, betas=(0.95, 0.999),
                                weight_decay=1e-6, eps=1e-8)
    c = model.config
    noise_scheduler = DDPMScheduler(num_train_timesteps=c.num_train_timesteps,
                                    beta_schedule="linear")
    ema = EMAModel(ref.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0,
                   power=3 / 4, model_cls=UNet2DModel, model_config=ref.config)
    ema.to(device)
    pipe = DDIMPipeline(unet=ref_sample, scheduler=DDIMScheduler.from_config(
        model.make_scheduler("ddim").config))
    pipe.set_progress_bar_config(disable=True)
    return model, opt, ref, ref_opt, noise_scheduler, ema, pipe


def bench_variant(args, device, variant: str) -> dict[str, float]:
    flags = parse_variant(variant)
    model, opt, ref, ref_opt, noise_scheduler, ema, pipe = setup(args, device, flags)
    c = model.config
    amp = (torch.autocast(device.type, dtype=torch.bfloat16) if flags["bf16"]
           else nullcontext())
    fmt = torch.channels_last if flags["channels_last"] else torch.contiguous_format
    g = torch.Generator(device=device).manual_seed(0)
    images = (torch.rand(args.batch_size, c.channels, c.resolution, c.resolution,
                         generator=g, device=device) * 2 - 1).contiguous(memory_format=fmt)
    batch = {"image": images}
    spec = model.optimizer_groups()["unet"]
    decay = type(model).default_ema_decay
    params = model.group_parameters("unet")
    step_counter = [0]

    def ganzoo_steps():
        for _ in range(args.train_iters):
            step = step_counter[0]
            for group in model.schedule(step):
                with amp:
                    loss, _logs = model(group, batch, step)
                loss.backward()
                if spec.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, spec.clip_grad_norm)
                opt.step()
                opt.zero_grad(set_to_none=True)
                model.after_step(group, step)
            model.update_ema(decay)
            step_counter[0] += 1

    def diffusers_steps():
        for _ in range(args.train_iters):
            clean = images
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps,
                                      (clean.shape[0],), device=device).long()
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with amp:
                output = ref(noisy, timesteps).sample
            loss = F.mse_loss(output.float(), noise.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
            ref_opt.step()
            ref_opt.zero_grad(set_to_none=True)
            ema.step(ref.parameters())

    def ganzoo_sample():
        with amp:
            model.sample(args.sample_batch, torch.Generator(device=device).manual_seed(1),
                         num_inference_steps=args.ddim_steps, progress=False)

    def diffusers_sample():
        with amp:
            pipe(batch_size=args.sample_batch, generator=torch.Generator(device=device)
                 .manual_seed(1), num_inference_steps=args.ddim_steps, output_type="pt")

    # Warm-up (compilation, cuDNN autotuning, allocator) on both sides.
    for fn in (ganzoo_steps, diffusers_steps, ganzoo_sample, diffusers_sample):
        for _ in range(args.warmup):
            fn()

    if args.profile:
        sides = (("ganzoo, model API training", ganzoo_steps, args.train_iters),
                 ("diffusers, train_unconditional.py step", diffusers_steps, args.train_iters),
                 ("ganzoo, DDIM sampling", ganzoo_sample, args.ddim_steps),
                 ("diffusers, DDIMPipeline", diffusers_sample, args.ddim_steps))
        for label, fn, iters in sides:  # iterations: training steps, denoising steps
            with _common.Profile(device) as prof:
                for _ in range(args.profile):
                    fn()
            print(prof.summary(f"{variant}, {label}", args.profile * iters), flush=True)

    times = {k: [] for k in ("train_ganzoo", "train_diffusers", "sample_ganzoo",
                             "sample_diffusers")}
    for _ in range(args.repeats):
        times["train_ganzoo"].append(timed(ganzoo_steps, device))
        times["train_diffusers"].append(timed(diffusers_steps, device))
        times["sample_ganzoo"].append(timed(ganzoo_sample, device))
        times["sample_diffusers"].append(timed(diffusers_sample, device))
    n_train = args.train_iters * args.batch_size
    flops = step_flops(model, batch, amp)
    med = {k: statistics.median(v) for k, v in times.items()}
    trainer = None
    if args.trainer:
        overrides = QUICK_OVERRIDES if args.quick else {}
        _common.use_items({"image": torch.rand(
            max(4 * args.batch_size, 64), c.channels, c.resolution, c.resolution,
            generator=torch.Generator().manual_seed(0)) * 2 - 1})
        trainer = statistics.median(trainer_rate(args, device, overrides, flags)
                                    for _ in range(args.repeats))
    return {
        "train_trainer": trainer,
        "train_ganzoo": n_train / med["train_ganzoo"],
        "train_diffusers": n_train / med["train_diffusers"],
        "sample_ganzoo": args.sample_batch / med["sample_ganzoo"],
        "sample_diffusers": args.sample_batch / med["sample_diffusers"],
        "params": sum(p.numel() for p in model.unet.parameters()),
        "flops_per_image": flops / args.batch_size,
    }


def step_flops(model, batch, amp) -> float:
    """FLOPs of one training step (forward + backward), counted by torch's FlopCounterMode
    (matrix products and convolutions: the work MFU is quoted for)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        for group in model.schedule(0):
            with amp:
                loss, _ = model(group, batch, 0)
            loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--quick", action="store_true",
                   help="CPU, small U-Net at 32 px (widths 32/64/64), few iterations")
    p.add_argument("--preset", default=None, help="ganzoo preset giving the U-Net config "
                   "(default: ddpm_32; --quick shrinks it)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size")
    p.add_argument("--sample-batch", type=int, default=None, help="images per sampling call")
    p.add_argument("--train-iters", type=int, default=None, help="training steps per timed run")
    p.add_argument("--ddim-steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--variants", default="fp32",
                   help="comma-separated, each fp32 or a '+' join of bf16, channels_last, "
                        "compile (e.g. fp32,bf16,channels_last,bf16+channels_last,compile)")
    p.add_argument("--peak-tflops", type=float, default=None,
                   help="the device's dense bf16 peak, for MFU (default: 989 on H100/H200)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N calls of each side's training and sampling "
                        "(torch.profiler), summarised per training or denoising step")
    p.add_argument("--no-trainer", action="store_false", dest="trainer",
                   help="skip the rows timed through ganzoo.train's Trainer")
    _common.add_heap_argument(p)
    args = p.parse_args(argv)
    if args.quick:
        args.device = args.device or "cpu"
        torch.set_num_threads(1)  # and time in process CPU time: robust to a loaded machine
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    _common.steady_heap(device, args.system_malloc)
    args.preset = args.preset or "ddpm_32"
    defaults = (dict(batch_size=8, sample_batch=4, train_iters=6, repeats=3, warmup=1)
                if args.quick else
                dict(batch_size=128, sample_batch=128, train_iters=10, repeats=5, warmup=2))
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    rows = []
    for variant in args.variants.split(","):
        r = bench_variant(args, device, variant)
        rows.append((variant, r))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n### DDPM: ganzoo vs diffusers ({name}, preset {args.preset}"
          f"{' shrunk by --quick' if args.quick else ''}, {rows[0][1]['params'] / 1e6:.2f} M "
          f"U-Net params, torch {torch.__version__})\n")
    timing = ("process CPU time, 1 thread" if device.type == "cpu"
              and torch.get_num_threads() == 1 else "wall time")
    print(f"Training batch {args.batch_size} x {args.train_iters} steps; DDIM {args.ddim_steps} "
          f"steps, batch {args.sample_batch}; medians of {args.repeats} runs ({timing}).\n")
    print("| variant | benchmark | ganzoo img/s | diffusers img/s | ratio | target |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for variant, r in rows:
        for what, key, target in (("(a) training, ganzoo train with the variant's flags",
                                   "train_trainer", 1.2),
                                  ("(a) training, model API loop", "train_ganzoo", 0.95),
                                  ("(b) DDIM sampling", "sample_ganzoo", 1.2)):
            ours, theirs = r[key], r[key.split("_")[0] + "_diffusers"]
            if ours is None:
                continue
            print(f"| {variant} | {what} | {ours:.2f} | {theirs:.2f} | {ours / theirs:.3f} "
                  f"| >= {target} |")
    # Issue 21's comparison: ganzoo with its best flags against the loop a user of the diffusers
    # example runs, which has --mixed_precision (bf16) but neither channels_last nor compile.
    plain = {v: r for v, r in rows if v in ("fp32", "bf16")}
    for what, key in (("ganzoo train", "train_trainer"), ("DDPM.sample (DDIM)", "sample_ganzoo")):
        ours = [(r[key], v) for v, r in rows if r[key] is not None]
        ref_key = key.split("_")[0] + "_diffusers"
        if plain and ours:
            (best, v), pv = max(ours), max(plain, key=lambda k: plain[k][ref_key])
            print(f"\n{what}, best variant {v}: {best:.2f} img/s = "
                  f"{best / plain[pv][ref_key]:.2f}x the plain diffusers side ({pv}) "
                  f"(target >= 1.2)", end="")
    print()
    peak = args.peak_tflops or (989.0 if device.type == "cuda" and any(
        k in name for k in ("H100", "H200")) else None)
    print(f"\nModel FLOPs of a training step: {rows[0][1]['flops_per_image'] / 1e9:.2f} GFLOP "
          f"per image (FlopCounterMode: matmuls and convolutions, forward + backward)")
    for variant, r in rows:
        best = max(v for v in (r["train_trainer"], r["train_ganzoo"]) if v is not None)
        achieved = best * r["flops_per_image"] / 1e12
        mfu = f", MFU {100 * achieved / peak:.1f}% of {peak:.0f} TFLOP/s" if peak else ""
        print(f"- {variant}: {achieved:.3f} TFLOP/s achieved{mfu}")


if __name__ == "__main__":
    main()
