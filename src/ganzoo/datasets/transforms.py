"""Image transforms shared by the datasets: resize-and-crop to (H, W), augmentation presets.

``flip`` is a horizontal flip with p = 0.5 alone (the 1C baseline of docs/data.md,
"Pipeline selection runs").
``structure`` is a structure-preserving augmentation: horizontal flip with p = 0.5, rotation
within ±5°, mild colour jitter (brightness ±0.1, contrast ±0.1, saturation ±0.05); no
translation and no vertical flip, which would change layouts a model should learn.
``crop_flip`` is pix2pix/CycleGAN/CUT's default training pipeline (``--preprocess
resize_and_crop --load_size 286 --crop_size 256`` plus a horizontal flip with p = 0.5, in
junyanz/pytorch-CycleGAN-and-pix2pix and taesungp/contrastive-unpaired-translation,
``data/base_dataset.py``): the image is resized to 286/256 of the training size, a random
training-size crop is taken, then flipped with p = 0.5. Folder datasets resize the file once,
straight to the larger size; datasets that make tensors at the training size upsample them.
``crop_until_epoch = N`` (the unpaired datasets' option) is the reference's decay phase
(``data/unaligned_dataset.py``: once ``current_epoch > n_epochs`` it loads at the crop size):
from data epoch ``N`` (0-based) on, ``crop_flip`` becomes ``flip``. The trainer tells a dataset
the epoch of the items it loads next through ``set_epoch`` (training/data.py ``SeededDataset``).
"""

from __future__ import annotations

import functools
from typing import Callable, Literal

import torch

__all__ = ["augment_fn", "load_transform", "augment_at_epoch", "AUGMENTATIONS", "Augment"]

# The augmentation presets every dataset takes (one definition for all their signatures).
Augment = Literal["none", "flip", "structure", "crop_flip"]
AUGMENTATIONS = ("none", "flip", "structure", "crop_flip")
# crop_flip's resize before the crop: the references' --load_size 286 for --crop_size 256.
CROP_FLIP_SCALE = 286 / 256


def augment_fn(name: Augment | None) -> Callable | None:
    """An augmentation for images in [-1, 1], (C, H, W); ``None`` for ``"none"``."""
    if name in (None, "none"):
        return None
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {name!r}")
    from torchvision.transforms import v2

    if name == "flip":  # flipping commutes with the [-1, 1] scaling
        return v2.RandomHorizontalFlip(p=0.5)
    if name == "crop_flip":
        return _crop_flip
    aug = v2.Compose([
        v2.RandomHorizontalFlip(p=0.5),
        v2.RandomRotation(5, interpolation=v2.InterpolationMode.BILINEAR),
        v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.05),
    ])

    def apply(img: torch.Tensor) -> torch.Tensor:
        # torchvision's colour ops expect [0, 1] floats.
        return aug((img + 1) / 2).clamp(0, 1) * 2 - 1

    return apply


def augment_at_epoch(augment: Augment, crop_until_epoch: int | None, epoch: int) -> Augment:
    """The augmentation in force for items of data epoch ``epoch`` (0-based): ``crop_flip``
    turns into ``flip`` from ``crop_until_epoch`` on; ``None`` crops throughout."""
    if augment == "crop_flip" and crop_until_epoch is not None and epoch >= crop_until_epoch:
        return "flip"
    return augment


def _load_size(height: int, width: int) -> tuple[int, int]:
    return round(height * CROP_FLIP_SCALE), round(width * CROP_FLIP_SCALE)


def _crop_flip(img: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A random ``size`` crop (default: the image's own size) of ``img`` at 286/256 of that
    size, flipped with p = 0.5. ``img`` is already that large when a folder dataset loaded it
    so; otherwise it is upsampled here (bicubic, values clamped to [-1, 1])."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    height, width = size or tuple(img.shape[-2:])
    load = _load_size(height, width)
    if tuple(img.shape[-2:]) != load:
        img = F.resize(img, list(load), interpolation=v2.InterpolationMode.BICUBIC,
                       antialias=True).clamp(-1, 1)
    top = int(torch.randint(0, load[0] - height + 1, ()))
    left = int(torch.randint(0, load[1] - width + 1, ()))
    img = img[..., top:top + height, left:left + width]
    return img.flip(-1) if bool(torch.rand(()) < 0.5) else img


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
    cover = (height, width)
    if augment == "crop_flip":  # crops from a larger image: resize the file straight to it
        cover = _load_size(height, width)
        aug = functools.partial(_crop_flip, size=(height, width))

    def apply(img) -> torch.Tensor:
        img = img.convert("RGB")
        scale = max(cover[0] / img.height, cover[1] / img.width)
        size = (max(cover[0], round(img.height * scale)), max(cover[1], round(img.width * scale)))
        t = F.pil_to_tensor(img)
        t = F.resize(t, list(size), interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        t = F.center_crop(t, list(cover))
        t = t.float().div(127.5).sub(1.0).clamp(-1, 1)
        return aug(t) if aug is not None else t

    return apply
