"""Trainer overhead: images/s of a family's training step through the ganzoo trainer against
the same step in a bare PyTorch loop, same model, same data, one process.

Both sides train the same preset (default ``dcgan``; ``test_dcgan`` with ``--quick``) on the
same in-memory items (the model's embedded dataset, rendered once before timing). The bare loop
is what a careful user writes by hand: a shuffled ``DataLoader``, then for each group of the
model's schedule a fresh batch, gradients enabled for that group only, ``loss``, ``backward``,
the group's gradient clipping if it has one, ``step``, ``after_step``, and the EMA update, with
the optimizer kernels and the memory layout the trainer picks (channels_last for ``dcgan`` on
CPU, its default there). The ganzoo side is ``Trainer.train()`` itself
(Accelerate, the non-finite guard, logging, LR schedule, sampler, EMA).

The two loops are interleaved: every ``--chunk`` iterations of ``Trainer.train()`` the
trainer's clock stops and the bare loop runs as many iterations, so both see the same machine
(clock speed, neighbours, thermal state) within a fraction of a second. The ratio is quoted
over the totals and as the median of the per-chunk ratios. Images/s counts every image drawn
(``batch x`` schedule entries per iteration). Single-threaded CPU runs (``--quick``) are timed
in process CPU time; other runs in wall time, with CUDA synchronised at chunk edges. CPU runs
run under the fixed glibc malloc thresholds ``ganzoo train`` sets on CPU (see
``_common.steady_heap``; ``--system-malloc`` keeps glibc's defaults).

    python benchmarks/bench_trainer.py --quick            # CPU, about 2 minutes
    python benchmarks/bench_trainer.py --device cuda      # dcgan at 64 px, batch 64
    python benchmarks/bench_trainer.py --device cuda --repeats 1 --profile 50   # + where it goes
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganzoo  # noqa: E402
import _common  # noqa: E402

def _clock(device):
    """CPU time of this process for single-threaded CPU runs (robust to other load on a shared
    machine), wall time otherwise (CUDA work is synchronised before reading it)."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.process_time
    return time.perf_counter


class BareLoop:
    """The hand-written loop, run ``n`` iterations at a time."""

    def __init__(self, model, dataset, batch_size, device, ema_decay, channels_last=False):
        self.model, self.device, self.ema_decay = model.to(device).train(), device, ema_decay
        # The trainer's memory layout (Trainer.channels_last: the flag, else the family's
        # default on this device), so that only the loop around the kernels differs.
        self.channels_last = channels_last
        if channels_last:
            model.to(memory_format=torch.channels_last)
        self.specs = model.optimizer_groups()
        self.params = {g: model.group_parameters(g) for g in self.specs}
        # The same optimizer kernels the trainer picks, so only the loop around them differs.
        from ganzoo.training.trainer import use_fused_optimizers

        fused = use_fused_optimizers(device)
        self.opts = {g: self.specs[g].build(self.params[g], fused=fused) for g in self.specs}
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.ids = {g: {id(p) for p in ps} for g, ps in self.params.items()}
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                                  drop_last=True,
                                                  pin_memory=device.type == "cuda")
        self.it = iter(self.loader)
        self.step = 0

    def next_batch(self):
        try:
            b = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            b = next(self.it)
        b = {k: v.to(self.device, non_blocking=True) for k, v in b.items()}
        if self.channels_last:
            b = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v
                 for k, v in b.items()}
        return b

    def run(self, n: int) -> None:
        model, specs, opts = self.model, self.specs, self.opts
        for _ in range(n):
            step = self.step
            for g in model.schedule(step):
                for p in self.trainable:
                    p.requires_grad_(id(p) in self.ids[g])
                opts[g].zero_grad(set_to_none=True)
                loss, _ = model(g, self.next_batch(), step)
                loss.backward()
                if specs[g].clip_grad_norm:  # the family's own clipping, as the trainer does
                    torch.nn.utils.clip_grad_norm_(self.params[g], specs[g].clip_grad_norm)
                opts[g].step()
                model.after_step(g, step)
            for p in self.trainable:
                p.requires_grad_(True)
            if len(model.ema):
                model.update_ema(self.ema_decay)
            self.step += 1


def _trainer(preset, batch_size, max_steps, device, ema_decay, extra, out):
    import logging

    from ganzoo.train import parse_run_config
    from ganzoo.training import Trainer

    logging.getLogger("ganzoo.train").setLevel(logging.WARNING)
    args = ["--model", preset, "--dataset", _common.DATASET, "-o", out, "--no-progress",
            "--batch-size", str(batch_size), "--max-steps", str(max_steps),
            "--save-every", "0", "--sample-every", "0", "--keep", "1",
            "--ema-decay", str(ema_decay), *extra]
    if device.type == "cpu":
        args.append("--cpu")
    return Trainer(parse_run_config(args))


