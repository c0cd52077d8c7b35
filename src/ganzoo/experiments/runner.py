"""``ganzoo queue run`` and ``ganzoo queue status``: the queue's state machine.

Each experiment goes ``pending -> training -> trained -> evaluating -> done`` (or ``failed``,
with the stage and the error). The state is never held in memory only: it is derived, at every
start, from the experiment's folder,

- ``state.json`` (written atomically by the queue at every transition),
- ``checkpoints/latest`` (the trainer's atomic pointer to its newest complete checkpoint),
- ``final/`` (the trainer writes it only when the run reached its budget),
- ``eval.json`` (renamed into place once the evaluation has finished),

so a kill at any moment, of the queue, of the trainer or of the machine, loses at most the
steps after the newest checkpoint. Running the queue again resumes an interrupted experiment
from that checkpoint, only evaluates one that reached its budget, and skips finished ones.

The trainer and the evaluation run as child processes (``python -m ganzoo.train``,
``python -m ganzoo.metrics.cli``): a crash or an out-of-memory kill there is recorded and the
queue goes on. A child gets SIGTERM if the queue dies (Linux ``PR_SET_PDEATHSIG``), so the
trainer saves a checkpoint rather than training on unattended, and one lock per
``output_root`` keeps two queue runs (or a new one and a trainer still saving for the old)
out of the same folders.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .._io import atomic_write_json, atomic_write_text
from ..training.args import config_argv, long_options, option_argv
from ..training.config import parse_duration
from ..registry import MODELS
from ..rundir import (CONFIG, EVAL_MODEL_TMP, EVALS, RESULTS_JSONL, RESULTS_MD, prune, read_json,
                      read_jsonl, step_dir_name)
from .queue import Experiment, Queue, QueueError, launcher_argv
from .runs import RunInfo, checkpoint_step, format_duration, model_folder_ok, training_time
from .table import EVALUATED_AT, IMAGES_PER_S, TRAIN_TIME, Column, params_cell, results_table

__all__ = ["run_queue", "queue_status", "experiment_state", "train_command", "eval_command",
           "train_flags", "write_results", "detach", "ExperimentState"]

LOCK = ".queue.lock"
PIDFILE = ".queue.pid"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


# -- state ----------------------------------------------------------------------------------
@dataclass
class ExperimentState:
    """What the files of an experiment say about it."""

    status: str  # pending | interrupted | trained | done | changed
    steps: int | None = None  # newest checkpoint (or final) step
    record: dict[str, Any] | None = None  # state.json
    note: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.record and self.record.get("status") == "failed")


def experiment_state(exp: Experiment) -> ExperimentState:
    files = exp.files
    st = read_json(files.state)
    st = st if isinstance(st, dict) else None
    latest = files.latest_checkpoint()
    finished = files.final_ok()
    steps = latest[0] if latest else None
    if finished:
        card = (read_json(files.final / CONFIG) or {}).get("card") or {}
        steps = card.get("steps", steps)
    if st and st.get("train_hash") not in (None, exp.train_hash) and (latest or finished):
        return ExperimentState("changed", steps, st, "its settings in the queue file changed "
                               "since it trained; move its folder away to train it again")
    reached = st is not None and st.get("budget") == exp.budget and (
        st.get("status") in ("trained", "evaluating", "done") or
        (st.get("status") == "failed" and st.get("stage") == "eval"))
    if finished and (reached or (st is None and latest is None)):
        ev = read_json(files.eval)
        evaluated = isinstance(ev, dict) and "metrics" in ev and st is not None and \
            st.get("status") == "done" and st.get("eval_hash") == exp.eval_hash
        if exp.eval is None or evaluated:
            return ExperimentState("done", steps, st)
        return ExperimentState("trained", steps, st)
    if latest is not None:
        return ExperimentState("interrupted", steps, st)
    return ExperimentState("pending", None, st)


def _write_state(exp: Experiment, **changes) -> dict[str, Any]:
    st = read_json(exp.files.state)
    st = st if isinstance(st, dict) else {"name": exp.name}
    st.update(changes, updated=_now())
    exp.dir.mkdir(parents=True, exist_ok=True)
    # fsynced: after a power cut, the state must not be older than the trainer's checkpoints.
    atomic_write_json(exp.files.state, st, fsync=True)
    return st


# -- commands -------------------------------------------------------------------------------
def train_flags(train: dict[str, Any]) -> list[str]:
    """The trainer flags equivalent to a ``--config`` layer (what ``--dry-run`` prints), read
    off the trainer's parser (:func:`ganzoo.training.args.config_argv`)."""
    return config_argv(train)


