"""Statistics over training seeds: a metric's spread, and whether two experiments differ.

One run per experiment ranks noise: a GAN's FID moves by tens between training seeds. Given
each experiment's per-seed values of one metric, this module gives

- :func:`summarize` (from :mod:`ganzoo._stats`, re-exported here): n, mean, sample standard
  deviation (``ddof = 1``) and the per-seed values;
- :func:`difference_interval`: the difference of means (experiment - baseline) with a 95%
  interval, either Welch's t interval (Welch 1947, Satterthwaite 1946), used when each side has
  at least 2 seeds, or a percentile bootstrap (Efron & Tibshirani 1993, ch. 13), used when
  each side has at least :data:`BOOTSTRAP_MIN_SEEDS`; the returned :class:`Interval` is a
  machine-readable record of the method and its inputs, for a report's footnote;
- :func:`compare`: the verdict in words, using the metric's direction
  (:func:`ganzoo.experiments.runs.metric_direction`) to say which side is better.

Pure Python and numpy: the Student t quantile is computed here (:func:`t_quantile`, from the
regularized incomplete beta function), so scipy stays a test-only reference. See the
"Statistics" section of docs/experiments.md for how to read the interval.

References:
    B. L. Welch (1947), "The generalization of 'Student's' problem when several different
    population variances are involved", Biometrika 34, 28-35.
    F. E. Satterthwaite (1946), "An approximate distribution of estimates of variance
    components", Biometrics Bulletin 2, 110-114.
    B. Efron and R. J. Tibshirani (1993), "An Introduction to the Bootstrap", Chapman & Hall.
    T. C. Hesterberg (2015), "What teachers should know about the bootstrap", The American
    Statistician 69(4), 371-386 (the percentile interval's "narrowness bias").
    W. H. Press et al. (2007), "Numerical Recipes", 3rd ed., section 6.4 (incomplete beta).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Literal

import numpy as np

from ganzoo._stats import Summary, finite_values, summarize
from ganzoo.experiments.runs import metric_direction

__all__ = ["Summary", "Interval", "Comparison", "summarize", "regularized_beta", "t_cdf",
           "t_quantile", "welch_interval", "bootstrap_interval", "choose_method",
           "difference_interval", "compare", "format_summary", "format_values",
           "format_interval", "BOOTSTRAP_MIN_SEEDS", "BOOTSTRAP_RESAMPLES", "CONFIDENCE"]

CONFIDENCE = 0.95
# Seeds per side from which the percentile bootstrap replaces Welch's interval. With few seeds
# the percentile interval is too narrow ("narrowness bias", Hesterberg 2015): it resamples with
# the plug-in variance (divisor n, not n - 1) and has no t quantile's allowance for an
# estimated spread. For two sides of n seeds with equal spread its width is about
# sqrt((n - 1) / n) * 1.96 / t(0.975, 2n - 2) of Welch's: 0.76 at n = 5, 0.85 at n = 8,
# 0.89 at n = 10, 0.94 at n = 20. From ten seeds on, the bootstrap's freedom from the
# normality assumption is worth that.
BOOTSTRAP_MIN_SEEDS = 10
BOOTSTRAP_RESAMPLES = 10_000

Method = Literal["welch", "bootstrap"]
Verdict = Literal["differs", "no_difference_shown", "no_spread_known"]


# -- Student's t distribution ---------------------------------------------------------------------
def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function, by the modified Lentz method
    (Press et al. 2007, section 6.4, ``betacf``); converges fast for x < (a + 1) / (a + b + 2)."""
    tiny, eps = 1e-300, 1e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for aa in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                   -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def regularized_beta(x: float, a: float, b: float, x_complement: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1.

    ``x_complement`` is 1 - x when the caller knows it more precisely than ``1 - x`` rounds
    (Student's t passes t^2 / (df + t^2) beside df / (df + t^2))."""
    if a <= 0 or b <= 0:
        raise ValueError(f"regularized_beta needs a, b > 0, got a={a}, b={b}")
    y = 1.0 - x if x_complement is None else x_complement
    if x <= 0.0 or y >= 1.0:
        return 0.0
    if y <= 0.0 or x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log(y))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, y) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    t2 = t * t
    return 0.5 * regularized_beta(df / (df + t2), df / 2.0, 0.5, x_complement=t2 / (df + t2))


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` > 0 degrees of freedom (df may be fractional)."""
    if df <= 0:
        raise ValueError(f"t_cdf needs df > 0, got {df}")
    tail = _t_upper_tail(abs(t), df)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` > 0 degrees of freedom (fractional df
    allowed, as Welch-Satterthwaite gives): bisection on the upper tail. Within 1e-12 of
    ``scipy.stats.t.ppf`` (relative) for df up to 1,000 (Welch's df is below n_a + n_b - 2);
    beyond, log-gamma's rounding leaves about 1e-10."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile needs 0 < p < 1, got {p}")
    if df <= 0:
        raise ValueError(f"t_quantile needs df > 0, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while _t_upper_tail(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # the upper tail falls as t grows
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if _t_upper_tail(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# -- the difference of two means ----------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """The difference of means ``experiment - baseline`` and its interval, with the method's
    inputs: for ``"welch"`` the standard error, the Welch-Satterthwaite degrees of freedom
    and the t quantile (all None when both sides have zero spread: then the interval is the
    difference itself); for ``"bootstrap"`` the number of resamples and the seed."""

    method: Method
    confidence: float
    difference: float
    low: float
    high: float
    n_experiment: int
    n_baseline: int
    std_error: float | None = None
    df: float | None = None
    t: float | None = None
    resamples: int | None = None
    seed: int | None = None

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0.0 or self.high < 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One sentence for a footnote: the method, its reference and its inputs."""
        pct = f"{100 * self.confidence:g}%"
        seeds = f"{self.n_experiment} seeds against {self.n_baseline}"
        if self.method == "bootstrap":
            return (f"{pct} percentile bootstrap interval of the difference of means "
                    f"(Efron & Tibshirani 1993): {self.resamples:,} resamples of each side's "
                    f"seeds, random seed {self.seed}; {seeds}.")
        if self.df is None:
            return (f"{pct} Welch t interval (Welch 1947; Satterthwaite 1946): both sides "
                    f"have zero spread, so the interval is the difference itself; {seeds}.")
        return (f"{pct} Welch t interval of the difference of means (Welch 1947; "
                f"Satterthwaite 1946): standard error {self.std_error:.4g}, "
                f"{self.df:.3g} degrees of freedom, t quantile {self.t:.4g}; {seeds}.")


def _welch_df(var_a: float, n_a: int, var_b: float, n_b: int) -> float:
    """The Welch-Satterthwaite degrees of freedom of s_a^2/n_a + s_b^2/n_b."""
    va, vb = var_a / n_a, var_b / n_b
    return (va + vb) ** 2 / (va * va / (n_a - 1) + vb * vb / (n_b - 1))


def welch_interval(experiment: Iterable[float], baseline: Iterable[float],
                   confidence: float = CONFIDENCE) -> Interval:
    """Welch's t interval of mean(experiment) - mean(baseline), for >= 2 values a side:
    d +- t_{(1+c)/2, df} * sqrt(s_a^2/n_a + s_b^2/n_b), df by Welch (1947) and Satterthwaite
    (1946); the same as ``scipy.stats.ttest_ind(a, b, equal_var=False).confidence_interval``."""
    _check_confidence(confidence)
    a, b = summarize(experiment), summarize(baseline)
    if a.n < 2 or b.n < 2:
        raise ValueError(f"Welch's interval needs 2 values a side, got {a.n} and {b.n}")
    diff = a.mean - b.mean
    var_a, var_b = a.std ** 2, b.std ** 2
    se = math.sqrt(var_a / a.n + var_b / b.n)
    if se == 0.0:
        return Interval("welch", confidence, diff, diff, diff, a.n, b.n, std_error=0.0)
    df = _welch_df(var_a, a.n, var_b, b.n)
    t = t_quantile((1.0 + confidence) / 2.0, df)
    return Interval("welch", confidence, diff, diff - t * se, diff + t * se, a.n, b.n,
                    std_error=se, df=df, t=t)


def bootstrap_interval(experiment: Iterable[float], baseline: Iterable[float],
                       confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap interval of mean(experiment) - mean(baseline) (Efron &
    Tibshirani 1993, section 13.3): each side's values resampled with replacement on its own
    (two independent samples), ``resamples`` times from ``numpy.random.default_rng(seed)``;
    the interval is the (1-c)/2 and (1+c)/2 quantiles of the resampled differences.
    Deterministic for a given seed."""
    _check_confidence(confidence)
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    a = np.asarray(finite_values(experiment, "experiment"))
    b = np.asarray(finite_values(baseline, "baseline"))
    rng = np.random.default_rng(seed)
    means_a = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1)
    means_b = b[rng.integers(0, b.size, size=(resamples, b.size))].mean(axis=1)
    low, high = np.quantile(means_a - means_b, [(1.0 - confidence) / 2, (1.0 + confidence) / 2])
    diff = math.fsum(a.tolist()) / a.size - math.fsum(b.tolist()) / b.size
    return Interval("bootstrap", confidence, diff, float(low), float(high), int(a.size),
                    int(b.size), resamples=resamples, seed=seed)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def choose_method(n_experiment: int, n_baseline: int,
                  bootstrap_min_seeds: int = BOOTSTRAP_MIN_SEEDS) -> Method | None:
    """``"bootstrap"`` when both sides have ``bootstrap_min_seeds`` seeds, ``"welch"`` when
    both have 2, None with one seed on either side (no spread is known)."""
    if min(n_experiment, n_baseline) >= bootstrap_min_seeds:
        return "bootstrap"
    if min(n_experiment, n_baseline) >= 2:
        return "welch"
    return None


def difference_interval(experiment: Iterable[float], baseline: Iterable[float],
                        confidence: float = CONFIDENCE, *,
                        bootstrap_min_seeds: int = BOOTSTRAP_MIN_SEEDS,
                        resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Interval | None:
    """The interval of mean(experiment) - mean(baseline) by :func:`choose_method`'s method,
    or None with one seed on either side."""
    a, b = finite_values(experiment, "experiment"), finite_values(baseline, "baseline")
    method = choose_method(len(a), len(b), bootstrap_min_seeds)
    if method == "bootstrap":
        return bootstrap_interval(a, b, confidence, resamples, seed)
    if method == "welch":
        return welch_interval(a, b, confidence)
    return None


# -- the verdict ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Comparison:
    """An experiment against its baseline on one metric: both summaries, the interval (None
    with one seed on a side), the verdict code, the better side's name (None unless the
    interval excludes 0 and the metric has a direction) and the verdict in words."""

    metric: str
    direction: str
    experiment: str
    baseline: str
    experiment_summary: Summary
    baseline_summary: Summary
    interval: Interval | None
    verdict: Verdict
    better: str | None
    words: str

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("metric", "direction", "experiment", "baseline",
                                             "verdict", "better", "words")}
        out["experiment_summary"] = self.experiment_summary.to_dict()
        out["baseline_summary"] = self.baseline_summary.to_dict()
        out["interval"] = None if self.interval is None else self.interval.to_dict()
        return out


def _better_side(diff: float, direction: str, experiment: str, baseline: str) -> str | None:
    """Which side a difference of means favours: lower is better for "↓", higher for "↑"."""
    if direction == "↓":
        return experiment if diff < 0 else baseline
    if direction == "↑":
        return experiment if diff > 0 else baseline
    return None


def _words(verdict: Verdict, key: str, direction: str, better: str | None, names: tuple[str, str],
           diff: float, lonely: str | None) -> str:
    experiment, baseline = names
    if verdict == "no_spread_known":
        return f"no spread is known ({lonely}), so no interval"
    if verdict == "no_difference_shown":
        return "no difference shown at this spread"
    if better is None:
        return f"differs: {experiment} is {'higher' if diff > 0 else 'lower'} than {baseline}"
    which = "lower" if direction == "↓" else "higher"
    return f"differs: {better} is better ({which} is better for {key})"


def compare(key: str, experiment: Iterable[float], baseline: Iterable[float], *,
            names: tuple[str, str] = ("experiment", "baseline"),
            confidence: float = CONFIDENCE, bootstrap_min_seeds: int = BOOTSTRAP_MIN_SEEDS,
            resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> Comparison:
    """Compare an experiment's per-seed values of metric ``key`` with its baseline's.

    The verdict says whether the difference of means is larger than the spread between seeds:
    ``"differs"`` when the interval excludes 0 (and, for a metric with a direction, which side
    is better), ``"no_difference_shown"`` when it includes 0, ``"no_spread_known"`` with one
    seed on either side (no interval is computed)."""
    a, b = summarize(experiment), summarize(baseline)
    interval = difference_interval(a.values, b.values, confidence,
                                   bootstrap_min_seeds=bootstrap_min_seeds,
                                   resamples=resamples, seed=seed)
    direction = metric_direction(key)
    diff = a.mean - b.mean
    better, lonely = None, None
    if interval is None:
        verdict: Verdict = "no_spread_known"
        lonely = ("each side has one seed" if a.n < 2 and b.n < 2 else
                  f"{names[0] if a.n < 2 else names[1]} has one seed")
    elif interval.excludes_zero:
        verdict = "differs"
        better = _better_side(diff, direction, *names)
    else:
        verdict = "no_difference_shown"
    words = _words(verdict, key, direction, better, names, diff, lonely)
    return Comparison(key, direction, names[0], names[1], a, b, interval, verdict, better, words)


# -- formatting, for tables -----------------------------------------------------------------------
def format_summary(summary: Summary, digits: int = 1) -> str:
    """``"316.3 ± 12.1"`` (mean ± sample sd), or the mean alone for one seed."""
    if summary.std is None:
        return f"{summary.mean:.{digits}f}"
    return f"{summary.mean:.{digits}f} ± {summary.std:.{digits}f}"


def format_values(summary: Summary, digits: int = 1) -> str:
    """The per-seed values, in seed order: ``"301.2, 320.5, 327.2"``."""
    return ", ".join(f"{v:.{digits}f}" for v in summary.values)


def format_interval(interval: Interval | None, digits: int = 1) -> str:
    """``"-12.9 (-40.1 to +14.3)"``: the difference of means and its interval; ``"—"`` for
    None."""
    if interval is None:
        return "—"
    return (f"{interval.difference:+.{digits}f} ({interval.low:+.{digits}f} to "
            f"{interval.high:+.{digits}f})")
