"""What :func:`ganzoo.evaluate` can score, resolved into models and indexable image sources.

``generated`` and ``reference`` may each be

- a model (:class:`~ganzoo.metrics.base.EvaluatedModel`: sampled on the fly, nothing written to
  disk);
- a string: ``"model:NAME"``, ``"dataset:NAME"``, ``"folder:PATH"`` or ``"hf-hub:org/name"``
  say what they are (models are parsed by :func:`ganzoo._factory.resolve_model`); otherwise a saved-model folder (``config.json`` + ``model.safetensors``),
  an image folder, a registered dataset name or a registered model preset, tried in that order
  (for ``reference`` datasets are tried before presets, for ``generated`` presets first);
- a ``torch.utils.data.Dataset`` (items: tensors, ``(tensor, label)`` tuples or ganzoo dicts);
- a tensor (N, C, H, W), float in [-1, 1] or uint8.

Image sources are indexed, not iterated, so that every rank of a distributed run can take its
own batches and a dataset is read in the same order on every run (the first ``n`` items).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from .._factory import resolve_model
from ..config import did_you_mean
from ..hub import is_model_folder
from ..registry import build_dataset, list_datasets, list_models
from .base import is_evaluated_model

__all__ = ["ImageSource", "TensorSource", "DatasetSource", "FolderSource", "DatasetRef",
           "resolve_input", "is_model", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


class ImageSource:
    """A finite sequence of images; ``images(start, stop)`` -> float [-1, 1] or uint8 batch."""

    description: str = ""
    cache_id: dict[str, Any] | None = None  # None: not cacheable
    split: str | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def images(self, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError


class TensorSource(ImageSource):
    def __init__(self, tensor: torch.Tensor, cache_name: str | None = None):
        if tensor.dim() != 4:
            raise ValueError(f"an image tensor must be (N, C, H, W), got {tuple(tensor.shape)}")
        if tensor.is_floating_point():
            lo, hi = float(tensor.min()), float(tensor.max())
            if lo < -1.001 or hi > 1.001:
                raise ValueError(f"float image tensors must lie in [-1, 1], got [{lo:.3g}, "
                                 f"{hi:.3g}]")
        self.tensor = tensor
        self.description = f"tensor{tuple(tensor.shape)}"
        self.cache_id = {"tensor": cache_name} if cache_name else None

    def __len__(self):
        return len(self.tensor)

    def images(self, start, stop):
        return self.tensor[start:stop]


def _pick_image(item, key: str | None):
    if torch.is_tensor(item):
        return item
    if isinstance(item, (tuple, list)):
        return item[0]
    if isinstance(item, dict):
        if key is not None:
            return item[key]
        if "image" in item:
            return item["image"]
        keys = [k for k in item if k.startswith("image") and torch.is_tensor(item[k])]
        if len(keys) == 1:
            return item[keys[0]]
        raise KeyError(f"cannot tell which entry of the dataset items is the image (keys: "
                       f"{sorted(item)}); pass image_key=...")
    raise TypeError(f"dataset items must be tensors, tuples or dicts, got {type(item).__name__}")


class DatasetSource(ImageSource):
    def __init__(self, dataset, description: str | None = None,
                 cache_id: dict[str, Any] | None = None, image_key: str | None = None):
        self.dataset = dataset
        self.image_key = image_key
        self.description = description or type(dataset).__name__
        self.cache_id = cache_id
        self.split = getattr(dataset, "split", None)
        if self.split is not None:
            self.split = str(self.split)

    def __len__(self):
        return len(self.dataset)

    def images(self, start, stop):
        return torch.stack([_pick_image(self.dataset[i], self.image_key)
                            for i in range(start, stop)])


class FolderSource(ImageSource):
    """Every image file under ``path`` (recursive, sorted), read with PIL as uint8 RGB.

    With ``resolution`` (a side, or (H, W) for a rectangular model) images are resized to
    cover it (bicubic, antialiased) and center-cropped to it; without, all images must have
    the same size.
    """

    def __init__(self, path: str | os.PathLike,
                 resolution: int | tuple[int, int] | None = None):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"image folder {self.path} does not exist")
        self.files = sorted(p for p in self.path.rglob("*")
                            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.files:
            raise ValueError(f"image folder {self.path} holds no images "
                             f"({', '.join(IMAGE_EXTENSIONS)})")
        if isinstance(resolution, (tuple, list)):
            resolution = tuple(resolution) if resolution[0] != resolution[1] else resolution[0]
        self.resolution = resolution
        self.description = f"folder:{self.path.resolve()}"
        listing = hashlib.sha256()
        for p in self.files:
            st = p.stat()
            listing.update(f"{p.relative_to(self.path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        self.cache_id = {"folder": str(self.path.resolve()), "files": len(self.files),
                         "listing_sha256": listing.hexdigest(),
                         "resolution": list(resolution) if isinstance(resolution, tuple)
                         else resolution}

    def __len__(self):
        return len(self.files)

    def _load(self, p: Path) -> torch.Tensor:
        import numpy as np
        from PIL import Image

        with Image.open(p) as im:
            im = im.convert("RGB")
            if self.resolution is not None:
                h, w = (self.resolution, self.resolution) if isinstance(self.resolution, int) \
                    else self.resolution
                if im.size != (w, h):
                    import torchvision.transforms.functional as TF

                    if h == w:  # the shorter side to h
                        size = h
                    else:  # the smallest size that covers (h, w)
                        scale = max(h / im.height, w / im.width)
                        size = [max(h, round(im.height * scale)),
                                max(w, round(im.width * scale))]
                    im = TF.center_crop(TF.resize(im, size, TF.InterpolationMode.BICUBIC,
                                                  antialias=True), [h, w])
            return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)

    def images(self, start, stop):
        imgs = [self._load(p) for p in self.files[start:stop]]
        sizes = {tuple(t.shape) for t in imgs}
        if len(sizes) > 1:
            raise ValueError(f"images in {self.path} differ in size ({sorted(sizes)[:3]}...); "
                             f"pass resolution=... to resize them")
        return torch.stack(imgs)


class DatasetRef:
    """A registered dataset by name and kwargs; ``view(overrides)`` builds one of its views."""

    def __init__(self, name: str, kwargs: dict[str, Any] | None = None,
                 image_key: str | None = None):
        self.name = name
        self.kwargs = dict(kwargs or {})
        self.image_key = image_key

    def build(self, overrides: dict[str, Any] | None = None):
        return build_dataset(self.name, **{**self.kwargs, **(overrides or {})})

    def view(self, overrides: dict[str, Any] | None = None) -> DatasetSource:
        kwargs = {**self.kwargs, **(overrides or {})}
        ds = self.build(overrides)
        desc = f"dataset:{self.name}" + (f"({_fmt_kwargs(kwargs)})" if kwargs else "")
        cache_id = {"dataset": self.name, "kwargs": json.loads(json.dumps(kwargs, default=str)),
                    "len": len(ds)}
        src = DatasetSource(ds, desc, cache_id, self.image_key)
        if src.split is None and "split" in kwargs:
            src.split = str(kwargs["split"])
        return src


def _fmt_kwargs(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))


def is_model(obj) -> bool:
    """A model (:class:`~ganzoo.metrics.base.EvaluatedModel`), or a DDP / Accelerate wrapper of
    one."""
    if is_evaluated_model(obj):
        return True
    inner = getattr(obj, "module", None)  # DDP / accelerate wrappers
    return isinstance(obj, torch.nn.Module) and is_evaluated_model(inner)


def resolve_input(obj, role: str, dataset_kwargs: dict[str, Any] | None = None,
                  resolution: int | tuple[int, int] | None = None, image_key: str | None = None):
    """``("model", model)``, ``("dataset", DatasetRef)`` or ``("images", ImageSource)``."""
    if obj is None:
        return None
    if is_model(obj):
        model = obj if not hasattr(obj, "module") or not is_model(obj.module) else obj.module
        return "model", model
    if torch.is_tensor(obj):
        return "images", TensorSource(obj)
    if isinstance(obj, torch.utils.data.Dataset):
        return "images", DatasetSource(obj, image_key=image_key)
    if isinstance(obj, ImageSource):
        return "images", obj
    if not isinstance(obj, (str, os.PathLike)):
        raise TypeError(f"cannot evaluate a {type(obj).__name__} as {role}: pass a model, a "
                        f"preset name, a model or image folder, a dataset name, a Dataset or a "
                        f"tensor")
    s = os.fspath(obj)
    kind, _, rest = s.partition(":")
    if kind in ("model", "hf-hub") and rest:
        return "model", resolve_model(s)[0]
    if kind == "dataset" and rest:
        return "dataset", DatasetRef(rest, dataset_kwargs, image_key)
    if kind == "folder" and rest:
        return "images", FolderSource(rest, resolution)
    path = Path(os.path.expanduser(s))
    if path.is_dir():
        if is_model_folder(path):
            return "model", resolve_model(path)[0]
        return "images", FolderSource(path, resolution)
    base = s.partition(".")[0]
    in_datasets = s in list_datasets()
    in_models = base in list_models()
    if in_datasets and (role == "reference" or not in_models):
        return "dataset", DatasetRef(s, dataset_kwargs, image_key)
    if in_models:
        return "model", resolve_model(s)[0]
    hint = did_you_mean(s, list_datasets() + list_models(), sentence=True)
    raise FileNotFoundError(f"{role} '{s}' is not a folder, a registered dataset or a model "
                            f"preset.{hint}")
