"""What a run folder holds, read without building the model or touching the weights.

A run folder is what ``python -m ganzoo.train -o OUT`` writes (``config.json``,
``metrics.jsonl``, ``samples/``, ``checkpoints/``, ``final/``), plus, in a queue,
``experiment.json``, ``state.json`` and ``eval.json``. Everything here tolerates a run that is
still going or was killed: a cut last line of ``metrics.jsonl`` is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._stats import metric_direction  # the one rule, shared with the trainer's --keep-best
from ..registry import MODELS
from ..rundir import (CONFIG, EVALS, SAMPLE_RE, STEP_RE, TRAINER_STATE, WEIGHTS, RunDir, read_json,
                      read_jsonl)

__all__ = ["RunInfo", "read_json", "read_jsonl", "training_time", "sample_grids",
           "latest_checkpoint", "is_run_dir", "metric_direction", "format_duration",
           "protocol_summary", "final_ok", "SAMPLE_RE"]


def training_time(records: list[dict[str, Any]]) -> float | None:
    """Seconds of training behind the newest logged step, over every attempt of the run.

    Each attempt logs ``time`` since its own start, and a resumed attempt first drops the
    records after its checkpoint; so the records are segments whose ``time`` restarts low,
    and the run's training time is the sum of each segment's last ``time``. Time lost to an
    interruption (steps after the last checkpoint, replayed on resume) is not counted.
    """
    total, last, seen = 0.0, None, False
    for r in records:
        t = r.get("time")
        if not isinstance(t, (int, float)):
            continue
        seen = True
        if last is not None and t < last:
            total += last
        last = t
    if not seen:
        return None
    return total + (last or 0.0)


# The RunDir reads under the names experiments has always used.
def sample_grids(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every sample grid, oldest first."""
    return RunDir(run_dir).sample_grids()


def latest_checkpoint(run_dir: Path) -> tuple[int, Path] | None:
    """The step and folder ``checkpoints/latest`` names, if it names a complete one."""
    return RunDir(run_dir).latest_checkpoint()


def model_folder_ok(path: Path) -> bool:
    """``path`` (``final/``, ``best/``) holds a complete saved model."""
    return (Path(path) / WEIGHTS).is_file() and (Path(path) / CONFIG).is_file()


def checkpoint_step(path: Path) -> int | None:
    """The training step a saved model folder comes from, as its card states it."""
    card = (read_json(Path(path) / CONFIG) or {}).get("card") or {}
    best = card.get("best") if isinstance(card.get("best"), dict) else {}
    for value in (best.get("step"), card.get("step"), card.get("steps")):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def is_run_dir(path: Path) -> bool:
    return RunDir(path).is_run_dir()


def final_ok(run_dir: Path) -> bool:
    """``final/`` holds a complete saved model."""
    return RunDir(run_dir).final_ok()


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


