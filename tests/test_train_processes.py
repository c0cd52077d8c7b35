"""Trainer tests with real processes: ``python -m ganzoo.train`` and ``torchrun -m
ganzoo.train``, exact resume, kill -9 during a checkpoint write, SIGINT/SIGTERM stops.

The toy models of ``_train_helpers`` reach the subprocesses as an installed plugin (a real
``.dist-info`` with entry points), so the commands are exactly what a user types.
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
import torch

from ganzoo.training import checkpoint as ckpt

import _train_helpers as helpers
from conftest import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOY = ["--model", "toytrain_gan", "--dataset", "toytrain_images", "--batch-size", "8",
       "--num-samples", "4", "--log-every", "1"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return helpers.plugin_env(tmp_path_factory.mktemp("plugin"))


def _records(out: Path) -> list[dict]:
    if not (out / "metrics.jsonl").is_file():
        return []
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def _comparable(records):
    return [{k: v for k, v in r.items() if k not in ("time", "it_per_s")} for r in records]


# test_wgan_gp: two critic steps, the G step reusing the first one's fakes (share_fakes).
WGAN = ["--model", "test_wgan_gp", "--dataset", "shapes", "--set", "data.size=64",
        "--set", "share_fakes=true", "--batch-size", "8", "--num-samples", "4",
        "--log-every", "1"]


@pytest.mark.parametrize("model", [TOY, WGAN], ids=["toy", "test_wgan_gp"])
def test_resume_is_bitwise_exact(env, tmp_path, model):
    """N steps straight == N/2 steps + resume + N/2 steps: weights, EMA, optimizer, logs."""
    common = [*model, "--save-every", "2", "--sample-every", "1"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    procs = [subprocess.Popen(helpers.train_cmd(*common, "-o", str(straight), "--max-steps",
                                                "4"), env=env, stderr=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, text=True),
             subprocess.Popen(helpers.train_cmd(*common, "-o", str(split), "--max-steps", "2"),
                              env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              text=True)]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    # Resume with only the run folder: model, dataset and options come from the checkpoint.
    res = helpers.run_train(env, "-o", str(split), "--resume", "--max-steps", "4")
    assert res.returncode == 0, res.stderr
    assert "resuming from" in res.stdout
    a = straight / "checkpoints" / "step_00000004"
    b = split / "checkpoints" / "step_00000004"
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and any(k.startswith("ema.") for k in wa)
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa
                                                        if not torch.equal(wa[k], wb[k])]
    oa = torch.load(a / "optimizers.pt", weights_only=True)
    ob = torch.load(b / "optimizers.pt", weights_only=True)
    for g in oa:
        for i, st in oa[g]["state"].items():
            assert all(torch.equal(st[k], ob[g]["state"][i][k]) for k in st)
    ra = torch.load(a / "rng.pt", weights_only=True)[0]
    rb = torch.load(b / "rng.pt", weights_only=True)[0]
    assert torch.equal(ra["torch"], rb["torch"])
    assert _comparable(_records(straight)) == _comparable(_records(split))
    assert (split / "samples" / "step_00000003.png").read_bytes() == \
        (straight / "samples" / "step_00000003.png").read_bytes()
    assert (split / "final" / "model.safetensors").is_file()


def test_kill9_during_checkpoint_then_resume_and_sigint(env, tmp_path):
    out = tmp_path / "run"
    root = out / "checkpoints"
    proc = subprocess.Popen(helpers.train_cmd(*TOY, "-o", str(out), "--max-steps", "1000",
                                              "--save-every", "2", "--sample-every", "0"),
                            env={**env, "GANZOO_TEST_CHECKPOINT_SLEEP": "4:120"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(p.name.startswith(".tmp_step_00000004") and
                          (p / "trainer_state.json").exists()
                          for p in (root.iterdir() if root.is_dir() else [])),
              proc, what="checkpoint 4 being written")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    latest = ckpt.read_latest(root)
    assert latest.name == "step_00000002"
    files = ckpt.read_checkpoint_files(latest)  # complete and readable
    assert files["trainer_state.json"]["step"] == 2
    assert not (root / "step_00000004").exists()

    # Resume from it, then stop with SIGINT: the step finishes, a checkpoint appears, exit 0.
    proc = subprocess.Popen(helpers.train_cmd("-o", str(out), "--resume", "--max-steps",
                                              "100000", "--save-every", "0"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(r["step"] >= 5 for r in _records(out)), proc,
              what="the resumed run to reach step 5")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "SIGINT" in stderr
    steps = [r["step"] for r in _records(out)]
    last = steps[-1]
    assert steps == list(range(1, last + 1))  # records after checkpoint 2 were replayed
    assert ckpt.read_latest(root).name == ckpt.step_dir_name(last)
    state = ckpt.read_checkpoint_files(root / ckpt.step_dir_name(last))["trainer_state.json"]
    assert state["step"] == last and last >= 5
    assert not any(p.name.startswith(".tmp_") for p in root.iterdir())  # stale write removed
    assert not (out / "final").exists()  # interrupted, not finished


def _sigterm_blocked_by_thread(pid: int) -> dict[int, tuple[str, bool]]:
    """{thread id: (name, whether SIGTERM is in its blocked mask)}, from /proc/PID/task."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        status = (task / "status").read_text()
        mask = int(next(line for line in status.splitlines()
                        if line.startswith("SigBlk:")).split()[1], 16)
        out[int(task.name)] = ((task / "comm").read_text().strip(),
                               bool(mask >> (signal.SIGTERM - 1) & 1))
    return out


