"""examples/gan_evolution.py end to end on a tiny preset (trainer + evaluate + results table)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

import ganzoo

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gan_evolution.py"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gan_evolution_example(tmp_path):
    spec = importlib.util.spec_from_file_location("gan_evolution", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "evo"
    rc = mod.main(["--presets", "test_dcgan", "--steps", "2", "--batch-size", "4",
                   "--feature-extractor", "test_random_cnn", "--eval-n", "8",
                   "--data", "size=16", "--cpu", "--no-progress", "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["preset"] for r in rows] == ["test_dcgan"]
    row = rows[0]
    assert row["steps"] == "2"
    fd = [k for k in row if k.startswith("fd@")]
    assert fd == ["fd@test_random_cnn"] and math.isfinite(float(row[fd[0]]))
    # The table reports the run's own evaluation record, which scores the trained weights:
    # the same protocol on a freshly initialised generator gives another value.
    record = json.loads((out / "test_dcgan" / "eval.json").read_text())
    assert float(row[fd[0]]) == pytest.approx(record["metrics"][fd[0]], rel=1e-9)
    assert record["protocol"]["n_fake"] == 8 and record["protocol"]["model"]["preset"] == \
        "test_dcgan"
    torch.manual_seed(1)
    fresh = ganzoo.evaluate(ganzoo.build("test_dcgan"), "shapes", metrics=["fid"], n=8,
                            batch_size=4, dataset_kwargs={"size": 16},
                            feature_extractor="test_random_cnn", cache=False)
    assert fresh["metrics"][fd[0]] != pytest.approx(float(row[fd[0]]), rel=1e-3)
    assert (out / row["samples"]).is_file() and (out / row["loss_curves"]).is_file()
    curves = list(csv.DictReader(open(out / row["loss_csv"])))
    assert [c["step"] for c in curves] == ["1", "2"]
    assert "generator/g_loss" in curves[0] and "discriminator/d_loss" in curves[0]
    assert "test_dcgan" in (out / "results.md").read_text()
