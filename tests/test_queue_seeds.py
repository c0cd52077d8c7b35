"""Seeds as a queue axis, the baseline comparison in results.md, and which model is scored.

The end-to-end test runs a shipped ``_tiny`` queue (two experiments, each with the two seeds
its file gives) exactly as a user types it, kills the queue's whole process group as soon as
the first seed's run is done, and runs it again: nothing finished is redone, nothing is lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ganzoo.experiments.queue import load_queue
from ganzoo.experiments.runner import eval_command, experiment_state, queue_status, run_queue
from ganzoo.experiments.runs import read_jsonl
from ganzoo.experiments.stats import compare, summarize

from conftest import wait_for
from test_queue import EVAL, TINY, write_queue


def _status(path: Path, **kw) -> str:
    lines: list[str] = []
    queue_status(load_queue(path, **kw), say=lines.append)
    return "\n".join(lines)


# -- the file -------------------------------------------------------------------------------
def test_seeds_give_one_folder_each_and_old_queues_keep_their_layout(tmp_path):
    path = write_queue(tmp_path / "q.yaml", [
        {"name": "base", "max_steps": 2},
        {"name": "two", "max_steps": 2, "seeds": [3, 5]},
        {"name": "off", "max_steps": 2, "seeds": None, "baseline": "two"},
    ], defaults={"seeds": [0, 1, 2], "seed": 7})
    queue = load_queue(path)
    base, two, off = queue.experiments
    root = tmp_path / "out"
    assert [r.dir for r in base.runs()] == [root / "base" / f"seed{s}" for s in (0, 1, 2)]
    assert [r.run_config.seed for r in two.runs()] == [3, 5]
    assert [r.name for r in two.runs()] == ["two/seed3", "two/seed5"]
    assert off.runs() == [off] and off.dir == root / "off" and off.run_config.seed == 7
    assert (base.baseline, two.baseline, off.baseline) == (None, "base", "two")
    # Every experiment's first seed, then the second ones: a stopped queue has one of each.
    assert [r.name for r in queue.runs()] == ["base/seed0", "two/seed3", "off", "base/seed1",
                                              "two/seed5", "base/seed2"]
    assert [r.name for r in queue.runs(["two"])] == ["two/seed3", "two/seed5"]
    # The seeds' runs are separate runs: each its own state.
    assert base.runs()[0].train_hash != base.runs()[1].train_hash
    record = base.runs()[1].record()
    assert (record["experiment"], record["seed"], record["seeds"]) == ("base", 1, [0, 1, 2])
    # A queue without seeds keeps <output_root>/<name> exactly.
    plain = load_queue(write_queue(tmp_path / "p.yaml", [{"name": "a", "max_steps": 2}]))
    assert [r.dir for r in plain.runs()] == [root / "a"] and plain.runs()[0].seed is None


def test_the_state_is_per_seed_folder(tmp_path):
    """A seed run's state comes from its own folder, laid out by hand as a killed queue
    leaves it: seed0 done, seed1 with a checkpoint, seed2 not started."""
    path = write_queue(tmp_path / "q.yaml", [{"name": "a", "max_steps": 4, "seeds": [0, 1, 2]}])
    runs = load_queue(path).runs()
    done, interrupted, _ = runs
    for run in (done, interrupted):
        ck = run.dir / "checkpoints" / "step_00000002"
        ck.mkdir(parents=True)
        (ck / "trainer_state.json").write_text("{}")
        (run.dir / "checkpoints" / "latest").write_text("step_00000002\n")
    (done.dir / "final").mkdir()
    (done.dir / "final" / "model.safetensors").write_text("")
    (done.dir / "final" / "config.json").write_text(json.dumps({"card": {"steps": 4}}))
    (done.dir / "eval.json").write_text(json.dumps({"metrics": {"fid": 1.0}, "protocol": {}}))
    (done.dir / "state.json").write_text(json.dumps({
        "status": "done", "train_hash": done.train_hash, "budget": done.budget,
        "eval_hash": done.eval_hash}))
    assert [experiment_state(r).status for r in runs] == ["done", "interrupted", "pending"]
    status = _status(path)
    assert re.search(r"^a/seed0 +done ", status, re.M), status
    assert re.search(r"^a/seed1 +interrupted +2/4 steps \(checkpoint at step 2\)", status, re.M)
    assert re.search(r"^a/seed2 +pending ", status, re.M), status


def test_eval_repeats_and_checkpoints_reach_ganzoo_eval(tmp_path):
    from ganzoo.metrics.cli import build_parser

    path = write_queue(tmp_path / "q.yaml", [
        {"name": "a", "max_steps": 2, "eval": {"repeats": 3}},
        {"name": "b", "max_steps": 2, "eval": {"checkpoints": "best"}},
    ])
    a, b = load_queue(path).experiments
    ns = build_parser().parse_args(eval_command(a, 2, tmp_path / "e.json"))
    assert ns.repeats == 3
    ns = build_parser().parse_args(eval_command(b, 2, tmp_path / "e.json", b.files.best))
    assert ns.repeats == 1 and ns.generated == str(b.dir / "best")
    assert a.eval_hash != load_queue(write_queue(tmp_path / "r.yaml", [
        {"name": "a", "max_steps": 2}])).experiments[0].eval_hash


def _trained(run, steps: int = 2) -> None:
    """A run folder as the trainer leaves it at the end of its budget (weights unread)."""
    run.dir.mkdir(parents=True)
    (run.dir / "final").mkdir()
    (run.dir / "final" / "model.safetensors").write_text("")
    (run.dir / "final" / "config.json").write_text(json.dumps({"card": {"steps": steps}}))
    (run.dir / "state.json").write_text(json.dumps({
        "status": "trained", "train_hash": run.train_hash, "budget": run.budget}))


def test_a_run_without_best_is_not_scored_and_says_why(tmp_path):
    """``eval: {checkpoints: best}`` on a run that kept no best/: no evaluation starts, the
    results say why, and the next queue run does not try again."""
    path = write_queue(tmp_path / "q.yaml", [{"name": "a", "max_steps": 2,
                                              "eval": {**EVAL, "checkpoints": "best"}}])
    run = load_queue(path).experiments[0]
    _trained(run)
    said: list[str] = []
    assert run_queue(load_queue(path), say=said.append) == 0
    assert any("evaluation skipped: no best checkpoint" in s for s in said), said
    assert not run.files.eval_log.exists()  # no child was started
    assert experiment_state(run).status == "done"
    md = (tmp_path / "out" / "results.md").read_text()
    assert "not scored: no best checkpoint" in md and "--keep-best" in md


# -- a shipped _tiny queue, end to end, killed between seeds ------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_queue_two_experiments_two_seeds_killed_between_seeds(tmp_path):
    env = {**os.environ, "GANZOO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    root = tmp_path / "out"
    args = ["generator_plan_phase1_tiny", "--only", "1C-flip", "1C-structure",
            "--output-root", str(root)]
    queue = load_queue("generator_plan_phase1_tiny", output_root=root)
    first = queue.runs(["1C-flip", "1C-structure"])[0]
    assert first.name == "1C-flip/seed0"
    proc = subprocess.Popen([sys.executable, "-m", "ganzoo.cli", "queue", "run", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    wait_for(lambda: (json.loads(first.files.state.read_text()) if first.files.state.is_file()
                      else {}).get("status") == "done", proc, 300,
             "the first seed's run to be done", group=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    eval_before = first.files.eval.read_text()
    res = subprocess.run([sys.executable, "-m", "ganzoo.cli", "queue", "run", *args], env=env,
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1C-flip/seed0: done" in res.stdout and "1C-flip/seed0: training" not in res.stdout
    assert "2 experiment(s), 4 runs" in res.stdout
    # Nothing of the finished seed was redone: one training attempt, the same evaluation.
    assert first.files.train_log.read_text().count("attempt") == 1
    assert first.files.eval.read_text() == eval_before
    rows = read_jsonl(root / "results.jsonl")
    names = [r["name"] for r in rows]
    assert sorted(names) == ["1C-flip/seed0", "1C-flip/seed1", "1C-structure/seed0",
                             "1C-structure/seed1"], names  # each once
    assert {(r["experiment"], r["seed"]) for r in rows} == {
        (e, s) for e in ("1C-flip", "1C-structure") for s in (0, 1)}
    status = _status(queue.path, output_root=root)
    for name in names:
        assert re.search(rf"^{re.escape(name)} +done ", status, re.M), status

    key = "fd@test_random_cnn"
    values = {e: [json.loads((root / e / f"seed{s}" / "eval.json").read_text())["metrics"][key]
                  for s in (0, 1)] for e in ("1C-flip", "1C-structure")}
    md = (root / "results.md").read_text()
    line = next(ln for ln in md.splitlines() if ln.startswith("| 1C-structure |"))
    s = summarize(values["1C-structure"])
    assert f"{s.mean:.3f}"[:4] in line and "±" in line, line
    assert all(f"{v:.2f}"[:4] in line for v in s.values), line
    assert "final @ 4" in line
    # 1C-structure names 1C-flip as its baseline (the queue file); 1C-flip's own baseline,
    # 1B-aligned, is not in this run of the queue, so it is compared with nothing.
    c = compare(key, values["1C-structure"], values["1C-flip"], names=("1C-structure",
                                                                        "1C-flip"))
    comparison = [ln for ln in md.splitlines() if ln.startswith("| 1C-")]
    assert len(comparison) == 3, comparison  # two table rows and one comparison row
    assert f"| 1C-structure | 1C-flip | {key} ↓ |" in md and c.words in md
    assert "Intervals:" in md and "Welch t interval" in md and "2 seeds against 2" in md


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_eval_checkpoints_all_scores_every_kept_checkpoint(tmp_path):
    """``eval: {checkpoints: all}``: the kept checkpoints (keep 2: steps 2 and 4 of 4) as
    models, each scored; results.md gives each number's step."""
    path = write_queue(tmp_path / "q.yaml", [{
        "name": "a", "max_steps": 4, "save_every": 1, "keep": 2,
        "eval": {**EVAL, "checkpoints": "all"}}])
    said: list[str] = []
    assert run_queue(load_queue(path), say=said.append) == 0, said
    run = load_queue(path).experiments[0]
    evals = sorted((run.dir / "evals").glob("*.json"))
    assert [p.name for p in evals] == ["step_00000003.json"]  # step 4 is final/, scored too
    ev = json.loads(evals[0].read_text())
    assert ev["protocol"]["step"] == 3 and ev["protocol"]["checkpoint"].endswith("00000003")
    final = json.loads(run.files.eval.read_text())
    assert final["protocol"]["step"] == 4 and final["protocol"]["checkpoint"] == "final"
    assert not (run.dir / ".eval_model.tmp").exists()
    md = (tmp_path / "out" / "results.md").read_text()
    key = "fd@test_random_cnn"
    assert f"| a | 3 | {ev['metrics'][key]:.4g} |" in md, md
    assert f"| a | 4 | {final['metrics'][key]:.4g} |" in md, md
