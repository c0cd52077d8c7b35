"""Tests of the DDPM family (ganzoo.models.ddpm): schedules, targets, losses, samplers and
diffusers interoperability. Everything runs on the tiny ``test_ddpm*`` presets (CPU)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import ganzoo
from ganzoo.models.ddpm import DDPM, DDPMConfig, config_from_diffusers

T = 1000


def cosine_f(t, s=0.008):
    return math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2


def formula_alphas_cumprod(schedule: str) -> np.ndarray:
    """abar_t for t = 1..T straight from the plan's formulas (float64, no clamping)."""
    if schedule == "cosine":
        return np.array([cosine_f(t) / cosine_f(0) for t in range(1, T + 1)])
    betas = np.linspace(1e-4, 0.02, T)
    return np.cumprod(1 - betas)


def formula_betas(schedule: str) -> np.ndarray:
    if schedule == "cosine":
        return np.array([min(1 - cosine_f(t) / cosine_f(t - 1), 0.999) for t in range(1, T + 1)])
    return np.linspace(1e-4, 0.02, T)


def process_abar(schedule: str) -> torch.Tensor:
    """abar_t of the process actually run: the cumulative product of the (clamped) betas."""
    return torch.tensor(np.cumprod(1 - formula_betas(schedule)), dtype=torch.float64)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return ganzoo.build("test_ddpm")


@pytest.fixture(scope="module")
def tiny_v():
    torch.manual_seed(0)
    return ganzoo.build("test_ddpm_vpred")


# -- schedules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_matches_formula(schedule):
    model = ganzoo.build("test_ddpm", beta_schedule=schedule)
    betas = formula_betas(schedule)
    np.testing.assert_allclose(model.betas.numpy(), betas, rtol=1e-6, atol=0)
    # abar = f(t)/f(0) everywhere the 0.999 clamp has not acted (it acts only at t = T).
    abar = formula_alphas_cumprod(schedule)
    unclamped = betas < 0.999
    assert unclamped[:-1].all()
    np.testing.assert_allclose(model.alphas_cumprod.numpy()[unclamped], abar[unclamped],
                               rtol=2e-5, atol=1e-9)
    np.testing.assert_allclose(model.sqrt_alphas_cumprod.numpy() ** 2,
                               model.alphas_cumprod.numpy(), rtol=1e-5)
    if schedule == "cosine":
        assert model.betas[-1].item() == pytest.approx(0.999)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_diffusers_schedule_names_match_formula(tiny, schedule):
    """The exported schedulers carry a name (linear / squaredcos_cap_v2), not explicit betas:
    their betas must equal the plan's formula to float32 precision."""
    model = ganzoo.build("test_ddpm", beta_schedule=schedule)
    for sampler in ("ddim", "ddpm"):
        sched = model.make_scheduler(sampler)
        expected = torch.tensor(formula_betas(schedule), dtype=torch.float32)
        torch.testing.assert_close(sched.betas, expected, rtol=1e-6, atol=0)
        torch.testing.assert_close(sched.alphas_cumprod, model.alphas_cumprod, rtol=1e-5,
                                   atol=1e-7)


def test_schedule_buffers_not_saved(tiny):
    assert not any(k.endswith(("betas", "alphas_cumprod")) for k in tiny.state_dict())


