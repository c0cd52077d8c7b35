"""Evaluation: formulas against closed forms, the evaluate() plumbing, cache, CLI, errors.

Fast tests use the weight-free ``test_random_cnn`` extractor; the Inception path and its
equality with torch-fidelity are in test_metrics_inception.py.
"""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

import ganzoo
from ganzoo.metrics import evaluate
from ganzoo.metrics.base import RealFeatures
from ganzoo.metrics.fidelity import KID, MiFID, frechet_distance, memorization_distance
from ganzoo.models.base import GenerativeModel
from ganzoo.registry import DATASETS

EX = "test_random_cnn"



def _images(n, seed, res=16, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, res, res, generator=g) * (hi - lo) + lo


# -- statistics against closed forms ----------------------------------------------------------
def test_frechet_distance_closed_form_gaussians():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.5, 2, size=d), rng.uniform(0.5, 2, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-9)
    # Commuting non-diagonal covariances: rotate both diagonals by the same orthogonal Q.
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("n_fake, n_real, d", [(64, 64, 2048), (600, 900, 256), (3, 2000, 64),
                                                (500, 500, 64)])
def test_frechet_distance_equals_torch_fidelity(n_fake, n_real, d):
    """The symmetric-eigenproblem FD against torch-fidelity's eigvals(S1 @ S2), on full-rank
    and rank-deficient (N < D: a 64-image check at 2048-d) covariances, from statistics and
    from features with a cached square root."""
    from torch_fidelity.metric_fid import (KEY_METRIC_FID, fid_features_to_statistics,
                                           fid_statistics_to_metric)

    from ganzoo.metrics.fidelity import frechet_distance_to_real

    g = torch.Generator().manual_seed(n_fake + d)
    mix = torch.randn(d, d, generator=g) / math.sqrt(d)  # correlated features, as a CNN's are
    fake = torch.randn(n_fake, d, generator=g).relu() @ mix
    real = (torch.randn(n_real, d, generator=g) * 1.2 + 0.3).relu() @ mix
    s1, s2 = fid_features_to_statistics(fake), fid_features_to_statistics(real)
    want = fid_statistics_to_metric(s1, s2, verbose=False)[KEY_METRIC_FID]
    assert frechet_distance(s1["mu"], s1["sigma"], s2["mu"], s2["sigma"]) == \
        pytest.approx(want, rel=1e-6)
    cached = RealFeatures(real, s2["mu"], s2["sigma"])
    assert frechet_distance_to_real(fake, cached) == pytest.approx(want, rel=1e-6)
    assert frechet_distance_to_real(real, cached) == pytest.approx(0.0, abs=1e-6 * want)


def test_fid_float64_on_a_large_common_offset():
    """Float64 features at 1000 + 0.01 N(0, 1), 2,000 x 64 (issue 31, item 8): a reference mean
    rounded to float32 was 3% off. Reference: numpy's float64 mean and covariance and scipy's
    ``sqrtm``, exact here (well conditioned; 1e-10 from a 50-digit mpmath computation)."""
    import scipy.linalg

    rng = np.random.default_rng(0)
    x = 1000 + 0.01 * rng.standard_normal((2000, 64))
    y = 1000 + 0.01 * rng.standard_normal((2000, 64))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(0) - y.mean(0)
    want = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(
        scipy.linalg.sqrtm(s1 @ s2).real)
    got = ganzoo.build_metric("fid").compute(torch.from_numpy(x), RealFeatures(torch.from_numpy(y)))
    assert got["fid"] == pytest.approx(want, rel=1e-8)
    assert frechet_distance(x.mean(0), s1, y.mean(0), s2) == pytest.approx(want, rel=1e-8)


def _rows_with_statistics(rng, n, mu, s, v):
    """``n`` rows whose mean is ``mu`` and covariance (``N - 1`` divisor) ``V diag(s^2) V^T``,
    exactly but for the rounding of the rows: centred Gaussian rows, orthonormalised (so
    orthogonal to the ones vector too), scaled by ``sqrt(N - 1) s`` and turned by ``V``."""
    z = rng.standard_normal((n, len(s)))
    u = np.linalg.qr(z - z.mean(0))[0]
    return mu + math.sqrt(n - 1) * (u * s) @ v.T


