"""The run folder (ganzoo.rundir): its names are spelled in one module, a real trainer run
folder reads back through RunDir (and through the experiments' readers built on it), and the
``checkpoints/latest`` pointer has one reader."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from ganzoo import rundir
from ganzoo.experiments import runs
from ganzoo.rundir import CheckpointError, RunDir, read_latest
from ganzoo.train import main
from ganzoo.training import checkpoint as ckpt
from ganzoo.training.trainer import RUN_ARTEFACTS

import _train_helpers as helpers

SRC = Path(rundir.__file__).parent
RUN_NAMES = {"config.json", "metrics.jsonl", "checkpoints", "final", "samples", "logs",
             "final-diffusers", "trainer_state.json", "experiment.json", "eval.json",
             "state.json", "train_config.json", "results.jsonl", "results.md"}
# Modules that read or write run folders (other modules may use these words otherwise).
READERS = ("training/trainer.py", "training/checkpoint.py", "training/steplog.py",
           "training/guard.py", "training/stop.py", "train.py", "experiments/runs.py",
           "experiments/runner.py", "experiments/report.py", "experiments/table.py",
           "experiments/queue.py")


@pytest.fixture
def toys():
    unregister = helpers.register_toys()
    yield
    unregister()


def test_run_folder_names_are_spelled_in_rundir_only():
    """No reader or writer of a run folder spells one of its file names itself."""
    found = []
    for rel in READERS:
        tree = ast.parse((SRC / rel).read_text())
        # a dict key is a name of something else (the trackers' image tag "samples")
        keys = {id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict)
                for k in node.keys}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in RUN_NAMES and \
                    id(node) not in keys:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "\n".join(found)


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


def test_grep_for_run_names_hits_rundir_only():
    """The issue's check: the names as string literals appear in rundir.py alone, among the
    modules that handle run folders."""
    pattern = re.compile(r'"(metrics\.jsonl|checkpoints|final|samples)"(?!:)')
    hits = [rel for rel in READERS if pattern.search((SRC / rel).read_text())]
    assert hits == [] and pattern.search((SRC / "rundir.py").read_text())
