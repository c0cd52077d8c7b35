"""The per-step log record: what ``metrics.jsonl``, the trackers and the progress bar show.

Every ``--log-every`` iterations (and at the last one) the trainer writes one record::

    {"step": 100, "time": 12.345, "it_per_s": 8.1, "nonfinite_total": 0,
     "discriminator/loss": 1.37, ..., "lr/discriminator": 0.0002, ...}

``time`` counts from this attempt's start (``ganzoo.experiments.runs.training_time`` sums
the attempts of a resumed run), ``it_per_s`` over the iterations since the previous record.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

from .._progress import progress_bar
from .outputs import MetricsWriter, to_floats

__all__ = ["StepLog", "bar_losses", "loop_bar"]


class StepLog:
    """Builds and writes the records of one attempt of a run.

    ``writer`` is ``metrics.jsonl`` (None on processes other than the main one), ``track``
    Accelerate's ``log`` when a tracker is on (every process calls it; Accelerate logs on the
    main one), ``bar`` the loop's progress bar.
    """

    def __init__(self, every: int, *, step: int, t0: float, writer: MetricsWriter | None,
                 track: Callable[..., Any] | None = None, bar=None):
        self.every = every
        self.writer = writer
        self.track = track
        self.bar = bar
        self.t0 = t0
        self._t_last, self._step_last = t0, step

    def due(self, step: int, total: int | None) -> bool:
        """Whether iteration ``step`` (counted from 1) writes a record."""
        return bool(self.every) and (step % self.every == 0 or step == total)

    def record(self, step: int, group_logs: dict[str, dict[str, Any]], lrs: dict[str, float],
               nonfinite_total: int) -> dict[str, Any]:
        """The record at ``step``: timing, each group's logs (``group/key``; keys starting
        with ``_`` are private to the loop) and learning rates."""
        now = time.time()
        record = {"step": step, "time": round(now - self.t0, 3),
                  "it_per_s": (step - self._step_last) / max(now - self._t_last, 1e-9),
                  "nonfinite_total": nonfinite_total}
        record.update(to_floats({f"{g}/{k}": v for g, logs in group_logs.items()
                                 for k, v in logs.items() if not k.startswith("_")}))
        record.update({f"lr/{g}": v for g, v in lrs.items()})
        self._t_last, self._step_last = now, step
        return record

    def write(self, step: int, group_logs: dict[str, dict[str, Any]], lrs: dict[str, float],
              nonfinite_total: int) -> dict[str, Any]:
        record = self.record(step, group_logs, lrs, nonfinite_total)
        if self.writer is not None:
            self.writer.write(record)
            if self.bar is not None:
                self.bar.set_postfix(bar_losses(record), refresh=False)
        if self.track is not None:
            self.track({k: v for k, v in record.items() if k != "step"}, step=step)
        return record


def bar_losses(record: dict[str, Any]) -> dict[str, str]:
    """The progress bar's postfix: each group's ``loss``, and a family's other ``*loss`` logs
    where they differ from it (a discriminator's ``d_loss`` is its ``loss``: shown once)."""
    out = {}
    for key, value in record.items():
        group, _, name = key.partition("/")
        if not name.endswith("loss") or (name != "loss" and value == record.get(f"{group}/loss")):
            continue
        out[f"{group[:4]}:{name[:8]}"] = f"{value:.3g}"
    return out


@contextlib.contextmanager
def loop_bar(total: int | None, initial: int, enabled: bool) -> Iterator[Any]:
    """The loop's progress: a bar on a terminal, a line every 30 s in a log
    (``ganzoo._progress``). Records logged meanwhile (a checkpoint saved, an evaluation)
    print above the bar; written into its line, the last checkpoint's left two 100% bars."""
    from tqdm.auto import tqdm

    bar = progress_bar(total=total, initial=initial, desc="train", enabled=enabled)
    with contextlib.ExitStack() as stack:
        if isinstance(bar, tqdm) and not bar.disable:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
        try:
            yield bar
        finally:
            bar.close()
