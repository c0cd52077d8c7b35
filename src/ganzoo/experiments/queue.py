"""The queue file: experiments as trainer run configs plus an evaluation, checked up front.

A queue file is YAML::

    description: multi-resolution GeneGAN ablations        # optional
    output_root: outputs/genegan                            # <output_root>/<name>/ per experiment
    defaults:                                               # merged into every experiment
      dataset: celeba
      dataset_args: {root: data/celeba, resolution: 128}
      duration: 3h
      keep: 2
      eval: {metrics: [fid], n: 5000}
    experiments:
      - name: EXP00
        model: genegan_multires
      - name: EXP03
        model: genegan_multires
        model_args: {multi_res_mode: random}

An experiment holds the keys of the trainer's ``--config`` (``RunConfig``: model, dataset,
model_args, dataset_args, max_steps, duration, batch_size, keep, ...) except the ones the queue
owns (output_dir, resume, overwrite, progress), plus ``name``, ``description``, ``eval`` (the
keyword arguments of ``ganzoo.evaluate``, plus ``checkpoints: final|best|all``; absent: no
evaluation), ``launcher`` (the command that starts the trainer; default
``python -m ganzoo.train``), ``seeds`` (training seeds: one run folder each,
``<output_root>/<name>/seed<N>``, the seed going to the trainer's ``--seed``; without it, one
run in ``<output_root>/<name>``) and ``baseline`` (the experiment it is compared with; default
the queue's first). Mappings merge with the defaults key by key; ``eval: null`` or
``seeds: null`` in an experiment turns the defaults' evaluation or seeds off.

Every error is one line naming the file, the experiment and the field.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .. import config as cfg
from ..registry import DATASETS, METRICS, MODELS
from ..rundir import RunDir, seed_dir_name
from ..training.config import RunConfig, resolve_run_config

__all__ = ["QueueError", "Queue", "Experiment", "load_queue", "resolve_queue_path",
           "shipped_queues", "TRAIN_KEYS", "EVAL_KEYS"]


class QueueError(ValueError):
    """A queue file that cannot run; the message is one line naming the experiment and field."""


def _run_fields() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(RunConfig)}


# Set by the queue for every experiment: the folder, resuming, and no progress bars in logs.
QUEUE_OWNED = {"output_dir": "the queue trains into <output_root>/<name>",
               "resume": "the queue resumes interrupted experiments itself",
               "overwrite": "the queue never replaces a run that has checkpoints",
               "progress": "the queue logs to files, without progress bars"}
TRAIN_KEYS = tuple(k for k in _run_fields() if k not in QUEUE_OWNED)
EXTRA_KEYS = ("name", "description", "eval", "launcher", "seeds", "baseline")
TOP_KEYS = ("description", "output_root", "defaults", "experiments")
# ganzoo.evaluate's keyword arguments that ``ganzoo eval`` takes, with their types.
EVAL_KEYS: dict[str, Any] = {
    "reference": str, "metrics": list, "n": int, "n_real": int, "batch_size": int,
    "feature_extractor": str, "feature_extractor_weights": str, "resizer": str,
    "dataset_kwargs": dict, "split": str, "resolution": int, "outputs": list,
    "metric_kwargs": dict, "seed": int, "cache": bool, "cache_dir": str, "device": str,
    "repeats": int,
}
# The queue's own evaluation setting: which of a run's models are scored (final/, the
# --keep-best checkpoint best/, or every kept checkpoint and final/).
EVAL_CHECKPOINTS = ("final", "best", "all")
# Fields that change how a run is watched or stored, not what it computes: editing them in
# the file leaves finished experiments finished. Budget fields are compared on their own.
BUDGET_KEYS = ("max_steps", "duration")
UNTRACKED_KEYS = ("keep", "save_every", "sample_every", "num_samples", "log_every", "log_with",
                  "wandb_mode", "num_workers", "eval_batch_size", "verbose")
# Options naming files that must exist before a real run (not a dry run) starts.
PATH_OPTIONS = {"dataset_args": ("root", "root_a", "root_b"),
                "model_args": ("init_vqvae_ckpt", "init_vqvae_map"),
                "eval": ("feature_extractor_weights",)}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
DEFAULT_LAUNCHER = ("python", "-m", "ganzoo.train")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings merge key by key (``None`` in ``top`` wins)."""
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass
class Experiment:
    """One experiment of a queue, resolved and checked."""

    name: str
    description: str
    train: dict[str, Any]  # the trainer's --config layer (keys the file sets)
    eval: dict[str, Any] | None  # ganzoo.evaluate kwargs; None: not evaluated
    launcher: list[str]
    dir: Path
    own: dict[str, Any] = field(default_factory=dict)  # keys this experiment sets itself
    parameters: int | None = None
    seeds: list[int] | None = None  # training seeds, one run folder each; None: one run
    seed: int | None = None  # set on one seed's run (:meth:`runs`)
    group: str = ""  # the experiment's name (``name`` of a seed's run is ``EXP03/seed1``)
    baseline: str | None = None  # the experiment it is compared with; None: it is the first

    def runs(self) -> list["Experiment"]:
        """The runs the queue trains: one per seed (``<dir>/seed<N>``, trained with
        ``--seed N``), or the experiment itself without ``seeds``."""
        if not self.seeds:
            return [self]
        return [dataclasses.replace(self, name=f"{self.group}/{seed_dir_name(s)}",
                                    dir=self.dir / seed_dir_name(s), train={**self.train,
                                                                           "seed": s},
                                    seed=s) for s in self.seeds]

    @property
    def files(self) -> RunDir:
        """The experiment's run folder, by name (:class:`ganzoo.rundir.RunDir`)."""
        return RunDir(self.dir)

    @property
    def run_config(self):
        """The resolved ``RunConfig`` (trainer defaults under the file's values)."""
        return resolve_run_config({**self.train, "output_dir": str(self.dir)})

    @property
    def data_paths(self) -> list[tuple[str, str, str]]:
        """``(section, key, path)`` of every data file or folder it names."""
        return list(_paths(self.run_config, self.eval))

    @property
    def train_hash(self) -> str:
        """What the run computes: the resolved config without budget and bookkeeping fields."""
        d = self.run_config.to_dict()
        for key in (*BUDGET_KEYS, *UNTRACKED_KEYS, *QUEUE_OWNED):
            d.pop(key, None)
        return _digest(d)

    @property
    def budget(self) -> dict[str, Any]:
        return {k: self.train.get(k) for k in BUDGET_KEYS}

    @property
    def eval_hash(self) -> str | None:
        return None if self.eval is None else _digest(self.eval)

    def settings(self) -> str:
        """The experiment's own settings in one short line (for tables)."""
        parts = []
        for key, value in self.own.items():
            if key in ("name", "description", "eval", "launcher", "model", "seeds", "baseline"):
                continue
            if isinstance(value, dict):
                parts += [f"{k}={_short(v)}" for k, v in value.items()]
            else:
                parts.append(f"{key}={_short(value)}")
        return ", ".join(parts)

    def record(self) -> dict[str, Any]:
        """What ``<dir>/experiment.json`` holds: the experiment as it ran."""
        return {"name": self.name, "description": self.description, "train": self.train,
                "eval": self.eval, "launcher": self.launcher, "own": self.own,
                "settings": self.settings(), "train_hash": self.train_hash,
                "eval_hash": self.eval_hash, "parameters": self.parameters,
                "experiment": self.group or self.name, "seed": self.seed, "seeds": self.seeds,
                "baseline": self.baseline}


