"""A registered dataset's options, checked against its factory's signature.

Shared by the trainer (``ganzoo.training.data``), the queue's checks and the ``mix`` dataset,
which builds its sources through the same checks.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from .. import config as cfg
from ..registry import DATASETS

__all__ = ["factory_options", "check_dataset_options"]


def factory_options(factory) -> tuple[dict[str, Any], bool]:
    """Annotations of a dataset factory's keyword options, and whether it takes ``**kwargs``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return {}, True
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # noqa: BLE001 - unresolvable annotations: skip type checks
        hints = {}
    options, var_kw = {}, False
    for name, p in sig.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            options[name] = hints.get(name, Any)
    return options, var_kw


def check_dataset_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Type-check ``options`` against the factory of dataset ``name``; unknown keys raise."""
    known, var_kw = factory_options(DATASETS.get(name))
    checked = {}
    for key, value in options.items():
        if key not in known:
            if var_kw:
                checked[key] = value
                continue
            hint = cfg.did_you_mean(key, known)
            raise KeyError(f"dataset '{name}' has no option '{key}'{hint} "
                           f"(options: {', '.join(sorted(known)) or 'none'})")
        checked[key] = cfg.coerce(value, known[key], f"data.{key}")
    return checked
