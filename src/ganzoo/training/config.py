"""The run configuration: one typed dataclass, filled from defaults, a config file and flags.

Precedence, lowest first: ``RunConfig`` defaults < the run being resumed (``OUT/config.json``)
< ``--config run.yaml|json`` < command-line flags. ``--set key=value`` sets a model config field
and ``--set data.key=value`` a dataset option; both are type-checked against their target
(the family's config dataclass, the dataset factory's signature) before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import config as cfg

__all__ = ["RunConfig", "parse_duration", "load_config_file", "resolve_run_config"]


@dataclass
class RunConfig:
    """Everything a training run needs; saved as ``OUT/config.json`` and in each checkpoint."""

    model: str = ""
    dataset: str = ""
    output_dir: str = ""
    model_args: dict[str, Any] = field(default_factory=dict)  # model config overrides
    dataset_args: dict[str, Any] = field(default_factory=dict)  # build_dataset options
    max_steps: int | None = None
    duration: str | None = None  # "3h", "90m", "1h30m", "45s" or seconds
    batch_size: int = 32  # per process
    grad_accum: int = 1
    lr: dict[str, float] = field(default_factory=dict)  # group (or "*") -> learning rate
    lr_schedule: Literal["constant", "cosine", "linear"] = "constant"
    lr_end: float = 0.0  # final learning rate of cosine / linear (capped at each group's base)
    warmup_steps: int = 0
    lr_decay_start: int = 0  # cosine / linear hold the base rate until this step
    lr_decay_every: int | None = None  # linear: a staircase of K-step blocks (schedules.lr_at)
    clip_grad_norm: dict[str, float] = field(default_factory=dict)  # group (or "*") -> max norm
    optim: dict[str, dict[str, Any]] = field(default_factory=dict)  # group -> OptimizerSpec fields
    mixed_precision: Literal["no", "fp16", "bf16"] | None = None  # None: Accelerate's setting
    ema_decay: float | None = None  # None: the family's default_ema_decay (the warm-up's cap)
    ema_warmup_power: float | None = None  # None: the family's default_ema_warmup_power
    ema_start: int | None = None  # None: the family's default_ema_start
    seed: int = 0
    save_every: int = 1000
    sample_every: int = 500
    num_samples: int = 16
    eval_every: int = 0
    eval_metrics: list[str] = field(default_factory=lambda: ["fid"])
    eval_n: int = 1000
    eval_batch_size: int | None = None
    # The options of `ganzoo eval` (docs/training.md, "The best checkpoint").
    eval_n_real: int | None = None  # reference images (None: eval_n)
    eval_reference: str | None = None  # a dataset name or image folder (None: the run's data)
    eval_feature_extractor: str = "inception_v3"
    eval_feature_extractor_weights: str | None = None  # None: $GANZOO_FID_WEIGHTS, cache, ...
    eval_resizer: Literal["torch", "pil_bicubic"] = "torch"
    keep_best: str | None = None  # an evaluation key (fid, fd@efficientnet_lite0): OUT/best/
    log_every: int = 10
    keep: int = 3  # checkpoints kept; 0 keeps all
    resume: str | None = None  # "latest" or a checkpoint folder
    overwrite: bool = False
    # Accelerate's trackers ("all": every one installed); see outputs.TRACKERS
    log_with: Literal["none", "tensorboard", "wandb", "mlflow", "aim", "comet_ml", "clearml",
                      "dvclive", "swanlab", "trackio", "all"] = "none"
    wandb_mode: Literal["online", "offline"] | None = None
    num_workers: int | None = None  # None: 0 on CPU, else cores per process - 1 (max 8)
    compile: bool = False  # torch.compile the networks (Module.compile: state-dict keys kept)
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    compile_backend: str = "inductor"  # torch.compile backend ("aot_eager" to debug)
    channels_last: bool | None = None  # None: the family's default_channels_last on this device
    cpu: bool = False  # train on CPU even when an accelerator is present
    max_nonfinite: int = 20  # consecutive skipped steps before the run stops; 0: no guard
    progress: bool = True
    verbose: bool = False  # print the resolved config at the start (it is in OUT/config.json)
    export: Literal["none", "diffusers"] = "none"  # also write OUT/final-diffusers/ (DDPM)
    push_to_hub: str | None = None  # a Hub repo id: OUT/final/ is pushed there at the end

    def __post_init__(self):
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum,
                    "num_samples": self.num_samples, "eval_n": self.eval_n}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"RunConfig.{name} must be >= 1, got {value}")
        non_negative = {"save_every": self.save_every, "sample_every": self.sample_every,
                        "eval_every": self.eval_every, "log_every": self.log_every,
                        "keep": self.keep, "warmup_steps": self.warmup_steps,
                        "lr_decay_start": self.lr_decay_start,
                        "num_workers": self.num_workers or 0,
                        "max_nonfinite": self.max_nonfinite}
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"RunConfig.{name} must be >= 0, got {value}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ValueError(f"RunConfig.max_steps must be >= 0, got {self.max_steps}")
        if self.duration is not None:
            parse_duration(self.duration)
        for name in ("lr", "clip_grad_norm"):
            table = getattr(self, name)
            for group, value in list(table.items()):
                table[group] = cfg.coerce(value, float, f"{name}[{group}]")
                if table[group] <= 0:
                    raise ValueError(f"RunConfig.{name}[{group}] must be positive, got {value}")
        if self.lr_end < 0:
            raise ValueError(f"RunConfig.lr_end must be >= 0, got {self.lr_end}")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"RunConfig.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_start is not None and self.ema_start < 0:
            raise ValueError(f"RunConfig.ema_start must be >= 0, got {self.ema_start}")
        if self.ema_warmup_power is not None and self.ema_warmup_power < 0:
            raise ValueError(f"RunConfig.ema_warmup_power must be >= 0, got "
                             f"{self.ema_warmup_power}")
        if self.eval_n_real is not None and self.eval_n_real < 1:
            raise ValueError(f"RunConfig.eval_n_real must be >= 1, got {self.eval_n_real}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise ValueError(f"RunConfig.eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.push_to_hub is not None and (self.push_to_hub.count("/") != 1 or
                                             not all(self.push_to_hub.split("/"))):
            raise ValueError(f"RunConfig.push_to_hub must be a Hub repo id 'org/name', got "
                             f"{self.push_to_hub!r}")

    def validate(self) -> "RunConfig":
        """The checks across fields that a run needs before it starts (a config may be
        built in layers, so ``__post_init__`` checks each field alone); each ValueError
        names the fields by their flags (``max_steps``: ``--max-steps``)."""
        if not self.model:
            raise ValueError("no model given: pass --model NAME (see `ganzoo list models`)")
        if not self.output_dir:
            raise ValueError("no output folder given: pass --output-dir OUT")
        if self.max_steps is None and self.duration is None:
            raise ValueError("give --max-steps and/or --duration, or the run never ends")
        if self.lr_schedule != "constant" and self.max_steps is None:
            raise ValueError(f"--lr-schedule {self.lr_schedule} needs --max-steps")
        if self.lr_decay_start:
            if self.lr_schedule == "constant":
                raise ValueError("--lr-decay-start needs --lr-schedule cosine or linear")
            if self.lr_decay_start >= self.max_steps:
                raise ValueError(f"--lr-decay-start ({self.lr_decay_start}) must be below "
                                 f"--max-steps ({self.max_steps})")
        if self.keep_best and not self.eval_every:
            raise ValueError(f"--keep-best {self.keep_best} needs --eval-every N (it keeps "
                             f"the best of the evaluations)")
        if self.lr_decay_every is not None:
            _check_decay_every(self)
        return self

    @property
    def duration_seconds(self) -> float | None:
        return None if self.duration is None else parse_duration(self.duration)

    def to_dict(self) -> dict[str, Any]:
        return cfg.to_dict(self)


def _check_decay_every(run: RunConfig) -> None:
    k = run.lr_decay_every
    if k < 1:
        raise ValueError(f"--lr-decay-every must be >= 1, got {k}")
    if run.lr_schedule != "linear":
        raise ValueError("--lr-decay-every needs --lr-schedule linear")
    if run.warmup_steps > run.lr_decay_start:
        raise ValueError(f"--lr-decay-every needs --warmup-steps ({run.warmup_steps}) at most "
                         f"--lr-decay-start ({run.lr_decay_start})")
    if run.lr_decay_start % k or run.max_steps % k:
        raise ValueError(f"--lr-decay-every {k} needs --lr-decay-start ({run.lr_decay_start}) "
                         f"and --max-steps ({run.max_steps}) to be multiples of it (whole "
                         f"epochs, as the reference's n_epochs and n_epochs_decay)")


_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str | float | int) -> float:
    """Seconds in ``"3h"``, ``"90m"``, ``"1h30m"``, ``"45s"``, ``"2d"`` or a plain number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        try:
            seconds = float(s)
        except ValueError:
            parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", s)
            if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([dhms])", "", s).strip():
                raise ValueError(f"duration must look like '3h', '90m', '1h30m' or '45s', "
                                 f"got {text!r}") from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return seconds


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A run config from YAML or JSON (chosen by extension; YAML also reads JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - json and yaml raise different errors
        raise ValueError(f"cannot parse config file {path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(RunConfig)}
    data = {k.replace("-", "_"): v for k, v in data.items()}
    for key in data:
        if key not in names:
            hint = cfg.did_you_mean(key, names)
            raise KeyError(f"{path}: unknown run config key '{key}'{hint}")
    return data


def resolve_run_config(*layers: dict[str, Any]) -> RunConfig:
    """Merge dict layers (later wins; ``model_args``/``dataset_args``/``lr``/... merge by key)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return cfg.from_dict(RunConfig, merged)
