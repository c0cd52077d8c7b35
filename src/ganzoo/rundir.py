"""A training run's folder: the one place that names its files and folders.

``python -m ganzoo.train -o OUT`` writes::

    OUT/
        config.json            the resolved run config
        metrics.jsonl          one JSON record per line (losses, learning rates, evaluations)
        samples/step_XXXXXXXX.png
        checkpoints/
            step_XXXXXXXX/     a complete checkpoint (ganzoo.training.checkpoint)
            latest             text file: the name of the newest complete checkpoint
        final/                 the saved model (GenerativeModel.save_pretrained)
        best/                  under --keep-best: the best evaluation so far, saved like final/
        final-diffusers/       under --export diffusers
        logs/                  the trackers' files

and a queue (``ganzoo queue run``) adds ``experiment.json``, ``train_config.json``,
``state.json``, ``eval.json`` and the children's logs ``train.log`` / ``eval.log``.

The trainer writes through :class:`RunDir`; ``ganzoo.experiments`` (runs, queue, report), the
CLI and the Hub helpers read through it. Reading tolerates a run that is still going or was
killed: a cut last line of ``metrics.jsonl`` is skipped, a ``latest`` that names no complete
checkpoint reads as none. This module imports nothing above the standard library.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

__all__ = ["RunDir", "CheckpointError", "read_json", "read_jsonl", "read_latest",
           "resolve_checkpoint", "list_checkpoints", "prune",
           "step_dir_name", "sample_name", "STEP_RE", "SAMPLE_RE", "LATEST",
           "RESULTS_JSONL", "RESULTS_MD", "seed_dir_name", "SEED_RE"]

# -- names ----------------------------------------------------------------------------------
CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
FINAL = "final"
# The best checkpoint by one evaluation metric (--keep-best), loadable like final/.
BEST = "best"
FINAL_DIFFUSERS = "final-diffusers"
SAMPLES = "samples"
LOGS = "logs"
# A saved model's weights (final/, a checkpoint folder).
WEIGHTS = "model.safetensors"
# A checkpoint folder's files besides WEIGHTS and CONFIG.
OPTIMIZERS = "optimizers.pt"
SCALERS = "scalers.pt"
RNG = "rng.pt"
TRAINER_STATE = "trainer_state.json"
# What a queue adds to an experiment's run folder.
EXPERIMENT = "experiment.json"
TRAIN_CONFIG = "train_config.json"
STATE = "state.json"
EVAL = "eval.json"
EVAL_TMP = ".eval.json.tmp"
# eval: {checkpoints: all}: each kept checkpoint's evaluation, evals/step_XXXXXXXX.json, and
# the checkpoint's model written for it (removed after).
EVALS = "evals"
EVAL_MODEL_TMP = ".eval_model.tmp"
TRAIN_LOG = "train.log"
EVAL_LOG = "eval.log"
# A queue's output_root, beside its experiments' folders.
RESULTS_JSONL = "results.jsonl"
RESULTS_MD = "results.md"
# A queue experiment with ``seeds``: one run folder per training seed, <output_root>/<name>/seedN.
SEED_DIR = "seed{}"

STEP_RE = re.compile(r"^step_(\d{8,})$")  # a checkpoint folder
SAMPLE_RE = re.compile(r"^step_(\d+)\.png$")  # a sample grid
SEED_RE = re.compile(r"^seed(\d+)$")  # a queue experiment's run folder for one seed


def seed_dir_name(seed: int) -> str:
    """The run folder of one training seed of a queue experiment, ``seed1``."""
    return SEED_DIR.format(seed)


def step_dir_name(step: int) -> str:
    """A checkpoint folder's name, ``step_00001000``."""
    return f"step_{step:08d}"


