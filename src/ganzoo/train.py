"""Train any registered ganzoo model: ``python -m ganzoo.train``.

The same command runs on one device, under ``accelerate launch -m ganzoo.train`` and under
``torchrun --nproc_per_node N -m ganzoo.train`` (CPU processes use gloo); ``ganzoo train``
calls :func:`main`. Examples::

    python -m ganzoo.train --model dcgan --dataset shapes --output-dir runs/dcgan \\
        --max-steps 2000 --set ngf=32 --set data.resolution=32 --lr generator=1e-4
    python -m ganzoo.train --config run.yaml --output-dir runs/dcgan --resume latest

``--set key=value`` sets a field of the model's config; ``--set data.key=value`` a dataset
option. See docs/training.md for every flag, the config file format and the outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ._progress import EXIT_FAILED, EXIT_OK, EXIT_USAGE, report_interrupted
from .hub import HubError
from .rundir import CONFIG, CheckpointError, resolve_checkpoint
# The parser lives beside the run config it fills (ganzoo.training.args), where the queue's
# runner also reads it; importing it loads neither torch nor the trainer.
from .training.args import PROG, _cli_layer, build_parser  # noqa: F401 - _cli_layer: tests
from .training.config import load_config_file, resolve_run_config
from .training import malloc

__all__ = ["main", "build_parser", "parse_run_config"]


def parse_run_config(argv: list[str] | None = None, prog: str = PROG):
    """The resolved :class:`~ganzoo.training.RunConfig` for a command line."""
    ns = build_parser(prog).parse_args(argv)
    file_layer = load_config_file(ns.config) if getattr(ns, "config", None) else {}
    cli_layer = _cli_layer(ns)
    top = {**file_layer, **cli_layer}
    base: dict[str, Any] = {}
    if top.get("resume") and top.get("output_dir"):
        path = resolve_checkpoint(str(top["resume"]), Path(top["output_dir"]))
        if path is not None:
            cfg_file = path / CONFIG
            try:
                base = json.loads(cfg_file.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise CheckpointError(f"cannot read {cfg_file}: {e}") from e
            for key in ("resume", "overwrite", "output_dir"):
                base.pop(key, None)
    return resolve_run_config(base, file_layer, cli_layer)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """Run ``python -m ganzoo.train`` with ``argv``; returns the exit code (the scheme of
    ``ganzoo --help``). ``prog`` is the command's name in its help and errors. Ctrl-C while
    training is the trainer's graceful stop (a checkpoint, exit 0); before, it is 130."""
    try:
        return _main(argv, prog)
    except KeyboardInterrupt as e:
        return report_interrupted(prog, e)


def _main(argv: list[str] | None, prog: str) -> int:
    from .training.trainer import Trainer, TrainingError  # torch: not for --help

    try:
        run = parse_run_config(argv, prog)
        trainer = Trainer(run)
    except (KeyError, ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError,
            CheckpointError, HubError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
    if trainer.accelerator.device.type == "cpu":
        # This process is the training run: keep freed host memory for the next step
        # (docs/training.md, "Host memory on CPU"). Not done by Trainer, which may share a
        # process with other work.
        malloc.steady_malloc()
    try:
        trainer.train()
    except TrainingError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