def summary(description: str) -> str:
    return " ".join(description.strip().split("\n\n")[0].split())


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass
class Queue:
    path: Path
    description: str
    output_root: Path
    experiments: list[Experiment]
    # Missing data paths of a dry run: message -> the experiments naming that path.
    warnings: dict[str, list[str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def summary(self) -> str:
        """The description's first paragraph, on one line."""
        return summary(self.description)

    def runs(self, only: list[str] | None = None) -> list[Experiment]:
        """The selected experiments' runs in the order the queue trains them: every
        experiment's first seed, then every second seed, ..., so that a queue stopped early
        still holds one run of each experiment."""
        selected = [e.runs() for e in self.select(only)]
        rounds = max(len(r) for r in selected) if selected else 0
        return [r[i] for i in range(rounds) for r in selected if i < len(r)]

    def select(self, only: list[str] | None) -> list[Experiment]:
        if not only:
            return list(self.experiments)
        names = [e.name for e in self.experiments]
        for name in only:
            if name not in names:
                hint = cfg.did_you_mean(name, names)
                raise QueueError(f"{self.path}: --only {name}: no such experiment{hint} "
                                 f"(experiments: {', '.join(names)})")
        return [e for e in self.experiments if e.name in only]


# -- shipped queues -------------------------------------------------------------------------
def _shipped_dir():
    return resources.files("ganzoo") / "queues"


def shipped_queues() -> dict[str, Path]:
    """Queue files that ship with ganzoo, by name (file name without ``.yaml``)."""
    folder = _shipped_dir()
    if not folder.is_dir():
        return {}
    return {Path(p.name).stem: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def resolve_queue_path(spec: str | os.PathLike) -> Path:
    """A queue file path, or the name of a shipped queue (``ganzoo queue list``)."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_queues()
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if str(spec) == path.name and name in shipped:
        return shipped[name]
    hint = cfg.did_you_mean(name, shipped)
    raise QueueError(f"no queue file {spec}{hint} (shipped queues: "
                     f"{', '.join(shipped) or 'none'}; see `ganzoo queue list`)")


# -- loading and checking -------------------------------------------------------------------
def load_queue(spec: str | os.PathLike, *, output_root: str | os.PathLike | None = None,
               check_paths: bool = True) -> Queue:
    """Read and check a queue file. ``check_paths=False`` (dry runs) turns missing data files
    into warnings, so that a shipped queue can be inspected before its paths are changed."""
    path = resolve_queue_path(spec)
    where = str(path)
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
    except Exception as e:  # noqa: BLE001 - YAML errors come in several classes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise QueueError(f"{where}: cannot parse YAML: {first}") from e
    if not isinstance(data, dict):
        raise QueueError(f"{where}: a queue file holds a mapping with output_root, defaults and "
                         f"experiments, got {type(data).__name__}")
    _check_keys(where, "", data, TOP_KEYS)
    root = output_root if output_root is not None else data.get("output_root")
    if not root or not isinstance(root, (str, os.PathLike)):
        raise QueueError(f"{where}: output_root is missing (the folder the experiments go to)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise QueueError(f"{where}: defaults must be a mapping, got {type(defaults).__name__}")
    _check_keys(where, "defaults: ", defaults, TRAIN_KEYS + EXTRA_KEYS)
    if "name" in defaults:
        raise QueueError(f"{where}: defaults: 'name' belongs to each experiment")
    items = data.get("experiments")
    if not isinstance(items, list) or not items:
        raise QueueError(f"{where}: experiments must be a non-empty list of mappings")
    queue = Queue(path=path, description=str(data.get("description") or "").strip(),
                  output_root=Path(os.path.expanduser(os.fspath(root))), experiments=[])
    seen: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise QueueError(f"{where}: experiments[{i}] must be a mapping, got "
                             f"{type(item).__name__}")
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise QueueError(f"{where}: experiments[{i}]: 'name' must be a folder name "
                             f"(letters, digits, '.', '_', '-'), got {name!r}")
        if name in seen:
            raise QueueError(f"{where}: experiment {name}: the name is used twice")
        seen.add(name)
        queue.experiments.append(_experiment(where, name, defaults, item, queue.output_root,
                                             check_paths, queue.warnings))
    _check_baselines(where, queue.experiments)
    return queue


def _check_baselines(where: str, experiments: list[Experiment]) -> None:
    """Each experiment's baseline names another experiment of the queue; by default the
    first (which is nobody's experiment, it is the baseline)."""
    names = [e.name for e in experiments]
    for exp in experiments:
        if exp.baseline is None:
            exp.baseline = None if exp.name == names[0] else names[0]
        elif exp.baseline == exp.name:
            exp.baseline = None
        elif exp.baseline not in names:
            hint = cfg.did_you_mean(exp.baseline, names)
            raise QueueError(f"{where}: experiment {exp.name}: baseline: no experiment "
                             f"'{exp.baseline}'{hint} (experiments: {', '.join(names)})")


def _check_seeds(at: str, merged: dict, item: dict) -> list[int] | None:
    seeds = merged.get("seeds")
    if seeds is None:
        return None
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise QueueError(f"{at}: seeds must be a non-empty list of seeds (integers >= 0), "
                         f"e.g. [0, 1, 2], got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise QueueError(f"{at}: seeds: a seed is given twice in {seeds}")
    if "seed" in item:
        raise QueueError(f"{at}: seed and seeds are both set; seeds gives each run its "
                         f"--seed (remove seed, or set seeds: null)")
    return list(seeds)


def _check_keys(where: str, prefix: str, data: dict, allowed) -> None:
    for key in data:
        if key in QUEUE_OWNED and prefix != "":
            raise QueueError(f"{where}: {prefix}'{key}' is set by the queue "
                             f"({QUEUE_OWNED[key]}); remove it")
        if key not in allowed:
            hint = cfg.did_you_mean(str(key), allowed)
            raise QueueError(f"{where}: {prefix}unknown key '{key}'{hint}")


def _experiment(where: str, name: str, defaults: dict, item: dict, root: Path,
                check_paths: bool, warnings: dict[str, list[str]]) -> Experiment:
    at = f"{where}: experiment {name}"
    _check_keys(where, f"experiment {name}: ", item, TRAIN_KEYS + EXTRA_KEYS)
    merged = merge(defaults, item)
    train = {k: v for k, v in merged.items() if k in TRAIN_KEYS}
    exp = Experiment(name=name, description=str(merged.get("description") or "").strip(),
                     train=train, eval=None, launcher=_launcher(at, merged.get("launcher")),
                     dir=root / name, own={k: v for k, v in item.items() if k != "name"},
                     seeds=_check_seeds(at, merged, item), group=name)
    baseline = merged.get("baseline")
    if baseline is not None and not isinstance(baseline, str):
        raise QueueError(f"{at}: baseline must be an experiment's name, got {baseline!r}")
    exp.baseline = baseline
    try:
        run = exp.run_config
    except (ValueError, TypeError, KeyError) as e:
        raise QueueError(f"{at}: {_msg(e)}") from None
    if not run.model:
        raise QueueError(f"{at}: no model (set model: NAME; see `ganzoo list models`)")
    if run.max_steps is None and run.duration is None:
        raise QueueError(f"{at}: no budget: set max_steps and/or duration (e.g. duration: 3h)")
    if run.lr_schedule != "constant" and run.max_steps is None:
        raise QueueError(f"{at}: lr_schedule {run.lr_schedule} needs max_steps")
    if check_paths:
        import shutil

        command = launcher_argv(exp.launcher)[0]
        if shutil.which(command) is None:
            raise QueueError(f"{at}: launcher: command '{command}' not found")
    exp.parameters = _check_model(at, run.model, run.model_args)
    if run.dataset:
        _check_dataset(at, run.dataset, run.dataset_args)
    if "eval" in merged and merged["eval"] is not None:
        exp.eval = _check_eval(at, merged["eval"])
    for section, key, value in _paths(run, exp.eval):
        if Path(os.path.expanduser(value)).exists():
            continue
        if check_paths:
            raise QueueError(f"{at}: {section}.{key}: {value} does not exist (change the "
                             f"path in the queue file)")
        line = f"{where}: {section}.{key}: {value} does not exist"
        warnings.setdefault(line, []).append(name)
    return exp


def _paths(run, ev: dict[str, Any] | None):
    """``(section, key, path)`` of every data file an experiment names (the ``mix``
    dataset's ``sources`` are folders or dataset mappings that may hold a ``root``)."""
    for section, keys in PATH_OPTIONS.items():
        values = (ev if section == "eval" else getattr(run, section)) or {}
        for key in keys:
            if isinstance(values.get(key), str):
                yield section, key, values[key]
    for i, source in enumerate(run.dataset_args.get("sources") or []):
        if isinstance(source, str):
            yield "dataset_args", f"sources[{i}]", source
        elif isinstance(source, dict) and isinstance(source.get("root"), str):
            yield "dataset_args", f"sources[{i}].root", source["root"]


def _msg(e: BaseException) -> str:
    return e.args[0] if isinstance(e, KeyError) and e.args else str(e)


def _launcher(at: str, value) -> list[str]:
    if value is None:
        return list(DEFAULT_LAUNCHER)
    if isinstance(value, str):
        value = shlex.split(value)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise QueueError(f"{at}: launcher must be a command, e.g. 'torchrun --standalone "
                         f"--nproc_per_node 8 -m ganzoo.train', got {value!r}")
    return list(value)


def launcher_argv(launcher: list[str]) -> list[str]:
    """The launcher with ``python`` meaning this interpreter, and ``torchrun`` or
    ``accelerate`` found next to it when they are not on PATH (a venv used without
    activating it): the trainer runs in the queue's environment."""
    import shutil

    head, rest = launcher[0], list(launcher[1:])
    if head in ("python", "python3"):
        return [sys.executable, *rest]
    if shutil.which(head) is None and os.sep not in head:
        beside = Path(sys.executable).parent / head
        if beside.is_file():
            return [str(beside), *rest]
    return [head, *rest]


def _check_model(at: str, model: str, model_args: dict[str, Any]) -> int | None:
    """The preset exists and takes these overrides; built on ``meta`` (no memory), which
    also gives the parameter count."""
    import torch

    try:
        MODELS.entry(model)
    except KeyError as e:
        raise QueueError(f"{at}: model: {_msg(e)}") from None
    try:
        with torch.device("meta"):
            built = MODELS.get(model)(**model_args)
    except (KeyError, ValueError, TypeError) as e:
        raise QueueError(f"{at}: model_args: {_msg(e)}") from None
    return sum(p.numel() for n, p in built.named_parameters() if not n.startswith("ema."))


def _check_dataset(at: str, dataset: str, options: dict[str, Any]) -> None:
    from ..training.data import check_dataset_options  # torch: not for `ganzoo queue list`

    try:
        DATASETS.entry(dataset)
    except KeyError as e:
        raise QueueError(f"{at}: dataset: {_msg(e)}") from None
    try:
        check_dataset_options(dataset, dict(options))
    except (KeyError, ValueError, TypeError) as e:
        raise QueueError(f"{at}: dataset_args: {_msg(e)}") from None


def _check_eval(at: str, value) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise QueueError(f"{at}: eval must be a mapping of ganzoo.evaluate arguments "
                         f"(metrics, n, ...), got {type(value).__name__}")
    out = dict(value)
    for key, v in value.items():
        if key == "checkpoints":
            if v not in EVAL_CHECKPOINTS:
                raise QueueError(f"{at}: eval.checkpoints must be one of "
                                 f"{', '.join(EVAL_CHECKPOINTS)}, got {v!r}")
            continue
        if key not in EVAL_KEYS:
            hint = cfg.did_you_mean(str(key), EVAL_KEYS)
            raise QueueError(f"{at}: eval: unknown key '{key}'{hint}")
        kind = EVAL_KEYS[key]
        if key == "metrics" and isinstance(v, str):
            out[key] = v = [v]
        ok = isinstance(v, kind) and not (kind is int and isinstance(v, bool))
        if not ok:
            raise QueueError(f"{at}: eval.{key} must be a {kind.__name__}, got {v!r}")
        if kind is int and v < (0 if key == "seed" else 1):
            raise QueueError(f"{at}: eval.{key} must be positive, got {v}")
    for metric in out.get("metrics", []):
        try:
            METRICS.entry(metric)
        except KeyError as e:
            raise QueueError(f"{at}: eval.metrics: {_msg(e)}") from None
    extractor = out.get("feature_extractor")
    if extractor is not None:
        from ..metrics.extractors import list_feature_extractors  # torch, an optional part

        names = list_feature_extractors()
        if extractor not in names:
            hint = cfg.did_you_mean(extractor, names)
            raise QueueError(f"{at}: eval.feature_extractor: unknown extractor "
                             f"'{extractor}'{hint}")
    if out.get("resizer") not in (None, "torch", "pil_bicubic"):
        raise QueueError(f"{at}: eval.resizer must be torch or pil_bicubic, got "
                         f"{out['resizer']!r}")
    return out
