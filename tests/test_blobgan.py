"""BlobGAN: splatting, compositing, layout API and edits, rectangular grids, modulated
convolution, losses (lazy R1), encoder and inversion. The counterfactual workflow is in
``test_blobgan_counterfactual.py``."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import ganzoo
from ganzoo.models.blobgan import BlobGANConfig
from ganzoo.models.blobgan import layout as L
from ganzoo.models.blobgan.inversion import invert, inversion_metrics
from ganzoo.models.blobgan.stylegan2 import ModulatedConv2d, StyleGAN2Discriminator, splat



def one_blob(x=12.5 / 40, y=24.5 / 40, size=2.0, covs=(0.0, 0.0, 1.0, 0.0), dim=4):
    return {"xs": torch.tensor([[x]]), "ys": torch.tensor([[y]]),
            "covs": torch.tensor([[list(covs)]]), "sizes": torch.tensor([[0.0, size]]),
            "features": torch.randn(1, 2, dim), "spatial_style": torch.randn(1, 2, dim)}


def peak(opacity):  # (H, W) -> (row, col)
    i = int(opacity.flatten().argmax())
    return divmod(i, opacity.shape[-1])


# -- splatting ---------------------------------------------------------------------------------
def test_opacity_peaks_at_centre_and_decays():
    lay = one_blob(size=2.0)  # centred on pixel (24, 12) of a 40 x 40 grid
    a = L.blob_opacity(lay, 40, 40)[0, 0]
    assert peak(a) == (24, 12)
    assert a.max() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item(), abs=0.02)
    row = a[24, 12:]  # moving right from the centre
    assert torch.all(row[1:] < row[:-1])
    col = a[24:, 12]  # moving down
    assert torch.all(col[1:] < col[:-1])
    assert a[0, 39] < 1e-3  # far away: transparent


def test_corner_pixel_coordinates_are_the_centre_grid_shifted_by_half_a_pixel():
    """``pixel_coordinates="corner"`` puts pixel j at j / W, as the reference's
    ``splat_features`` (dave-epstein/blobgan, src/models/blobgan.py); the default at
    (j + 0.5) / W. A blob rendered on the corner grid is the centre-grid blob moved by half a
    pixel down and right."""
    lay = one_blob(x=0.3, y=0.6)
    corner = L.blob_opacity(lay, 8, 16, pixel_coordinates="corner")
    centre_moved = L.blob_opacity(L.move_blob(lay, 0, dx=0.5 / 16, dy=0.5 / 8), 8, 16)
    torch.testing.assert_close(corner, centre_moved)
    assert (corner - L.blob_opacity(lay, 8, 16)).abs().max() > 0.01
    with pytest.raises(ValueError, match="pixel_coordinates"):
        L.render_scores(lay, 8, 8, pixel_coordinates="middle")


def test_config_pixel_coordinates_reaches_every_render():
    model = ganzoo.build("test_blobgan", pixel_coordinates="corner")
    lay = model.sample_layout(2, generator=torch.Generator().manual_seed(0))
    expected = L.render_scores(lay, 32, 32, model.config.ab_norm, pixel_coordinates="corner")
    torch.testing.assert_close(model.blob_scores(lay), expected)
    assert not torch.allclose(ganzoo.build("test_blobgan").blob_scores(lay), expected)
    with pytest.raises(ValueError, match="pixel_coordinates"):
        BlobGANConfig(pixel_coordinates="middle")


def test_covariance_has_fixed_determinant_and_rotates():
    raw = torch.tensor([[[2.0, -1.0, 1.0, 1.0]]])
    cov = L.blob_covariance(raw)[0, 0]
    assert torch.det(cov).item() == pytest.approx(0.02 ** 2, rel=1e-2)
    # principal axis along the normalised (1, 1) direction
    evals, evecs = torch.linalg.eigh(cov)
    major = evecs[:, evals.argmax()]
    assert abs(float(major @ torch.tensor([1.0, 1.0]) / math.sqrt(2))) == pytest.approx(1, abs=1e-4)


def test_moving_a_blob_moves_its_peak():
    lay = one_blob()
    moved = L.move_blob(lay, 0, x=32.5 / 40, y=4.5 / 40)
    a = L.blob_opacity(moved, 40, 40)[0, 0]
    assert peak(a) == (4, 32)
    shifted = L.move_blob(lay, 0, dx=0.25)
    assert peak(L.blob_opacity(shifted, 40, 40)[0, 0]) == (24, 22)
    assert lay["xs"].item() == pytest.approx(12.5 / 40)  # the input layout is unchanged


def test_compositing_order_and_normalisation():
    a = torch.stack([torch.full((3, 3), 0.5), torch.full((3, 3), 0.8)])[None]  # blob 0, blob 1
    w = L.composite(a)
    assert torch.allclose(w.sum(1), torch.ones(1, 3, 3))
    assert torch.allclose(w[0, 2], torch.full((3, 3), 0.8))  # the last blob is on top
    assert torch.allclose(w[0, 1], torch.full((3, 3), 0.5 * 0.2))  # behind it
    assert torch.allclose(w[0, 0], torch.full((3, 3), 0.5 * 0.2))  # background: what shows


def test_removing_a_blob_removes_its_contribution():
    torch.manual_seed(0)
    model = ganzoo.build("test_blobgan")
    lay = model.sample_layout(2, generator=torch.Generator().manual_seed(0))
    lay = L.move_blob(L.resize_blob(lay, 1, size=3.0), 1, x=0.5, y=0.5)
    removed = L.remove_blob(lay, 1)
    assert L.num_blobs(removed) == L.num_blobs(lay) - 1
    assert removed["sizes"].shape[1] == removed["features"].shape[1] == L.num_blobs(removed) + 1
    invisible = L.resize_blob(lay, 1, size=-1e4)  # opacity exactly 0
    assert torch.allclose(model.feature_grid(removed), model.feature_grid(invisible), atol=1e-6)
    assert not torch.allclose(model.feature_grid(removed), model.feature_grid(lay), atol=1e-3)
    scores = model.blob_scores(removed)
    assert scores.shape[1] == L.num_blobs(lay)  # K - 1 blobs + background


def test_layout_tensor_layout_matches_the_notes():
    model = ganzoo.build("test_blobgan")
    c = model.config
    lay = model.sample_layout(3)
    k = c.n_blobs
    assert lay["features"].shape == (3, k + 1, c.feature_dim)
    assert lay["spatial_style"].shape == (3, k + 1, c.style_dim)
    assert lay["sizes"].shape == (3, k + 1)
    assert lay["xs"].shape == lay["ys"].shape == (3, k)
    assert lay["covs"].shape == (3, k, 4)
    assert ((lay["xs"] > 0) & (lay["xs"] < 1)).all()


def test_layout_edits():
    model = ganzoo.build("test_blobgan")
    lay = model.sample_layout(2)
    before = L.clone_layout(lay)
    f = torch.randn(model.config.feature_dim)
    s = torch.randn(model.config.style_dim)
    added = model.edit(lay, "add", 0.5, 0.5, 4.0, f, s)
    assert L.num_blobs(added) == 5 and torch.equal(added["features"][:, -1], f.expand(2, -1))
    assert model.render(added).shape == (2, 3, 32, 32)  # any number of blobs renders
    assert torch.equal(model.edit(lay, "feature", 2, f)["features"][:, 3], f.expand(2, -1))
    assert torch.equal(model.edit(lay, "style", 0, s)["spatial_style"][:, 1], s.expand(2, -1))
    pos = L.resize_blob(L.resize_blob(lay, 0, size=2.0), 0, scale=2.0)
    assert torch.allclose(pos["sizes"][:, 1], torch.full((2,), 8.0))  # radius x2: size x4
    for key in lay:  # edits never modify their input
        assert torch.equal(lay[key], before[key])
    with pytest.raises(IndexError):
        L.remove_blob(lay, 7)
    with pytest.raises(ValueError, match="op must be"):
        model.edit(lay, "explode", 0)


def test_truncation_one_gives_the_mean_layout():
    model = ganzoo.build("test_blobgan")
    a = model.sample_layout(2, generator=torch.Generator().manual_seed(1), truncation=1.0)
    assert torch.allclose(a["xs"][0], a["xs"][1], atol=1e-6)
    b = model.sample_layout(2, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(b["xs"][0], b["xs"][1], atol=1e-3)
    mean = model.mean_latent().clone()
    with torch.no_grad():  # new weights: the cached mean latent is recomputed
        model.ema["layout_net"].mlp[1].weight.mul_(2)
    assert not torch.allclose(model.mean_latent(), mean)


# -- rectangular grids ---------------------------------------------------------------------------
def test_rectangular_grid_shapes():
    model = ganzoo.build("test_blobgan_rect")
    lay = model.sample_layout(2)
    assert model.config.grid_shape == (4, 8)
    assert model.feature_grid(lay).shape == (2, model.config.feature_dim, 4, 8)
    pyramid = L.score_pyramid(model.blob_scores(lay), model.config.size_in)
    assert {h: tuple(s.shape[-2:]) for h, s in pyramid.items()} == {16: (16, 32), 8: (8, 16),
                                                                    4: (4, 8)}
    img = model.sample(2)
    assert img.shape == (2, 3, 16, 32)
    assert model.discriminator(img).shape == (2, 1)
    # x is measured across the width: a blob at x = 0.75 peaks three quarters of the way across
    a = L.blob_opacity(one_blob(x=0.75, y=0.5), 16, 32)[0, 0]
    assert peak(a)[1] in (23, 24)
    big = BlobGANConfig(resolution=256, aspect_ratio=2.0, size_in=8, n_blobs=40,
                        feature_dim=256, override_c_in=256)
    assert big.grid_shape == (8, 16) and big.width == 512


def test_rectangular_discriminator_ends_at_4_by_8():
    d = StyleGAN2Discriminator(32, aspect_ratio=2.0, channel_base=256, channel_max=16)
    assert d(torch.randn(3, 3, 32, 64)).shape == (3, 1)
    with pytest.raises(RuntimeError):
        d(torch.randn(2, 3, 32, 32))  # a square input does not fit the rectangular head


def test_images_of_the_wrong_shape_are_refused_clearly():
    model = ganzoo.build("test_blobgan_rect")
    with pytest.raises(ValueError, match="aspect_ratio=2.0"):
        model.loss("discriminator", {"image": torch.zeros(2, 3, 16, 16)}, 0)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="feature_dim"):
        BlobGANConfig(feature_dim=100)
    with pytest.raises(ValueError, match="size_in"):
        BlobGANConfig(size_in=12)
    with pytest.raises(ValueError, match="aspect_ratio"):
        BlobGANConfig(aspect_ratio=1.1)


# -- modulated convolution -----------------------------------------------------------------------
def _blur_up(x):
    from ganzoo.models.blobgan.stylegan2 import Blur

    return Blur((1, 3, 3, 1), pad=(1, 1), upsample_factor=2)(x)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_matches_per_sample_weights(upsample, demodulate):
    torch.manual_seed(0)
    conv = ModulatedConv2d(5, 6, 3, style_dim=7, demodulate=demodulate, upsample=upsample)
    with torch.no_grad():
        conv.modulation.bias.normal_()
    x, w_style = torch.randn(3, 5, 8, 8), torch.randn(3, 7)
    out = conv(x, w_style)
    s = F.linear(w_style, conv.modulation.weight * conv.modulation.scale, conv.modulation.bias)
    for i in range(3):  # one sample at a time, with an explicitly modulated weight
        w = conv.weight / math.sqrt(5 * 9) * s[i].view(1, 5, 1, 1)
        if demodulate:
            w = w / torch.sqrt((w ** 2).sum((1, 2, 3), keepdim=True) + 1e-8)
        if upsample:
            ref = _blur_up(F.conv_transpose2d(x[i:i + 1], w.transpose(0, 1), stride=2))
        else:
            ref = F.conv2d(x[i:i + 1], w, padding=1)
        assert torch.allclose(out[i:i + 1], ref, atol=1e-5), i
    assert out.shape[-1] == (16 if upsample else 8)


def test_spatial_modulated_conv_matches_direct_computation():
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 3, 3, style_dim=5)
    x = torch.randn(2, 4, 6, 6)
    styles = torch.randn(2, 3, 5)  # background + 2 blobs
    scores = torch.rand(2, 3, 6, 6).softmax(1)
    out = conv(x, styles, scores)
    mod = F.linear(styles, conv.modulation.weight * conv.modulation.scale, conv.modulation.bias)
    smap = sum(scores[:, m, None] * mod[:, m, :, None, None] for m in range(3))  # per pixel
    smap = smap / torch.sqrt((smap ** 2).mean(1, keepdim=True) + 1e-8)
    w = conv.weight / math.sqrt(4 * 9)
    w = w / torch.sqrt((w ** 2).sum((1, 2, 3), keepdim=True) + 1e-8)
    assert torch.allclose(out, F.conv2d(x * smap, w, padding=1), atol=1e-5)
    # one blob everywhere = a constant style: same as modulating the input channels uniformly
    one = torch.zeros(2, 3, 6, 6)
    one[:, 1] = 1
    s1 = mod[:, 1] / torch.sqrt((mod[:, 1] ** 2).mean(1, keepdim=True) + 1e-8)
    assert torch.allclose(conv(x, styles, one),
                          F.conv2d(x * s1[:, :, None, None], w, padding=1), atol=1e-5)
    assert splat(one, mod).shape == (2, 4, 6, 6)


# -- losses --------------------------------------------------------------------------------------
class LinearD(torch.nn.Module):
    def __init__(self, shape):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(*shape))

    def forward(self, x):
        return (x * self.w).flatten(1).sum(1, keepdim=True)


def test_r1_matches_hand_computed_value_and_is_lazy():
    model = ganzoo.build("test_blobgan")  # r1_every = 4, r1_gamma = 100
    model.discriminator = LinearD((3, 32, 32))
    real = torch.randn(2, 3, 32, 32)
    c = model.config
    torch.manual_seed(5)
    with_r1, logs = model.loss("discriminator", {"image": real}, step=8)
    torch.manual_seed(5)
    without, logs_no = model.loss("discriminator", {"image": real}, step=9)
    # D(x) = <w, x>: grad_x D = w for every sample, so R1 = 0.5 * ||w||^2
    expected = 0.5 * model.discriminator.w.detach().square().sum()
    assert logs["r1"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "r1" not in logs_no
    assert (with_r1 - without).item() == pytest.approx(
        (c.r1_gamma * c.r1_every * expected).item(), rel=1e-4)


def test_optimizer_groups_and_lazy_regularisation_correction():
    model = ganzoo.build("test_blobgan", r1_every=16, lr=0.002)
    groups = model.optimizer_groups()
    ratio = 16 / 17
    assert groups["discriminator"].lr == pytest.approx(0.002 * ratio)
    assert groups["discriminator"].betas[1] == pytest.approx(0.99 ** ratio)
    assert groups["generator"].networks == ("layout_net", "generator")
    assert model.schedule(0) == ["discriminator", "generator"]


def test_generator_loss_is_nonsaturating():
    model = ganzoo.build("test_blobgan")
    model.discriminator = LinearD((3, 32, 32))
    torch.manual_seed(3)
    loss, _ = model.loss("generator", {"image": torch.zeros(2, 3, 32, 32)}, 0)
    torch.manual_seed(3)
    fake = model._render(model.layout_net(model._noise(2)), model.generator)
    assert loss.item() == pytest.approx(F.softplus(-model.discriminator(fake)).mean().item(),
                                        rel=1e-5)


# -- encoder and inversion -----------------------------------------------------------------------
def test_encoder_predicts_the_latent_at_mlp_idx(tmp_path):
    torch.manual_seed(0)
    gan = ganzoo.build("test_blobgan")
    gan.save_pretrained(tmp_path / "gan")
    enc = ganzoo.build("test_blobgan_encoder", blobgan_weights=str(tmp_path / "gan"))
    for (name, p), q in zip(enc.blobgan.ema.named_parameters(), gan.ema.parameters()):
        assert torch.equal(p, q), name  # the EMA networks of the saved BlobGAN were loaded
    assert not any(p.requires_grad for p in enc.blobgan.parameters())
    hidden = gan.config.mlp_hidden_dim
    assert enc.encoder.head.out_features == hidden  # input of the last layout-MLP layer
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    lay = enc.invert(images)
    assert lay["features"].shape == (2, gan.config.n_blobs + 1, gan.config.feature_dim)
    enc.save_pretrained(tmp_path / "enc")
    import shutil

    shutil.rmtree(tmp_path / "gan")  # the saved encoder carries its frozen BlobGAN
    with pytest.raises(FileNotFoundError):
        ganzoo.from_pretrained(tmp_path / "enc")
    back = ganzoo.from_pretrained(tmp_path / "enc", blobgan_weights=None).eval()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(back.reconstruct(images, g()), enc.eval().reconstruct(images, g()))
    enc2 = ganzoo.build("test_blobgan_encoder", mlp_idx=-2)
    assert enc2.encoder.head.out_features == hidden
    with pytest.raises(ValueError, match="resolution"):
        ganzoo.build("test_blobgan_encoder", resolution=64)


def test_encoder_with_the_reference_inverter_predicts_the_layout_vector():
    """The reference inverter (dave-epstein/blobgan, src/models/invertblobgan.py): a StyleGAN2
    discriminator without minibatch std whose output is the layout MLP's output
    (``mlp_idx = len(mlp)``)."""
    torch.manual_seed(0)
    enc = ganzoo.build("test_blobgan_encoder", backbone="stylegan2_discriminator",
                       disc_channel_base=512, disc_channel_max=32, mlp_idx=4)
    net = enc.blobgan.ema["layout_net"]
    assert len(net.mlp) == 4 and net.latent_dim(4) == net.mlp[-1].weight.shape[0]
    assert isinstance(enc.encoder, StyleGAN2Discriminator) and not enc.encoder.minibatch_std
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    vector = enc.encode(images)
    assert vector.shape == (2, net.mlp[-1].weight.shape[0])
    k = enc.blobgan.config.n_blobs
    torch.testing.assert_close(enc.invert(images)["sizes"], vector[:, :k + 1])
    loss, _ = enc.loss("encoder", {"image": images}, step=10)
    loss.backward()
    assert all(p.grad is not None for p in enc.encoder.parameters())
    with pytest.raises(ValueError, match="mlp_idx"):
        ganzoo.build("test_blobgan_encoder", mlp_idx=5)
    with pytest.raises(ValueError, match="pretrained_backbone"):
        ganzoo.build("test_blobgan_encoder", backbone="stylegan2_discriminator",
                     pretrained_backbone=True)


def test_encoder_phases_generated_then_real():
    enc = ganzoo.build("test_blobgan_encoder", real_from_step=3)
    batch = {"image": torch.rand(2, 3, 32, 32) * 2 - 1}
    _, early = enc.loss("encoder", batch, 2)
    _, late = enc.loss("encoder", batch, 3)
    assert "real_mse" not in early and {"fake_mse", "fake_latent_mse"} <= set(early)
    assert "real_mse" in late


def test_encoder_perceptual_loss_is_the_shared_vgg():
    enc = ganzoo.build("test_blobgan_encoder", perceptual_weights="random", real_from_step=0)
    _, logs = enc.loss("encoder", {"image": torch.rand(2, 3, 32, 32) * 2 - 1}, 0)
    assert {"fake_perceptual", "real_perceptual"} <= set(logs)
    assert not any(k.startswith("_perceptual") for k in enc.state_dict())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_encoder_trains_through_the_trainer(tmp_path):
    from ganzoo.train import main

    rc = main(["--model", "test_blobgan_encoder", "--output-dir", str(tmp_path / "run"),
               "--max-steps", "3", "--batch-size", "2", "--sample-every", "0", "--eval-every",
               "0", "--log-every", "1", "--save-every", "0", "--cpu", "--no-progress",
               "--set", "real_from_step=2"])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    by_step = {r["step"]: r for r in records if "encoder/loss" in r}
    assert "encoder/real_mse" not in by_step[1] and "encoder/real_mse" in by_step[3]
    loaded = ganzoo.from_pretrained(tmp_path / "run" / "final")
    assert loaded.preset == "test_blobgan_encoder"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_rectangular_blobgan_trains_with_gradient_accumulation(tmp_path):
    from ganzoo.train import main

    rc = main(["--model", "test_blobgan_rect", "--dataset", "shapes_scenes", "-o",
               str(tmp_path / "run"), "--max-steps", "2", "--batch-size", "2", "--grad-accum",
               "2", "--sample-every", "0", "--eval-every", "0", "--log-every", "1",
               "--save-every", "0", "--cpu", "--no-progress", "--set", "data.aspect_ratio=2.0",
               "--set", "data.size=16"])
    assert rc == 0
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = [r for r in records if "discriminator/loss" in r]
    assert logged and "discriminator/r1" in logged[0]  # step 0 is an R1 step
    assert all(math.isfinite(r["generator/loss"]) for r in logged)


def test_inversion_reduces_the_reconstruction_error_and_is_batch_independent():
    torch.manual_seed(0)
    model = ganzoo.build("test_blobgan").eval()
    truth = model.sample_layout(2, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(0)
    target = model.render(truth, generator=g).clamp(-1, 1).detach()
    start = {k: v + 0.3 * torch.randn_like(v) for k, v in truth.items()}
    res = invert(model, target, init_layout=start, steps=25, lr=0.02, lambda_mse=1.0,
                 lambda_prox=0.0, batch_size=2)
    before = inversion_metrics(target, res.initial)["mse"]
    after = inversion_metrics(target, res.reconstruction)["mse"]
    assert after < 0.8 * before
    assert res.layout["xs"].shape == truth["xs"].shape
    single = invert(model, target, init_layout=start, steps=3, lambda_mse=1.0, lambda_prox=0.1,
                    batch_size=1, seed=0)
    pair = invert(model, target, init_layout=start, steps=3, lambda_mse=1.0, lambda_prox=0.1,
                  batch_size=2, seed=0)
    # each image has its own loss, so batching does not change the result (same noise seed
    # per batch start: compare the first image only)
    assert torch.allclose(single.layout["xs"][0], pair.layout["xs"][0], atol=1e-5)


@pytest.mark.parametrize("entry", ["ganzoo.evaluate", "blobgan.fid"])
def test_fid_of_a_rectangular_model_is_scored_against_rectangular_references(tmp_path, entry):
    from ganzoo.models.blobgan.evaluation import fid

    score = ganzoo.evaluate if entry == "ganzoo.evaluate" else \
        lambda *a, **kw: fid(*a, **kw)
    model = ganzoo.build("test_blobgan_rect")
    kw = dict(n=8, n_real=8, batch_size=8, feature_extractor="test_random_cnn",
              cache_dir=tmp_path, device="cpu")
    if entry == "ganzoo.evaluate":
        kw["metrics"] = ["fid"]
    res = score(model, "shapes_scenes", **kw)
    p = res["protocol"]
    assert p["resolution"] == [16, 32]
    assert p["reference_resolution"] == [16, 32]  # not a square 16x16 reference
    assert p["dataset_kwargs"]["aspect_ratio"] == 2.0
    assert math.isfinite(res["metrics"]["fd@test_random_cnn"])
    assert p["real_stats_cache"] == "miss"
    again = score(model, "shapes_scenes", **kw)
    assert again["protocol"]["real_stats_cache"] == "hit"
    assert again["metrics"] == res["metrics"]


def test_a_folder_reference_is_cropped_to_a_rectangular_model(tmp_path):
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (40, 40), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
    res = ganzoo.evaluate(ganzoo.build("test_blobgan_rect"), str(tmp_path), metrics=["fid"],
                          n=4, batch_size=4, feature_extractor="test_random_cnn", cache=False)
    assert res["protocol"]["reference_resolution"] == [16, 32]


# -- faithful to the reference configs ---------------------------------------------------------
def test_discriminator_has_the_reference_width():
    """BlobGAN/OCTET use StyleGAN2's discriminator with channel multiplier 2: 512/256/128
    channels at 64/128/256 px, 28,864,129 parameters at 256x256 (ganzoo 0.1's half width,
    disc_channel_base=16384: 24,001,089)."""
    c = BlobGANConfig()  # blobgan_256 and blobgan_256x512 keep these defaults
    assert (c.disc_channel_base, c.disc_channel_max) == (32768, 512)
    with torch.device("meta"):
        d = StyleGAN2Discriminator(256, 1.0, c.disc_channel_base, c.disc_channel_max)
        half = StyleGAN2Discriminator(256, 1.0, 16384, 512)
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert count(d) == 28_864_129 and count(half) == 24_001_089
    widths = [d.convs[0][0].weight.shape[0]] + [b.conv2[1].weight.shape[0] for b in d.convs[1:]]
    assert widths == [128, 256, 512, 512, 512, 512, 512]  # 256, 128, 64, 32, 16, 8, 4 px


def test_blobgan_256x512_follows_blobgan40_yaml():
    """OCTET's blobgan40.yaml: dim 256 (style), feature_dim 256, 40 blobs, 8x16 grid, jitter
    xy 0.04 / shift 0.5 / angle 0.1; the notes' blob space of about 40 * (256 + 256)."""
    with torch.device("meta"):
        model = ganzoo.build("blobgan_256x512")
    c = model.config
    assert (c.n_blobs, c.feature_dim, c.style_dim, c.size_in, c.aspect_ratio) == \
        (40, 256, 256, 8, 2.0)
    assert (c.feature_jitter_xy, c.feature_jitter_shift, c.feature_jitter_angle) == \
        (0.04, 0.5, 0.1)
    assert (c.c_model, c.lr, c.r1_every) == (96, 0.002, 16)
    out = model.layout_net.mlp[-1].weight.shape[0]
    # per blob xy (2) + covariance (4) + feature + style; sizes K + 1; background f + s
    assert out == 40 * (2 + 4 + 256 + 256) + 41 + 256 + 256 == 21_273
    assert 40 * (256 + 256) == 20_480  # the notes' rounded count leaves out xy/cov/sizes
    assert model.generator.conv1.conv.modulation.weight.shape == (256, 256)


