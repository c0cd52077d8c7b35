"""A mixture of registered datasets in a stated ratio (stage 1D of
docs/workflows/generator_evolution.md: aligned faces alone vs aligned + raw mixed).

``sources`` is a list of datasets, each a mapping ``{"dataset": NAME, **options}`` or a plain
path, which is short for ``{"dataset": "image_folder", "root": PATH}``. ``ratio`` gives each
source's share of the items (any positive numbers; equal shares by default).

One epoch holds every item of every source at least once: its length is the smallest N with
``ratio[k] * N >= len(source k)`` for all k, so a source with more items than its share would
need is shown in full and the others are repeated (each item as evenly as possible). ``size``
sets N instead. The counts per source are ``ratio * N`` rounded by largest remainder, so they
add up to N and follow the ratio exactly up to one item; which index holds which item is a
seeded permutation, so the first n items (what an evaluation reads) are mixed too, and the
whole layout is a pure function of ``seed`` and the sources.

Options the mix is given (``resolution``, ``aspect_ratio``, ``augment``, ``seed``; the trainer
sets ``resolution`` from the model) are passed to every source whose factory takes them and
that does not set its own. All sources must yield the same keys and image shapes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset

from ..registry import DATASETS, build_dataset, register_dataset
from .options import check_dataset_options, factory_options
from .transforms import Augment

__all__ = ["MixDataset", "mix"]

_SHARED = ("resolution", "aspect_ratio", "augment", "seed")


def _source_spec(spec, index: int) -> tuple[str, dict[str, Any]]:
    if isinstance(spec, str):
        return "image_folder", {"root": spec}
    if not isinstance(spec, dict) or "dataset" not in spec:
        raise ValueError(f"mix sources[{index}] must be a folder path or a mapping with a "
                         f"'dataset' key, got {spec!r}")
    options = dict(spec)
    return str(options.pop("dataset")), options


def _largest_remainder(weights: list[float], total: int) -> list[int]:
    exact = [w * total for w in weights]
    counts = [math.floor(e) for e in exact]
    by_remainder = sorted(range(len(weights)), key=lambda k: (counts[k] - exact[k], k))
    for k in by_remainder[:total - sum(counts)]:
        counts[k] += 1
    return counts


class MixDataset(Dataset):
    """Item ``i`` is item ``local_index[i]`` of source ``source_index[i]``."""

    def __init__(self, sources: list[Dataset], ratio: list[float], size: int | None = None,
                 seed: int = 0, names: list[str] | None = None):
        if not sources:
            raise ValueError("mix needs at least one source")
        if len(ratio) != len(sources):
            raise ValueError(f"mix ratio has {len(ratio)} entries for {len(sources)} sources")
        if any(not r > 0 for r in ratio):
            raise ValueError(f"mix ratio entries must be positive, got {list(ratio)}")
        self.sources = list(sources)
        self.names = names or [type(s).__name__ for s in sources]
        self.ratio = [r / sum(ratio) for r in ratio]
        lengths = [len(s) for s in sources]
        if size is None:
            # 1e-9: N = 3 for shares 1/3 must not become 4 through rounding of 3 / (1/3).
            size = max(math.ceil(n / w - 1e-9) for n, w in zip(lengths, self.ratio))
        if size < 1:
            raise ValueError(f"mix size must be >= 1, got {size}")
        self.counts = _largest_remainder(self.ratio, size)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(size, generator=g)
        self.source_index = torch.repeat_interleave(
            torch.arange(len(sources)), torch.tensor(self.counts))[order]
        self.local_index = torch.empty(size, dtype=torch.long)
        for k, (n, count) in enumerate(zip(lengths, self.counts)):
            if not count:
                continue
            # A seeded permutation, cycled: every item before any repeats.
            perm = torch.randperm(n, generator=g)
            self.local_index[self.source_index == k] = perm[torch.arange(count) % n]
        self.keys = self._check_alike()

    def _check_alike(self) -> tuple[str, ...]:
        first = None
        for name, source in zip(self.names, self.sources):
            item = source[0]
            if not isinstance(item, dict):
                raise TypeError(f"mix source {name} yields {type(item).__name__}, not a dict")
            layout = {k: tuple(v.shape) if hasattr(v, "shape") else None
                      for k, v in item.items()}
            if first is None:
                first = (name, layout)
            elif layout != first[1]:
                raise ValueError(f"mix sources differ: {first[0]} yields {first[1]} but {name} "
                                 f"yields {layout} (keys and shapes must match)")
        return tuple(first[1])

    def __len__(self) -> int:
        return len(self.source_index)

    def __getitem__(self, index: int):
        k = int(self.source_index[index])
        return self.sources[k][int(self.local_index[index])]


@register_dataset
def mix(sources: list[str | dict], ratio: list[float] | None = None, resolution: int | None = None,
        aspect_ratio: float | None = None,
        augment: Augment | None = None, size: int | None = None,
        seed: int = 0) -> MixDataset:
    """Registered datasets mixed in a ratio: ``sources=[aligned/, raw/]``, ``ratio=[1, 1]``."""
    if isinstance(sources, (str, dict)) or not sources:
        raise ValueError(f"mix sources must be a non-empty list, got {sources!r}")
    shared = {"resolution": resolution, "aspect_ratio": aspect_ratio, "augment": augment,
              "seed": seed}
    built, names = [], []
    for i, spec in enumerate(sources):
        name, options = _source_spec(spec, i)
        try:
            options = check_dataset_options(name, options)
        except KeyError as e:
            raise KeyError(f"mix sources[{i}]: {e.args[0] if e.args else e}") from None
        known, var_kw = factory_options(DATASETS.get(name))
        for key in _SHARED:
            if shared[key] is not None and key not in options and (key in known or var_kw):
                options[key] = shared[key]
        built.append(build_dataset(name, **options))
        names.append(f"sources[{i}] ({name}"
                     + (f" {options['root']}" if "root" in options else "") + ")")
    return MixDataset(built, ratio if ratio is not None else [1.0] * len(built), size, seed,
                      names)
