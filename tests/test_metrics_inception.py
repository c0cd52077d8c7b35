"""The Inception path against torch-fidelity's own ``calculate_metrics``.

Random Inception weights (He-normal convolutions, see ``random_inception_state_dict``) saved to a
local file stand in for the real ones, which cannot be downloaded here; both sides load the same
file. Inception runs at 299 px, about a second per image on one CPU core, so N is tiny.
"""

from __future__ import annotations

import pytest
import torch

import ganzoo
from ganzoo.metrics.extractors import random_inception_state_dict, to_uint8

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(random_inception_state_dict(seed=0), path)
    return path


class _Uint8Dataset(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_equals_torch_fidelity_calculate_metrics(inception_weights, monkeypatch):
    import torch_fidelity

    monkeypatch.setenv("GANZOO_FID_WEIGHTS", str(inception_weights))  # the env-var path
    g = torch.Generator().manual_seed(0)
    fake = torch.rand(3, 3, 24, 24, generator=g) * 2 - 1
    real = torch.rand(3, 3, 24, 24, generator=g) * 1.4 - 0.6
    ours = ganzoo.evaluate(fake, real, metrics=["fid", "kid", "isc", "prc"], n=3, batch_size=2,
                           metric_kwargs={"kid": {"subset_size": 3, "subsets": 10},
                                          "isc": {"splits": 2}, "prc": {"neighborhood": 2}},
                           cache=False)
    theirs = torch_fidelity.calculate_metrics(
        input1=_Uint8Dataset(to_uint8(fake)), input2=_Uint8Dataset(to_uint8(real)),
        cuda=False, batch_size=3, fid=True, kid=True, isc=True, prc=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(inception_weights), kid_subset_size=3,
        kid_subsets=10, isc_splits=2, prc_neighborhood=2, cache=False, verbose=False,
        save_cpu_ram=True)
    m = ours["metrics"]
    assert "fid" in m  # the default Inception extractor keeps the plain names
    assert m["fid"] > 0
    # Different batch sizes (2 vs 3) on the two sides: batch-size independence with Inception.
    # kid_std: at N = 3 = subset_size every KID subset is the whole set, so torch-fidelity's
    # std is rounding and ganzoo reports it as not available (docs/evaluation.md, "KID").
    assert m["kid_std"] is None and "whole set" in ours["protocol"]["not_available"]["kid_std"]
    pairs = {"fid": "frechet_inception_distance", "kid_mean": "kernel_inception_distance_mean",
             "isc_mean": "inception_score_mean",
             "isc_std": "inception_score_std", "precision": "precision", "recall": "recall"}
    for ours_key, their_key in pairs.items():
        assert m[ours_key] == pytest.approx(theirs[their_key], rel=1e-4, abs=1e-7), ours_key
    p = ours["protocol"]
    assert p["feature_extractor"] == "inception_v3"
    assert p["feature_extractor_weights"] == str(inception_weights)
    assert len(p["feature_extractor_weights_id"]) == 64  # sha256 of the weights file
    assert p["feature_layers"] == {"fid": "2048", "isc": "logits_unbiased"}


def test_refuses_pickled_objects_in_weights(tmp_path):
    from ganzoo.metrics.extractors import build_feature_extractor

    bad = tmp_path / "bad.pth"
    torch.save({"x": torch.zeros(1), "obj": _Uint8Dataset}, bad)  # a class: not weights-only
    with pytest.raises(ValueError, match="holds Python objects other than tensors") as e:
        build_feature_extractor("inception_v3", weights=bad)
    assert "weights_only" not in str(e.value) and "\n" not in str(e.value)  # no unpickling advice
