"""``python -m ganzoo.experiments.checkpoint_model CHECKPOINT OUT``: a training checkpoint as a
saved-model folder, so that ``ganzoo eval`` can score it (``eval: {checkpoints: all}`` in a
queue scores every kept checkpoint this way).

A checkpoint folder (``checkpoints/step_XXXXXXXX/``) holds the model's weights beside the run
config that built it; this builds the model from that config (preset and ``model_args``),
loads the weights strictly and writes the folder ``final/`` would be, with the step on its
card. Run as a child process by the queue, like the trainer and the evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._factory import build
from ..hub import load_weights
from ..rundir import CONFIG, STEP_RE, WEIGHTS, read_json

__all__ = ["load_checkpoint_model", "export_checkpoint", "main"]


def load_checkpoint_model(checkpoint: Path):
    """The model of a training checkpoint: built from the run config the checkpoint keeps
    (preset and ``model_args``), its weights loaded strictly."""
    checkpoint = Path(checkpoint)
    run = read_json(checkpoint / CONFIG)
    if not isinstance(run, dict) or not run.get("model"):
        raise FileNotFoundError(f"{checkpoint / CONFIG} holds no run config with a model")
    model = build(run["model"], **(run.get("model_args") or {}))
    load_weights(model, checkpoint / WEIGHTS)
    return model


def export_checkpoint(checkpoint: Path, out: Path) -> Path:
    """Write the model of ``checkpoint`` into ``out`` (``save_pretrained``); returns ``out``."""
    checkpoint = Path(checkpoint)
    model = load_checkpoint_model(checkpoint)
    match = STEP_RE.match(checkpoint.name)
    facts = {"steps": int(match.group(1))} if match else {}
    model.save_pretrained(out, **facts)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ganzoo.experiments.checkpoint_model",
                                description="A training checkpoint as a saved-model folder.")
    p.add_argument("checkpoint", help="a checkpoint folder, checkpoints/step_XXXXXXXX")
    p.add_argument("out", help="the model folder to write")
    args = p.parse_args(argv)
    try:
        export_checkpoint(Path(args.checkpoint), Path(args.out))
    except (FileNotFoundError, KeyError, ValueError, RuntimeError) as e:
        print(f"checkpoint_model: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
