"""CUT family: generator, projection head, losses, schedule and task API (folder translation:
test_sampling.py)."""


import numpy as np
import pytest
import torch

import ganzoo
from ganzoo.models.cut import (CUT, CUTConfig, ResnetGenerator, encoder_length, palette_loss,
                               rgb_to_lab)

from conftest import group_backward

PRESETS = ["test_cut", "test_fastcut", "test_cut_reference"]


def _batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image_a": torch.rand(n, 3, size, size, generator=g) * 2 - 1,
            "image_b": torch.rand(n, 3, size, size, generator=g) * 2 - 1}


def _step_grads(model, group, batch, step=0):
    """One loss evaluation of ``group`` as the trainer runs it (only that group trainable)."""
    loss, logs = group_backward(model, group, batch, step)
    own = {id(p) for p in model.group_parameters(group)}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    expected = {n for n, p in model.named_parameters() if id(p) in own}
    return loss, logs, with_grad, expected


# -- generator ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet9():
    torch.manual_seed(0)
    return ResnetGenerator(CUTConfig())  # the baseline's ResNet-9 (ngf 64, 9 blocks)


def test_resnet9_output_shape_equals_input(resnet9):
    g = resnet9
    assert sum(type(m).__name__ == "ResnetBlock" for m in g.layers) == 9
    for shape in [(1, 3, 32, 32), (2, 3, 24, 40)]:
        with torch.no_grad():
            y = g(torch.rand(shape) * 2 - 1)
        assert y.shape == shape
        assert y.abs().max() <= 1


@pytest.mark.parametrize("antialias", [True, False])
def test_generator_shape_without_antialiasing(antialias):
    cfg = CUTConfig(resolution=32, ngf=8, n_blocks=2, antialias=antialias,
                    nce_layers=(0, 4, 8))
    y = ResnetGenerator(cfg)(torch.zeros(1, 3, 32, 32))
    assert y.shape == (1, 3, 32, 32)


def test_nce_taps_are_the_reference_layers(resnet9):
    """Layers 0, 4, 8, 12, 16 of the ResNet-9: padded input, the two downsampling convs, the
    1st and 5th residual blocks."""
    g = resnet9
    kinds = [type(g.layers[i]).__name__ for i in (0, 4, 8, 12, 16)]
    assert kinds == ["ReflectionPad2d", "Conv2d", "Conv2d", "ResnetBlock", "ResnetBlock"]
    assert g.layers[16] is [m for m in g.layers if type(m).__name__ == "ResnetBlock"][4]
    with torch.no_grad():
        feats = g.encode(torch.zeros(1, 3, 32, 32), (0, 4, 8, 12, 16))
    assert [tuple(f.shape[1:]) for f in feats] == [(3, 38, 38), (128, 32, 32), (256, 16, 16),
                                                   (256, 8, 8), (256, 8, 8)]
    assert encoder_length(9, True) == g.encoder_length == 21


def test_projector_is_eager_and_sized_from_the_taps():
    with torch.device("meta"):
        model = ganzoo.build("cut")
    ins = [mlp[0].in_features for mlp in model.projector.mlps]
    assert ins == [3, 128, 256, 256, 256]
    assert all(mlp[-1].out_features == 256 for mlp in model.projector.mlps)
    # the projection head is in the generator's optimizer group
    g_params = {id(p) for p in model.group_parameters("generator")}
    assert all(id(p) in g_params for p in model.projector.parameters())


def test_meta_device_construction():
    info = ganzoo.model_info("cut")
    assert info["task"] == "translate"
    assert info["batch_keys"] == ["image_a", "image_b"]
    assert 14e6 < info["parameters"] < 15e6  # G 11.38M + F 0.56M + D 2.76M


def test_test_presets_are_tiny():
    for name in PRESETS:
        m = ganzoo.build(name)
        n = sum(p.numel() for k, p in m.named_parameters() if not k.startswith("ema."))
        assert n < 1_000_000
        assert m.config.resolution <= 32


# -- config ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, field", [
    (dict(nce_layers=(0, 4, 30)), "nce_layers"),
    (dict(nce_layers=(8, 4)), "nce_layers"),
    (dict(resolution=30), "resolution"),
    (dict(diffaugment="color,zoom"), "diffaugment"),
    (dict(nce_temperature=0.0), "nce_temperature"),
    (dict(self_attention=True, attention_block=9), "attention_block"),
])
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CUTConfig(**kwargs)