# -- targets and losses ------------------------------------------------------------------------
def test_v_target_recovers_x0(tiny_v):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1
    noise = torch.randn(8, 3, 32, 32, generator=g)
    t = torch.tensor([0, 1, 10, 250, 500, 750, 998, 999])
    x_t = tiny_v.q_sample(x0, t, noise)
    v = tiny_v.target(x0, noise, t)
    abar = process_abar("cosine")[t]
    a = abar.sqrt().float().view(-1, 1, 1, 1)
    b = (1 - abar).sqrt().float().view(-1, 1, 1, 1)
    torch.testing.assert_close(v, a * noise - b * x0, rtol=1e-4, atol=1e-4)
    # x0 = sqrt(abar) x_t - sqrt(1 - abar) v, since a^2 + b^2 = 1.
    torch.testing.assert_close(a * x_t - b * v, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(tiny_v.predict_x0(x_t, t, v), x0, rtol=1e-4, atol=1e-4)


class ExactTarget(torch.nn.Module):
    """A stand-in U-Net that returns the exact target for ``kind``, computing eps from x_t and
    the known x0 with the formula's abar (independently of the model's buffers)."""

    def __init__(self, x0, schedule, kind):
        super().__init__()
        self.x0, self.kind = x0, kind
        self.abar = process_abar(schedule)

    def forward(self, x_t, t, return_dict=True):
        a = self.abar[t].sqrt().view(-1, 1, 1, 1)
        b = (1 - self.abar[t]).sqrt().view(-1, 1, 1, 1)
        x0 = self.x0.double()
        eps = (x_t.double() - a * x0) / b
        out = {"epsilon": eps, "v_prediction": a * eps - b * x0, "sample": x0}[self.kind]
        return (out.float(),)


@pytest.mark.parametrize("min_snr_gamma", [None, 5.0])
@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_loss_zero_for_exact_target(kind, min_snr_gamma):
    schedule = "cosine" if kind == "v_prediction" else "linear"
    model = ganzoo.build("test_ddpm", prediction_type=kind, beta_schedule=schedule,
                         min_snr_gamma=min_snr_gamma)
    x0 = torch.rand(16, 3, 32, 32) * 2 - 1
    torch.manual_seed(0)
    model.unet = ExactTarget(x0, schedule, kind)
    loss, logs = model.loss("unet", {"image": x0}, 0)
    assert loss.item() < 1e-6, (kind, loss.item())
    assert float(logs["mse"]) < 1e-6
    # The same stand-in answering for another prediction type gives a clearly non-zero loss.
    other = {"epsilon": "sample", "v_prediction": "epsilon", "sample": "v_prediction"}[kind]
    model.unet = ExactTarget(x0, schedule, other)
    assert model.loss("unet", {"image": x0}, 0)[0].item() > 1e-2


def test_min_snr_weights(tiny):
    t = torch.tensor([0, 500, 999])
    snr = tiny.alphas_cumprod[t] / (1 - tiny.alphas_cumprod[t])
    for kind, expected in (("epsilon", snr.clamp(max=5) / snr),
                           ("v_prediction", snr.clamp(max=5) / (snr + 1)),
                           ("sample", snr.clamp(max=5))):
        model = ganzoo.build("test_ddpm", prediction_type=kind, min_snr_gamma=5.0)
        torch.testing.assert_close(model.loss_weight(t), expected)
    assert tiny.loss_weight(t) is None


def test_training_step_reaches_only_unet(tiny_v):
    model = ganzoo.build("test_ddpm_vpred")
    opt = model.optimizer_groups()["unet"].build(model.group_parameters("unet"))
    assert isinstance(opt, torch.optim.AdamW)
    before = [p.detach().clone() for p in model.unet.parameters()]
    loss, logs = model("unet", {"image": torch.rand(4, 3, 32, 32) * 2 - 1}, 0)
    assert torch.isfinite(loss) and set(logs) == {"loss", "mse"}
    loss.backward()
    assert all(p.grad is not None for p in model.unet.parameters())
    assert all(p.grad is None for p in model.ema.parameters())
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.unet.parameters()))


# -- sampling ----------------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_sample_shape_range_determinism(tiny, sampler):
    kw = dict(sampler=sampler, num_inference_steps=5)
    a = tiny.sample(3, torch.Generator().manual_seed(0), **kw)
    b = tiny.sample(3, torch.Generator().manual_seed(0), **kw)
    c = tiny.sample(3, torch.Generator().manual_seed(1), **kw)
    assert a.shape == (3, 3, 32, 32)
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Chunked denoising of the same initial noise gives the same images for DDIM eta = 0.
    if sampler == "ddim":
        d = tiny.sample(3, torch.Generator().manual_seed(0), batch_size=2, **kw)
        torch.testing.assert_close(a, d, rtol=1e-4, atol=1e-4)


def test_ddim_eta0_is_deterministic_given_noise(tiny):
    noise = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    kw = dict(noise=noise, num_inference_steps=4)
    a = tiny.sample(2, torch.Generator().manual_seed(10), eta=0.0, **kw)
    b = tiny.sample(2, torch.Generator().manual_seed(11), eta=0.0, **kw)
    assert torch.equal(a, b)
    # With eta > 0 the generator injects fresh noise at every step, so the outputs differ.
    c = tiny.sample(2, torch.Generator().manual_seed(10), eta=1.0, **kw)
    d = tiny.sample(2, torch.Generator().manual_seed(11), eta=1.0, **kw)
    assert not torch.equal(c, d)
    with pytest.raises(ValueError, match="noise must have shape"):
        tiny.sample(3, noise=noise)


def test_sample_runs_in_eval_mode():
    model = ganzoo.build("test_ddpm", dropout=0.5)
    model.train()
    a = model.sample(2, torch.Generator().manual_seed(0), num_inference_steps=2)
    b = model.sample(2, torch.Generator().manual_seed(0), num_inference_steps=2)
    assert torch.equal(a, b)  # dropout would make these differ
    assert model.ema["unet"].training  # the mode is restored


