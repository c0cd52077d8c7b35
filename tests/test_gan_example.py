"""examples/gan_evolution.py end to end on a tiny preset (trainer + evaluate + results table)."""

from __future__ import annotations

import csv
import math
import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gan_evolution.py"


@pytest.mark.slow
def test_gan_evolution_example(tmp_path):
    pytest.importorskip("ganzoo.train")
    pytest.importorskip("ganzoo.metrics")
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
    assert float(row[fd[0]]) > 0  # a 2-step generator is far from the data
    assert (out / row["samples"]).is_file() and (out / row["loss_curves"]).is_file()
    curves = list(csv.DictReader(open(out / row["loss_csv"])))
    assert [c["step"] for c in curves] == ["1", "2"]
    assert "generator/g_loss" in curves[0] and "discriminator/d_loss" in curves[0]
    assert "test_dcgan" in (out / "results.md").read_text()
