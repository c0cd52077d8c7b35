"""Trainer tests that run in this process: config resolution, bad input, checkpoint files,
schedules, the data order, outputs of a short run, the non-finite guard, and a smoke run of
every registered ``test_*`` preset. Real-process tests live in test_train_processes.py."""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

import pytest
import torch

import ganzoo
from ganzoo.train import main, parse_run_config
from ganzoo.training import checkpoint as ckpt
from ganzoo.training.config import parse_duration
from ganzoo.training.data import ResumableSampler, SeededDataset
from ganzoo.training.schedules import lr_at

import _train_helpers as helpers

FAST = ["--no-progress", "--batch-size", "8", "--num-samples", "4", "--log-every", "1"]


@pytest.fixture
def toys():
    unregister = helpers.register_toys()
    yield
    unregister()


def _args(out, *extra, model="toytrain_gan", dataset="toytrain_images"):
    return ["--model", model, "--dataset", dataset, "-o", str(out), *FAST, *extra]


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# -- run configuration ------------------------------------------------------------------------
def test_set_scheme_and_precedence(tmp_path):
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text("model: toytrain_gan\ndataset: toytrain_images\nbatch_size: 4\n"
                        "model_args: {hidden: 16, z_dim: 4}\nlr: {generator: 1.0e-3}\n")
    run = parse_run_config(["--config", str(cfg_file), "-o", str(tmp_path / "o"),
                            "--batch-size", "2", "--set", "hidden=8", "--set",
                            "data.resolution=16", "--lr", "3e-4", "--lr", "discriminator=5e-4",
                            "--optim", "generator.betas=[0.0,0.9]", "--duration", "1h30m"])
    assert run.batch_size == 2  # flag beats file
    assert run.model_args == {"hidden": "8", "z_dim": 4}  # --set merges over the file
    assert run.dataset_args == {"resolution": "16"}
    assert run.lr == {"generator": 1e-3, "*": 3e-4, "discriminator": 5e-4}
    assert run.optim == {"generator": {"betas": "[0.0,0.9]"}}
    assert run.duration_seconds == 5400


def test_config_file_unknown_key(tmp_path):
    cfg_file = tmp_path / "run.json"
    cfg_file.write_text(json.dumps({"model": "x", "batch_sise": 4}))
    with pytest.raises(KeyError, match="batch_size"):
        parse_run_config(["--config", str(cfg_file)])


