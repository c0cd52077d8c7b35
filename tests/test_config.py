"""Typed config overrides: type checks, close matches, JSON round trip."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import torch

import ganzoo
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


# -- one vocabulary: field names of ganzoo 0.1 still load -------------------------------------
LEGACY = Path(__file__).parent / "data" / "legacy_v0.1"


@pytest.mark.parametrize("name", sorted(p.name for p in LEGACY.iterdir()))
def test_folder_saved_before_the_rename_loads_with_a_warning(name):
    """These folders were written by ganzoo 0.1 (d_dropout, lambda_*, beta1/beta2,
    image_channels, critic_steps, beta): same weights, same outputs, one FutureWarning."""
    from safetensors.torch import load_file

    old = json.loads((LEGACY / name / "config.json").read_text())["config"]
    with pytest.warns(FutureWarning, match="is now"):
        model = ganzoo.from_pretrained(LEGACY / name)
    model.eval()
    assert not set(old) <= set(to_dict(model.config))  # some names did change
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    if model.task == "sample":
        y = model.sample(2, generator=g)
    elif model.task == "translate":
        y = model.translate(x)
    elif model.task == "transfer":
        y = torch.cat(model.transfer(x, x.flip(0)))
    else:
        y = model.reconstruct(x)
    expected = load_file(str(LEGACY / name / "expected_output.safetensors"))["output"]
    # The weights load bit for bit; the outputs were recorded on another CPU, whose oneDNN
    # kernels round differently (test_vae 8.6e-7 apart on this session's machine). A wrong or
    # missing weight moves them by orders of magnitude more.
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)


def test_old_names_in_overrides_and_their_errors():
    with pytest.warns(FutureWarning, match="'beta1' is now 'betas\\[0\\]'"):
        model = ganzoo.build("test_cut", beta1=0.3)
    assert model.config.betas == (0.3, 0.999)
    with pytest.warns(FutureWarning, match="'lambda_nce' is now 'nce_weight'"):
        assert ganzoo.build("test_cut", lambda_nce=2.0).config.nce_weight == 2.0
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="both given"):
        ganzoo.build("test_dcgan", d_dropout=0.1, disc_dropout=0.2)


@pytest.mark.parametrize("cls, field, value", [
    ("ganzoo.models.dcgan.DCGANConfig", "arch", "typo"),
    ("ganzoo.models.dcgan.DCGANConfig", "loss", "typo"),
    ("ganzoo.models.cut.CUTConfig", "disc_norm", "layer"),
    ("ganzoo.models.ddpm.DDPMConfig", "beta_schedule", "cosinus"),
    ("ganzoo.models.wgan_gp.WGANGPConfig", "critic_norm", "batch"),
])
def test_literal_fields_are_checked_on_construction(cls, field, value):
    import importlib

    module, _, name = cls.rpartition(".")
    config_class = getattr(importlib.import_module(module), name)
    with pytest.raises(ValueError, match=f"{name}.{field} must be one of .* got '{value}'"):
        config_class(**{field: value})


def test_every_builtin_config_checks_its_fields():
    from ganzoo.config import Config

    for name in ganzoo.list_models():
        with torch.device("meta"):
            model = ganzoo.build(name)
        assert isinstance(model.config, Config), name