def sample_name(step: int) -> str:
    """A sample grid's name, ``step_00001000.png``."""
    return f"{step_dir_name(step)}.png"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, partial or unreadable; the message names the file."""


# -- reading --------------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every complete JSON line of ``path`` (a line cut by a kill is left out)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    return [record for _, record in iter_json_records(text) if record is not None]


def read_latest(checkpoints: Path) -> Path | None:
    """The checkpoint folder ``checkpoints/latest`` names (None without the pointer); a
    pointer that names no checkpoint folder raises :class:`CheckpointError`."""
    pointer = Path(checkpoints) / LATEST
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not STEP_RE.match(name):
        raise CheckpointError(f"{pointer} does not name a checkpoint folder (holds {name!r})")
    return Path(checkpoints) / name


def resolve_checkpoint(resume: str, output_dir: Path) -> Path | None:
    """The checkpoint folder for ``--resume``: ``latest`` (of run folder ``output_dir``), a
    checkpoint folder, a ``checkpoints/`` folder or a run folder; ``latest`` with no
    checkpoint yet gives None."""
    root = Path(output_dir) / CHECKPOINTS
    if resume == LATEST:
        path = read_latest(root)
        if path is None:
            return None
        if not path.is_dir():
            raise CheckpointError(f"{root / LATEST} names {path.name}, which does not exist")
        return path
    path = Path(resume)
    if path.is_dir() and (path / LATEST).is_file():  # a checkpoints/ folder
        return resolve_checkpoint(LATEST, path.parent) if path.name == CHECKPOINTS \
            else read_latest(path)
    if path.is_dir() and (path / CHECKPOINTS / LATEST).is_file():  # a run folder
        return read_latest(path / CHECKPOINTS)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    return path


# -- the folder -----------------------------------------------------------------------------
class RunDir:
    """The paths of one run folder, and the few reads every reader of a run needs."""

    # What a run writes into OUT; ``--overwrite`` removes exactly these.
    ARTEFACTS = (CONFIG, METRICS, CHECKPOINTS, SAMPLES, FINAL, BEST, LOGS, FINAL_DIFFUSERS)
    # Any of these makes a folder a run folder (a queue's experiment before it trained too).
    MARKERS = (METRICS, CONFIG, FINAL, CHECKPOINTS, EXPERIMENT)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # paths
    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def latest_pointer(self) -> Path:
        return self.checkpoints / LATEST

    @property
    def final(self) -> Path:
        return self.path / FINAL

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def final_diffusers(self) -> Path:
        return self.path / FINAL_DIFFUSERS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def logs(self) -> Path:
        return self.path / LOGS

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / step_dir_name(step)

    def sample_grid(self, step: int) -> Path:
        return self.samples / sample_name(step)

    # a queue's files
    @property
    def experiment(self) -> Path:
        return self.path / EXPERIMENT

    @property
    def train_config(self) -> Path:
        return self.path / TRAIN_CONFIG

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    @property
    def eval_tmp(self) -> Path:
        return self.path / EVAL_TMP

    @property
    def train_log(self) -> Path:
        return self.path / TRAIN_LOG

    @property
    def eval_log(self) -> Path:
        return self.path / EVAL_LOG

    # reads
    def is_run_dir(self) -> bool:
        """Whether the folder holds a run (or a queue's experiment)."""
        return any((self.path / n).exists() for n in self.MARKERS)

    def holds_run(self) -> bool:
        """Whether the folder holds anything a training run writes (what ``--overwrite``
        would remove)."""
        return self.path.is_dir() and any((self.path / a).exists() for a in self.ARTEFACTS)

    def clear(self) -> None:
        """Remove what a training run wrote (``--overwrite``); nothing else in the folder."""
        for name in self.ARTEFACTS:
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def records(self) -> list[dict[str, Any]]:
        """Every complete record of ``metrics.jsonl``."""
        return read_jsonl(self.metrics)

    def final_ok(self) -> bool:
        """``final/`` holds a complete saved model (the trainer writes it at the end of a run
        that reached its budget; each file is renamed into place, the config last)."""
        return (self.final / WEIGHTS).is_file() and (self.final / CONFIG).is_file()

    def sample_grids(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every sample grid, oldest first."""
        if not self.samples.is_dir():
            return []
        return sorted((int(m.group(1)), p) for p in self.samples.iterdir()
                      if (m := SAMPLE_RE.match(p.name)))

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """``(step, folder)`` of every checkpoint folder, oldest first (complete or not)."""
        return list_checkpoints(self.checkpoints)

    def latest_checkpoint(self) -> tuple[int, Path] | None:
        """The step and folder ``checkpoints/latest`` names, if it names a complete one
        (an unreadable or dangling pointer reads as none)."""
        try:
            path = read_latest(self.checkpoints)
        except (CheckpointError, OSError):
            return None
        if path is None or not (path / TRAINER_STATE).is_file():
            return None
        return int(STEP_RE.match(path.name).group(1)), path


def list_checkpoints(checkpoints: Path) -> list[tuple[int, Path]]:
    """``(step, folder)`` of every checkpoint folder under ``checkpoints``, oldest first."""
    if not Path(checkpoints).is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in Path(checkpoints).iterdir()
                  if (m := STEP_RE.match(p.name)) and p.is_dir())


def prune(root: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints under ``root`` (a ``checkpoints/``
    folder), never the one ``latest`` names; 0 keeps all."""
    if keep <= 0:
        return []
    try:
        protected = read_latest(root)
    except CheckpointError:
        protected = None
    ckpts = list_checkpoints(root)
    removed = []
    for _, path in ckpts[:-keep]:
        if protected is not None and path.resolve() == protected.resolve():
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def iter_json_records(text: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Each line of a ``metrics.jsonl`` text with its record (None for a line cut by a
    kill, or one that holds no JSON object)."""
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        yield line, record if isinstance(record, dict) else None
