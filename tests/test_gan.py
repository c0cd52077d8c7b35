"""GAN track presets (dcgan, dcgan_upsample, wgan_gp, wgan_gp_sn_attn and their 128 px and
tiny test_* variants): shapes, configs, the training contract, spectral norm, latent tools."""

from __future__ import annotations

import pytest
import torch

import ganzoo
from ganzoo.latent import LatentGenerator, interpolate, interpolation_grid, lerp, slerp
from ganzoo.models.dcgan import DCGANConfig
from ganzoo.models.wgan_gp import WGANGPConfig

FULL = ["dcgan", "dcgan_upsample", "dcgan_128", "wgan_gp", "wgan_gp_sn_attn", "wgan_gp_128",
        "wgan_gp_sn_attn_128"]
TINY = ["test_dcgan", "test_dcgan_upsample", "test_wgan_gp", "test_wgan_gp_sn_attn"]


def _batch(model, n=4, seed=0):
    c = model.config
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.rand(n, c.channels, c.resolution, c.resolution, generator=g) * 2 - 1}


def test_presets_registered():
    names = ganzoo.list_models()
    for name in FULL + TINY:
        assert name in names


@pytest.mark.parametrize("name", FULL)
def test_full_preset_defaults(name):
    info = ganzoo.model_info(name)  # builds on the meta device
    cfg = info["config"]
    assert cfg["resolution"] == (128 if name.endswith("128") else 64)
    if name.startswith("dcgan"):
        assert (cfg["latent_dim"], cfg["lr"], cfg["betas"]) == (100, 2e-4, [0.5, 0.999])
        assert cfg["loss"] == "bce"
    else:
        assert (cfg["latent_dim"], cfg["lr"], cfg["betas"]) == (128, 1e-4, [0.0, 0.9])
        assert (cfg["gp_weight"], cfg["n_critic"]) == (10.0, 2)
    if name == "dcgan_upsample":
        assert (cfg["real_label"], cfg["fake_label"], cfg["arch"]) == (0.9, 0.1, "upsample")
    if name.startswith("wgan_gp_sn_attn"):
        assert cfg["spectral_norm"] and cfg["generator_norm"] == "group"
        assert cfg["attention_resolutions"] == ([16, 32] if name.endswith("128") else [16])


@pytest.mark.parametrize("name", FULL)
def test_full_preset_shapes(name):
    # full architecture, narrow channels: the output shapes at 64 and 128 px
    model = ganzoo.build(name, ngf=8, ndf=8)
    res = 128 if name.endswith("128") else 64
    x = model.sample(2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 3, res, res)
    logits = model.discriminator_net(x)
    assert logits.shape == (2,)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_dcgan_matches_pytorch_examples_architecture():
    model = ganzoo.build("dcgan")
    g = sum(p.numel() for p in model.generator.parameters())
    d = sum(p.numel() for p in model.discriminator.parameters())
    # pytorch/examples dcgan: netG 3,576,704 and netD 2,765,568 parameters at nz=100, nc=3
    assert (g, d) == (3576704, 2765568)
    w = model.generator.net[0].weight
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.002
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.discriminator.net[:2])