def _remaining(exp: Experiment, resume_step: int | None) -> tuple[list[str], float | None]:
    """Flags that give a resumed run what is left of its wall-clock budget.

    The trainer counts ``duration`` from its own start, so a run resumed after 2 h of a 3 h
    budget would otherwise train 3 h more; the budget is per experiment, ~3 h in all
    (docs/experiments.md, "Fixed budgets, and how the queue keeps them"). Training time so
    far comes from ``metrics.jsonl``.
    """
    duration = exp.train.get("duration")
    if duration is None or resume_step is None:
        return [], None
    used = training_time(exp.files.records()) or 0.0
    left = parse_duration(duration) - used
    if left <= 1.0:  # spent: finish at the checkpoint (the trainer then writes final/)
        return ["--max-steps", str(resume_step)], 0.0
    return ["--duration", f"{left:.0f}s"], left


def train_command(exp: Experiment, state: ExperimentState) -> list[str]:
    resume = state.status == "interrupted"
    extra, _ = _remaining(exp, state.steps if resume else None)
    return [*launcher_argv(exp.launcher), "--config", str(exp.files.train_config),
            "--output-dir", str(exp.dir), "--no-progress",
            *(["--resume", "latest"] if resume else ["--overwrite"]), *extra]


def _reference(exp: Experiment) -> tuple[str, dict[str, Any]]:
    """The evaluation's reference and dataset kwargs: by default the training dataset, with
    its options (as the trainer's ``--eval-every`` does)."""
    ev = exp.eval or {}
    kwargs = dict(ev.get("dataset_kwargs") or {})
    if ev.get("reference"):
        return ev["reference"], kwargs
    run = exp.run_config
    dataset = run.dataset
    if not dataset:
        import torch

        with torch.device("meta"):
            dataset = MODELS.get(run.model)(**run.model_args).default_dataset
    return dataset, {**run.dataset_args, **kwargs}


