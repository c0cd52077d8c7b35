"""Training checkpoints: atomic folders, a ``latest`` pointer and pruning.

Layout of ``OUT/checkpoints/``::

    step_00001000/
        model.safetensors    every network, EMA copies included (ema. prefix)
        optimizers.pt        {group: optimizer.state_dict()}
        scalers.pt           {group: GradScaler.state_dict()} (fp16 runs only)
        rng.pt               per process: python, numpy, torch and cuda RNG states
        trainer_state.json   step, data position, counters, process count, checksums
        config.json          the run config
    latest                   text file: the name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder next to its final name and renamed
into place when every file is on disk, then ``latest`` is replaced atomically. A kill at any
moment therefore leaves ``latest`` naming a complete checkpoint. ``.pt`` files hold only
tensors and plain containers, and are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._io import atomic_path, atomic_write_text, load_tensors
from ..rundir import (CONFIG, LATEST, OPTIMIZERS, RNG, SCALERS, STEP_RE, TRAINER_STATE,
                      WEIGHTS, CheckpointError, list_checkpoints, prune, read_latest,
                      resolve_checkpoint, step_dir_name)

__all__ = ["CheckpointError", "capture_rng", "restore_rng", "write_checkpoint",
           "resolve_checkpoint", "read_checkpoint_files", "list_checkpoints", "prune",
           "read_latest", "step_dir_name", "LATEST", "STEP_RE"]

REQUIRED = (WEIGHTS, OPTIMIZERS, RNG, TRAINER_STATE, CONFIG)
# Test hook: "STEP:SECONDS" sleeps inside the write of checkpoint STEP, after its files are on
# disk and before the rename, so a test can kill the process mid-write deterministically.
_SLEEP_HOOK = "GANZOO_TEST_CHECKPOINT_SLEEP"


# -- RNG ------------------------------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain values (``weights_only``-loadable)."""
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt), gauss],
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# -- writing --------------------------------------------------------------------------------
def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_checkpoint(root: Path, step: int, *, model, optimizers: dict[str, Any],
                     scalers: dict[str, Any], rng: list[dict[str, Any]],
                     trainer_state: dict[str, Any], run_config: dict[str, Any]) -> Path:
    """Write checkpoint ``step`` under ``root`` atomically and point ``latest`` at it."""
    from safetensors.torch import save_model

    root.mkdir(parents=True, exist_ok=True)
    name = step_dir_name(step)
    final = root / name
    tmp = root / f".tmp_{name}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    with atomic_path(tmp / WEIGHTS) as weights:  # safetensors' own file is 0600
        save_model(model, str(weights), metadata={"format": "pt", "step": str(step)})
    torch.save({g: opt.state_dict() for g, opt in optimizers.items()}, tmp / OPTIMIZERS)
    if scalers:
        torch.save({g: s.state_dict() for g, s in scalers.items()}, tmp / SCALERS)
    torch.save(rng, tmp / RNG)
    (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2) + "\n")
    (tmp / CONFIG).write_text(json.dumps(run_config, indent=2) + "\n")
    _fsync_tree(tmp)
    hook = os.environ.get(_SLEEP_HOOK)
    if hook:
        hook_step, seconds = hook.split(":")
        if int(hook_step) == step:
            time.sleep(float(seconds))
    if final.exists():  # the same step saved again (e.g. after a resume): replace it
        old = root / f".old_{name}_{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _write_latest(root, name)
    return final


def _write_latest(root: Path, name: str) -> None:
    atomic_write_text(root / LATEST, name + "\n", fsync=True)


def clean_stale(root: Path) -> None:
    """Remove temporary folders left by a process killed while writing."""
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith((".tmp_", ".old_")) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------
def read_checkpoint_files(path: Path) -> dict[str, Any]:
    """Check that every file is present and readable; returns the JSON and ``.pt`` contents."""
    for name in REQUIRED:
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is partial: {path / name} is missing")
    out: dict[str, Any] = {}
    for name in (TRAINER_STATE, CONFIG):
        try:
            out[name] = json.loads((path / name).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CheckpointError(f"cannot read {path / name}: {e}") from e
    for name in (OPTIMIZERS, SCALERS, RNG):
        file = path / name
        if not file.is_file():
            continue
        try:
            out[name] = load_tensors(file, "checkpoint file")
        except ValueError as e:
            raise CheckpointError(str(e)) from None
    try:
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS), framework="pt") as f:
            f.keys()
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"cannot read {path / WEIGHTS}: it is corrupt or "
                              f"truncated ({e})") from e
    return out
