"""Shared by the benchmarks: in-memory items and the rate of ``ganzoo.train``'s Trainer on them.

The trainer row of ``bench_gan.py`` and ``bench_ddpm.py`` is what a user of ``ganzoo train``
gets, flags included (``--channels-last``, ``--compile``, ``--mixed-precision``), on data that
costs nothing to load, so that it sits beside the reference loops, which also train on tensors
already in memory.
"""

from __future__ import annotations

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


def use_items(tensors: dict[str, torch.Tensor]) -> str:
    """Serve ``tensors`` as the registered dataset this module names; returns its name."""
    from ganzoo.registry import DATASETS

    _ITEMS.clear()
    _ITEMS.update(tensors)
    if DATASET not in DATASETS:
        DATASETS.register(name=DATASET)(bench_items)
    return DATASET


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def trainer_seconds(preset: str, batch_size: int, steps: int, device: torch.device,
                    flags: list[str] = (), overrides: dict | None = None,
                    clock=time.perf_counter) -> float:
    """Time of ``Trainer.train()`` for ``steps`` iterations on the in-memory items (setup
    excluded; compilation, if any, happens inside, on the first iterations)."""
    from ganzoo.train import parse_run_config
    from ganzoo.training import Trainer

    logging.getLogger("ganzoo.train").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--model", preset, "--dataset", DATASET, "-o", tmp, "--no-progress",
                "--batch-size", str(batch_size), "--max-steps", str(steps), "--log-every",
                "1000", "--save-every", "0", "--sample-every", "0", "--keep", "1", *flags]
        for k, v in (overrides or {}).items():
            argv += ["--set", f"{k}={list(v) if isinstance(v, tuple) else v}"]
        if device.type == "cpu":
            argv.append("--cpu")
        trainer = Trainer(parse_run_config(argv))
        _sync(device)
        start = clock()
        trainer.train()
        _sync(device)
        return clock() - start


def trainer_rate(preset: str, batch_size: int, steps: int, warmup: int, device: torch.device,
                 flags: list[str] = (), overrides: dict | None = None,
                 clock=time.perf_counter) -> float:
    """Images/s of ``Trainer.train()`` (one image per batch element per iteration): a run of
    ``warmup + steps`` iterations minus one of ``warmup``, so fixed costs (the first
    iterations, compilation, the final save) cancel."""
    warm = max(2, warmup)
    short = trainer_seconds(preset, batch_size, warm, device, flags, overrides, clock)
    long = trainer_seconds(preset, batch_size, warm + steps, device, flags, overrides, clock)
    return steps * batch_size / max(long - short, 1e-9)
