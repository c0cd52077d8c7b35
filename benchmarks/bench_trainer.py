"""Trainer overhead: images/s of a family's training step through the ganzoo trainer against
the same step in a bare PyTorch loop, same model, same data, one process.

Both sides train the same preset (default ``dcgan``; ``test_dcgan`` with ``--quick``) on the
same in-memory images (the embedded ``shapes`` set, rendered once before timing). The bare loop
is what a careful user writes by hand: a shuffled ``DataLoader``, then for each group of the
model's schedule a fresh batch, gradients enabled for that group only, ``loss``, ``backward``,
the group's gradient clipping if it has one, ``step``, ``after_step``, and the EMA update. The ganzoo side is ``Trainer.train()`` itself
(Accelerate, the non-finite guard, logging, LR schedule, sampler, EMA), timed over the same
iterations as the bare loop (from the start of iteration ``warmup`` to the start of iteration
``warmup + steps``), so setup and the final save are not timed. Runs alternate; medians are quoted. Images/s counts every
image drawn (``batch x`` schedule entries per iteration). Single-threaded CPU runs (``--quick``)
are timed in process CPU time, so other load on a shared machine does not skew the ratio;
other runs in wall time. CPU runs restart themselves under fixed glibc malloc thresholds
(see ``_steady_malloc``; ``--system-malloc`` keeps the defaults).

    python benchmarks/bench_trainer.py --quick            # CPU, about 2 minutes
    python benchmarks/bench_trainer.py --device cuda      # dcgan at 64 px, batch 64
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganzoo  # noqa: E402
from ganzoo.registry import DATASETS  # noqa: E402

_IMAGES: dict[str, torch.Tensor] = {}


class InMemory(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i]}


def bench_images(resolution: int = 64, size: int = 512, seed: int = 0) -> InMemory:
    return InMemory(_IMAGES[f"{resolution}"])


def _clock(device):
    """CPU time of this process for single-threaded CPU runs (robust to other load on a shared
    machine), wall time otherwise (CUDA work is synchronised before reading it)."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


def bare_loop(model, dataset, batch_size, steps, warmup, device, ema_decay):
    """images/s of the hand-written loop over ``steps`` iterations after ``warmup``."""
    clock = _clock(device)
    model.to(device).train()
    specs = model.optimizer_groups()
    params = {g: model.group_parameters(g) for g in specs}
    # The same optimizer kernels the trainer picks, so only the loop around them differs.
    opts = {g: specs[g].build(params[g], fused=device.type == "cuda") for g in specs}
    trainable = [p for p in model.parameters() if p.requires_grad]
    ids = {g: {id(p) for p in ps} for g, ps in params.items()}
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         drop_last=True, pin_memory=device.type == "cuda")
    it = iter(loader)

    def next_batch():
        nonlocal it
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        return {k: v.to(device, non_blocking=True) for k, v in b.items()}

    images = 0
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, images = clock(), 0
        for g in model.schedule(step):
            for p in trainable:
                p.requires_grad_(id(p) in ids[g])
            opts[g].zero_grad(set_to_none=True)
            loss, _ = model(g, next_batch(), step)
            loss.backward()
            if specs[g].clip_grad_norm:  # the family's own clipping, as the trainer does
                torch.nn.utils.clip_grad_norm_(params[g], specs[g].clip_grad_norm)
            opts[g].step()
            model.after_step(g, step)
            images += batch_size
        for p in trainable:
            p.requires_grad_(True)
        if len(model.ema):
            model.update_ema(ema_decay)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return images / (clock() - t0)


