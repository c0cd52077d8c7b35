"""The ganzoo trainer: one Accelerate loop for every family.

It relies only on the :class:`~ganzoo.models.base.GenerativeModel` API: ``optimizer_groups``,
``group_parameters``, ``schedule``, the (possibly DDP-wrapped) ``model(group, batch, step)``,
``after_step``, ``update_ema``/``ema_networks``/``default_ema_decay``, ``preview``,
``batch_keys`` and ``save_pretrained``. It never asks which family it trains.

One training iteration (``step``) runs the groups of ``model.schedule(step)`` in order. For each
entry it enables gradients for that group's parameters only, runs ``grad_accum`` micro-batches
under ``accelerator.accumulate``, and on the gradient sync unscales (fp16), clips, checks for
non-finite values, steps the optimizer and calls ``after_step``. The k-th step of every group
in an iteration takes the iteration's k-th set of batches, so the discriminator and generator
steps see the same real images and extra critic steps fresh ones. After the iteration the EMA
networks are updated once.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import os
import random
import sys
import time
from typing import Any

import numpy as np
import torch

from .. import config as cfg
from .._factory import build
from .._io import atomic_write_text
from ..export import check_exportable, export
from ..hub import HubError, load_weights, push_folder
from ..losses.adversarial import penalty_grad_scaler
from ..models.base import SHARED_FORWARD, SharedForward
from ..registry import DATASETS, MODELS
from ..rundir import (CONFIG, OPTIMIZERS, RNG, SCALERS, TRAINER_STATE, WEIGHTS, RunDir,
                      iter_json_records)
from .checkpoint import (CheckpointError, capture_rng, clean_stale, prune, read_checkpoint_files,
                         resolve_checkpoint, restore_rng, write_checkpoint)
from .best import BestCheckpoint, recover_folder
from .config import RunConfig
from .data import (SeededDataset, build_dataset, check_batch_keys, collate_items,
                   default_num_workers, make_loader)
from .guard import NonfiniteGuard, TrainingError
from .outputs import MetricsWriter, check_tracker, save_sample_grid, tracker_init_kwargs
from .schedules import ema_decay_at, lr_at
from .steplog import StepLog, loop_bar
from .stop import GracefulStop, signals_to_main_thread

__all__ = ["Trainer", "TrainingError", "RUN_ARTEFACTS"]

logger = logging.getLogger("ganzoo.train")

# What a run writes into OUT; ``--overwrite`` removes exactly these (ganzoo.rundir).
RUN_ARTEFACTS = RunDir.ARTEFACTS


def _env_mixed_precision() -> str:
    value = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    return value if value in ("no", "fp16", "bf16") else "no"


def _cpu_only_multiprocess() -> bool:
    """torchrun on a machine without a GPU: Accelerate needs ``cpu=True`` to set up gloo."""
    has_gpu = torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())
    return not has_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1


def _release_accelerator_state(mixed_precision: str) -> None:
    """Accelerate keeps one process-wide state and refuses a second Accelerator with another
    precision. A single process may run several trainings (a sweep, a notebook, the
    benchmarks): forget the old state then. Distributed states are left alone."""
    from accelerate.state import AcceleratorState

    if not AcceleratorState._shared_state:
        return
    state = AcceleratorState()
    if state.num_processes == 1 and str(state.mixed_precision) != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def use_fused_optimizers(device: torch.device) -> bool:
    """Fused optimizer kernels where torch has them: CUDA and the CPU (for Adam on the CPU
    4-7x faster than torch's default per-parameter loop). Tests switch them off to cover the
    guard's host-side path."""
    return device.type in ("cuda", "cpu")


class Trainer:
    """Set-up in ``__init__`` (everything that can fail fails there, before any training
    work), then :meth:`train`. The loop's bookkeeping lives in parts: the run folder
    (:class:`~ganzoo.rundir.RunDir`), the non-finite guard
    (:class:`~ganzoo.training.guard.NonfiniteGuard`), the graceful stop
    (:class:`~ganzoo.training.stop.GracefulStop`) and the log record
    (:class:`~ganzoo.training.steplog.StepLog`)."""

    def __init__(self, run: RunConfig):
        self.run = run
        self.dir = RunDir(run.output_dir)
        self.out = self.dir.path
        with signals_to_main_thread():
            self._setup()

    # -- setup (everything that can fail does so here, before any training work) -----------
    def _setup(self) -> None:
        """The run's stages, in order; each names what it makes ready."""
        self._validate()
        self._make_accelerator()
        self._build_model_and_data()
        self._check_keep_best()
        optimizers = self._build_optimizers()
        self._init_counters()
        self._prepare(optimizers)
        if self.resume_files is not None:
            self._load_checkpoint()
        else:
            from accelerate.utils import set_seed

            set_seed(self.run.seed, device_specific=True)  # different noise on each process
        self._open_outputs()

    def _validate(self) -> None:
        """Refuse a run that cannot start, before any process touches OUT."""
        run = self.run
        run.validate()
        MODELS.entry(run.model)  # unknown names raise with close matches
        if run.dataset:
            DATASETS.entry(run.dataset)
        check_tracker(run.log_with)
        if run.push_to_hub:
            _check_can_push(run.push_to_hub)
        if run.eval_every:
            self._check_metrics_available()
        self.resume_path = self._check_output_dir()
        self.resume_files = read_checkpoint_files(self.resume_path) \
            if self.resume_path is not None else None

    def _make_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.utils import (DataLoaderConfiguration, DistributedDataParallelKwargs,
                                      ProjectConfiguration)

        run = self.run
        mp = run.mixed_precision or _env_mixed_precision()
        self.mixed_precision = mp
        if run.log_with in ("wandb", "all") and run.wandb_mode:
            os.environ["WANDB_MODE"] = run.wandb_mode
        # fp16 is handled here rather than by Accelerate: Accelerate keeps ONE GradScaler for
        # all optimizers and updates it after every optimizer step, so a discriminator
        # overflow would shrink the generator's loss scale. Each group gets its own scaler.
        _release_accelerator_state(mixed_precision="bf16" if mp == "bf16" else "no")
        self.accelerator = Accelerator(
            gradient_accumulation_steps=run.grad_accum,
            mixed_precision="bf16" if mp == "bf16" else "no",
            log_with=None if run.log_with == "none" else run.log_with,
            project_config=ProjectConfiguration(project_dir=str(self.out),
                                                logging_dir=str(self.dir.logs)),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            # Asynchronous host-to-device copies of the (pinned) batches. Accelerate's default
            # is a blocking copy, which waits for all queued GPU work at every batch, so data
            # loading could never overlap the previous step's kernels.
            dataloader_config=DataLoaderConfiguration(non_blocking=True),
            cpu=run.cpu or _cpu_only_multiprocess(),
        )
        acc = self.accelerator
        self.is_main = acc.is_main_process
        # Every process has checked OUT (above) before the main one may clear or write it.
        acc.wait_for_everyone()
        if self.is_main:
            # ganzoo's own records at INFO, other libraries' at WARNING: the root logger at
            # INFO also printed every HTTP request of the Hub client (httpx) and datasets'
            # "TensorFlow version ... available".
            logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stdout)
            logging.getLogger("ganzoo").setLevel(logging.INFO)
            # huggingface_hub and datasets print their warnings with a handler of their own;
            # passed on to the root handler as well, each line appeared twice.
            for name in ("huggingface_hub", "datasets"):
                logging.getLogger(name).propagate = False

    def _build_model_and_data(self) -> None:
        from accelerate.utils import set_seed

        run = self.run
        set_seed(run.seed)  # identical initial weights on every process
        model_args = run.model_args
        if self.resume_files is not None:
            # The model as its checkpoint saved it, under this run's own overrides: a default
            # changed since (a newer ganzoo) does not change the model a resumed run trains.
            saved = self.resume_files[TRAINER_STATE].get("model_config") or {}
            model_args = {**saved, **model_args}
        self.model = build(run.model, **model_args)
        if not run.dataset:  # the family's embedded default
            run.dataset = self.model.default_dataset
            if not run.dataset:
                raise ValueError(f"no dataset given and model '{run.model}' names no "
                                 f"default_dataset: pass --dataset NAME")
            DATASETS.entry(run.dataset)
        if run.export != "none":
            check_exportable(self.model, run.export)
        self.dataset = build_dataset(run.dataset, dict(run.dataset_args), model=self.model)
        check_batch_keys(self.dataset, run.dataset, self.model, run.model)

    def _build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per group, with the run's --lr / --clip-grad-norm / --optim."""
        run = self.run
        specs = self.model.optimizer_groups()
        self.groups = list(specs)
        for table in ("lr", "clip_grad_norm", "optim"):
            for group in getattr(run, table):
                if group != "*" and group not in specs:
                    hint = cfg.did_you_mean(group, specs)
                    raise KeyError(f"--{table.replace('_', '-')}: model '{run.model}' has no "
                                   f"optimizer group '{group}'{hint} (groups: "
                                   f"{', '.join(self.groups)})")
        self.specs = {}
        for group, spec in specs.items():
            changes = dict(run.optim.get("*", {}), **run.optim.get(group, {}))
            lr = run.lr.get(group, run.lr.get("*"))
            if lr is not None:
                changes["lr"] = lr
            clip = run.clip_grad_norm.get(group, run.clip_grad_norm.get("*"))
            if clip is not None:
                changes["clip_grad_norm"] = clip
            self.specs[group] = cfg.override(spec, changes)
        self.base_lr = {g: s.lr for g, s in self.specs.items()}

        group_params = {g: self.model.group_parameters(g) for g in self.groups}
        # Fused kernels: faster, and they let the non-finite guard skip a step on the device
        # instead of reading a flag back to the host at every step.
        fused = use_fused_optimizers(self.accelerator.device)
        for g, params in group_params.items():
            if not params:
                raise ValueError(f"optimizer group '{g}' of model '{run.model}' has no parameters")
        return {g: self.specs[g].build(group_params[g], fused=fused) for g in self.groups}

    def _init_counters(self) -> None:
        """Step, data position, the non-finite guard and the graceful stop, from the
        checkpoint when resuming."""
        acc, run = self.accelerator, self.run
        self.start_step = 0
        self.samples_seen = 0  # data position: samples drawn by all processes together
        nonfinite_total = 0
        self.best = BestCheckpoint(run.keep_best, self.dir.best) if run.keep_best else None
        if self.resume_files is not None:
            state = self.resume_files[TRAINER_STATE]
            self.start_step = int(state["step"])
            self.samples_seen = int(state["samples_seen"])
            nonfinite_total = int(state.get("nonfinite_total", 0))
        if self.best is not None and self.is_main:
            recover_folder(self.dir.best)  # before best/'s facts are read
            self.best.restore(state.get("best") if self.resume_files is not None else None)
        reduce = (lambda t: acc.reduce(t, reduction="sum")) if acc.num_processes > 1 else None
        self.guard = NonfiniteGuard(acc.device, limit=run.max_nonfinite, total=nonfinite_total,
                                    reduce=reduce)
        self.stop = GracefulStop(duration=run.duration, duration_seconds=run.duration_seconds,
                                 device=acc.device, reduce=reduce, announce=self.is_main)

    def _prepare(self, optimizers: dict[str, torch.optim.Optimizer]) -> None:
        """The resumable loader, Accelerate's wrapping, loss scalers and the EMA schedule."""
        from accelerate.utils import DistributedType

        run, acc = self.run, self.accelerator
        self.channels_last = run.channels_last if run.channels_last is not None \
            else acc.device.type in self.model.default_channels_last
        if self.channels_last:  # before DDP wraps the model (its buckets follow the strides)
            self.model.to(memory_format=torch.channels_last)
        workers = default_num_workers(acc.device, acc.num_processes) \
            if run.num_workers is None else run.num_workers
        loader = make_loader(self.dataset, run.batch_size, run.seed, self.samples_seen, workers,
                             pin_memory=acc.device.type == "cuda")

        prepared = acc.prepare(self.model, *optimizers.values(), loader)
        self.ddp_model = prepared[0]
        self.optimizers = dict(zip(self.groups, prepared[1:-1]))
        self.loader = prepared[-1]
        self.unwrapped = acc.unwrap_model(self.ddp_model)
        if run.compile:
            self._compile()
        self.group_params = {g: self.unwrapped.group_parameters(g) for g in self.groups}
        self.trainable = [p for p in self.unwrapped.parameters() if p.requires_grad]
        self._group_ids = {g: {id(p) for p in ps} for g, ps in self.group_params.items()}
        # A group's first step per iteration may also run graph_networks with a graph (the
        # shared forward): their parameters need requires_grad then.
        self._first_step_ids = {
            g: self._group_ids[g] | {id(p) for name in self.specs[g].graph_networks
                                     for p in getattr(self.unwrapped, name).parameters()}
            for g in self.groups}
        self._shares_forward = any(self.specs[g].graph_networks for g in self.groups)
        self._share_batches = self.unwrapped.shares_batches
        self._direct_step = acc.distributed_type in (
            DistributedType.NO, DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
        self.scalers = {}
        if self.mixed_precision == "fp16":
            self.scalers = {g: torch.amp.GradScaler(acc.device.type) for g in self.groups}
        self.ema_decay = run.ema_decay if run.ema_decay is not None \
            else float(self.unwrapped.default_ema_decay)
        self.ema_power = run.ema_warmup_power if run.ema_warmup_power is not None \
            else float(self.unwrapped.default_ema_warmup_power)
        self.ema_start = run.ema_start if run.ema_start is not None \
            else int(self.unwrapped.default_ema_start)
        self.has_ema = len(self.unwrapped.ema) > 0

    def _compile(self) -> None:
        """``Module.compile`` on each network ``compile_networks`` names and its EMA copy, in
        place, so state-dict keys (checkpoints, ``save_pretrained``) are those of the eager
        model. A graph that fails to compile runs eagerly with dynamo's warning (its
        ``suppress_errors``) instead of stopping the run."""
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        model, mode = self.unwrapped, self.run.compile_mode
        options = {"backend": self.run.compile_backend}
        if self.run.compile_backend == "inductor":
            options["mode"] = mode
        names = model.compile_networks()
        for name in names:
            getattr(model, name).compile(**options)
            if name in model.ema:
                model.ema[name].compile(**options)
        eager = model.double_backward_networks
        if self.is_main:
            logger.info("torch.compile (%s, mode %s): %s%s", self.run.compile_backend, mode,
                        ", ".join(names) or "nothing",
                        f"; eager (double backward): {', '.join(eager)}" if eager else "")

    def _open_outputs(self) -> None:
        """metrics.jsonl, the resolved config.json and the trackers (main process). An
        ``--overwrite`` clears OUT here, after every set-up check: a run that fails to start
        (a bad --keep-best key, a model that does not build) leaves the old run as it was."""
        run, acc = self.run, self.accelerator
        if self.is_main and run.overwrite and self.resume_path is None:
            self.dir.clear()
        self.metrics = MetricsWriter(self.dir.metrics) if self.is_main else None
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            clean_stale(self.dir.checkpoints)
            resolved = run.to_dict()
            text = json.dumps(resolved, indent=2)
            if run.verbose:
                logger.info("resolved run config (also in %s):\n%s", self.dir.config, text)
            logger.info("%s", self.startup_line())
            if self.resume_path is not None:
                logger.info("resuming from %s (step %d)", self.resume_path, self.start_step)
                self._truncate_metrics(self.start_step)
            elif run.resume is not None:
                logger.warning("--resume %s: %s holds no checkpoint yet; starting a new run",
                               run.resume, self.out)
            atomic_write_text(self.dir.config, text + "\n")
        if run.log_with != "none":
            # wandb writes its run folder into the working directory unless told otherwise.
            self.dir.logs.mkdir(parents=True, exist_ok=True)
            acc.init_trackers(self.out.name or "ganzoo", config=_flat_config(run.to_dict()),
                              init_kwargs=tracker_init_kwargs(self.dir.logs))

    def startup_line(self) -> str:
        """The one line a run starts with: model, dataset, length, batch, device, precision,
        layout and EMA (docs/training.md, "What a run prints"); the full config is
        OUT/config.json, printed by --verbose."""
        run, acc = self.run, self.accelerator
        params = sum(p.numel() for p in self.trainable) / 1e6
        data = ", ".join(f"{k}={v}" for k, v in sorted(run.dataset_args.items()))
        length = [f"{run.max_steps:,} steps"] if run.max_steps is not None else []
        length += [f"at most {run.duration}"] if run.duration is not None else []
        procs = f" x {acc.num_processes} processes" if acc.num_processes > 1 else ""
        precision = {"no": "fp32"}.get(self.mixed_precision, self.mixed_precision)
        if not self.has_ema:
            ema = "no EMA"
        elif self.ema_start and run.max_steps is not None and run.max_steps <= self.ema_start:
            ema = f"EMA from step {self.ema_start:,}, after this run (samples: live weights)"
        elif self.ema_start:
            ema = f"EMA {self.ema_decay:g} from step {self.ema_start:,}"
        else:
            ema = f"EMA {self.ema_decay:g}"
        start = f"resuming at step {self.start_step:,}, " if self.resume_path is not None \
            else ""
        return (f"training {run.model} ({params:.3g} M params) on {run.dataset}"
                f"{f' ({data})' if data else ''}, {start}{' or '.join(length)}, batch "
                f"{run.batch_size}{procs}, {acc.device}, {precision}, "
                f"{'channels_last' if self.channels_last else 'NCHW'}, {ema} -> {self.out}")

    def _truncate_metrics(self, step: int) -> None:
        """Drop records logged after the checkpoint we resume from: they are replayed."""
        path = self.dir.metrics
        if not path.is_file():
            return
        keep = [line for line, record in iter_json_records(path.read_text())
                if record is not None and record.get("step", 0) <= step]  # None: a cut line
        atomic_write_text(path, "".join(x + "\n" for x in keep))

    def _check_metrics_available(self) -> None:
        """ganzoo.metrics, an optional part, imported here once for the run's evaluations."""
        try:
            from .. import metrics
        except ImportError as e:
            raise ImportError(f"--eval-every needs ganzoo.metrics.evaluate, which is not "
                              f"available in this installation ({e})") from e
        self._metrics = metrics

    def _check_keep_best(self) -> None:
        """``--keep-best`` names a key the evaluation will produce (for this model's outputs,
        metrics and extractor) that has a direction; one line otherwise."""
        run = self.run
        if not run.keep_best:
            return
        keys = self._metrics.metric_keys(run.eval_metrics, run.eval_feature_extractor,
                                         outputs=list(self.model.eval_references))
        if run.keep_best not in keys:
            hint = cfg.did_you_mean(run.keep_best, keys)
            raise ValueError(f"--keep-best {run.keep_best}: the evaluation (--eval-metric "
                             f"{' '.join(run.eval_metrics)}, --eval-feature-extractor "
                             f"{run.eval_feature_extractor}) produces "
                             f"{', '.join(keys)}{hint}")
        BestCheckpoint(run.keep_best, self.dir.best)  # refuses a key without a direction

    def _check_output_dir(self):
        run = self.run
        holds_run = self.dir.holds_run()
        if run.resume is not None:
            path = resolve_checkpoint(run.resume, self.out)
            if path is None:
                if holds_run and not run.overwrite:
                    raise FileExistsError(
                        f"{self.out} holds a run without checkpoints; --resume latest has "
                        f"nothing to continue (pass --overwrite to start over)")
            return path
        if holds_run:
            if not run.overwrite:
                raise FileExistsError(
                    f"{self.out} already holds a run; pass --resume latest to continue it or "
                    f"--overwrite to replace it")
        return None

    # -- checkpoints --------------------------------------------------------------------------
    def _load_checkpoint(self) -> None:
        path, files = self.resume_path, self.resume_files
        saved = files[CONFIG]
        if saved.get("model") != self.run.model:
            raise CheckpointError(
                f"{path / CONFIG} was written for model {saved.get('model')!r}, but this "
                f"run trains {self.run.model!r}; resume with the same model")
        saved_cfg = files[TRAINER_STATE].get("model_config")
        own_cfg = json.loads(json.dumps(self.unwrapped.config_dict))
        if saved_cfg is not None and saved_cfg != own_cfg:
            diff = sorted(k for k in set(saved_cfg) | set(own_cfg)
                          if saved_cfg.get(k) != own_cfg.get(k))
            raise CheckpointError(
                f"{path / TRAINER_STATE} was written for a different model config "
                f"(fields {', '.join(diff)}: " + ", ".join(
                    f"{k}={saved_cfg.get(k)!r} vs {own_cfg.get(k)!r}" for k in diff[:5]) + ")")
        try:
            load_weights(self.unwrapped, path / WEIGHTS)
        except (ValueError, OSError) as e:
            raise CheckpointError(str(e)) from e
        opt_states = files[OPTIMIZERS]
        if set(opt_states) != set(self.groups):
            raise CheckpointError(f"{path / OPTIMIZERS} holds groups {sorted(opt_states)}, "
                                  f"the model has {self.groups}")
        for g, opt in self.optimizers.items():
            try:
                opt.optimizer.load_state_dict(opt_states[g])
            except (ValueError, KeyError, RuntimeError) as e:
                raise CheckpointError(f"cannot load {path / OPTIMIZERS} (group {g}): "
                                      f"{e}") from e
        if self.scalers:
            states = files.get(SCALERS)
            if states is None:
                logger.warning("%s has no %s (not an fp16 run); fresh loss scales", path,
                               SCALERS)
            else:
                for g, s in self.scalers.items():
                    if g in states:
                        s.load_state_dict(states[g])
        rng = files[RNG]
        acc = self.accelerator
        if len(rng) == acc.num_processes:
            restore_rng(rng[acc.process_index])
        else:
            from accelerate.utils import set_seed

            if self.is_main:
                logger.warning("%s was saved by %d process(es), this run has %d: RNG streams "
                               "are reseeded, so the continuation is not bit-exact",
                               path / RNG, len(rng), acc.num_processes)
            set_seed(self.run.seed + self.start_step, device_specific=True)

    def _weights_finite(self) -> bool:
        return all(torch.isfinite(t).all() for t in self.unwrapped.state_dict().values()
                   if t.is_floating_point())

    def _checksum(self) -> str:
        """A digest of every parameter (EMA copies included). Buffers such as BatchNorm
        running statistics are left out: DDP broadcasts them from rank 0 at each forward, and
        each process then updates them from its own batch."""
        h = hashlib.sha256()
        for name, t in sorted(self.unwrapped.named_parameters()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:16]

    def save_checkpoint(self, step: int) -> bool:
        """Every process takes part (RNG states are gathered); only the main one writes."""
        from accelerate.utils import gather_object

        acc = self.accelerator
        rng = gather_object([capture_rng()]) if acc.num_processes > 1 else [capture_rng()]
        sums = gather_object([self._checksum()]) if acc.num_processes > 1 else None
        ok = True
        if self.is_main:
            if not self._weights_finite():
                logger.error("step %d: weights hold NaN or inf; checkpoint NOT saved, the "
                             "previous one stays", step)
                ok = False
            else:
                state = {
                    "step": step,
                    "samples_seen": self.samples_seen,
                    "nonfinite_total": self.guard.total,
                    "num_processes": acc.num_processes,
                    "batch_size": self.run.batch_size,
                    "grad_accum": self.run.grad_accum,
                    "mixed_precision": self.mixed_precision,
                    "ema_decay": self.ema_decay,
                    "ema_warmup_power": self.ema_power,
                    "ema_start": self.ema_start,
                    "rank_checksums": sums,
                    "best": self.best.state() if self.best is not None else None,
                    "model_config": self.unwrapped.config_dict,
                    "time": time.time(),
                }
                root = self.dir.checkpoints
                write_checkpoint(
                    root, step, model=self.unwrapped,
                    optimizers={g: o.optimizer for g, o in self.optimizers.items()},
                    scalers=self.scalers, rng=rng, trainer_state=state,
                    run_config=self.run.to_dict())
                removed = prune(root, self.run.keep)
                logger.info("step %d: saved %s%s", step, self.dir.checkpoint(step),
                            f" (pruned {len(removed)})" if removed else "")
        acc.wait_for_everyone()
        return ok

    # -- samples and evaluation ---------------------------------------------------------------
    @contextlib.contextmanager
    def _inference(self):
        """Eval mode and forked RNGs, so that previews and evaluations leave training
        (BatchNorm statistics, noise streams) exactly as it was."""
        model = self.unwrapped
        was_training = model.training
        devices = [self.accelerator.device] if self.accelerator.device.type == "cuda" else []
        py, npst = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=devices):
            model.eval()
            try:
                with torch.no_grad():
                    yield model
            finally:
                model.train(was_training)
                random.setstate(py)
                np.random.set_state(npst)

    def _preview_batch(self) -> dict[str, Any]:
        if not hasattr(self, "_fixed_batch"):
            n = min(self.run.num_samples, len(self.dataset))
            seeds = [(i, i) for i in range(n)]
            items = [SeededDataset(self.dataset)[k] for k in seeds]
            self._fixed_batch = collate_items(items)
        return self.unwrapped.collate(self._fixed_batch)

    def save_samples(self, step: int) -> None:
        if not self.is_main:
            return
        n = self.run.num_samples
        with self._inference() as model:
            generator = torch.Generator(device=self.accelerator.device).manual_seed(self.run.seed)
            images = model.preview(self._preview_batch(), n, generator=generator)
        grid = save_sample_grid(images, self.dir.sample_grid(step), n)
        for tracker in self.accelerator.trackers:
            try:
                if tracker.name == "tensorboard":
                    tracker.log_images({"samples": grid[None].numpy()}, step=step)
                elif tracker.name == "wandb":
                    tracker.log_images({"samples": [grid.permute(1, 2, 0).numpy()]}, step=step)
            except Exception as e:  # noqa: BLE001 - a tracker must never stop training
                logger.warning("could not log samples to %s: %s", tracker.name, e)

    def evaluate(self, step: int) -> None:
        """Score the model with ``--eval-*`` (the options of ``ganzoo eval``) into
        metrics.jsonl and the trackers; under ``--keep-best`` a better value writes best/."""
        run = self.run
        own_data = run.eval_reference is None  # the training data, with its options
        try:
            with self._inference() as model:
                result = self._metrics.evaluate(
                    model, run.dataset if own_data else run.eval_reference,
                    metrics=list(run.eval_metrics), n=run.eval_n, n_real=run.eval_n_real,
                    batch_size=run.eval_batch_size or run.batch_size,
                    feature_extractor=run.eval_feature_extractor,
                    feature_extractor_weights=run.eval_feature_extractor_weights,
                    resizer=run.eval_resizer,
                    dataset_kwargs=dict(run.dataset_args) if own_data else None,
                    step=step, progress=None if run.progress else False)
        except Exception as e:  # noqa: BLE001 - a failed evaluation must not lose the run
            if self.is_main:
                logger.error("step %d: evaluation failed, training goes on: %s: %s", step,
                             type(e).__name__, e)
                self.metrics.write({"step": step, "eval_error": f"{type(e).__name__}: {e}"})
            return
        if self.is_main:
            self.metrics.write({"step": step, "eval": result})
            values = result.get("metrics", result) if isinstance(result, dict) else {}
            scalars = {f"eval/{k}": v for k, v in _flat_config(values).items()
                       if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if scalars and self.run.log_with != "none":
                self.accelerator.log(scalars, step=step)
            logger.info("step %d: eval %s", step, json.dumps(values, default=str))
            if self.best is not None and (value := self.best.offer(step, values)) is not None:
                self.save_best(step, value)

    # -- the loop -----------------------------------------------------------------------------
    def _set_trainable(self, group: str | None, first: bool = False) -> None:
        """Gradients for ``group``'s parameters only (``None``: every trainable parameter);
        on its ``first`` step of the iteration also for its ``graph_networks``."""
        ids = None if group is None else \
            (self._first_step_ids if first else self._group_ids)[group]
        for p in self.trainable:
            on = ids is None or id(p) in ids
            if p.requires_grad != on:
                p.requires_grad_(on)
            if on:
                p.grad = None

    def _set_lr(self, step: int) -> dict[str, float]:
        run = self.run
        lrs = {}
        for g, opt in self.optimizers.items():
            lr = lr_at(self.base_lr[g], step, kind=run.lr_schedule, total=run.max_steps,
                       end=run.lr_end, warmup=run.warmup_steps, decay_start=run.lr_decay_start,
                       decay_every=run.lr_decay_every)
            for pg in opt.param_groups:
                pg["lr"] = lr
            lrs[g] = lr
        return lrs

    def _micro_batches(self, k: int, drawn: list, data_iter) -> list:
        """The iteration's ``k``-th set of batches, one per gradient-accumulation micro-step,
        drawn on first use. A group's ``k``-th step takes set ``k`` (``shares_batches``), so
        every group's first step sees the same real images, as in the references' loops
        (pytorch/examples ``dcgan/main.py``; CUT's ``optimize_parameters`` in
        taesungp/contrastive-unpaired-translation ``models/cut_model.py``), and a critic's
        extra steps (``n_critic``) draw fresh ones (Gulrajani et al. 2017, Algorithm 1);
        otherwise each group step of the iteration takes a set of its own."""
        n = self.run.grad_accum
        while len(drawn) < (k + 1) * n:
            batch = next(data_iter)
            if self.channels_last:
                batch = {key: v.contiguous(memory_format=torch.channels_last)
                         if torch.is_tensor(v) and v.dim() == 4 else v
                         for key, v in batch.items()}
            self.samples_seen += self.run.batch_size * self.accelerator.num_processes
            if self._shares_forward and len(drawn) < n:  # the first set: every group sees it
                batch = {**batch, SHARED_FORWARD: SharedForward()}
            drawn.append(batch)
        return drawn[k * n:(k + 1) * n]

    def _group_step(self, group: str, step: int, batches: list, first: bool) -> dict[str, Any]:
        acc, run = self.accelerator, self.run
        scaler = self.scalers.get(group)
        opt = self.optimizers[group]
        params = self.group_params[group]
        self._set_trainable(group, first)
        losses = []
        logs: dict[str, Any] = {}
        autocast = (torch.autocast(acc.device.type, dtype=torch.float16) if scaler is not None
                    else contextlib.nullcontext())
        for batch in batches:
            with acc.accumulate(self.ddp_model):
                # penalty_grad_scaler: gradient and R1 penalties scale their input gradients
                # by this group's loss scale (PyTorch's AMP gradient-penalty recipe).
                with autocast, penalty_grad_scaler(scaler):
                    loss, logs = self.ddp_model(group, batch, step)
                acc.backward(scaler.scale(loss) if scaler is not None else loss)
            losses.append(loss.detach())
        # grad_accum micro-steps per group keep every group's last micro-step on a sync.
        assert acc.sync_gradients, "gradient accumulation fell out of step with the groups"
        out = {"loss": losses[-1], **logs}
        if scaler is not None:
            scaler.unscale_(opt.optimizer)
        clip = self.specs[group].clip_grad_norm
        if clip:
            out["grad_norm"] = acc.clip_grad_norm_(params, clip).detach()
        if self.guard.enabled:
            # fp16 overflows of the gradient are the scaler's business (it skips, rescales).
            grads = [] if scaler is not None else [p.grad for p in params if p.grad is not None]
            flag = self.guard.flag(losses + grads)
            if scaler is None and getattr(opt.optimizer, "_step_supports_amp_scaling", False):
                # A fused optimizer skips the update on the device when found_inf is set (as
                # under GradScaler): no host sync. The flag is counted later.
                inner = opt.optimizer
                inner.found_inf = flag
                try:
                    inner.step()
                finally:
                    del inner.found_inf
                self.unwrapped.after_step(group, step)
                return out
            if self.guard.count()[-1]:  # the host sync, for other optimizers
                if scaler is not None:
                    scaler.update()
                for p in params:
                    p.grad = None
                return {"loss": float("nan"), "nonfinite": 1, "_skipped": True}
        if scaler is not None:
            scaler.step(opt.optimizer)
            scaler.update()
        elif self._direct_step:
            # We step only on a sync and own the fp16 scaling, so the AcceleratedOptimizer
            # wrapper would add nothing but per-call package lookups (~1 ms per step).
            opt.optimizer.step()
        else:
            opt.step()
        self.unwrapped.after_step(group, step)
        return out

    def train(self) -> int:
        """Run the loop until ``--max-steps``, ``--duration`` or a signal; returns the step
        reached."""
        run = self.run
        step = self.start_step
        total = run.max_steps
        t0 = time.time()
        last_saved = self.start_step if self.resume_path is not None else -1
        stop_reason = None
        data_iter = iter(self.loader)
        group_logs: dict[str, dict[str, Any]] = {}
        self.stop.install()
        self.ddp_model.train()
        if step == 0 and run.sample_every:
            self.save_samples(0)
        with loop_bar(total, step, enabled=self.is_main and run.progress) as bar, \
                self._frozen_gc():
            log = StepLog(run.log_every, step=step, t0=t0, writer=self.metrics, bar=bar,
                          track=self.accelerator.log if run.log_with != "none" else None)
            try:
                while total is None or step < total:
                    lrs = self._set_lr(step)
                    self._iteration(step, data_iter, group_logs)
                    if _every(run.log_every, step + 1) or _every(run.save_every, step + 1):
                        self.guard.count()
                    self.guard.check(step, self.dir.checkpoints)
                    if self.has_ema:
                        self.unwrapped.update_ema(ema_decay_at(
                            step, self.ema_decay, power=self.ema_power, start=self.ema_start))
                    step += 1
                    bar.update(1)
                    if log.due(step, total):
                        log.write(step, group_logs, lrs, self.guard.total)
                    if _every(run.sample_every, step):
                        self.save_samples(step)
                    if _every(run.eval_every, step):
                        self.evaluate(step)
                    stop_reason = self.stop.reason(step, t0)
                    if _every(run.save_every, step) and stop_reason is None:
                        self.save_checkpoint(step)  # refused (and logged) if weights are bad
                        last_saved = step
                    if stop_reason is not None:
                        break
            finally:
                self._set_trainable(None)
                self.guard.count()
        self._finish(step, stop_reason, saved_at=last_saved)
        return step

    def _iteration(self, step: int, data_iter, group_logs: dict[str, dict[str, Any]]) -> None:
        """One training iteration: the groups of ``model.schedule(step)`` in order, each on
        its set of micro-batches (:meth:`_micro_batches`); ``group_logs`` gets each group's
        logs."""
        drawn: list = []
        steps_of: dict[str, int] = {}
        for i, group in enumerate(self.unwrapped.schedule(step)):
            k = steps_of[group] = steps_of.get(group, -1) + 1
            batches = self._micro_batches(k if self._share_batches else i, drawn, data_iter)
            group_logs[group] = self._group_step(group, step, batches, first=k == 0)
        self._set_trainable(None)

    @staticmethod
    @contextlib.contextmanager
    def _frozen_gc():
        """torch, Accelerate and the model leave ~300k long-lived Python objects, and every
        full garbage collection walks them all (~0.1 s on CPU), at moments that depend on
        how many objects the loop creates. Frozen, they are left out of collections until
        the loop ends."""
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()

    def _finish(self, step: int, stop_reason: str | None, saved_at: int) -> None:
        """After the loop: the last checkpoint and grid, ``final/`` when the run reached its
        budget, the trackers closed, DDP torn down and the Hub push."""
        run, acc = self.run, self.accelerator
        if step != saved_at:
            self.save_checkpoint(step)
        if run.sample_every and step % run.sample_every and stop_reason is None:
            self.save_samples(step)
        saved = False
        if not GracefulStop.interrupted(stop_reason) and self.is_main:
            if self._weights_finite():
                self.save_final(step)
                saved = True
            else:
                logger.error("step %d: weights hold NaN or inf; %s NOT written", step,
                             self.dir.final)
        if stop_reason is not None and self.is_main:
            logger.info("stopped at step %d: %s", step, stop_reason)
        acc.wait_for_everyone()
        acc.end_training()
        if acc.num_processes > 1:
            # The DDP wrapper holds the process group (its reducer's reference outlives
            # destroy_process_group). Freed here, while the interpreter is alive: left to
            # Python's finalization, a rank of a completed graceful stop sometimes aborted
            # and torchrun reported the run as failed (docs/training.md, "Teardown after a
            # distributed run").
            acc.free_memory()
            self.ddp_model = self.unwrapped
            gc.collect()
        self.stop.restore()
        if saved and run.push_to_hub:
            self.push_final()

    # -- the run's products -------------------------------------------------------------------
    def card_facts(self, step: int) -> dict[str, Any]:
        """What the model card of ``final/`` states (``ganzoo.modelcard``): the data, the
        steps, every ``--eval-every`` result in metrics.jsonl (those before a resume too) and
        the newest sample grid."""
        run = self.run
        options = ", ".join(f"{k}={v}" for k, v in sorted(run.dataset_args.items()))
        facts: dict[str, Any] = {"dataset": f"{run.dataset} ({options})" if options
                                 else run.dataset, "steps": step}
        path = str(run.dataset_args.get("path", ""))
        if run.dataset == "hf" and path.count("/") == 1 and not os.path.exists(path) and \
                not path.startswith((".", "/", "~")):
            facts["datasets"] = [path]  # a Hub dataset id, which the Hub links to
        evaluations = [r["eval"] for r in self.dir.records() if isinstance(r.get("eval"), dict)]
        if evaluations:
            facts["evaluations"] = evaluations
        grids = self.dir.sample_grids()
        if grids:
            facts["sample_grid_step"], grid = grids[-1]
            facts["sample_grid"] = str(grid)
        return facts

    def save_final(self, step: int) -> None:
        """``OUT/final/`` (and ``OUT/final-diffusers/`` under ``--export diffusers``)."""
        self.unwrapped.save_pretrained(self.dir.final, **self.card_facts(step))
        logger.info("step %d: saved %s", step, self.dir.final)
        if self.run.export == "diffusers":
            export(self.unwrapped, self.dir.final_diffusers, overwrite=True)
            logger.info("step %d: saved %s", step, self.dir.final_diffusers)

    def save_best(self, step: int, value: float) -> None:
        """``OUT/best/``: the model now, the best by ``--keep-best`` so far (main process). A
        failure (non-finite weights, a full disk) is logged and leaves the previous best/."""
        try:
            self.best.write(self.unwrapped, step, value, self.card_facts(step))
        except (OSError, ValueError) as e:
            logger.error("step %d: %s NOT written (%s: %s); the previous one stays", step,
                         self.dir.best, type(e).__name__, e)
            return
        logger.info("step %d: saved %s (%s)", step, self.dir.best, self.best.describe())

    def push_final(self) -> None:
        """Push ``OUT/final/`` to ``--push-to-hub`` (main process). A failure leaves the run
        intact and says how to push it later."""
        if not self.is_main:
            return
        repo = self.run.push_to_hub
        try:
            url = push_folder(self.dir.final, repo)
        except HubError as e:
            raise TrainingError(f"{self.dir.final} is saved, but pushing it to {repo} "
                                f"failed: {e}. Push it later with `ganzoo push {self.out} "
                                f"{repo}`") from e
        logger.info("pushed %s to %s: %s", self.dir.final, repo, url)


def _every(period: int, step: int) -> bool:
    """Whether a ``--*-every`` period (0: never) falls on ``step``."""
    return bool(period) and step % period == 0


def _check_can_push(repo_id: str) -> None:
    """Refuse ``--push-to-hub`` before training when the push at the end cannot work: offline
    mode, or no token. Hours of training should not end in "not logged in"."""
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise ValueError(f"--push-to-hub {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); "
                         f"unset it, or train without the flag and `ganzoo push OUT {repo_id}` "
                         f"later")
    if not get_token():
        raise ValueError(f"--push-to-hub {repo_id} needs a Hub token: log in with "
                         f"`hf auth login` or set HF_TOKEN")


def _flat_config(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts for trackers that take only scalars and strings."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_config(v, key + "."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v if v is not None else "None"
        else:
            out[key] = str(v)
    return out