def test_dcgan_upsample_is_the_logs_network():
    """The DCGAN experiments log, 64 px: G = Linear(100, 512·4·4); 3 x (Upsample, Conv3x3,
    BN, LeakyReLU) 512 -> 256 -> 128 -> 64; Upsample, Conv(64 -> 3), Tanh. D = Conv3x3 s2 ->
    BN (not first) -> LeakyReLU -> Dropout2d(0.25), 3 -> 64 -> 128 -> 256 -> 512, Linear(8192,
    1). Parameter counts summed by hand from the log's layer list."""
    from torch import nn

    with torch.device("meta"):
        model = ganzoo.build("dcgan_upsample")
    g, d = model.generator, model.discriminator
    assert (g.project.in_features, g.project.out_features) == (100, 512 * 4 * 4)
    kinds = [type(m).__name__ for m in g.net]
    assert kinds == ["Upsample", "Conv2d", "BatchNorm2d", "LeakyReLU"] * 3 + \
        ["Upsample", "Conv2d", "Tanh"]
    convs = [m for m in g.net if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == \
        [(512, 256, (3, 3)), (256, 128, (3, 3)), (128, 64, (3, 3)), (64, 3, (3, 3))]
    # 827,392 (Linear) + 1,179,904 + 295,040 + 73,792 + 1,731 (convs) + 896 (BN)
    assert sum(p.numel() for p in g.parameters()) == 2_378_755
    kinds = [type(m).__name__ for m in d.net]
    assert kinds == ["Conv2d", "LeakyReLU", "Dropout2d"] + \
        ["Conv2d", "BatchNorm2d", "LeakyReLU", "Dropout2d"] * 3
    assert d.head.in_features == 8192 and d.net[2].p == 0.25
    # 1,792 + 73,856 + 295,168 + 1,180,160 (convs) + 1,792 (BN) + 8,193 (Linear)
    assert sum(p.numel() for p in d.parameters()) == 1_560_961


def test_dcgan_upsample_batchnorm_momentum_reads_the_log_in_keras_convention():
    """The log: BatchNorm2d(momentum=0.8) vs the default 0.9 -> the weight kept on the old
    statistics; PyTorch's momentum is the weight of the new batch: 0.2 (default 0.1)."""
    model = ganzoo.build("test_dcgan_upsample")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == pytest.approx(0.2) for m in bns)
    bn = bns[0]
    bn.reset_running_stats()
    bn.train()(torch.full((2, bn.num_features, 2, 2), 1.0))
    assert bn.running_mean[0].item() == pytest.approx(0.2)  # 0.8 * 0 + 0.2 * 1
    literal = ganzoo.build("test_dcgan_upsample", bn_momentum=0.8)
    assert all(m.momentum == 0.8 for m in literal.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
    bilinear = ganzoo.build("test_dcgan_upsample", upsample_mode="bilinear")
    assert bilinear.generator.net[0].mode == "bilinear"


def test_critic_norm_instance_is_the_plans_reading_one_flag_away():
    """The generator plan's step 2.3 ("Critic: InstanceNorm -> Spectral Normalization") implies
    an InstanceNorm critic in 2.2; the preset keeps the WGAN-GP code's layer norm."""
    with torch.device("meta"):
        layer, inst = ganzoo.build("wgan_gp"), ganzoo.build("wgan_gp", critic_norm="instance")
    assert all(m.num_groups == 1 for m in layer.critic.modules()
               if isinstance(m, torch.nn.GroupNorm))
    norms = [m for m in inst.critic.modules() if isinstance(m, torch.nn.InstanceNorm2d)]
    assert len(norms) == 3 and all(m.affine for m in norms)


def test_wgan_critic_has_no_batchnorm():
    for name in ("wgan_gp", "wgan_gp_sn_attn_128"):
        with torch.device("meta"):
            model = ganzoo.build(name)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.critic.modules())
    with torch.device("meta"):
        model = ganzoo.build("wgan_gp_sn_attn")
    assert any(isinstance(m, torch.nn.GroupNorm) for m in model.generator.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.generator.modules())
    for net in (model.generator, model.critic):
        assert sum(type(m).__name__ == "SelfAttention2d" for m in net.modules()) == 1
    assert model.optimizer_groups()["critic"].steps == 2
    assert model.schedule(0) == ["critic", "critic", "generator"]


