"""The trainer's speed options: --compile (in place, double-backward networks left eager),
--channels-last, and the DataLoader worker default. Compiled runs use the ``aot_eager``
backend: it traces through dynamo and AOTAutograd (where double backward is unsupported) but
generates no C++ code, which takes minutes on 2 CPU cores."""

from __future__ import annotations

import json

import pytest
import torch

import ganzoo
from ganzoo.train import parse_run_config
from ganzoo.training.data import default_num_workers
from ganzoo.training.trainer import Trainer

FAST = ["--no-progress", "--batch-size", "4", "--num-samples", "4", "--sample-every", "0",
        "--set", "data.size=16", "--dataset", "shapes"]


def _trainer(out, *extra, model="test_wgan_gp"):
    return Trainer(parse_run_config(["--model", model, "-o", str(out), *FAST, *extra]))


def _compiled(module) -> bool:
    return module._compiled_call_impl is not None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_compile_leaves_the_penalised_critic_eager_and_keeps_checkpoints_plain(tmp_path):
    torch._dynamo.reset()
    out = tmp_path / "run"
    trainer = _trainer(out, "--max-steps", "2", "--compile", "--compile-backend", "aot_eager")
    model = trainer.unwrapped
    assert model.compile_networks() == ["generator"]  # the critic takes a gradient penalty
    assert _compiled(model.generator) and _compiled(model.ema["generator"])
    assert not _compiled(model.critic)
    trainer.train()
    # Saved weights load into an eager model under the eager model's keys.
    eager = ganzoo.build("test_wgan_gp")
    loaded = ganzoo.from_pretrained(out / "final")
    assert set(loaded.state_dict()) == set(eager.state_dict())
    assert not _compiled(loaded.generator)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    torch.testing.assert_close(loaded.sample(2, g()), model.sample(2, g()))
    # ... and a compiled run resumes from its own checkpoint.
    resumed = _trainer(out, "--max-steps", "3", "--resume", "--compile", "--compile-backend",
                       "aot_eager")
    assert resumed.start_step == 2
    resumed.train()
    assert (out / "checkpoints" / "step_00000003").is_dir()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_compiled_steps_match_eager_steps(tmp_path):
    torch._dynamo.reset()
    runs = {}
    for name, extra in (("eager", ()), ("compiled", ("--compile", "--compile-backend",
                                                     "aot_eager"))):
        trainer = _trainer(tmp_path / name, "--max-steps", "2", *extra, model="test_dcgan")
        trainer.train()
        runs[name] = trainer.unwrapped.state_dict()
    for key, value in runs["eager"].items():
        torch.testing.assert_close(runs["compiled"][key], value, rtol=1e-4, atol=1e-5,
                                   msg=key)


def _is_channels_last(trainer) -> bool:
    conv = next(m for m in trainer.unwrapped.modules()
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)))
    return conv.weight.is_contiguous(memory_format=torch.channels_last) \
        and not conv.weight.is_contiguous()


def test_channels_last_runs_and_gives_the_eager_result(tmp_path):
    states = {}
    for name, flag in (("plain", "--no-channels-last"), ("cl", "--channels-last")):
        trainer = _trainer(tmp_path / name, "--max-steps", "2", "--log-every", "1", flag,
                           model="test_dcgan")
        assert _is_channels_last(trainer) == (flag == "--channels-last")
        trainer.train()
        states[name] = trainer.unwrapped.state_dict()
    # Adam moves each weight by at most ~lr per step, so two steps that differ only in
    # convolution algorithms (and rounding) stay within 2 * 2 * lr of each other.
    for key, value in states["plain"].items():
        torch.testing.assert_close(states["cl"][key].contiguous(), value.contiguous(),
                                   rtol=0, atol=8e-4, msg=key)
    first = [json.loads((tmp_path / n / "metrics.jsonl").read_text().splitlines()[0])
             for n in ("plain", "cl")]
    assert first[0]["step"] == first[1]["step"] == 1
    for key in ("discriminator/d_loss", "generator/g_loss"):  # before any update
        assert first[1][key] == pytest.approx(first[0][key], rel=1e-4), key
    loaded = ganzoo.from_pretrained(tmp_path / "cl" / "final")  # plain tensors on disk
    assert set(loaded.state_dict()) == set(states["plain"])


@pytest.mark.parametrize("model, expected", [("test_dcgan", True), ("test_wgan_gp", False),
                                             ("test_ddpm", False)])
def test_channels_last_default_follows_the_family_on_this_device(tmp_path, model, expected):
    trainer = _trainer(tmp_path / "run", "--max-steps", "1", "--cpu", model=model)
    assert trainer.run.channels_last is None  # unset: the family decides, per device
    assert trainer.unwrapped.default_channels_last == ({"cpu"} if expected else set())
    assert _is_channels_last(trainer) is expected
    for flag, on in (("--no-channels-last", False), ("--channels-last", True)):
        assert _is_channels_last(_trainer(tmp_path / flag, "--max-steps", "1", "--cpu", flag,
                                          model=model)) is on


def test_worker_default_follows_the_device(monkeypatch):
    assert default_num_workers(torch.device("cpu")) == 0
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert default_num_workers(torch.device("cuda", 0)) == 8
    assert default_num_workers(torch.device("cuda", 0), num_processes=4) == 3
    assert default_num_workers(torch.device("cuda", 0), num_processes=16) == 0