@pytest.mark.parametrize("text, seconds", [("3h", 10800), ("90m", 5400), ("45s", 45),
                                           ("1h30m", 5400), ("120", 120), ("1.5h", 5400)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["3x", "h", "-5", "1h junk"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_lr_schedules():
    assert lr_at(2e-4, 50, kind="constant", total=100) == 2e-4
    assert lr_at(2e-4, 0, kind="cosine", total=100, end=1e-5) == pytest.approx(2e-4)
    assert lr_at(2e-4, 100, kind="cosine", total=100, end=1e-5) == pytest.approx(1e-5)
    assert lr_at(2e-4, 50, kind="cosine", total=100, end=1e-5) == pytest.approx(1.05e-4)
    assert lr_at(1e-3, 25, kind="linear", total=100) == pytest.approx(7.5e-4)
    assert lr_at(1e-3, 4, kind="linear", total=100, warmup=10) == pytest.approx(5e-4)


def test_linear_decay_after_a_constant_phase_as_cut():
    """CUT / pix2pix --lr_policy linear: n_epochs at the base rate, then linearly to zero over
    n_epochs_decay (here per step: 200 + 200)."""
    lrs = [lr_at(2e-4, s, kind="linear", total=400, decay_start=200) for s in range(401)]
    assert lrs[0] == lrs[199] == lrs[200] == 2e-4
    assert lrs[300] == pytest.approx(1e-4) and lrs[400] == 0.0
    assert all(a > b for a, b in zip(lrs[200:], lrs[201:]))  # strictly decreasing
    # the last trained step runs at 1/200 of the base (the reference, per epoch: 1/201)
    assert lrs[399] == pytest.approx(2e-4 / 200)
    # warm-up, then hold until decay_start; cosine takes decay_start too
    assert lr_at(1e-3, 30, kind="linear", total=100, warmup=10, decay_start=50) == 1e-3
    assert lr_at(1e-3, 75, kind="cosine", total=100, decay_start=50) == pytest.approx(5e-4)


# -- bad input fails before any work, with useful messages -------------------------------------
@pytest.mark.parametrize("extra, model, dataset, needle", [
    ([], "toytrain_gam", "toytrain_images", "toytrain_gan"),  # unknown model: close match
    ([], "toytrain_gan", "toytrain_imagez", "toytrain_images"),  # unknown dataset
    (["--set", "hiden=4"], "toytrain_gan", "toytrain_images", "hidden"),  # unknown --set key
    (["--set", "hidden=abc"], "toytrain_gan", "toytrain_images", "hidden"),  # wrong type
    (["--set", "data.resolutoin=4"], "toytrain_gan", "toytrain_images", "resolution"),
    (["--lr", "generater=1e-3"], "toytrain_gan", "toytrain_images", "generator"),
    ([], "toytrain_gan", "toytrain_unpaired", "image_a"),  # dataset does not fit the model
    (["--lr-decay-start", "1"], "toytrain_gan", "toytrain_images", "--lr-schedule cosine"),
    (["--lr-schedule", "linear", "--lr-decay-start", "1"], "toytrain_gan", "toytrain_images",
     "below --max-steps"),
])
def test_bad_input(toys, tmp_path, capsys, extra, model, dataset, needle):
    out = tmp_path / "run"
    code = main(_args(out, "--max-steps", "1", *extra, model=model, dataset=dataset))
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize("tracker,needle", [
    ("wandb", "needs the wandb package: pip install 'ganzoo[wandb]'"),
    ("mlflow", "needs the mlflow package: pip install 'ganzoo[mlflow]'"),
    ("aim", "needs the aim package: pip install aim"),
    ("comet_ml", "needs the comet_ml package: pip install comet_ml"),
    ("dvclive", "needs the dvclive package: pip install dvclive"),
    ("all", "--log-with all found no tracker installed")])
def test_missing_tracker_names_the_install(toys, tmp_path, capsys, monkeypatch, tracker,
                                           needle):
    import importlib.util

    from ganzoo.training.outputs import TRACKERS

    find_spec = importlib.util.find_spec
    gone = {tracker} if tracker != "all" else {m for m, _ in TRACKERS.values()}
    monkeypatch.setattr(importlib.util, "find_spec",  # as if the tracker were not installed
                        lambda name, *a: None if name in gone else find_spec(name, *a))
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "1", "--log-with", tracker)) == 2
    assert needle in capsys.readouterr().err
    assert not (out / "checkpoints").exists()


def test_mlflow_tracker_logs_to_a_local_store(toys, tmp_path, monkeypatch):
    """A real offline tracker other than TensorBoard: MLflow's file store."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants opting in to files
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "3", "--log-with", "mlflow", "--sample-every",
                      "0")) == 0
    client = mlflow.tracking.MlflowClient()
    [experiment] = [e for e in client.search_experiments() if e.name == "run"]
    [logged] = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(logged.info.run_id, "generator/loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert logged.data.params["model"] == "toytrain_gan" and logged.info.status == "FINISHED"


def test_push_to_hub_is_refused_before_training(toys, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "1", "--push-to-hub", "me/x")) == 2
    assert "--push-to-hub me/x needs a Hub token" in capsys.readouterr().err
    assert main(_args(out, "--max-steps", "1", "--push-to-hub", "not-a-repo")) == 2
    assert "must be a Hub repo id 'org/name'" in capsys.readouterr().err
    assert not out.exists()


def test_refuses_output_of_another_run(toys, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    assert main(_args(out, "--max-steps", "1")) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(_args(out, "--max-steps", "1", "--save-every", "0", "--sample-every", "0",
                      "--overwrite")) == 0
    assert json.loads((out / "config.json").read_text())["model"] == "toytrain_gan"


def test_resume_with_nothing_to_resume_says_it_starts_fresh(toys, tmp_path, caplog):
    out = tmp_path / "fresh"
    with caplog.at_level("WARNING", logger="ganzoo"):
        assert main(_args(out, "--max-steps", "1", "--sample-every", "0", "--resume")) == 0
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"--resume latest: {out} holds no checkpoint yet; starting a new run"]
    assert (out / "final" / "model.safetensors").is_file()


def test_resume_names_the_bad_file(toys, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "1", "--sample-every", "0")) == 0
    step = out / "checkpoints" / "step_00000001"
    (step / "optimizers.pt").write_bytes(b"not a torch file")
    assert main(_args(out, "--max-steps", "2", "--resume")) == 2
    err = capsys.readouterr().err
    assert str(step / "optimizers.pt") in err and "not a PyTorch file" in err
    # torch's "re-run with weights_only=False" would unpickle arbitrary code: never suggested.
    assert "weights_only" not in err and len(err.strip().splitlines()) == 1, err
    (step / "rng.pt").unlink()
    assert main(_args(out, "--max-steps", "2", "--resume")) == 2
    assert str(step / "rng.pt") in capsys.readouterr().err
    assert main(_args(out, "--max-steps", "2", "--resume", str(tmp_path / "nope"))) == 2
    assert "nope" in capsys.readouterr().err
    out2 = tmp_path / "run2"
    assert main(_args(out2, "--max-steps", "1", "--sample-every", "0")) == 0
    assert main(_args(out2, "--max-steps", "2", "--resume", "--set", "hidden=16")) == 2
    assert "hidden=32 vs 16" in capsys.readouterr().err


# -- data order -------------------------------------------------------------------------------
def test_sampler_resume_and_epochs():
    full = [k for _, k in zip(range(50), ResumableSampler(7, seed=3))]
    assert [k for _, k in zip(range(30), ResumableSampler(7, seed=3, start=20))] == full[20:]
    for e in range(7):  # each epoch is a permutation, its keys carry the epoch
        assert sorted(i for i, _, _ in full[7 * e:7 * e + 7]) == list(range(7))
        assert {k[2] for k in full[7 * e:7 * e + 7]} == {e}
    assert [i for i, _, _ in full[:7]] != [i for i, _, _ in full[7:14]]
    assert len({s for _, s, _ in full}) == 50  # one seed per position


def test_seeded_dataset_leaves_rng_alone():
    ds = SeededDataset(helpers.ToyImages(size=8))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = [ds[(i, 100 + i)]["image"] for i in range(8)]
    assert torch.equal(torch.get_rng_state(), state)
    b = [ds[(i, 100 + i)]["image"] for i in range(8)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    flips = [ds[(0, s)]["image"] for s in range(20)]  # the flip follows the sample seed
    assert any(not torch.equal(flips[0], f) for f in flips)


# -- checkpoint files -------------------------------------------------------------------------
def test_prune_keeps_newest_and_latest(tmp_path):
    root = tmp_path / "checkpoints"
    for s in (1, 2, 3, 4, 5):
        (root / ckpt.step_dir_name(s)).mkdir(parents=True)
    (root / ckpt.LATEST).write_text("step_00000002\n")  # e.g. newer ones had bad weights
    removed = ckpt.prune(root, keep=2)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == \
        ["step_00000002", "step_00000004", "step_00000005"]
    assert len(removed) == 2


def test_rng_round_trip(tmp_path):
    import random

    import numpy as np

    state = ckpt.capture_rng()
    torch.save([state], tmp_path / "rng.pt")
    a = (random.random(), np.random.rand(), torch.rand(3))
    ckpt.restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)[0])
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])


# -- a short run and its outputs ----------------------------------------------------------------
def test_outputs_pruning_and_final(toys, tmp_path):
    out = tmp_path / "run"
    code = main(_args(out, "--max-steps", "4", "--save-every", "1", "--keep", "2",
                      "--sample-every", "2", "--lr-schedule", "cosine", "--lr-end", "1e-4",
                      "--lr-decay-start", "2",
                      "--clip-grad-norm", "generator=1.0", "--log-with", "tensorboard"))
    assert code == 0
    assert gc.get_freeze_count() == 0  # the loop's gc.freeze() is undone
    root = out / "checkpoints"
    assert [p.name for _, p in ckpt.list_checkpoints(root)] == ["step_00000003",
                                                                "step_00000004"]
    assert (root / "latest").read_text().strip() == "step_00000004"
    assert sorted(p.name for p in (out / "samples").iterdir()) == \
        ["step_00000000.png", "step_00000002.png", "step_00000004.png"]
    recs = _records(out)
    assert [r["step"] for r in recs] == [1, 2, 3, 4]
    assert all(math.isfinite(r["generator/loss"]) for r in recs)
    # held until --lr-decay-start (iteration 2), then cosine decays
    assert recs[0]["lr/generator"] == recs[1]["lr/generator"] == recs[2]["lr/generator"]
    assert recs[-1]["lr/generator"] < recs[0]["lr/generator"]
    assert recs[-1]["generator/grad_norm"] > 0
    assert list((out / "logs").rglob("events.out.tfevents*")), "no tensorboard events"
    state = json.loads((root / "step_00000004" / "trainer_state.json").read_text())
    # 4 steps x 2 batches x 8: the 2 critic steps draw one each, the generator reuses the first
    assert state["samples_seen"] == 4 * 2 * 8
    model = ganzoo.from_pretrained(out / "final")
    saved = ganzoo.from_pretrained(out / "final")
    assert torch.equal(model.sample(2, torch.Generator().manual_seed(0)),
                       saved.sample(2, torch.Generator().manual_seed(0)))
    live = dict(model.named_parameters())
    assert any(not torch.equal(p, live[n.removeprefix("ema.")])  # EMA differs from live
               for n, p in model.named_parameters() if n.startswith("ema."))


def test_batches_are_copied_to_the_device_without_blocking(toys, tmp_path, monkeypatch):
    """A blocking host-to-device copy waits for all queued GPU work, so loading the next batch
    could never overlap the current step (that cost ~7% on an H100 for dcgan)."""
    import accelerate.data_loader

    real, calls = accelerate.data_loader.send_to_device, []

    def spy(tensor, device, non_blocking=False, **kwargs):
        calls.append(non_blocking)
        return real(tensor, device, non_blocking=non_blocking, **kwargs)

    monkeypatch.setattr(accelerate.data_loader, "send_to_device", spy)
    assert main(_args(tmp_path / "run", "--max-steps", "2", "--sample-every", "0",
                      "--save-every", "0")) == 0
    assert calls and all(calls)


def test_only_the_stepped_group_changes(toys, tmp_path):
    """A generator-only schedule (n_critic=0) must leave the discriminator untouched."""
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "2", "--set", "n_critic=0", "--sample-every", "0",
                      "--save-every", "0")) == 0
    from accelerate.utils import set_seed

    set_seed(0)  # what the trainer does before building: same initial weights
    init = helpers.toytrain_gan(n_critic=0)
    trained = ganzoo.from_pretrained(out / "final")
    for n, p in trained.discriminator.named_parameters():
        assert torch.equal(p, dict(init.discriminator.named_parameters())[n]), n
    assert any(not torch.equal(p, dict(init.generator.named_parameters())[n])
               for n, p in trained.generator.named_parameters())


def test_groups_share_the_iterations_batches(toys, tmp_path, monkeypatch):
    """The k-th step of every group in an iteration gets the iteration's k-th batches (one per
    micro-step): D and G see the same real images, the critic's extra step fresh ones."""
    seen = []
    real_loss = helpers.ToyGAN.loss

    def spy(self, group, batch, step):
        seen.append((step, group, batch["image"].clone()))
        return real_loss(self, group, batch, step)

    monkeypatch.setattr(helpers.ToyGAN, "loss", spy)
    assert main(_args(tmp_path / "run", "--max-steps", "2", "--grad-accum", "2",
                      "--sample-every", "0", "--save-every", "0")) == 0
    for step in (0, 1):
        d = [x for s, g, x in seen if s == step and g == "discriminator"]
        g = [x for s, g, x in seen if s == step and g == "generator"]
        assert len(d) == 4 and len(g) == 2  # n_critic 2 x grad_accum 2; 1 x 2
        assert all(torch.equal(a, b) for a, b in zip(g, d[:2]))  # G reuses D's first step's
        assert not any(torch.equal(a, b) for a in d[:2] for b in d[2:])  # fresh for step 2
        assert not torch.equal(d[0], d[1])  # one batch per micro-step
    first = [x for s, g, x in seen if s == 0 and g == "discriminator"]
    second = [x for s, g, x in seen if s == 1 and g == "discriminator"]
    assert not any(torch.equal(a, b) for a in first for b in second)  # new ones per iteration