@pytest.mark.parametrize("cls,field,value", [
    (DCGANConfig, "resolution", 48), (DCGANConfig, "resolution", 8),
    (WGANGPConfig, "resolution", 100), (WGANGPConfig, "attention_resolutions", (64,)),
    (DCGANConfig, "real_label", 1.2), (DCGANConfig, "diffaugment", "flip"),
    (WGANGPConfig, "n_critic", 0),
])
def test_config_validation_names_the_field(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


@pytest.mark.parametrize("name", TINY)
def test_sample_shape_range_determinism(name):
    model = ganzoo.build(name)
    a = model.sample(3, generator=torch.Generator().manual_seed(1))
    b = model.sample(3, generator=torch.Generator().manual_seed(1))
    c = model.sample(3, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 3, 32, 32) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # batch-independent: the first sample does not depend on how many are drawn
    d = model.sample(1, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a[:1], d, atol=1e-6)


def test_d_step_detaches_fakes():
    torch.manual_seed(0)
    model = ganzoo.build("test_dcgan")
    loss, logs = model("discriminator", _batch(model), 0)  # requires_grad left on everywhere
    loss.backward()
    assert all(p.grad is None for p in model.generator.parameters())
    assert {"d_loss", "real_score", "fake_score"} <= set(logs)


def test_shared_fakes_leave_no_generator_gradients_and_keep_their_graph():
    """The first D step of an iteration (G enabled by the trainer for it) builds one fake batch
    with a graph: D's loss leaves G without gradients, and the G step backpropagates through
    those very fakes, giving the gradients of G(z) for the same z."""
    from ganzoo.models.base import SHARED_FORWARD, SharedForward

    torch.manual_seed(0)
    model = ganzoo.build("test_dcgan", share_fakes=True)
    batch = {**_batch(model), SHARED_FORWARD: SharedForward()}
    torch.manual_seed(1)
    d_loss, _ = model("discriminator", batch, 0)
    d_loss.backward()
    assert all(p.grad is None for p in model.generator.parameters())
    shared = batch[SHARED_FORWARD].value
    assert shared is not None and shared.requires_grad
    model.discriminator.requires_grad_(False)  # as the trainer does for the G step
    g_loss, _ = model("generator", batch, 0)
    g_loss.backward()
    assert batch[SHARED_FORWARD].value is None  # taken once, graph freed with its use
    reused = [p.grad.clone() for p in model.generator.parameters()]
    model.generator.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the same z, a fresh forward (train-mode BatchNorm: same output)
    fresh = model.adv_loss.g_loss(model.discriminator(model._fakes(batch["image"])))
    assert torch.allclose(fresh, g_loss)
    fresh.backward()
    for a, b in zip(reused, model.generator.parameters()):
        assert torch.allclose(a, b.grad, atol=1e-6)


@pytest.mark.parametrize("name, flag, share, forwards", [
    ("test_dcgan", True, True, 1), ("test_dcgan", False, False, 2),
    ("test_dcgan", None, True, 1),  # dcgan's default: one forward
    ("test_wgan_gp", True, True, 2), ("test_wgan_gp", False, False, 3)])  # n_critic 2
def test_generator_forwards_per_iteration_through_the_trainer(tmp_path, monkeypatch, name,
                                                               flag, share, forwards):
    """With share_fakes the G step reuses the first D step's fakes, graph intact; extra critic
    steps get fresh fakes without a graph; share_fakes=False restores fresh fakes everywhere.
    ``flag`` None: the preset's default."""
    from ganzoo.models.base import SharedForward
    from ganzoo.models.dcgan import LatentGAN
    from ganzoo.train import main

    calls, taken = [], []
    real_fakes, real_take = LatentGAN._fakes, SharedForward.take

    def fakes(self, real):
        out = real_fakes(self, real)
        calls.append(out)
        return out

    def take(self):
        out = real_take(self)
        taken.append(out)
        return out

    monkeypatch.setattr(LatentGAN, "_fakes", fakes)
    monkeypatch.setattr(SharedForward, "take", take)
    flag = [] if flag is None else ["--set", f"share_fakes={str(flag).lower()}"]
    assert main(["--model", name, "--dataset", "shapes", "--set", "data.size=32", *flag,
                 "--batch-size", "8", "--max-steps", "2", "--sample-every", "0",
                 "--save-every", "0", "--no-progress", "-o", str(tmp_path / "run")]) == 0
    assert len(calls) == 2 * forwards
    for it in range(2):
        mine = calls[it * forwards:(it + 1) * forwards]
        if share:
            assert mine[0].requires_grad  # the first D step's, kept for the G step
            assert all(not f.requires_grad for f in mine[1:])  # extra critic steps: fresh
            assert taken[it] is mine[0]
        else:
            assert mine[-1].requires_grad and not any(f.requires_grad for f in mine[:-1])
    assert bool(taken) == share


def test_wgan_gp_penalty_in_critic_loss():
    torch.manual_seed(0)
    model = ganzoo.build("test_wgan_gp")
    loss, logs = model("critic", _batch(model), 0)
    assert logs["penalty"] > 0
    assert torch.allclose(loss.detach(), logs["d_loss"] + logs["penalty"])
    no_gp = ganzoo.build("test_wgan_gp", gp_weight=0.0)
    no_gp.load_state_dict(model.state_dict())
    assert no_gp("critic", _batch(model), 0)[1]["penalty"] == 0


@pytest.mark.parametrize("name", ["test_dcgan", "test_wgan_gp_sn_attn"])
def test_diffaugment_option(name):
    model = ganzoo.build(name, diffaugment="color,translation,cutout")
    batch = _batch(model)
    torch.manual_seed(0)
    l1 = model(model.d_name, batch, 0)[0]
    torch.manual_seed(1)
    l2 = model(model.d_name, batch, 0)[0]
    assert torch.isfinite(l1) and not torch.allclose(l1, l2)
    model("generator", batch, 0)[0].backward()
    assert all(p.grad is not None for p in model.generator.parameters())


def test_spectral_norm_keeps_sigma_near_one():
    torch.manual_seed(0)
    model = ganzoo.build("test_wgan_gp_sn_attn")
    critic = model.critic.train()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for m in critic.modules():  # make raw weights far from norm 1
            if hasattr(m, "parametrizations"):
                m.parametrizations.weight.original.mul_(7.0)
        for _ in range(30):  # power-iteration warm-up: one iteration per training forward
            critic(x)
    critic.eval()
    sigmas = []
    for m in critic.modules():
        if hasattr(m, "parametrizations") and hasattr(m.parametrizations, "weight"):
            w = m.weight.flatten(1)
            sigmas.append(torch.linalg.matrix_norm(w, ord=2).item())
            raw = m.parametrizations.weight.original.flatten(1)
            assert torch.linalg.matrix_norm(raw, ord=2).item() > 2
    assert len(sigmas) >= 4 + 4  # every conv and the attention's 1x1 convs
    assert max(abs(s - 1) for s in sigmas) < 0.05, sigmas


def test_ema_sampling_uses_ema_generator():
    torch.manual_seed(0)
    model = ganzoo.build("test_wgan_gp")
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    before = model.sample(2, g())
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.5)
    assert torch.equal(model.sample(2, g()), before)  # EMA copy unchanged
    model.update_ema(0.0)
    assert not torch.allclose(model.sample(2, g()), before)