def _kv_value(value: Any) -> str:
    """A value ``ganzoo eval``'s KEY=VALUE options read back unchanged (they try JSON first)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value)


# Evaluation settings eval_command writes itself: the reference and the options that take
# KEY=VALUE pairs (their values as ``ganzoo eval`` reads them back) or a negation.
_EVAL_OWN = ("reference", "dataset_kwargs", "metric_kwargs", "cache", "checkpoints")


def eval_checkpoint(exp: Experiment) -> str:
    """Which models of a run the queue scores: ``final`` (default), ``best``, or ``all`` (every
    kept checkpoint, then ``final/``)."""
    return (exp.eval or {}).get("checkpoints") or "final"


def eval_target(exp: Experiment, steps: int | None) -> tuple[Path, int | None, str | None]:
    """The model folder to score, the step it comes from, and why there is none (a run
    asked to score ``best/`` that has no complete one)."""
    if eval_checkpoint(exp) != "best":
        return exp.files.final, steps, None
    best = exp.files.best
    if not model_folder_ok(best):
        return best, None, (f"no best checkpoint ({best} is missing; train with --keep-best "
                            f"METRIC and --eval-every N to track one)")
    return best, checkpoint_step(best), None


def eval_command(exp: Experiment, steps: int | None, out: Path,
                 model_dir: Path | None = None) -> list[str]:
    """``ganzoo eval``'s arguments for the experiment's evaluation; each ``ganzoo.evaluate``
    keyword becomes the option of ``ganzoo.metrics.cli``'s parser that answers to its name
    (``feature_extractor_weights``: ``--fid-weights``, ``repeats``: ``--repeats``);
    keywords without one are left out. ``model_dir`` defaults to the run's ``final/``."""
    from ..metrics.cli import build_parser  # ganzoo.metrics loads torch: not at queue status

    ev = dict(exp.eval or {})
    reference, dkw = _reference(exp)
    options = long_options(build_parser())
    argv = [str(model_dir or exp.files.final), "--ref", reference]
    for key, value in ev.items():
        if key not in _EVAL_OWN and key in options:
            argv += option_argv(options[key], value)
    argv += [a for k, v in dkw.items() for a in ("-d", f"{k}={_kv_value(v)}")]
    argv += [a for m, kw in (ev.get("metric_kwargs") or {}).items() for k, v in kw.items()
             for a in ("--metric-kwarg", f"{m}.{k}={_kv_value(v)}")]
    if ev.get("cache") is False:
        argv.append("--no-cache")
    if steps is not None:
        argv += ["--step", str(steps)]
    return argv + ["--out", str(out), "--no-progress"]


