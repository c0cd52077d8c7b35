"""Image transforms shared by the datasets: resize-and-crop to (H, W), augmentation presets.

``flip`` is a horizontal flip with p = 0.5 alone: the generator plan's phase 1C baseline.
``structure`` is the plan's structure-preserving augmentation: horizontal flip with p = 0.5,
rotation within ±5°, mild colour jitter (brightness ±0.1, contrast ±0.1, saturation ±0.05); no
translation and no vertical flip, which would change layouts a model should learn.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

__all__ = ["augment_fn", "load_transform", "AUGMENTATIONS", "Augment"]

# The augmentation presets every dataset takes (one definition for all their signatures).
Augment = Literal["none", "flip", "structure"]
AUGMENTATIONS = ("none", "flip", "structure")


def augment_fn(name: Augment | None) -> Callable | None:
    """An augmentation for images in [-1, 1], (C, H, W); ``None`` for ``"none"``."""
    if name in (None, "none"):
        return None
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {name!r}")
    from torchvision.transforms import v2

    if name == "flip":  # flipping commutes with the [-1, 1] scaling
        return v2.RandomHorizontalFlip(p=0.5)
    aug = v2.Compose([
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomRotation(5, interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.05),
    ])

    def apply(img: torch.Tensor) -> torch.Tensor:
        # torchvision's colour ops expect [0, 1] floats.
        return aug((img + 1) / 2).clamp(0, 1) * 2 - 1

    return apply


def load_transform(height: int, width: int | None = None,
                   augment: Augment = "none") -> Callable:
    """PIL image -> float tensor in [-1, 1] of shape (3, H, W).

    The image is resized (bicubic, antialiased) so that it covers H x W with its aspect ratio
    kept, then centre-cropped: a 1280x720 street photo becomes 256x512 without distortion.
    """
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    width = width or height
    aug = augment_fn(augment)

    def apply(img) -> torch.Tensor:
        img = img.convert("RGB")
        scale = max(height / img.height, width / img.width)
        size = (max(height, round(img.height * scale)), max(width, round(img.width * scale)))
        t = F.pil_to_tensor(img)
        t = F.resize(t, list(size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        t = F.center_crop(t, [height, width])
        t = t.float().div(127.5).sub(1.0).clamp(-1, 1)
        return aug(t) if aug is not None else t

    return apply
