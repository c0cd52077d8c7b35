"""The run folder (ganzoo.rundir): a real trainer run folder reads back through RunDir (and
through the experiments' readers built on it), and the ``checkpoints/latest`` pointer has one
reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ganzoo import rundir
from ganzoo.experiments import runs
from ganzoo.rundir import CheckpointError, RunDir, read_latest
from ganzoo.train import main
from ganzoo.training import checkpoint as ckpt
from ganzoo.training.trainer import RUN_ARTEFACTS

import _train_helpers as helpers

# That no other module spells a run folder's names is tests/test_architecture.py's
# test_run_folder_names_are_spelled_in_rundir_only (it reads paths across the package).


@pytest.fixture
def toys():
    unregister = helpers.register_toys()
    yield
    unregister()


def test_paths_and_names():
    rd = RunDir("OUT")
    assert rd.metrics == Path("OUT/metrics.jsonl") and rd.config == Path("OUT/config.json")
    assert rd.checkpoint(1000) == Path("OUT/checkpoints/step_00001000")
    assert rd.latest_pointer == Path("OUT/checkpoints/latest")
    assert rd.sample_grid(7) == Path("OUT/samples/step_00000007.png")
    assert rundir.SAMPLE_RE.match(rd.sample_grid(123456789).name)
    assert rundir.STEP_RE.match(rd.checkpoint(5).name)
    assert rd.final.name == "final" and rd.final_diffusers.name == "final-diffusers"
    assert RUN_ARTEFACTS == RunDir.ARTEFACTS  # what --overwrite removes
    # checkpoint keeps its public names, now the rundir ones
    assert ckpt.read_latest is read_latest and ckpt.CheckpointError is CheckpointError
    assert ckpt.step_dir_name(3) == rd.checkpoint(3).name


def test_latest_pointer_has_one_reader(tmp_path):
    rd = RunDir(tmp_path)
    assert rd.latest_checkpoint() is None and read_latest(rd.checkpoints) is None
    rd.checkpoints.mkdir()
    rd.latest_pointer.write_text("nonsense\n")
    with pytest.raises(CheckpointError, match="does not name a checkpoint"):
        read_latest(rd.checkpoints)  # strict: the trainer's --resume
    assert rd.latest_checkpoint() is None  # tolerant: the queue and the report
    rd.latest_pointer.write_text("step_00000004\n")
    assert read_latest(rd.checkpoints) == rd.checkpoint(4)
    assert rd.latest_checkpoint() is None  # names a folder that is not (yet) complete
    rd.checkpoint(4).mkdir()
    (rd.checkpoint(4) / "trainer_state.json").write_text("{}")
    assert rd.latest_checkpoint() == (4, rd.checkpoint(4))
    assert runs.latest_checkpoint(tmp_path) == (4, rd.checkpoint(4))


def test_clear_removes_only_run_artefacts(tmp_path):
    rd = RunDir(tmp_path)
    for name in ("config.json", "metrics.jsonl", "notes.txt"):
        (tmp_path / name).write_text("x")
    for folder in (rd.samples, rd.checkpoints, rd.final):
        folder.mkdir()
    assert rd.holds_run() and rd.is_run_dir()
    rd.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert not rd.holds_run() and not rd.is_run_dir()


def test_a_trainer_run_folder_reads_back(toys, tmp_path):
    out = tmp_path / "run"
    code = main(["--model", "toytrain_gan", "--dataset", "toytrain_images", "-o", str(out),
                 "--no-progress", "--batch-size", "8", "--num-samples", "4",
                 "--max-steps", "6", "--log-every", "2", "--save-every", "4",
                 "--sample-every", "3", "--keep", "1"])
    assert code == 0
    rd = RunDir(out)
    assert rd.is_run_dir() and rd.holds_run() and rd.final_ok()
    assert json.loads(rd.config.read_text())["max_steps"] == 6
    assert [r["step"] for r in rd.records() if "time" in r] == [2, 4, 6]
    assert [s for s, _ in rd.sample_grids()] == [0, 3, 6]
    assert rd.latest_checkpoint() == (6, rd.checkpoint(6))
    assert [s for s, _ in rd.list_checkpoints()] == [6]  # --keep 1 pruned step 4
    card = json.loads((rd.final / "config.json").read_text())["card"]
    assert card["steps"] == 6 and card["sample_grid_step"] == 6
    info = runs.RunInfo.read(out)
    assert info.steps == 6 and info.finished and info.status == "trained"
    assert runs.final_ok(out) and [s for s, _ in runs.sample_grids(out)] == [0, 3, 6]
    # --resume latest finds the pointer through the same reader
    assert rundir.resolve_checkpoint("latest", out) == rd.checkpoint(6)
    assert rundir.resolve_checkpoint(str(out), out) == rd.checkpoint(6)  # a run folder
    # a cut last line (a kill mid-write) is skipped by every reader
    with open(rd.metrics, "a") as f:
        f.write('{"step": 7, "ti')
    assert len(rd.records()) == len(runs.RunInfo.read(out).records) == 3



    # A run stopped before final/: the report's model is its newest checkpoint's, built from
    # the run config the checkpoint keeps.
    import shutil

    import torch
    from safetensors.torch import load_file

    from ganzoo.experiments.figures import load_run_model

    shutil.rmtree(rd.final)
    model = load_run_model(runs.RunInfo.read(out), torch.device("cpu"))
    saved = load_file(rd.checkpoint(6) / "model.safetensors")
    state = model.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
