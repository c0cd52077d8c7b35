"""On-disk cache of reference-side features and FID statistics.

One safetensors file per key under ``<cache dir>/real_stats/``, holding the features (N, D) and
their float64 FID statistics ``mu``, ``sigma`` and ``sigma_factor`` (``L L^T = sigma``, see
``gaussian.mean_and_factor``), with the full key as JSON in the file's metadata (checked on
load). Format v1 entries (a float32 ``mu``, a square root of ``sigma`` in place of the factor)
load with their features only: the statistics are recomputed from them and the entry rewritten
as v2 (one warning says so). The key
names the reference (dataset name and kwargs, or folder path and a hash of its listing), its
split and resolution, N, the feature extractor and a hash of its weights, the feature layer and
the resizer. The cache folder is ``cache_dir=``, else ``$GANZOO_CACHE``, else
``~/.cache/ganzoo``. Files are written atomically (temporary name, then rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_path

FORMAT = "ganzoo-real-stats-v2"

__all__ = ["cache_root", "cache_path", "load_real", "save_real", "CACHE_ENV", "FORMAT"]

CACHE_ENV = "GANZOO_CACHE"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir is not None:
        return Path(os.path.expanduser(os.fspath(cache_dir)))
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(os.path.expanduser(env))
    return Path.home() / ".cache" / "ganzoo"


def _key_json(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def cache_path(key: dict[str, Any], cache_dir=None) -> Path:
    digest = hashlib.sha256(_key_json(key).encode()).hexdigest()[:20]
    ref = key.get("reference", {})
    slug = str(ref.get("dataset") or Path(str(ref.get("folder", "ref"))).name or "ref")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", slug)[:40]
    name = f"{slug}-n{key.get('n')}-{key.get('extractor')}-{digest}.safetensors"
    return cache_root(cache_dir) / "real_stats" / name


def load_real(key: dict[str, Any], cache_dir=None):
    """``(features, mu, sigma, sigma_factor)``, or None when absent or written for another key.
    For a format v1 entry the last three are None: its features are reused, its statistics are
    not (a float32 mean), and the caller stores the entry again."""
    from safetensors import safe_open

    path = cache_path(key, cache_dir)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            if meta.get("key") != _key_json(key):
                return None
            features = f.get_tensor("features")
            if meta.get("format") != FORMAT:
                warnings.warn(f"ganzoo: reference statistics cache entry {path.name} is "
                              f"{meta.get('format', 'unversioned')}, not {FORMAT} (float64 "
                              f"statistics); recomputing them from its cached features and "
                              f"rewriting it", stacklevel=2)
                return features, None, None, None
            stats = [f.get_tensor(k).numpy() for k in ("mu", "sigma")]
            factor = f.get_tensor("sigma_factor")
    except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed, not fatal
        return None
    return features, *stats, factor


def save_real(key: dict[str, Any], features: torch.Tensor, mu, sigma, sigma_factor,
              cache_dir=None) -> Path:
    from safetensors.torch import save_file

    path = cache_path(key, cache_dir)
    tensors = {"features": features.contiguous(),
               "mu": torch.as_tensor(mu, dtype=torch.float64).contiguous(),
               "sigma": torch.as_tensor(sigma, dtype=torch.float64).contiguous(),
               "sigma_factor": sigma_factor.detach().to("cpu", torch.float64).contiguous()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"key": _key_json(key), "format": FORMAT})
    return path
