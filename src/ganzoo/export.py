"""Saved ganzoo models in other libraries' formats: ``ganzoo export MODEL --to diffusers OUT``.

A DDPM-family model becomes a diffusers pipeline folder (``model_index.json``, ``unet/``,
``scheduler/``) that ``diffusers.DiffusionPipeline.from_pretrained(OUT)`` opens as a
``DDIMPipeline`` (or ``DDPMPipeline``): the EMA U-Net, and a scheduler with the model's own
noise schedule and prediction type (:meth:`ganzoo.models.ddpm.DDPM.to_diffusers`). The folder
is written beside ``OUT`` and renamed into place, so a failed export leaves nothing half done.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from ._io import atomic_dir
from ._progress import progress_bar

__all__ = ["FORMATS", "check_exportable", "export"]

FORMATS = ("diffusers",)
Format = Literal["diffusers"]


def check_exportable(model, to: Format = "diffusers") -> None:
    """ValueError unless ``model`` can be written as ``to``."""
    from .models.ddpm import DDPM  # imports torch: ``ganzoo --help`` imports this module

    if to not in FORMATS:
        raise ValueError(f"cannot export to {to!r}; formats: {', '.join(FORMATS)}")
    if not isinstance(model, DDPM):
        raise ValueError(f"export to diffusers needs a DDPM-family model (a diffusers "
                         f"UNet2DModel); '{model.preset}' is a {model.family} model")


def export(source, out: str | os.PathLike, to: Format = "diffusers", *,
           pipeline: Literal["ddim", "ddpm"] | None = None, ema: bool = True,
           overwrite: bool = False, progress: bool | None = None) -> Path:
    """Write ``source`` (a model, a saved folder, a trainer run folder or a Hub id) as ``to``
    into ``out``. ``pipeline``: the diffusers pipeline class, by default the model's own
    sampler (``config.sampler``); ``ema=False`` exports the live weights. An existing ``out``
    is refused unless ``overwrite``. ``progress``: its two stages, load and write
    (:mod:`ganzoo._progress`)."""
    # Here, not at the top: the factory imports torch, and `ganzoo --help` must not.
    from ._factory import resolve_model

    name = getattr(source, "preset", None) or os.fspath(source)
    with progress_bar(total=2, desc=f"loading {name}", unit="stage", enabled=progress) as bar:
        model, kind = resolve_model(source)
        if kind == "preset" and "." not in name.removeprefix("model:"):
            raise ValueError(f"'{source}' is a bare preset: its weights are random. Export a "
                             f"trained model (a run folder, its final/ or a Hub id)")
        check_exportable(model, to)
        bar.update(1)
        bar.set_description(f"writing {out}")
        with atomic_dir(out, overwrite=overwrite) as tmp:  # Ctrl-C: nothing left behind
            model.to_diffusers(tmp, pipeline=pipeline or model.config.sampler, ema=ema)
        bar.update(1)
    return Path(out)