def _show(argv: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


# -- children -------------------------------------------------------------------------------
def _die_with_parent(parent: int) -> Callable[[], None]:
    """``preexec_fn``: SIGTERM to the child when the queue dies (kill -9 included), so the
    trainer saves a checkpoint and exits instead of training on unattended."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the queue died before prctl took effect
            os._exit(1)

    return setup


class _Children:
    """Runs one child at a time; SIGINT/SIGTERM to the queue go on to it and stop the queue
    after it (the trainer then finishes its step and saves)."""

    def __init__(self, lock_fd: int | None):
        self.lock_fd = lock_fd
        self.proc: subprocess.Popen | None = None
        self.stop_signal: int | None = None

    def _on_signal(self, signum, frame):  # noqa: ARG002
        self.stop_signal = signum
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def __enter__(self):
        self._old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread (tests calling run_queue in a thread)
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    def run(self, argv: list[str], log: Path, header: str, root: Path, name: str) -> int:
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "a") as f:
            f.write(f"\n===== {_now()} {header}\n$ {_show(argv)}\n")
            f.flush()
            self.proc = subprocess.Popen(
                argv, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                preexec_fn=_die_with_parent(os.getpid()),
                pass_fds=(self.lock_fd,) if self.lock_fd is not None else ())
            _write_pidfile(root, child=self.proc.pid, experiment=name, stage=log.stem)
            while True:
                try:
                    code = self.proc.wait()
                    break
                except InterruptedError:  # pragma: no cover - PEP 475 retries already
                    continue
        self.proc = None
        return code


def _failed(exp: Experiment, say: Callable[[str], None], stage: str, code: int, error: str,
            doing: str) -> str:
    """Record a failed child in the experiment's state and say so in one line."""
    _write_state(exp, status="failed", stage=stage, error=error, exit_code=code)
    say(f"{exp.name}: FAILED {doing} (exit {code}): {error}")
    return "failed"


def _error_line(log: Path) -> str:
    """The error a child reported: its ``error:`` line, else the last line it wrote."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "no log"
    attempt = text.rsplit("\n===== ", 1)[-1].splitlines()[2:]
    lines = [ln.strip() for ln in attempt if ln.strip()]
    for ln in reversed(lines):
        if ": error: " in ln:
            return ln.split(": error: ", 1)[1]
    return lines[-1] if lines else "exited without output"


# -- the lock -------------------------------------------------------------------------------
def _write_pidfile(root: Path, **info) -> None:
    data = read_json(root / PIDFILE) or {}
    data.update(info)
    atomic_write_text(root / PIDFILE, json.dumps(data) + "\n")


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def running_queue(root: Path) -> dict[str, Any] | None:
    """The pid file of the queue run that holds ``root``'s lock, or None."""
    path = root / LOCK
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_json(root / PIDFILE) or {}
    finally:
        os.close(fd)
    return None


def _acquire(root: Path, say: Callable[[str], None], wait_s: float = 120.0) -> int:
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            info = read_json(root / PIDFILE) or {}
            if _alive(info.get("pid")):
                os.close(fd)
                raise QueueError(f"another `ganzoo queue run` (pid {info.get('pid')}) is running "
                                 f"on {root}; wait for it, or stop it with kill "
                                 f"{info.get('pid')} (its experiment saves a checkpoint and "
                                 f"resumes next time)")
            # The queue died and its trainer, told by PR_SET_PDEATHSIG, is still saving.
            if deadline is None:
                deadline = time.monotonic() + wait_s
                say(f"waiting for the previous queue's trainer (pid {info.get('child')}) to "
                    f"finish saving")
            if time.monotonic() > deadline:
                os.close(fd)
                raise QueueError(f"{root / LOCK} is still held by pid {info.get('child')} "
                                 f"after {wait_s:.0f} s; stop it, then run the queue again")
            time.sleep(0.5)
    atomic_write_text(root / PIDFILE, json.dumps({"pid": os.getpid(), "started": _now()}) + "\n")
    return fd


# -- results --------------------------------------------------------------------------------
def _row(exp: Experiment, root: Path, status: str, error: str | None = None) -> dict[str, Any]:
    info = RunInfo.read(exp.dir, exp.name)
    grids = [path for _, path in exp.files.sample_grids()]
    ev = info.evaluation
    return {
        "name": exp.name, "experiment": exp.group or exp.name, "seed": exp.seed,
        "status": status, "model": exp.train.get("model"),
        "dataset": info.dataset or exp.train.get("dataset"), "settings": exp.settings(),
        "steps": info.steps, "train_time_s": info.train_time, "images_per_s": info.images_per_s,
        "parameters": exp.parameters, "metrics": info.metrics,
        "protocol": info.protocol or None,
        "eval_id": _eval_id(ev) if ev else None,
        "final_grid": str(grids[-1].relative_to(root)) if grids else None,
        "error": error, "time": _now(),
    }


def _eval_id(ev: dict[str, Any]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(ev, sort_keys=True).encode()).hexdigest()[:16]


def _append_row(queue: Queue, row: dict[str, Any]) -> None:
    """One line appended to ``results.jsonl`` (fsynced; a line cut by a kill is skipped when
    read and the next append starts on a fresh line)."""
    path = queue.output_root / RESULTS_JSONL
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = ""
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            prefix = "" if f.read(1) == b"\n" else "\n"
    with open(path, "a") as f:
        f.write(prefix + json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _reconcile_rows(queue: Queue) -> None:
    """Append the row of every finished experiment that ``results.jsonl`` lacks (a kill
    between the evaluation and the append)."""
    have = {r.get("eval_id") for r in read_jsonl(queue.output_root / RESULTS_JSONL)}
    for exp in queue.runs():
        ev = read_json(exp.files.eval)
        if experiment_state(exp).status == "done" and isinstance(ev, dict) and \
                _eval_id(ev) not in have:
            _append_row(queue, _row(exp, queue.output_root, "done"))


def write_results(queue: Queue) -> Path:
    """``results.md``: one row per experiment of the queue, regenerated from the folders (the
    report's table, :func:`ganzoo.experiments.table.results_table`, with the queue's
    columns)."""
    runs, of = [], {}
    for exp in [r for e in queue.experiments for r in e.runs()]:
        info = RunInfo.read(exp.dir, exp.name, exp.group)
        runs.append(info)
        of[exp.name] = (exp, experiment_state(exp))
    table = results_table(runs, columns=_queue_columns(of),
                          after=(EVALUATED_AT, _samples_column(of)), headline=False)
    lines = [f"# Results: {queue.name}", ""]
    if queue.description:
        lines += [queue.summary, ""]
    lines += [f"Queue file: `{queue.path}`. Regenerated by `ganzoo queue run` ({_now()}).", ""]
    path = queue.output_root / RESULTS_MD
    queue.output_root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines + table.markdown()) + "\n")
    return path


