"""Typed config overrides: type checks, close matches, JSON round trip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from ganzoo.config import from_dict, override, to_dict


@dataclass
class Cfg:
    width: int = 64
    lr: float = 2e-4
    norm: Literal["batch", "group"] = "batch"
    resolutions: tuple[int, ...] = (64, 96, 128)
    attn: bool = False
    ckpt: str | None = None

    def __post_init__(self):
        if self.width < 1:
            raise ValueError(f"width must be >= 1, got {self.width}")


def test_override_converts_strings_from_the_command_line():
    c = override(Cfg(), {"width": "32", "lr": "1e-3", "norm": "group",
                         "resolutions": "[16, 24]", "attn": "true", "ckpt": "none"})
    assert c == Cfg(width=32, lr=1e-3, norm="group", resolutions=(16, 24), attn=True, ckpt=None)


@pytest.mark.parametrize("key,value,match", [
    ("width", 1.5, "width must be an int"),
    ("width", "abc", "width must be an int"),
    ("norm", "layer", r"norm must be one of \['batch', 'group'\]"),
    ("attn", "maybe", "attn must be a bool"),
    ("resolutions", [64, "x"], "resolutions must be an int"),
    ("width", 0, "width must be >= 1"),
])
def test_override_rejects_bad_values_naming_the_field(key, value, match):
    with pytest.raises(ValueError, match=match):
        override(Cfg(), {key: value})


def test_unknown_field_lists_close_matches():
    with pytest.raises(KeyError, match="did you mean width"):
        override(Cfg(), widht=3)


def test_json_round_trip():
    c = Cfg(width=8, resolutions=(16,), ckpt="x.safetensors")
    d = to_dict(c)
    assert d["resolutions"] == [16]
    assert from_dict(Cfg, d) == c
    with pytest.raises(ValueError, match="no field 'lrr'"):
        from_dict(Cfg, {**d, "lrr": 1})
