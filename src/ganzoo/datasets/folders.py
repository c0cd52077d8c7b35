"""Datasets read from local folders: any images, CelebA, unpaired domains, street scenes.

Images are found recursively with every extension Pillow can open. Files whose header Pillow
cannot read are skipped at construction with one warning that counts them (``on_error="raise"``
fails instead, naming the file); a file that fails later, while decoding, is replaced by the
next readable one with a warning, or raises under ``on_error="raise"``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import Dataset

from ..config import did_you_mean
from ..registry import register_dataset
from .transforms import Augment, augment_at_epoch, augment_fn, load_transform

__all__ = ["ImageFolderDataset", "CelebADataset", "UnpairedFolderDataset", "list_images"]

OnError = Literal["skip", "raise"]
Pairing = Literal["fixed", "random"]


def _extensions() -> set[str]:
    from PIL import Image

    return {ext.lower() for ext in Image.registered_extensions()}


def list_images(root: str | os.PathLike, on_error: OnError = "skip") -> list[Path]:
    """Readable image files under ``root``, sorted; unreadable ones skipped with a count."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    exts = _extensions()
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)
    good, bad = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im.size  # noqa: B018 - reading the header is the check
            good.append(p)
        except (UnidentifiedImageError, OSError) as e:
            if on_error == "raise":
                raise ValueError(f"cannot read image {p}: {e}") from e
            bad.append(p)
    if bad:
        names = ", ".join(str(b) for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} of {len(files)} files in {root} that Pillow cannot "
                      f"read: {names}", stacklevel=2)
    if not good:
        raise ValueError(f"image folder {root} holds no readable images "
                         f"(looked for {', '.join(sorted(exts)[:8])}, ...)")
    return good


class _Loader:
    """Decode one file with the dataset's transform; fall back on decode errors."""

    def __init__(self, height: int, width: int, augment: str, on_error: OnError,
                 crop_until_epoch: int | None = None):
        self.transform = load_transform(height, width, augment)
        self.on_error = on_error
        self.failed: set[Path] = set()
        # The transform per augmentation in force (crop_until_epoch: crop_flip, then flip).
        self.size, self.augment, self.crop_until_epoch = (height, width), augment, crop_until_epoch
        self.epoch = 0
        self.transforms = {augment: self.transform}

    def load(self, files: list[Path], index: int) -> torch.Tensor:
        from PIL import Image

        augment = augment_at_epoch(self.augment, self.crop_until_epoch, self.epoch)
        if augment not in self.transforms:
            self.transforms[augment] = load_transform(*self.size, augment)
        transform = self.transforms[augment]
        for k in range(len(files)):
            path = files[(index + k) % len(files)]
            if path in self.failed:
                continue
            try:
                with Image.open(path) as im:
                    return transform(im)
            except OSError as e:
                if self.on_error == "raise":
                    raise ValueError(f"cannot decode image {path}: {e}") from e
                self.failed.add(path)
                warnings.warn(f"skipping unreadable image {path} ({len(self.failed)} so far): "
                              f"{e}", stacklevel=2)
        raise ValueError("no image in this dataset can be decoded")


def _check_size(resolution: int, aspect_ratio: float) -> tuple[int, int]:
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")
    if aspect_ratio <= 0:
        raise ValueError(f"aspect_ratio must be positive, got {aspect_ratio}")
    return int(resolution), int(round(resolution * aspect_ratio))


class ImageFolderDataset(Dataset):
    """Every image under ``root`` (recursive), resized to cover ``resolution`` x
    ``resolution * aspect_ratio`` and centre-cropped. Key: ``image``."""

    keys = ("image",)

    def __init__(self, root, resolution: int = 64, aspect_ratio: float = 1.0,
                 augment: Augment = "none", on_error: OnError = "skip",
                 size: int | None = None):
        self.height, self.width = _check_size(resolution, aspect_ratio)
        self.resolution = self.height
        self.root = Path(root)
        self.files = list_images(root, on_error)
        if size is not None:
            self.files = self.files[:size]
        self._loader = _Loader(self.height, self.width, augment, on_error)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self._loader.load(self.files, index)}


@register_dataset
def image_folder(root: str, resolution: int = 64, aspect_ratio: float = 1.0,
                 augment: Augment = "none", on_error: OnError = "skip",
                 size: int | None = None, seed: int = 0) -> ImageFolderDataset:
    """Any folder of images (e.g. anime faces), recursive."""
    return ImageFolderDataset(root, resolution, aspect_ratio, augment, on_error, size)


@register_dataset
def street_scenes(root: str, resolution: int = 256, aspect_ratio: float = 2.0,
                  augment: Augment = "none", on_error: OnError = "skip",
                  size: int | None = None, seed: int = 0) -> ImageFolderDataset:
    """Rectangular street scenes in the style of BDD100K (default 256x512, aspect kept)."""
    return ImageFolderDataset(root, resolution, aspect_ratio, augment, on_error, size)


