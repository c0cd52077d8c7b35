"""Weight-free reconstruction metrics: PSNR and SSIM, for the autoencoding families.

Both compare generated image *i* with reference image *i* (the evaluation feeds aligned
pairs) on images in [0, 1] and average the per-image values.

- PSNR: ``10 log10(1 / MSE)`` per image; the MSE is floored at 1e-10, so identical images give
  100 dB instead of infinity (JSON has no infinity).
- SSIM: Wang et al., IEEE TIP 2004. Gaussian window 11x11 with sigma 1.5, K1 = 0.01,
  K2 = 0.03, data range 1, 'valid' filtering (no padding) as in the reference MATLAB code,
  computed per channel and averaged. Departure: no automatic downsampling of large images
  (the MATLAB script's ``f = max(1, round(min(H, W) / 256))``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import register_metric
from .base import PairedMetric

__all__ = ["PSNR", "SSIM", "ssim_map"]


def _check(fake: torch.Tensor, real: torch.Tensor) -> None:
    if fake.shape != real.shape:
        raise ValueError(f"paired metrics need generated and reference images of the same "
                         f"shape, got {tuple(fake.shape)} and {tuple(real.shape)}")


class PSNR(PairedMetric):
    name = "psnr"

    def per_pair(self, fake, real):
        _check(fake, real)
        mse = (fake.double() - real.double()).pow(2).flatten(1).mean(dim=1)
        return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))

    def config(self):
        return {"data_range": 1.0, "reduction": "mean of per-image PSNR", "mse_floor": 1e-10}


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-x.pow(2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5,
             k1: float = 0.01, k2: float = 0.03, data_range: float = 1.0) -> torch.Tensor:
    """SSIM map (N, C, H - window + 1, W - window + 1) of images in [0, data_range]."""
    x, y = x.double(), y.double()
    c = x.shape[1]
    if min(x.shape[-2:]) < window:
        raise ValueError(f"SSIM needs images of at least {window}x{window}, got "
                         f"{tuple(x.shape[-2:])}")
    w = _gaussian_window(window, sigma, x.dtype, x.device).expand(c, 1, window, window)

    def filt(t):
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x.pow(2)
    syy = filt(y * y) - mu_y.pow(2)
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x.pow(2) + mu_y.pow(2) + c1)
                                                       * (sxx + syy + c2))


class SSIM(PairedMetric):
    name = "ssim"

    def __init__(self, window: int = 11, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03):
        if window < 1 or window % 2 == 0:
            raise ValueError(f"SSIM.window must be a positive odd number, got {window}")
        self.window, self.sigma, self.k1, self.k2 = window, sigma, k1, k2

    def per_pair(self, fake, real):
        _check(fake, real)
        return ssim_map(fake, real, self.window, self.sigma, self.k1, self.k2).mean(dim=(1, 2, 3))

    def config(self):
        return {"window": self.window, "sigma": self.sigma, "k1": self.k1, "k2": self.k2,
                "data_range": 1.0, "padding": "valid"}


@register_metric
def psnr(**kwargs) -> PSNR:
    """Peak signal-to-noise ratio of aligned pairs (dB, images in [0, 1])."""
    return PSNR(**kwargs)


@register_metric
def ssim(**kwargs) -> SSIM:
    """Structural similarity of aligned pairs (Gaussian 11x11, sigma 1.5)."""
    return SSIM(**kwargs)