@pytest.mark.parametrize("commuting", [True, False])
def test_fid_float64_on_ill_conditioned_covariances(commuting):
    """Low rank plus 1e-3 noise (issue 31, item 8): 8 directions of spread 10-20, 56 of spread
    1e-3, the two sides' tops close, so the FID is 1% of the traces. An eigenproblem of a
    squared matrix (the square-root route) was 1e-5 off. With the covariances built exactly,
    the reference is ``|mu1 - mu2|^2 + |s1|^2 + |s2|^2 - 2 |B|_*``, ``B = diag(s1) V1^T V2
    diag(s2)``: for commuting covariances ``|s1 - s2|^2``; otherwise numpy's singular values of
    ``B``, each within a few ulps of the largest (the SVD is backward stable; Golub & Van Loan,
    Matrix Computations, 4th ed., section 8.6), and nothing squared."""
    import scipy.linalg

    rng = np.random.default_rng(0)
    d, k = 64, 8
    v1 = np.linalg.qr(rng.standard_normal((d, d)))[0]
    v2 = v1
    if not commuting:  # the same top subspace turned a little, the noise subspace freely
        a = rng.standard_normal((k, k))
        v2 = v1 @ scipy.linalg.block_diag(scipy.linalg.expm(0.1 * (a - a.T)),
                                          np.linalg.qr(rng.standard_normal((d - k, d - k)))[0])
    top = 10 * rng.uniform(1, 2, k)
    s1 = np.r_[top, 1e-3 * rng.uniform(0.5, 1.5, d - k)]
    s2 = np.r_[top * rng.uniform(0.9, 1.1, k), 1e-3 * rng.uniform(0.5, 1.5, d - k)]
    mu1 = rng.standard_normal(d)
    mu2 = mu1 + 0.1 * rng.standard_normal(d)
    x = _rows_with_statistics(rng, 500, mu1, s1, v1)
    y = _rows_with_statistics(rng, 500, mu2, s2, v2)
    b = s1[:, None] * (v1.T @ v2) * s2[None, :]
    want = (mu1 - mu2) @ (mu1 - mu2) + s1 @ s1 + s2 @ s2 - 2 * np.linalg.svd(
        b, compute_uv=False).sum()
    if commuting:
        assert want == pytest.approx((mu1 - mu2) @ (mu1 - mu2) + (s1 - s2) @ (s1 - s2), rel=1e-13)
    got = ganzoo.build_metric("fid").compute(torch.from_numpy(x), RealFeatures(torch.from_numpy(y)))
    assert got["fid"] == pytest.approx(want, rel=1e-9)
    stats = [(z.mean(0), np.cov(z, rowvar=False)) for z in (x, y)]
    assert frechet_distance(*stats[0], *stats[1]) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("n, d, duplicates", [(300, 32, False), (20, 32, False), (300, 32, True)],
                         ids=["gram", "fewer-rows-than-features", "rank-deficient"])