def test_a_model_can_draw_a_batch_per_group_step(toys, tmp_path, monkeypatch):
    """shares_batches = False (GeneGAN's train.py): every group step of an iteration gets
    batches of its own."""
    seen = []
    real_loss = helpers.ToyGAN.loss

    def spy(self, group, batch, step):
        seen.append(batch["image"].clone())
        return real_loss(self, group, batch, step)

    monkeypatch.setattr(helpers.ToyGAN, "loss", spy)
    monkeypatch.setattr(helpers.ToyGAN, "shares_batches", False)
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "2", "--sample-every", "0", "--save-every", "2")) == 0
    assert len(seen) == 6  # 2 iterations x (2 critic steps + 1 generator step)
    assert not any(torch.equal(a, b) for i, a in enumerate(seen) for b in seen[i + 1:])
    state = json.loads((out / "checkpoints" / "step_00000002" / "trainer_state.json")
                       .read_text())
    assert state["samples_seen"] == 2 * 3 * 8


def test_single_group_model_with_grad_accum(toys, tmp_path):
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "3", "--grad-accum", "2", "--sample-every", "3",
                      "--ema-decay", "0.5", model="toytrain_ae")) == 0
    recs = _records(out)
    assert recs[-1]["autoencoder/mse"] < recs[0]["autoencoder/mse"] * 1.5
    from PIL import Image

    grid = Image.open(out / "samples" / "step_00000003.png")
    assert grid.size[0] > grid.size[1]  # 4 inputs over 4 reconstructions: 2 rows of 4
    state = json.loads((out / "checkpoints" / "step_00000003" / "trainer_state.json")
                       .read_text())
    assert state["samples_seen"] == 3 * 2 * 8


