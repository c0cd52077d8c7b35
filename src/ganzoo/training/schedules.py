"""Learning-rate and EMA schedules: stateless functions of the step, so resuming needs no state."""

from __future__ import annotations

import math

__all__ = ["lr_at", "ema_decay_at"]


def lr_at(base: float, step: int, *, kind: str = "constant", total: int | None = None,
          end: float = 0.0, warmup: int = 0, decay_start: int = 0,
          decay_every: int | None = None) -> float:
    """Learning rate of iteration ``step`` (0-based) for a group whose base rate is ``base``.

    ``warmup`` steps ramp linearly up to ``base``; then ``constant`` stays there, while
    ``cosine`` anneals and ``linear`` decays to ``end`` at step ``total`` (``end`` is capped at
    ``base``), both starting at ``max(warmup, decay_start)`` and holding ``base`` until then.
    ``linear`` with ``decay_start`` is pix2pix/CycleGAN/CUT's ``--lr_policy linear`` per step:
    constant for ``n_epochs``, then linearly to zero over ``n_epochs_decay`` (the reference
    steps per epoch, ``1 - max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)``).

    ``decay_every = K`` makes ``linear`` that reference staircase (models/networks.py
    ``get_scheduler``, ``lr_policy='linear'``) in blocks of ``K`` steps: with ``epoch = step //
    K``, ``n_epochs = start / K`` and ``n_epochs_decay = (total - start) / K`` (both whole), the
    fraction of the way to ``end`` is ``max(0, epoch + 1 - n_epochs) / (n_epochs_decay + 1)``,
    constant within a block, so the last block runs at ``1 / (n_epochs_decay + 1)`` of the way
    from ``end`` to ``base``. ``K`` = the steps of one data epoch gives the reference's schedule.
    """
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if kind == "constant":
        return base
    if total is None:
        raise ValueError(f"the '{kind}' learning-rate schedule needs max_steps")
    end = min(end, base)
    start = max(warmup, decay_start)
    if decay_every is not None and kind == "linear":
        blocks, done = start // decay_every, (total - start) // decay_every
        t = min(1.0, max(0, step // decay_every + 1 - blocks) / (done + 1))
        return base + (end - base) * t
    t = min(1.0, max(0.0, (step - start) / max(1, total - start)))
    if kind == "cosine":
        return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * t))
    if kind == "linear":
        return base + (end - base) * t
    raise ValueError(f"lr_schedule must be constant, cosine or linear, got {kind!r}")


def ema_decay_at(step: int, decay: float, *, power: float = 2 / 3, start: int = 0) -> float:
    """EMA decay applied after iteration ``step`` (0-based): the warm-up of timm's
    ``ModelEmaV3`` and diffusers' ``EMAModel`` (``use_ema_warmup``, ``inv_gamma = 1``)::

        t = step - start
        decay_t = 0                                   if t <= 0  (the EMA copies the live weights)
        decay_t = min(decay, 1 - (1 + t) ** -power)   otherwise

    The averaging window ``1 / (1 - decay_t) = (1 + t) ** power`` grows with training, so the
    EMA never carries much of the initial weights: with ``power = 2/3`` it spans about 130
    iterations at step 1,500 and 2,150 at 100k, and reaches ``decay = 0.9999`` near 1M.
    ``power = 0`` turns the warm-up off: a constant ``decay`` after ``start``.
    """
    t = step - start
    if t <= 0:
        return 0.0
    if power == 0:
        return decay
    return min(decay, 1.0 - (1.0 + t) ** -power)