def test_mean_and_factor_is_a_factor_of_np_cov(n, d, duplicates):
    """Every route of ``mean_and_factor`` (Cholesky of the Gram matrix; QR with N <= D; QR when
    the Gram matrix is singular: here 300 rows, 10 distinct) gives ``L L^T = np.cov``."""
    from ganzoo.metrics.gaussian import _gram_factor, mean_and_factor

    rng = np.random.default_rng(0)
    x = rng.standard_normal((10 if duplicates else n, d)) @ rng.standard_normal((d, d))
    if duplicates:
        x = np.repeat(x, n // 10, axis=0)
    if n > d:  # the route taken: the Gram matrix's Cholesky factor unless it is singular
        xc = torch.from_numpy(x - x.mean(0))
        assert (_gram_factor(xc) is None) == duplicates
    mu, factor = mean_and_factor(torch.from_numpy(x))
    assert factor.shape == (d, min(n, d)) and factor.dtype == torch.float64
    cov = np.cov(x, rowvar=False)
    np.testing.assert_allclose((factor @ factor.T).numpy(), cov, rtol=0,
                               atol=1e-12 * np.abs(cov).max())
    np.testing.assert_allclose(mu.numpy(), x.mean(0), rtol=0, atol=1e-13 * np.abs(x).max())


def test_fid_exact_when_one_side_is_near_singular():
    """One side's spread is 3e-6 in 56 of 64 directions, the other's 0.1: the first Gram matrix
    is positive definite but singular to about half the working precision (smallest Cholesky
    pivot 9e-14 of the largest variance, far above rounding), and its rounding moved this FID
    by 9e-11 (1e-15 pivots: up to 6e-9; docs/evaluation.md, "FID"). ``GRAM_PIVOT_MIN`` sends
    that side through QR: exact to 1e-12 against the FID of the exactly built statistics (as
    test_fid_float64_on_ill_conditioned_covariances)."""
    import scipy.linalg

    from ganzoo.metrics import gaussian

    rng = np.random.default_rng(0)
    d, k = 64, 8
    v1 = np.linalg.qr(rng.standard_normal((d, d)))[0]
    a = rng.standard_normal((k, k))
    v2 = v1 @ scipy.linalg.block_diag(scipy.linalg.expm(0.1 * (a - a.T)),
                                      np.linalg.qr(rng.standard_normal((d - k, d - k)))[0])
    top = 10 * rng.uniform(1, 2, k)
    s1 = np.r_[top, 3e-6 * rng.uniform(0.5, 1.5, d - k)]
    s2 = np.r_[top * rng.uniform(0.9, 1.1, k), 0.1 * rng.uniform(0.5, 1.5, d - k)]
    mu = rng.standard_normal(d)
    x = torch.from_numpy(_rows_with_statistics(rng, 500, mu, s1, v1))
    y = torch.from_numpy(_rows_with_statistics(rng, 500, mu, s2, v2))
    want = s1 @ s1 + s2 @ s2 - 2 * np.linalg.svd(
        s1[:, None] * (v1.T @ v2) * s2[None, :], compute_uv=False).sum()
    got = ganzoo.build_metric("fid").compute(x, RealFeatures(y))["fid"]
    assert got == pytest.approx(want, rel=1e-12)
    # the case is the guard's: a Cholesky factor exists, with pivots far below the threshold
    xc = x - x.mean(0)
    factor = gaussian._gram_factor(xc, pivot_min=0.0)
    assert factor is not None
    largest_variance = xc.square().sum(0).max()  # the Gram matrix's largest diagonal entry
    assert factor.diagonal().square().min() < 1e-2 * gaussian.GRAM_PIVOT_MIN * largest_variance
    assert gaussian._gram_factor(xc) is None
    assert gaussian._gram_factor(y - y.mean(0)) is not None


@pytest.mark.parametrize("full_max", [10_000, 100])  # torch-fidelity's full and blockwise paths
def test_precision_recall_direction_with_mode_collapsed_fakes(full_max, monkeypatch):
    """Fakes collapsed onto 5 real points: each is realistic (precision ~1) but they cover
    little of the real data (recall low). Swapping torch-fidelity's argument order (its
    convention changed before, PR #66) gives the opposite and fails here."""
    from ganzoo.metrics import fidelity

    monkeypatch.setattr(fidelity, "PRC_FULL_MAX", full_max)
    g = torch.Generator().manual_seed(0)
    real = torch.randn(400, 8, generator=g)
    fake = real[torch.arange(400) % 5] + 0.01 * torch.randn(400, 8, generator=g)
    out = ganzoo.build_metric("prc").compute(fake, RealFeatures(real))
    assert out["precision"] > 0.95 and out["recall"] < 0.2, out


def test_fid_from_samples_approaches_closed_form():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g)
    y = torch.randn(20000, 3, generator=g) * 2 + torch.tensor([1.0, 0.0, -1.0])
    expected = 2.0 + 3 * (1 - math.sqrt(4)) ** 2
    out = ganzoo.build_metric("fid").compute(x, RealFeatures(y))["fid"]
    assert out == pytest.approx(expected, rel=0.05)


def test_kid_point_masses_exact():
    # All kernel entries are constant, so the unbiased MMD^2 is k(a,a) + k(b,b) - 2 k(a,b).
    d = 4
    a, b = torch.full((10, d), 0.5), torch.full((10, d), -0.25)

    def k(x, y):
        return (float(x @ y) / d + 1) ** 3

    expected = k(a[0], a[0]) + k(b[0], b[0]) - 2 * k(a[0], b[0])
    out = KID(subsets=3, subset_size=5).compute(a, RealFeatures(b))
    assert out["kid_mean"] == pytest.approx(expected, rel=1e-5)
    assert out["kid_std"] == pytest.approx(0.0, abs=1e-6)


def test_kid_linear_kernel_gaussian_mean_shift():
    # With degree 1, MMD^2 = ||mu1 - mu2||^2 / d exactly in expectation (unbiased estimator).
    g = torch.Generator().manual_seed(1)
    d = 8
    shift = torch.linspace(-1, 1, d)
    x = torch.randn(2000, d, generator=g)
    y = torch.randn(2000, d, generator=g) + shift
    out = KID(subsets=10, subset_size=500, degree=1).compute(x, RealFeatures(y))
    assert out["kid_mean"] == pytest.approx(float(shift.pow(2).sum()) / d, rel=0.1)
    z = torch.randn(2000, d, generator=g)
    same = KID(subsets=10, subset_size=500).compute(x, RealFeatures(z))
    assert abs(same["kid_mean"]) < 5 * same["kid_std"] + 1e-6


