"""``--keep-best METRIC``: the run's best evaluation so far, kept as ``OUT/best/``.

After each ``--eval-every`` evaluation the trainer offers the metric's value here. A finite
value better than the best so far, by the metric's direction (:func:`ganzoo._stats.is_better`:
lower FID / FD / KID, higher IS / precision / recall), crowns the model's current state:
``best/`` is written with ``save_pretrained``, like ``final/``, so that
``ganzoo.from_pretrained(OUT/best)`` loads it, and its card facts hold ``best_metric``,
``best_value`` and ``best_step``. A NaN, an infinity or a missing value never crowns.

``best/`` is its own folder, not a checkpoint: ``--keep`` pruning of ``checkpoints/`` cannot
remove it. It is written into a temporary folder beside it and renamed into place
(:func:`ganzoo._io.atomic_dir`), so a kill mid-write leaves the previous ``best/``. Each
checkpoint's trainer state records ``(metric, value, step)``; on resume the best so far is the
better of that record and the facts of ``best/`` itself (which may hold a step after the
checkpoint, from the part of the run being replayed), so a later worse evaluation never
replaces it (docs/training.md, "The best checkpoint").
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

from .._io import atomic_dir
from .._stats import is_better, metric_direction
from ..rundir import CONFIG, read_json

__all__ = ["BestCheckpoint", "recover_folder"]

logger = logging.getLogger("ganzoo.train")


class BestCheckpoint:
    """The best value of one metric so far, and the folder that holds its model."""

    def __init__(self, metric: str, folder: Path):
        if not metric_direction(metric):
            raise ValueError(f"--keep-best {metric}: this metric has no direction (neither "
                             f"lower nor higher is better); keep a score such as fid or "
                             f"isc_mean")
        self.metric = metric
        self.folder = Path(folder)
        self.value: float | None = None
        self.step: int | None = None

    def state(self) -> dict[str, Any] | None:
        """``{"metric", "value", "step"}`` for the trainer state, None before any best."""
        if self.value is None:
            return None
        return {"metric": self.metric, "value": self.value, "step": self.step}

    def folder_facts(self) -> dict[str, Any] | None:
        """The ``(metric, value, step)`` that ``best/`` states on its card, if readable."""
        saved = read_json(self.folder / CONFIG)
        card = saved.get("card") if isinstance(saved, dict) else None
        if not isinstance(card, dict) or "best_value" not in card:
            return None
        return {"metric": card.get("best_metric"), "value": card.get("best_value"),
                "step": card.get("best_step")}

    def restore(self, recorded: dict[str, Any] | None) -> None:
        """The best so far on resume: the better of the checkpoint's record and ``best/``'s
        facts, among those for this metric."""
        for source, facts in (("checkpoint", recorded), (str(self.folder),
                                                         self.folder_facts())):
            if not isinstance(facts, dict):
                continue
            if facts.get("metric") != self.metric:
                logger.warning("--keep-best %s: the %s holds a best by %s, which this run "
                               "does not track; the next evaluation replaces it", self.metric,
                               source, facts.get("metric"))
                continue
            value = facts.get("value")
            if is_better(self.metric, value, self.value):
                self.value, self.step = float(value), int(facts.get("step") or 0)

    def offer(self, step: int, values: dict[str, Any]) -> float | None:
        """This evaluation's value if it beats the best so far, else None."""
        value = values.get(self.metric)
        if value is not None and not (isinstance(value, (int, float))
                                      and math.isfinite(value)):
            logger.warning("step %d: %s = %s is not finite; the best stays %s", step,
                           self.metric, value, self.describe())
        return float(value) if is_better(self.metric, value, self.value) else None

    def write(self, model, step: int, value: float, facts: dict[str, Any]) -> None:
        """Save ``model`` as the best (``value`` at ``step``), atomically, with ``facts`` and
        the best's own; the best so far changes only once the folder is in place."""
        facts = {**facts, "best_metric": self.metric, "best_value": value, "best_step": step}
        with atomic_dir(self.folder, overwrite=True) as tmp:
            model.save_pretrained(tmp, **facts)
        self.value, self.step = value, step

    def describe(self) -> str:
        if self.value is None:
            return "none yet"
        return f"{self.metric} = {self.value:.6g} at step {self.step}"


def recover_folder(folder: Path) -> None:
    """Undo what a kill left of an :func:`~ganzoo._io.atomic_dir` write of ``folder``: its
    temporary folders go, and a previous folder that was moved aside but not yet replaced
    (a kill between the two renames) is put back."""
    folder = Path(folder)
    parent = folder.parent
    if not parent.is_dir():
        return
    for tmp in parent.glob(f".{folder.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    olds = sorted(parent.glob(f".{folder.name}.*.old"), key=lambda p: p.stat().st_mtime)
    for old in reversed(olds):  # the newest first
        if not folder.exists():
            old.rename(folder)
            logger.warning("restored %s from %s (a kill interrupted its replacement)",
                           folder, old.name)
        else:
            shutil.rmtree(old, ignore_errors=True)