def test_jitter_offsets_are_bounded_seeded_and_straight_through():
    lay = one_blob(covs=(0.3, -0.2, 1.0, 0.5))
    lay = {k: v.repeat(64, *[1] * (v.ndim - 1)) for k, v in lay.items()}
    j = L.draw_jitter(lay, 0.04, 0.5, 0.1, generator=torch.Generator().manual_seed(3))
    again = L.draw_jitter(lay, 0.04, 0.5, 0.1, generator=torch.Generator().manual_seed(3))
    assert sorted(j) == ["dangle", "dsize", "dx", "dy"]
    for key, bound in (("dx", 0.04), ("dy", 0.04), ("dsize", 0.5), ("dangle", 0.1)):
        assert torch.equal(j[key], again[key])
        assert j[key].abs().max() <= bound and j[key].abs().max() > bound / 2
    assert L.draw_jitter(lay) is None
    # a centre jitter moves the blob exactly like a move of the same size
    one = {k: v[:1] for k, v in lay.items()}
    shift = {"dx": torch.tensor([[0.25]]), "dy": torch.tensor([[0.0]])}
    assert torch.allclose(L.blob_opacity(one, 40, 40, jitter=shift),
                          L.blob_opacity(L.move_blob(one, 0, dx=0.25), 40, 40))
    # the angle jitter rotates the ellipse: R(t) Sigma R(t)^T, with the unrotated gradient
    covs = one["covs"].clone().requires_grad_(True)
    t = torch.tensor([[0.1]])
    turned = L.blob_covariance(covs, angle=t)[0, 0]
    rot = torch.tensor([[math.cos(0.1), -math.sin(0.1)], [math.sin(0.1), math.cos(0.1)]])
    base = L.blob_covariance(one["covs"])[0, 0]
    eye = 1e-5 * torch.eye(2)
    assert torch.allclose(turned - eye, rot @ (base - eye) @ rot.T, atol=1e-9)
    (g,) = torch.autograd.grad(turned.sum(), covs)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_jitter_is_training_only():
    """Jittered training renders; sample/render are those of the same weights without it."""
    torch.manual_seed(0)
    plain = ganzoo.build("test_blobgan")
    jit = ganzoo.build("test_blobgan", feature_jitter_xy=0.04, feature_jitter_shift=0.5,
                       feature_jitter_angle=0.1)
    jit.load_state_dict(plain.state_dict())
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(jit.sample(2, g()), plain.sample(2, g()))
    lay = plain.sample_layout(2, generator=g())
    with torch.no_grad():
        a = jit._render(lay, jit.generator, g(), jitter=True)
        b = jit._render(lay, jit.generator, g(), jitter=True)
        c = plain._render(lay, plain.generator, g(), jitter=True)  # jitter off: no offsets
        d = plain._render(lay, plain.generator, g())
    assert torch.equal(a, b) and torch.equal(c, d) and not torch.allclose(a, c, atol=1e-4)