def test_eval_every_calls_the_metrics_registry(toys, tmp_path):
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "2", "--eval-every", "2", "--eval-metric", "psnr",
                      "--eval-n", "8", "--eval-batch-size", "4", "--sample-every", "0")) == 0
    evals = [r for r in _records(out) if "eval" in r]
    assert len(evals) == 1 and evals[0]["step"] == 2
    assert math.isfinite(evals[0]["eval"]["metrics"]["psnr"])
    assert evals[0]["eval"]["protocol"]["step"] == 2


def test_fp16_keeps_one_grad_scaler_per_group(toys, tmp_path):
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "2", "--mixed-precision", "fp16",
                      "--sample-every", "0")) == 0
    scalers = torch.load(out / "checkpoints" / "step_00000002" / "scalers.pt",
                         weights_only=True)
    assert sorted(scalers) == ["discriminator", "generator"]
    assert all(s["scale"] > 0 for s in scalers.values())
    assert main(_args(out, "--max-steps", "3", "--mixed-precision", "fp16", "--resume",
                      "--sample-every", "0")) == 0
    assert _records(out)[-1]["step"] == 3


def test_duration_stops_gracefully_via_ganzoo_cli(toys, tmp_path):
    from ganzoo.cli import main as cli_main

    out = tmp_path / "run"
    code = cli_main(["train", *_args(out, "--duration", "1.5s", "--save-every", "0",
                                     "--sample-every", "0", model="toytrain_ae")])
    assert code == 0
    last = _records(out)[-1]["step"]
    assert ckpt.read_latest(out / "checkpoints").name == ckpt.step_dir_name(last)
    assert (out / "final" / "model.safetensors").is_file()