def test_torchrun_two_processes_sigterm(env, tmp_path):
    """2 CPU processes (gloo): identical weights on both ranks at every checkpoint, only rank 0
    writes and prints, and SIGTERM to the workers stops them cleanly with a save (exit 0)."""
    import psutil

    out, logs = tmp_path / "run", tmp_path / "logs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "--log-dir", str(logs), "--redirects", "3", "-m", "ganzoo.train",
           "--no-progress", *TOY, "-o", str(out), "--max-steps", "100000", "--save-every", "2",
           "--sample-every", "2", "--keep", "0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    root = out / "checkpoints"
    wait_for(lambda: (root / "step_00000004").is_dir(), proc, timeout=150,
              what="checkpoint 4")
    workers = psutil.Process(proc.pid).children(recursive=True)
    workers = [w for w in workers if "ganzoo.train" in " ".join(w.cmdline())]
    assert len(workers) == 2
    for w in workers:
        # gloo's native threads (gloo_tcp_loop, pt_gloo_runloop) must block SIGTERM: one taken
        # there interrupts a recv() that gloo does not retry, and the rank aborts. The main
        # thread takes it; Python threads retry interrupted calls (PEP 475).
        threads = _sigterm_blocked_by_thread(w.pid)
        native = {t: b for t, (name, b) in threads.items() if name.startswith(("gloo", "pt_"))}
        assert threads[w.pid][1] is False and native and all(native.values()), threads
    for w in workers:
        os.kill(w.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    steps = [s for s, _ in ckpt.list_checkpoints(root)]
    last = _records(out)[-1]["step"]
    assert steps[:2] == [2, 4] and steps[-1] == last
    for _, path in ckpt.list_checkpoints(root):
        state = json.loads((path / "trainer_state.json").read_text())
        sums = state["rank_checksums"]
        assert state["num_processes"] == 2 and len(sums) == 2 and sums[0] == sums[1], path
        # 2 draws per step (2 critic steps; G reuses the first), sharded: 2 x 8 per draw
        assert state["samples_seen"] == state["step"] * 2 * 8 * 2
        assert len(torch.load(path / "rng.pt", weights_only=True)) == 2
    assert [r["step"] for r in _records(out)] == list(range(1, last + 1))  # one writer
    assert len(list((out / "samples").iterdir())) == 1 + last // 2
    rank_out = {int(p.parent.name): p.read_text() for p in logs.rglob("stdout.log")}
    assert rank_out[0].startswith("training toytrain_gan") and "saved" in rank_out[0]
    assert rank_out[1].strip() == ""


def test_torchrun_dcgan_channels_last_default(env, tmp_path):
    """dcgan's CPU default layout (channels_last) under DDP with gloo, with one generator forward
    per iteration (share_fakes): both ranks hold the same weights after each step, and final/
    loads strictly into a fresh (NCHW) model."""
    import ganzoo

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", "-m", "ganzoo.train", "--no-progress", "--model", "test_dcgan", "--dataset",
           "shapes", "--set", "data.size=64", "--batch-size", "4", "--num-samples", "4",
           "--max-steps", "3", "--save-every", "1", "--sample-every", "0", "--keep", "0",
           "--set", "share_fakes=true", "-o", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ", channels_last, " in proc.stdout + proc.stderr  # the startup line's layout
    for _, path in ckpt.list_checkpoints(out / "checkpoints"):
        sums = json.loads((path / "trainer_state.json").read_text())["rank_checksums"]
        assert len(sums) == 2 and sums[0] == sums[1], path
    model = ganzoo.from_pretrained(out / "final")
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).isfinite().all()


