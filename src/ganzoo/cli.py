"""The ``ganzoo`` command: list, info, sample, export, push, prepare, train, eval, queue,
report.

``ganzoo train ...`` is ``python -m ganzoo.train ...``, ``ganzoo eval ...`` is the metrics
module's command line, and ``ganzoo queue`` / ``ganzoo report`` are ``ganzoo.experiments``';
all are dispatched here so that there is one console script.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys

from ._io import load_json, save_grid
from ._progress import EXIT_CODES, EXIT_FAILED, EXIT_USAGE, report_interrupted
from .datasets import example_batch
from .export import export
from . import registry
from .hub import HubError, push_folder

KINDS = ("models", "losses", "datasets", "metrics")

# Commands with a parser of their own, imported when run (``ganzoo --help`` and ``ganzoo list``
# import neither torch nor their modules): name -> (module, function, keyword arguments).
DELEGATED = {"train": ("ganzoo.train", "main", {"prog": "ganzoo train"}),
             "eval": ("ganzoo.metrics.cli", "main", {}),
             "queue": ("ganzoo.experiments.cli", "queue_main", {}),
             "report": ("ganzoo.experiments.cli", "report_main", {})}

# ``ganzoo sample``'s flags for sampling options (``GenerativeModel.sampling_options``): a model
# that does not list the option refuses the flag. flag -> option name.
SAMPLING_FLAGS = {"steps": "num_inference_steps", "sampler": "sampler"}


def _factory():
    """:mod:`ganzoo._factory` (``model_info``, ``resolve_model``), imported on first use: it
    imports torch, which ``ganzoo --help`` and ``ganzoo list`` do not need."""
    from . import _factory

    return _factory


def _list(args) -> int:
    if args.markdown:
        if args.kind != "models":
            raise ValueError("--markdown lists models only")
        print(model_table(args.pattern), end="")
        return 0
    fn = getattr(registry, f"list_{args.kind}")
    for name in fn(args.pattern):
        print(name)
    return 0


def model_table(pattern: str | None = None) -> str:
    """The README's model table, generated from the registry (presets built on ``meta``)."""
    model_info = _factory().model_info
    rows = ["| preset | family | task | size | params | paper |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in registry.list_models(pattern):
        info = model_info(name)
        height, width = info["image_size"]
        size = height if height == width else f"{height}x{width}"
        params = f"{info['parameters'] / 1e6:.2f} M"
        paper = (info["paper"] or "").split(" (")[0]
        rows.append(f"| `{name}` | {info['family']} | {info['task']} | {size} | {params} "
                    f"| {paper} |")
    return "\n".join(rows) + "\n"


def _info(args) -> int:
    print(json.dumps(_factory().model_info(args.name), indent=2))
    return 0


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return name


def load_model(spec: str, device: str = "cpu", untrained: bool = False):
    """``spec`` through the one resolver (``ganzoo._factory.resolve_model``), on ``device``.

    A bare preset has random weights: refused unless ``untrained`` (then a warning), so that
    nobody writes 50,000 images of noise by mistake."""
    model, kind = _factory().resolve_model(spec)
    if kind == "preset" and "." not in spec.removeprefix("model:"):  # no pretrained tag
        if not untrained:
            raise ValueError(f"'{spec}' is a bare preset: its weights are random. Pass a "
                             f"trained model (a run's final/ folder or a Hub id), or "
                             f"--untrained to sample the random weights anyway")
        print(f"ganzoo: warning: '{spec}' has random (untrained) weights", file=sys.stderr)
    return model.to(_device(device)).eval()


def _sample_kwargs(args, model) -> dict:
    """The sampling options given as flags, refused unless the model takes them."""
    given = {flag: option for flag, option in SAMPLING_FLAGS.items()
             if getattr(args, flag) is not None}
    refused = [f"--{flag}" for flag, option in given.items()
               if option not in model.sampling_options]
    if refused:
        takes = ", ".join(model.sampling_options) or "none"
        raise ValueError(f"{' and '.join(refused)}: '{args.model}' takes no such sampling "
                         f"option (its sampling options: {takes})")
    return {option: getattr(args, flag) for flag, option in given.items()}


def _weights(model, kind: str) -> str:
    """Which weights were sampled, in words: an "EMA" that still copies the live weights (a
    run shorter than the family's EMA start) is called what it is."""
    if kind == "ema" and model.ema_is_live_copy():
        start = model.default_ema_start
        return f"live weights: EMA starts at step {start:,}" if start else \
            "live weights: the EMA copy equals them"
    return f"{kind.upper() if kind == 'ema' else kind} weights"


def _sample(args) -> int:
    model = load_model(args.model, args.device, args.untrained)
    if args.live:
        model.use_ema = False
    return _sample_files(args, model, args.progress)


def _sample_files(args, model, progress: bool | None) -> int:
    import torch

    from . import sampling  # imports torch: only when sampling

    if args.input is not None:
        if args.format == "npz":
            raise ValueError("--format npz holds unconditional samples (--out-dir without "
                             "--input); --input writes png or jpg files")
        out = args.out_dir or args.out
        info = sampling.generate_folder(model, args.input, out, batch_size=args.batch_size,
                                        donor=args.donor, progress=progress, fmt=args.format)
        print(f"wrote {info['count'] - info['skipped']} images ({info['skipped']} already "
              f"there) from {args.model} ({_weights(model, info['weights'])}) to "
              f"{info['output']}")
        return 0
    kwargs = _sample_kwargs(args, model)
    if args.out_dir is not None:
        info = sampling.sample_to_folder(model, args.out_dir, args.n, batch_size=args.batch_size,
                                         seed=args.seed, fmt=args.format or "png",
                                         progress=progress, **kwargs)
        print(f"wrote {info['written']} images ({info['skipped']} already there) from "
              f"{args.model} ({_weights(model, info['weights'])}) to {info['output']}")
        return 0
    g = torch.Generator().manual_seed(args.seed)
    # A model whose task takes inputs shows it on embedded example inputs.
    batch = model.collate(example_batch(model, args.n)) if model.takes_inputs else None
    images = model.preview(batch, args.n, generator=g, **kwargs)
    save_grid(images, args.out, nrow=args.nrow or max(1, int(args.n ** 0.5)))
    print(f"wrote {images.shape[0]} images from {args.model} "
          f"({_weights(model, sampling.weights_in_use(model))}) to {args.out}")
    return 0


def _export(args) -> int:
    out = export(args.model, args.out, args.to, pipeline=args.pipeline, ema=not args.live,
                 overwrite=args.overwrite, progress=args.progress)
    print(f"wrote {out} ({args.to}; {'live' if args.live else 'EMA'} weights of {args.model})")
    return 0


def _push(args) -> int:
    card = {k: v for k, v in (("license", args.license), ("tags", args.tags)) if v}
    url = push_folder(args.folder, args.repo_id, private=args.private, branch=args.branch,
                      create_pr=args.create_pr, commit_message=args.commit_message,
                      evaluations=[load_json(path, "evaluation") for path in args.eval or []],
                      **card)
    print(f"pushed {args.folder} to {args.repo_id}: {url}")
    return 0


def _prepare_faces(args) -> int:
    from .datasets.faces import prepare_faces  # the optional faces extra

    try:
        summary = prepare_faces(args.src, args.dst, size=args.size, workers=args.workers,
                                device=args.device, progress=args.progress)
    except ImportError as e:  # the optional faces extra: one line saying what to install
        print(f"ganzoo prepare: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    print(summary.line())
    return 0


def _progress_flag(parser: argparse.ArgumentParser) -> None:
    """--progress / --no-progress, the rule of every long command (ganzoo._progress)."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress: a bar on a terminal (the default there); --progress "
                             "also prints a line every 30 s into a log; --no-progress: none")


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
    p = argparse.ArgumentParser(prog="ganzoo", description=__doc__.splitlines()[0],
                                epilog=EXIT_CODES)
    sub = p.add_subparsers(dest="command", required=True)

    q = sub.add_parser("list", help="list registered models, losses, datasets or metrics")
    q.add_argument("kind", nargs="?", default="models", choices=KINDS)
    q.add_argument("pattern", nargs="?", default=None, help="fnmatch pattern, e.g. 'wgan*'")
    q.add_argument("--markdown", action="store_true", help="the README's model table")
    q.set_defaults(fn=_list)

    q = sub.add_parser("info", help="family, config defaults and pretrained tags of a model")
    q.add_argument("name")
    q.set_defaults(fn=_info)

    q = sub.add_parser("sample", help="write samples of a model: a grid, numbered files for a "
                                      "FID service, or one output per input image")
    q.add_argument("model", help="saved-model folder, Hub repo id (org/name, hf-hub:org/name"
                                 "@rev) or preset name (untrained: needs --untrained)")
    q.add_argument("-n", type=positive_int, default=64, help="images to write (default 64)")
    q.add_argument("--out", default="samples.png", help="the grid's PNG (default samples.png)")
    q.add_argument("--out-dir", default=None,
                   help="write numbered files here instead of a grid (resumable)")
    q.add_argument("--input", default=None, metavar="DIR",
                   help="translate/reconstruct/transfer every image of DIR into --out-dir")
    q.add_argument("--donor", default=None, metavar="IMAGE",
                   help="transfer models with --input: give every input this image's attribute")
    q.add_argument("--format", choices=("png", "npz", "jpg"), default=None,
                   help="--out-dir files: png (default) or npz (samples.npz, arr_0); "
                        "--input: png or jpg (default for a .zip)")
    q.add_argument("--batch-size", type=positive_int, default=64)
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--nrow", type=int, default=None)
    q.add_argument("--device", default="cpu", help="auto, cpu or cuda[:i] (default cpu)")
    q.add_argument("--steps", type=positive_int, default=None,
                   help="diffusion models: denoising steps")
    q.add_argument("--sampler", choices=("ddim", "ddpm"), default=None,
                   help="diffusion models: the sampler")
    q.add_argument("--live", action="store_true",
                   help="use the live weights instead of the EMA copies")
    q.add_argument("--untrained", action="store_true",
                   help="allow a bare preset (random weights)")
    _progress_flag(q)
    q.set_defaults(fn=_sample)

    q = sub.add_parser("export", help="write a saved model in another library's format")
    q.add_argument("model", help="saved-model folder, trainer run folder (its final/) or Hub id")
    q.add_argument("--to", required=True, choices=("diffusers",), help="the format")
    q.add_argument("out", help="output folder")
    q.add_argument("--pipeline", choices=("ddim", "ddpm"), default=None,
                   help="diffusers pipeline class (default: the model's sampler)")
    q.add_argument("--live", action="store_true", help="the live weights, not the EMA copies")
    q.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _progress_flag(q)
    q.set_defaults(fn=_export)

    q = sub.add_parser("push", help="upload a saved model, or a run's final/, to the Hub")
    q.add_argument("folder", help="saved-model folder or trainer run folder (its final/)")
    q.add_argument("repo_id", help="org/name")
    q.add_argument("--private", action="store_const", const=True, default=None,
                   help="create the repo private (an existing repo keeps its visibility)")
    q.add_argument("--branch", "--revision", dest="branch", default=None,
                   help="commit to this branch (created from main if missing)")
    q.add_argument("--create-pr", action="store_true", help="open a pull request instead")
    q.add_argument("--license", default=None, help="card licence (default apache-2.0)")
    q.add_argument("--tag", action="append", dest="tags", help="card tag; repeatable")
    q.add_argument("--eval", action="append", metavar="JSON",
                   help="a `ganzoo eval --out` result to add to the card; repeatable")
    q.add_argument("--commit-message", default="Upload ganzoo model")
    q.set_defaults(fn=_push)

    q = sub.add_parser("prepare", help="one-time preprocessing of an image folder")
    what = q.add_subparsers(dest="what", required=True)
    q = what.add_parser("faces", help="MTCNN-align the faces under SRC into DST (docs/data.md)")
    q.add_argument("src", help="folder of photographs, searched recursively")
    q.add_argument("dst", help="output folder: aligned crops at the same relative paths")
    q.add_argument("--size", type=positive_int, default=128, help="crop size (default 128)")
    q.add_argument("--workers", type=positive_int, default=1, help="processes (default 1)")
    q.add_argument("--device", default="cpu", help="detector device (default cpu)")
    _progress_flag(q)
    q.set_defaults(fn=_prepare_faces)

    sub.add_parser("train", help="train a model (same as python -m ganzoo.train)",
                   add_help=False)
    sub.add_parser("eval", help="evaluate FID/KID/IS/... (see ganzoo eval --help)",
                   add_help=False)
    sub.add_parser("queue", help="run a queue of experiments (see ganzoo queue --help)",
                   add_help=False)
    sub.add_parser("report", help="HTML report comparing runs (see ganzoo report --help)",
                   add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run ``ganzoo ARGV``; returns the exit code (``EXIT_CODES``: 0 done, 1 failed, 2 bad
    input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except KeyboardInterrupt as e:  # a long command's loop says what is complete
        return report_interrupted(f"ganzoo {argv[0]}" if argv else "ganzoo", e)
    except BrokenPipeError:
        # `ganzoo list | head`: the reader left. Python's recipe (docs, "Note on SIGPIPE"):
        # point stdout at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] in DELEGATED:
        module, function, kwargs = DELEGATED[argv[0]]
        return getattr(importlib.import_module(module), function)(argv[1:], **kwargs)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (KeyError, ValueError, FileNotFoundError, FileExistsError, HubError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"ganzoo {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
