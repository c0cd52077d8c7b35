"""Learning-rate schedules: stateless functions of the step, so resuming needs no state."""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(base: float, step: int, *, kind: str = "constant", total: int | None = None,
          end: float = 0.0, warmup: int = 0) -> float:
    """Learning rate of iteration ``step`` (0-based) for a group whose base rate is ``base``.

    ``warmup`` steps ramp linearly up to ``base``; then ``constant`` stays there, ``cosine``
    anneals to ``end`` and ``linear`` decays to ``end`` at step ``total`` (``end`` is capped at
    ``base``).
    """
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if kind == "constant":
        return base
    if total is None:
        raise ValueError(f"the '{kind}' learning-rate schedule needs max_steps")
    end = min(end, base)
    t = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    if kind == "cosine":
        return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    if kind == "linear":
        return base + (end - base) * t
    raise ValueError(f"lr_schedule must be constant, cosine or linear, got {kind!r}")
