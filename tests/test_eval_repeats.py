"""``evaluate(repeats=K)`` / ``ganzoo eval --repeats K``: K generation seeds against one
reference side; and ``kid_std`` reported as not available where every KID subset is the
whole set (docs/evaluation.md, "Generation noise" and "KID")."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch
import torchvision.utils as vutils
from torch_fidelity.metric_kid import kid_features_to_metric

from ganzoo.metrics import evaluate
from ganzoo.metrics import evaluation as evaluation_module
from ganzoo.metrics.base import RealFeatures
from ganzoo.metrics.cli import summary_lines
from ganzoo.metrics.fidelity import KID, NotAvailable
from ganzoo.registry import MODELS
from test_metrics import EX, _FakeSwap, _FakeUncond, _images, attr_dataset  # noqa: F401

KW = dict(metrics=["fid", "kid", "psnr"], n=20, batch_size=8, feature_extractor=EX)
FD, KID_MEAN, KID_STD = f"fd@{EX}", f"kid_mean@{EX}", f"kid_std@{EX}"


@pytest.fixture
def count_reference_extractions(monkeypatch):
    calls = []
    real = evaluation_module._extract_real

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluation_module, "_extract_real", counting)
    return calls


@pytest.fixture
def ref_folder(tmp_path):
    """The reference as an image folder: cacheable (a tensor is not)."""
    folder = tmp_path / "ref"
    folder.mkdir()
    for i, im in enumerate(_images(20, 3)):
        vutils.save_image((im + 1) / 2, folder / f"{i}.png")
    return folder


# -- repeats -----------------------------------------------------------------------------------
def test_repeats_score_k_seeds_with_one_reference(count_reference_extractions):
    model, ref = _FakeUncond.from_config(), _images(20, 3)
    res = evaluate(model, ref, seed=2, repeats=3, cache=False, **KW)
    assert len(count_reference_extractions) == 1  # one reference side for the three seeds
    p = res["protocol"]
    assert p["seed"] == 2 and p["repeats"] == 3 and p["repeat_seeds"] == [2, 3, 4]
    assert set(res["repeats"]) == set(res["metrics"]) == {FD, KID_MEAN, KID_STD, "psnr"}
    for key in (FD, KID_MEAN, "psnr"):
        s = res["repeats"][key]
        assert s["n"] == 3 and len(set(s["values"])) == 3, key  # three different draws
        assert s["mean"] == pytest.approx(statistics.fmean(s["values"]), rel=1e-12)
        assert s["std"] == pytest.approx(float(np.std(s["values"], ddof=1)), rel=1e-9)
        assert s["std"] > 0
        assert res["metrics"][key] == s["mean"]
    # Each repeat is the one-seed evaluation at seed, seed + 1, seed + 2.
    for i, s in enumerate((2, 3, 4)):
        one = evaluate(model, ref, seed=s, cache=False, **KW)["metrics"]
        for key in (FD, KID_MEAN, "psnr"):
            assert res["repeats"][key]["values"][i] == pytest.approx(one[key], rel=1e-9), key


def test_repeats_read_or_store_the_cache_once(count_reference_extractions, ref_folder,
                                              tmp_path):
    model, ref = _FakeUncond.from_config(), str(ref_folder)
    first = evaluate(model, ref, repeats=2, cache_dir=tmp_path, **KW)
    assert first["protocol"]["real_stats_cache"] == "miss"
    assert len(count_reference_extractions) == 1
    assert len(list((tmp_path / "real_stats").glob("*.safetensors"))) == 1
    again = evaluate(model, ref, repeats=2, cache_dir=tmp_path, **KW)
    assert again["protocol"]["real_stats_cache"] == "hit"
    assert len(count_reference_extractions) == 1  # the hit extracts nothing
    assert again["repeats"][FD]["values"] == pytest.approx(first["repeats"][FD]["values"],
                                                          rel=1e-9)


def test_one_repeat_is_the_plain_result():
    model, ref = _FakeUncond.from_config(), _images(20, 3)
    plain = evaluate(model, ref, cache=False, **KW)
    one = evaluate(model, ref, repeats=1, cache=False, **KW)
    three = evaluate(model, ref, repeats=3, cache=False, **KW)
    assert set(plain) == set(one) == {"metrics", "protocol"}
    assert one["metrics"] == plain["metrics"]
    assert not {"repeats", "repeat_seeds"} & set(one["protocol"])
    assert set(one["protocol"]) | {"repeats", "repeat_seeds"} == set(three["protocol"])
    assert three["repeats"][FD]["values"][0] == plain["metrics"][FD]


class _NoisySwap(_FakeSwap):
    """_FakeSwap plus generator noise; records the input batches it is given."""

    inputs: list = []

    @torch.no_grad()
    def generate(self, batch, n, generator=None):
        type(self).inputs.append(batch["image_with"].clone())
        out = super().generate(batch, n)
        noise = torch.rand(out["bu"].shape, generator=generator) * 0.2
        return {k: (v + noise).clamp(-1, 1) for k, v in out.items()}


def test_repeats_of_a_model_with_inputs_reuse_its_inputs(attr_dataset,  # noqa: F811
                                                         count_reference_extractions):
    _NoisySwap.inputs = []
    res = evaluate(_NoisySwap.from_config(), attr_dataset, metrics=["fid"], n=12, batch_size=6,
                   feature_extractor=EX, repeats=2, cache=False)
    assert len(count_reference_extractions) == 2  # one per output view, not per seed
    first, second = _NoisySwap.inputs[:2], _NoisySwap.inputs[2:]
    assert len(first) == len(second) == 2
    for a, b in zip(first, second):
        assert torch.equal(a, b)  # the same input batches at both seeds
    for o in ("bu", "a0"):
        values = res["repeats"][f"fd@{EX}/{o}"]["values"]
        assert values[0] != values[1]  # different generation noise


def test_repeats_need_a_model_and_a_positive_count():
    with pytest.raises(ValueError, match="no seed to vary"):
        evaluate(_images(20, 0), _images(20, 3), repeats=2, cache=False, **KW)
    with pytest.raises(ValueError, match="repeats=0"):
        evaluate(_FakeUncond.from_config(), _images(20, 3), repeats=0, cache=False, **KW)


# -- kid_std at N <= subset_size ---------------------------------------------------------------
def test_kid_std_is_rounding_when_every_subset_is_the_whole_set():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 8, generator=g), torch.randn(20, 8, generator=g) + 0.3
    # What torch-fidelity itself reports there: a "std" of float32 summation-order rounding,
    # against a spread of about 10% of the mean with subsets of half the set (below).
    raw = kid_features_to_metric(x, y, kid_subsets=100, kid_subset_size=20, verbose=False)
    mean = raw["kernel_inception_distance_mean"]
    assert raw["kernel_inception_distance_std"] < 1e-4 * mean
    whole = KID().compute(x, RealFeatures(y))  # subset_size 1000 >= N = 20
    assert isinstance(whole["kid_std"], NotAvailable)
    assert "whole set" in whole["kid_std"].reason and "N = 20" in whole["kid_std"].reason
    assert whole["kid_mean"] == pytest.approx(raw["kernel_inception_distance_mean"], rel=1e-6)
    assert isinstance(KID(subset_size=20).compute(x, RealFeatures(y))["kid_std"], NotAvailable)
    assert isinstance(KID(subsets=1, subset_size=10).compute(x, RealFeatures(y))["kid_std"],
                      NotAvailable)
    # A spread: subsets smaller than N, or a reference side larger than the generated one.
    spread = KID(subset_size=10).compute(x, RealFeatures(y))["kid_std"]
    assert isinstance(spread, float) and spread > 1e-2 * mean
    wider = KID().compute(x, RealFeatures(torch.cat([y, y[:5] + 1])))["kid_std"]
    assert isinstance(wider, float) and wider > 1e-2 * mean


def test_evaluate_reports_kid_std_not_available_with_the_reason():
    model, ref = _FakeUncond.from_config(), _images(20, 3)
    res = evaluate(model, ref, cache=False, **KW)
    assert res["metrics"][KID_STD] is None and math.isfinite(res["metrics"][KID_MEAN])
    assert "every KID subset is the whole set" in res["protocol"]["not_available"][KID_STD]
    json.dumps(res, allow_nan=False)  # None is JSON null
    small = evaluate(model, ref, cache=False, metric_kwargs={"kid": {"subset_size": 10}}, **KW)
    assert small["metrics"][KID_STD] > 0 and "not_available" not in small["protocol"]
    three = evaluate(model, ref, repeats=3, cache=False, **KW)
    assert three["metrics"][KID_STD] is None
    assert three["repeats"][KID_STD] == {"n": 3, "mean": None, "std": None,
                                         "values": [None, None, None]}


# -- the command line --------------------------------------------------------------------------
def test_summary_lines():
    result = {"metrics": {"fid": 41.0, "kid_std": None, "psnr": 9.0},
              "repeats": {"fid": {"n": 3, "mean": 41.0, "std": 1.0, "values": [40.0, 41.0, 42.0]},
                          "kid_std": {"n": 3, "mean": None, "std": None, "values": [None] * 3},
                          "psnr": {"n": 3, "mean": 9.0, "std": 0.0, "values": [9.0] * 3}},
              "protocol": {"repeat_seeds": [7, 8, 9], "not_available": {"kid_std": "why"}}}
    assert summary_lines(result) == [
        "fid: 41 ± 1 over 3 generation seeds (7, 8, 9): 40, 41, 42",
        "kid_std: n/a (why)",
        "psnr: 9 ± 0 over 3 generation seeds (7, 8, 9): 9, 9, 9"]
    assert summary_lines({"metrics": {"fid": 41.0}, "protocol": {}}) == []


def test_cli_repeats_prints_json_and_a_line_per_metric(ref_folder, tmp_path, capsys):
    from ganzoo.cli import main  # `ganzoo eval ...` dispatches to metrics.cli

    def test_eval_repeats_uncond(**kwargs):
        return _FakeUncond.from_config(preset="test_eval_repeats_uncond", **kwargs)

    MODELS.register(test_eval_repeats_uncond)
    try:
        args = ["eval", "test_eval_repeats_uncond", "--ref", str(ref_folder), "-m", "fid",
                "-m", "kid", "--n", "20", "--batch-size", "8", "--feature-extractor", EX,
                "--no-cache", "--seed", "4"]
        out = tmp_path / "r.json"
        assert main([*args, "--repeats", "3", "--out", str(out)]) == 0
        captured = capsys.readouterr()
        data = json.loads(out.read_text())
        assert json.loads(captured.out) == data and data["protocol"]["repeats"] == 3
        lines = captured.err.strip().splitlines()
        assert lines[0].startswith(f"{FD}: ") and " over 3 generation seeds (4, 5, 6): " in lines[0]
        assert lines[0].endswith(", ".join(f"{v:.6g}" for v in data["repeats"][FD]["values"]))
        assert lines[2].startswith(f"{KID_STD}: n/a (every KID subset is the whole set")
        # One seed and every value available: the JSON alone, as before --repeats existed.
        assert main([*args, "--metric-kwarg", "kid.subset_size=10"]) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and "repeats" not in json.loads(captured.out)
    finally:
        MODELS._builtins.pop("test_eval_repeats_uncond", None)