def ganzoo_loop(preset, batch_size, steps, warmup, device, ema_decay, images_per_step,
                extra=()):
    """images/s of ``Trainer.train()`` between the start of iteration ``warmup`` and the start
    of iteration ``warmup + steps`` (the clock is read when the trainer asks the model for the
    iteration's schedule), so setup, warm-up and the final save are not timed."""
    import logging

    from ganzoo.train import parse_run_config
    from ganzoo.training import Trainer

    logging.getLogger("ganzoo.train").setLevel(logging.WARNING)
    clock = _clock(device)
    stamps: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--model", preset, "--dataset", "bench_images", "-o", tmp, "--no-progress",
                "--batch-size", str(batch_size), "--max-steps", str(warmup + steps + 1),
                "--log-every", "10", "--save-every", "0", "--sample-every", "0",
                "--keep", "1", "--ema-decay", str(ema_decay)]
        if device.type == "cpu":
            args.append("--cpu")
        args += list(extra)
        trainer = Trainer(parse_run_config(args))
        schedule = trainer.unwrapped.schedule

        def stamped(step):
            if step in (warmup, warmup + steps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                stamps[step] = clock()
            return schedule(step)

        trainer.unwrapped.schedule = stamped
        trainer.train()
    return steps * images_per_step / (stamps[warmup + steps] - stamps[warmup])


# Keep freed memory for reuse: a fixed mmap threshold (no dynamic raising), no trimming.
_MALLOC_TUNABLES = ("glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:"
                    "glibc.malloc.top_pad=268435456")


def _steady_malloc() -> None:
    """Restart this process under fixed glibc malloc thresholds (CPU runs on Linux).

    On CPU PyTorch allocates each tensor with the C library's malloc, which by default hands
    large freed blocks back to the OS and maps them again, so every step pays page faults, and
    how many depends on the allocation history of the process: we counted 900 to 2,500 minor
    faults per ``test_ddpm`` step, moving either loop by up to 10 % from run to run. Both loops
    run under the same fixed thresholds, so the ratio compares the loops, not the heap.
    """
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ:
        return
    env = dict(os.environ, GLIBC_TUNABLES=_MALLOC_TUNABLES)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="CPU-sized: test_dcgan, batch 16")
    p.add_argument("--model", default=None, help="preset (default dcgan; quick: test_dcgan)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed iterations per run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--system-malloc", action="store_true",
                   help="CPU: keep glibc's default malloc thresholds (see _steady_malloc)")
    p.add_argument("--trainer-args", default="",
                   help='extra ganzoo.train flags for the trainer side, e.g. "--max-nonfinite 0"')
    args = p.parse_args(argv)
    if args.quick:
        args.device = "cpu"
        torch.set_num_threads(1)
    if args.device == "cpu" and not args.system_malloc and argv is None:
        _steady_malloc()
    device = torch.device(args.device)
    preset = args.model or ("test_dcgan" if args.quick else "dcgan")
    batch = args.batch_size or (16 if args.quick else 64)
    steps = args.steps or (150 if args.quick else 200)
    warmup = max(5, steps // 4)

    probe = ganzoo.build(preset)
    resolution = probe.config.resolution
    ema_decay = float(probe.default_ema_decay)
    images_per_step = batch * len(probe.schedule(0))
    # The same images for both sides, rendered once (data generation is not what we time).
    shapes = ganzoo.build_dataset("shapes", resolution=resolution, size=1024, seed=0)
    _IMAGES[f"{resolution}"] = torch.stack([shapes[i]["image"] for i in range(len(shapes))])
    DATASETS.register(name="bench_images")(bench_images)
    dataset = InMemory(_IMAGES[f"{resolution}"])

    rates = {"ganzoo": [], "bare": []}
    for r in range(args.repeats):
        from accelerate.utils import set_seed

        set_seed(0)
        gc.collect()  # each run starts without garbage left by the previous one
        rates["bare"].append(bare_loop(ganzoo.build(preset), dataset, batch, steps, warmup,
                                       device, ema_decay))
        gc.collect()
        rates["ganzoo"].append(ganzoo_loop(preset, batch, steps, warmup, device, ema_decay,
                                           images_per_step, args.trainer_args.split()))
        print(f"repeat {r + 1}/{args.repeats}: bare {rates['bare'][-1]:.1f} img/s, "
              f"ganzoo {rates['ganzoo'][-1]:.1f} img/s", file=sys.stderr)
    med = {k: statistics.median(v) for k, v in rates.items()}
    name = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nTrainer overhead: {preset}, batch {batch}, {steps} timed iterations x "
          f"{args.repeats} repeats, {name}, torch {torch.__version__}\n")
    print("| loop | images/s (median) | runs |")
    print("| --- | ---: | --- |")
    print(f"| bare PyTorch | {med['bare']:.1f} | "
          f"{', '.join(f'{x:.1f}' for x in rates['bare'])} |")
    print(f"| ganzoo trainer | {med['ganzoo']:.1f} | "
          f"{', '.join(f'{x:.1f}' for x in rates['ganzoo'])} |")
    # Adjacent runs share the machine's state (clock, neighbours), so the median of their
    # ratios is steadier than the ratio of the two medians when the machine drifts.
    paired = statistics.median(g / b for g, b in zip(rates["ganzoo"], rates["bare"]))
    print(f"\nratio ganzoo / bare: {med['ganzoo'] / med['bare']:.3f} of medians, "
          f"{paired:.3f} median of paired runs (target >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
