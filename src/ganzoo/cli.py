"""The ``ganzoo`` command: list, info, sample, prepare, train, eval.

``ganzoo train ...`` is ``python -m ganzoo.train ...`` and ``ganzoo eval ...`` is the metrics
module's command line; both are dispatched here so that there is one console script.
"""

from __future__ import annotations

import argparse
import json
import sys

KINDS = ("models", "losses", "datasets", "metrics")


def _list(args) -> int:
    import ganzoo

    if args.markdown:
        if args.kind != "models":
            raise ValueError("--markdown lists models only")
        print(model_table(args.pattern), end="")
        return 0
    fn = getattr(ganzoo, f"list_{args.kind}")
    for name in fn(args.pattern):
        print(name)
    return 0


def model_table(pattern: str | None = None) -> str:
    """The README's model table, generated from the registry (presets built on ``meta``)."""
    import ganzoo

    rows = ["| preset | family | task | size | params | paper |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in ganzoo.list_models(pattern):
        info = ganzoo.model_info(name)
        config = info["config"] or {}
        res = config.get("resolution") or max(config.get("resolutions") or [0]) or "?"
        aspect = config.get("aspect_ratio", 1.0) or 1.0
        size = f"{res}x{int(res * aspect)}" if isinstance(res, int) and aspect != 1.0 else res
        params = f"{info['parameters'] / 1e6:.2f} M"
        paper = (info["paper"] or "").split(" (")[0]
        rows.append(f"| `{name}` | {info['family']} | {info['task']} | {size} | {params} "
                    f"| {paper} |")
    return "\n".join(rows) + "\n"


def _info(args) -> int:
    import ganzoo

    print(json.dumps(ganzoo.model_info(args.name), indent=2))
    return 0


def load_model(spec: str, device: str = "cpu"):
    """A preset name (untrained), a saved-model folder or a Hub repo id (``hf-hub:org/x``)."""
    import os

    import ganzoo
    from ganzoo.registry import MODELS

    if os.path.isdir(spec) or spec.startswith(("hf-hub:", "local-dir:")):
        model = ganzoo.from_pretrained(spec)
    elif spec.split(".")[0] in MODELS:
        model = ganzoo.build(spec)
    else:
        model = ganzoo.from_pretrained(spec)  # org/name on the Hub, or a clear error
    return model.to(device).eval()


def _sample(args) -> int:
    import torch
    from torchvision.utils import save_image

    from .datasets import example_batch

    model = load_model(args.model, args.device)
    g = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        if model.task == "sample":
            images = model.sample(args.n, generator=g)
        else:  # translation-like families show their task on embedded example inputs
            batch = {k: v.to(args.device) for k, v in example_batch(model, args.n).items()}
            images = model.preview(batch, args.n, generator=g)
    nrow = args.nrow or max(1, int(args.n ** 0.5))
    save_image(images.float().cpu() * 0.5 + 0.5, args.out, nrow=nrow)
    print(f"wrote {images.shape[0]} images from {args.model} to {args.out}")
    return 0


def _prepare_faces(args) -> int:
    from .datasets.faces import prepare_faces

    try:
        summary = prepare_faces(args.src, args.dst, size=args.size, workers=args.workers,
                                device=args.device, progress=args.progress)
    except ImportError as e:  # the optional faces extra: one line saying what to install
        print(f"ganzoo prepare: error: {e}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into one usage line)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ganzoo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("list", help="list registered models, losses, datasets or metrics")
    q.add_argument("kind", nargs="?", default="models", choices=KINDS)
    q.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'wgan*'")
    q.add_argument("--markdown", action="store_true", help="the README's model table")
    q.set_defaults(fn=_list)

    q = sub.add_parser("info", help="family, config defaults and pretrained tags of a model")
    q.add_argument("name")
    q.set_defaults(fn=_info)

    q = sub.add_parser("sample", help="write a grid of samples from a preset or saved model")
    q.add_argument("model", help="preset name, saved-model folder or Hub repo id")
    q.add_argument("-n", type=positive_int, default=64, help="images to write (default 64)")
    q.add_argument("--out", default="samples.png")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--nrow", type=int, default=None)
    q.add_argument("--device", default="cpu")
    q.set_defaults(fn=_sample)

    q = sub.add_parser("prepare", help="one-time preprocessing of an image folder")
    what = q.add_subparsers(dest="what", required=True)
    q = what.add_parser("faces", help="MTCNN-align the faces under SRC into DST (docs/data.md)")
    q.add_argument("src", help="folder of photographs, searched recursively")
    q.add_argument("dst", help="output folder: aligned crops at the same relative paths")
    q.add_argument("--size", type=positive_int, default=128, help="crop size (default 128)")
    q.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    q.add_argument("--device", default="cpu", help="detector device (default cpu)")
    q.add_argument("--no-progress", action="store_const", const=False, default=None,
                   dest="progress", help="no progress bar (default: shown on a terminal)")
    q.set_defaults(fn=_prepare_faces)

    sub.add_parser("train", help="train a model (same as python -m ganzoo.train)",
                   add_help=False)
    sub.add_parser("eval", help="evaluate FID/KID/IS/... (see ganzoo eval --help)",
                   add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from .train import main as train_main

        return train_main(argv[1:])
    if argv and argv[0] == "eval":
        from .metrics.cli import main as eval_main

        return eval_main(argv[1:])
    args = build_parser().parse_args(argv)
    from .hub import HubError

    try:
        return args.fn(args)
    except (KeyError, ValueError, FileNotFoundError, HubError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ganzoo {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
