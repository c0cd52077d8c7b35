"""The ganzoo trainer (``python -m ganzoo.train``): run config, loop, checkpoints, outputs."""

from .config import RunConfig, parse_duration
from .trainer import Trainer, TrainingError

__all__ = ["RunConfig", "Trainer", "TrainingError", "parse_duration"]