def test_mifid_formula_and_threshold():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(50, 16, generator=g)
    # Orthogonal-ish random fakes: far from every real row -> no penalty, MiFID == FID.
    fake = torch.randn(30, 16, generator=g)
    m = MiFID()
    out = m.compute(fake, RealFeatures(real))
    fid = ganzoo.build_metric("fid").compute(fake, RealFeatures(real))["fid"]
    assert out["mifid_distance"] >= 0.1
    assert out["mifid"] == pytest.approx(fid, rel=1e-9)
    # Sign does not matter (|cos|), zero rows are dropped.
    assert memorization_distance(-real[:5], real) == pytest.approx(0.0, abs=1e-9)
    with_zero = torch.cat([real[:5], torch.zeros(1, 16)])
    assert memorization_distance(with_zero, real) == pytest.approx(0.0, abs=1e-9)
    # Below eps the FID is divided by the distance.
    near = real[:30] + 0.05 * torch.randn(30, 16, generator=g)
    out = m.compute(near, RealFeatures(real))
    fid = ganzoo.build_metric("fid").compute(near, RealFeatures(real))["fid"]
    d = memorization_distance(near, real)
    assert d < 0.1
    assert out["mifid"] == pytest.approx(fid / (d + 1e-14), rel=1e-9)


def test_mifid_copy_of_training_images_scores_worse_than_its_fid():
    train = _images(40, 0)
    copy = train[:20].clone()  # memorised: a subset of the training images
    res = evaluate(copy, train, metrics=["fid", "mifid"], n=20, n_real=40, batch_size=8,
                   feature_extractor=EX, cache=False)["metrics"]
    assert res[f"mifid_distance@{EX}"] == pytest.approx(0.0, abs=1e-6)
    assert res[f"mifid@{EX}"] > 1e6 * res[f"fd@{EX}"] > 0
    fresh = evaluate(_images(20, 7), train, metrics=["fid", "mifid"], n=20, n_real=40,
                     batch_size=8, feature_extractor=EX, cache=False)["metrics"]
    assert fresh[f"mifid@{EX}"] < res[f"mifid@{EX}"]


# -- reconstruction metrics ------------------------------------------------------------------
def test_psnr_closed_form():
    x = torch.full((2, 3, 8, 8), 0.5)
    y = x + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    vals = ganzoo.build_metric("psnr").per_pair(y, x)
    assert vals.tolist() == pytest.approx([20.0, 40.0], rel=1e-6)
    assert float(ganzoo.build_metric("psnr").per_pair(x, x)[0]) == pytest.approx(100.0)


def test_ssim_closed_form_and_reference():
    from scipy.signal import convolve2d

    m = ganzoo.build_metric("ssim")
    # Constant images: the variance terms vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 0.7, 0.3
    x, y = torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b)
    c1 = 0.01**2
    assert float(m.per_pair(x, y)) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1))
    # Random images against a direct scipy implementation of the same definition.
    u, v = _images(1, 1, 24, 0, 1), _images(1, 2, 24, 0, 1)
    v = (0.6 * u + 0.4 * v)
    ax = np.arange(11) - 5.0
    w = np.exp(-ax**2 / (2 * 1.5**2))
    w = np.outer(w, w) / np.outer(w, w).sum()
    vals = []
    for c in range(3):
        p, q = u[0, c].double().numpy(), v[0, c].double().numpy()

        def f(t):
            return convolve2d(t, w, mode="valid")

        mp, mq = f(p), f(q)
        spp, sqq, spq = f(p * p) - mp**2, f(q * q) - mq**2, f(p * q) - mp * mq
        c2 = 0.03**2
        vals.append((((2 * mp * mq + c1) * (2 * spq + c2))
                     / ((mp**2 + mq**2 + c1) * (spp + sqq + c2))).mean())
    assert float(m.per_pair(v, u)) == pytest.approx(np.mean(vals), rel=1e-9)
    assert float(m.per_pair(u, u)) == pytest.approx(1.0)


# -- LPIPS -----------------------------------------------------------------------------------
def test_lpips_matches_torch_fidelity_vgg_with_same_weights(monkeypatch):
    from torch_fidelity import sample_similarity_lpips as tfl

    from ganzoo.metrics.lpips import LPIPS

    ours = LPIPS("vgg", pretrained=False, seed=3)
    state = ours.full_state_dict()
    lin = {k: v for k, v in state.items() if k.startswith("lin")}

    class _VGG(nn.Module):  # only .features is read by torch-fidelity
        def __init__(self):
            super().__init__()
            from torchvision.models.vgg import cfgs, make_layers

            self.features = make_layers(cfgs["D"])
            flat = {}
            for block in ours.net:  # sliced Sequentials keep torchvision's layer numbers
                flat.update(block.state_dict())
            self.features.load_state_dict(flat)

    monkeypatch.setattr(tfl, "load_state_dict_from_url", lambda *a, **k: lin)
    monkeypatch.setattr(tfl, "torchvision_load_pretrained_vgg16", lambda *a, **k: _VGG())
    theirs = tfl.SampleSimilarityLPIPS("lpips-vgg16")
    x = (_images(3, 0, 32) * 127.5 + 127.5).round().to(torch.uint8)
    y = (_images(3, 1, 32) * 127.5 + 127.5).round().to(torch.uint8)
    d_theirs = theirs(x, y)
    d_ours = ours(x.float() / 127.5 - 1, y.float() / 127.5 - 1)
    assert torch.allclose(d_ours, d_theirs, rtol=1e-4, atol=1e-6)
    assert float(d_ours.min()) > 0


