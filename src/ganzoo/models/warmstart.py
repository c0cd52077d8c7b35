"""Warm-starting part of a model from a checkpoint of another network (EXP06 of
docs/workflows/genegan_multires.md: splitter and joiner from a VQ-VAE's encoder and decoder).

Which checkpoint tensor goes where is decided, in this order:

1. an explicit mapping, in either direction: ``{checkpoint key: model key}`` (ganzoo's) or
   ``{model key: checkpoint key}`` (the reference implementation's), told apart by which side
   names the model's keys;
2. identical names;
3. with ``shape_match`` (the default, as EXP06b runs with no mapping file): each
   model tensor still unset takes the next unused checkpoint tensor of the same shape, both in
   state-dict order. Every such pair is reported and logged, since it is a guess.

Errors (a mapped key that does not exist, a shape mismatch in the mapping, nothing loadable at
all) raise one ``ValueError`` that lists every offending key.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._io import load_state_dict, load_tensors

__all__ = ["read_checkpoint", "warm_start"]

logger = logging.getLogger("ganzoo.warmstart")


def read_checkpoint(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file or a ``torch.save``d state dict (read with
    ``weights_only=True``; a ``{"state_dict" | "model" | "model_state_dict": ...}`` wrapper is
    unwrapped)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors":
        return load_state_dict(path, what)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file {path}")
    obj = load_tensors(path, what)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ValueError(f"{what} {path} holds a {type(obj).__name__}, not a state dict")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _read_mapping(mapping, field: str) -> dict[str, str] | None:
    if mapping is None or isinstance(mapping, dict):
        return mapping
    path = Path(mapping).expanduser()
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{field}: cannot read {path} as JSON ({e})") from e
    if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{field}: {path} must hold one JSON object of key -> key strings")
    return data


def _oriented(mapping: dict[str, str], own: dict, state: dict) -> dict[str, str]:
    """``mapping`` as {checkpoint key: model key}, whichever direction it was written in."""
    forward = sum(k in state for k in mapping) + sum(v in own for v in mapping.values())
    reverse = sum(k in own for k in mapping) + sum(v in state for v in mapping.values())
    return {v: k for k, v in mapping.items()} if reverse > forward else dict(mapping)


def warm_start(model: nn.Module, ckpt: str | Path, mapping=None, *,
               prefixes: tuple[str, ...], shape_match: bool = True,
               ckpt_field: str = "checkpoint", map_field: str = "mapping") -> dict[str, Any]:
    """Copy checkpoint tensors into the entries of ``model.state_dict()`` under ``prefixes``.

    Returns ``{"loaded": [model keys], "by_name": [...], "by_shape": [(ckpt key, model key)],
    "ignored": [checkpoint keys not used]}``.
    """
    path = Path(ckpt).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt_field}: no such file {path}")
    state = read_checkpoint(path, ckpt_field)
    own = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    pairs = _oriented(_read_mapping(mapping, map_field) or {}, own, state)
    errors = []
    missing_src = sorted(k for k in pairs if k not in state)
    if missing_src:
        errors.append(f"not in the checkpoint: {', '.join(missing_src)}")
    bad_dst = sorted(v for v in pairs.values() if v not in own)
    if bad_dst:
        errors.append(f"not {'/'.join(p.rstrip('.') for p in prefixes)} keys of this model: "
                      f"{', '.join(bad_dst)}")
    wrong = sorted(f"{k} {tuple(state[k].shape)} -> {v} {tuple(own[v].shape)}"
                   for k, v in pairs.items()
                   if k in state and v in own and state[k].shape != own[v].shape)
    if wrong:
        errors.append(f"shape mismatches: {'; '.join(wrong)}")
    if errors:
        raise ValueError(f"cannot warm-start from {path} ({map_field}): " + " | ".join(errors))
    by_name = [k for k in own if k in state and k not in pairs and k not in pairs.values()
               and state[k].shape == own[k].shape]
    pairs.update({k: k for k in by_name})
    by_shape: list[tuple[str, str]] = []
    if shape_match:
        unused = [k for k in state if k not in pairs]
        for dst in [k for k in own if k not in pairs.values()]:
            src = next((k for k in unused if state[k].shape == own[dst].shape), None)
            if src is not None:
                unused.remove(src)
                pairs[src] = dst
                by_shape.append((src, dst))
    if not pairs:
        raise ValueError(f"nothing in {path} fits {'/'.join(prefixes)} (no mapping, no shared "
                         f"names{', no matching shapes' if shape_match else ''}); pass "
                         f"{map_field}, a JSON mapping of checkpoint keys to model keys "
                         f"(e.g. {next(iter(own))})")
    if by_shape:
        logger.warning("warm start from %s: %d tensors matched by shape only: %s", path,
                       len(by_shape), ", ".join(f"{s} -> {d}" for s, d in by_shape))
    with torch.no_grad():
        for k, v in pairs.items():
            own[v].copy_(state[k].to(own[v].dtype))
    return {"loaded": sorted(pairs.values()), "by_name": sorted(by_name), "by_shape": by_shape,
            "ignored": sorted(k for k in state if k not in pairs)}
