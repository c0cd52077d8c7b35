"""``hf``: any image dataset of the Hugging Face ``datasets`` library, as ganzoo batch dicts.

``path`` is what ``datasets`` itself accepts: a Hub dataset id (``huggan/anime-faces``), a
folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` (read with
``load_from_disk``), a folder of images (``load_dataset`` infers ``imagefolder``), or a builder
name such as ``imagefolder`` together with ``data_dir``. Hub downloads go through the
``datasets`` cache (``HF_HOME``), so ``HF_DATASETS_OFFLINE=1`` works once a dataset is cached.

Images are resized to cover ``resolution`` x ``resolution * aspect_ratio`` and centre-cropped,
as the folder datasets do (one ``load_transform`` for all). Needs ``pip install
'ganzoo[datasets]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from ..hub import HubError
from ..registry import register_dataset
from .folders import _check_size
from .transforms import Augment, load_transform

__all__ = ["HFImageDataset", "load_hf"]

INSTALL = "pip install 'ganzoo[datasets]'"
FOLDER_HINT = ("a plain image folder needs no Hub: --dataset image_folder --set "
               "data.root=DIR")


def _import_datasets():
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"the 'hf' dataset needs the Hugging Face datasets package: "
                          f"{INSTALL}") from e
    return datasets


def _is_saved_to_disk(folder: Path) -> bool:
    """The files ``save_to_disk`` writes: ``state.json`` (a Dataset) or ``dataset_dict.json``
    (a DatasetDict). A folder of images holds neither."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def load_hf(path: str, split: str = "train", name: str | None = None,
            data_dir: str | None = None, revision: str | None = None,
            cache_dir: str | None = None):
    """One split of a ``datasets`` dataset, from disk or through ``load_dataset``.

    Failures become one line naming ``path``: a ``HubError`` when the Hub cannot be reached,
    ``FileNotFoundError`` for a name that is neither local nor on the Hub, ``ValueError`` for
    an unknown split.
    """
    datasets = _import_datasets()
    from datasets.exceptions import DatasetNotFoundError

    folder = Path(os.path.expanduser(path))
    if folder.is_dir() and _is_saved_to_disk(folder):
        loaded = datasets.load_from_disk(str(folder))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"dataset 'hf': {path} has splits {sorted(loaded)}, not "
                                 f"'{split}' (set data.split)")
            return loaded[split]
        return loaded  # save_to_disk of one Dataset: that is the split
    if not folder.exists() and (path.startswith((".", "/", "~")) or path.count("/") > 1):
        # A Hub id is "name" or "org/name": this was meant as a local folder.
        raise FileNotFoundError(f"dataset 'hf': no such folder: {path}")
    if not folder.exists() and not datasets.config.HF_HUB_OFFLINE and \
            path not in getattr(datasets.packaged_modules, "_PACKAGED_DATASETS_MODULES", {}):
        why = _hub_unreachable()
        if why:
            # Else huggingface_hub retries each request 5 times with back-off: 30 s of
            # warnings before the same failure.
            raise HubError(f"dataset 'hf': cannot download '{path}': the Hub cannot be reached "
                           f"({why}). A dataset downloaded before loads from the cache with "
                           f"HF_HUB_OFFLINE=1; {FOLDER_HINT}")
    try:
        return datasets.load_dataset(path, name, data_dir=data_dir, split=split,
                                     revision=revision, cache_dir=cache_dir)
    except DatasetNotFoundError as e:
        raise FileNotFoundError(f"dataset 'hf': '{path}' is neither a local folder nor a "
                                f"dataset on the Hub ({_first_line(e)})") from e
    except ConnectionError as e:  # datasets raises it for offline mode and network failures
        raise HubError(f"dataset 'hf': cannot download '{path}' ({_first_line(e)}). Download "
                       f"it once with network access (the cache is HF_HOME), or pass a "
                       f"folder written by save_to_disk; {FOLDER_HINT}") from None
    except ValueError as e:  # unknown split or config name
        raise ValueError(f"dataset 'hf': '{path}': {_first_line(e)}") from e


def _hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why a TCP connection to the Hub endpoint (``HF_ENDPOINT``) fails, or None when it
    opens. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) nothing is probed: only the HTTP
    client knows that route."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return None
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"
    return None


