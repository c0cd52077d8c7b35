"""PatchNCE against a direct computation of its formula, and its numerical safeguards."""

import math

import pytest
import torch

import ganzoo
from ganzoo.losses.patchnce import PatchNCELoss, l2_normalize, nonfinite_flag, patchnce_loss

T = 0.07


def _fixed_features():
    # 2 images x 3 patches x 4 dims, fixed values (not random) so the test is exact.
    q = torch.tensor([[1.0, 0.0, 0.5, -0.2], [0.1, 1.0, -0.3, 0.0], [0.0, 0.2, 1.0, 0.4],
                      [-1.0, 0.3, 0.0, 0.2], [0.5, -0.5, 0.5, -0.5], [0.0, 0.0, 0.3, 1.0]])
    k = torch.tensor([[0.9, 0.1, 0.4, 0.0], [0.0, 1.1, -0.2, 0.1], [0.1, 0.1, 0.9, 0.5],
                      [-0.8, 0.2, 0.1, 0.1], [0.4, -0.6, 0.6, -0.3], [0.1, -0.1, 0.2, 0.9]])
    return q, k


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _direct(q, k, groups):
    """-log softmax of the positive (diagonal) over the negatives of the same group, in plain
    Python floats."""
    q, k = [_unit(v) for v in q.tolist()], [_unit(v) for v in k.tolist()]
    per = len(q) // groups
    out = []
    for g in range(groups):
        for i in range(per):
            qi = q[g * per + i]
            logits = [sum(a * b for a, b in zip(qi, k[g * per + j])) / T for j in range(per)]
            out.append(-logits[i] + math.log(sum(math.exp(s) for s in logits)))
    return out


def test_patchnce_matches_direct_formula():
    q, k = _fixed_features()
    got = patchnce_loss(q, k, batch_size=2, temperature=T, reduction="none")
    want = torch.tensor(_direct(q, k, groups=2))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(patchnce_loss(q, k, batch_size=2), want.mean(), rtol=1e-5,
                               atol=1e-5)


def test_patchnce_negatives_from_minibatch_uses_all_patches():
    q, k = _fixed_features()
    got = patchnce_loss(q, k, batch_size=2, negatives_from_minibatch=True, reduction="none")
    torch.testing.assert_close(got, torch.tensor(_direct(q, k, groups=1)), rtol=1e-5, atol=1e-5)
    # and it differs from the per-image negatives
    assert not torch.allclose(got, patchnce_loss(q, k, batch_size=2, reduction="none"))


def test_patchnce_agrees_with_reference_layout():
    """The reference puts the positive first and fills the diagonal negative with -10; the
    difference is a term of exp(-10 / T), invisible in float32."""
    q, k = _fixed_features()
    qn, kn = l2_normalize(q), l2_normalize(k)
    pos = (qn * kn).sum(1, keepdim=True)
    neg = torch.bmm(qn.view(2, 3, 4), kn.view(2, 3, 4).transpose(1, 2))
    neg = neg.masked_fill(torch.eye(3, dtype=torch.bool)[None], -10.0).view(-1, 3)
    logits = torch.cat([pos, neg], 1) / T
    ref = torch.nn.functional.cross_entropy(logits, torch.zeros(6, dtype=torch.long),
                                            reduction="none")
    torch.testing.assert_close(patchnce_loss(q, k, batch_size=2, reduction="none"), ref,
                               rtol=1e-5, atol=1e-5)


def test_patchnce_keys_are_detached():
    q, k = _fixed_features()
    q.requires_grad_(True)
    k.requires_grad_(True)
    patchnce_loss(q, k, batch_size=2).backward()
    assert q.grad is not None and torch.isfinite(q.grad).all()
    assert k.grad is None


def test_all_zero_features_stay_finite():
    q = torch.zeros(8, 16, requires_grad=True)
    k = torch.zeros(8, 16)
    loss = patchnce_loss(q, k, batch_size=2)
    # all logits are 0: every patch is one of 4 equally likely choices
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(math.log(4), rel=1e-6)
    loss.backward()
    assert torch.isfinite(q.grad).all()


def test_logit_clamp_keeps_huge_unnormalised_features_finite():
    q = torch.full((4, 8), 1e19)
    k = torch.full((4, 8), 1e19)
    q[0, 0] = -1e19
    unclamped = patchnce_loss(q, k, batch_size=1, normalize=False, clamp=None)
    assert not torch.isfinite(unclamped)  # without the clamp, q.k / T overflows
    clamped = patchnce_loss(q, k, batch_size=1, normalize=False, clamp=50.0)
    assert torch.isfinite(clamped)


def test_nan_features_are_flagged_not_hidden():
    q, k = _fixed_features()
    q[0, 0] = float("nan")
    loss = patchnce_loss(q, k, batch_size=2)
    assert torch.isnan(loss)  # passed on to the trainer's non-finite guard
    assert nonfinite_flag(loss).item() == 1.0
    assert nonfinite_flag(patchnce_loss(*_fixed_features(), batch_size=2)).item() == 0.0


def test_patchnce_input_checks():
    q, k = _fixed_features()
    with pytest.raises(ValueError, match="same shape"):
        patchnce_loss(q, k[:4], batch_size=2)
    with pytest.raises(ValueError, match="split"):
        patchnce_loss(q, k, batch_size=4)
    with pytest.raises(ValueError, match="temperature"):
        patchnce_loss(q, k, batch_size=2, temperature=0.0)


def test_patchnce_is_registered():
    loss = ganzoo.build_loss("patchnce", temperature=T)
    assert isinstance(loss, PatchNCELoss)
    q, k = _fixed_features()
    torch.testing.assert_close(loss(q, k, batch_size=2), patchnce_loss(q, k, batch_size=2))


@pytest.mark.parametrize("dtype,want", [(torch.float64, torch.float64),
                                        (torch.float32, torch.float32),
                                        (torch.bfloat16, torch.float32)])
def test_patchnce_softmax_runs_in_at_least_float32(dtype, want):
    """Half-precision logits are raised to float32 for the softmax; float64 stays float64, so
    a float64 run (tools/compare_cut.py --train-dtype float64) is exact to float64."""
    q, k = _fixed_features()
    loss = patchnce_loss(q.to(dtype), k.to(dtype), batch_size=2, eps=0.0, reduction="none")
    assert loss.dtype == want
    if dtype == torch.float64:
        exact = torch.tensor(_direct(q.double(), k.double(), 2), dtype=torch.float64)
        torch.testing.assert_close(loss, exact, rtol=1e-12, atol=1e-12)
