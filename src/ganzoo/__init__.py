"""ganzoo: a model zoo for image generative models in PyTorch.

``import ganzoo`` is cheap: it imports no family module. Built-ins and plugins load on the first
registry query (``list_models``, ``build``, ...).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__", "build", "build_loss", "build_dataset", "build_metric", "list_models",
    "list_losses", "list_datasets", "list_metrics", "model_info", "from_pretrained", "evaluate",
]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model presets (built-ins and plugins), sorted; ``pattern`` is fnmatch-style."""
    from .registry import MODELS

    return MODELS.names(pattern)


def list_losses(pattern: str | None = None) -> list[str]:
    from .registry import LOSSES

    return LOSSES.names(pattern)


def list_datasets(pattern: str | None = None) -> list[str]:
    from .registry import DATASETS

    return DATASETS.names(pattern)


def list_metrics(pattern: str | None = None) -> list[str]:
    from .registry import METRICS

    return METRICS.names(pattern)


def _split_tag(name: str) -> tuple[str, str | None]:
    base, _, tag = name.partition(".")
    return base, (tag or None)


def _check_model(model, name: str, entry) -> None:
    """A model factory must return a GenerativeModel: the trainer, ``evaluate`` and the CLI
    read its contract (``image_size``, ``task``, ``optimizer_groups``, ...) without guessing."""
    from .models.base import GenerativeModel

    if not isinstance(model, GenerativeModel):
        where = entry.entry_point.value if entry.entry_point is not None else \
            f"{entry.module}.{name}"
        raise TypeError(f"model '{name}' (factory {where}, from '{entry.distribution}') "
                        f"returned a {type(model).__name__}, not a "
                        f"ganzoo.models.base.GenerativeModel")


def build(name: str, pretrained: bool | str = False, **overrides):
    """Build a registered model preset.

    ``overrides`` replace config fields (type-checked; ``None`` values are dropped, as in timm).
    ``pretrained`` is ``True`` (the preset's default tag, or the tag in ``name.tag``), a Hub
    repo id (``org/repo`` or ``hf-hub:org/repo[@revision]``) or a local folder.

    As timm's ``create_model``, ``name`` may itself be ``hf-hub:org/name[@revision]`` or
    ``local-dir:PATH``: the saved model's preset and config, with its weights.
    """
    from .hub import load_weights, resolve_folder, resolve_model
    from .registry import MODELS

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if name.startswith(("hf-hub:", "local-dir:")):
        if pretrained not in (False, True):
            raise ValueError(f"build('{name}') loads that model's own weights; pretrained="
                             f"{pretrained!r} cannot replace them")
        return resolve_model(name, **overrides)[0]
    name, tag = _split_tag(name)
    model = MODELS.build(name, **overrides)
    _check_model(model, name, MODELS.entry(name))
    if tag is not None and pretrained is False:
        pretrained = True
    if pretrained is True:
        tags = MODELS.entry(name).metadata.get("pretrained", {})
        if not tags:
            raise ValueError(f"model '{name}' has no pretrained weights; pass a folder or a "
                             f"Hub repo id as pretrained=...")
        key = tag or next(iter(tags))
        if key not in tags:
            raise KeyError(f"model '{name}' has no pretrained tag '{key}'; tags: {sorted(tags)}")
        pretrained = tags[key]
    if pretrained:
        load_weights(model, resolve_folder(pretrained))
    return model


def build_loss(name: str, **kwargs):
    from .registry import LOSSES

    return LOSSES.build(name, **kwargs)


def build_dataset(name: str, **kwargs):
    from .registry import DATASETS

    return DATASETS.build(name, **kwargs)


def build_metric(name: str, **kwargs):
    from .registry import METRICS

    return METRICS.build(name, **kwargs)


def model_info(name: str) -> dict:
    """Family, module, providing distribution, config defaults and pretrained tags of a preset.

    The preset is built on the ``meta`` device, so no memory is allocated for its weights.
    """
    import torch

    from .config import to_dict
    from .registry import MODELS

    name, _ = _split_tag(name)
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


def from_pretrained(source, revision: str | None = None, **kwargs):
    """Load a saved model from a folder, a trainer run folder or a Hub repo id (``org/name``,
    ``hf-hub:org/name@rev``); ``token``, ``cache_dir``, ``force_download`` and
    ``local_files_only`` go to the download, other keywords override config fields."""
    from .hub import from_pretrained as _from_pretrained

    return _from_pretrained(source, revision, **kwargs)


def evaluate(*args, **kwargs):
    """Score generated images against a reference; see :func:`ganzoo.metrics.evaluate`."""
    from .metrics import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
