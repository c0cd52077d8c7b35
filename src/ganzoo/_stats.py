"""One metric over repeated measurements: n, mean, sample standard deviation and the values.

The one implementation of this summary, at the bottom of ganzoo's layers so that both of its
users import it: :mod:`ganzoo.experiments.stats` (the spread over training seeds, and the
intervals built on it) and :func:`ganzoo.evaluate` (``repeats=K``: the spread over generation
seeds of one model). Pure Python: importing it imports neither numpy nor torch.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["Summary", "summarize", "finite_values"]


@dataclass(frozen=True)
class Summary:
    """One metric over seeds: ``std`` is the sample standard deviation (ddof = 1), None for
    one seed (no spread is known)."""

    n: int
    mean: float
    std: float | None
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "mean": self.mean, "std": self.std, "values": list(self.values)}


def finite_values(values: Iterable[float], what: str = "values") -> tuple[float, ...]:
    """``values`` as a tuple of floats; a ValueError if there are none or one is not finite."""
    out = tuple(float(v) for v in values)
    if not out:
        raise ValueError(f"{what}: no values")
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{what}: non-finite values {bad} (drop the failed seeds first)")
    return out


def summarize(values: Iterable[float]) -> Summary:
    """n, mean, sample standard deviation (None for n = 1) and the values, in their order."""
    vals = finite_values(values)
    std = statistics.stdev(vals) if len(vals) > 1 else None  # exact sums: 0.0 for equal values
    return Summary(n=len(vals), mean=math.fsum(vals) / len(vals), std=std, values=vals)
