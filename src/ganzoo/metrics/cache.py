"""On-disk cache of reference-side features and FID statistics.

One safetensors file per key under ``<cache dir>/real_stats/``, holding the features (N, D),
``mu`` and ``sigma``, with the full key as JSON in the file's metadata (checked on load). The key
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
from pathlib import Path
from typing import Any

import torch

__all__ = ["cache_root", "cache_path", "load_real", "save_real", "CACHE_ENV"]

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
    """``(features, mu, sigma, sqrt_sigma)`` or None when absent or written for another key
    (``sqrt_sigma`` is None in entries written before ganzoo 0.3)."""
    from safetensors import safe_open

    path = cache_path(key, cache_dir)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            if (f.metadata() or {}).get("key") != _key_json(key):
                return None
            features = f.get_tensor("features")
            mu = f.get_tensor("mu").numpy()
            sigma = f.get_tensor("sigma").numpy()
            sqrt_sigma = f.get_tensor("sqrt_sigma") if "sqrt_sigma" in f.keys() else None
    except Exception:  # noqa: BLE001 - a corrupt cache entry is recomputed, not fatal
        return None
    return features, mu, sigma, sqrt_sigma


def save_real(key: dict[str, Any], features: torch.Tensor, mu, sigma, cache_dir=None,
              sqrt_sigma: torch.Tensor | None = None) -> Path:
    from safetensors.torch import save_file

    from .._io import atomic_path

    path = cache_path(key, cache_dir)
    tensors = {"features": features.contiguous(), "mu": torch.from_numpy(mu).contiguous(),
               "sigma": torch.from_numpy(sigma).contiguous()}
    if sqrt_sigma is not None:
        tensors["sqrt_sigma"] = sqrt_sigma.detach().cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp),
                  metadata={"key": _key_json(key), "format": "ganzoo-real-stats-v1"})
    return path
