"""GeneGAN family: shapes, SwitchableBN, block-conv, losses, schedule, transfer API, EXP options."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import ganzoo
from ganzoo.models.genegan import BlockConv2d, GeneGAN, GeneGANConfig, SwitchableBN

from conftest import group_backward

TINY = ["test_genegan", "test_genegan_multires"]

# Option sets of the queued experiments, on the tiny multires preset.
EXPERIMENTS = {
    "exp00": {},
    "exp01_object": {"obj_blockconv": True},
    "exp01_both": {"obj_blockconv": True, "blockconv_subspace": "both"},
    "exp02": {"multiscale_outputs": True},
    "exp02_critics": {"multiscale_outputs": True, "multiscale_critics": True},
    "exp03_random": {"multi_res_mode": "random"},
    "exp04_gn": {"norm": "group_norm"},
    "exp05_s2": {"scale_weighting": "s2"},
    "exp05_inv_s2": {"scale_weighting": "inv_s2"},
}


def _batch(res: int, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"image_with": torch.rand(n, 3, res, res, generator=g) * 2 - 1,
            "image_without": torch.rand(n, 3, res, res, generator=g) * 2 - 1}


def _build(name: str = "test_genegan_multires", **kw) -> GeneGAN:
    torch.manual_seed(0)
    return ganzoo.build(name, **kw)


def _group_step(model: GeneGAN, group: str, batch, step: int = 1):
    """One optimizer step the way the trainer does it: only ``group`` requires grad."""
    loss, logs = group_backward(model, group, batch, step)
    opt = model.optimizer_groups()[group].build(model.group_parameters(group))
    opt.step()
    model.after_step(group, step)
    return loss, logs


# -- shapes -------------------------------------------------------------------------------
@pytest.mark.parametrize("res,bottleneck", [(64, 16), (96, 12), (128, 16)])
def test_multires_shapes_at_each_resolution(res, bottleneck):
    model = _build("genegan_multires", base_channels=8).eval()
    x = torch.rand(2, 3, res, res) * 2 - 1
    bg, obj = model.splitter(x)
    assert bg.shape == (2, 24, bottleneck, bottleneck)
    assert obj.shape == (2, 8, bottleneck, bottleneck)  # last quarter of 4b = 32 channels
    assert model.joiner(bg, obj, res).shape == (2, 3, res, res)
    assert model.critic_with(x).shape == (2,)
    a0, bu = model.transfer(x, x.flip(0))
    assert a0.shape == bu.shape == (2, 3, res, res)


@pytest.mark.parametrize("name,res,bottleneck", [("genegan", 64, 8), ("genegan_128", 128, 8)])
def test_single_resolution_shapes(name, res, bottleneck):
    model = _build(name, base_channels=8)
    bg, obj = model.splitter(torch.zeros(2, 3, res, res))
    assert bg.shape[-1] == obj.shape[-1] == bottleneck
    assert obj.shape[1] == model.config.bottleneck_channels // 4
    assert model.joiner(bg, obj, res).shape == (2, 3, res, res)
    with pytest.raises(ValueError, match="splitter takes"):
        model.splitter(torch.zeros(2, 3, res // 2, res // 2))


def test_official_widths():
    """genegan at 64 px is the official network: 8x8x512 code, 128 object channels."""
    with torch.device("meta"):
        model = ganzoo.build("genegan")
    assert [b.conv.out_channels for b in model.splitter.blocks] == [128, 256, 512]
    assert model.splitter.n_object == 128
    assert [b.conv.out_channels for b in model.joiner.blocks] == [512, 256]
    assert [b.conv.out_channels for b in model.critic_with.blocks] == [128, 256, 512, 512]
    assert model.optimizer_groups()["generator"].optimizer == "rmsprop"
    assert model.optimizer_groups()["critic"].alpha == 0.8


def test_tiny_presets_are_tiny():
    for name in TINY:
        info = ganzoo.model_info(name)
        assert info["parameters"] < 1_000_000
        assert info["task"] == "transfer"
        assert max(info["config"]["resolutions"]) <= 32


# -- SwitchableBN ---------------------------------------------------------------------------
def test_switchable_bn_keeps_independent_statistics():
    model = _build("genegan_multires", base_channels=8).train()
    bns = [m for m in model.splitter.modules() if isinstance(m, SwitchableBN)]
    assert [sorted(bn.bns, key=int) for bn in bns] == [["64", "96", "128"]] * 2 + [["96", "128"]]
    before = {r: [bn.bns[r].running_mean.clone() for bn in bns if r in bn.bns]
              for r in ("64", "96", "128")}
    model.splitter(torch.rand(2, 3, 64, 64) * 2 - 1)
    for r in ("96", "128"):
        for bn, old in zip(bns, before[r]):
            assert torch.equal(bn.bns[r].running_mean, old)
    for bn, old in zip(bns, before["64"]):
        assert not torch.equal(bn.bns["64"].running_mean, old)
    # separate affine parameters as well
    assert bns[0].bns["64"].weight is not bns[0].bns["128"].weight


def test_switchable_bn_unknown_resolution():
    bn = SwitchableBN(4, (16, 32))
    with pytest.raises(ValueError, match="statistics for"):
        bn(torch.zeros(2, 4, 3, 3), 24)


# -- block-conv -----------------------------------------------------------------------------
def test_blockconv_distinct_kernels_per_block():
    torch.manual_seed(0)
    conv = BlockConv2d(3, 5, grid=2, kernel_size=3)
    assert conv.weight.shape == (4, 5, 3, 3, 3)
    assert not torch.allclose(conv.weight[0], conv.weight[1])
    x = torch.randn(2, 3, 8, 8)
    out = conv(x)
    for k in range(4):  # block k is conv2d(x, W_k) on its 4x4 tile, context across the edge
        i, j = divmod(k, 2)
        ref = F.conv2d(x, conv.weight[k], padding=1)
        tile = (slice(None), slice(None), slice(4 * i, 4 * i + 4), slice(4 * j, 4 * j + 4))
        torch.testing.assert_close(out[tile], ref[tile], atol=1e-5, rtol=1e-5)
        other = F.conv2d(x, conv.weight[(k + 1) % 4], padding=1)
        assert not torch.allclose(out[tile], other[tile], atol=1e-3)


def test_blockconv_equals_plain_conv_when_kernels_are_shared():
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(6, 6, 3, padding=1, bias=False)
    block = BlockConv2d(6, 6, grid=3, kernel_size=3)
    with torch.no_grad():
        block.weight.copy_(plain.weight.expand_as(block.weight))
    x = torch.randn(2, 6, 12, 12)
    torch.testing.assert_close(block(x), plain(x), atol=1e-5, rtol=1e-5)


def test_blockconv_grids_follow_the_bottleneck():
    model = _build("genegan_multires", base_channels=8, obj_blockconv=True)
    convs = model.splitter.object_blockconv.convs
    assert {k: c.grid for k, c in convs.items()} == {"12": 3, "16": 4}
    assert model.splitter.background_blockconv is None
    both = _build("genegan_multires", base_channels=8, obj_blockconv=True,
                  blockconv_subspace="both")
    assert both.splitter.background_blockconv is not None
    with pytest.raises(ValueError, match="obj_block_size"):
        GeneGANConfig(arch="multires", resolutions=(64, 96, 128), obj_blockconv=True,
                      obj_block_size=5)


# -- losses, steps, schedule ----------------------------------------------------------------
@pytest.mark.parametrize("options", EXPERIMENTS.values(), ids=EXPERIMENTS.keys())
def test_every_loss_is_finite_and_gradients_stay_in_group(options):
    model = _build(**options).train()
    batch = _batch(32)
    for group in ("critic", "generator"):
        own = {id(p) for p in model.group_parameters(group)}
        loss, logs = _group_step(model, group, batch)
        assert torch.isfinite(loss)
        assert logs and all(torch.isfinite(torch.as_tensor(v)) for v in logs.values())
        for name, p in model.named_parameters():
            if id(p) not in own:
                assert p.grad is None, f"{group} step reached {name}"
        reached = [p.grad is not None for p in model.group_parameters(group)]
        if options.get("multi_res_mode") != "random":  # random trains one resolution's BN
            assert all(reached), group
        else:
            assert any(reached)


def test_single_resolution_preset_step():
    model = _build("test_genegan").train()
    for group in ("critic", "generator"):
        loss, _ = _group_step(model, group, _batch(32))
        assert torch.isfinite(loss)


def test_critic_weights_within_clip_range_after_a_step():
    model = _build(lr=0.5).train()  # a big step pushes weights past the clip value
    own = model.group_parameters("critic")
    loss, _ = model.loss("critic", _batch(32), 1)
    loss.backward()
    model.optimizer_groups()["critic"].build(own).step()
    assert max(p.abs().max().item() for p in own) > 0.01
    model.after_step("critic", 1)
    assert max(p.abs().max().item() for p in own) <= 0.01


def test_generator_step_does_not_clip_generator():
    model = _build().train()
    big = next(model.joiner.parameters())
    with torch.no_grad():
        big.fill_(0.5)
    model.after_step("generator", 1)
    model.after_step("critic", 1)
    assert big.abs().max().item() == 0.5


def test_random_mode_touches_one_resolution_per_iteration():
    model = _build(multi_res_mode="random").train()
    bns = [m for m in model.splitter.modules() if isinstance(m, SwitchableBN)]
    seen = set()
    for step in range(1, 9):
        before = {r: bns[0].bns[r].running_mean.clone() for r in ("16", "24", "32")}
        _, logs = model.loss("generator", _batch(32, seed=step), step)
        touched = {r for r in before if not torch.equal(bns[0].bns[r].running_mean, before[r])}
        assert touched == {str(int(logs["resolution"]))}
        assert set(model.iteration_resolutions(step)) == {int(logs["resolution"])}
        seen |= touched
    assert len(seen) > 1  # the draw varies from step to step ...
    other = _build(multi_res_mode="random")
    assert [list(other.iteration_resolutions(s)) for s in range(8)] == \
           [list(model.iteration_resolutions(s)) for s in range(8)]  # ... but reproducibly


def test_all_mode_touches_every_resolution():
    model = _build().train()
    bn = next(m for m in model.splitter.modules() if isinstance(m, SwitchableBN))
    before = {r: bn.bns[r].running_mean.clone() for r in bn.bns}
    model.loss("generator", _batch(32), 1)
    assert all(not torch.equal(bn.bns[r].running_mean, before[r]) for r in before)


def test_critic_step_leaves_generator_statistics_alone():
    model = _build().train()
    state = {k: v.clone() for k, v in model.splitter.state_dict().items() if "running" in k}
    model.loss("critic", _batch(32), 1)
    for k, v in model.splitter.state_dict().items():
        if "running" in k:
            assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("name", TINY)
def test_critic_step_updates_generator_statistics_the_official_way(name):
    # Prinsphield/GeneGAN model.py builds d_opt under control_dependencies(UPDATE_OPS): a
    # critic step moves the splitter's and joiner's running statistics too.
    model = _build(name, generator_bn_update="all_steps").train()
    res = model.config.resolutions[-1]
    nets = (model.splitter, model.joiner)
    before = {(i, k): v.clone() for i, net in enumerate(nets)
              for k, v in net.state_dict().items() if "running_mean" in k}
    model.loss("critic", _batch(res), 1)
    after = {(i, k): v for i, net in enumerate(nets)
             for k, v in net.state_dict().items() if "running_mean" in k}
    moved = {key for key in before if not torch.equal(after[key], before[key])}
    assert {i for i, _ in moved} == {0, 1}
    assert moved == set(before)  # multi_res_mode "all": every resolution's statistics ran


def _only(**weights):
    base = dict(cycle_weight=0.0, nulling_weight=0.0, parallelogram_weight=0.0,
                adversarial_weight=0.0, weight_decay=0.0)
    return {**base, **weights}


def test_parallelogram_loss_matches_its_formula():
    model = _build("test_genegan", **_only(parallelogram_weight=0.01)).train()
    batch = _batch(32)
    loss, _ = model.loss("generator", batch, 1)
    au, b0 = batch["image_with"], batch["image_without"]
    a, u = model.splitter(au)
    b, _ = model.splitter(b0)
    a0, bu = model.joiner(a, torch.zeros_like(u), 32), model.joiner(b, u, 32)
    # lambda = 0.01 on 0..255 pixels, as in the official code
    expected = 0.01 * ((au + b0 - a0 - bu) * 127.5).abs().mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_nulling_loss_is_mean_abs_of_epsilon():
    model = _build("test_genegan", **_only(nulling_weight=1.0)).train()
    batch = _batch(32)
    loss, logs = model.loss("generator", batch, 1)
    _, eps = model.splitter(batch["image_without"])
    torch.testing.assert_close(loss, eps.abs().mean())
    torch.testing.assert_close(logs["nulling@32"], eps.abs().mean())
    loss.backward()
    assert all(p.grad is None or not p.grad.any() for p in model.joiner.parameters())
    assert any(p.grad is not None and p.grad.any() for p in model.splitter.parameters())


def test_cycle_loss_is_l1_on_unit_pixels():
    model = _build("test_genegan", **_only(cycle_weight=1.0)).train()
    batch = _batch(32)
    loss, _ = model.loss("generator", batch, 1)
    au, b0 = batch["image_with"], batch["image_without"]
    a, u = model.splitter(au)
    b, e = model.splitter(b0)
    au_hat, b0_hat = model.joiner(a, u, 32), model.joiner(b, torch.zeros_like(e), 32)
    expected = ((au - au_hat) / 2).abs().mean() + ((b0 - b0_hat) / 2).abs().mean()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)


def test_scale_weighting():
    equal = _build().scale_weights()
    s2 = _build(scale_weighting="s2").scale_weights()
    inv = _build(scale_weighting="inv_s2").scale_weights()
    assert equal == pytest.approx({16: 1 / 3, 24: 1 / 3, 32: 1 / 3})
    assert s2[32] / s2[16] == pytest.approx(4.0) and sum(s2.values()) == pytest.approx(1.0)
    assert inv[16] / inv[32] == pytest.approx(4.0)
    random_mode = _build(multi_res_mode="random", scale_weighting="s2")
    (r, w), = random_mode.iteration_resolutions(3).items()
    assert w == pytest.approx(3 * s2[r])  # unbiased estimate of the weighted average


def test_schedule_bursts_like_the_official_code():
    model = _build("genegan_multires", base_channels=8)
    assert model.schedule(0) == ["critic"] * 100 + ["generator"]
    assert model.schedule(500) == ["critic"] * 100 + ["generator"]
    assert model.schedule(1) == ["critic", "generator"]
    assert _build(critic_burst_every=0).schedule(0) == ["critic", "generator"]


# -- EXP02 / EXP04 --------------------------------------------------------------------------
def test_multiscale_outputs_heads_start_as_identity():
    model = _build(multiscale_outputs=True).eval()
    bg, obj = model.splitter(torch.rand(2, 3, 32, 32) * 2 - 1)
    outs = model.joiner.multiscale(bg, obj)
    assert {s: o.shape[-1] for s, o in outs.items()} == {16: 16, 24: 24, 32: 32}
    logits = model.joiner.logits(bg, obj, 32)
    ref = torch.tanh(F.interpolate(logits, size=(16, 16), mode="bilinear", antialias=True))
    torch.testing.assert_close(outs[16], ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="splitter takes"):
        model.splitter(torch.zeros(2, 3, 16, 16))  # 128-in: only the largest input
    a0, bu = model.transfer(torch.zeros(2, 3, 16, 16), torch.zeros(2, 3, 16, 16))
    assert a0.shape[-1] == 16  # input resized to 32, output from the 16 px head
    assert not model.scale_critics
    assert set(_build(multiscale_outputs=True, multiscale_critics=True).scale_critics) == \
           {"with_16", "without_16", "with_24", "without_24"}


def test_group_norm_replaces_batch_norm():
    model = _build(norm="group_norm")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.critic_with.modules())
    assert _build("genegan_multires", norm="group_norm", base_channels=32).splitter \
        .blocks[1].norm.num_groups == 32
    with pytest.raises(ValueError, match="norm_groups"):
        GeneGANConfig(arch="multires", resolutions=(64, 96, 128), norm="group_norm",
                      base_channels=8)


@pytest.mark.parametrize("bad,match", [
    ({"resolutions": (64, 96)}, "arch 'genegan'"),
    ({"arch": "multires", "resolutions": (128, 64)}, "ascending"),
    ({"multiscale_outputs": True}, "multiscale_outputs"),
    ({"arch": "multires", "resolutions": (64, 128), "multiscale_critics": True},
     "multiscale_critics"),
    ({"object_ratio": 1.0}, "object_ratio"),
    ({"init_vqvae_map": "m.json"}, "init_vqvae_ckpt"),
])
def test_config_errors_name_the_field(bad, match):
    with pytest.raises(ValueError, match=match):
        GeneGANConfig(**bad)


# -- transfer API ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_transfer_api(name):
    model = _build(name).eval()
    batch = _batch(32)
    au, b0 = batch["image_with"], batch["image_without"]
    a0, bu = model.transfer(au, b0)
    assert a0.shape == bu.shape == au.shape
    assert a0.abs().max() <= 1 and bu.abs().max() <= 1
    a0_again, bu_again = model.transfer(au, b0)
    assert torch.equal(a0, a0_again) and torch.equal(bu, bu_again)
    # swap between any two images: the second output is Bu
    x_new, y_new = model.swap(au, b0)
    torch.testing.assert_close(y_new, bu)
    assert x_new.shape == au.shape
    # attribute strength: 0 removes it (= join(B, 0)), 1 is Bu
    steps = model.interpolate(b0, au, [0.0, 0.5, 1.0])
    assert steps.shape == (3, *b0.shape)
    torch.testing.assert_close(steps[2], bu)
    _, bu_zero = model.transfer(au, b0, strength=0.0)
    torch.testing.assert_close(steps[0], bu_zero)
    assert not torch.allclose(steps[0], steps[2])
    # evaluation outputs and preview rows
    out = model.generate(batch, 3)
    assert set(out) == set(model.eval_references) == {"bu", "a0"}
    torch.testing.assert_close(out["bu"], bu[:3])
    grid = model.preview(batch, 2)
    assert grid.shape == (8, 3, 32, 32)
    torch.testing.assert_close(grid[:2], au[:2])
    torch.testing.assert_close(grid[6:], bu[:2])


def test_transfer_resizes_unsupported_inputs():
    model = _build().eval()
    a0, bu = model.transfer(torch.zeros(2, 3, 40, 40), torch.zeros(2, 3, 40, 40))
    assert a0.shape[-1] == 32  # the largest resolution
    a0, _ = model.transfer(torch.zeros(2, 3, 40, 40), torch.zeros(2, 3, 40, 40), resolution=24)
    assert a0.shape[-1] == 24
    with pytest.raises(ValueError, match="resolution must be one of"):
        model.transfer(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), resolution=20)


def test_save_load_round_trip(tmp_path):
    model = _build(obj_blockconv=True).eval()
    model.save_pretrained(tmp_path)
    loaded = ganzoo.from_pretrained(tmp_path).eval()
    batch = _batch(24)
    for x, y in zip(model.transfer(batch["image_with"], batch["image_without"]),
                    loaded.transfer(batch["image_with"], batch["image_without"])):
        assert torch.equal(x, y)


# -- EXP06: VQ-VAE warm start ---------------------------------------------------------------
def test_vqvae_init_from_safetensors_and_mapping(tmp_path):
    from safetensors.torch import save_file

    src = _build()
    target = src.splitter.blocks[1].conv.weight
    ckpt = {"encoder.down.1.weight": torch.full_like(target, 0.123),
            "quantizer.codebook": torch.zeros(16, 8)}
    save_file(ckpt, tmp_path / "vq.safetensors")
    (tmp_path / "map.json").write_text(json.dumps(
        {"encoder.down.1.weight": "splitter.blocks.1.conv.weight"}))
    model = _build(init_vqvae_ckpt=str(tmp_path / "vq.safetensors"),
                   init_vqvae_map=str(tmp_path / "map.json"))
    assert torch.all(model.splitter.blocks[1].conv.weight == 0.123)
    assert model.vqvae_init_report["ignored"] == ["quantizer.codebook"]
    assert not torch.all(model.splitter.blocks[2].conv.weight == 0.123)


def test_vqvae_init_from_torch_state_dict_by_name(tmp_path):
    src = _build()
    weight = torch.full_like(src.joiner.to_rgb.weight, -0.05)
    torch.save({"state_dict": {"joiner.to_rgb.weight": weight}}, tmp_path / "vq.pt")
    model = _build(init_vqvae_ckpt=str(tmp_path / "vq.pt"))
    assert torch.equal(model.joiner.to_rgb.weight, weight)
    assert model.vqvae_init_report["loaded"] == ["joiner.to_rgb.weight"]


def test_vqvae_init_shape_mismatch_lists_every_key(tmp_path):
    torch.save({"enc.a": torch.zeros(3, 3), "enc.b": torch.zeros(5), "enc.ok": torch.zeros(1)},
               tmp_path / "vq.pt")
    (tmp_path / "map.json").write_text(json.dumps({
        "enc.a": "splitter.blocks.0.conv.weight", "enc.b": "joiner.to_rgb.bias"}))
    with pytest.raises(ValueError, match="shape mismatches") as err:
        _build(init_vqvae_ckpt=str(tmp_path / "vq.pt"), init_vqvae_map=str(tmp_path / "map.json"))
    assert "enc.a (3, 3) -> splitter.blocks.0.conv.weight" in str(err.value)
    assert "enc.b (5,) -> joiner.to_rgb.bias (3,)" in str(err.value)
    with pytest.raises(ValueError, match="init_vqvae_map"):  # no name, no shape fits
        _build(init_vqvae_ckpt=str(tmp_path / "vq.pt"), init_vqvae_shape_match=False)
    with pytest.raises(FileNotFoundError):
        _build(init_vqvae_ckpt=str(tmp_path / "missing.pt"))


def test_vqvae_map_in_the_reference_direction(tmp_path):
    """{model key: checkpoint key}, as the reference implementation writes its mapping."""
    src = _build()
    target = src.joiner.to_rgb.weight
    torch.save({"decoder.out.weight": torch.full_like(target, 0.7)}, tmp_path / "vq.pt")
    (tmp_path / "map.json").write_text(json.dumps({"joiner.to_rgb.weight": "decoder.out.weight"}))
    model = _build(init_vqvae_ckpt=str(tmp_path / "vq.pt"), init_vqvae_map=str(tmp_path /
                                                                              "map.json"))
    assert torch.all(model.joiner.to_rgb.weight == 0.7)
    assert model.vqvae_init_report["by_shape"] == []


def test_vqvae_unmapped_tensors_are_matched_by_shape_in_order(tmp_path, caplog):
    src = _build()
    own = [(k, v) for k, v in src.state_dict().items() if k.startswith(("splitter.", "joiner."))]
    shapes = [v.shape for _, v in own]
    first = next((k, v) for k, v in own if shapes.count(v.shape) >= 2)
    second = next((k, v) for k, v in own if v.shape == first[1].shape and k != first[0])
    ckpt = {"enc.conv_in.weight": torch.full_like(first[1], 0.25),
            "enc.conv_next.weight": torch.full_like(first[1], -0.25),
            "quantizer.codebook": torch.zeros(7, 13)}
    torch.save(ckpt, tmp_path / "vq.pt")
    with caplog.at_level("WARNING", logger="ganzoo.warmstart"):
        model = _build(init_vqvae_ckpt=str(tmp_path / "vq.pt"))
    report = model.vqvae_init_report
    assert report["by_shape"] == [("enc.conv_in.weight", first[0]),
                                  ("enc.conv_next.weight", second[0])]
    assert report["ignored"] == ["quantizer.codebook"]
    assert torch.all(model.state_dict()[first[0]] == 0.25)
    assert torch.all(model.state_dict()[second[0]] == -0.25)
    assert "matched by shape only" in caplog.text


def test_meta_construction_skips_file_io(tmp_path):
    with torch.device("meta"):
        model = ganzoo.build("test_genegan_multires",
                             init_vqvae_ckpt=str(tmp_path / "not_there.pt"))
    assert model.device.type == "meta"


# -- a few training iterations on the embedded dataset --------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_few_iterations_on_shapes_attr(name):
    dataset = ganzoo.build_dataset("shapes_attr", resolution=32, size=16)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    model = _build(name).train()
    opts = {g: spec.build(model.group_parameters(g))
            for g, spec in model.optimizer_groups().items()}
    for step, batch in enumerate(loader):
        for group in model.schedule(step):
            loss, _ = group_backward(model, group, batch, step)
            assert torch.isfinite(loss)
            opts[group].step()
            model.after_step(group, step)
    assert all(p.abs().max() <= model.config.clip_value
               for p in model.group_parameters("critic"))
    model.eval()
    out = model.generate(next(iter(loader)), 4)
    assert all(torch.isfinite(v).all() for v in out.values())