def _queue_columns(of: dict[str, tuple[Experiment, ExperimentState]]) -> tuple[Column, ...]:
    """results.md's columns before the metrics: the experiment's name, its state (a failure
    with its stage and error), model, own settings, steps of its budget, time, speed, size."""
    def status(info: RunInfo) -> tuple[str, Any]:
        state = of[info.name][1]
        text = state.status
        if state.failed:
            rec = state.record or {}
            text = f"failed ({rec.get('stage')}): {rec.get('error')}"
        return text, text

    def steps(info: RunInfo) -> tuple[str, Any]:
        budget = of[info.name][0].train.get("max_steps")
        if info.steps is None:
            return "—", None
        return f"{info.steps:,}" + (f" / {budget:,}" if budget else ""), info.steps

    def model(info: RunInfo) -> tuple[str, Any]:
        name = of[info.name][0].train.get("model")
        return f"`{name}`", name

    return (Column("experiment", lambda r: (r.group, r.group)), Column("status", status),
            Column("model", model),
            Column("settings", lambda r: (of[r.name][0].settings() or "—", None)),
            Column("steps", steps), TRAIN_TIME, IMAGES_PER_S,
            Column("params", lambda r: params_cell(of[r.name][0].parameters)))


def _samples_column(of: dict[str, tuple[Experiment, ExperimentState]]) -> Column:
    """The newest sample grid, linked relative to results.md."""
    def cell(info: RunInfo) -> tuple[str, Any]:
        grids = of[info.name][0].files.sample_grids()
        if not grids:
            return "—", None
        grid = grids[-1][1]
        return f"[{grid.stem}]({info.name}/{grid.relative_to(info.dir).as_posix()})", None

    return Column("final samples", cell)


# -- running --------------------------------------------------------------------------------
def _summary(info: RunInfo) -> str:
    m = info.metrics
    return ", ".join(f"{k} {v:.4g}" for k, v in list(m.items())[:4]) or "no metrics"


def run_queue(queue: Queue, *, only: list[str] | None = None, stop_on_error: bool = False,
              dry_run: bool = False, say: Callable[[str], None] = print) -> int:
    """Run (or, with ``dry_run``, print) the selected experiments in order; returns the exit
    code: 0 all well, 1 when an experiment failed, 128 + signal when stopped."""
    selected = queue.runs(only)
    n_exp = len(queue.select(only))
    what = f"{n_exp} experiment(s)" + (f", {len(selected)} runs" if len(selected) != n_exp
                                       else "")
    for line, names in queue.warnings.items():
        say(f"warning: {line} (experiments {', '.join(names)}); change the path before a "
            f"real run")
    if dry_run:
        return _dry_run(queue, selected, what, say)
    lock_fd = _acquire(queue.output_root, say)
    failures = 0
    t0 = time.monotonic()
    try:
        _reconcile_rows(queue)
        with _Children(lock_fd) as children:
            for exp in selected:
                outcome = _run_one(queue, exp, children, say)
                if outcome == "stopped":
                    sig = children.stop_signal or signal.SIGTERM
                    say(f"queue stopped by {signal.Signals(sig).name}; run the same command "
                        f"to resume")
                    return 128 + int(sig)
                if outcome == "failed":
                    failures += 1
                    if stop_on_error:
                        say("stopping: --stop-on-error")
                        break
        write_results(queue)
    finally:
        os.close(lock_fd)
    say(f"queue {queue.name}: {what} in "
        f"{format_duration(time.monotonic() - t0)}; results: "
        f"{queue.output_root / RESULTS_MD}" + (f"; {failures} failed" if failures else ""))
    return 1 if failures else 0