def test_lpips_diversity_is_mean_over_pairs_and_weights_round_trip(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    from ganzoo.metrics.lpips import LPIPS

    net = LPIPS(pretrained=False, seed=1)
    path = tmp_path / "lpips.safetensors"
    save_file(net.full_state_dict(), str(path))
    monkeypatch.setenv("GANZOO_LPIPS_WEIGHTS", str(path))
    imgs = _images(5, 4, 32)
    metric = ganzoo.build_metric("lpips_diversity", max_samples=5, min_size=32)  # env weights
    out = metric.compute(imgs)["lpips_diversity"]
    brute = np.mean([float(net(imgs[i:i + 1], imgs[j:j + 1]))
                     for i in range(5) for j in range(i + 1, 5)])
    assert out == pytest.approx(brute, rel=1e-5)
    assert metric.config()["weights"] == str(path)
    same = metric.compute(imgs[:1].expand(4, -1, -1, -1))["lpips_diversity"]
    assert same == pytest.approx(0.0, abs=1e-7)


def test_lpips_offline_error(monkeypatch, tmp_path):
    from ganzoo.losses import lpips
    from ganzoo.metrics.extractors import FeatureExtractorWeightsError

    monkeypatch.delenv("GANZOO_LPIPS_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(lpips, "LPIPS_LIN_URLS", {"alex": "http://127.0.0.1:9/alex.pth"})
    with pytest.raises(FeatureExtractorWeightsError, match="GANZOO_LPIPS_WEIGHTS"):
        lpips.LPIPS("alex")


# -- evaluate(): inputs, batch size, outputs, cache -------------------------------------------
def test_batch_size_independence_and_protocol():
    fake, real = _images(23, 0), _images(31, 1, lo=-0.8, hi=0.9)
    kw = dict(metrics=["fid", "kid", "prc", "psnr"], n=23, n_real=31, feature_extractor=EX,
              cache=False, metric_kwargs={"kid": {"subset_size": 10}})
    results = [evaluate(fake, real, batch_size=b, **kw) for b in (1, 5, 23)]
    for r in results[1:]:
        for k, v in results[0]["metrics"].items():
            assert r["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
    p = results[0]["protocol"]
    assert p["implementation"] == "torch-fidelity" and p["implementation_version"] == "0.4.0"
    assert p["feature_extractor"] == EX and p["resizer"] == "torch"
    assert p["n_fake"] == 23 and p["n_real"] == 31 and p["resolution"] == [16, 16]
    assert p["metrics"]["kid"]["subset_size_used"] == 10
    # Values computed with a non-Inception extractor never read as plain "fid".
    assert "fid" not in results[0]["metrics"] and f"fd@{EX}" in results[0]["metrics"]
    assert "psnr" in results[0]["metrics"]


def test_image_folder_equals_tensor(tmp_path):
    import torchvision.utils as vutils

    imgs = _images(6, 2, 20)
    for i, im in enumerate(imgs):
        vutils.save_image((im + 1) / 2, tmp_path / f"{i:03d}.png")
    ref = _images(9, 3, 20)
    a = evaluate(imgs, ref, metrics=["fid", "ssim"], n=6, feature_extractor=EX, cache=False)
    b = evaluate(str(tmp_path), ref, metrics=["fid", "ssim"], n=6, feature_extractor=EX,
                 cache=False)
    assert b["metrics"][f"fd@{EX}"] == a["metrics"][f"fd@{EX}"]
    assert b["metrics"]["ssim"] == pytest.approx(a["metrics"]["ssim"], abs=2e-3)
    assert b["protocol"]["generated"].startswith("folder:")


class _AttrDataset(torch.utils.data.Dataset):
    """A tiny attribute dataset with ``subset`` views, counting reads per view."""

    reads: collections.Counter = collections.Counter()

    def __init__(self, subset=None, resolution=16, size=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.subset, self.size = subset, size
        self.with_ = torch.rand(size, 3, resolution, resolution, generator=g) * 2 - 1
        self.without = torch.rand(size, 3, resolution, resolution, generator=g) * 1.2 - 0.6

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        _AttrDataset.reads[self.subset] += 1
        if self.subset == "with":
            return {"image": self.with_[i], "attrs": torch.tensor(1)}
        if self.subset == "without":
            return {"image": self.without[i], "attrs": torch.tensor(0)}
        return {"image_with": self.with_[i], "image_without": self.without[i]}


@pytest.fixture
def attr_dataset():
    name = "test_metrics_attr"

    def factory(**kwargs):
        return _AttrDataset(**kwargs)

    DATASETS.register(factory, name=name)
    _AttrDataset.reads.clear()
    yield name
    DATASETS._builtins.pop(name, None)


@dataclass
class _SwapConfig:
    gain: float = 0.5


class _FakeSwap(GenerativeModel):
    """GeneGAN-shaped: Bu from the without-image, A0 from the with-image."""

    image_size = (16, 16)
    channels = 3

    config_class = _SwapConfig
    family = "fake_swap"
    task = "transfer"
    batch_keys = ("image_with", "image_without")
    eval_references = {"bu": {"subset": "with"}, "a0": {"subset": "without"}}

    def __init__(self, config):
        super().__init__(config)
        self.net = nn.Linear(1, 1)

    @torch.no_grad()
    def generate(self, batch, n, generator=None):
        assert not self.training
        return {"bu": (batch["image_without"] * self.config.gain).clamp(-1, 1),
                "a0": (batch["image_with"] * self.config.gain).clamp(-1, 1)}


def test_task_outputs_scored_against_their_reference_views(attr_dataset):
    model = _FakeSwap.from_config()
    model.train()
    res = evaluate(model, attr_dataset, metrics=["fid", "psnr"], n=24, batch_size=10,
                   feature_extractor=EX, cache=False, dataset_kwargs={"size": 24}, step=7)
    ds = _AttrDataset(size=24)
    direct_bu = evaluate(ds.without * 0.5, ds.with_, metrics=["fid", "psnr"], n=24,
                         feature_extractor=EX, cache=False)["metrics"]
    direct_a0 = evaluate(ds.with_ * 0.5, ds.without, metrics=["fid", "psnr"], n=24,
                         feature_extractor=EX, cache=False)["metrics"]
    m = res["metrics"]
    assert set(m) == {f"fd@{EX}/bu", f"fd@{EX}/a0", "psnr/bu", "psnr/a0"}
    assert m[f"fd@{EX}/bu"] == pytest.approx(direct_bu[f"fd@{EX}"], rel=1e-6)
    assert m[f"fd@{EX}/a0"] == pytest.approx(direct_a0[f"fd@{EX}"], rel=1e-6)
    assert m["psnr/bu"] == pytest.approx(direct_bu["psnr"], rel=1e-6)
    assert model.training  # restored after evaluation
    p = res["protocol"]
    assert p["step"] == 7 and p["model"]["task"] == "transfer"
    assert p["outputs"]["bu"]["reference_view"] == {"subset": "with"}
    assert "subset='with'" in p["outputs"]["bu"]["reference"]


class _FakeTranslate(GenerativeModel):
    """CUT-shaped: translates domain A, scored against domain B."""

    image_size = (16, 16)
    channels = 3

    config_class = _SwapConfig
    family = "fake_translate"
    task = "translate"
    batch_keys = ("image_a", "image_b")
    eval_references = {"translated": {"domain": "b"}}

    def __init__(self, config):
        super().__init__(config)
        self.net = nn.Linear(1, 1)

    @torch.no_grad()
    def generate(self, batch, n, generator=None):
        return {"translated": batch["image_a"][:n].flip(1) * self.config.gain}


def test_embedded_unpaired_dataset_translation_against_domain_b():
    kw = dict(metrics=["fid"], n=10, batch_size=4, feature_extractor=EX, cache=False)
    dkw = {"resolution": 16, "size": 10, "augment": "structure"}
    res = evaluate(_FakeTranslate.from_config(), "shapes_unpaired", dataset_kwargs=dkw, **kw)
    a = torch.stack([ganzoo.build_dataset("shapes_unpaired", resolution=16, size=10,
                                          domain="a")[i]["image"] for i in range(10)])
    b = torch.stack([ganzoo.build_dataset("shapes_unpaired", resolution=16, size=10,
                                          domain="b")[i]["image"] for i in range(10)])
    direct = evaluate(a.flip(1) * 0.5, b, **kw)["metrics"][f"fd@{EX}"]
    assert res["metrics"][f"fd@{EX}/translated"] == pytest.approx(direct, rel=1e-6)
    assert res["protocol"]["dataset_kwargs"]["augment"] == "none"
    assert res["protocol"]["outputs"]["translated"]["reference_view"] == {"domain": "b"}


class _FakeUncond(GenerativeModel):
    image_size = (16, 16)
    channels = 3

    config_class = _SwapConfig
    family = "fake_uncond"

    def __init__(self, config):
        super().__init__(config)
        self.bias = nn.Parameter(torch.zeros(()))

    @torch.no_grad()
    def sample(self, n, generator=None):
        return (torch.rand(n, 3, 16, 16, generator=generator) * 2 - 1) * self.config.gain


def test_preset_name_and_saved_folder_are_sampled_like_the_object(tmp_path):
    from ganzoo.registry import MODELS

    def test_metrics_uncond(**kwargs):
        return _FakeUncond.from_config(preset="test_metrics_uncond", **kwargs)

    MODELS.register(test_metrics_uncond)
    try:
        model = test_metrics_uncond()
        model.save_pretrained(tmp_path / "saved")
        kw = dict(metrics=["fid"], n=9, batch_size=4, feature_extractor=EX, cache=False)
        ref = _images(9, 3)
        by_object = evaluate(model, ref, **kw)["metrics"]
        by_name = evaluate("test_metrics_uncond", ref, **kw)
        by_folder = evaluate(str(tmp_path / "saved"), ref, **kw)
        assert by_name["metrics"] == by_object == by_folder["metrics"]
        assert by_folder["protocol"]["generated"] == "model:test_metrics_uncond"
        # A different seed draws other samples.
        assert evaluate(model, ref, seed=1, **kw)["metrics"] != by_object
    finally:
        MODELS._builtins.pop("test_metrics_uncond", None)


def test_cache_hit_equals_miss_and_skips_the_reference(attr_dataset, tmp_path):
    model = _FakeUncond.from_config()
    kw = dict(metrics=["fid", "kid"], n=20, batch_size=8, feature_extractor=EX,
              cache_dir=tmp_path, dataset_kwargs={"subset": "with"},
              metric_kwargs={"kid": {"subset_size": 10}})
    first = evaluate(model, attr_dataset, **kw)
    assert first["protocol"]["real_stats_cache"] == "miss"
    reads = _AttrDataset.reads["with"]
    assert reads >= 20
    files = list((tmp_path / "real_stats").glob("*.safetensors"))
    assert len(files) == 1
    second = evaluate(model, attr_dataset, **kw)
    assert second["protocol"]["real_stats_cache"] == "hit"
    assert _AttrDataset.reads["with"] - reads <= 1  # one item to read the resolution
    assert second["metrics"] == first["metrics"]
    # Another N is another key.
    third = evaluate(model, attr_dataset, **{**kw, "n": 16})
    assert third["protocol"]["real_stats_cache"] == "miss"
    assert len(list((tmp_path / "real_stats").glob("*.safetensors"))) == 2


def test_cache_env_var_and_file_contents(attr_dataset, tmp_path, monkeypatch):
    from safetensors import safe_open

    monkeypatch.setenv("GANZOO_CACHE", str(tmp_path / "envcache"))
    evaluate(_images(12, 5), attr_dataset, metrics=["fid"], n=12, feature_extractor=EX,
             dataset_kwargs={"subset": "without", "size": 12}, resizer="pil_bicubic")
    (path,) = (tmp_path / "envcache" / "real_stats").glob("*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        key = json.loads(f.metadata()["key"])
        assert f.metadata()["format"] == "ganzoo-real-stats-v2"
        features = f.get_tensor("features")
        assert features.shape == (12, 64)
        # Float64 statistics of the features, and the covariance factor the Fréchet distance
        # reuses.
        mu, sigma, factor = (f.get_tensor(k) for k in ("mu", "sigma", "sigma_factor"))
    assert mu.dtype == sigma.dtype == factor.dtype == torch.float64
    torch.testing.assert_close(mu, features.double().mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sigma, torch.from_numpy(np.cov(features.double().numpy(),
                                                              rowvar=False)))
    torch.testing.assert_close(factor @ factor.T, sigma, rtol=1e-10, atol=1e-12)
    assert key["n"] == 12 and key["resizer"] == "pil_bicubic" and key["extractor"] == EX
    assert key["reference"]["dataset"] == attr_dataset
    assert key["reference"]["kwargs"]["subset"] == "without"


def test_cache_format_v1_entry_is_recomputed_from_its_features(attr_dataset, tmp_path):
    """An entry written before format v2 (float32 mean, symmetric square root instead of the
    factor) is a hit for its features only: one warning, the statistics recomputed in float64,
    the same FID as a fresh entry, and the file rewritten as v2."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ganzoo.metrics.fidelity import psd_sqrt

    kw = dict(metrics=["fid"], n=12, feature_extractor=EX, cache_dir=tmp_path,
              dataset_kwargs={"subset": "without", "size": 12})
    fresh = evaluate(_images(12, 5), attr_dataset, **kw)
    (path,) = (tmp_path / "real_stats").glob("*.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta, features, sigma = f.metadata(), f.get_tensor("features"), f.get_tensor("sigma")
    save_file({"features": features, "mu": features.mean(0), "sigma": sigma,
               "sqrt_sigma": psd_sqrt(sigma)},
              str(path), metadata={**meta, "format": "ganzoo-real-stats-v1"})
    with pytest.warns(UserWarning, match="ganzoo-real-stats-v1, not ganzoo-real-stats-v2"):
        upgraded = evaluate(_images(12, 5), attr_dataset, **kw)
    assert upgraded["protocol"]["real_stats_cache"] == "hit"
    assert upgraded["metrics"] == pytest.approx(fresh["metrics"], rel=1e-12)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["format"] == "ganzoo-real-stats-v2"
        assert f.get_tensor("mu").dtype == torch.float64 and "sigma_factor" in f.keys()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = evaluate(_images(12, 5), attr_dataset, **kw)
    assert not [w for w in caught if "ganzoo-real-stats" in str(w.message)]
    assert again["protocol"]["real_stats_cache"] == "hit"
    assert again["metrics"] == upgraded["metrics"]


# -- errors and the entry points ----------------------------------------------------------------
def test_missing_inception_weights_one_clear_error(tmp_path, monkeypatch):
    from ganzoo.metrics import extractors
    from ganzoo.metrics.extractors import FeatureExtractorWeightsError

    monkeypatch.delenv("GANZOO_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(extractors, "INCEPTION_URL", "http://127.0.0.1:9/weights-inception.pth")
    with pytest.raises(FeatureExtractorWeightsError) as err:
        evaluate(_images(4, 0), _images(4, 1), metrics=["fid"], n=4, cache=False)
    msg = str(err.value)
    assert "GANZOO_FID_WEIGHTS" in msg and "feature_extractor_weights" in msg
    assert "weights-inception.pth" in msg and err.value.__cause__ is None
    monkeypatch.setenv("GANZOO_FID_WEIGHTS", str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        evaluate(_images(4, 0), _images(4, 1), metrics=["fid"], n=4, cache=False)


def test_cli_writes_protocol_json(tmp_path, capsys):
    import torchvision.utils as vutils

    from ganzoo.metrics.cli import main

    for name, seed in (("gen", 0), ("ref", 1)):
        (tmp_path / name).mkdir()
        for i, im in enumerate(_images(8, seed)):
            vutils.save_image((im + 1) / 2, tmp_path / name / f"{i}.png")
    out = tmp_path / "result.json"
    from ganzoo.cli import main as ganzoo_main  # `ganzoo eval ...` dispatches to metrics.cli

    rc = ganzoo_main(["eval", str(tmp_path / "gen"), "--ref", str(tmp_path / "ref"),
                      "--metric", "fid", "--metric", "kid", "--n", "8", "--batch-size", "3",
                      "--feature-extractor", EX, "--metric-kwarg", "kid.subset_size=4",
                      "--step", "100", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["metrics"]) == {f"fd@{EX}", f"kid_mean@{EX}", f"kid_std@{EX}"}
    assert data["protocol"]["step"] == 100 and data["protocol"]["n_real"] == 8
    assert data["protocol"]["real_stats_cache"] == "miss"
    assert json.loads(capsys.readouterr().out) == data
    rc = main([str(tmp_path / "gen"), "--ref", str(tmp_path / "nowhere"), "--n", "8"])
    assert rc == 2 and "nowhere" in capsys.readouterr().err  # bad input: the one scheme


def test_unknown_inputs_and_metrics_are_clear():
    with pytest.raises(KeyError, match="Did you mean"):
        evaluate(_images(4, 0), _images(4, 1), metrics=["fidd"], n=4)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        evaluate("no_such_thing_xyz", _images(4, 1), metrics=["fid"], n=4, feature_extractor=EX)
    with pytest.raises(ValueError, match="reference"):
        evaluate(_images(4, 0), None, metrics=["fid"], n=4, feature_extractor=EX)
    with pytest.raises(KeyError, match="Unknown feature extractor"):
        evaluate(_images(4, 0), _images(4, 1), metrics=["fid"], n=4, feature_extractor="nope")


def test_registry_and_light_import():
    assert {"fid", "kid", "isc", "prc", "mifid", "lpips_diversity", "psnr", "ssim"} <= set(
        ganzoo.list_metrics())
    code = ("import sys, ganzoo, ganzoo.metrics as m; ganzoo.list_metrics(); "
            "assert m.evaluate.__module__ == 'ganzoo.metrics.evaluation'; "
            "assert 'torch_fidelity' not in sys.modules, 'torch_fidelity imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_progress_bars_follow_the_flag(capsys):
    a, b = _images(16, 0), _images(16, 1)
    kw = dict(metrics=["fid"], n=16, batch_size=4, feature_extractor=EX, cache=False)
    evaluate(a, b, progress=True, **kw)
    err = capsys.readouterr().err
    assert "features:" in err and "reference features:" in err and "/4 " in err
    evaluate(a, b, progress=False, **kw)
    assert capsys.readouterr().err == ""
    evaluate(a, b, **kw)  # default: only on a terminal, and pytest's stderr is not one
    assert capsys.readouterr().err == ""
