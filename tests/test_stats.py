"""ganzoo.experiments.stats: spreads over seeds, Welch's and the bootstrap interval of a
difference of means, the verdict in words, and bench_quality's table built on them.

scipy is the reference where one exists (``ttest_ind(equal_var=False)``, ``t.ppf``,
``special.betainc``, ``bootstrap``); the module itself never imports it."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from ganzoo.experiments import stats
from ganzoo.experiments.stats import (Interval, bootstrap_interval, choose_method, compare,
                                      difference_interval, format_interval, format_summary,
                                      format_values, summarize, t_cdf, t_quantile,
                                      welch_interval)

from conftest import load_benchmark


# (experiment, baseline): unequal n, unequal variances, one side without spread, a negative and
# a positive difference, FD-sized values as bench_quality gives them.
WELCH_CASES = [
    ([301.2, 320.5, 327.2], [329.2, 340.1, 318.0]),
    ([150.1, 151.0, 149.5], [170.2, 171.0, 169.9, 168.4, 172.3]),
    ([1.0, 2.0], [0.0, 10.0, 20.0, 5.0, 7.5, 3.0, 12.0]),
    ([5.0, 5.0, 5.0, 5.0], [4.0, 6.5, 3.0]),
    ([0.12, 0.31, 0.27, 0.19, 0.22, 0.40], [0.10, 0.11]),
    ([101.2, 80.0, 122.4], [95.0, 90.1, 99.9]),
]


# -- summaries ------------------------------------------------------------------------------------
def test_summary_is_the_mean_sample_sd_and_the_values_in_order():
    s = summarize([3.0, 1.0, 2.0, 6.0])
    assert s.n == 4
    assert s.mean == pytest.approx(3.0, abs=1e-15)
    assert s.std == pytest.approx(float(np.std([3.0, 1.0, 2.0, 6.0], ddof=1)), rel=1e-14)
    assert s.values == (3.0, 1.0, 2.0, 6.0)
    assert s.to_dict() == {"n": 4, "mean": s.mean, "std": s.std, "values": [3.0, 1.0, 2.0, 6.0]}


def test_summary_of_one_seed_has_no_spread_and_equal_values_have_exactly_zero():
    assert summarize([7.5]).std is None
    assert summarize([7.5]).mean == 7.5
    assert summarize([0.1, 0.1, 0.1]).std == 0.0  # exact, not a rounding residue


@pytest.mark.parametrize("bad", [[], [1.0, math.nan], [math.inf, 2.0]])
def test_summary_refuses_no_values_and_non_finite_ones(bad):
    with pytest.raises(ValueError):
        summarize(bad)


# -- Student's t ----------------------------------------------------------------------------------
DFS = [0.5, 1.0, 1.37, 2.0, 2.5, 3.0, 3.85, 4.0, 7.2, 10.0, 17.25, 30.0, 100.0, 1000.0]
PS = [0.5, 0.6, 0.75, 0.9, 0.95, 0.975, 0.99, 0.995, 0.9995, 0.025, 0.001]


@pytest.mark.parametrize("df", DFS)
def test_t_quantile_matches_scipy_over_integer_and_fractional_df(df):
    scipy_stats = pytest.importorskip("scipy.stats")
    for p in PS:
        assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-12, abs=1e-13)


@pytest.mark.parametrize("df", DFS)
def test_t_cdf_matches_scipy(df):
    scipy_stats = pytest.importorskip("scipy.stats")
    for t in [-40.0, -2.5, -1.0, -0.1, 0.0, 0.3, 1.96, 4.0, 63.7]:
        assert t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), rel=1e-12, abs=1e-15)


def test_regularized_beta_matches_scipy():
    special = pytest.importorskip("scipy.special")
    for a, b in [(0.5, 0.5), (1.5, 0.5), (2.0, 3.0), (25.0, 0.5), (0.25, 8.0)]:
        for x in [1e-6, 0.01, 0.2, 0.5, 0.77, 0.999]:
            assert stats.regularized_beta(x, a, b) == pytest.approx(
                special.betainc(a, b, x), rel=1e-12, abs=1e-15)


def test_t_quantile_is_symmetric_and_zero_at_the_median():
    assert t_quantile(0.5, 3.0) == 0.0
    assert t_quantile(0.025, 4.4) == -t_quantile(0.975, 4.4)
    # the classical table values, without scipy
    assert t_quantile(0.975, 1.0) == pytest.approx(12.706204736174698, rel=1e-12)
    assert t_quantile(0.975, 2.0) == pytest.approx(4.302652729749464, rel=1e-12)


@pytest.mark.parametrize("p, df", [(0.0, 3.0), (1.0, 3.0), (0.9, 0.0), (0.9, -1.0)])
def test_t_quantile_refuses_bad_arguments(p, df):
    with pytest.raises(ValueError):
        t_quantile(p, df)


# -- Welch's interval -----------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", WELCH_CASES)
@pytest.mark.parametrize("confidence", [0.95, 0.9])
def test_welch_interval_matches_scipy_ttest_ind(a, b, confidence):
    scipy_stats = pytest.importorskip("scipy.stats")
    with warnings.catch_warnings():  # [5, 5, 5, 5]: scipy warns of "catastrophic cancellation"
        warnings.simplefilter("ignore", RuntimeWarning)
        res = scipy_stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(confidence)
    ours = welch_interval(a, b, confidence)
    assert ours.method == "welch"
    assert ours.low == pytest.approx(ci.low, rel=1e-10, abs=1e-10)
    assert ours.high == pytest.approx(ci.high, rel=1e-10, abs=1e-10)
    assert ours.df == pytest.approx(res.df, rel=1e-12)
    assert ours.difference == pytest.approx(np.mean(a) - np.mean(b), rel=1e-12, abs=1e-12)
    assert (ours.n_experiment, ours.n_baseline) == (len(a), len(b))
    assert ours.std_error == pytest.approx(
        math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)), rel=1e-12)


@pytest.mark.parametrize("a, b", [([2.0, 2.0, 2.0], [2.0, 2.0]), ([3.0, 3.0], [1.0, 1.0, 1.0])])
def test_welch_interval_with_zero_spread_is_the_difference_itself_as_in_scipy(a, b):
    scipy_stats = pytest.importorskip("scipy.stats")
    with warnings.catch_warnings():  # scipy warns of "catastrophic cancellation" here
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    ours = welch_interval(a, b)
    assert (ours.low, ours.high) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert ours.low == ours.high == ours.difference == a[0] - b[0]
    assert ours.std_error == 0.0 and ours.df is None and ours.t is None


def test_with_one_seed_scipy_has_no_interval_and_neither_have_we():
    scipy_stats = pytest.importorskip("scipy.stats")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = scipy_stats.ttest_ind([3.0], [1.0, 2.0, 4.0], equal_var=False).confidence_interval()
    assert math.isnan(ci.low)
    assert difference_interval([3.0], [1.0, 2.0, 4.0]) is None
    assert difference_interval([1.0, 2.0, 4.0], [3.0]) is None
    with pytest.raises(ValueError):
        welch_interval([3.0], [1.0, 2.0, 4.0])


# -- the bootstrap ------------------------------------------------------------------------------
A12 = [float(v) for v in np.random.default_rng(11).normal(0.0, 1.0, 12)]
B10 = [float(v) for v in np.random.default_rng(12).normal(0.8, 2.0, 10)]


def test_bootstrap_is_deterministic_by_seed_and_covers_the_observed_difference():
    first = bootstrap_interval(A12, B10, seed=3)
    assert bootstrap_interval(A12, B10, seed=3) == first
    other = bootstrap_interval(A12, B10, seed=4)
    assert (other.low, other.high) != (first.low, first.high)
    assert first.difference == pytest.approx(np.mean(A12) - np.mean(B10), abs=1e-12)
    assert first.low < first.difference < first.high
    assert first.method == "bootstrap"
    assert (first.resamples, first.seed) == (stats.BOOTSTRAP_RESAMPLES, 3)
    assert (first.n_experiment, first.n_baseline) == (12, 10)


def test_bootstrap_is_reproducible_from_the_seed_and_resamples_its_footnote_states():
    """The docstring's recipe, redone: numpy's default_rng(seed), each side resampled with
    replacement (experiment first), the percentiles of the differences of means."""
    got = bootstrap_interval(A12, B10, resamples=500, seed=9)
    rng = np.random.default_rng(9)
    a, b = np.asarray(A12), np.asarray(B10)
    diffs = (a[rng.integers(0, 12, size=(500, 12))].mean(1)
             - b[rng.integers(0, 10, size=(500, 10))].mean(1))
    assert (got.low, got.high) == tuple(np.quantile(diffs, [0.025, 0.975]))


def test_bootstrap_agrees_with_scipy_percentile_bootstrap_within_resampling_noise():
    scipy_stats = pytest.importorskip("scipy.stats")
    ref = scipy_stats.bootstrap((A12, B10), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis),
                                n_resamples=20_000, method="percentile", vectorized=True,
                                rng=np.random.default_rng(0)).confidence_interval
    ours = bootstrap_interval(A12, B10, resamples=20_000)
    width = ref.high - ref.low
    assert ours.low == pytest.approx(ref.low, abs=0.03 * width)
    assert ours.high == pytest.approx(ref.high, abs=0.03 * width)


def test_bootstrap_of_constant_sides_is_the_difference_itself():
    got = bootstrap_interval([2.0] * 10, [1.5] * 10)
    assert got.low == got.high == got.difference == 0.5


# -- which method ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_a, n_b, method", [
    (1, 1, None), (1, 5, None), (12, 1, None), (2, 2, "welch"), (9, 30, "welch"),
    (stats.BOOTSTRAP_MIN_SEEDS, stats.BOOTSTRAP_MIN_SEEDS, "bootstrap"), (40, 10, "bootstrap")])
def test_choose_method_by_the_seeds_on_the_smaller_side(n_a, n_b, method):
    assert stats.BOOTSTRAP_MIN_SEEDS == 10
    assert choose_method(n_a, n_b) == method


def test_difference_interval_switches_to_the_bootstrap_at_its_threshold():
    assert difference_interval(A12[:9], B10).method == "welch"
    assert difference_interval(A12, B10).method == "bootstrap"
    assert difference_interval(A12, B10, bootstrap_min_seeds=20).method == "welch"
    assert difference_interval(A12[:3], B10[:2], bootstrap_min_seeds=2).method == "bootstrap"


# -- the verdict ----------------------------------------------------------------------------------
def test_lower_is_better_metric_where_the_experiment_wins():
    c = compare("fid/bu", [10.0, 11.0, 12.0], [20.0, 21.0, 22.5], names=("EXP03", "EXP00"))
    assert c.verdict == "differs" and c.better == "EXP03" and c.direction == "↓"
    assert c.words == "differs: EXP03 is better (lower is better for fid/bu)"
    assert c.interval.high < 0


def test_lower_is_better_metric_where_the_baseline_wins():
    c = compare("fd@dinov2", [30.0, 31.0, 32.0], [20.0, 21.0, 22.5], names=("EXP03", "EXP00"))
    assert c.verdict == "differs" and c.better == "EXP00"
    assert c.words == "differs: EXP00 is better (lower is better for fd@dinov2)"


def test_higher_is_better_metric_turns_the_same_difference_around():
    c = compare("isc", [30.0, 31.0, 32.0], [20.0, 21.0, 22.5], names=("EXP03", "EXP00"))
    assert c.verdict == "differs" and c.better == "EXP03" and c.direction == "↑"
    assert c.words == "differs: EXP03 is better (higher is better for isc)"


def test_metric_without_a_direction_says_higher_or_lower_only():
    c = compare("steps_per_s", [30.0, 31.0, 32.0], [20.0, 21.0, 22.5], names=("EXP03", "EXP00"))
    assert c.verdict == "differs" and c.better is None
    assert c.words == "differs: EXP03 is higher than EXP00"


def test_an_interval_across_zero_shows_no_difference():
    c = compare("fid", [301.2, 320.5, 327.2], [329.2, 340.1, 318.0])
    assert c.interval.low < 0 < c.interval.high
    assert c.verdict == "no_difference_shown" and c.better is None
    assert c.words == "no difference shown at this spread"


def test_identical_values_show_no_difference_and_constant_but_unequal_ones_differ():
    same = compare("fid", [5.0, 5.0], [5.0, 5.0, 5.0])
    assert same.verdict == "no_difference_shown"
    apart = compare("fid", [4.0, 4.0], [5.0, 5.0, 5.0], names=("a", "b"))
    assert apart.verdict == "differs" and apart.better == "a"


@pytest.mark.parametrize("a, b, who", [([5.0], [4.0, 6.0], "EXP03 has one seed"),
                                       ([4.0, 6.0], [5.0], "EXP00 has one seed"),
                                       ([5.0], [4.0], "each side has one seed")])
def test_one_seed_on_a_side_means_no_spread_is_known(a, b, who):
    c = compare("fid", a, b, names=("EXP03", "EXP00"))
    assert c.verdict == "no_spread_known" and c.interval is None and c.better is None
    assert c.words == f"no spread is known ({who}), so no interval"


def test_comparison_record_is_json_and_states_the_method_and_its_inputs():
    welch = compare("fid", [301.2, 320.5, 327.2], [329.2, 340.1, 318.0]).to_dict()
    again = json.loads(json.dumps(welch))
    assert again["interval"]["method"] == "welch"
    assert again["interval"]["df"] == pytest.approx(3.85, abs=0.01)
    assert again["experiment_summary"]["values"] == [301.2, 320.5, 327.2]
    boot = compare("fid", A12, B10, seed=5).to_dict()
    assert (boot["interval"]["method"], boot["interval"]["resamples"],
            boot["interval"]["seed"]) == ("bootstrap", 10_000, 5)
    lonely = json.loads(json.dumps(compare("fid", [1.0], [2.0, 3.0]).to_dict()))
    assert lonely["interval"] is None and lonely["baseline_summary"]["std"] is not None


def test_describe_names_the_method_its_reference_and_inputs():
    w = welch_interval([301.2, 320.5, 327.2], [329.2, 340.1, 318.0]).describe()
    assert "Welch t interval" in w and "Welch 1947" in w and "Satterthwaite 1946" in w
    assert "3.85 degrees of freedom" in w and "3 seeds against 3" in w
    b = bootstrap_interval(A12, B10, seed=7).describe()
    assert "percentile bootstrap" in b and "Efron & Tibshirani 1993" in b
    assert "10,000 resamples" in b and "random seed 7" in b and "12 seeds against 10" in b
    z = welch_interval([1.0, 1.0], [2.0, 2.0]).describe()
    assert "zero spread" in z


def test_formatting_for_tables():
    assert format_summary(summarize([301.2, 320.5, 327.2])) == "316.3 ± 13.5"
    assert format_summary(summarize([301.2])) == "301.2"
    assert format_values(summarize([301.2, 320.5, 327.25]), digits=2) == "301.20, 320.50, 327.25"
    iv = Interval("welch", 0.95, -12.83, -41.2, 15.61, 3, 3)
    assert format_interval(iv) == "-12.8 (-41.2 to +15.6)"
    assert format_interval(None) == "—"


def test_confidence_outside_0_1_is_refused():
    with pytest.raises(ValueError):
        welch_interval([1.0, 2.0], [3.0, 4.0], confidence=95)
    with pytest.raises(ValueError):
        bootstrap_interval([1.0, 2.0], [3.0, 4.0], confidence=0.0)


# -- bench_quality's table -------------------------------------------------------------------------
def _bench_quality():
    return load_benchmark("bench_quality")


def _rows(ganzoo, reference=(), live=(), **extra):
    return {"ganzoo": list(ganzoo), "ganzoo_live": list(live), "reference": list(reference),
            "train_s": [], "ref_s": [], "ema_minus_live": [], **extra}


def test_bench_quality_table_gives_mean_sd_per_seed_values_ratio_and_the_interval():
    bench = _bench_quality()
    results = {"dcgan": _rows([301.2, 320.5, 327.2], [329.2, 340.1, 318.0],
                              live=[305.0, 322.1, 330.4]),
               "vae": _rows([150.1, 151.0, 149.5], [170.2, 171.0, 169.9]),
               "dcgan_fresh": _rows([316.3, 310.0, 312.2])}
    text = bench.table(results, {"dcgan": 1500, "vae": 1500, "dcgan_fresh": 1500}, 2000,
                       seeds=[0, 1, 2])
    lines = text.splitlines()
    dcgan = next(line for line in lines if line.startswith("| dcgan ("))
    cells = [c.strip() for c in dcgan.strip("|").split("|")]
    assert cells[2:] == ["316.3 ± 13.5", "319.2 ± 13.0", "329.1 ± 11.1", "0.96",
                         "-12.8 (-41.2 to +15.6) [1]"]
    shared = next(line for line in lines if line.startswith("| dcgan_fresh"))
    assert [c.strip() for c in shared.strip("|").split("|")][-2:] == ["—", "—"]
    assert ("dcgan, seeds 0, 1, 2: ganzoo 301.2, 320.5, 327.2; live 305.0, 322.1, 330.4; "
            "reference 329.2, 340.1, 318.0; ganzoo - reference: no difference shown at this "
            "spread") in lines
    assert any(line.startswith("vae, seeds 0, 1, 2:") and line.endswith(
        "differs: ganzoo is better (lower is better for fd@efficientnet_lite0)") for line in lines)
    footnote = next(line for line in lines if line.startswith("[1] dcgan: "))
    assert "Welch t interval" in footnote and "3 seeds against 3" in footnote
    assert any(line.startswith("[2] vae: ") for line in lines)
    # the variant against its base case, the seeds paired by position (316.3 vs 301.2 ...)
    assert "dcgan_fresh - dcgan: no difference shown at this spread" in lines
    assert any(line.startswith("[3] dcgan_fresh: ") and "3 seeds against 3" in line
               for line in lines)
    assert "min" not in text  # the old mean (min-max) cells are gone


def test_bench_quality_stripe_ratio_reads_horizontal_stripes():
    """~1 on an isotropic image, far above 1 when rows alternate (horizontal stripes), far
    below with vertical ones."""
    bench = _bench_quality()
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert 0.9 < bench.stripe_ratio(noise) < 1.1
    rows = torch.arange(32.0).remainder(2).view(1, 1, 32, 1)  # 0, 1, 0, 1 down the image
    striped = noise * 0.1 + rows
    assert bench.stripe_ratio(striped) > 5
    assert bench.stripe_ratio(striped.transpose(-1, -2)) < 0.2


def test_bench_quality_table_with_one_seed_prints_means_and_says_no_spread_is_known():
    bench = _bench_quality()
    text = bench.table({"dcgan": _rows([301.2], [329.2], live=[305.0])}, {"dcgan": 300}, 500,
                       seeds=[0])
    row = next(line for line in text.splitlines() if line.startswith("| dcgan ("))
    assert [c.strip() for c in row.strip("|").split("|")][2:] == [
        "301.2", "305.0", "329.2", "0.91", "—"]
    assert "dcgan: ganzoo - reference: no spread is known (each side has one seed), so no " \
           "interval" in text.splitlines()
    assert "[1]" not in text
    json.dumps({k: c.to_dict() for k, c in bench.comparisons(
        {"dcgan": _rows([301.2], [329.2])}).items()})
