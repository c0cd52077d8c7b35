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


# -- the generator plan's block -----------------------------------------------------------------
def test_plan_block_matches_the_plans_formula():
    """The generator plan's SelfAttention: q, k: C -> C/8, v: C -> C (no output conv), logits
    scaled by mid ** -0.5, gamma of shape (1,) from 0. 128 channels: 2·(128·16) + 128·128 + 1
    = 20,481 parameters (SAGAN's block: 4·128·16 + 1 = 8,193)."""
    from ganzoo.layers.attention import ScaledSelfAttention2d, self_attention

    torch.manual_seed(0)
    block = ScaledSelfAttention2d(128)
    assert sum(p.numel() for p in block.parameters()) == 20_481
    assert sum(p.numel() for p in SelfAttention2d(128).parameters()) == 8_193
    assert block.gamma.shape == (1,) and block.mid == 16
    assert sorted(n for n, _ in block.named_parameters()) == ["gamma", "k.weight", "q.weight",
                                                             "v.weight"]
    x = torch.randn(2, 128, 4, 4)
    assert torch.equal(block(x), x)  # identity at initialisation
    with torch.no_grad():
        block.gamma.fill_(0.7)
    q = torch.einsum("oc,nchw->nohw", block.q.weight[:, :, 0, 0], x).flatten(2)
    k = torch.einsum("oc,nchw->nohw", block.k.weight[:, :, 0, 0], x).flatten(2)
    v = torch.einsum("oc,nchw->nohw", block.v.weight[:, :, 0, 0], x).flatten(2)
    attn = torch.softmax(torch.einsum("ndi,ndj->nij", q, k) / 16 ** 0.5, dim=-1)
    expected = x + 0.7 * torch.einsum("ncj,nij->nci", v, attn).view(2, 128, 4, 4)
    assert torch.allclose(block(x), expected, atol=1e-5)
    assert isinstance(self_attention("plan", 8), ScaledSelfAttention2d)


def test_plan_attention_is_one_flag_on_the_sn_attn_presets():
    import ganzoo
    from ganzoo.layers.attention import ScaledSelfAttention2d

    default = ganzoo.build("test_wgan_gp_sn_attn")
    assert default.config.attention == "sagan"
    assert any(isinstance(m, SelfAttention2d) for m in default.modules())
    plan = ganzoo.build("test_wgan_gp_sn_attn", attention="plan")
    (g_block,) = [m for m in plan.generator.modules() if isinstance(m, ScaledSelfAttention2d)]
    (d_block,) = [m for m in plan.critic.modules() if isinstance(m, ScaledSelfAttention2d)]
    assert not any(isinstance(m, SelfAttention2d) for m in plan.modules())
    assert hasattr(d_block.q, "parametrizations")  # the critic's block is spectrally normed
    assert not hasattr(g_block.q, "parametrizations")
    x = plan.sample(2, generator=torch.Generator().manual_seed(0))
    loss, _ = plan.loss("critic", {"image": x}, 0)  # the gradient penalty's double backward
    loss.backward()
    assert torch.isfinite(loss)