def test_presets_match_the_issue():
    with torch.device("meta"):
        cut, fast, idt = (ganzoo.build(n).config for n in ("cut", "fastcut", "cut_nce_idt"))
        model = ganzoo.build("cut")
    assert (cut.adv_loss, cut.nce_temperature, cut.num_patches) == ("hinge", 0.07, 256)
    assert cut.nce_layers == (0, 4, 8, 12, 16) and not cut.nce_idt
    assert (cut.identity_warm_weight, cut.identity_final_weight) == (0.1, 0.0)
    assert cut.diffaugment and cut.clip_grad_norm == 10.0 and cut.disc_layers == 3
    assert not cut.disc_spectral_norm and cut.disc_num_scales == 1
    assert (fast.nce_weight, fast.flip_equivariance, fast.nce_idt) == (10.0, True, False)
    assert idt.nce_idt and idt.nce_weight == 1.0
    for spec in model.optimizer_groups().values():
        assert spec.betas == (0.5, 0.999) and spec.clip_grad_norm == 10.0
    assert set(model.optimizer_groups()) == {"discriminator", "generator"}
    assert model.ema_networks == ("generator",)


def test_cut_stays_the_baseline_of_the_summary():
    """The CUT baseline summary: hinge loss, single-scale 70x70 PatchGAN (3 layers, strided),
    no spectral norm."""
    with torch.device("meta"):
        model = ganzoo.build("cut")
    assert type(model._adv).__name__ == "HingeLoss" and model._adv.d_scale == 1.0
    (d,) = model.discriminator.scales
    assert d.receptive_field == 70 and not d.antialias and d.init == "normal"


def test_reference_presets_reproduce_the_official_objective():
    """taesungp/contrastive-unpaired-translation defaults: gan_mode lsgan, netD basic with
    anti-aliased downsampling, init xavier 0.02, no augmentation/clipping/EMA; CUT mode
    nce_idt with lambda_NCE 1, FastCUT lambda_NCE 10 with flip-equivariance. Parameter counts
    are the reference's: G 11,378,179, F 560,384 (256-d MLPs on 3/128/256/256/256 channels),
    D 2,764,737."""
    with torch.device("meta"):
        ref, fast = ganzoo.build("cut_reference"), ganzoo.build("fastcut_reference")
    c = ref.config
    assert (c.adv_loss, c.diffaugment, c.clip_grad_norm, c.ema) == ("lsgan", "", None, False)
    assert c.nce_idt and c.nce_weight == 1.0 and c.identity_warm_weight == 0.0
    assert (fast.config.nce_weight, fast.config.flip_equivariance) == (10.0, True)
    assert not fast.config.nce_idt
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(ref.generator) == 11_378_179 and count(ref.projector) == 560_384
    (d,) = ref.discriminator.scales
    assert count(d) == 2_764_737 and d.antialias and d.receptive_field == 84
    assert (d.init, d.init_gain) == ("xavier", 0.02)
    assert not any(k.startswith("ema.") for k in ref.state_dict())
    for spec in ref.optimizer_groups().values():
        assert (spec.lr, spec.betas, spec.clip_grad_norm) == (2e-4, (0.5, 0.999), None)
    assert ref.default_augment == fast.default_augment == "crop_flip"
    assert ref.config.nce_eps == fast.config.nce_eps == 1e-7  # Normalize in models/networks.py


def test_reference_preset_trains_on_the_reference_data_pipeline():
    """cut_reference's training set gets crop_flip (resize_and_crop + flip) unless the run
    sets data.augment; the baseline preset's gets no augmentation."""
    from ganzoo.training.data import build_dataset

    def varies(model, options):
        ds = build_dataset("shapes_unpaired", {"size": 2, **options}, model=model)
        return not torch.equal(ds[0]["image_a"], ds[0]["image_a"])

    torch.manual_seed(0)
    assert varies(ganzoo.build("test_cut_reference"), {})
    assert not varies(ganzoo.build("test_cut_reference"), {"augment": "none"})
    assert not varies(ganzoo.build("test_cut"), {})


def test_reference_nce_keeps_the_heads_small_start_at_unit_length():
    """The Xavier-0.02 projection head starts with outputs of norm 1e-6 to 1e-3; the reference
    normalises them as x / (|x| + 1e-7), so they stay unit vectors. The baseline's eps 1e-6
    shrinks the smallest by a third, which flattens PatchNCE's logits and changes the head's
    gradients by orders of magnitude (docs/cut.md, "Against the authors' code")."""
    from ganzoo.losses.patchnce import l2_normalize

    torch.manual_seed(0)
    model = ganzoo.build("test_cut_reference")
    c = model.config
    feats = model.generator.encode(_batch()["image_a"], c.nce_layers)
    heads, _ = model.projector(feats, c.num_patches)
    assert min(h.norm(dim=1).min().item() for h in heads) < 1e-4  # the small start
    for h in heads:
        assert l2_normalize(h, eps=c.nce_eps).norm(dim=1).min() > 0.9


