"""One metric over repeated measurements: n, mean, sample standard deviation and the values;
and which way a metric is better.

The one implementation of each, at the bottom of ganzoo's layers so that all of their users
import it: :mod:`ganzoo.experiments.stats` (the spread over training seeds, and the intervals
built on it), :func:`ganzoo.evaluate` (``repeats=K``: the spread over generation seeds of one
model), the comparison tables' arrows and the trainer's ``--keep-best``
(:func:`metric_direction`, :func:`is_better`). Pure Python: importing it imports neither numpy
nor torch.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["Summary", "summarize", "finite_values", "metric_direction", "is_better"]


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


# Which way is better, by the metric's name: lower distances (FID, FD, KID, MiFID), higher
# scores (IS, precision/recall, LPIPS diversity, PSNR, SSIM).
_LOWER = ("fid", "fd", "kid", "mifid")
_HIGHER = ("isc", "is", "precision", "recall", "f_score", "lpips", "psnr", "ssim")


def metric_direction(key: str) -> str:
    """``"↓"`` (lower is better), ``"↑"`` (higher is better) or ``""`` (no direction: a
    spread such as ``kid_std``, or an unknown name) for a metric key such as ``fid/bu`` or
    ``fd@dinov2``."""
    base = re.split(r"[@/]", key)[0]
    head = base.split("_")[0]
    if base.endswith("_std"):  # a spread, not a score
        return ""
    if base in ("mifid_distance",):
        return "↑"
    if head in _LOWER or base in _LOWER:
        return "↓"
    if head in _HIGHER or base.startswith(("lpips", "isc")):
        return "↑"
    return ""


def is_better(key: str, value: float | None, best: float | None) -> bool:
    """Whether ``value`` of metric ``key`` beats ``best`` (None: nothing yet) by the metric's
    direction. A value that is missing or not finite never does; a tie does not either."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        return False
    direction = metric_direction(key)
    if not direction:
        raise ValueError(f"metric {key!r} has no direction (lower or higher is better)")
    if best is None:
        return True
    return value < best if direction == "↓" else value > best