class CelebADataset(Dataset):
    """CelebA from its official files, split by an attribute into with/without.

    ``root`` holds ``img_align_celeba/``, ``list_attr_celeba.txt`` and
    ``list_eval_partition.txt``. Images are centre-cropped to 178x178 (the face region of the
    aligned set) and resized. ``aligned_root`` reads the images from another folder with the
    same file names instead, e.g. the output of ``ganzoo prepare faces
    ROOT/img_align_celeba ALIGNED``; its square crops are resized without the 178 crop, and
    names missing there (no face found) drop out, so the lists still apply.
    ``subset="pairs"`` yields ``image_with`` / ``image_without`` (a with-attribute face and an
    unrelated without-attribute face); ``"with"``, ``"without"`` and ``"all"`` yield
    ``image``. Every item also has ``attrs`` (the 40 attributes as 0/1).
    """

    SPLITS = {"train": 0, "val": 1, "test": 2}

    def __init__(self, root, attribute: str = "Smiling",
                 split: Literal["train", "val", "test", "all"] = "train",
                 subset: Literal["pairs", "with", "without", "all"] = "pairs",
                 resolution: int = 64, augment: Augment = "none",
                 seed: int = 0, size: int | None = None, on_error: OnError = "skip",
                 aligned_root: str | os.PathLike | None = None):
        root = Path(root).expanduser()
        attr_file, part_file = root / "list_attr_celeba.txt", root / "list_eval_partition.txt"
        required = [attr_file, part_file] + ([] if aligned_root else [root / "img_align_celeba"])
        for p in required:
            if not p.exists():
                raise FileNotFoundError(f"CelebA file {p} does not exist (expected "
                                        f"img_align_celeba/, list_attr_celeba.txt and "
                                        f"list_eval_partition.txt under {root})")
        images = Path(aligned_root).expanduser() if aligned_root else root / "img_align_celeba"
        if aligned_root and not images.is_dir():
            raise FileNotFoundError(f"CelebA aligned_root {images} is not a folder")
        if split not in (*self.SPLITS, "all"):
            raise ValueError(f"split must be train, val, test or all, got {split!r}")
        if subset not in ("pairs", "with", "without", "all"):
            raise ValueError(f"subset must be pairs, with, without or all, got {subset!r}")
        lines = attr_file.read_text().splitlines()
        self.attr_names = lines[1].split()
        if attribute not in self.attr_names:
            raise KeyError(f"CelebA has no attribute '{attribute}'"
                           + did_you_mean(attribute, self.attr_names)
                           + f" (attributes: {', '.join(self.attr_names)})")
        partition = dict(line.split() for line in part_file.read_text().splitlines() if line)
        col = self.attr_names.index(attribute)
        rows = []
        for line in lines[2:]:
            parts = line.split()
            if not parts:
                continue
            name, values = parts[0], [int(v) > 0 for v in parts[1:]]
            if split != "all" and int(partition.get(name, -1)) != self.SPLITS[split]:
                continue
            if (images / name).is_file():
                rows.append((name, values))
        if size is not None:
            rows = rows[:size]
        self.with_attr = [r for r in rows if r[1][col]]
        self.without_attr = [r for r in rows if not r[1][col]]
        self.rows = {"with": self.with_attr, "without": self.without_attr, "all": rows,
                     "pairs": self.with_attr}[subset]
        if not self.rows or (subset == "pairs" and not self.without_attr):
            raise ValueError(f"CelebA split '{split}' under {root} has no images in {images} "
                             f"for subset '{subset}' of attribute '{attribute}'")
        g = torch.Generator().manual_seed(seed)
        self._partner = torch.randperm(max(len(self.without_attr), 1), generator=g).tolist()
        self.images, self.subset, self.attribute = images, subset, attribute
        self.aligned = aligned_root is not None
        self.resolution = int(resolution)
        self.keys = ("image_with", "image_without", "attrs") if subset == "pairs" \
            else ("image", "attrs")
        self._aug = augment_fn(augment)
        self.on_error = on_error

    def _load(self, name: str) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms.v2 import functional as F

        path = self.images / name
        try:
            with Image.open(path) as im:
                t = F.pil_to_tensor(im.convert("RGB"))
        except OSError as e:
            raise ValueError(f"cannot decode CelebA image {path}: {e}") from e
        # The official aligned set is 178x218 with the face in the central 178x178; crops of
        # `prepare faces` are square already and are only resized.
        side = min(t.shape[-2:]) if self.aligned else 178
        t = F.center_crop(t, [side, side])
        t = F.resize(t, [self.resolution, self.resolution], antialias=True)
        t = t.float().div(127.5).sub(1.0).clamp(-1, 1)
        return self._aug(t) if self._aug is not None else t

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        name, values = self.rows[index]
        attrs = torch.tensor(values, dtype=torch.float32)
        if self.subset != "pairs":
            return {"image": self._load(name), "attrs": attrs}
        partner = self.without_attr[self._partner[index % len(self._partner)]]
        return {"image_with": self._load(name), "image_without": self._load(partner[0]),
                "attrs": attrs}