def _record_failure(queue, exp) -> None:
    """A results row for a failed experiment, with the error its state file recorded."""
    error = (read_json(exp.files.state) or {}).get("error")
    _append_row(queue, _row(exp, queue.output_root, "failed", error))
    write_results(queue)


def _run_one(queue: Queue, exp: Experiment, children: _Children,
             say: Callable[[str], None]) -> str:
    state = experiment_state(exp)
    if state.status == "changed":
        say(f"{exp.name}: skipped: {state.note}")
        return "skipped"
    if state.status == "done":
        say(f"{exp.name}: done ({_summary(RunInfo.read(exp.dir, exp.name))})")
        return "done"
    if state.status in ("pending", "interrupted"):
        outcome = _train(exp, state, children, say, queue.output_root)
        if outcome != "trained":
            if outcome == "failed":
                _record_failure(queue, exp)
            return outcome
        state = experiment_state(exp)
    if exp.eval is not None and state.status == "trained":
        outcome = _evaluate(exp, state, children, say, queue.output_root)
        if outcome != "done":
            if outcome == "failed":
                _record_failure(queue, exp)
            return outcome
    elif exp.eval is None:
        _write_state(exp, status="done", eval_hash=None, error=None)
    _append_row(queue, _row(exp, queue.output_root, "done"))
    write_results(queue)
    say(f"{exp.name}: done ({_summary(RunInfo.read(exp.dir, exp.name))})")
    return "done"


def _train(exp: Experiment, state: ExperimentState, children: _Children,
           say: Callable[[str], None], root: Path) -> str:
    files = exp.files
    exp.dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(files.experiment, exp.record(), fsync=True)
    atomic_write_json(files.train_config, exp.train, fsync=True)
    argv = train_command(exp, state)
    attempts = int((state.record or {}).get("attempts", 0)) + 1
    _write_state(exp, status="training", stage="train", error=None, attempts=attempts,
                 train_hash=exp.train_hash, started=(state.record or {}).get("started", _now()))
    what = f"resuming from step {state.steps}" if state.status == "interrupted" else "training"
    say(f"{exp.name}: {what} (log: {files.train_log})")
    t0 = time.monotonic()
    code = children.run(argv, files.train_log, f"{exp.name}: attempt {attempts}", root,
                        exp.name)
    if children.stop_signal is not None:
        return "stopped"
    if code != 0:
        return _failed(exp, say, "train", code, _error_line(files.train_log), "in training")
    if not files.final_ok():
        say(f"{exp.name}: the trainer stopped before its budget (a signal?); run the queue "
            f"again to resume")
        return "stopped"
    keep = exp.run_config.keep
    removed = prune(files.checkpoints, keep)
    info = RunInfo.read(exp.dir, exp.name)
    _write_state(exp, status="trained", stage=None, error=None, steps=info.steps,
                 budget=exp.budget, train_time_s=info.train_time)
    say(f"{exp.name}: trained to step {info.steps} ({format_duration(info.train_time)} of "
        f"training in all; this attempt {format_duration(time.monotonic() - t0)} with start-up)"
        + (f"; pruned {len(removed)} checkpoint(s)" if removed else ""))
    return "trained"


def _score(exp: Experiment, model_dir: Path, step: int | None, children: _Children,
           say: Callable[[str], None], root: Path, what: str) -> dict[str, Any] | str:
    """One ``ganzoo eval`` child on ``model_dir``: its result, or ``"stopped"`` / ``"failed"``
    (recorded in the state)."""
    files = exp.files
    tmp = files.eval_tmp
    tmp.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "ganzoo.metrics.cli",
            *eval_command(exp, step, tmp, model_dir)]
    code = children.run(argv, files.eval_log, f"{exp.name}: {what}", root, exp.name)
    if children.stop_signal is not None:
        return "stopped"
    result = read_json(tmp) if code == 0 else None
    tmp.unlink(missing_ok=True)
    if not isinstance(result, dict) or "metrics" not in result:
        error = _error_line(files.eval_log) if code else "no result JSON was written"
        return _failed(exp, say, "eval", code, error, "in evaluation")
    return result