def _first_line(e: Exception) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


class HFImageDataset(Dataset):
    """Items ``{"image": (3, H, W) in [-1, 1]}``, plus ``"label"`` (an int64 class index) when
    ``label_column`` is given."""

    def __init__(self, dataset, image_column: str = "image", label_column: str | None = None,
                 resolution: int = 64, aspect_ratio: float = 1.0, augment: Augment = "none",
                 size: int | None = None, split: str | None = None, source: str = ""):
        datasets = _import_datasets()
        self.height, self.width = _check_size(resolution, aspect_ratio)
        self.resolution = self.height
        self.split = split
        self.source = source
        columns = list(dataset.column_names)
        wanted = [image_column] + ([label_column] if label_column else [])
        for role, column in (("image_column", image_column), ("label_column", label_column)):
            if column and column not in columns:
                raise ValueError(f"dataset 'hf' ({source}) has no column '{column}' "
                                 f"(set data.{role}; columns: {', '.join(columns)})")
        # Only the columns read here: an item then decodes one image, not every image column.
        dataset = dataset.select_columns(wanted)
        if not isinstance(dataset.features[image_column], datasets.Image):
            # Paths or {"bytes", "path"} records decode once cast; arrays are converted below.
            try:
                dataset = dataset.cast_column(image_column, datasets.Image())
            except (TypeError, ValueError):
                pass
        if label_column:
            feature = dataset.features[label_column]
            dtype = getattr(feature, "dtype", "")
            if not isinstance(feature, datasets.ClassLabel) and not str(dtype).startswith(
                    ("int", "uint")):
                raise ValueError(f"dataset 'hf' ({source}): label_column '{label_column}' "
                                 f"holds {feature}; ganzoo labels are class indices (a "
                                 f"ClassLabel or an integer column)")
        if size is not None:
            dataset = dataset.select(range(min(size, len(dataset))))
        self.dataset = dataset
        self.image_column, self.label_column = image_column, label_column
        self.transform = load_transform(self.height, self.width, augment)

    def __len__(self) -> int:
        return len(self.dataset)

    def _item(self, image, label) -> dict[str, torch.Tensor]:
        item = {"image": self.transform(_to_pil(image, self.image_column))}
        if self.label_column:
            item["label"] = torch.tensor(int(label), dtype=torch.long)
        return item

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        row = self.dataset[int(index)]
        return self._item(row[self.image_column], row.get(self.label_column))

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        # One Arrow read for the whole batch rather than one per item.
        rows = self.dataset[[int(i) for i in indices]]
        labels = rows[self.label_column] if self.label_column else [None] * len(indices)
        return [self._item(image, label) for image, label in zip(rows[self.image_column], labels)]


def _to_pil(value: Any, column: str):
    from PIL import Image

    if isinstance(value, Image.Image):
        return value
    import numpy as np

    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim not in (2, 3) or array.dtype == object:
        raise TypeError(f"dataset 'hf': column '{column}' holds {type(value).__name__} values, "
                        f"not images (an Image feature, image paths or HxW[xC] arrays)")
    if array.dtype != np.uint8:  # floats in [0, 1] are the other common array convention
        array = (array * 255 if array.max() <= 1.0 else array).clip(0, 255).astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)


@register_dataset
def hf(path: str, split: str = "train", image_column: str = "image",
       label_column: str | None = None, name: str | None = None, data_dir: str | None = None,
       revision: str | None = None, cache_dir: str | None = None, resolution: int = 64,
       aspect_ratio: float = 1.0, augment: Augment = "none", size: int | None = None,
       seed: int = 0) -> HFImageDataset:
    """A Hugging Face ``datasets`` image dataset: a Hub id, a save_to_disk folder, or a builder
    (``imagefolder`` with ``data_dir``); ``name``, ``revision`` and ``cache_dir`` are
    ``load_dataset``'s."""
    dataset = load_hf(path, split=split, name=name, data_dir=data_dir, revision=revision,
                      cache_dir=cache_dir)
    return HFImageDataset(dataset, image_column, label_column, resolution, aspect_ratio,
                          augment, size, split=split, source=path)
