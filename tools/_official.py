"""What the ``tools/compare_*.py`` scripts share: they load a family's official networks from a
checkout the user fetched, copy ganzoo's weights into them, feed both the same inputs, and print
one table of modules and one of loss terms (docs/cut.md, "Against the authors' code").

None of the official code is in ganzoo: the scripts import it from ``--official PATH``.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import torch


def checkout(path: str | None, marker: str, repo: str) -> Path:
    """``path`` as a checkout of ``repo`` holding ``marker``; otherwise one line on stderr and
    exit code 2 (bad input)."""
    root = Path(path).expanduser() if path else None
    if root is None or not (root / marker).is_file():
        what = "--official PATH is required" if root is None else \
            f"{root} is not a checkout of {repo} (no {marker})"
        print(f"error: {what}; clone {repo} and pass its folder as --official",
              file=sys.stderr)
        sys.exit(2)
    return root


@contextlib.contextmanager
def importable(root: Path, quiet: bool = True):
    """The checkout on ``sys.path`` (first), its prints swallowed while it builds."""
    sys.path.insert(0, str(root))
    try:
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            yield
    finally:
        sys.path.remove(str(root))


CUT_REPO = "taesungp/contrastive-unpaired-translation"


def official_cut_options(root: Path, flags: str, mode: str = "CUT"):
    """The official CUT code's options, parsed by its own ``TrainOptions`` from ``flags`` (a
    command line; ``--gpu_ids -1`` unless it names a GPU). The mode's defaults are spelled
    out: ``CUTModel`` reads ``--CUT_mode`` from ``sys.argv``, not from the command line it is
    given, so without them every mode would get CUT's."""
    defaults = ("--nce_idt True --lambda_NCE 1" if mode == "CUT" else
                "--nce_idt False --lambda_NCE 10 --flip_equivariance True")
    gpu = "" if "--gpu_ids" in flags else "--gpu_ids -1"
    with importable(root):
        from options.train_options import TrainOptions

        return TrainOptions(cmd_line=f"{gpu} --CUT_mode {mode} {defaults} {flags}").parse()


def official_cut(root: Path, flags: str, mode: str = "CUT"):
    """The official ``CUTModel`` built from ``official_cut_options``, and those options."""
    opt = official_cut_options(root, flags, mode)
    with importable(root):
        import models

        return models.create_model(opt), opt


def copy_weights(ours: dict[str, torch.Tensor], theirs: torch.nn.Module, rename) -> int:
    """Copy ``ours`` (a state dict) into ``theirs`` under ``rename(key)``; every parameter on
    both sides must be matched, with the same shape, so nothing silently stays random.
    Returns the number of values copied."""
    target = dict(theirs.named_parameters())
    mapped = {rename(k): v for k, v in ours.items()}
    missing, extra = sorted(set(target) - set(mapped)), sorted(set(mapped) - set(target))
    if missing or extra:
        raise SystemExit(f"error: parameter names do not map: official only {missing[:5]}, "
                         f"ganzoo only {extra[:5]}")
    with torch.no_grad():
        for k, p in target.items():
            if p.shape != mapped[k].shape:
                raise SystemExit(f"error: {k}: official {tuple(p.shape)}, ganzoo "
                                 f"{tuple(mapped[k].shape)}")
            p.copy_(mapped[k])
    return sum(p.numel() for p in target.values())


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def max_diff(a, b) -> float:
    """Largest absolute difference of two tensors (or lists of tensors)."""
    if isinstance(a, (list, tuple)):
        return max(max_diff(x, y) for x, y in zip(a, b, strict=True))
    return (a.detach().double() - b.detach().double()).abs().max().item()


def rel_diff(a, b) -> float:
    """``max_diff(a, b)`` over the largest magnitude in ``b``: for gradients, whose scale
    varies by orders of magnitude between networks."""
    scale = max_diff(b, [torch.zeros_like(t) for t in b] if isinstance(b, (list, tuple))
                     else torch.zeros_like(b))
    return max_diff(a, b) / max(scale, 1e-30)


def print_tables(modules: list[tuple[str, int, int, float]],
                 losses: list[tuple[str, float, float]], title: str) -> float:
    """Markdown tables of modules (name, parameters in ganzoo and official, max |Δ| of outputs)
    and loss terms; returns the largest difference in either."""
    print(f"\n{title}\n")
    print("| module | parameters, ganzoo | parameters, official | max \\|Δ\\| of outputs |")
    print("| --- | ---: | ---: | ---: |")
    for name, ours, theirs, diff in modules:
        print(f"| {name} | {ours:,} | {theirs:,} | {diff:.2e} |")
    print("\n| loss term | ganzoo | official | \\|Δ\\| |\n| --- | ---: | ---: | ---: |")
    for name, ours, theirs in losses:
        print(f"| {name} | {ours:.6f} | {theirs:.6f} | {abs(ours - theirs):.2e} |")
    return max([d for *_, d in modules] + [abs(a - b) for _, a, b in losses])
