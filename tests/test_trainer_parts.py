"""The trainer's parts, alone: the non-finite guard, the graceful stop, the log record, the
run config's cross-field checks, the command line's reverse (a config layer as flags) and the
one results table."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from ganzoo.experiments.runs import RunInfo
from ganzoo.experiments.table import COLUMNS, Column, results_table
from ganzoo.train import parse_run_config
from ganzoo.training.args import config_argv
from ganzoo.training.config import RunConfig, resolve_run_config
from ganzoo.training.guard import FLAG_SLOTS, NonfiniteGuard, TrainingError
from ganzoo.training.outputs import MetricsWriter
from ganzoo.training.steplog import StepLog, bar_losses
from ganzoo.training.stop import AGREE_EVERY, GracefulStop

NAN, ONE = torch.tensor(float("nan")), torch.tensor(1.0)


# -- the non-finite guard ---------------------------------------------------------------------
def test_guard_flags_on_the_device_and_counts_in_one_read():
    guard = NonfiniteGuard(torch.device("cpu"), limit=3, total=5)  # 5: from a checkpoint
    flags = [guard.flag([ONE, torch.ones(3)]), guard.flag([NAN]),
             guard.flag([torch.tensor([1.0, float("inf")])])]
    assert [f.item() for f in flags] == [0.0, 1.0, 1.0]  # set before any host read
    assert guard.total == 5 and guard.consecutive == 0  # nothing counted yet
    assert guard.count() == [False, True, True]
    assert guard.total == 7 and guard.consecutive == 2
    assert guard.count() == []  # nothing pending
    guard.flag([ONE])
    guard.count()
    assert guard.consecutive == 0 and guard.total == 7  # a good step ends the run of bad ones


def test_guard_mixed_dtypes_and_full_slots():
    guard = NonfiniteGuard(torch.device("cpu"), limit=0)
    assert not guard.enabled
    assert guard.flag([ONE.half(), torch.tensor(float("nan"), dtype=torch.bfloat16)]).item() == 1
    for _ in range(FLAG_SLOTS + 3):  # running out of slots folds them in first
        guard.flag([NAN])
    assert guard.total == FLAG_SLOTS  # the first FLAG_SLOTS, counted when the slots ran out
    guard.count()
    assert guard.total == FLAG_SLOTS + 4


def test_guard_reduces_over_processes_and_stops_at_the_limit(tmp_path):
    seen = []

    def reduce(flag):  # another process had a bad loss
        seen.append(flag.item())
        return flag + 1

    guard = NonfiniteGuard(torch.device("cpu"), limit=2, reduce=reduce)
    assert guard.flag([ONE]).item() == 1.0  # clamped to 1 after the sum
    guard.check(0, tmp_path)  # not counted yet: no stop
    guard.flag([ONE])
    guard.count()
    assert seen == [0.0, 0.0] and guard.consecutive == 2
    with pytest.raises(TrainingError, match=rf"stopping at step 9: 2 consecutive.*{tmp_path}"):
        guard.check(9, tmp_path)
    NonfiniteGuard(torch.device("cpu"), limit=0).check(9, tmp_path)  # off: never stops


# -- the graceful stop ------------------------------------------------------------------------
def test_stop_on_a_signal_then_restore(capsys):
    stop = GracefulStop(announce=True)
    old = signal.getsignal(signal.SIGTERM)
    stop.install()
    try:
        assert stop.reason(1, time.time()) is None
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.reason(2, time.time()) == "signal SIGTERM"
        assert "got SIGTERM; finishing the step" in capsys.readouterr().err
        os.kill(os.getpid(), signal.SIGTERM)  # a second one within 2 s (torchrun's echo)
        assert stop.signal == signal.SIGTERM
    finally:
        stop.restore()
    assert signal.getsignal(signal.SIGTERM) is old
    assert GracefulStop.interrupted("signal SIGTERM")
    assert GracefulStop.interrupted("another process stopped")
    assert not GracefulStop.interrupted("duration 1h reached") and \
        not GracefulStop.interrupted(None)


def test_stop_at_the_deadline_and_agreement_between_processes():
    stop = GracefulStop(duration="2s", duration_seconds=2.0)
    assert stop.reason(5, time.time()) is None
    assert stop.reason(5, time.time() - 3) == "duration 2s reached"
    calls = []

    def reduce(flag):  # the other process stopped
        calls.append(flag.item())
        return flag + 1

    stop = GracefulStop(device=torch.device("cpu"), reduce=reduce)
    assert stop.reason(AGREE_EVERY + 1, time.time()) is None and not calls  # not an agreement step
    assert stop.reason(AGREE_EVERY, time.time()) == "another process stopped"
    assert calls == [0.0]


# -- the log record ---------------------------------------------------------------------------
def test_step_log_record_and_outputs(tmp_path):
    writer = MetricsWriter(tmp_path / "metrics.jsonl")
    tracked, postfix = [], []

    class Bar:
        def set_postfix(self, values, refresh):
            postfix.append(values)

    log = StepLog(5, step=10, t0=time.time() - 1, writer=writer, bar=Bar(),
                  track=lambda values, step: tracked.append((step, values)))
    assert not log.due(11, 100) and log.due(15, 100) and log.due(13, 13)
    assert not StepLog(0, step=0, t0=0.0, writer=None).due(10, 10)
    logs = {"discriminator": {"loss": torch.tensor(0.5), "d_loss": torch.tensor(0.5),
                              "_skipped": True},
            "generator": {"loss": torch.tensor([1.0, 3.0]), "adv_loss": 1.5}}
    record = log.write(15, logs, {"generator": 2e-4}, nonfinite_total=3)
    assert record["step"] == 15 and record["nonfinite_total"] == 3 and record["it_per_s"] > 0
    assert record["generator/loss"] == 2.0 and "discriminator/_skipped" not in record
    assert record["lr/generator"] == 2e-4
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == record
    assert tracked == [(15, {k: v for k, v in record.items() if k != "step"})]
    assert postfix == [{"disc:loss": "0.5", "gene:loss": "2", "gene:adv_loss": "1.5"}]
    assert bar_losses(record) == postfix[0]  # d_loss equals the loss: shown once


# -- the run config ---------------------------------------------------------------------------
@pytest.mark.parametrize("fields, needle", [
    ({"output_dir": "o", "max_steps": 1}, "no model given"),
    ({"model": "m", "max_steps": 1}, "--output-dir"),
    ({"model": "m", "output_dir": "o"}, "--max-steps and/or --duration"),
    ({"model": "m", "output_dir": "o", "duration": "1h", "lr_schedule": "cosine"},
     "--lr-schedule cosine needs --max-steps"),
    ({"model": "m", "output_dir": "o", "max_steps": 9, "lr_decay_start": 2},
     "--lr-decay-start needs --lr-schedule"),
    ({"model": "m", "output_dir": "o", "max_steps": 9, "lr_decay_start": 9,
      "lr_schedule": "linear"}, "must be below --max-steps"),
])
def test_run_config_cross_field_checks(fields, needle):
    run = RunConfig(**fields)  # each field alone is fine
    with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
        run.validate()


def test_run_config_validate_passes_a_good_config():
    run = RunConfig(model="m", output_dir="o", max_steps=9, lr_schedule="cosine",
                    lr_decay_start=3)
    assert run.validate() is run


# -- the command line's reverse ---------------------------------------------------------------
def test_config_argv_round_trips_through_the_parser():
    layer = {"model": "dcgan", "dataset": "shapes", "output_dir": "out", "max_steps": 7,
             "lr": {"*": 1e-3, "generator": 2e-4}, "clip_grad_norm": {"critic": 1.0},
             "optim": {"generator": {"betas": [0.5, 0.9]}},
             "model_args": {"ngf": 32, "loss": "hinge"}, "dataset_args": {"resolution": 16},
             "eval_metrics": ["fid", "isc"], "cpu": True, "progress": False,
             "channels_last": False, "overwrite": True, "compile": False, "verbose": True,
             "resume": "latest", "duration": None, "mixed_precision": "bf16"}
    argv = config_argv(layer)
    assert "--no-progress" in argv and "--no-channels-last" in argv and "--cpu" in argv
    assert "--compile" not in argv  # a switch that is off is left out
    run = parse_run_config(argv)
    want = resolve_run_config({**layer, "model_args": {"ngf": "32", "loss": "hinge"},
                               "dataset_args": {"resolution": "16"},
                               "optim": {"generator": {"betas": "[0.5, 0.9]"}}})
    assert run == want  # --set / --optim values stay strings until the trainer checks them
    with pytest.raises(KeyError):
        config_argv({"no_such_field": 1})


# -- the results table ------------------------------------------------------------------------
def _run(root: Path, name: str, metrics: dict | None) -> RunInfo:
    d = root / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model": "dcgan", "batch_size": 4}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 10, "time": 5.0}) + "\n")
    if metrics is not None:
        (d / "eval.json").write_text(json.dumps({"metrics": metrics, "protocol": {
            "feature_extractor": "inception_v3", "n_fake": 100, "n_real": 100}}))
    return RunInfo.read(d)


def test_one_results_table(tmp_path):
    runs = [_run(tmp_path, "a", {"fid": 12.345, "kid": 0.01}), _run(tmp_path, "b", None)]
    table = results_table(runs)
    labels = table.header_labels()
    assert labels[:len(COLUMNS)] == [c.label for c in COLUMNS]
    assert labels[len(COLUMNS):] == ["fid ↓ [1]", "IS ↑", "LPIPS diversity ↑", "kid ↓ [2]"]
    assert [k for k, _ in table.notes] == ["fid", "kid"] and "inception_v3" in table.notes[0][1]
    assert table.rows[0][len(COLUMNS)] == ("12.35", 12.345)
    assert table.rows[1][len(COLUMNS)] == ("—", None)
    md = table.markdown()
    assert md[0].startswith("| run | model | status | steps |") and md[1].count("---") == 11
    assert md[2].startswith("| a | dcgan |") and "1. `fid`: inception_v3" in "\n".join(md)
    # the queue's variant: its own columns, no empty headline columns, one after the metrics
    name = Column("experiment", lambda r: (r.name, r.name))
    after = Column("note", lambda r: ("x|y", None))
    queue = results_table(runs, columns=(name,), after=(after,), headline=False)
    assert queue.header_labels() == ["experiment", "fid ↓ [1]", "kid ↓ [2]", "note"]
    assert queue.markdown()[2] == "| a | 12.35 | 0.01 | x\\|y |"
