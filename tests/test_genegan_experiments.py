"""The GeneGAN experiment runner (examples/genegan_experiments.py): commands and one smoke run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

import ganzoo

RUNNER = Path(__file__).resolve().parents[1] / "examples" / "genegan_experiments.py"


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("genegan_experiments", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_experiment_is_a_valid_config(runner):
    from ganzoo.models.genegan import GeneGANConfig

    base = ganzoo.model_info("genegan_multires")["config"]
    assert {"EXP00", "EXP01", "EXP02", "EXP03", "EXP04", "EXP05a", "EXP05b", "EXP06a",
            "EXP06b"} <= set(runner.EXPERIMENTS)
    for name, (_, options, _) in runner.EXPERIMENTS.items():
        GeneGANConfig(**{**base, "resolutions": tuple(base["resolutions"]), **options})


def test_dry_run_prints_the_queue_command(runner, capsys, tmp_path):
    assert runner.main(["EXP03", "--dry-run", "--data-root", str(tmp_path),
                        "--output-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "--model genegan_multires --dataset celeba" in out
    assert "--duration 3h --keep 2" in out and "--set multi_res_mode=random" in out
    assert "data.resolution=128" in out and "fid_128_n5000.json" in out
    assert "ganzoo eval " in out and "--ref celeba" in out and "-d split=all" in out
    with pytest.raises(SystemExit, match="vqvae-ckpt"):
        runner.main(["EXP06b", "--dry-run", "--data-root", str(tmp_path)])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_smoke_run_trains_and_writes_fid_json(runner, tmp_path):
    code = runner.main([
        "EXP03", "--model", "test_genegan_multires", "--dataset", "shapes_attr",
        "--output-root", str(tmp_path), "--batch-size", "4", "--eval-n", "8",
        "--eval-batch-size", "8", "--feature-extractor", "test_random_cnn",
        "--", "--max-steps", "2", "--sample-every", "0", "--no-progress", "--log-every", "1"])
    assert code == 0
    exp_dir = next(tmp_path.glob("EXP03_*"))
    result = json.loads((exp_dir / "fid_32_n8.json").read_text())
    assert set(result["metrics"]) == {"fd@test_random_cnn/bu", "fd@test_random_cnn/a0"}
    assert result["protocol"]["reference"]["bu"].endswith("subset='with')")
    assert (exp_dir / "final" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (exp_dir / "metrics.jsonl").read_text().splitlines()]
    assert {r["generator/resolution"] for r in records if "generator/resolution" in r}