def test_encoder_latent_loss_compares_covariance_matrices():
    """OCTET's fake_latents_MSE compares the layouts' 2x2 covariance matrices: raw directions
    (u, v) and (3u, 3v) are one blob and cost nothing."""
    from ganzoo.models.blobgan.encoder import layout_latent_loss

    true = one_blob(covs=(0.5, -0.5, 1.0, 2.0))
    same = {**true, "covs": torch.tensor([[[0.5, -0.5, 3.0, 6.0]]])}
    assert layout_latent_loss(same, true).item() == 0.0
    other = {**true, "covs": torch.tensor([[[-0.5, 0.5, 1.0, 2.0]]])}
    expected = F.mse_loss(L.blob_covariance(other["covs"]), L.blob_covariance(true["covs"])) / 6
    assert torch.allclose(layout_latent_loss(other, true), expected)
    moved = {**true, "xs": true["xs"] + 0.3}
    assert layout_latent_loss(moved, true).item() == pytest.approx(0.09 / 6)


def test_encoder_blobgan_overrides_rebuild_the_inverted_model():
    """An encoder of a BlobGAN whose config differs from its preset (e.g. a blobgan_256x512
    saved with ganzoo 0.1's style_dim 512) names the difference."""
    with torch.device("meta"):
        enc = ganzoo.build("test_blobgan_encoder", blobgan_overrides={"style_dim": 16})
    assert enc.blobgan.config.style_dim == 16
