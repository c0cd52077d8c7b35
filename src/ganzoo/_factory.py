"""Turn "which model" into a model: the one place that does (after timm's
``timm/models/_factory.py``).

"Which model" is one of

- a registered preset, ``NAME`` or ``model:NAME``, with an optional pretrained tag
  (``NAME.TAG``): built fresh, untrained unless the tag (or ``pretrained=``) names weights;
- a saved-model folder (``config.json`` + ``model.safetensors``), a trainer run folder (its
  ``final/``) or ``local-dir:PATH``;
- a Hugging Face Hub repo id, ``org/name`` or ``hf-hub:org/name[@revision]``.

:func:`resolve_model` parses these; :func:`build`, :func:`from_pretrained`, ``ganzoo eval``,
``ganzoo sample`` and ``ganzoo export`` all go through it. Folders, downloads and weight files are
``ganzoo.hub``'s; presets are ``ganzoo.registry``'s. This module sits above both and above
``ganzoo.models``, so every model it returns is checked against the
:class:`~ganzoo.models.base.GenerativeModel` contract once, here.
"""

from __future__ import annotations

import os

import torch

from . import hub
from .config import did_you_mean, to_dict
from .models.base import GenerativeModel
from .registry import MODELS, Entry

__all__ = ["build", "model_info", "from_pretrained", "resolve_model", "split_tag"]


def split_tag(name: str) -> tuple[str, str | None]:
    """``"preset.tag"`` -> ``("preset", "tag")``; ``"preset"`` -> ``("preset", None)``."""
    base, _, tag = name.partition(".")
    return base, (tag or None)


def _check_model(model, name: str, entry: Entry | None = None) -> None:
    """A model factory must return a GenerativeModel: the trainer, ``evaluate`` and the CLI
    read its contract (``image_size``, ``task``, ``optimizer_groups``, ...) without guessing."""
    if isinstance(model, GenerativeModel):
        return
    if entry is None:
        where = f"preset '{name}'"
    else:
        factory = entry.entry_point.value if entry.entry_point is not None else \
            f"{entry.module}.{name}"
        where = f"'{name}' (factory {factory}, from '{entry.distribution}')"
    raise TypeError(f"model {where} returned a {type(model).__name__}, not a "
                    f"ganzoo.models.base.GenerativeModel")


def _pretrained_folder(name: str, tag: str | None, pretrained: bool | str):
    """The folder or Hub id that ``pretrained`` (and a ``.tag``) name for preset ``name``, or
    None for none."""
    if tag is not None and pretrained is False:
        pretrained = True
    if pretrained is not True:
        return pretrained or None
    tags = MODELS.entry(name).metadata.get("pretrained", {})
    if not tags:
        raise ValueError(f"model '{name}' has no pretrained weights; pass a folder or a "
                         f"Hub repo id as pretrained=...")
    key = tag or next(iter(tags))
    if key not in tags:
        raise KeyError(f"model '{name}' has no pretrained tag '{key}'; tags: {sorted(tags)}")
    return tags[key]


def build(name: str, pretrained: bool | str = False, **overrides) -> GenerativeModel:
    """Build a registered model preset.

    ``overrides`` replace config fields (type-checked; ``None`` values are dropped, as in timm).
    ``pretrained`` is ``True`` (the preset's default tag, or the tag in ``name.tag``), a Hub
    repo id (``org/repo`` or ``hf-hub:org/repo[@revision]``) or a local folder.

    As timm's ``create_model``, ``name`` may itself be ``hf-hub:org/name[@revision]`` or
    ``local-dir:PATH``: the saved model's preset and config, with its weights.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if name.startswith(("hf-hub:", "local-dir:")):
        if pretrained not in (False, True):
            raise ValueError(f"build('{name}') loads that model's own weights; pretrained="
                             f"{pretrained!r} cannot replace them")
        return from_pretrained(name, **overrides)
    name, tag = split_tag(name)
    model = MODELS.build(name, **overrides)
    _check_model(model, name, MODELS.entry(name))
    source = _pretrained_folder(name, tag, pretrained)
    if source:
        hub.load_weights(model, hub.resolve_folder(source))
    return model


def model_info(name: str) -> dict:
    """Family, module, providing distribution, config defaults and pretrained tags of a preset.

    The preset is built on the ``meta`` device, so no memory is allocated for its weights.
    """
    name, _ = split_tag(name)
    entry = MODELS.entry(name)
    factory = MODELS.get(name)
    with torch.device("meta"):
        model = factory()
    _check_model(model, name, entry)
    n_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("ema."))
    return {
        "name": name,
        "family": model.family,
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "module": entry.module,
        "distribution": entry.distribution,
        "task": model.task,
        "paper": model.paper,
        "image_size": list(model.image_size),
        "channels": model.channels,
        "batch_keys": list(model.batch_keys),
        "parameters": n_params,
        "config": to_dict(model.config),
        "pretrained": dict(entry.metadata.get("pretrained", {})),
    }


def from_pretrained(source, revision: str | None = None, **kwargs) -> GenerativeModel:
    """Load a saved model from a folder, a trainer run folder or a Hub repo id (``org/name``,
    ``hf-hub:org/name@rev``); ``token``, ``cache_dir``, ``force_download`` and
    ``local_files_only`` go to the download, other keywords override config fields."""
    model = hub.from_pretrained(source, revision, **kwargs)
    _check_model(model, str(model.preset))
    return model


def resolve_model(spec, revision: str | None = None, **overrides) -> tuple[GenerativeModel, str]:
    """The one parser of "which model" (see the module docstring): returns ``(model, kind)``.

    ``kind`` is ``"object"`` for a model object (returned as is), ``"preset"`` for
    ``model:NAME`` or a registered preset name (``.tag`` included), ``"folder"`` for a saved
    folder, a trainer run folder or ``local-dir:PATH``, and ``"hub"`` for ``org/name`` or
    ``hf-hub:org/name[@revision]``. ``overrides`` replace config fields.
    """
    if isinstance(spec, GenerativeModel):
        return spec, "object"
    s = os.fspath(spec)
    if s.startswith("model:"):
        return build(s[len("model:"):], **overrides), "preset"
    if s.startswith("hf-hub:"):
        return from_pretrained(s, revision, **overrides), "hub"
    if s.startswith("local-dir:") or os.path.isdir(s):
        return from_pretrained(s, **overrides), "folder"
    hub.check_path_like(s)
    if s.partition(".")[0] in MODELS:
        return build(s, **overrides), "preset"
    if hub.split_revision(s)[0].count("/") == 1 and not s.startswith((".", "/", "~")):
        return from_pretrained(s, revision, **overrides), "hub"
    hint = did_you_mean(s, MODELS.names(), sentence=True)
    raise FileNotFoundError(f"'{s}' is not a model preset, a saved-model folder or a Hub repo "
                            f"id (org/name).{hint}")
