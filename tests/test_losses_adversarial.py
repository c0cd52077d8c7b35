"""Shared adversarial losses: sign conventions, gradient penalty, R1, feature matching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ganzoo
import torch.nn.functional as F

from ganzoo.losses.adversarial import (
    AdversarialLoss, clip_weights, feature_matching_loss, gradient_penalty, penalty_grad_scaler,
    r1_penalty,
)

ADV_LOSSES = ["bce", "nonsaturating", "wgan", "wgan_gp", "hinge", "lsgan"]
# Losses whose gradients have one sign everywhere (LSGAN pulls scores towards its targets).
MONOTONE = [n for n in ADV_LOSSES if n != "lsgan"]


def test_registered():
    names = ganzoo.list_losses()
    for name in ADV_LOSSES + ["r1", "feature_matching", "weight_clip"]:
        assert name in names
    for name in ADV_LOSSES:
        assert isinstance(ganzoo.build_loss(name), AdversarialLoss)


def _toy(seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(64, 2, generator=g) + torch.tensor([1.0, 0.5])
    fake = torch.randn(64, 2, generator=g) - torch.tensor([1.0, 0.5])
    torch.manual_seed(seed)
    critic = nn.Sequential(nn.Linear(2, 16), nn.LeakyReLU(0.2), nn.Linear(16, 1))
    return critic, real, fake


@pytest.mark.parametrize("name", ADV_LOSSES)
def test_d_step_raises_real_relative_to_fake(name):
    loss = ganzoo.build_loss(name)
    critic, real, fake = _toy()

    def gap():
        with torch.no_grad():
            return (critic(real).mean() - critic(fake).mean()).item()

    before = gap()
    opt = torch.optim.SGD(critic.parameters(), lr=0.05)
    for _ in range(5):
        opt.zero_grad()
        d = loss.d_loss(critic(real), critic(fake))
        pen = loss.penalty(critic, real, fake)
        if pen is not None:
            d = d + pen
        d.backward()
        opt.step()
    assert gap() > before + 1e-3


@pytest.mark.parametrize("name", MONOTONE)
def test_g_loss_pushes_fake_scores_up(name):
    loss = ganzoo.build_loss(name)
    logits = torch.tensor([-2.0, -0.5, 0.3, 1.5], requires_grad=True)
    loss.g_loss(logits).backward()
    # gradient descent on g_loss must raise the critic's score of every fake
    assert (logits.grad < 0).all()


@pytest.mark.parametrize("name", MONOTONE)
def test_d_loss_gradient_signs(name):
    loss = ganzoo.build_loss(name)
    real = torch.tensor([-0.5, 0.2], requires_grad=True)
    fake = torch.tensor([-0.2, 0.5], requires_grad=True)
    loss.d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()


def test_bce_label_smoothing_values():
    logits = torch.zeros(3)
    plain = ganzoo.build_loss("bce")
    smooth = ganzoo.build_loss("bce", real_label=0.9, fake_label=0.1)
    # at p = 0.5 every target gives log 2 per term
    assert torch.allclose(plain.d_loss(logits, logits), torch.tensor(2 * 0.6931472))
    big = torch.full((3,), 20.0)
    # smoothing penalises over-confidence on reals: the optimum is at p = 0.9, not 1
    assert smooth.d_loss(big, -big) > smooth.d_loss(torch.full((3,), 2.1972246),
                                                    torch.full((3,), -2.1972246))
    assert plain.d_loss(big, -big) < 1e-6
    with pytest.raises(ValueError, match="real_label"):
        ganzoo.build_loss("bce", real_label=1.5)


def test_bce_equals_nonsaturating_without_smoothing():
    g = torch.Generator().manual_seed(1)
    r, f = torch.randn(8, generator=g), torch.randn(8, generator=g)
    bce, ns = ganzoo.build_loss("bce"), ganzoo.build_loss("nonsaturating")
    assert torch.allclose(bce.d_loss(r, f), ns.d_loss(r, f), atol=1e-6)
    assert torch.allclose(bce.g_loss(f), ns.g_loss(f), atol=1e-6)


def test_gradient_penalty_hand_computed_and_alpha_per_sample():
    n, shape = 4, (2, 3, 3)
    real, fake = torch.ones(n, *shape), torch.zeros(n, *shape)
    seen = {}

    def critic(x):  # D(x) = sum(x^2): grad = 2 x
        seen["x_hat"] = x.detach().clone()
        return x.pow(2).flatten(1).sum(1)

    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    alpha = torch.rand(n, generator=torch.Generator().manual_seed(7))
    d = real[0].numel()
    # x_hat_i = alpha_i * 1 + (1 - alpha_i) * 0; ||2 x_hat_i|| = 2 alpha_i sqrt(d)
    expected = ((2 * alpha * d ** 0.5 - 1) ** 2).mean()
    assert torch.allclose(gp, expected, rtol=1e-5)
    x_hat = seen["x_hat"].flatten(1)
    # one alpha per sample: constant within a sample, different across samples
    assert torch.allclose(x_hat, x_hat[:, :1].expand_as(x_hat))
    assert torch.allclose(x_hat[:, 0], alpha)
    assert x_hat[:, 0].unique().numel() == n


def test_gradient_penalty_linear_critic_and_backprop():
    w = torch.tensor([3.0, 4.0], requires_grad=True)  # ||grad|| = 5 everywhere
    critic = lambda x: x @ w  # noqa: E731
    real, fake = torch.randn(5, 2), torch.randn(5, 2)
    gp = gradient_penalty(critic, real, fake)
    assert torch.allclose(gp, torch.tensor(16.0))
    gp.backward()  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    assert torch.allclose(w.grad, 2 * 4 * w.detach() / 5)
    loss = ganzoo.build_loss("wgan_gp")
    assert torch.allclose(loss.penalty(critic, real, fake), torch.tensor(160.0))


def test_r1_penalty_hand_computed():
    x = torch.randn(3, 4).requires_grad_(True)
    w = torch.tensor([1.0, -2.0, 0.5, 2.0])
    logits = x @ w  # grad = w for every sample
    r1 = r1_penalty(logits, x)
    assert torch.allclose(r1, 0.5 * w.pow(2).sum())
    assert torch.allclose(ganzoo.build_loss("r1", gamma=4.0)(x @ w, x), 4 * r1)


def test_feature_matching():
    real = [torch.ones(4, 3), torch.zeros(4, 2, 2)]
    fake = [torch.zeros(4, 3, requires_grad=True), torch.ones(4, 2, 2, requires_grad=True)]
    # mean mode: ||E real - E fake||^2 per layer = 3 and 4, averaged = 3.5
    assert torch.allclose(feature_matching_loss(real, fake), torch.tensor(3.5))
    assert torch.allclose(feature_matching_loss(real, fake, mode="l1"), torch.tensor(1.0))
    real_t = torch.randn(4, 3, requires_grad=True)
    feature_matching_loss(real_t, torch.randn(4, 3, requires_grad=True)).backward()
    assert real_t.grad is None  # real features are detached
    fm = ganzoo.build_loss("feature_matching", mode="l1", weight=2.0)
    assert torch.allclose(fm(real, fake), torch.tensor(2.0))


def test_clip_weights():
    net = nn.Linear(4, 4)
    with torch.no_grad():
        net.weight.mul_(100)
    clip_weights(net, 0.01)
    assert net.weight.abs().max() <= 0.01 and net.bias.abs().max() <= 0.01
    assert net.weight.detach().abs().max().item() == pytest.approx(0.01)
    with torch.no_grad():
        net.weight.fill_(5.0)
    ganzoo.build_loss("weight_clip", c=0.1)(net)
    assert torch.all(net.weight == 0.1)


def test_lsgan_values_match_the_cut_reference_form():
    """CUT's GANLoss('lsgan') is nn.MSELoss to a 1/0 target; its D loss is
    (loss_D_fake + loss_D_real) * 0.5 and its G loss the plain MSE to 1."""
    real, fake = torch.tensor([0.5, 1.5]), torch.tensor([0.2, -0.4])
    loss = ganzoo.build_loss("lsgan")
    # ½ (mean(0.25, 0.25) + mean(0.04, 0.16)) = ½ (0.25 + 0.10)
    assert loss.d_loss(real, fake).item() == pytest.approx(0.175)
    assert loss.g_loss(fake).item() == pytest.approx(1.3)  # mean(0.64, 1.96)
    ref_d = 0.5 * (F.mse_loss(fake, torch.zeros(2)) + F.mse_loss(real, torch.ones(2)))
    assert torch.allclose(loss.d_loss(real, fake), ref_d)
    assert ganzoo.build_loss("lsgan", d_scale=1.0).d_loss(real, fake).item() == \
        pytest.approx(0.35)


def test_d_scale_halves_hinge_as_taming():
    """taming-transformers' hinge_d_loss = 0.5 * (mean relu(1 - real) + mean relu(1 + fake))."""
    real, fake = torch.tensor([0.5, 2.0, -1.0]), torch.tensor([0.0, -2.0, 0.5])
    full = ganzoo.build_loss("hinge").d_loss(real, fake)
    assert full.item() == pytest.approx((0.5 + 0 + 2) / 3 + (1 + 0 + 1.5) / 3)
    half = ganzoo.build_loss("hinge", d_scale=0.5).d_loss(real, fake)
    assert half.item() == pytest.approx(0.5 * full.item())
    ns = ganzoo.build_loss("nonsaturating", d_scale=0.5)
    assert ns.d_loss(real, fake).item() == pytest.approx(
        0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean()).item())
    with pytest.raises(ValueError, match="d_scale"):
        ganzoo.build_loss("hinge", d_scale=0.0)


