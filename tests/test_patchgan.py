"""PatchGAN discriminator: output map size, receptive field, norms, spectral norm."""

import pytest
import torch
from torch import nn

from ganzoo.layers.patchgan import (PatchGANDiscriminator, patchgan_output_size,
                                    patchgan_receptive_field, receptive_field)


def _empirical_receptive_field(d: nn.Module, size: int) -> tuple[int, int]:
    """Height and width of the input region that the centre logit depends on."""
    x = torch.randn(1, 3, size, size, requires_grad=True)
    out = d(x)
    h, w = out.shape[-2:]
    out[0, 0, h // 2, w // 2].backward()
    mask = x.grad.abs().sum(dim=(0, 1)) > 0
    rows = mask.any(dim=1).nonzero()
    cols = mask.any(dim=0).nonzero()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_receptive_field_formula():
    assert patchgan_receptive_field(3) == 70  # the paper's 70x70 PatchGAN
    assert patchgan_receptive_field(1) == 16
    assert patchgan_receptive_field(2) == 34
    assert patchgan_receptive_field(4) == 142


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_receptive_field_matches_network(n_layers):
    d = PatchGANDiscriminator(base_channels=4, n_layers=n_layers, norm="none")
    assert d.receptive_field == receptive_field(d.model) == patchgan_receptive_field(n_layers)


def test_receptive_field_empirical_70():
    # 160 px keeps the centre logit's 70 px field away from the zero-padded border
    d = PatchGANDiscriminator(base_channels=4, n_layers=3, norm="none")
    assert _empirical_receptive_field(d, 160) == (70, 70)


@pytest.mark.parametrize("size,expected", [(64, 6), (128, 14), (256, 30), (32, 2)])
def test_output_map_size(size, expected):
    d = PatchGANDiscriminator(base_channels=4, n_layers=3, norm="instance").eval()
    out = d(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, expected, expected)
    assert d.output_size(size) == patchgan_output_size(size) == expected


@pytest.mark.parametrize("size", [64, 128])
def test_receptive_field_at_64_and_128(size):
    # Logit j of a 3-layer PatchGAN sees input rows [8j - 23, 8j + 46] (70 px: jump 8, offset
    # from the five padding-1 convs), clipped by the image border. At 128 px the centre logit's
    # field lies inside the image, so it is the full 70x70 patch; at 64 px it is clipped.
    d = PatchGANDiscriminator(base_channels=4, n_layers=3, norm="none")
    j = d.output_size(size) // 2
    lo, hi = max(8 * j - 23, 0), min(8 * j + 46, size - 1)
    assert _empirical_receptive_field(d, size) == (hi - lo + 1, hi - lo + 1)
    if size == 128:
        assert hi - lo + 1 == 70


def test_layers_follow_reference():
    d = PatchGANDiscriminator(base_channels=8, n_layers=3, norm="batch")
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(4, 4)] * 5
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 1]
    # batch-normed convs carry no bias; first and last do
    assert [c.bias is not None for c in convs] == [True, False, False, False, True]
    acts = [m for m in d.modules() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.2 for a in acts)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3


@pytest.mark.parametrize("norm,cls", [("instance", nn.InstanceNorm2d), ("none", None)])
def test_norm_choice(norm, cls):
    d = PatchGANDiscriminator(base_channels=4, norm=norm)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in d.modules())
    if cls is not None:
        assert sum(isinstance(m, cls) for m in d.modules()) == 3
    assert all(c.bias is not None for c in d.modules() if isinstance(c, nn.Conv2d))


def test_spectral_norm():
    d = PatchGANDiscriminator(base_channels=4, norm="none", spectral_norm=True)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert all(nn.utils.parametrize.is_parametrized(c, "weight") for c in convs)
    for _ in range(30):  # one power iteration per forward in train mode: let u converge
        d(torch.randn(2, 3, 64, 64))
    w = convs[1].weight.detach().flatten(1)
    assert torch.linalg.matrix_norm(w, ord=2) == pytest.approx(1.0, rel=0.1)


def test_meta_device_construction():
    with torch.device("meta"):
        d = PatchGANDiscriminator(spectral_norm=True)
    assert next(d.parameters()).device.type == "meta"


@pytest.mark.parametrize("kwargs", [dict(norm="layer"), dict(n_layers=0), dict(base_channels=0)])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PatchGANDiscriminator(**kwargs)