def test_reference_losses_on_fixed_inputs():
    """D: (MSE(D(b), 1) + MSE(D(G(a)), 0)) * 0.5; G's adversarial term: MSE(D(G(a)), 1)."""
    torch.manual_seed(0)
    model = ganzoo.build("test_cut_reference")
    batch = _batch()
    d_loss, _ = model.loss("discriminator", batch, 0)
    with torch.no_grad():
        (real,) = model.discriminator(batch["image_b"])
        (fake,) = model.discriminator(model.generator(batch["image_a"]))
    expected = 0.5 * ((real - 1).pow(2).mean() + fake.pow(2).mean())
    assert torch.allclose(d_loss, expected)
    _, logs = model.loss("generator", batch, 0)
    assert torch.allclose(logs["g_adv"], (fake - 1).pow(2).mean())
    assert "nce_idt" in logs and logs["identity_weight"] == 0.0


# -- training ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_identity_nce_option_keeps_gradients_in_their_groups():
    """The presets are covered by test_models_common; this is the nce_idt option."""
    torch.manual_seed(0)
    model = ganzoo.build("test_cut", nce_idt=True)
    batch = _batch()
    for group in model.schedule(0):
        loss, logs, with_grad, expected = _step_grads(model, group, batch)
        assert torch.isfinite(loss)
        assert with_grad == expected, (group, sorted(expected - with_grad)[:5],
                                       sorted(with_grad - expected)[:5])
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in logs.values())
    assert "nce_idt" in logs


def test_identity_weight_schedule():
    model = ganzoo.build("test_cut", identity_warmup_steps=5)
    assert [model.identity_weight(s) for s in (0, 4, 5, 100)] == [0.1, 0.1, 0.0, 0.0]
    batch = _batch()
    torch.manual_seed(0)
    _, before = model.loss("generator", batch, 4)
    torch.manual_seed(0)
    _, after = model.loss("generator", batch, 5)
    assert before["identity_weight"] == 0.1 and "identity" in before
    assert after["identity_weight"] == 0.0 and "identity" not in after
    # the identity term is in the loss during the warm-up (same seed: same patches, same fake)
    assert (before["g_loss"] - after["g_loss"]).item() == pytest.approx(
        0.1 * before["identity"].item(), rel=1e-4, abs=1e-5)


def test_nonfinite_nce_is_flagged_and_returned():
    model = ganzoo.build("test_cut", diffaugment="")
    batch = _batch()
    batch["image_a"][0, 0, 0, 0] = float("nan")
    loss, logs = model.loss("generator", batch, 0)
    assert logs["nce_nonfinite"].item() == 1.0
    assert not torch.isfinite(loss)
    _, ok = model.loss("generator", _batch(), 0)
    assert ok["nce_nonfinite"].item() == 0.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ablation_modules_train():
    torch.manual_seed(0)
    model = ganzoo.build("test_cut", self_attention=True, attention_block=1,
                         channel_attention=True, adain_gates=True, disc_num_scales=2,
                         disc_spectral_norm=True, feature_matching_weight=1.0,
                         palette_weight=1.0, r1_gamma=1.0, disc_layers=2)
    assert len(model.discriminator.scales) == 2
    block = model.generator.layers[13]
    assert block.attention is not None and block.gate is not None
    assert block.channel_attention is not None
    batch = _batch()
    for group in model.schedule(0):
        loss, logs, with_grad, expected = _step_grads(model, group, batch)
        assert torch.isfinite(loss)
        assert with_grad == expected, (group, sorted(expected - with_grad)[:5])
    assert {"feature_matching", "palette"} <= set(logs)


def test_ablations_are_off_by_default():
    c = CUTConfig()
    assert not (c.self_attention or c.channel_attention or c.adain_gates or c.disc_spectral_norm)
    assert c.disc_num_scales == 1
    assert c.feature_matching_weight == c.palette_weight == c.r1_gamma == 0.0


