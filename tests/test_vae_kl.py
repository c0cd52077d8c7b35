"""Closed-form Gaussian KL used by the VAE family."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

import ganzoo
from ganzoo.losses.kl import GaussianKL, kl_normal


def test_known_gaussian():
    # KL(N(mu, s^2) || N(0, 1)) = log(1/s) + (s^2 + mu^2)/2 - 1/2, per dimension
    mu, s = 1.5, 0.5
    expected = math.log(1 / s) + (s**2 + mu**2) / 2 - 0.5
    value = kl_normal(torch.tensor([[mu]]), torch.tensor([[2 * math.log(s)]]))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert kl_normal(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_matches_torch_distributions_and_reductions():
    torch.manual_seed(0)
    mu, logvar = torch.randn(5, 7), torch.randn(5, 7)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_normal(mu, logvar, "none"), ref)
    torch.testing.assert_close(kl_normal(mu, logvar, "sum"), ref.sum())
    torch.testing.assert_close(kl_normal(mu, logvar, "mean"), ref.mean())
    torch.testing.assert_close(kl_normal(mu, logvar), ref.sum(1).mean())
    torch.testing.assert_close(GaussianKL()(mu, logvar), ref.sum(1).mean())


def test_monte_carlo_agrees():
    torch.manual_seed(0)
    mu, logvar = torch.tensor([0.7, -1.2]), torch.tensor([-0.5, 0.3])
    q, p = Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).mean(0)
    torch.testing.assert_close(kl_normal(mu, logvar, "none"), mc, atol=0.02, rtol=0)


def test_invalid():
    with pytest.raises(ValueError, match="reduction"):
        kl_normal(torch.zeros(1), torch.zeros(1), "avg")
    with pytest.raises(ValueError, match="reduction"):
        GaussianKL("avg")
    with pytest.raises(ValueError, match="shape"):
        kl_normal(torch.zeros(2), torch.zeros(3))


def test_registered():
    assert "kl" in ganzoo.list_losses()
    assert isinstance(ganzoo.build_loss("kl"), GaussianKL)
