"""The one task entry point, ``GenerativeModel.generate``, for every tiny preset: what the CLI,
``ganzoo.sampling``, ``ganzoo.evaluate`` and the report call instead of the task methods."""

from __future__ import annotations

import pytest
import torch

import ganzoo
from ganzoo._io import to_uint8
from ganzoo.datasets import example_batch
from ganzoo.models.base import DONOR, INPUT

TINY = ganzoo.list_models("test_*")


def _options(model) -> dict:
    """Few denoising steps where the model takes them (a fast, still exact, comparison)."""
    return {"num_inference_steps": 2} if "num_inference_steps" in model.sampling_options else {}


@pytest.fixture(params=TINY or [pytest.param(None, marks=pytest.mark.skip("no tiny presets"))])
def tiny(request):
    torch.manual_seed(0)
    return ganzoo.build(request.param).eval()


def _g(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_generate_is_the_task_method_bit_for_bit(tiny):
    """Unconditional: ``generate(None, n)`` is ``sample(n)`` for the same seed; with inputs,
    one output per ``INPUT`` image, equal to the task method's."""
    if not tiny.takes_inputs:
        out = tiny.generate(None, 3, _g(), **_options(tiny))
        assert list(out) == ["sample"]
        assert torch.equal(out["sample"], tiny.sample(3, generator=_g(), **_options(tiny)))
        assert torch.equal(tiny.preview(None, 3, _g(), **_options(tiny)), out["sample"])
        return
    x = example_batch(tiny, 3)
    x = next(v for k, v in x.items() if k in ("image", "image_a", "image_with"))
    x = torch.nn.functional.interpolate(x, size=tuple(tiny.image_size))
    out = tiny.generate({INPUT: x}, 3, _g())
    assert len(out) == 1
    main = next(iter(out.values()))
    assert main.shape == (3, tiny.channels, *tiny.image_size)
    assert main.min() >= -1 and main.max() <= 1
    task = {"translate": lambda: tiny.translate(x),
            "reconstruct": lambda: tiny.reconstruct(x, generator=_g()),
            "transfer": lambda: tiny.transfer(x, x)[0]}[tiny.task]()
    assert torch.equal(main, task)
    if tiny.task == "transfer":  # with a donor: each input gets the donor's attribute
        given = tiny.generate({INPUT: x, DONOR: x[:1]}, 3, _g())
        assert list(given) == ["bu"]
        assert torch.equal(given["bu"], tiny.transfer(x[:1].expand(3, -1, -1, -1), x)[1])


def test_generate_is_deterministic_by_seed_and_names_its_outputs(tiny):
    batch = tiny.collate(example_batch(tiny, 2)) if tiny.takes_inputs else None
    a = tiny.generate(batch, 2, _g(5), **_options(tiny))
    b = tiny.generate(batch, 2, _g(5), **_options(tiny))
    assert set(a) >= set(tiny.eval_references)
    for name in a:
        assert a[name].shape == (2, tiny.channels, *tiny.image_size), name
        assert a[name].min() >= -1 and a[name].max() <= 1, name
        assert torch.equal(a[name], b[name]), name


def test_unknown_sampling_options_are_refused(tiny):
    with pytest.raises(ValueError, match="takes no sampling option not_an_option"):
        tiny.generate(None, 1, _g(), not_an_option=1)
    tiny.check_sampling_options({k: None for k in tiny.sampling_options})


def test_collate_stacks_items_onto_the_model_device(tiny):
    items = [{"image": torch.zeros(3, 4, 4), "label": 1}, {"image": torch.ones(3, 4, 4),
                                                             "label": 0}]
    batch = tiny.collate(items)
    assert batch["image"].shape == (2, 3, 4, 4) and batch["image"].device == tiny.device
    assert batch["label"].tolist() == [1, 0]
    assert tiny.collate(batch)["image"] is batch["image"]  # already stacked and placed


def test_to_uint8_rounds_as_save_image():
    x = torch.cat([torch.linspace(-1.5, 1.5, 10_001), torch.rand(10_000) * 2 - 1])
    x = x.view(1, 1, 1, -1)
    old = ((x.clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)
    assert torch.equal(to_uint8(x), old)
    assert torch.equal(to_uint8(x.half()), to_uint8(x.half().float()))
    u8 = torch.arange(256, dtype=torch.uint8)
    assert to_uint8(u8) is u8
