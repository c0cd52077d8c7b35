"""VGG-16 perceptual loss: layers, normalisation, weights sources, errors, frozen state."""

import inspect
import urllib.error

import pytest
import torch
from torch import nn
from torchvision.models import vgg16

import ganzoo
from ganzoo.losses.perceptual import (ENV_VAR, VGG16_LAYERS, PerceptualWeightsError,
                                      VGGPerceptualLoss)


@pytest.fixture(scope="module")
def tv_features():
    """torchvision's own VGG-16 feature stack (random weights, no download).

    Built on the meta device (the 120 M-parameter classifier is never initialised), then
    materialised and filled with random weights.
    """
    with torch.device("meta"):
        features = vgg16(weights=None).features
    features = features.to_empty(device="cpu").eval()
    torch.manual_seed(0)
    for m in features:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            nn.init.normal_(m.bias, 0, 0.1)
    return features


def test_layer_indices_match_torchvision(tv_features):
    # relu<b>_<k> is the k-th ReLU of block b; blocks end at max-pools in torchvision's list
    names, block, k = {}, 1, 0
    for i, m in enumerate(tv_features):
        if isinstance(m, nn.ReLU):
            k += 1
            names[f"relu{block}_{k}"] = i
        elif isinstance(m, nn.MaxPool2d):
            block, k = block + 1, 0
    assert VGG16_LAYERS == names
    assert (names["relu1_2"], names["relu2_2"], names["relu3_3"]) == (3, 8, 15)


def test_features_taken_at_named_layers(tv_features):
    loss = VGGPerceptualLoss(weights="random")
    assert loss.layers == ("relu1_2", "relu2_2", "relu3_3")
    assert len(loss.features) == 16  # nothing deeper than relu3_3 is built
    loss.features.load_state_dict(tv_features[:16].state_dict())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    got = loss.features_at_layers(x)
    # reference: torchvision's stack on ImageNet-normalised [0, 1] images
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = ((x + 1) / 2 - mean) / std
    want = []
    with torch.no_grad():
        for i, m in enumerate(tv_features[:16]):
            h = m(h.clone())
            if i in (3, 8, 15):
                want.append(h.clone())
    assert [f.shape[1] for f in got] == [64, 128, 256]
    assert [f.shape[-1] for f in got] == [16, 8, 4]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_loss_values_and_gradient():
    loss = VGGPerceptualLoss(weights="random")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    assert loss(x, x).item() == 0.0
    xg = x.clone().requires_grad_(True)
    value = loss(xg, y)
    assert value.item() > 0
    value.backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())
    # the criterion and the layer weights change the value
    sd = loss.features.state_dict()
    l1 = VGGPerceptualLoss(weights="random", criterion="l1")
    l1.features.load_state_dict(sd)
    assert l1(x, y).item() != pytest.approx(value.item())
    first_only = VGGPerceptualLoss(weights="random", layer_weights=(1.0, 0.0, 0.0))
    first_only.features.load_state_dict(sd)
    relu1_2 = VGGPerceptualLoss(layers=("relu1_2",), weights="random")
    relu1_2.features.load_state_dict({k: v for k, v in sd.items() if int(k.split(".")[0]) < 4})
    torch.testing.assert_close(first_only(x, y), relu1_2(x, y))
    assert first_only(x, y).item() < value.item()


def test_grayscale_is_repeated():
    loss = VGGPerceptualLoss(weights="random")
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    y = torch.rand(2, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(loss(x, y), loss(x.repeat(1, 3, 1, 1), y.repeat(1, 3, 1, 1)))


def test_frozen_eval_and_not_in_owner_checkpoint():
    loss = VGGPerceptualLoss(weights="random")
    assert not any(p.requires_grad for p in loss.parameters())
    owner = nn.Module()
    owner.net = nn.Linear(2, 2)
    owner.perceptual = loss
    owner.train()
    assert not loss.training and not loss.features.training
    assert list(owner.state_dict()) == ["net.weight", "net.bias"]
    before = loss.features[0].weight.clone()
    owner.load_state_dict({"net.weight": torch.zeros(2, 2), "net.bias": torch.zeros(2)})
    torch.testing.assert_close(loss.features[0].weight, before)
    assert owner.net.weight.abs().sum() == 0


def test_random_is_never_the_default():
    assert inspect.signature(VGGPerceptualLoss).parameters["weights"].default == "imagenet"


def _save_weights(path, features):
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)


def test_local_file_argument_and_env_var(tmp_path, monkeypatch):
    torch.manual_seed(1)
    src = VGGPerceptualLoss(weights="random")
    path = tmp_path / "vgg16-397923af.pth"
    _save_weights(path, src.features)
    by_arg = VGGPerceptualLoss(weights=str(path))
    torch.testing.assert_close(by_arg.features[14].weight, src.features[14].weight)
    monkeypatch.setenv(ENV_VAR, str(path))
    by_env = VGGPerceptualLoss()
    torch.testing.assert_close(by_env.features[0].weight, src.features[0].weight)


def test_safetensors_features_only_file(tmp_path):
    from safetensors.torch import save_file

    src = VGGPerceptualLoss(weights="random")
    path = tmp_path / "vgg.safetensors"
    save_file({k: v.contiguous() for k, v in src.features.state_dict().items()}, str(path))
    torch.testing.assert_close(VGGPerceptualLoss(weights=str(path)).features[2].weight,
                               src.features[2].weight)


def _go_offline(monkeypatch, tmp_path):
    """An empty torch hub cache and no network."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)


def test_missing_weights_error_says_how_to_supply(tmp_path, monkeypatch):
    _go_offline(monkeypatch, tmp_path)
    with pytest.raises(PerceptualWeightsError) as err:
        VGGPerceptualLoss()
    msg = str(err.value)
    assert ENV_VAR in msg and "vgg16-397923af.pth" in msg and "weights=" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in msg


def test_cached_download_is_used_offline(tmp_path, monkeypatch):
    _go_offline(monkeypatch, tmp_path)
    src = VGGPerceptualLoss(weights="random")
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    # torchvision's download would land here (same file name); hash checking is off for a
    # cached file, so torchvision's own mechanism reads it without the network
    _save_weights(ckpt / "vgg16-397923af.pth", src.features)
    torch.testing.assert_close(VGGPerceptualLoss().features[0].weight, src.features[0].weight)


def test_bad_paths_raise(tmp_path, monkeypatch):
    with pytest.raises(PerceptualWeightsError, match="not a file"):
        VGGPerceptualLoss(weights=str(tmp_path / "missing.pth"))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.pth"))
    with pytest.raises(PerceptualWeightsError, match=ENV_VAR):
        VGGPerceptualLoss()


def test_meta_device_reads_no_weights(tmp_path, monkeypatch):
    _go_offline(monkeypatch, tmp_path)
    with torch.device("meta"):
        loss = VGGPerceptualLoss()  # no error although no weights exist
    assert loss.features[0].weight.device.type == "meta"


@pytest.mark.parametrize("kwargs,field", [(dict(layers=("relu9_9",)), "layers"),
                                          (dict(layers=("relu3_3", "relu1_2")), "layers"),
                                          (dict(layer_weights=(1.0,)), "layer_weights"),
                                          (dict(criterion="l2"), "criterion")])
def test_invalid_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        VGGPerceptualLoss(weights="random", **kwargs)


def test_registered():
    assert {"perceptual", "vgg_perceptual"} <= set(ganzoo.list_losses())
    for name in ("perceptual", "vgg_perceptual"):
        assert isinstance(ganzoo.build_loss(name, weights="random"), VGGPerceptualLoss)
