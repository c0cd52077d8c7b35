"""The command line of ``python -m ganzoo.train``: its parser, the run-config layer a command
line gives, and the reverse (a config layer as flags, for the queue's runner).

Importing this module loads neither torch nor the trainer, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._progress import EXIT_CODES

__all__ = ["build_parser", "config_argv", "PROG"]


def _kv(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value.strip()


def _group_value(text: str) -> tuple[str, str]:
    """``GROUP=VALUE`` or a bare ``VALUE`` (all groups)."""
    key, sep, value = text.rpartition("=")
    return (key.strip(), value.strip()) if sep else ("*", text.strip())


PROG = "python -m ganzoo.train"  # `ganzoo train` passes its own name


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    S = argparse.SUPPRESS  # unset flags stay out of the namespace, so lower layers show through
    p = argparse.ArgumentParser(
        prog=prog, argument_default=S,
        description="Train a registered ganzoo model on a registered dataset.",
        epilog="Precedence: defaults < resumed run's config < --config file < flags. "
               + EXIT_CODES)
    a = p.add_argument_group("run")
    a.add_argument("--config", help="YAML or JSON run config (keys are the flag names, "
                   "with model_args / dataset_args mappings for --set)")
    a.add_argument("--model", help="registered model preset, e.g. dcgan")
    a.add_argument("--dataset", help="registered dataset, e.g. shapes")
    a.add_argument("--output-dir", "-o", help="run folder OUT")
    a.add_argument("--set", action="append", type=_kv, dest="set", metavar="KEY=VALUE",
                   help="model config field (ngf=32) or dataset option (data.resolution=32); "
                   "repeatable")
    a.add_argument("--seed", type=int)
    a.add_argument("--resume", nargs="?", const="latest",
                   help="'latest' (default when given bare) or a checkpoint folder")
    a.add_argument("--overwrite", action="store_true", help="replace the run held by OUT")
    a = p.add_argument_group("length")
    a.add_argument("--max-steps", type=int, help="training iterations")
    a.add_argument("--duration", help="wall-clock budget, e.g. 3h, 90m, 1h30m, 45s")
    a = p.add_argument_group("optimisation")
    a.add_argument("--batch-size", type=int, help="per process")
    a.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    a.add_argument("--lr", action="append", type=_group_value, metavar="[GROUP=]LR",
                   help="learning rate of one optimizer group or all; repeatable")
    a.add_argument("--lr-schedule", choices=["constant", "cosine", "linear"])
    a.add_argument("--lr-end", type=float, help="final LR of cosine/linear (default 0)")
    a.add_argument("--warmup-steps", type=int)
    a.add_argument("--lr-decay-start", type=int, metavar="N",
                   help="cosine/linear keep the base LR until step N, then decay to --lr-end "
                        "at --max-steps (CUT's n_epochs / n_epochs_decay)")
    a.add_argument("--lr-decay-every", type=int, metavar="K",
                   help="linear: decay in K-step blocks, the reference's per-epoch staircase "
                        "when K is the steps of one epoch (default: every step)")
    a.add_argument("--clip-grad-norm", action="append", type=_group_value,
                   metavar="[GROUP=]NORM", help="max gradient norm per group or all; repeatable")
    a.add_argument("--optim", action="append", type=_kv, metavar="GROUP.FIELD=VALUE",
                   help="any OptimizerSpec field of a group, e.g. generator.betas=[0.5,0.999]")
    a.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    a.add_argument("--ema-decay", type=float,
                   help="the EMA decay the warm-up rises to (default: the family's "
                        "default_ema_decay)")
    a.add_argument("--ema-warmup-power", type=float,
                   help="EMA warm-up: decay_t = min(decay, 1 - (1 + t)^-power); default: the "
                        "family's default_ema_warmup_power, 0 for a constant decay")
    a.add_argument("--ema-start", type=int,
                   help="iterations during which the EMA copies the live weights (default: the "
                        "family's default_ema_start)")
    a.add_argument("--max-nonfinite", type=int,
                   help="consecutive non-finite steps before the run stops (default 20; "
                   "0 turns the guard and its host sync per optimizer step off)")
    a = p.add_argument_group("speed")
    a.add_argument("--compile", action="store_true",
                   help="torch.compile the trained and EMA networks (not those that need "
                        "double backward); a network that cannot be compiled runs eagerly, "
                        "with a warning")
    a.add_argument("--compile-mode", choices=["default", "reduce-overhead", "max-autotune"])
    a.add_argument("--compile-backend",
                   help="torch.compile backend (default inductor; aot_eager traces without "
                        "generating code, to debug a graph)")
    a.add_argument("--channels-last", action=argparse.BooleanOptionalAction,
                   help="channels_last memory format for the model and the image batches "
                        "(default: the family's default_channels_last for the device; on for "
                        "dcgan on CPU)")
    a.add_argument("--num-workers", type=int,
                   help="DataLoader worker processes (default: 0 on CPU; on a GPU the cores "
                        "per process minus one, at most 8)")
    a = p.add_argument_group("outputs")
    a.add_argument("--save-every", type=int, help="checkpoint period in steps (0: only at end)")
    a.add_argument("--keep", type=int, help="checkpoints kept (0: all; default 3)")
    a.add_argument("--sample-every", type=int, help="sample grid period (0: never)")
    a.add_argument("--num-samples", type=int, help="images in the sample grid")
    a.add_argument("--log-every", type=int, help="metrics.jsonl period in steps")
    a.add_argument("--log-with", choices=["none", "tensorboard", "wandb", "mlflow", "aim",
                                          "comet_ml", "clearml", "dvclive", "swanlab",
                                          "trackio", "all"],
                   help="an Accelerate tracker, logging into OUT/logs where it writes files")
    a.add_argument("--wandb-mode", choices=["online", "offline"])
    _evaluation_options(p.add_argument_group("evaluation (the options of `ganzoo eval`)"))
    a.add_argument("--export", choices=["none", "diffusers"],
                   help="diffusers: also write OUT/final-diffusers/ (DDPM families)")
    a.add_argument("--push-to-hub", metavar="ORG/NAME",
                   help="push OUT/final/ to this Hub repo at the end (main process)")
    a.add_argument("--cpu", action="store_true", help="train on CPU even if a GPU is present")
    a.add_argument("--no-progress", action="store_false", dest="progress",
                   help="no progress bar (default: shown)")
    a.add_argument("--verbose", "-v", action="store_true",
                   help="print the resolved run config at the start (it is always written to "
                        "OUT/config.json)")
    return p


def _evaluation_options(a) -> None:
    """``--eval-every`` and its options, named after ``ganzoo eval``'s with ``--eval-``, and
    ``--keep-best`` (docs/training.md, "The best checkpoint")."""
    a.add_argument("--eval-every", type=int, help="evaluation period (0: never)")
    a.add_argument("--eval-metric", action="append", dest="eval_metrics", metavar="NAME",
                   help="metric from the metrics registry; repeatable (default fid)")
    a.add_argument("--eval-n", type=int, help="generated images per evaluation")
    a.add_argument("--eval-batch-size", type=int)
    a.add_argument("--eval-n-real", type=int, help="reference images per evaluation "
                   "(default: --eval-n)")
    a.add_argument("--eval-reference", "--eval-ref", metavar="REFERENCE",
                   help="dataset name or image folder to score against (default: the "
                        "training dataset with its --set data.* options)")
    a.add_argument("--eval-feature-extractor", metavar="NAME",
                   help="inception_v3 (default) or a registered extractor, e.g. "
                        "efficientnet_lite0 (values then read fd@NAME)")
    a.add_argument("--eval-feature-extractor-weights", "--eval-fid-weights", metavar="FILE",
                   help="local feature-extractor weights file (else $GANZOO_FID_WEIGHTS)")
    a.add_argument("--eval-resizer", choices=["torch", "pil_bicubic"])
    a.add_argument("--keep-best", metavar="METRIC",
                   help="keep the best evaluation by this metric key (e.g. fid, "
                        "fd@efficientnet_lite0, isc_mean) as OUT/best/, by the metric's "
                        "direction; needs --eval-every")


def _cli_layer(ns: argparse.Namespace) -> dict[str, Any]:
    d = dict(vars(ns))
    d.pop("config", None)
    model_args, dataset_args = {}, {}
    for key, value in d.pop("set", []):
        if key.startswith("data."):
            dataset_args[key[len("data."):]] = value
        elif key.startswith("model."):
            model_args[key[len("model."):]] = value
        else:
            model_args[key] = value
    if model_args:
        d["model_args"] = model_args
    if dataset_args:
        d["dataset_args"] = dataset_args
    for name in ("lr", "clip_grad_norm"):
        if name in d:
            d[name] = dict(d[name])
    if "optim" in d:
        optim: dict[str, dict[str, Any]] = {}
        for key, value in d["optim"]:
            group, dot, fieldname = key.partition(".")
            if not dot:
                raise ValueError(f"--optim expects GROUP.FIELD=VALUE, got {key}={value}")
            optim.setdefault(group, {})[fieldname] = value
        d["optim"] = optim
    return d




def flag_value(value: Any) -> str:
    """A value as a flag's argument: strings as they are, booleans as ``true``/``false``,
    anything else as JSON (what ``--set`` / ``--optim`` read back)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def long_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Each option's action by its ``dest`` and by every ``--long-name`` it answers to."""
    out: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        out.setdefault(action.dest, action)
        for option in action.option_strings:
            if option.startswith("--"):
                out.setdefault(option[2:].replace("-", "_"), action)
    return out