@dataclass
class RunInfo:
    """A run folder's facts, for the results table and the report."""

    dir: Path
    name: str
    config: dict[str, Any] = field(default_factory=dict)  # the resolved run config
    experiment: dict[str, Any] | None = None  # experiment.json (queue runs)
    state: dict[str, Any] | None = None  # state.json (queue runs)
    records: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] | None = None  # eval.json: {"metrics", "protocol"}
    steps: int | None = None
    finished: bool = False
    num_processes: int = 1
    model_config: dict[str, Any] | None = None  # final/config.json
    parameters: int | None = None
    group: str = ""  # the experiment a seed's run belongs to (its name for a lone run)
    # eval: {checkpoints: all}: (step, evaluation) of each kept checkpoint, oldest first
    checkpoint_evals: list[tuple[int, dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def read(cls, run_dir: Path, name: str | None = None, group: str | None = None) -> "RunInfo":
        rd = RunDir(run_dir)
        info = cls(dir=rd.path, name=name or rd.path.name)
        info.config = read_json(rd.config) or {}
        info.experiment = read_json(rd.experiment)
        info.group = group or (info.experiment or {}).get("experiment") or info.name
        info.state = read_json(rd.state)
        info.records = rd.records()
        ev = read_json(rd.eval)
        info.evaluation = ev if isinstance(ev, dict) and "metrics" in ev else None
        info.checkpoint_evals = _checkpoint_evals(rd.path / EVALS)
        info.finished = rd.final_ok()
        final_cfg = read_json(rd.final / CONFIG) if info.finished else None
        info.model_config = final_cfg
        latest = rd.latest_checkpoint()
        steps = None
        if final_cfg:
            steps = (final_cfg.get("card") or {}).get("steps")
        if steps is None and latest is not None:
            steps = latest[0]
        if steps is None:
            steps = max((r["step"] for r in info.records
                         if isinstance(r.get("step"), int) and "time" in r), default=None)
        info.steps = steps
        if latest is not None:
            state = read_json(latest[1] / TRAINER_STATE) or {}
            info.num_processes = int(state.get("num_processes") or 1)
        if info.experiment and info.experiment.get("parameters"):
            info.parameters = int(info.experiment["parameters"])
        else:
            info.parameters = _count_parameters(final_cfg or {}, info.config)
        return info

    # -- derived facts ----------------------------------------------------------------------
    @property
    def model(self) -> str:
        return str(self.config.get("model") or (self.experiment or {}).get("train", {})
                   .get("model") or (self.model_config or {}).get("preset") or "?")

    @property
    def dataset(self) -> str:
        return str(self.config.get("dataset") or (self.experiment or {}).get("train", {})
                   .get("dataset") or "")

    @property
    def seed(self) -> int | None:
        """The training seed of a queue experiment's seed run (None for a lone run)."""
        seed = (self.experiment or {}).get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def baseline(self) -> str | None:
        """The experiment the queue compares this one with (None: it is the baseline, or the
        run is not from a queue)."""
        return (self.experiment or {}).get("baseline")

    @property
    def train_time(self) -> float | None:
        return training_time(self.records)

    @property
    def images_per_iteration(self) -> int:
        c = self.config
        return int(c.get("batch_size") or 32) * int(c.get("grad_accum") or 1) * \
            self.num_processes

    @property
    def images_per_s(self) -> float | None:
        t = self.train_time
        if not t or not self.steps:
            return None
        return self.steps * self.images_per_iteration / t

    @property
    def metrics(self) -> dict[str, float]:
        ev = self.evaluation or {}
        return {k: v for k, v in (ev.get("metrics") or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    @property
    def protocol(self) -> dict[str, Any]:
        return (self.evaluation or {}).get("protocol") or {}

    def eval_curve(self) -> dict[str, list[tuple[int, float]]]:
        """Metric values over steps: the trainer's ``--eval-every`` records, then
        ``eval.json`` at the final step."""
        curves: dict[str, list[tuple[int, float]]] = {}
        for r in self.records:
            ev = r.get("eval")
            if isinstance(ev, dict) and isinstance(r.get("step"), int):
                for k, v in (ev.get("metrics") or {}).items():
                    if isinstance(v, (int, float)):
                        curves.setdefault(k, []).append((r["step"], float(v)))
        for step, ev in self.checkpoint_evals:
            for k, v in (ev.get("metrics") or {}).items():
                if isinstance(v, (int, float)):
                    curves.setdefault(k, []).append((step, float(v)))
        if self.evaluation:
            step = self.protocol.get("step") or self.steps
            for k, v in self.metrics.items():
                if isinstance(step, int):
                    curves.setdefault(k, []).append((step, float(v)))
        return {k: sorted(set(v)) for k, v in curves.items()}

    @property
    def status(self) -> str:
        if self.state and self.state.get("status"):
            return str(self.state["status"])
        if self.evaluation:
            return "done"
        return "trained" if self.finished else ("interrupted" if self.steps else "pending")


def _checkpoint_evals(folder: Path) -> list[tuple[int, dict[str, Any]]]:
    if not folder.is_dir():
        return []
    out = []
    for path in folder.iterdir():
        m = STEP_RE.match(path.name[:-5]) if path.name.endswith(".json") else None
        ev = read_json(path) if m else None
        if isinstance(ev, dict) and isinstance(ev.get("metrics"), dict):
            out.append((int(m.group(1)), ev))
    return sorted(out, key=lambda t: t[0])


def _count_parameters(final_cfg: dict[str, Any], run_cfg: dict[str, Any]) -> int | None:
    """Parameters of the run's model (EMA copies left out), built on ``meta``."""
    preset = final_cfg.get("preset") or run_cfg.get("model")
    if not preset:
        return None
    try:
        import torch

        kwargs = final_cfg.get("config") or run_cfg.get("model_args") or {}
        with torch.device("meta"):
            model = MODELS.get(preset)(**kwargs)
        return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("ema."))
    except Exception:  # noqa: BLE001 - a plugin model that is gone: the count is left blank
        return None


def protocol_summary(protocol: dict[str, Any], key: str | None = None) -> str:
    """One line saying how a metric was measured (extractor, N, reference, resizer, step)."""
    if not protocol:
        return "no protocol recorded"
    output = key.split("/", 1)[1] if key and "/" in key else None

    def pick(value):
        if isinstance(value, dict) and output in value:
            return value[output]
        if isinstance(value, dict):  # per task output, no output named: all of them
            return ", ".join(f"{k}: {v}" for k, v in value.items())
        return value

    parts = []
    extractor = protocol.get("feature_extractor")
    if extractor:
        wid = protocol.get("feature_extractor_weights_id")
        wid = str(wid or "")
        if re.fullmatch(r"[0-9a-f]{16,}", wid):  # a sha256: its head is enough to compare
            wid = wid[:12]
        parts.append(f"{extractor}" + (f" (weights {wid})" if wid else ""))
    parts.append(f"n_fake {protocol.get('n_fake')}, n_real {pick(protocol.get('n_real'))}")
    ref = pick(protocol.get("reference"))
    if ref:
        parts.append(f"reference {ref}")
    if protocol.get("resizer"):
        parts.append(f"resizer {protocol['resizer']}")
    if protocol.get("checkpoint"):
        parts.append(f"model {protocol['checkpoint']}/")
    if protocol.get("step") is not None:
        parts.append(f"step {protocol['step']}")
    if isinstance(protocol.get("repeats"), int) and protocol["repeats"] > 1:
        parts.append(f"mean of {protocol['repeats']} generation seeds")
    if protocol.get("implementation"):
        parts.append(f"{protocol['implementation']} {protocol.get('implementation_version', '')}"
                     .strip())
    return "; ".join(parts)