def test_sample_uses_ema(tiny_v):
    model = ganzoo.build("test_ddpm_vpred")
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    a = model.sample(2, torch.Generator().manual_seed(0), num_inference_steps=3)
    model.use_ema = False
    b = model.sample(2, torch.Generator().manual_seed(0), num_inference_steps=3)
    assert not torch.equal(a, b)


# -- diffusers interoperability ----------------------------------------------------------------
def _perturbed(name):
    """A model whose EMA and live U-Nets differ, so that exports show which one they carry."""
    torch.manual_seed(0)
    model = ganzoo.build(name)
    with torch.no_grad():
        for p in model.ema["unet"].parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("name,pipeline", [("test_ddpm", "ddim"), ("test_ddpm_vpred", "ddpm")])
def test_export_to_diffusers_identical_outputs(tmp_path, name, pipeline):
    """``ganzoo export RUN --to diffusers OUT`` on a trainer run's layout (weights in final/);
    diffusers' generic loader picks the pipeline class from the folder."""
    from diffusers import DDIMPipeline, DDPMPipeline, DiffusionPipeline

    from ganzoo.cli import main

    model = _perturbed(name)
    model.save_pretrained(tmp_path / "run" / "final")
    out = tmp_path / "diffusers"
    assert main(["export", str(tmp_path / "run"), "--to", "diffusers", str(out),
                 "--pipeline", pipeline]) == 0
    pipe = DiffusionPipeline.from_pretrained(out)
    assert type(pipe) is (DDIMPipeline if pipeline == "ddim" else DDPMPipeline)
    pipe.set_progress_bar_config(disable=True)
    for k, v in model.ema["unet"].state_dict().items():
        assert torch.equal(pipe.unet.state_dict()[k], v), k
    kw = dict(num_inference_steps=4)
    theirs = pipe(batch_size=2, generator=torch.Generator().manual_seed(5), output_type="pt",
                  **kw).images
    ours = model.sample(2, torch.Generator().manual_seed(5), sampler=pipeline, **kw)
    torch.testing.assert_close(ours * 0.5 + 0.5, theirs, rtol=0, atol=1e-6)
    live = ganzoo.build(name)
    live.load_state_dict(model.state_dict())
    live.use_ema = False
    assert not torch.allclose(live.sample(2, torch.Generator().manual_seed(5), sampler=pipeline,
                                          **kw) * 0.5 + 0.5, theirs, atol=1e-3)


def test_export_refusals_and_the_trainer_flag(tmp_path, capsys):
    from diffusers import DiffusionPipeline

    from ganzoo.cli import main
    from ganzoo.train import main as train

    run = tmp_path / "run"
    assert train(["--model", "test_ddpm", "--max-steps", "1", "--batch-size", "2",
                  "--sample-every", "0", "--export", "diffusers", "--no-progress",
                  "-o", str(run)]) == 0
    pipe = DiffusionPipeline.from_pretrained(run / "final-diffusers")
    final = ganzoo.from_pretrained(run)
    for k, v in final.ema["unet"].state_dict().items():  # the EMA weights of final/
        assert torch.equal(pipe.unet.state_dict()[k], v), k
    capsys.readouterr()
    out = str(tmp_path / "out")
    for argv, needle in [([str(run), "--to", "diffusers", str(run / "final-diffusers")],
                          "already exists; pass overwrite"),
                         (["test_ddpm", "--to", "diffusers", out], "bare preset"),
                         (["test_dcgan.x", "--to", "diffusers", out], "no pretrained"),
                         ([str(run), "--to", "onnx", out], "invalid choice")]:
        with pytest.raises(SystemExit) if "onnx" in argv else contextlib.nullcontext():
            assert main(["export", *argv]) == 2
        assert needle in capsys.readouterr().err
    ganzoo.build("test_dcgan").save_pretrained(tmp_path / "gan")
    assert main(["export", str(tmp_path / "gan"), "--to", "diffusers", out]) == 2
    assert "needs a DDPM-family model (a diffusers UNet2DModel); 'test_dcgan' is a dcgan " \
        "model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert train(["--model", "test_dcgan", "--max-steps", "1", "--export", "diffusers",
                  "--no-progress", "-o", str(tmp_path / "gan_run")]) == 2
    assert "needs a DDPM-family model" in capsys.readouterr().err


