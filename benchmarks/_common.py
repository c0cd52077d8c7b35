"""Shared by the benchmarks: in-memory items and the rate of ``ganzoo.train``'s Trainer on them.

The trainer row of ``bench_gan.py`` and ``bench_ddpm.py`` is what a user of ``ganzoo train``
gets, flags included (``--channels-last``, ``--compile``, ``--mixed-precision``), on data that
costs nothing to load, so that it sits beside the reference loops, which also train on tensors
already in memory.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

_ITEMS: dict[str, torch.Tensor] = {}  # the benchmark's data, one stacked tensor per key
DATASET = "bench_in_memory"


class InMemory(torch.utils.data.Dataset):
    """Stacked tensors served item by item, as a registered dataset serves its items."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors

    def __len__(self):
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.tensors.items()}


def bench_items(**options) -> InMemory:  # ignores the sizing options the trainer passes
    return InMemory(_ITEMS)


def add_heap_argument(parser) -> None:
    """``--system-malloc``, the opt-out of :func:`steady_heap`."""
    parser.add_argument("--system-malloc", action="store_true",
                        help="CPU: keep glibc's default malloc thresholds (see _common.steady_heap)")


def steady_heap(device: torch.device, system_malloc: bool = False) -> None:
    """CPU: the fixed glibc malloc thresholds ``ganzoo train`` runs under
    (``ganzoo.training.malloc``), set before anything is timed so that every side of a
    benchmark runs under them and the ratio compares loops, not heap histories (with glibc's
    defaults the page faults per step depend on what the process allocated before: 900 to
    2,500 per ``test_ddpm`` step, up to 10 % of either loop)."""
    from ganzoo.training.malloc import steady_malloc

    if device.type == "cpu" and not system_malloc:
        steady_malloc()


def use_items(tensors: dict[str, torch.Tensor]) -> str:
    """Serve ``tensors`` as the registered dataset this module names; returns its name."""
    from ganzoo.registry import DATASETS

    _ITEMS.clear()
    _ITEMS.update(tensors)
    if DATASET not in DATASETS:
        DATASETS.register(name=DATASET)(bench_items)
    return DATASET


def trainer_rate(preset: str, batch_size: int, steps: int, warmup: int, device: torch.device,
                 flags: list[str] = (), overrides: dict | None = None) -> float:
    """Images/s of ``Trainer.train()`` in steady state (one image per batch element per
    iteration): one run of ``warmup + steps`` iterations logging every ``warmup``; the rate is
    read from its ``metrics.jsonl`` between the first record and the last, so the first
    iterations (compilation, allocator, workers) and the final save stay out of it."""
    from ganzoo.train import parse_run_config
    from ganzoo.training import Trainer

    logging.getLogger("ganzoo.train").setLevel(logging.WARNING)
    warm = max(2, warmup)
    steps = max(warm, steps - steps % warm)  # whole logging windows
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--model", preset, "--dataset", DATASET, "-o", tmp, "--no-progress",
                "--batch-size", str(batch_size), "--max-steps", str(warm + steps),
                "--log-every", str(warm), "--save-every", "0", "--sample-every", "0",
                "--keep", "1", *flags]
        for k, v in (overrides or {}).items():
            argv += ["--set", f"{k}={list(v) if isinstance(v, tuple) else v}"]
        if device.type == "cpu":
            argv.append("--cpu")
        Trainer(parse_run_config(argv)).train()
        records = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").open()]
    first, last = records[0], records[-1]
    assert first["step"] == warm and last["step"] == warm + steps, (first, last)
    return (last["step"] - first["step"]) * batch_size / (last["time"] - first["time"])


# -- where the time of an iteration goes ----------------------------------------------------------
# Op-name rules, first match wins; self times, so nested ops (aten::conv2d -> aten::convolution ->
# aten::mkldnn_convolution) count once.
_CATEGORIES = (
    ("optimizer, clipping, guard", ("adam", "_foreach", "non_finite", "vector_norm", "sgd")),
    ("convolution", ("conv",)),
    ("matmul, attention", ("aten::mm", "addmm", "bmm", "matmul", "linear", "attention")),
    ("normalisation", ("norm",)),
)
_SYNCS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
          "cudaMemcpy ")  # host waits for the device (.item(), bool(tensor), blocking copies)


class Profile:
    """``torch.profiler`` over a stretch of iterations, summarised per iteration: the wall
    time, the op time by kind (the host's on CPU, the device's on CUDA), on CUDA the device's
    busy time (the rest of the wall time the GPU waits for the host: launch-bound) and the host
    syncs, and the top ops.

        with Profile(device) as prof:
            run(iters)
        print(prof.summary("label", iters))
    """

    def __init__(self, device: torch.device):
        from torch.profiler import ProfilerActivity, profile

        self.device = device
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        self.prof = profile(activities=acts)

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self):
        self._sync()
        self.prof.start()
        self.t0 = time.perf_counter()
        return self

    def stop(self):
        self._sync()
        self.wall = time.perf_counter() - self.t0
        self.prof.stop()

    __enter__ = start

    def __exit__(self, *exc):
        self.stop()

    def summary(self, label: str, iters: int, top: int = 8) -> str:
        from torch.autograd import DeviceType

        cuda = self.device.type == "cuda"
        events = self.prof.key_averages()
        ops = [e for e in events if e.device_type == DeviceType.CPU]
        kernels = [e for e in events if e.device_type != DeviceType.CPU]

        def dev_time(e):  # µs; the attribute was self_cuda_time_total before torch 2.4
            return getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0))

        def ms(us):  # µs over the stretch -> ms per iteration
            return us / 1e3 / iters

        own = dev_time if cuda else (lambda e: e.self_cpu_time_total)
        cats: dict[str, float] = {}
        for e in ops:
            key = e.key.lower()
            name = next((c for c, keys in _CATEGORIES if any(k in key for k in keys)), "other")
            cats[name] = cats.get(name, 0.0) + ms(own(e))
        syncs = sum(e.count for e in events if e.key.startswith(_SYNCS)) / iters
        wall = self.wall * 1e3 / iters
        host = ms(sum(e.self_cpu_time_total for e in ops))
        head = f"profile: {label}, {iters} iterations; per iteration: wall {wall:.2f} ms, " \
               f"host ops {host:.2f} ms"
        if cuda:
            busy = ms(sum(dev_time(e) for e in (kernels or ops)))
            head += f", device busy {busy:.2f} ms ({100 * busy / wall:.0f} % of wall)"
            # CUDA only: CPU kernels call _local_scalar_dense themselves, waiting for nothing.
            head += f", host syncs {syncs:.1f}"
        total = sum(cats.values()) or 1.0
        where = "device" if cuda else "host"
        lines = [head, f"  {where} time by op kind: " + ", ".join(
            f"{c} {v:.2f} ms ({100 * v / total:.0f} %)"
            for c, v in sorted(cats.items(), key=lambda kv: -kv[1]))]
        ranked = sorted(ops, key=own, reverse=True)[:top]
        lines.append("  top ops: " + ", ".join(
            f"{e.key} {ms(own(e)):.2f} ms x{e.count / iters:.0f}" for e in ranked))
        return "\n".join(lines)
