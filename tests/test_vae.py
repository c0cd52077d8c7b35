"""VAE family: reparameterisation, loss terms, decoder layers, schedule, task API, presets."""

import urllib.error

import pytest
import torch
from torch import nn

import ganzoo
from ganzoo.layers.patchgan import PatchGANDiscriminator
from ganzoo.losses.kl import kl_normal
from ganzoo.losses.perceptual import ENV_VAR, PerceptualWeightsError, VGGPerceptualLoss
from ganzoo.models.vae import VAE, VAEConfig

PRESETS = ganzoo.list_models("*vae*")
FULL = [n for n in PRESETS if not n.startswith("test_")]


def _batch(model, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    r, c = model.config.resolution, model.config.channels
    return {"image": torch.rand(n, c, r, r, generator=g) * 2 - 1}


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    return ganzoo.build("test_vae")


def test_presets_registered():
    assert {"vae", "vae_128", "vae_perceptual", "vae_perceptual_128", "vae_patchgan",
            "vae_patchgan_128", "test_vae", "test_vae_patchgan"} <= set(PRESETS)


@pytest.mark.parametrize("name", FULL)
def test_full_presets_shapes_on_meta(name):
    with torch.device("meta"):  # no weights read, no memory
        model = ganzoo.build(name)
        c = model.config
        x = torch.empty(2, 3, c.resolution, c.resolution)
        mu, logvar = model.encoder(x)
        out = model.decoder(mu)
    assert c.latent_dim == 256 and mu.shape == logvar.shape == (2, 256)
    assert out.shape == x.shape
    assert c.resolution == (128 if name.endswith("_128") else 64)
    if "patchgan" in name:
        assert isinstance(model.discriminator, PatchGANDiscriminator)
        assert model.discriminator.receptive_field == 70
        side = 6 if c.resolution == 64 else 14
        assert model.discriminator(x).shape == (2, 1, side, side)
        assert (c.perceptual_weight, c.adversarial_weight, c.kl_weight) == (0.1, 0.1, 1e-4)
    else:
        assert model.discriminator is None
        assert c.kl_weight == 1.0 and c.lr == 1e-3
    assert (model.perceptual is not None) == ("perceptual" in name or "patchgan" in name)


@pytest.mark.parametrize("name", PRESETS)
def test_decoder_has_no_transposed_convolutions(name):
    with torch.device("meta"):
        model = ganzoo.build(name)
    mods = list(model.decoder.modules())
    assert not any(isinstance(m, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
                   for m in mods)
    ups = [m for m in mods if isinstance(m, nn.Upsample)]
    assert len(ups) == len(model.config.widths)
    assert all(u.mode == "nearest" and u.scale_factor == 2 for u in ups)


def test_reparameterisation_gradient():
    mu = torch.randn(3, 5, requires_grad=True)
    logvar = torch.randn(3, 5, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    z = VAE.reparameterize(mu, logvar, g)
    eps = torch.randn(3, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(z, mu + (0.5 * logvar).exp() * eps)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones_like(mu))
    torch.testing.assert_close(logvar.grad, 0.5 * (0.5 * logvar.detach()).exp() * eps)


def test_reconstruction_gradient_reaches_encoder_through_sampling(tiny):
    # beta = 0: only the reconstruction term, so the log-variance half of the encoder head
    # gets a gradient only through z = mu + sigma * eps
    model = ganzoo.build("test_vae", kl_weight=0.0)
    loss, _ = model("autoencoder", _batch(model), 0)
    loss.backward()
    head = model.encoder.head.weight.grad
    d = model.config.latent_dim
    assert head[:d].abs().sum() > 0 and head[d:].abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in model.encoder.parameters())


def test_loss_is_mse_plus_beta_kl_per_dimension():
    batch = _batch(ganzoo.build("test_vae"))
    values = {}
    for beta in (0.0, 1.0, 3.0):
        torch.manual_seed(0)
        model = ganzoo.build("test_vae", kl_weight=beta)
        torch.manual_seed(1)  # same reparameterisation noise
        loss, logs = model("autoencoder", batch, 0)
        values[beta] = loss.item()
        assert logs["mse"].item() == pytest.approx(values[0.0], rel=1e-5)
    torch.manual_seed(0)
    model = ganzoo.build("test_vae")
    mu, logvar = model.encoder(batch["image"])
    kl_per_dim = kl_normal(mu, logvar).item() / batch["image"][0].numel()
    assert values[1.0] - values[0.0] == pytest.approx(kl_per_dim, rel=1e-4)
    assert values[3.0] - values[0.0] == pytest.approx(3 * kl_per_dim, rel=1e-4)


def test_perceptual_term_added():
    batch = _batch(ganzoo.build("test_vae"))
    torch.manual_seed(0)
    plain = ganzoo.build("test_vae")
    torch.manual_seed(0)
    perc = ganzoo.build("test_vae", perceptual_weight=0.5, perceptual_weights="random")
    assert isinstance(perc.perceptual, VGGPerceptualLoss)
    assert perc.perceptual.weights == "random"
    torch.manual_seed(1)
    l0, _ = plain("autoencoder", batch, 0)
    torch.manual_seed(1)
    l1, logs = perc("autoencoder", batch, 0)
    assert logs["perceptual"].item() > 0
    assert l1.item() == pytest.approx(l0.item() + 0.5 * logs["perceptual"].item(), rel=1e-5)
    # the VGG is frozen, outside every group and the checkpoint
    assert not any(p.requires_grad for p in perc.perceptual.parameters())
    assert not any(k.startswith("perceptual.") for k in perc.state_dict())
    grouped = {id(p) for g in perc.optimizer_groups() for p in perc.group_parameters(g)}
    assert not any(id(p) in grouped for p in perc.perceptual.parameters())
    perc.train()
    assert not perc.perceptual.training


def test_disc_start_schedule_and_adversarial_term():
    torch.manual_seed(0)
    model = ganzoo.build("test_vae_patchgan", disc_start=5)
    assert set(model.optimizer_groups()) == {"autoencoder", "discriminator"}
    assert model.schedule(0) == model.schedule(4) == ["autoencoder"]
    assert model.schedule(5) == model.schedule(100) == ["autoencoder", "discriminator"]
    batch = _batch(model)
    torch.manual_seed(1)
    before, logs_before = model("autoencoder", batch, 4)
    assert "g_adv" not in logs_before
    # before disc_start the discriminator plays no part in the loss
    with torch.no_grad():
        for p in model.discriminator.parameters():
            p.add_(1.0)
    torch.manual_seed(1)
    again, _ = model("autoencoder", batch, 4)
    assert again.item() == before.item()
    torch.manual_seed(1)
    after, logs_after = model("autoencoder", batch, 5)
    assert after.item() == pytest.approx(before.item() + 0.1 * logs_after["g_adv"].item(),
                                         rel=1e-5)
    d_loss, d_logs = model("discriminator", batch, 5)
    assert torch.isfinite(d_loss) and {"d_loss", "real_score", "fake_score"} <= set(d_logs)


def test_hinge_by_default_and_nonsaturating_option():
    from ganzoo.losses.adversarial import HingeLoss, NonSaturatingLoss

    assert isinstance(ganzoo.build("test_vae_patchgan").adv_loss, HingeLoss)
    model = ganzoo.build("test_vae_patchgan", adversarial_loss="nonsaturating")
    assert isinstance(model.adv_loss, NonSaturatingLoss)


def test_discriminator_loss_is_tamings_half_hinge():
    """taming-transformers' hinge_d_loss: 0.5 * (mean relu(1 - D(x)) + mean relu(1 + D(x̂)))."""
    torch.manual_seed(0)
    model = ganzoo.build("test_vae_patchgan", disc_start=0)
    batch = _batch(model)
    torch.manual_seed(2)
    d_loss, logs = model("discriminator", batch, 0)
    torch.manual_seed(2)
    with torch.no_grad():
        mu, logvar = model.encoder(batch["image"])
        fake = model.decoder(model.reparameterize(mu, logvar))
        real_logits, fake_logits = model.discriminator(batch["image"]), model.discriminator(fake)
    expected = 0.5 * (torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean())
    assert d_loss.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = ganzoo.build("test_vae_patchgan", disc_loss_scale=1.0)
    assert plain.adv_loss.d_scale == 1.0 and model.adv_loss.d_scale == 0.5


def test_task_api(tiny):
    tiny.eval()
    x = _batch(tiny, 3)["image"]
    mu, logvar = tiny.encode(x)
    assert mu.shape == logvar.shape == (3, 32)
    rec = tiny.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= -1 and rec.max() <= 1
    torch.testing.assert_close(rec, tiny.decode(mu))
    noisy = tiny.reconstruct(x, generator=torch.Generator().manual_seed(0), sample_posterior=True)
    assert not torch.equal(noisy, rec)
    s1 = tiny.sample(5, generator=torch.Generator().manual_seed(7))
    s2 = tiny.sample(5, generator=torch.Generator().manual_seed(7))
    assert s1.shape == (5, 3, 32, 32) and torch.equal(s1, s2)
    assert not torch.equal(s1, tiny.sample(5, generator=torch.Generator().manual_seed(8)))
    path = tiny.interpolate(x[0], x[1], steps=6)
    assert path.shape == (6, 3, 32, 32)
    torch.testing.assert_close(path[0], rec[0])
    torch.testing.assert_close(path[-1], rec[1])
    assert tiny.interpolate(x[:2], x[1:], steps=4, method="slerp").shape == (4, 2, 3, 32, 32)
    out = tiny.generate({"image": x}, 2, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"sample", "reconstruction"} == set(tiny.eval_references)
    torch.testing.assert_close(out["reconstruction"], rec[:2])
    grid = tiny.preview({"image": x}, 3, generator=torch.Generator().manual_seed(0))
    assert grid.shape == (9, 3, 32, 32)
    torch.testing.assert_close(grid[:3], x)
    torch.testing.assert_close(grid[3:6], rec)


def test_latent_protocol(tiny):
    from ganzoo.latent import LatentGenerator, interpolation_grid

    assert isinstance(tiny, LatentGenerator) and tiny.latent_dim == 32
    grid = interpolation_grid(tiny, rows=2, steps=3, generator=torch.Generator().manual_seed(0))
    assert grid.shape[-3:] == (3, 32, 32)


def test_ema_option():
    model = ganzoo.build("test_vae", ema=True)
    assert set(model.ema) == {"encoder", "decoder"}
    assert len(ganzoo.build("test_vae").ema) == 0


def test_training_reduces_loss():
    torch.manual_seed(0)
    model = ganzoo.build("test_vae_patchgan")
    batch = _batch(model, 4)
    opts = {g: s.build(model.group_parameters(g)) for g, s in model.optimizer_groups().items()}
    first = None
    for step in range(15):
        for group in model.schedule(step):
            opts[group].zero_grad(set_to_none=True)
            loss, logs = model(group, batch, step)
            loss.backward()
            opts[group].step()
            if group == "autoencoder":
                first = logs["mse"].item() if first is None else first
                last = logs["mse"].item()
    assert last < 0.7 * first


def _go_offline(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "urlopen", no_network)


@pytest.mark.parametrize("name", ["vae_perceptual", "vae_patchgan_128"])
def test_missing_vgg_weights_error(name, monkeypatch, tmp_path):
    _go_offline(monkeypatch, tmp_path)
    with pytest.raises(PerceptualWeightsError, match=ENV_VAR) as err:
        ganzoo.build(name)
    assert "perceptual_weights=" in str(err.value)
    ganzoo.build("vae")  # no perceptual term: no weights needed
    ganzoo.build(name, perceptual_weight=0)


def test_local_vgg_file(monkeypatch, tmp_path):
    _go_offline(monkeypatch, tmp_path)
    src = VGGPerceptualLoss(weights="random")
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in src.features.state_dict().items()}, path)
    model = ganzoo.build("test_vae", perceptual_weight=0.1, perceptual_weights=str(path))
    torch.testing.assert_close(model.perceptual.features[0].weight, src.features[0].weight)
    monkeypatch.setenv(ENV_VAR, str(path))
    model = ganzoo.build("test_vae", perceptual_weight=0.1)
    torch.testing.assert_close(model.perceptual.features[2].weight, src.features[2].weight)


@pytest.mark.parametrize("field,value", [
    ("resolution", 48), ("widths", ()), ("widths", (8, 8, 8, 8, 8)), ("latent_dim", 0),
    ("kl_weight", -1.0), ("perceptual_weight", -0.1), ("adversarial_weight", -1.0),
    ("disc_start", -1), ("lr", 0.0), ("perceptual_layers", ("conv1",)), ("norm", "layer"),
    ("adversarial_loss", "wgan"), ("disc_norm", "group"),
])
def test_config_validation_names_field(field, value):
    with pytest.raises((ValueError, KeyError), match=field):
        VAEConfig(**{"resolution": 32, **{field: value}})


def test_saved_model_loads_without_vgg(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = ganzoo.build("test_vae", perceptual_weight=0.1, perceptual_weights="random").eval()
    model.save_pretrained(tmp_path)
    _go_offline(monkeypatch, tmp_path / "torch")
    loaded = ganzoo.from_pretrained(tmp_path, perceptual_weight=0).eval()
    assert loaded.perceptual is None
    x = _batch(model, 2)["image"]
    torch.testing.assert_close(loaded.reconstruct(x), model.reconstruct(x))