def test_import_from_diffusers(tmp_path):
    model = _perturbed("test_ddpm_vpred")
    model.to_diffusers(tmp_path)
    imported = DDPM.from_diffusers(tmp_path)
    # U-Net and scheduler settings come back; the loss weighting and the default number of
    # DDIM steps are not part of a diffusers folder.
    assert imported.config.min_snr_gamma is None and imported.config.num_inference_steps == 100
    assert dataclasses.replace(imported.config, min_snr_gamma=5.0, num_inference_steps=10) == \
        model.config
    assert imported.preset == "ddpm"
    for k, v in model.ema["unet"].state_dict().items():
        assert torch.equal(imported.unet.state_dict()[k], v)
        assert torch.equal(imported.ema["unet"].state_dict()[k], v)
    g = torch.Generator
    torch.testing.assert_close(imported.sample(2, g().manual_seed(0), num_inference_steps=4),
                               model.sample(2, g().manual_seed(0), num_inference_steps=4))
    # Into a named preset: the U-Net folder alone fits test_ddpm_vpred (and test_ddpm).
    assert DDPM.from_diffusers(tmp_path / "unet", preset="test_ddpm_vpred").preset == \
        "test_ddpm_vpred"
    with pytest.raises(ValueError, match="base_channels: checkpoint 16 vs preset 32"):
        DDPM.from_diffusers(tmp_path / "unet", preset="test_ddpm", base_channels=32)
    with pytest.raises(ValueError, match="prediction_type"):
        DDPM.from_diffusers(tmp_path, preset="test_ddpm")  # its scheduler is v-prediction
    with pytest.raises(ValueError, match="cannot load a diffusers UNet2DModel"):
        DDPM.from_diffusers(tmp_path / "missing")


def test_import_rejects_unsupported_unet():
    from diffusers import UNet2DModel

    unet = UNet2DModel(sample_size=16, block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       num_class_embeds=10, layers_per_block=1)
    with pytest.raises(ValueError, match="num_class_embeds=10"):
        DDPM.from_diffusers(unet)
    cfg = dict(unet.config)
    cfg.update(num_class_embeds=None, up_block_types=["UpBlock2D", "AttnUpBlock2D"])
    with pytest.raises(ValueError, match="does not mirror"):
        config_from_diffusers(cfg)
    cfg.update(up_block_types=["AttnUpBlock2D", "UpBlock2D"])
    derived = config_from_diffusers(cfg)
    assert derived["attention_resolutions"] == (8,) and derived["channel_mult"] == (1, 2)


# -- configs and presets -----------------------------------------------------------------------
def test_config_validation():
    with pytest.raises(ValueError, match="prediction_type"):
        DDPMConfig(prediction_type="x0")
    with pytest.raises(ValueError, match="attention_resolutions"):
        DDPMConfig(resolution=64, attention_resolutions=(12,))
    with pytest.raises(ValueError, match="norm_num_groups"):
        DDPMConfig(base_channels=20)
    with pytest.raises(ValueError, match="beta_schedule"):
        ganzoo.build("test_ddpm", beta_schedule="quadratic")
    with pytest.raises(ValueError, match="num_inference_steps"):
        ganzoo.build("test_ddpm", num_inference_steps=2000)


PRESETS = [n for n in ganzoo.list_models("*ddpm*")]


def test_preset_names():
    expected = {f"ddpm{v}{r}" for v in ("", "_cosine", "_vpred", "_wide")
                for r in ("", "_32", "_128")} | {"test_ddpm", "test_ddpm_vpred"}
    assert set(PRESETS) == expected


@pytest.mark.parametrize("name", PRESETS)
def test_preset_on_meta_attention_placement(name):
    with torch.device("meta"):
        model = ganzoo.build(name)
    c = model.config
    assert model.unet.config.sample_size == c.resolution
    sizes = c.feature_sizes
    for block, size in zip(model.unet.down_blocks, sizes):
        assert hasattr(block, "attentions") == (size in c.attention_resolutions), (name, size)
    for block, size in zip(model.unet.up_blocks, reversed(sizes)):
        assert hasattr(block, "attentions") == (size in c.attention_resolutions), (name, size)
    assert tuple(model.unet.config.block_out_channels) == tuple(
        c.base_channels * m for m in c.channel_mult)
    if name.startswith("test_"):
        assert c.resolution <= 32
        assert sum(p.numel() for p in model.unet.parameters()) < 1_000_000
    else:
        assert c.base_channels == (192 if "wide" in name else 128)
        assert c.resolution == (int(name.rsplit("_", 1)[1]) if name[-1].isdigit() else 64)
        assert set(c.attention_resolutions) >= {16, 8}
        variant = name.split("_")[1] if "_" in name else ""
        plain = variant in ("", "32", "128")
        assert c.beta_schedule == ("linear" if plain else "cosine")
        assert c.prediction_type == ("epsilon" if plain or variant == "cosine" else "v_prediction")


def test_module_import_does_not_import_diffusers():
    code = ("import sys, ganzoo, ganzoo.models.ddpm; "
            "assert 'diffusers' not in sys.modules, 'diffusers imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