def _evaluate_checkpoints(exp: Experiment, state: ExperimentState, children: _Children,
                          say: Callable[[str], None], root: Path) -> str:
    """``eval: {checkpoints: all}``: every kept checkpoint but the final one (``final/`` is
    scored next), each written as a model folder by a child, scored into
    ``evals/step_XXXXXXXX.json``; those already scored are skipped (a resumed queue)."""
    files = exp.files
    model_dir = files.path / EVAL_MODEL_TMP
    for step, ckpt in files.list_checkpoints():
        out = files.path / EVALS / f"{step_dir_name(step)}.json"
        if step == state.steps or out.is_file():
            continue
        shutil.rmtree(model_dir, ignore_errors=True)
        argv = [sys.executable, "-m", "ganzoo.experiments.checkpoint_model", str(ckpt),
                str(model_dir)]
        code = children.run(argv, files.eval_log, f"{exp.name}: checkpoint {step} as a model",
                            root, exp.name)
        if children.stop_signal is not None:
            return "stopped"
        if code != 0:
            return _failed(exp, say, "eval", code, _error_line(files.eval_log),
                           f"writing checkpoint {step} as a model")
        result = _score(exp, model_dir, step, children, say, root, f"evaluation of step {step}")
        if isinstance(result, str):
            return result
        result.setdefault("protocol", {})["checkpoint"] = f"checkpoint {step_dir_name(step)}"
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out, result, fsync=True)
    shutil.rmtree(model_dir, ignore_errors=True)
    return "done"


def _evaluate(exp: Experiment, state: ExperimentState, children: _Children,
              say: Callable[[str], None], root: Path) -> str:
    files = exp.files
    model_dir, step, missing = eval_target(exp, state.steps)
    if missing is not None:  # nothing to score: recorded, not retried at every queue run
        atomic_write_json(files.eval, {"metrics": {}, "protocol": {"checkpoint": "best"},
                                       "skipped": missing}, fsync=True)
        _write_state(exp, status="done", stage=None, error=None, eval_hash=exp.eval_hash,
                     note=f"evaluation skipped: {missing}")
        say(f"{exp.name}: evaluation skipped: {missing}")
        return "done"
    _write_state(exp, status="evaluating", stage="eval", error=None)
    say(f"{exp.name}: evaluating (log: {files.eval_log})")
    if eval_checkpoint(exp) == "all":
        outcome = _evaluate_checkpoints(exp, state, children, say, root)
        if outcome != "done":
            return outcome
    result = _score(exp, model_dir, step, children, say, root, "evaluation")
    if isinstance(result, str):
        return result
    result.setdefault("protocol", {})["checkpoint"] = \
        "best" if eval_checkpoint(exp) == "best" else "final"
    atomic_write_json(files.eval, result, fsync=True)
    _write_state(exp, status="done", stage=None, error=None, eval_hash=exp.eval_hash)
    return "done"


