"""``ganzoo queue``: the file checks, the shipped queues, and real queue runs in processes.

The real runs use ``ganzoo queue run`` exactly as a user types it, on tiny presets, the
embedded datasets and the weight-free ``test_random_cnn`` extractor. The kill test stops the
second experiment inside a checkpoint write (the trainer's ``GANZOO_TEST_CHECKPOINT_SLEEP``
hook), so "in the middle" is a fact the test waits for, not a timing guess.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ganzoo.cli import main
from ganzoo.experiments.queue import load_queue, shipped_queues
from ganzoo.experiments.runner import eval_command, train_flags
from ganzoo.experiments.runs import read_jsonl, training_time

from conftest import wait_for

TINY = {"model": "test_dcgan", "dataset": "shapes", "batch_size": 4, "log_every": 1,
        "num_samples": 4, "sample_every": 1}
EVAL = {"metrics": ["fid"], "n": 8, "batch_size": 8, "feature_extractor": "test_random_cnn"}


def write_queue(path: Path, experiments: list[dict], defaults: dict | None = None,
                root: Path | None = None) -> Path:
    data = {"output_root": str(root or path.parent / "out"),
            "defaults": {**TINY, "eval": EVAL, **(defaults or {})}, "experiments": experiments}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def ganzoo(*args: str, env=None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ganzoo.cli", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "GANZOO_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}


# -- the file checks ------------------------------------------------------------------------
BAD = [
    ({"name": "a", "max_steps": 2, "duraton": "3h"}, "experiment a: unknown key 'duraton'; "
     "did you mean duration"),
    ({"name": "a", "max_steps": 2, "model": "test_dcgann"}, "experiment a: model: Unknown"),
    ({"name": "a", "max_steps": 2, "model_args": {"ngff": 8}},
     "experiment a: model_args: DCGANConfig has no field 'ngff'; did you mean ngf"),
    ({"name": "a", "max_steps": 2, "dataset_args": {"resolutionn": 8}},
     "experiment a: dataset_args: dataset 'shapes' has no option 'resolutionn'"),
    ({"name": "a"}, "experiment a: no budget: set max_steps and/or duration"),
    ({"name": "a", "max_steps": "many"}, "experiment a: max_steps"),
    ({"name": "a", "max_steps": 2, "output_dir": "x"},
     "experiment a: 'output_dir' is set by the queue"),
    ({"name": "a b", "max_steps": 2}, "'name' must be a folder name"),
    ({"name": "a", "max_steps": 2, "eval": {"metric": ["fid"]}},
     "experiment a: eval: unknown key 'metric'; did you mean metrics"),
    ({"name": "a", "max_steps": 2, "eval": {"metrics": ["fidd"]}}, "experiment a: eval.metrics"),
    ({"name": "a", "max_steps": 2, "eval": {"n": 0}}, "experiment a: eval.n must be positive"),
    ({"name": "a", "max_steps": 2, "dataset": "image_folder",
      "dataset_args": {"root": "/nonexistent/faces"}},
     "experiment a: dataset_args.root: /nonexistent/faces does not exist"),
    ({"name": "a", "max_steps": 2, "launcher": "no-such-launcher -m ganzoo.train"},
     "experiment a: launcher: command 'no-such-launcher' not found"),
    ({"name": "a", "max_steps": 2, "seeds": [0, 0]}, "experiment a: seeds: a seed is given twice"),
    ({"name": "a", "max_steps": 2, "seeds": 3}, "experiment a: seeds must be a non-empty list"),
    ({"name": "a", "max_steps": 2, "seeds": [0, 1], "seed": 4},
     "experiment a: seed and seeds are both set"),
    ({"name": "a", "max_steps": 2, "baseline": "EXP00"},
     "experiment a: baseline: no experiment 'EXP00'"),
    ({"name": "a", "max_steps": 2, "eval": {"checkpoints": "newest"}},
     "experiment a: eval.checkpoints must be one of final, best"),
    ({"name": "a", "max_steps": 2, "eval": {"repeats": 0}},
     "experiment a: eval.repeats must be positive"),
]


@pytest.mark.parametrize("experiment,expected", BAD, ids=[e[1][:40] for e in BAD])
def test_a_bad_queue_file_is_one_clear_line(tmp_path, capsys, experiment, expected):
    path = write_queue(tmp_path / "q.yaml", [experiment])
    assert main(["queue", "run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"ganzoo queue: error: {path}: ") and expected in err, err
    assert not (tmp_path / "out").exists()  # nothing ran, nothing was written


def test_file_level_errors(tmp_path, capsys):
    path = tmp_path / "q.yaml"
    cases = {"experiments: [}": "cannot parse YAML",
             "output_root: o\nexperiments: []\n": "experiments must be a non-empty list",
             "experiments: [{name: a, max_steps: 1}]\n": "output_root is missing",
             "output_root: o\nexperimens: []\n": "unknown key 'experimens'; did you mean "
                                                  "experiments?",
             "output_root: o\nexperiments: [{name: a, max_steps: 1, model: test_dcgan}, "
             "{name: a, max_steps: 1, model: test_dcgan}]\n": "experiment a: the name is used "
                                                             "twice"}
    for text, expected in cases.items():
        path.write_text(text)
        assert main(["queue", "run", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert main(["queue", "run", "genegan_multires_tin"]) == 2
    assert "did you mean genegan_multires_tiny" in capsys.readouterr().err


def test_dry_run_only_and_missing_paths(tmp_path, capsys):
    exps = [{"name": "a", "max_steps": 2}, {"name": "b", "max_steps": 3, "lr": {"*": 1e-3},
                                             "dataset": "image_folder",
                                             "dataset_args": {"root": "/nonexistent/faces"}}]
    path = write_queue(tmp_path / "q.yaml", exps)
    assert main(["queue", "run", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    # A dry run shows a shipped queue before its paths are changed: warnings, not errors.
    assert "warning:" in out and "/nonexistent/faces does not exist (experiments b)" in out
    assert "a: pending" in out and "b: pending" in out
    assert "train: python -m ganzoo.train --model test_dcgan --dataset shapes" in out
    assert "--max-steps 3" in out and "--lr 0.001" in out
    assert f"eval:  ganzoo eval {tmp_path / 'out' / 'a' / 'final'} --ref shapes" in out
    assert main(["queue", "run", str(path), "--dry-run", "--only", "a"]) == 0
    out = capsys.readouterr().out
    assert "a: pending" in out and "b: pending" not in out
    assert main(["queue", "run", str(path), "--dry-run", "--only", "c"]) == 2
    assert "--only c: no such experiment" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_training_time_sums_the_attempts():
    # Two attempts: the second resumed at step 4 and restarted its clock.
    records = [{"step": 2, "time": 1.0}, {"step": 4, "time": 2.0}, {"step": 4, "eval": {}},
               {"step": 6, "time": 0.5}, {"step": 8, "time": 1.5}]
    assert training_time(records) == pytest.approx(3.5)
    assert training_time([{"step": 1, "eval": {}}]) is None


def test_state_is_derived_from_the_folder(tmp_path):
    """The resume table of docs/experiments.md, on folders laid out by hand."""
    from ganzoo.experiments.runner import experiment_state

    path = write_queue(tmp_path / "q.yaml", [{"name": "a", "max_steps": 4}])
    exp = load_queue(path).experiments[0]
    d = exp.dir

    def state(**st):
        (d / "state.json").write_text(json.dumps({"name": "a", **st}))
        return experiment_state(exp).status

    assert experiment_state(exp).status == "pending"
    (d / "checkpoints" / "step_00000002").mkdir(parents=True)
    (d / "checkpoints" / "step_00000002" / "trainer_state.json").write_text("{}")
    (d / "checkpoints" / "latest").write_text("step_00000002\n")
    assert experiment_state(exp).status == "interrupted" and experiment_state(exp).steps == 2
    assert state(status="training", train_hash=exp.train_hash) == "interrupted"
    (d / "final").mkdir()
    (d / "final" / "model.safetensors").write_text("")
    (d / "final" / "config.json").write_text(json.dumps({"card": {"steps": 4}}))
    # Trained to this budget: evaluate only; a failed evaluation is tried again.
    trained = dict(train_hash=exp.train_hash, budget=exp.budget)
    assert state(status="trained", **trained) == "trained"
    assert state(status="failed", stage="eval", **trained) == "trained"
    assert state(status="done", eval_hash=exp.eval_hash, **trained) == "trained"  # no eval.json
    (d / "eval.json").write_text(json.dumps({"metrics": {"fid": 1.0}, "protocol": {}}))
    assert state(status="done", eval_hash=exp.eval_hash, **trained) == "done"
    assert state(status="done", eval_hash="other", **trained) == "trained"  # eval changed
    # A larger budget continues from the newest checkpoint; other changes are left alone.
    assert state(status="done", eval_hash=exp.eval_hash, train_hash=exp.train_hash,
                 budget={"max_steps": 2, "duration": None}) == "interrupted"
    assert state(status="done", eval_hash=exp.eval_hash, train_hash="other",
                 budget=exp.budget) == "changed"


# -- the shipped queues ---------------------------------------------------------------------
SHIPPED = sorted(shipped_queues())


def test_the_users_queues_ship_with_cpu_versions():
    full = [n for n in SHIPPED if not n.endswith("_tiny")]
    assert {"genegan_multires", "generator_plan_phase2", "generator_plan_phase3",
            "generator_plan_phase4", "dcgan_log"} <= set(full)
    for name in full:
        assert f"{name}_tiny" in SHIPPED, f"shipped queue {name} has no CPU-sized version"
        big, tiny = load_queue(name, check_paths=False), load_queue(f"{name}_tiny")
        assert {e.name for e in tiny.experiments} <= {e.name for e in big.experiments}
    genegan = [e.name for e in load_queue("genegan_multires", check_paths=False).experiments]
    assert genegan[:2] == ["EXP00", "EXP01"] and "EXP06b" in genegan


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_queue_commands_mean_what_the_queue_runs(name, tmp_path):
    """The dry run's train flags resolve to the run config the queue passes with --config,
    and its eval flags to the queue's ganzoo.evaluate arguments."""
    from ganzoo.metrics.cli import build_parser
    from ganzoo.train import parse_run_config

    from ganzoo.training.data import check_dataset_options

    def typed(run):  # --set k=v stays a string until the trainer checks it, as here
        import torch

        import ganzoo

        run.dataset_args = check_dataset_options(run.dataset, run.dataset_args)
        with torch.device("meta"):
            run.model_args = ganzoo.build(run.model, **run.model_args).config_dict
        return run

    queue = load_queue(name, output_root=tmp_path, check_paths=name.endswith("_tiny"))
    if name.endswith("_tiny"):  # the CPU twins run with two seeds: two folders each
        assert all(e.seeds == [0, 1] for e in queue.experiments), name
        assert len(queue.runs()) == 2 * len(queue.experiments)
    for exp in queue.runs():
        if exp.seed is not None:
            assert exp.dir == tmp_path / exp.group / f"seed{exp.seed}"
            assert exp.run_config.seed == exp.seed
        flags = train_flags(exp.train) + ["--output-dir", str(exp.dir)]
        assert typed(parse_run_config(flags)) == typed(exp.run_config), exp.name
        assert exp.eval is not None, f"{name}: {exp.name} is not evaluated"
        ns = build_parser().parse_args(eval_command(exp, 10, tmp_path / "e.json"))
        assert ns.metrics == exp.eval["metrics"] and ns.n == exp.eval.get("n", 5000)
        assert ns.step == 10 and ns.generated == str(exp.dir / "final")
        dkw = dict(ns.dataset_kwarg)
        assert dkw == {**exp.run_config.dataset_args, **exp.eval.get("dataset_kwargs", {})}