def _tiny_gradient_critic():
    """A conv critic whose input gradients (~2e-8) lie below fp16's smallest normal (6e-5)
    and mostly below its smallest subnormal (6e-8): without loss scaling they underflow."""
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.2),
                           nn.Conv2d(8, 8, 3, padding=1), nn.LeakyReLU(0.2),
                           nn.Conv2d(8, 1, 3, padding=1))
    with torch.no_grad():
        for m in critic:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(0.01)
    x = torch.randn(4, 3, 16, 16)
    return critic, x


def _fp16_autocast():
    return torch.autocast("cpu", dtype=torch.float16)


def test_r1_under_fp16_autocast_matches_fp32_with_the_scaler():
    """PyTorch's AMP gradient-penalty recipe: scale, autograd.grad, unscale."""
    critic, x = _tiny_gradient_critic()

    def r1():
        real = x.clone().requires_grad_(True)
        return r1_penalty(critic(real), real)

    ref = r1()
    with _fp16_autocast():
        naive = r1()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    with _fp16_autocast(), penalty_grad_scaler(scaler):
        scaled = r1()
    # relative errors by hand: pytest.approx's absolute 1e-12 would accept any value here
    assert abs(naive.item() / ref.item() - 1) > 0.1  # the setting does underflow in fp16
    assert abs(scaled.item() / ref.item() - 1) < 1e-2
    scaled.backward()  # the penalty still trains the critic
    assert critic[0].weight.grad is not None and torch.isfinite(critic[0].weight.grad).all()


def test_gradient_penalty_under_fp16_autocast_matches_fp32():
    """With the group's scaler (the recipe) and without one (the critic forward then runs
    outside autocast). target=0 makes the value E||grad||², sensitive to underflow."""
    critic, x = _tiny_gradient_critic()
    fake = torch.randn_like(x)

    def gp():
        return gradient_penalty(critic, x, fake, generator=torch.Generator().manual_seed(1),
                                target=0.0)

    ref = gp()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    with _fp16_autocast(), penalty_grad_scaler(scaler):
        scaled = gp()
    with _fp16_autocast():
        outside = gp()
    assert abs(scaled.item() / ref.item() - 1) < 1e-2
    assert abs(outside.item() / ref.item() - 1) < 1e-5
