"""DiffAugment: differentiable, seeded, same transform on a batch pair when asked."""

from __future__ import annotations

import pytest
import torch

from ganzoo.layers.diffaugment import DiffAugment, diff_augment, parse_policy

FULL = "color,translation,cutout"


def _x(seed=0, shape=(4, 3, 16, 16)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", FULL])
def test_differentiable(policy):
    x = _x().requires_grad_(True)
    y = diff_augment(x, policy, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    assert not torch.allclose(y, x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_same_transform_on_a_pair():
    a, b = _x(0), _x(1)
    ya, yb = diff_augment((a, b), FULL, generator=torch.Generator().manual_seed(3))
    # translation and cutout are the same pixel maps; check with an all-ones pair member
    ones = torch.ones_like(a)
    ya2, y1 = diff_augment((a, ones), "translation,cutout",
                           generator=torch.Generator().manual_seed(5))
    ya3 = diff_augment(a, "translation,cutout", generator=torch.Generator().manual_seed(5))
    assert torch.equal(ya2, ya3)  # a pair draws exactly what a single call draws
    assert torch.equal(ya2 == 0, (y1 == 0) & (ya2 == 0)) and (y1 == 0).any()
    # the same generator state gives the same ops on each member of the pair
    yb_alone = diff_augment(b, FULL, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(yb, yb_alone)
    ya_alone = diff_augment(a, FULL, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ya, ya_alone)
    # and a different seed differs
    assert not torch.allclose(ya, diff_augment(a, FULL, generator=torch.Generator().manual_seed(4)))


def test_translation_is_a_shift_with_zero_fill():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1) + 1  # no zeros
    y = diff_augment(x, "translation", generator=torch.Generator().manual_seed(0))
    for i in range(64):
        nz = y[i, 0][y[i, 0] != 0]
        # surviving values keep their row/column order: a shift, not a permutation
        assert nz.numel() >= 9 and torch.all(nz.diff() > 0)
    assert (y == 0).any() and (y == x).all(dim=(1, 2, 3)).any()


def test_cutout_zeroes_a_square():
    x = torch.ones(32, 1, 16, 16)
    y = diff_augment(x, "cutout", generator=torch.Generator().manual_seed(0))
    zeros = (y == 0).flatten(1).sum(1)
    assert zeros.max() == 64 and zeros.min() > 0 and zeros.min() <= 64


def test_color_stats():
    x = _x(2, (256, 3, 8, 8))
    y = diff_augment(x, "color", generator=torch.Generator().manual_seed(0))
    shift = (y - x).mean(dim=(1, 2, 3))
    assert shift.abs().max() <= 0.5 + 1e-5 and shift.std() > 0.1


def test_policy_parsing_and_module():
    assert parse_policy("color, cutout") == ("color", "cutout")
    assert parse_policy("") == ()
    with pytest.raises(ValueError, match="flip"):
        parse_policy("color,flip")
    x = _x()
    assert DiffAugment("")(x) is x
    aug = DiffAugment("translation")
    assert aug.policy == "translation"
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(aug(x, generator=g1), aug(x, generator=g2))
    with pytest.raises(ValueError, match="one shape"):
        diff_augment((x, x[:2]), "color")