def test_list_and_copy(tmp_path, capsys):
    assert main(["queue", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"{n} (" in out for n in SHIPPED)
    assert main(["queue", "copy", "dcgan_log", str(tmp_path)]) == 0
    copied = tmp_path / "dcgan_log.yaml"
    assert copied.read_text() == shipped_queues()["dcgan_log"].read_text()
    assert main(["queue", "copy", "dcgan_log", str(tmp_path)]) == 2  # never overwritten
    assert "exists" in capsys.readouterr().err


# -- real runs ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def killed_and_finished(tmp_path_factory):
    """Two experiments; the queue's whole process group is killed with SIGKILL in the middle
    of the second, a second ``queue run`` finishes it, a third is timed."""
    tmp = tmp_path_factory.mktemp("queue")
    env = {**os.environ, "GANZOO_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}
    path = write_queue(tmp / "two.yaml", [
        {"name": "first", "max_steps": 3, "save_every": 0},
        {"name": "second", "max_steps": 8, "save_every": 2, "model": "test_vae",
         "description": "a VAE, for the report's interpolation"},
    ])
    root = tmp / "out"
    facts: dict = {"path": path, "root": root, "env": env}
    # The second experiment's checkpoint 4 stays half-written (files on disk, not renamed)
    # for up to 10 minutes: the queue is killed while it waits there.
    hook = {**env, "GANZOO_TEST_CHECKPOINT_SLEEP": "4:600"}
    proc = subprocess.Popen([sys.executable, "-m", "ganzoo.cli", "queue", "run", str(path)],
                            env=hook, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    ckpts = root / "second" / "checkpoints"
    wait_for(lambda: (ckpts / "latest").is_file() and any(ckpts.glob(".tmp_step_00000004_*")),
             proc, 300, "the second experiment's half-written checkpoint 4", group=True)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # The trainer was killed too, but the kernel closes its copy of the lock when that process
    # has finished exiting, which can be after the queue's own exit: until then the queue is
    # still (rightly) "running". CI once read the status inside that window.
    _wait_for_lock_release(root, 60)
    facts["after_kill"] = {
        "state": json.loads((root / "second" / "state.json").read_text()),
        "latest": (ckpts / "latest").read_text().strip(),
        "rows": read_jsonl(root / "results.jsonl"),
        "status": _status(path),
    }
    facts["second_run"] = ganzoo("queue", "run", str(path), env=env)
    logs = {p: p.read_text() for p in root.glob("*/*.log")}
    # CPU time, not wall time: on a shared machine the wall clock says more about the load.
    t0, cpu0 = time.monotonic(), _children_cpu()
    facts["third_run"] = ganzoo("queue", "run", str(path), env=env)
    facts["third_s"], facts["third_cpu_s"] = time.monotonic() - t0, _children_cpu() - cpu0
    facts["logs_unchanged"] = all(p.read_text() == text for p, text in logs.items())
    facts["status"] = _status(path)
    return facts


def _wait_for_lock_release(root: Path, timeout: float) -> None:
    from ganzoo.experiments.runner import running_queue

    end = time.monotonic() + timeout
    while running_queue(root) is not None:
        assert time.monotonic() < end, f"{root}'s queue lock still held {timeout:.0f} s after kill"
        time.sleep(0.05)


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _status(path: Path) -> str:
    from ganzoo.experiments.runner import queue_status

    lines: list[str] = []
    queue_status(load_queue(path), say=lines.append)
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigkill_in_the_middle_then_resume_then_noop(killed_and_finished):
    f = killed_and_finished
    root = f["root"]
    after = f["after_kill"]
    assert after["state"]["status"] == "training" and after["latest"] == "step_00000002"
    assert [r["name"] for r in after["rows"]] == ["first"]
    assert "interrupted" in after["status"] and "checkpoint at step 2" in after["status"]

    second = f["second_run"]
    assert second.returncode == 0, second.stdout + second.stderr
    assert "first: done" in second.stdout and "second: resuming from step 2" in second.stdout
    assert "resuming from" in (root / "second" / "train.log").read_text()
    assert not list((root / "second" / "checkpoints").glob(".tmp_*"))  # the stale write is gone
    rows = {r["name"]: r for r in read_jsonl(root / "results.jsonl")}
    assert set(rows) == {"first", "second"}
    for name, steps in (("first", 3), ("second", 8)):
        row = rows[name]
        assert row["status"] == "done" and row["steps"] == steps
        assert row["metrics"]["fd@test_random_cnn" if name == "first"
                              else "fd@test_random_cnn/sample"] > 0
        ev = json.loads((root / name / "eval.json").read_text())
        assert ev["protocol"]["feature_extractor"] == "test_random_cnn"
        assert ev["protocol"]["step"] == steps
        assert json.loads((root / name / "state.json").read_text())["status"] == "done"
    # keep (the trainer's default 3 here) was applied: never more checkpoints than that.
    assert len(list((root / "second" / "checkpoints").glob("step_*"))) <= 3
    md = (root / "results.md").read_text()
    for name in ("first", "second"):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"| {name} |"))
        assert "| done |" in line and f"{name}/samples/step_" in line
        assert f"{rows[name]['metrics'][next(iter(rows[name]['metrics']))]:.4g}" in line

    third = f["third_run"]
    assert third.returncode == 0, third.stderr
    assert "first: done" in third.stdout and "second: done" in third.stdout
    assert "training" not in third.stdout and "evaluating" not in third.stdout
    assert f["logs_unchanged"]  # no trainer, no evaluation started
    assert len(read_jsonl(root / "results.jsonl")) == 2  # nothing appended twice
    # Importing torch and checking the file; no child process (the logs are unchanged).
    assert f["third_cpu_s"] < 30, f"an all-done queue took {f['third_cpu_s']:.1f} s of CPU"
    print(f"all-done queue run: {f['third_s']:.1f} s wall, {f['third_cpu_s']:.1f} s CPU")
    status = f["status"]
    assert status.count(" done ") == 2 and "8/8 steps" in status


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_report_on_a_queue_output_root(killed_and_finished, tmp_path):
    from html.parser import HTMLParser

    from ganzoo.experiments.report import write_report

    index = write_report([str(killed_and_finished["root"])], tmp_path / "r", worst_pool=16,
                         worst_reference=16)

    class Refs(HTMLParser):
        srcs: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.srcs.append(dict(attrs)["src"])

    parser = Refs()
    parser.feed(index.read_text())
    assert all((index.parent / s).is_file() for s in parser.srcs)
    names = {Path(s).name for s in parser.srcs}
    assert {"losses.png", "final_grid.png", "worst.png", "interpolation.png"} <= names
    text = index.read_text()
    assert "first" in text and "second" in text and "fd@test_random_cnn/sample" in text


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_failed_experiment_is_recorded_and_the_queue_goes_on_detached(tmp_path, env):
    # An unconditional GAN on unpaired data: the trainer refuses it at setup (exit 2).
    path = write_queue(tmp_path / "q.yaml", [
        {"name": "bad", "max_steps": 2, "dataset": "shapes_unpaired"},
        {"name": "good", "max_steps": 2},
    ])
    root = tmp_path / "out"
    res = ganzoo("queue", "run", str(path), "--stop-on-error", env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "bad: FAILED in training (exit 2)" in res.stdout and "--stop-on-error" in res.stdout
    state = json.loads((root / "bad" / "state.json").read_text())
    assert state["status"] == "failed" and state["stage"] == "train"
    assert "does not fit model 'test_dcgan'" in state["error"]
    assert not (root / "good").exists()
    rows = read_jsonl(root / "results.jsonl")
    assert [(r["name"], r["status"]) for r in rows] == [("bad", "failed")]
    assert "does not fit" in rows[0]["error"]
    assert "| bad | failed (train): dataset 'shapes_unpaired' does not fit" in \
        (root / "results.md").read_text()

    # Again, detached this time: the failure again, then the rest, in a session of its own
    # that logs to queue.log.
    res = ganzoo("queue", "run", str(path), "--detach", env=env, timeout=120)
    assert res.returncode == 0 and "own session" in res.stdout, res.stdout + res.stderr
    pid = int(res.stdout.split("(pid ")[1].split(")")[0])
    try:
        assert os.getsid(pid) == pid  # setsid: no controlling terminal to lose
    except ProcessLookupError:
        pass  # already finished; queue.log shows the run
    log = root / "queue.log"
    end = time.monotonic() + 300
    while time.monotonic() < end and "queue q: 2 experiment(s)" not in \
            (log.read_text() if log.is_file() else ""):
        time.sleep(0.2)
    text = log.read_text()
    assert "bad: FAILED in training" in text and "good: done (fd@test_random_cnn" in text, text
    assert "1 failed" in text
    assert json.loads((root / "good" / "state.json").read_text())["status"] == "done"
    status = _status(path)
    assert "failed (train)" in status and "does not fit" in status and " done " in status