@pytest.mark.timeout(400)
def test_torchrun_sigterm_at_random_moments_under_load(env, tmp_path):
    """The graceful stop, repeated: SIGTERM to both ranks at a random moment of the run (during
    steps, checkpoint writes or the every-8-steps stop agreement) while another process keeps
    a core busy. Every rank must exit 0 and leave a complete checkpoint of the last step."""
    import random

    import psutil

    rng = random.Random(0)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        for round_ in range(3):
            out = tmp_path / f"run{round_}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", "2", "-m", "ganzoo.train", "--no-progress", *TOY,
                 "-o", str(out), "--max-steps", "100000", "--save-every", "3",
                 "--sample-every", "0", "--keep", "2"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            root = out / "checkpoints"
            wait_for(lambda: (root / "step_00000003").is_dir(), proc, timeout=150,
                      what="checkpoint 3")
            time.sleep(rng.uniform(0.0, 1.5))
            workers = [w for w in psutil.Process(proc.pid).children(recursive=True)
                       if "ganzoo.train" in " ".join(w.cmdline())]
            for w in workers:
                os.kill(w.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, f"round {round_}: {err[-3000:]}"
            last = _records(out)[-1]["step"]
            latest = ckpt.resolve_checkpoint("latest", out)
            assert latest is not None and latest.name == f"step_{last:08d}", (latest, last)
            ckpt.read_checkpoint_files(latest)  # complete and readable
    finally:
        hog.kill()
        hog.wait()


def test_wandb_offline_logs_into_the_run_folder(env, tmp_path):
    """--log-with wandb --wandb-mode offline needs no account and no network; its run folder
    (scalars, config, sample grids) lands in OUT/logs, not in the working directory."""
    pytest.importorskip("wandb")
    out, cwd = tmp_path / "run", tmp_path / "cwd"
    cwd.mkdir()
    wenv = {k: v for k, v in env.items() if not k.startswith("WANDB_")}
    wenv.update(WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"), WANDB_SILENT="true",
                WANDB_CACHE_DIR=str(tmp_path / "wandb-cache"),
                WANDB_DATA_DIR=str(tmp_path / "wandb-data"))
    res = subprocess.run(helpers.train_cmd(*TOY, "-o", str(out), "--max-steps", "2",
                                           "--sample-every", "2", "--log-with", "wandb",
                                           "--wandb-mode", "offline"),
                         env=wenv, cwd=cwd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    runs = list((out / "logs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((out / "logs").rglob("*"))
    [log] = runs[0].glob("run-*.wandb")
    data = log.read_bytes()
    assert b"discriminator/loss" in data and b"lr/generator" in data  # scalars were logged
    grids = sorted(p.name.split("_")[1] for p in runs[0].glob("files/media/images/samples_*"))
    assert grids == ["0", "2"]  # the sample grids of steps 0 and 2
    assert not (cwd / "wandb").exists()
