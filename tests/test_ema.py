"""The EMA schedule (warm-up, start step, cap) and what ``update_ema`` averages."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import ganzoo
from ganzoo.training.schedules import ema_decay_at


def test_schedule_formula_start_and_cap():
    # 1 - (1 + t)^(-2/3) at t = 7 is 1 - 8^(-2/3) = 1 - 1/4.
    assert ema_decay_at(7, 0.9999) == pytest.approx(0.75)
    assert ema_decay_at(0, 0.9999) == 0.0  # the first update copies the live weights
    assert [ema_decay_at(s, 0.9999, start=10) for s in (0, 5, 10)] == [0.0, 0.0, 0.0]
    assert ema_decay_at(17, 0.9999, start=10) == pytest.approx(0.75)  # t counts from start
    assert ema_decay_at(10**9, 0.9999) == 0.9999  # capped at the configured decay
    assert ema_decay_at(10**9, 0.9999, power=3 / 4) == 0.9999
    assert ema_decay_at(3, 0.999, power=0) == 0.999  # no warm-up: constant after start
    decays = [ema_decay_at(s, 0.9999) for s in range(0, 5000, 7)]
    assert decays == sorted(decays)  # the window only grows


def _drift(net: nn.Module, g: torch.Generator, scale: float = 0.05) -> None:
    """One 'training step': every parameter and BatchNorm statistic moves a little."""
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            if t.is_floating_point():
                t.add_(torch.randn(t.shape, generator=g) * scale)


def _distance(model) -> float:
    live = torch.cat([p.detach().flatten() for p in model.generator.parameters()])
    ema = torch.cat([p.flatten() for p in model.ema["generator"].parameters()])
    return float((live - ema).norm() / live.norm())


def test_ema_tracks_live_weights_early_and_converges_to_the_decay_later():
    """Drifting weights, as in training: with the warm-up the EMA stays near the live weights
    in the first hundred steps; without it (decay 0.9999 from step 0, ganzoo < 0.3) it stays
    near the initial weights, the defect that made `sample()` worse than the live network."""
    torch.manual_seed(0)
    warm, flat = ganzoo.build("test_dcgan"), ganzoo.build("test_dcgan")
    flat.load_state_dict(warm.state_dict())
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for step in range(100):
        _drift(warm.generator, g1)
        _drift(flat.generator, g2)
        warm.update_ema(ema_decay_at(step, 0.9999))
        flat.update_ema(ema_decay_at(step, 0.9999, power=0))
    assert _distance(warm) < 0.5 * _distance(flat)
    # Late in training the applied decay is the configured one.
    assert ema_decay_at(5_000_000, warm.default_ema_decay) == warm.default_ema_decay == 0.9999


def test_update_ema_averages_batchnorm_statistics_and_copies_counters():
    model = ganzoo.build("test_dcgan")
    live, ema = model.generator, model.ema["generator"]
    bn_live = next(m for m in live.modules() if isinstance(m, nn.BatchNorm2d))
    bn_ema = next(m for m in ema.modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn_live.running_mean.fill_(2.0)
        bn_ema.running_mean.fill_(1.0)
        bn_live.num_batches_tracked.fill_(7)
    before = copy.deepcopy([p.detach().clone() for p in ema.parameters()])
    with torch.no_grad():
        for p in live.parameters():
            p.add_(1.0)
    model.update_ema(0.75)
    assert torch.allclose(bn_ema.running_mean, torch.full_like(bn_ema.running_mean, 1.25))
    assert int(bn_ema.num_batches_tracked) == 7
    for b, p, lp in zip(before, ema.parameters(), live.parameters()):
        assert torch.allclose(p, 0.75 * b + 0.25 * lp)
    model.update_ema(0.0)
    assert torch.equal(bn_ema.running_mean, bn_live.running_mean)


def test_update_ema_reads_the_current_tensors_after_to_and_reassignment():
    """update_ema keeps where the tensors live, not the tensors: ``Module.to`` replaces buffers
    and a user may swap a network; both must be what the next update reads."""
    model = ganzoo.build("test_dcgan")
    model.update_ema(0.0)  # fills the slot cache
    model.to(torch.float64)  # new buffer tensors (running statistics), parameters in place
    bn_live = next(m for m in model.generator.modules() if isinstance(m, nn.BatchNorm2d))
    bn_ema = next(m for m in model.ema["generator"].modules() if isinstance(m, nn.BatchNorm2d))
    with torch.no_grad():
        bn_live.running_var.fill_(3.0)
    model.update_ema(0.0)
    assert torch.equal(bn_ema.running_var, bn_live.running_var)
    assert bn_ema.running_var.dtype == torch.float64

    model.generator = copy.deepcopy(model.generator)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.fill_(0.5)
    model.update_ema(0.0)
    assert all(bool((p == 0.5).all()) for p in model.ema["generator"].parameters())


def test_update_ema_averages_a_shared_parameter_once():
    """A parameter two modules hold (tied weights) is one tensor: averaged once per update."""
    model = ganzoo.build("test_dcgan")
    nets = model.generator, model.ema["generator"]
    weights = [next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d)).weight
               for net in nets]
    for net, weight in zip(nets, weights):
        tie = nn.Module()
        tie.register_parameter("tied", weight)
        net.add_module("tie", tie)
    with torch.no_grad():
        weights[0].fill_(1.0)
        weights[1].fill_(0.0)
    model.update_ema(0.5)  # averaged twice would give 0.75
    assert torch.allclose(weights[1], torch.full_like(weights[1], 0.5))


@pytest.mark.parametrize("preset, start", [("test_dcgan", 20_000), ("test_ddpm", 10_000)])
def test_trainer_applies_the_family_start_step(tmp_path, preset, start):
    """GANs copy the live weights for their first 20k iterations (BigGAN-PyTorch's
    --ema_start), DDPM for 10k (docs/training.md, "EMA"), so a short run's sample() is its live
    network; --ema-start moves it."""
    from ganzoo.train import main

    def run(name, *extra):
        out = tmp_path / name
        assert main(["--model", preset, "--dataset", "shapes", "--set", "data.size=64",
                     "--batch-size", "8", "--max-steps", "3", "--sample-every", "0",
                     "--no-progress", "-o", str(out), *extra]) == 0
        model = ganzoo.from_pretrained(out / "final")
        g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        ema = model.sample(4, g())
        model.use_ema = False
        return torch.equal(ema, model.sample(4, g()))

    assert ganzoo.build(preset).default_ema_start == start
    assert run("default")  # EMA == live
    assert not run("early", "--ema-start", "0")  # averaging from the first iteration
