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
