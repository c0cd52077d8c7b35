"""Data for the trainer: dataset building with checked options, and a resumable sample order.

The sample order is an endless sequence of shuffled epochs, a pure function of the run seed.
The position in it (samples drawn by all processes together) is the whole data state of a run,
so a checkpoint stores one integer. Each batch is loaded under the seed of its first sample (derived from the
run seed and the position), so random augmentations do not depend on worker count, prefetching
or resuming, and the training RNG (torch's) is saved and restored around the load. A dataset
with ``set_epoch`` (as torch's ``DistributedSampler`` has) is told each item's data epoch (its
position // the dataset's length) right before the item loads, in whichever worker loads it.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..datasets.options import check_dataset_options, factory_options as _factory_options
from ..datasets import dataset_kwargs_for
from ..registry import DATASETS

__all__ = ["build_dataset", "check_batch_keys", "ResumableSampler", "SeededDataset",
           "collate_items"]


def build_dataset(name: str, options: dict[str, Any], model=None) -> Dataset:
    """Build dataset ``name`` for training. Options the user did not set default to what fits
    the model (``ganzoo.datasets.dataset_kwargs_for``: resolution, aspect ratio) and to its
    ``default_augment``, when the dataset takes them."""
    options = check_dataset_options(name, options)
    known, var_kw = _factory_options(DATASETS.get(name))
    fitted = dataset_kwargs_for(model) if model is not None else {}
    if model is not None and model.default_augment != "none":
        fitted["augment"] = model.default_augment
    for option, value in fitted.items():
        if option not in options and (option in known or var_kw):
            options[option] = value
    dataset = DATASETS.build(name, **options)
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise TypeError(f"dataset '{name}' must be a map-style dataset (with __len__ and "
                        f"__getitem__), got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"dataset '{name}' is empty (options {options})")
    return dataset


def check_batch_keys(dataset: Dataset, dataset_name: str, model, model_name: str) -> None:
    """Refuse a dataset whose items lack a key the model's loss reads."""
    item = dataset[0]
    if not isinstance(item, dict):
        raise TypeError(f"dataset '{dataset_name}' yields {type(item).__name__}, not a dict "
                        f"of tensors (see ganzoo.datasets for the batch format)")
    need = model.batch_keys
    missing = [k for k in need if k not in item]
    if missing:
        raise ValueError(
            f"dataset '{dataset_name}' does not fit model '{model_name}': the model reads "
            f"{list(need)} but the dataset yields {sorted(item)} (missing {missing}). Pick a "
            f"dataset with those keys: 'image' for unconditional models, "
            f"'image_with'/'image_without' for attribute transfer, 'image_a'/'image_b' for "
            f"unpaired translation.")


def _sample_seed(seed: int, position: int) -> int:
    # A splitmix64-style mix, so neighbouring positions get unrelated seeds.
    z = (seed * 0x9E3779B97F4A7C15 + position + 1) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


class ResumableSampler(Sampler):
    """Endless shuffled epochs of ``range(size)``, yielding ``(index, sample_seed, epoch)``.

    Epoch ``e`` is ``randperm(size)`` under seed ``seed + e``; ``start`` skips that many samples
    (the data position of a checkpoint) without loading them.
    """

    def __init__(self, size: int, seed: int, start: int = 0, shuffle: bool = True):
        self.size = int(size)
        self.seed = int(seed)
        self.start = int(start)
        self.shuffle = shuffle

    def _epoch(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=g).tolist()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        position = self.start
        epoch, offset = divmod(position, self.size)
        while True:
            order = self._epoch(epoch)
            for i in order[offset:]:
                yield i, _sample_seed(self.seed, position), epoch
                position += 1
            epoch, offset = epoch + 1, 0

    def __len__(self) -> int:
        # Endless; a length is only needed by code that never runs for this sampler (the
        # trainer never asks a data loader for its length). Large enough never to be reached.
        return 2 ** 62


class SeededDataset(Dataset):
    """Loads item ``i`` with torch, numpy and python RNGs seeded by its own sample seed, and
    restores the caller's RNG states afterwards. Keys are ``(index, seed[, epoch])``; a
    dataset with ``set_epoch`` gets the key's epoch (0 when the key has none) first."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.epochs = hasattr(dataset, "set_epoch")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key[:2]
        if self.epochs:
            self.dataset.set_epoch(_epoch(key))
        with _seeded(seed):
            return self.dataset[index]

    def __getitems__(self, keys):
        # One seed per batch (its first sample's), which is still a pure function of the data
        # position, and costs one RNG save/restore per batch rather than per image. Datasets
        # that render whole batches (the embedded shapes) get them in one call (one per epoch
        # when a batch spans two and the dataset takes set_epoch).
        runs = [(None, keys)] if not self.epochs else \
            [(e, list(run)) for e, run in itertools.groupby(keys, key=_epoch)]
        with _seeded(keys[0][1]):
            return [item for epoch, run in runs for item in self._load(epoch, run)]

    def _load(self, epoch: int | None, keys) -> list:
        indices = [k[0] for k in keys]
        if epoch is not None:
            self.dataset.set_epoch(epoch)
        if hasattr(self.dataset, "__getitems__"):
            return self.dataset.__getitems__(indices)
        return [self.dataset[i] for i in indices]


def _epoch(key) -> int:
    return key[2] if len(key) > 2 else 0


class _seeded:
    """Seed torch, numpy and python RNGs for one batch; restore torch's on exit.

    numpy's and python's global generators are left seeded by the batch (saving and restoring
    numpy's state costs ~0.3 ms, which is several percent of a small model's step). They are
    thereby a pure function of the data position too, so runs stay exactly resumable; the
    training RNG of every family is torch's, which is restored.
    """

    def __init__(self, seed: int):
        self.seed = seed

    def __enter__(self):
        self.torch = torch.get_rng_state()
        # torch.manual_seed also seeds every accelerator backend, costing milliseconds.
        torch.default_generator.manual_seed(self.seed)
        random.seed(self.seed)
        np.random.seed(self.seed % 2 ** 32)

    def __exit__(self, *exc):
        torch.set_rng_state(self.torch)
        return False


def collate_items(items: list[dict[str, Any]]) -> dict[str, Any]:
    from torch.utils.data import default_collate

    return default_collate(items)


def make_loader(dataset: Dataset, batch_size: int, seed: int, start: int, workers: int,
                pin_memory: bool) -> torch.utils.data.DataLoader:
    """The trainer's loader: endless seeded epochs from data position ``start``, with
    persistent workers prefetching 4 batches each when ``workers > 0``."""
    return torch.utils.data.DataLoader(
        SeededDataset(dataset), batch_size=batch_size,
        sampler=ResumableSampler(len(dataset), seed=seed, start=start), drop_last=True,
        num_workers=workers, collate_fn=collate_items, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG untouched
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)


def default_num_workers(device, num_processes: int = 1) -> int:
    """DataLoader workers when ``--num-workers`` is not given: none on the CPU, where the
    training step already uses every core and a worker would take cores from it; on an
    accelerator, the cores left to each process minus one for its main thread, at most 8
    (decoding JPEGs on the training thread starves a GPU; docs/training.md, "Data loading")."""
    import os

    if getattr(device, "type", str(device)) == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) // max(1, num_processes) - 1))
