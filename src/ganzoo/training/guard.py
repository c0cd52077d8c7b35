"""The non-finite guard: skip an optimizer step whose loss or gradient holds NaN or inf, and
stop the run after too many in a row.

The check runs on the device: each guarded step sets one slot of a flag buffer with a single
fused kernel per dtype, and the flags are read back to the host in one go (at log and save
steps, or when the slots run out) instead of once per step. A fused optimizer takes the flag
as its ``found_inf`` and skips the update on the device, as under ``torch.amp.GradScaler``;
other optimizers read it at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

__all__ = ["NonfiniteGuard", "TrainingError"]

# Guarded optimizer steps whose on-device non-finite flags may wait before one host read.
FLAG_SLOTS = 32


class TrainingError(RuntimeError):
    """The run cannot go on (e.g. too many consecutive non-finite steps)."""


class NonfiniteGuard:
    """Counts non-finite optimizer steps: ``total`` over the run (saved in checkpoints) and
    ``consecutive`` since the last good one.

    ``reduce`` sums a flag over processes (``None`` for one process), so that a loss that is
    bad on one process skips the step on all. ``limit`` consecutive bad steps stop the run
    (0: the guard is off).
    """

    def __init__(self, device: torch.device, *, limit: int, total: int = 0,
                 reduce: Callable[[torch.Tensor], torch.Tensor] | None = None):
        self.limit = limit
        self.total = total
        self.consecutive = 0
        self._reduce = reduce
        self._flags = torch.zeros(FLAG_SLOTS, device=device)
        self._pending = 0
        self._one = torch.ones((), device=device)

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def flag(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """The next slot of the flag buffer, set to 1 on the device when any of ``tensors``
        holds NaN or inf (a single fused kernel per dtype; no norm, no host sync)."""
        if self._pending == len(self._flags):
            self.count()
        flag = self._flags[self._pending]  # a 0-dim view, as GradScaler's found_inf
        self._pending += 1
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        for same_dtype in by_dtype.values():  # also "unscales" by 1, which changes nothing
            torch._amp_foreach_non_finite_check_and_unscale_(same_dtype, flag, self._one)
        if self._reduce is not None:
            flag.copy_(self._reduce(flag).clamp_(max=1.0))
        return flag

    def count(self) -> list[bool]:
        """Fold the pending flags, oldest first, into the counters with one host read, and
        return them."""
        if not self._pending:
            return []
        pending = self._flags[:self._pending]
        flags = [bool(x) for x in pending.tolist()]
        pending.zero_()
        self._pending = 0
        for bad in flags:
            if bad:
                self.total += 1
                self.consecutive += 1
            else:
                self.consecutive = 0
        return flags

    def check(self, step: int, checkpoints: Path) -> None:
        """Raise :class:`TrainingError` when ``limit`` consecutive steps were non-finite (as
        far as the flags counted so far say)."""
        if self.limit and self.consecutive >= self.limit:
            raise TrainingError(
                f"stopping at step {step}: {self.consecutive} consecutive optimizer "
                f"steps had a non-finite loss or gradient (lower the learning rate, "
                f"enable --clip-grad-norm, or raise --max-nonfinite). The last good "
                f"checkpoint is in {checkpoints}")
