"""SAGAN self-attention block."""

from __future__ import annotations

import torch

from ganzoo.layers.attention import SelfAttention2d


def test_identity_at_init():
    torch.manual_seed(0)
    block = SelfAttention2d(16)
    x = torch.randn(2, 16, 8, 8)
    assert block.gamma.item() == 0.0
    assert torch.equal(block(x), x)
    with torch.no_grad():
        block.gamma.fill_(0.5)
    assert not torch.allclose(block(x), x)


def test_gamma_learns_and_attention_is_global():
    torch.manual_seed(0)
    block = SelfAttention2d(8, reduction=2)
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    block(x).sum().backward()
    assert block.gamma.grad is not None and block.gamma.grad != 0
    with torch.no_grad():
        block.gamma.fill_(1.0)
    x = torch.randn(1, 8, 6, 6, requires_grad=True)
    block(x)[0, :, 0, 0].sum().backward()
    # output at one position depends on the far corner: non-local
    assert x.grad[0, :, 5, 5].abs().sum() > 0


def test_spectral_norm_option_and_double_backward():
    block = SelfAttention2d(16, spectral_norm=True)
    assert hasattr(block.query, "parametrizations")
    with torch.no_grad():
        block.gamma.fill_(1.0)
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    (g,) = torch.autograd.grad(block(x).pow(2).sum(), x, create_graph=True)
    g.pow(2).sum().backward()  # the double backward WGAN-GP needs
    assert block.gamma.grad is not None
