"""``digits``: scikit-learn's bundled handwritten digits (1797 real images, 8x8, no download).

Upscaled bilinearly to ``resolution`` and repeated to three channels (``channels=1`` keeps
one), so every family can train on real data offline. Needs ``pip install ganzoo[digits]``.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..registry import register_dataset

__all__ = ["DigitsDataset"]


class DigitsDataset(Dataset):
    keys = ("image", "label")

    def __init__(self, resolution: int = 32, channels: int = 3, size: int | None = None,
                 seed: int = 0):
        try:
            from sklearn.datasets import load_digits
        except ImportError as e:
            raise ImportError("the 'digits' dataset needs scikit-learn: "
                              "pip install 'ganzoo[digits]'") from e
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        data = load_digits()
        images = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 16.0
        images = torch.nn.functional.interpolate(images, size=(resolution, resolution),
                                                 mode="bilinear", align_corners=False)
        images = images.clamp(0, 1) * 2 - 1
        self.images = images.repeat(1, channels, 1, 1).contiguous()
        self.labels = torch.as_tensor(data.target, dtype=torch.long)
        if size is not None:
            self.images, self.labels = self.images[:size], self.labels[:size]
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


@register_dataset
def digits(resolution: int = 32, channels: int = 3, size: int | None = None,
           seed: int = 0) -> DigitsDataset:
    """Real handwritten digits from scikit-learn (1797 images), upscaled."""
    return DigitsDataset(resolution, channels, size, seed)
