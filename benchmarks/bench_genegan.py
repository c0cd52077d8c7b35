"""Training speed and peak memory of genegan_multires: multi_res_mode "all" against "random".

The experiment queue (EXP03) expects ``random`` (one resolution per iteration) to be about 3x
cheaper per iteration than ``all`` (64, 96 and 128 px every iteration). Both modes run in this
one process on the same device, one training iteration being what the ganzoo trainer does:
for each group of ``model.schedule(step)`` (one critic step and one generator step; the
official 100-critic-step bursts are switched off here), set ``requires_grad`` for that group,
``loss``, ``backward``, optimizer step, ``after_step`` (critic weight clipping).

Random-mode iterations are timed on steps chosen so that every resolution is drawn equally
often (the expectation of the uniform draw). Each mode is repeated and the median is quoted.

Peak memory of a mode (model, optimizer state and activations): ``torch.cuda.max_memory_allocated``
on CUDA (reset before the model is built); on CPU the peak resident set size above the level
before the model was built (freed memory is first handed back with glibc's ``malloc_trim``),
sampled every 2 ms from ``/proc/self/statm`` (tracemalloc does not see torch's allocator), so
CPU figures are coarse.

    python benchmarks/bench_genegan.py                 # batch 64, full width, cuda if present
    python benchmarks/bench_genegan.py --quick         # CPU, batch 2, base_channels 32
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import ganzoo  # noqa: E402


class _RSSPeak:
    """Peak resident set size (bytes) of this process while the context is open."""

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self.page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval)

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def delta(self) -> int:
        return self.peak - self.base


def _steps_for(model, n_per_resolution: int) -> list[int]:
    """Steps whose random draws cover every resolution ``n_per_resolution`` times."""
    want = {r: n_per_resolution for r in model.config.resolutions}
    steps, step = [], 1
    while any(want.values()):
        (r,) = model.iteration_resolutions(step)
        if want[r]:
            want[r] -= 1
            steps.append(step)
        step += 1
    return steps


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release_memory(device):
    """Return freed memory to the OS so the next mode's RSS baseline is honest (glibc)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def bench_mode(mode: str, args, device: torch.device) -> dict:
    _release_memory(device)
    rss = _RSSPeak().__enter__()  # from before the model exists, like CUDA's counter
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    model = ganzoo.build("genegan_multires", multi_res_mode=mode, critic_burst_every=0,
                         base_channels=args.base_channels).to(device).train()
    groups = model.optimizer_groups()
    opts = {g: spec.build(model.group_parameters(g)) for g, spec in groups.items()}
    members = {g: {id(p) for p in model.group_parameters(g)} for g in groups}
    params = list(model.parameters())
    g = torch.Generator().manual_seed(0)
    res = args.data_resolution
    batch = {k: (torch.rand(args.batch_size, 3, res, res, generator=g) * 2 - 1).to(device)
             for k in model.batch_keys}
    per_res = max(1, args.iterations // len(model.config.resolutions))
    steps = _steps_for(model, per_res) if mode == "random" else list(range(1, args.iterations + 1))

    def iteration(step):
        for group in model.schedule(step):
            for p in params:
                p.requires_grad_(id(p) in members[group])
            opts[group].zero_grad(set_to_none=True)
            loss, _ = model.loss(group, batch, step)
            loss.backward()
            opts[group].step()
            model.after_step(group, step)

    for step in steps[: len(model.config.resolutions)]:  # warm-up: every resolution once
        iteration(step)
    rates = []
    for _ in range(args.repeats):
        _sync(device)
        t0 = time.perf_counter()
        for step in steps:
            iteration(step)
        _sync(device)
        rates.append(len(steps) / (time.perf_counter() - t0))
    rss.__exit__(None, None, None)
    if device.type == "cuda":
        peak, how = torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    else:
        peak, how = rss.delta, "peak RSS above the level before the model was built"
    mix = {}
    for step in steps:
        for r in model.iteration_resolutions(step):
            mix[r] = mix.get(r, 0) + 1
    return {"mode": mode, "it_s": statistics.median(rates), "rates": rates, "peak": peak,
            "peak_how": how, "iterations": len(steps), "mix": mix}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true",
                   help="CPU, batch 2, base_channels 32, fewer repeats (about a minute)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--base-channels", type=int, default=128)
    p.add_argument("--data-resolution", type=int, default=128,
                   help="resolution of the batch the trainer hands in (resized per mode)")
    p.add_argument("--iterations", type=int, default=12, help="timed iterations per repeat")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.quick:
        args.device, args.batch_size, args.base_channels = "cpu", 2, 32
        args.iterations, args.repeats = 3, 3
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    results = [bench_mode(m, args, device) for m in ("all", "random")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads)"
    print(f"\ngenegan_multires (base_channels={args.base_channels}), batch {args.batch_size} "
          f"from {args.data_resolution} px, {name}, torch {torch.__version__}; median of "
          f"{args.repeats} repeats\n")
    print("| multi_res_mode | iterations/s | ms/iteration | peak memory | resolutions timed |")
    print("| --- | ---: | ---: | ---: | --- |")
    for r in results:
        mix = ", ".join(f"{k}px x{v}" for k, v in sorted(r["mix"].items()))
        print(f"| {r['mode']} | {r['it_s']:.3f} | {1000 / r['it_s']:.1f} | "
              f"{r['peak'] / 2**20:.0f} MiB | {mix} |")
    all_, rnd = results
    print(f"\nrandom / all iterations per second: **{rnd['it_s'] / all_['it_s']:.2f}x** "
          f"(queue expects about 3x); peak memory random / all: "
          f"{rnd['peak'] / max(all_['peak'], 1):.2f} ({all_['peak_how']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