@register_dataset
def celeba(root: str, attribute: str = "Smiling",
           split: Literal["train", "val", "test", "all"] = "train",
           subset: Literal["pairs", "with", "without", "all"] = "pairs",
           resolution: int = 64, augment: Augment = "none",
           seed: int = 0, size: int | None = None,
           aligned_root: str | None = None) -> CelebADataset:
    """CelebA split by an attribute (Smiling by default) into with/without; ``aligned_root``
    takes the images from a ``ganzoo prepare faces`` folder."""
    return CelebADataset(root, attribute, split, subset, resolution, augment, seed, size,
                         aligned_root=aligned_root)


class UnpairedFolderDataset(Dataset):
    """Two folders of unpaired images: ``image_a`` (source) and ``image_b`` (target).

    Give ``root_a`` and ``root_b``, or a ``root`` holding one of the usual layouts
    (``trainA``/``trainB``, ``photo_jpg``/``monet_jpg`` as the Kaggle competition ships them,
    ``A``/``B``). Item i pairs A[i] with B[perm[i]] for a seeded permutation, so pairs are
    unaligned but reproducible. ``pairing="random"`` is the CUT reference's
    ``UnalignedDataset`` (``serial_batches`` off): every load of item i draws its B uniformly,
    with replacement, from torch's RNG, which the trainer seeds per data position
    (training/data.py ``SeededDataset``), so a resumed run draws the same B's.
    ``crop_until_epoch`` stops ``crop_flip``'s crop from that data epoch on (datasets/transforms.py).
    ``domain="a"|"b"`` yields ``image`` from one side.
    """

    LAYOUTS = (("trainA", "trainB"), ("photo_jpg", "monet_jpg"), ("A", "B"))

    def __init__(self, root=None, root_a=None, root_b=None, resolution: int = 256,
                 domain: Literal["both", "a", "b"] = "both",
                 augment: Augment = "none", seed: int = 0,
                 on_error: OnError = "skip", size: int | None = None,
                 pairing: Pairing = "fixed", crop_until_epoch: int | None = None):
        if root_a is None or root_b is None:
            if root is None:
                raise ValueError("unpaired needs root (with trainA/trainB, photo_jpg/monet_jpg "
                                 "or A/B inside) or both root_a and root_b")
            base = Path(root).expanduser()
            for a, b in self.LAYOUTS:
                if (base / a).is_dir() and (base / b).is_dir():
                    root_a, root_b = base / a, base / b
                    break
            else:
                raise FileNotFoundError(
                    f"{base} holds none of the layouts "
                    + ", ".join(f"{a}/ + {b}/" for a, b in self.LAYOUTS))
        if domain not in ("both", "a", "b"):
            raise ValueError(f"domain must be both, a or b, got {domain!r}")
        _check_epoch_options(pairing, crop_until_epoch)
        self.pairing = pairing
        self.files_a = list_images(root_a, on_error)
        self.files_b = list_images(root_b, on_error)
        if size is not None:
            self.files_a, self.files_b = self.files_a[:size], self.files_b[:size]
        self.domain = domain
        self.keys = ("image_a", "image_b") if domain == "both" else ("image",)
        self.resolution = int(resolution)
        self._loader = _Loader(self.resolution, self.resolution, augment, on_error,
                               crop_until_epoch)
        g = torch.Generator().manual_seed(seed)
        self._perm = torch.randperm(len(self.files_b), generator=g).tolist()

    def __len__(self) -> int:
        if self.domain == "a":
            return len(self.files_a)
        if self.domain == "b":
            return len(self.files_b)
        return max(len(self.files_a), len(self.files_b))

    def set_epoch(self, epoch: int) -> None:
        """The data epoch of the items loaded next (the trainer calls it before each load)."""
        self._loader.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self.domain == "a":
            return {"image": self._loader.load(self.files_a, index)}
        if self.domain == "b":
            return {"image": self._loader.load(self.files_b, index)}
        if self.pairing == "random":  # drawn before the loads' augmentations draw
            partner = int(torch.randint(len(self.files_b), ()))
        else:
            partner = self._perm[index % len(self._perm)]
        return {"image_a": self._loader.load(self.files_a, index % len(self.files_a)),
                "image_b": self._loader.load(self.files_b, partner)}


def _check_epoch_options(pairing: str, crop_until_epoch: int | None) -> None:
    if pairing not in ("fixed", "random"):
        raise ValueError(f"pairing must be fixed or random, got {pairing!r}")
    if crop_until_epoch is not None and crop_until_epoch < 0:
        raise ValueError(f"crop_until_epoch must be >= 0, got {crop_until_epoch}")


@register_dataset
def unpaired(root: str | None = None, root_a: str | None = None, root_b: str | None = None,
             resolution: int = 256, domain: Literal["both", "a", "b"] = "both",
             augment: Augment = "none", seed: int = 0,
             on_error: OnError = "skip", size: int | None = None,
             pairing: Pairing = "fixed",
             crop_until_epoch: int | None = None) -> UnpairedFolderDataset:
    """Two folders of unpaired images (photo/monet, trainA/trainB), for translation;
    ``pairing="random"`` and ``crop_until_epoch`` give the CUT reference's data loading."""
    return UnpairedFolderDataset(root, root_a, root_b, resolution, domain, augment, seed,
                                 on_error, size, pairing, crop_until_epoch)
