"""Run outputs of the main process: ``metrics.jsonl``, sample grids and trackers."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import torch

from .._io import save_grid

__all__ = ["MetricsWriter", "save_sample_grid", "check_tracker", "tracker_init_kwargs",
           "TRACKERS", "to_floats"]


def to_floats(values: dict[str, Any]) -> dict[str, float]:
    """Plain floats for logging (tensors are averaged), with one host read per device rather
    than one per value: each read waits for the queued GPU work."""
    out: dict[str, float] = {}
    tensors: dict[torch.device, dict[str, torch.Tensor]] = {}
    for k, v in values.items():
        if isinstance(v, torch.Tensor):
            t = v.detach().float()
            tensors.setdefault(t.device, {})[k] = t.reshape(()) if t.numel() == 1 else t.mean()
        else:
            out[k] = float(v)
    for same_device in tensors.values():
        out.update(zip(same_device, torch.stack(list(same_device.values())).tolist()))
    return {k: out[k] for k in values}


class MetricsWriter:
    """Appends one JSON object per line to ``OUT/metrics.jsonl`` (flushed each time)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        def clean(v):
            if isinstance(v, float) and not math.isfinite(v):
                return str(v)  # JSON has no NaN/inf
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        with open(self.path, "a") as f:
            f.write(json.dumps(clean(record), default=str) + "\n")
            f.flush()


def grid_nrow(count: int, n: int) -> int:
    """Columns of a sample grid: rows of ``n`` when a preview stacks several image sets
    (e.g. inputs over outputs), else a near-square grid."""
    if count > n and count % n == 0:
        return n
    return max(1, math.ceil(math.sqrt(count)))


def save_sample_grid(images: torch.Tensor, path: Path, n: int) -> torch.Tensor:
    """The trainer's sample grid: images in [-1, 1] on white, in rows of ``grid_nrow``."""
    return save_grid(images, path, nrow=grid_nrow(len(images), n), pad_value=1.0)


# --log-with name -> (module to import, pip requirement). Accelerate finds each tracker by its
# module; the requirement is what to install (ganzoo's extra where it has one).
TRACKERS = {
    "tensorboard": ("tensorboard", "'ganzoo[tensorboard]'"),
    "wandb": ("wandb", "'ganzoo[wandb]'"),
    "mlflow": ("mlflow", "'ganzoo[mlflow]' (or mlflow)"),
    "aim": ("aim", "aim"),
    "comet_ml": ("comet_ml", "comet_ml"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
    "trackio": ("trackio", "trackio"),
}


def check_tracker(log_with: str) -> None:
    """Fail early, with the install command, when the tracker's package is missing (or, for
    ``all``, when no tracker is installed), or when this Accelerate does not know it."""
    if log_with == "none":
        return
    if log_with == "all":
        if not any(importlib.util.find_spec(m) is not None for m, _ in TRACKERS.values()):
            raise ImportError("--log-with all found no tracker installed; install one, e.g. "
                              "pip install 'ganzoo[tensorboard]'")
        return
    module, requirement = TRACKERS[log_with]
    if importlib.util.find_spec(module) is None:
        hint = " (set --wandb-mode offline to log without an account or network)" \
            if log_with == "wandb" else ""
        raise ImportError(f"--log-with {log_with} needs the {module} package: "
                          f"pip install {requirement}{hint}")
    from accelerate.utils import LoggerType

    if log_with not in [t.value for t in LoggerType]:
        import accelerate

        raise ImportError(f"--log-with {log_with}: Accelerate {accelerate.__version__} has no "
                          f"such tracker; upgrade it: pip install -U accelerate")


def tracker_init_kwargs(logs: Path) -> dict[str, dict[str, Any]]:
    """Where file-writing trackers write: under the run's ``logs/`` folder, not the working
    directory. (TensorBoard and Aim get it from Accelerate's logging_dir; MLflow follows
    ``MLFLOW_TRACKING_URI``, its own convention.)"""
    return {"wandb": {"dir": str(logs)}, "dvclive": {"dir": str(Path(logs) / "dvclive")},
            "swanlab": {"logdir": str(logs)}}