# -- the non-finite guard ------------------------------------------------------------------------
@pytest.fixture(params=["host-sync", "on-device"])
def guard_path(request, monkeypatch):
    """Both ways the guard skips a step: fused optimizers skipping on the device (the
    default), or a host-side check (optimizers without fused kernels, such as RMSprop)."""
    from ganzoo.training import trainer

    fused = request.param == "on-device"
    monkeypatch.setattr(trainer, "use_fused_optimizers", lambda device: fused)
    return request.param


@pytest.mark.parametrize("fault", ["nan_at", "inf_grad_at"])  # a NaN loss; finite loss, inf grads
def test_nonfinite_step_is_skipped_and_counted(toys, tmp_path, guard_path, fault):
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "3", "--set", f"{fault}=[1]", "--sample-every", "0",
                      "--save-every", "0")) == 0
    recs = _records(out)
    assert [r["nonfinite_total"] for r in recs] == [0, 2, 2]  # both critic steps of step 1
    model = ganzoo.from_pretrained(out / "final")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_consecutive_nonfinite_stops_keeping_last_checkpoint(toys, tmp_path, capsys,
                                                             guard_path):
    out = tmp_path / "run"
    code = main(_args(out, "--max-steps", "10", "--set", "nan_from=2", "--max-nonfinite", "3",
                      "--save-every", "1", "--sample-every", "0"))
    assert code == 1
    assert "consecutive" in capsys.readouterr().err
    assert gc.get_freeze_count() == 0  # the loop's gc.freeze() is undone on errors too
    latest = ckpt.read_latest(out / "checkpoints")
    assert latest.name == "step_00000002"
    files = ckpt.read_checkpoint_files(latest)
    assert files["trainer_state.json"]["step"] == 2
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(latest / "model.safetensors")
               .values() if t.is_floating_point())
    assert not (out / "final").exists()


