"""How exact each route to the FID is, against a 50-digit reference, on features whose
statistics are hard for float64.

    python tools/fid_exactness.py [--n 2000] [--d 64] [--seed 0] [--json FILE]

For each case, two float64 feature sets (N x D) are drawn, and the reference FID is computed
from the *same* float64 numbers with mpmath at 50 digits: both means and covariances exactly
as ``np.cov`` defines them, and ``tr (S1^½ S2 S1^½)^½`` through two symmetric eigenproblems
(``mpmath.eigsy``). Printed: the relative error of

- torch-fidelity: ``fid_statistics_to_metric(fid_features_to_statistics(x), ...)``, its
  ``eigvals(S1 S2)`` route (fed float64 features, so its mean is float64 here);
- scipy ``sqrtm(S1 S2)`` on ``np.cov`` statistics;
- the QR route: each side's factor from the QR decomposition of its centred features;
- the Gram route: each side's factor the Cholesky factor of ``X_c^T X_c``, always;
- ganzoo: ``frechet_distance_to_real`` as shipped (the Gram route, or QR where the Gram
  matrix is singular to about half the working precision; ``ganzoo.metrics.gaussian``).

The cases are those of docs/evaluation.md ("FID"): a common offset, low rank plus noise (the
spectra of CNN features), and one side near singular against a full-rank other (a generator
that collapsed onto a few directions). Needs scipy (the ``[test]`` extra) and mpmath (a torch
dependency). About 20 s a case on 2 cores at the defaults.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ganzoo.metrics import gaussian  # noqa: E402
from ganzoo.metrics.base import RealFeatures  # noqa: E402
from ganzoo.metrics.fidelity import (  # noqa: E402
    frechet_distance_from_factors, frechet_distance_to_real)


def cases(n: int, d: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((8, d))

    def low_rank(scale, noise):
        return scale * rng.standard_normal((n, 8)) @ w + noise * rng.standard_normal((n, d))

    return {
        "common offset: 1000 + 0.01 N(0, 1)": (
            1000 + 0.01 * rng.standard_normal((n, d)), 1000 + 0.01 * rng.standard_normal((n, d))),
        "low rank (8) + 1e-3 noise": (low_rank(1, 1e-3), low_rank(1, 1e-3)),
        "low rank (8, x10) + 1e-3 noise": (low_rank(10, 1e-3), low_rank(10, 1e-3)),
        "low rank (8) + 1e-6 noise, against + 1e-1": (low_rank(1, 1e-6), low_rank(1, 1e-1)),
    }


def reference_fid(x: np.ndarray, y: np.ndarray, digits: int = 50) -> float:
    import mpmath as mp

    mp.mp.dps = digits

    def stats(z):
        cols = [[mp.mpf(float(v)) for v in z[:, j]] for j in range(z.shape[1])]
        mu = [mp.fsum(c) / len(c) for c in cols]
        centred = [[v - m for v in c] for c, m in zip(cols, mu)]
        s = mp.matrix(len(cols), len(cols))
        for i in range(len(cols)):
            for j in range(i + 1):
                s[i, j] = s[j, i] = mp.fdot(centred[i], centred[j]) / (len(cols[0]) - 1)
        return mu, s

    (mu1, s1), (mu2, s2) = stats(x), stats(y)
    e, q = mp.eigsy(s1)
    root1 = q * mp.diag([mp.sqrt(max(v, 0)) for v in e]) * q.T
    inner, _ = mp.eigsy(root1 * s2 * root1)
    trace_sqrt = mp.fsum(mp.sqrt(max(v, 0)) for v in inner)
    diff = mp.fsum((a - b) ** 2 for a, b in zip(mu1, mu2))
    fid = diff + mp.fsum(s1[i, i] + s2[i, i] for i in range(s1.rows)) - 2 * trace_sqrt
    return float(fid)


def _factors(x: np.ndarray, route: str):
    """Mean and factor by one route alone; None where the Gram matrix has no Cholesky factor."""
    z = torch.from_numpy(x)
    mu = z.mean(0)
    factor = (gaussian._qr_factor(z - mu) if route == "qr" else
              gaussian._gram_factor(z - mu, pivot_min=0.0))
    return None if factor is None else (mu, factor / math.sqrt(len(z) - 1))


def _fid_by(route: str, x: np.ndarray, y: np.ndarray) -> float:
    a, b = _factors(x, route), _factors(y, route)
    if a is None or b is None:
        return float("nan")  # the Gram matrix is not positive definite
    return frechet_distance_from_factors(*a, *b)


def routes(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    import scipy.linalg
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    tf = fid_statistics_to_metric(fid_features_to_statistics(torch.from_numpy(x)),
                                  fid_features_to_statistics(torch.from_numpy(y)),
                                  verbose=False)["frechet_inception_distance"]
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    diff = x.mean(0) - y.mean(0)
    sqrtm = diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(
        scipy.linalg.sqrtm(s1 @ s2).real)
    return {
        "torch-fidelity": tf,
        "scipy sqrtm": float(sqrtm),
        "QR route": _fid_by("qr", x, y),
        "Gram route": _fid_by("gram", x, y),
        "ganzoo": frechet_distance_to_real(torch.from_numpy(x), RealFeatures(torch.from_numpy(y))),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="rows per side")
    p.add_argument("--d", type=int, default=64, help="features per row")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    rows, header = [], None
    for name, (x, y) in cases(args.n, args.d, args.seed).items():
        want = reference_fid(x, y)
        got = routes(x, y)
        errors = {k: abs(v - want) / abs(want) for k, v in got.items()}
        if header is None:
            header = list(errors)
            print(f"# relative error against 50 digits; {args.n} x {args.d} a side, "
                  f"seed {args.seed}")
            print("| case | FID | " + " | ".join(header) + " |")
            print("| --- | ---: |" + " ---: |" * len(header))
        print(f"| {name} | {want:.3g} | " + " | ".join(
            "n/a" if math.isnan(e) else f"{e:.1e}" for e in errors.values()) + " |", flush=True)
        rows.append({"case": name, "fid": want, "relative_error": errors})
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
