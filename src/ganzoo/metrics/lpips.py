"""The LPIPS diversity metric: mean LPIPS (Zhang et al., CVPR 2018, arXiv 1801.03924) over all
unordered pairs of the first ``max_samples`` generated images (default 100, so 4950 pairs); each
image's features are computed once. Images smaller than ``min_size`` (64 px) are first upsampled
bilinearly to it: AlexNet's strides leave nothing of a 16 px image.

The LPIPS network and where its weights come from are :mod:`ganzoo.losses.lpips`'s; its names
are re-exported here, where they lived before.
"""

from __future__ import annotations

from typing import Literal

import torch

from ..losses.lpips import LPIPS, LPIPS_LIN_URLS, LPIPS_WEIGHTS_ENV
from ..registry import register_metric
from .base import SampleMetric

__all__ = ["LPIPS", "LPIPSDiversity", "LPIPS_WEIGHTS_ENV", "LPIPS_LIN_URLS"]


class LPIPSDiversity(SampleMetric):
    """Mean LPIPS over all pairs of the first ``max_samples`` generated images."""

    name = "lpips_diversity"

    def __init__(self, net: Literal["alex", "vgg"] = "alex", weights: str | None = None,
                 max_samples: int = 100, pretrained: bool = True, device=None,
                 chunk: int = 256, min_size: int = 64):
        if max_samples < 2:
            raise ValueError("lpips_diversity.max_samples must be >= 2")
        self.net_name, self.weights, self.pretrained = net, weights, pretrained
        self.max_samples, self.chunk, self.device = max_samples, chunk, device
        self.min_size = min_size
        self._lpips: LPIPS | None = None

    @property
    def lpips(self) -> LPIPS:
        if self._lpips is None:
            self._lpips = LPIPS(self.net_name, weights=self.weights, pretrained=self.pretrained)
        return self._lpips

    @torch.no_grad()
    def compute(self, images):
        if len(images) < 2:
            raise ValueError("lpips_diversity needs at least 2 samples")
        model = self.lpips
        device = self.device or images.device
        model.to(device)
        feats = []
        for b in images.split(self.chunk):
            b = b.to(device).float()
            h, w = b.shape[-2:]
            if min(h, w) < self.min_size:
                s = self.min_size / min(h, w)
                b = torch.nn.functional.interpolate(b, size=(round(h * s), round(w * s)),
                                                    mode="bilinear", align_corners=False)
            feats.append([f.cpu() for f in model.features(b)])
        feats = [torch.cat(parts) for parts in zip(*feats)]
        n = len(images)
        i, j = torch.triu_indices(n, n, offset=1)
        total = torch.zeros((), dtype=torch.float64)
        for s in range(0, len(i), self.chunk):
            ii, jj = i[s:s + self.chunk], j[s:s + self.chunk]
            d = model.distance([f[ii].to(device) for f in feats], [f[jj].to(device) for f in feats])
            total += d.double().sum().cpu()
        return {"lpips_diversity": float(total / len(i))}

    def config(self):
        return {"net": self.net_name, "max_samples": self.max_samples,
                "min_size": self.min_size,
                "pairs": "all unordered pairs",
                "weights": self._lpips.weights_source if self._lpips is not None else None}


@register_metric
def lpips_diversity(**kwargs) -> LPIPSDiversity:
    """Mean pairwise LPIPS (AlexNet) over generated samples: higher is more diverse."""
    return LPIPSDiversity(**kwargs)