def _dry_run(queue: Queue, selected: list[Experiment], what: str,
             say: Callable[[str], None]) -> int:
    say(f"queue {queue.name} ({queue.path}): {what} into "
        f"{queue.output_root}")
    for exp in selected:
        state = experiment_state(exp)
        say(f"{exp.name}: {state.status}" + (f" at step {state.steps}" if state.steps else "")
            + (f" - {exp.description.splitlines()[0]}" if exp.description else ""))
        if state.status in ("done", "changed"):
            say("  nothing to run" + (f": {state.note}" if state.note else ""))
            continue
        if state.status in ("pending", "interrupted"):
            launcher = _show(launcher_argv(exp.launcher)).replace(sys.executable, "python")
            extra, _ = _remaining(exp, state.steps if state.status == "interrupted" else None)
            resume = ["--resume", "latest"] if state.status == "interrupted" else []
            train = dict(exp.train)
            if extra:  # what is left of the budget replaces it in the printed command
                train[extra[0][2:].replace("-", "_")] = extra[1]
            say(f"  train: {launcher} "
                f"{_show(train_flags(train) + ['--output-dir', str(exp.dir)] + resume)}")
        if exp.eval is not None:
            model_dir, step, _ = eval_target(exp, state.steps)
            say(f"  eval:  ganzoo eval "
                f"{_show(eval_command(exp, step, exp.files.eval, model_dir))}")
    return 0


# -- status ---------------------------------------------------------------------------------
def queue_status(queue: Queue, say: Callable[[str], None] = print) -> int:
    running = running_queue(queue.output_root)
    head = f"queue {queue.name}: {queue.output_root}"
    if running is not None:
        head += f" (running: pid {running.get('pid')}" + (
            f", {running.get('experiment')} {running.get('stage')}"
            if running.get("experiment") else "") + ")"
    say(head)
    rows = [("experiment", "state", "progress", "result")]
    for exp in queue.runs():
        state = experiment_state(exp)
        info = RunInfo.read(exp.dir, exp.name)
        status = state.status
        if running and running.get("experiment") == exp.name:
            status = {"train": "training", "eval": "evaluating"}.get(running.get("stage"),
                                                                    status)
        elif state.failed:
            status = f"failed ({(state.record or {}).get('stage')})"
        progress = _progress(exp, info)
        if state.status == "interrupted" and status == "interrupted":
            progress += f" (checkpoint at step {state.steps})"
        rows.append((exp.name, status, progress, _result(state, info)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        say("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    return 0


def _progress(exp: Experiment, info: RunInfo) -> str:
    logged = max((r["step"] for r in info.records if isinstance(r.get("step"), int)),
                 default=None)
    step = max(x for x in (logged, info.steps, 0) if x is not None)
    if not step and not info.records:
        return "-"
    parts = []
    if exp.train.get("max_steps"):
        parts.append(f"{step}/{exp.train['max_steps']} steps")
    elif step:
        parts.append(f"{step} steps")
    t = info.train_time
    if exp.train.get("duration"):
        parts.append(f"{format_duration(t or 0)}/{exp.train['duration']}")
    elif t:
        parts.append(format_duration(t))
    return ", ".join(parts) or "-"


def _result(state: ExperimentState, info: RunInfo) -> str:
    if state.failed:
        return str((state.record or {}).get("error"))
    if state.status == "changed":
        return state.note
    if info.metrics:
        return _summary(info)
    return ""


# -- detaching ------------------------------------------------------------------------------
def detach(queue: Queue, argv: list[str], say: Callable[[str], None] = print) -> int:
    """Start ``ganzoo queue run`` again in its own session (``setsid``), logging to
    ``<output_root>/queue.log``, so that it survives the terminal closing."""
    info = running_queue(queue.output_root)
    if info is not None:
        raise QueueError(f"another `ganzoo queue run` (pid {info.get('pid')}) is running on "
                         f"{queue.output_root}")
    queue.output_root.mkdir(parents=True, exist_ok=True)
    log = queue.output_root / "queue.log"
    with open(log, "a") as f:
        f.write(f"\n===== {_now()} ganzoo queue run {_show(argv)}\n")
        f.flush()
        proc = subprocess.Popen([sys.executable, "-m", "ganzoo.cli", "queue", "run", *argv],
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ,
                                                             "PYTHONUNBUFFERED": "1"})
    say(f"queue {queue.name}: running in its own session (pid {proc.pid}); log: {log}; "
        f"progress: ganzoo queue status {queue.path}")
    return 0
