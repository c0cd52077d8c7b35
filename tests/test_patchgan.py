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


# -- CUT's anti-aliased discriminator --------------------------------------------------------
def test_antialiased_layers_follow_cuts_reference():
    """CUT's NLayerDiscriminator (no --no_antialias): stride-1 4x4 convs, a blur-pool after
    each of the first three blocks' LeakyReLU, the reference's 2,764,737 parameters at ndf 64.
    (Checked once against the reference module with copied weights: identical outputs.)"""
    d = PatchGANDiscriminator(base_channels=64, n_layers=3, norm="instance", antialias=True,
                              init="xavier")
    kinds = [type(m).__name__ for m in d.model]
    assert kinds == ["Conv2d", "LeakyReLU", "BlurDownsample",
                     "Conv2d", "InstanceNorm2d", "LeakyReLU", "BlurDownsample",
                     "Conv2d", "InstanceNorm2d", "LeakyReLU", "BlurDownsample",
                     "Conv2d", "InstanceNorm2d", "LeakyReLU", "Conv2d"]
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1)] * 5
    assert sum(p.numel() for p in d.parameters()) == 2_764_737
    blur = d.model[2].filt[0, 0]
    assert torch.equal(blur * 16, torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]))
    assert not any("filt" in k for k in d.state_dict())  # fixed filters are not saved


def test_antialiased_output_and_receptive_field():
    d = PatchGANDiscriminator(base_channels=4, n_layers=3, norm="none", antialias=True)
    assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert d.output_size(256) == patchgan_output_size(256, antialias=True) == 30
    assert d.output_size(64) == 6
    assert d.receptive_field == patchgan_receptive_field(3, antialias=True) == 84
    assert _empirical_receptive_field(d, 192) == (84, 84)


def test_xavier_init_gain_as_cut():
    """CUT's init_weights('xavier', 0.02): std = 0.02 * sqrt(2 / (fan_in + fan_out)); for the
    first 3 -> 64 4x4 conv, 0.02 * sqrt(2 / (48 + 1024)) = 8.64e-4 (vs 0.02 for 'normal')."""
    torch.manual_seed(0)
    d = PatchGANDiscriminator(base_channels=64, norm="instance", antialias=True, init="xavier")
    std = d.model[0].weight.std().item()
    assert std == pytest.approx(0.02 * (2 / 1072) ** 0.5, rel=0.05)
    assert d.model[0].bias.abs().max() == 0
    plain = PatchGANDiscriminator(base_channels=64, norm="instance")
    assert plain.model[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
