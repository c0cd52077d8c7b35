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

__all__ = ["FORMATS", "check_exportable", "export"]

FORMATS = ("diffusers",)
Format = Literal["diffusers"]


def check_exportable(model, to: Format = "diffusers") -> None:
    """ValueError unless ``model`` can be written as ``to``."""
    from .models.ddpm import DDPM

    if to not in FORMATS:
        raise ValueError(f"cannot export to {to!r}; formats: {', '.join(FORMATS)}")
    if not isinstance(model, DDPM):
        raise ValueError(f"export to diffusers needs a DDPM-family model (a diffusers "
                         f"UNet2DModel); '{model.preset}' is a {model.family} model")


def export(source, out: str | os.PathLike, to: Format = "diffusers", *,
           pipeline: Literal["ddim", "ddpm"] | None = None, ema: bool = True,
           overwrite: bool = False) -> Path:
    """Write ``source`` (a model, a saved folder, a trainer run folder or a Hub id) as ``to``
    into ``out``. ``pipeline``: the diffusers pipeline class, by default the model's own
    sampler (``config.sampler``); ``ema=False`` exports the live weights. An existing ``out``
    is refused unless ``overwrite``."""
    from ._io import atomic_dir
    from .hub import resolve_model

    model, kind = resolve_model(source)
    if kind == "preset" and "." not in os.fspath(source).removeprefix("model:"):
        raise ValueError(f"'{source}' is a bare preset: its weights are random. Export a "
                         f"trained model (a run folder, its final/ or a Hub id)")
    check_exportable(model, to)
    with atomic_dir(out, overwrite=overwrite) as tmp:
        model.to_diffusers(tmp, pipeline=pipeline or model.config.sampler, ema=ema)
    return Path(out)