def option_argv(action: argparse.Action, value: Any) -> list[str]:
    """``value`` as the arguments of ``action``'s option (its first long name): a switch
    when the value turns it on, each item of a list for a repeatable option, else the flag
    and the value."""
    flag = next(o for o in action.option_strings if o.startswith("--"))
    if isinstance(action, argparse.BooleanOptionalAction):
        return [flag if value else "--no-" + flag[2:]] if value is not None else []
    if action.nargs == 0:  # store_true / store_false / store_const
        return [flag] if value == action.const else []
    if value is None:
        return []
    if isinstance(action, argparse._AppendAction) and isinstance(value, (list, tuple)):
        return [a for item in value for a in (flag, flag_value(item))]
    return [flag, flag_value(value)]


def config_argv(layer: dict[str, Any], parser: argparse.ArgumentParser | None = None
                ) -> list[str]:
    """The flags equivalent to a ``--config`` layer (the reverse of :func:`_cli_layer`),
    read off the parser: a new flag needs no change here."""
    options = long_options(parser or build_parser())
    argv: list[str] = []
    for key, value in layer.items():
        if key in ("model_args", "dataset_args"):
            prefix = "data." if key == "dataset_args" else ""
            argv += [a for k, v in value.items()
                     for a in ("--set", f"{prefix}{k}={flag_value(v)}")]
        elif key in ("lr", "clip_grad_norm"):  # [GROUP=]VALUE, "*" for every group
            flag = options[key].option_strings[0]
            argv += [a for g, v in value.items()
                     for a in (flag, str(v) if g == "*" else f"{g}={v}")]
        elif key == "optim":  # GROUP.FIELD=VALUE
            argv += [a for g, fields in value.items() for f, v in fields.items()
                     for a in (options[key].option_strings[0], f"{g}.{f}={flag_value(v)}")]
        else:
            argv += option_argv(options[key], value)
    return argv