def test_nonfinite_weights_are_never_saved(toys, tmp_path, caplog):
    """With the guard off (--max-nonfinite 0) a NaN step poisons the weights: the checkpoint
    before it stays `latest`, and neither a checkpoint nor OUT/final is written after it."""
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "3", "--set", "nan_at=[1]", "--max-nonfinite", "0",
                      "--save-every", "1", "--sample-every", "0")) == 0
    assert "checkpoint NOT saved" in caplog.text and "final NOT written" in caplog.text
    assert [s for s, _ in ckpt.list_checkpoints(out / "checkpoints")] == [1]
    assert ckpt.read_latest(out / "checkpoints").name == "step_00000001"
    assert not (out / "final").exists()


# -- every registered family ---------------------------------------------------------------------
_PRESETS = ganzoo.list_models("test_*")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("preset", _PRESETS or [pytest.param(
    None, marks=pytest.mark.skip(reason="no test_* presets are registered yet"))])
def test_smoke_every_preset(preset, tmp_path):
    with torch.device("meta"):
        dataset = ganzoo.build(preset).default_dataset  # the family's embedded data
    out = tmp_path / "run"
    code = main(["--model", preset, "--dataset", dataset, "-o", str(out), "--no-progress",
                 "--max-steps", "2", "--batch-size", "2", "--num-samples", "2",
                 "--sample-every", "2", "--save-every", "2", "--log-every", "1",
                 "--set", "data.size=16"])
    assert code == 0
    assert (out / "samples" / "step_00000002.png").is_file()
    ckpt.read_checkpoint_files(out / "checkpoints" / "step_00000002")
    recs = _records(out)
    assert recs[-1]["nonfinite_total"] == 0
    model = ganzoo.from_pretrained(out / "final")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_trainings_with_different_precisions_in_one_process(toys, tmp_path):
    """Accelerate's process-wide state must not pin the first run's precision."""
    assert main(_args(tmp_path / "a", "--max-steps", "1", "--sample-every", "0",
                      "--mixed-precision", "bf16")) == 0
    assert main(_args(tmp_path / "b", "--max-steps", "1", "--sample-every", "0")) == 0


def test_resume_trains_the_model_its_checkpoint_saved_when_a_default_changed(toys, tmp_path):
    """A run started when a field's default was different (here: hidden=16, its config naming
    no override) resumes with the saved value, not today's default: the model comes from the
    checkpoint's model config under the run's own overrides."""
    out = tmp_path / "run"
    assert main(_args(out, "--max-steps", "1", "--sample-every", "0", "--set", "hidden=16")) == 0
    step = out / "checkpoints" / "step_00000001"
    saved = json.loads((step / "config.json").read_text())
    assert str(saved["model_args"].pop("hidden")) == "16"  # as if 16 had been the default then
    (step / "config.json").write_text(json.dumps(saved))
    assert main(_args(out, "--max-steps", "2", "--sample-every", "0", "--resume")) == 0
    assert json.loads((out / "final" / "config.json").read_text())["config"]["hidden"] == 16
