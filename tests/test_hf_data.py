"""The ``hf`` dataset (Hugging Face ``datasets``) on local data only: a ``save_to_disk`` folder,
a saved ``DatasetDict`` and an ``imagefolder`` directory, read by the real library, alone and
through the trainer (in this process and, offline, as a command)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ganzoo

datasets = pytest.importorskip("datasets")


def _images(n: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A Dataset and a DatasetDict written by save_to_disk, and an imagefolder tree."""
    root = tmp_path_factory.mktemp("hf")
    images = _images(6)
    features = datasets.Features({"img": datasets.Image(),
                                  "cls": datasets.ClassLabel(names=["a", "b", "c"]),
                                  "caption": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"img": images, "cls": [0, 1, 2, 0, 1, 2],
                                     "caption": list("uvwxyz")}, features=features)
    ds.save_to_disk(str(root / "disk"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(
        str(root / "dict"))
    for i, im in enumerate(images):
        (root / "folder" / "ab"[i % 2]).mkdir(parents=True, exist_ok=True)
        im.save(root / "folder" / "ab"[i % 2] / f"{i}.png")
    return root, images


def test_save_to_disk_folder_gives_batch_dicts(saved):
    root, images = saved
    ds = ganzoo.build_dataset("hf", path=str(root / "disk"), image_column="img",
                              label_column="cls", resolution=16, aspect_ratio=1.5)
    assert len(ds) == 6 and ds.split == "train"
    item = ds[2]
    assert set(item) == {"image", "label"}
    assert item["image"].shape == (3, 16, 24) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() < item["image"].max() <= 1.0
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 2
    # The pixels are the stored image's, resized by the folder datasets' own transform.
    from ganzoo.datasets.transforms import load_transform

    torch.testing.assert_close(item["image"], load_transform(16, 24)(images[2]))
    # A batch is one Arrow read and gives the same items.
    batch = ds.__getitems__([2, 0])
    assert torch.equal(batch[0]["image"], item["image"]) and int(batch[1]["label"]) == 0
    assert len(ganzoo.build_dataset("hf", path=str(root / "disk"), image_column="img",
                                    size=4)) == 4


def test_dataset_dict_splits_and_imagefolder(saved, tmp_path):
    root, _ = saved
    test = ganzoo.build_dataset("hf", path=str(root / "dict"), split="test", image_column="img")
    assert len(test) == 2 and set(test[0]) == {"image"}
    cache = str(tmp_path / "cache")
    folder = ganzoo.build_dataset("hf", path="imagefolder", data_dir=str(root / "folder"),
                                  label_column="label", resolution=8, cache_dir=cache)
    assert len(folder) == 6 and folder[0]["image"].shape == (3, 8, 8)
    assert sorted(int(folder[i]["label"]) for i in range(6)) == [0, 0, 0, 1, 1, 1]
    # A plain folder of images: datasets infers the imagefolder builder itself.
    assert len(ganzoo.build_dataset("hf", path=str(root / "folder"), cache_dir=cache)) == 6


def test_bad_options_are_one_line_each(saved):
    root, _ = saved
    cases = [(dict(path=str(root / "dict"), split="val"), ValueError, r"splits \['test', "
              r"'train'\], not 'val'"),
             (dict(path=str(root / "disk")), ValueError, "no column 'image'.*columns: img, "
              "cls, caption"),
             (dict(path=str(root / "disk"), image_column="img", label_column="caption"),
              ValueError, "label_column 'caption' holds"),
             (dict(path=str(root / "missing") + "/x"), FileNotFoundError, "no such folder")]
    for kwargs, error, needle in cases:
        with pytest.raises(error, match=needle):
            ganzoo.build_dataset("hf", **kwargs)


def test_without_datasets_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'ganzoo\[datasets\]'"):
        ganzoo.build_dataset("hf", path="huggan/anime-faces")


@pytest.mark.parametrize("layout", ["save_to_disk", "imagefolder"])
def test_trainer_fills_the_resolution_and_trains(saved, tmp_path, layout):
    from ganzoo.train import main

    root, _ = saved
    data = ["--set", f"data.path={root / 'disk'}", "--set", "data.image_column=img"] \
        if layout == "save_to_disk" else \
        ["--set", f"data.path={root / 'folder'}", "--set", f"data.cache_dir={tmp_path / 'c'}"]
    out = tmp_path / "run"
    assert main(["--model", "test_dcgan", "--dataset", "hf", *data, "--max-steps", "2",
                 "--batch-size", "4", "--sample-every", "0", "--no-progress",
                 "-o", str(out)]) == 0
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["card"]["dataset"].startswith("hf (") and config["card"]["steps"] == 2
    assert "datasets" not in config["card"]  # a local folder is no Hub dataset id


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "no-network"])
def test_train_command_offline_names_the_hub_dataset(tmp_path, offline):
    """With the Hub unreachable (offline mode, or nothing listening at HF_ENDPOINT; a fresh
    HF_HOME), ``ganzoo train --dataset hf --set data.path=org/name`` is one line and exit 2,
    before anything is written. Without offline mode it used to print 30 s of
    huggingface_hub's retries, each line twice, first."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    for key in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):
        env.pop(key, None)
    if offline:
        env.update(HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "ganzoo.cli", "train", "--model", "test_dcgan", "--dataset",
           "hf", "--set", "data.path=huggan/anime-faces", "--max-steps", "2", "--no-progress",
           "-o", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "cannot download 'huggan/anime-faces'" in proc.stderr
    assert "--dataset image_folder --set data.root=DIR" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Retry" not in proc.stdout and "TensorFlow" not in proc.stdout, proc.stdout
    assert not (tmp_path / "run" / "checkpoints").exists()
