"""Typed dataclass configs: JSON round trip and checked overrides.

Every family's hyperparameters live in one ``@dataclass`` deriving from :class:`Config`.
These helpers give all of them the same behaviour:

- construction checks every field against its annotation (``Literal`` choices, numbers,
  tuples), naming ``Class.field``; a family's ``__post_init__`` adds its range checks after
  ``super().__post_init__()``;
- ``to_dict``/``from_dict`` for ``config.json``, and ``override`` for ``build(name,
  **overrides)`` and the trainer's ``--set key=value``, which coerce strings and name the field
  (with close matches) when it is unknown;
- ``Config.renamed`` maps field names of earlier releases to today's, so saved folders and
  run configs with the old names still load, with a ``FutureWarning``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
import warnings
from typing import Any, Callable, ClassVar, Literal, Union

__all__ = ["Config", "to_dict", "from_dict", "override", "coerce", "close_matches", "did_you_mean",
           "upgrade"]


class Config:
    """Base of the family configs (dataclasses): checks every field's type on construction.

    ``renamed`` maps an old field name to its new name, or to ``(new, index)`` when the old
    field became one item of a tuple field (``beta1`` -> ``("betas", 0)``).
    """

    renamed: ClassVar[dict[str, str | tuple[str, int]]] = {}

    def __post_init__(self):
        cls = type(self)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            checked = coerce(value, _hints(cls)[f.name], f"{cls.__name__}.{f.name}")
            if checked is not value:
                object.__setattr__(self, f.name, checked)


def upgrade(cls, data: dict[str, Any], current=None) -> dict[str, Any]:
    """``data`` with the field names of earlier releases (``cls.renamed``) replaced; a tuple
    field filled item by item starts from ``current``'s value (else the class default)."""
    renames = getattr(cls, "renamed", None) or {}
    if not any(k in data for k in renames):
        return data
    out, items = dict(data), {}
    for old, new in renames.items():
        if old not in out:
            continue
        target, index = (new, None) if isinstance(new, str) else new
        now = target if index is None else f"{target}[{index}]"
        warnings.warn(f"{cls.__name__}: '{old}' is now '{now}'; the old name still works but "
                      f"will be removed", FutureWarning, stacklevel=4)
        value = out.pop(old)
        if index is None:
            if target in out:
                raise ValueError(f"{cls.__name__}: '{old}' and its new name '{target}' are "
                                 f"both given")
            out[target] = value
        else:
            items.setdefault(target, {})[index] = value
    for target, parts in items.items():
        default = getattr(current, target) if current is not None else \
            {f.name: f for f in dataclasses.fields(cls)}[target].default
        value = list(out.get(target, default))
        for index, v in parts.items():
            value[index] = v
        out[target] = tuple(value)
    return out


def close_matches(name: str, candidates, n: int = 5) -> list[str]:
    candidates = list(candidates)
    matches = difflib.get_close_matches(name, candidates, n=n, cutoff=0.5)
    matches += [c for c in candidates if name and name in c and c not in matches]
    return matches[:n]


def did_you_mean(name: str, candidates, *, sentence: bool = False,
                 show: Callable[[str], str] = str) -> str:
    """The hint for an unknown ``name``: ``"; did you mean a, b?"``, or with ``sentence`` (after
    a full stop) ``" Did you mean: a, b?"``; ``""`` when nothing in ``candidates`` is close.
    ``show`` renders each match (e.g. as a path)."""
    near = [show(m) for m in close_matches(name, candidates)]
    if not near:
        return ""
    return f" Did you mean: {', '.join(near)}?" if sentence else f"; did you mean {', '.join(near)}?"


def to_dict(config) -> dict[str, Any]:
    """A JSON-serialisable dict of a dataclass config (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(config)


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict[str, Any]):
    """Rebuild a config from ``to_dict`` output; unknown keys raise with close matches."""
    data = upgrade(cls, data)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(_unknown_msg(cls, unknown[0], names))
    hints = _hints(cls)
    return cls(**{k: coerce(v, hints[k], k) for k, v in data.items()})


def _unknown_msg(cls, key, names) -> str:
    hint = did_you_mean(key, names)
    return f"{cls.__name__} has no field '{key}'{hint} (fields: {', '.join(sorted(names))})"


def override(config, overrides: dict[str, Any] | None = None, **kwargs):
    """A copy of ``config`` with fields replaced; values are type-checked per field.

    Strings are parsed for non-string fields (``"0.5"`` for a float, ``"[64, 96]"`` for a
    tuple), so the trainer's ``--set key=value`` goes through the same path.
    """
    changes = {**(overrides or {}), **kwargs}
    if not changes:
        return config
    cls = type(config)
    changes = upgrade(cls, changes, config)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    checked = {}
    for key, value in changes.items():
        if key not in names:
            raise KeyError(_unknown_msg(cls, key, names))
        checked[key] = coerce(value, hints[key], key)
    return dataclasses.replace(config, **checked)


def _parse_str(value: str):
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def coerce(value, annotation, field: str):
    """Check ``value`` against ``annotation``; convert what converts losslessly."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, field)
            except (TypeError, ValueError) as e:
                errors.append(str(e))
        raise ValueError(f"{field}: {value!r} does not match {annotation}")
    if origin is Literal:
        if isinstance(value, str) and value not in args:
            parsed = _parse_str(value)
            if parsed in args:
                return parsed
        if value not in args:
            raise ValueError(f"{field} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            value = _parse_str(value)
            if not isinstance(value, (list, tuple)):
                value = [value]
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{field} must be a sequence, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"{field} must have {len(args)} items, got {len(value)}")
            items = [coerce(v, a, field) for v, a in zip(value, args)]
        else:
            item_type = args[0] if args else Any
            items = [coerce(v, item_type, field) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if isinstance(value, str):
            value = _parse_str(value)
        if not isinstance(value, dict):
            raise ValueError(f"{field} must be a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, str):
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
        if isinstance(value, bool):
            return value
        raise ValueError(f"{field} must be a bool, got {value!r}")
    if annotation is int:
        if isinstance(value, str):
            value = _parse_str(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ValueError(f"{field} must be an int, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML would read "1e-3" as a string
            except ValueError:
                raise ValueError(f"{field} must be a float, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{field} must be a float, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{field} must be a string, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return from_dict(annotation, value)
    return value