def interleaved(preset, dataset, batch_size, steps, chunk, warmup, device, ema_decay,
                extra=()) -> list[tuple[float, float]]:
    """(trainer seconds, bare seconds) for each chunk of ``chunk`` iterations, the two loops
    taking turns; ``warmup`` iterations of each run first, untimed."""
    clock = _clock(device)

    def now():
        if device.type == "cuda":
            torch.cuda.synchronize()
        return clock()

    pairs: list[tuple[float, float]] = []
    chunk_start: float | None = None  # clock when the trainer's current chunk began
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(preset, batch_size, warmup + steps + 1, device, ema_decay, extra, tmp)
        bare = BareLoop(ganzoo.build(preset), dataset, batch_size, device, ema_decay,
                        trainer.channels_last)
        bare.run(warmup)
        schedule = trainer.unwrapped.schedule

        def stamped(step):  # the trainer asks for this at the start of each iteration
            nonlocal chunk_start
            if step >= warmup and (step - warmup) % chunk == 0:
                t = now()
                if chunk_start is not None:  # the trainer's chunk ends: the bare loop's turn
                    bare.run(chunk)
                    bare_end = now()
                    pairs.append((t - chunk_start, bare_end - t))
                    t = bare_end
                chunk_start = t if step < warmup + steps else None
            return schedule(step)

        trainer.unwrapped.schedule = stamped
        trainer.train()
    return pairs


def profiled(preset, dataset, batch_size, iters, warmup, device, ema_decay, extra=()) -> str:
    """torch.profiler over ``iters`` iterations of each loop after ``warmup``: what the trainer
    adds per iteration (its LR setting, ``requires_grad`` switching, non-finite guard, logging
    and host syncs) beside the bare loop's kernels."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _trainer(preset, batch_size, warmup + iters + 1, device, ema_decay, extra, tmp)
        bare = BareLoop(ganzoo.build(preset), dataset, batch_size, device, ema_decay,
                        trainer.channels_last)
        bare.run(warmup)
        with _common.Profile(device) as prof:
            bare.run(iters)
        lines = [prof.summary("bare loop", iters)]
        prof = _common.Profile(device)
        schedule = trainer.unwrapped.schedule

        def stamped(step):  # the trainer asks for this at the start of each iteration
            if step == warmup:
                prof.start()
            elif step == warmup + iters:
                prof.stop()
            return schedule(step)

        trainer.unwrapped.schedule = stamped
        trainer.train()
    lines.append(prof.summary("ganzoo trainer", iters))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"],
                   default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="CPU-sized: test_dcgan, batch 16")
    p.add_argument("--model", default=None, help="preset (default dcgan; quick: test_dcgan)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed iterations per run and side")
    p.add_argument("--chunk", type=int, default=10, help="iterations per turn of each loop")
    p.add_argument("--repeats", type=int, default=3, help="trainer runs")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile N iterations of each loop (torch.profiler)")
    _common.add_heap_argument(p)
    p.add_argument("--trainer-args", default="",
                   help='extra ganzoo.train flags for the trainer side, e.g. "--max-nonfinite 0"')
    args = p.parse_args(argv)
    if args.quick:
        args.device = "cpu"
        torch.set_num_threads(1)
    device = torch.device(args.device)
    _common.steady_heap(device, args.system_malloc)
    preset = args.model or ("test_dcgan" if args.quick else "dcgan")
    batch = args.batch_size or (16 if args.quick else 64)
    steps = args.steps or 200
    warmup = 20

    probe = ganzoo.build(preset)
    ema_decay = float(probe.default_ema_decay)
    images = batch * len(probe.schedule(0)) * args.chunk  # per chunk
    # The same items for both sides: the model's embedded dataset at the model's size,
    # rendered once (data generation is not what we time).
    from ganzoo.datasets import example_batch

    _common.use_items(example_batch(probe, max(512, 2 * batch)))
    dataset = _common.bench_items()

    pairs = []
    for r in range(args.repeats):
        gc.collect()
        run = interleaved(preset, dataset, batch, steps, args.chunk, warmup, device,
                          ema_decay, args.trainer_args.split())
        pairs += run
        g, b = sum(t for t, _ in run), sum(t for _, t in run)
        print(f"run {r + 1}/{args.repeats}: bare {images * len(run) / b:.1f} img/s, "
              f"ganzoo {images * len(run) / g:.1f} img/s", file=sys.stderr)
    g_total, b_total = sum(t for t, _ in pairs), sum(t for _, t in pairs)
    per_chunk = [b / g for g, b in pairs]  # ganzoo img/s over bare img/s
    name = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"\nTrainer overhead: {preset}, batch {batch}, {args.repeats} runs x {steps} timed "
          f"iterations per side, interleaved in chunks of {args.chunk}, {name}, "
          f"torch {torch.__version__}\n")
    print("| loop | images/s (all chunks) | images/s (median chunk) |")
    print("| --- | ---: | ---: |")
    print(f"| bare PyTorch | {images * len(pairs) / b_total:.1f} | "
          f"{statistics.median(images / b for _, b in pairs):.1f} |")
    print(f"| ganzoo trainer | {images * len(pairs) / g_total:.1f} | "
          f"{statistics.median(images / g for g, _ in pairs):.1f} |")
    print(f"\nratio ganzoo / bare: {b_total / g_total:.3f} over all chunks, "
          f"{statistics.median(per_chunk):.3f} median of {len(pairs)} chunk pairs "
          f"(target >= 0.95)")
    if args.profile:
        print()
        print(profiled(preset, dataset, batch, args.profile, warmup, device, ema_decay,
                       args.trainer_args.split()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