def test_rgb_to_lab_known_colours():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    lab = rgb_to_lab((rgb * 2 - 1)[:, :, None, None])[:, :, 0, 0]
    torch.testing.assert_close(lab, torch.tensor([[100.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                                                  [53.24, 80.09, 67.20]]), atol=0.1, rtol=0)
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert palette_loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    red = torch.tensor([1.0, -1.0, -1.0])[None, :, None, None] + 0.1 * x
    assert palette_loss(x, red).item() > 0.1


# -- task --------------------------------------------------------------------------------------
def test_translate_generate_preview():
    model = ganzoo.build("test_cut").eval()
    batch = _batch(n=3)
    y = model.translate(batch["image_a"])
    assert y.shape == batch["image_a"].shape and y.abs().max() <= 1
    torch.testing.assert_close(y, model.translate(batch["image_a"]))
    out = model.generate(batch, 2)
    assert set(out) == set(CUT.eval_references) == {"translated"}
    assert CUT.eval_references["translated"] == {"domain": "b"}
    torch.testing.assert_close(out["translated"], y[:2])
    torch.testing.assert_close(model.generate({"image": batch["image_a"]}, 3)["translated"], y)
    grid = model.preview(batch, 3)
    assert grid.shape == (6, 3, 32, 32)
    torch.testing.assert_close(grid[:3], batch["image_a"])
    torch.testing.assert_close(grid[3:], y)


def test_translate_uses_ema_weights():
    model = ganzoo.build("test_cut").eval()
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.5)
    x = _batch()["image_a"]
    torch.testing.assert_close(model.translate(x), model.ema["generator"](x).clamp(-1, 1))
    assert not torch.allclose(model.translate(x), model.generator(x).clamp(-1, 1))


# -- YAML run config ---------------------------------------------------------------------------
def _packaged_config():
    from importlib import resources

    import yaml

    text = resources.files("ganzoo").joinpath("configs/cut.yaml").read_text()
    return yaml.safe_load(text)


def test_yaml_config_has_the_baseline_weights_and_builds():
    data = _packaged_config()
    assert data["model"] == "cut"
    args = data["model_args"]
    assert (args["adv_weight"], args["nce_weight"]) == (1.0, 1.0)
    assert (args["identity_warm_weight"], args["identity_final_weight"]) == (0.1, 0.0)
    assert args["r1_gamma"] == args["feature_matching_weight"] == args["palette_weight"] == 0.0
    with torch.device("meta"):
        model = ganzoo.build(data["model"], **args)  # every key is a CUTConfig field
    defaults = CUTConfig()
    assert model.config == defaults  # the file spells out the preset's defaults


def test_reference_yaml_builds_the_reference_preset_and_schedule():
    from importlib import resources

    import yaml

    data = yaml.safe_load(resources.files("ganzoo").joinpath("configs/cut_reference.yaml")
                          .read_text())
    assert (data["lr_schedule"], data["batch_size"]) == ("linear", 1)
    assert data["lr_decay_start"] * 2 == data["max_steps"]  # n_epochs = n_epochs_decay
    with torch.device("meta"):
        model = ganzoo.build(data["model"], **data["model_args"])
        preset = ganzoo.build("cut_reference")
    assert model.config == preset.config  # the file spells out the preset


def test_yaml_config_loads_with_the_trainer(tmp_path):
    from ganzoo.training import config as training
    from importlib import resources

    path = tmp_path / "cut.yaml"
    path.write_text(resources.files("ganzoo").joinpath("configs/cut.yaml").read_text())
    run = training.resolve_run_config(training.load_config_file(path))
    assert run.model == "cut" and run.model_args["identity_warm_weight"] == 0.1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_yaml_config_trains_through_ganzoo_train(tmp_path):
    """Two trainer steps from the packaged config, on the embedded dataset and a tiny model."""
    from importlib import resources

    from ganzoo.train import main

    path = tmp_path / "cut.yaml"
    path.write_text(resources.files("ganzoo").joinpath("configs/cut.yaml").read_text())
    out = tmp_path / "run"
    rc = main(["--config", str(path), "--model", "test_cut", "--dataset", "shapes_unpaired",
               "--set", "data.resolution=32", "--set", "data.size=8",
               "--set", "n_blocks=5",  # the config's nce_layers reach the 5th residual block
               "--max-steps", "2", "--batch-size", "2", "--sample-every", "0",
               "--save-every", "0", "--cpu", "--no-progress", "-o", str(out)])
    assert rc == 0
    saved = sorted(p.name for p in out.rglob("model.safetensors"))
    assert saved, f"no weights saved under {out}"


# -- evaluation --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_evaluate_translated_photos_against_domain_b():
    model = ganzoo.build("test_cut")
    res = ganzoo.evaluate(model, "shapes_unpaired", metrics=["mifid", "fid"], n=8,
                          batch_size=4, feature_extractor="test_random_cnn", cache=False,
                          dataset_kwargs={"resolution": 32, "size": 8})
    m = res["metrics"]
    assert any(k.startswith("mifid") and k.endswith("/translated") for k in m), m
    assert any(k.startswith("fd@") and k.endswith("/translated") for k in m), m
    assert all(np.isfinite(v) for v in m.values())