def test_latent_interpolation():
    z0, z1 = torch.randn(5, 16), torch.randn(5, 16)
    path = interpolate(z0, z1, 6, "slerp")
    assert path.shape == (6, 5, 16)
    assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    # slerp of equal-norm vectors stays on the sphere; lerp cuts the chord inside it
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert torch.allclose(slerp(a, b, 0.5).norm(), torch.tensor(1.0))
    assert torch.allclose(lerp(a, b, 0.5).norm(), torch.tensor(0.5 ** 0.5))
    assert torch.allclose(slerp(a, a, 0.3), a)  # parallel: no NaN
    model = ganzoo.build("test_dcgan")
    assert isinstance(model, LatentGenerator) and model.latent_dim == 32
    grid = interpolation_grid(model, rows=2, steps=4, method="lerp",
                              generator=torch.Generator().manual_seed(0))
    assert grid.shape == (8, 3, 32, 32)
    z = model.sample_latents(4, torch.Generator().manual_seed(0))
    # row ends are the generator's images of the endpoints
    assert torch.allclose(grid[0], model.generate_from_latent(z[:1])[0], atol=1e-5)
    assert torch.allclose(grid[3], model.generate_from_latent(z[2:3])[0], atol=1e-5)
    with pytest.raises(TypeError, match="latent_dim"):
        interpolation_grid(torch.nn.Linear(2, 2))


def test_meta_construction_matches_real_with_spectral_norm():
    # presets are built on the meta device by ganzoo.model_info; the fast spectral-norm path
    # there must give the same parametrization and state dict as a real build
    with torch.device("meta"):
        meta = ganzoo.build("test_wgan_gp_sn_attn")
    real = ganzoo.build("test_wgan_gp_sn_attn")
    assert {k: v.shape for k, v in meta.state_dict().items()} == \
        {k: v.shape for k, v in real.state_dict().items()}
    loaded = meta.to_empty(device="cpu")
    loaded.load_state_dict(real.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for mode in (False, True):
        loaded.critic.train(mode)
        real.critic.train(mode)
        assert torch.allclose(loaded.critic(x), real.critic(x))


@pytest.mark.parametrize("name", ["test_wgan_gp", "test_wgan_gp_sn_attn", "test_dcgan"])
def test_d_on_real_and_fake_equals_separate_forwards(name):
    torch.manual_seed(0)
    model = ganzoo.build(name)
    d = model.discriminator_net.eval()  # eval: no power-iteration update between calls
    real, fake = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    r, f = model._d_real_fake(d, real, fake)
    assert torch.allclose(r, d(real), atol=1e-5) and torch.allclose(f, d(fake), atol=1e-5)
    assert model._d_per_sample == (not name.startswith("test_dcgan"))
