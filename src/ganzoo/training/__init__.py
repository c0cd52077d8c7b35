"""The ganzoo trainer (``python -m ganzoo.train``): run config, loop, checkpoints, outputs.

``Trainer`` and ``TrainingError`` load on first use (they import torch and Accelerate), so the
command line's parser (:mod:`ganzoo.training.args`) and the run config stay cheap to import.
"""

from .config import RunConfig, parse_duration

__all__ = ["RunConfig", "Trainer", "TrainingError", "parse_duration"]


def __getattr__(name: str):
    if name in ("Trainer", "TrainingError"):
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
