"""Every file ganzoo writes gets the mode the user's umask gives a new file (0644 under 022,
0664 under 002): run folders are shared on clusters, and safetensors' own temporary file is
0600."""

from __future__ import annotations

import os
import stat
import tempfile

import numpy as np
import pytest
import torch

import ganzoo
from ganzoo._io import atomic_dir, atomic_path, current_umask, shared_mode
from ganzoo.train import main as train_main

import _train_helpers as helpers


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def toys():
    unregister = helpers.register_toys()
    yield
    unregister()


def _wrong_modes(root) -> list[str]:
    """``path mode`` for each file or folder under ``root`` whose mode is not the umask's."""
    wrong = []
    for path in root.rglob("*"):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        want = shared_mode(stat.S_ISDIR(st.st_mode))
        if stat.S_IMODE(st.st_mode) != want:
            wrong.append(f"{path.relative_to(root)} {oct(stat.S_IMODE(st.st_mode))} "
                         f"(want {oct(want)})")
    return wrong


def test_current_umask_reads_without_changing(umask):
    assert current_umask() == umask
    assert current_umask() == umask
    assert shared_mode() == 0o666 & ~umask and shared_mode(is_dir=True) == 0o777 & ~umask


def test_run_folder_and_samples_follow_the_umask(umask, toys, tmp_path):
    from ganzoo.metrics.cache import save_real
    from ganzoo.sampling import sample_to_folder

    out = tmp_path / "run"
    assert train_main(["--model", "toytrain_gan", "--dataset", "toytrain_images", "-o",
                       str(out), "--no-progress", "--batch-size", "4", "--num-samples", "4",
                       "--max-steps", "2", "--save-every", "1", "--sample-every", "2"]) == 0
    assert (out / "final" / "model.safetensors").is_file()
    assert (out / "checkpoints" / "step_00000002" / "model.safetensors").is_file()
    model = ganzoo.from_pretrained(out / "final")
    sample_to_folder(model, tmp_path / "png", 4, batch_size=2, progress=False)
    sample_to_folder(model, tmp_path / "npz", 4, batch_size=2, fmt="npz", progress=False)
    save_real({"reference": {"dataset": "x"}, "n": 2, "extractor": "e"},
              torch.zeros(2, 3), np.zeros(3), np.eye(3), torch.eye(3),
              cache_dir=tmp_path / "cache")
    assert _wrong_modes(tmp_path) == []


def test_atomic_writes_correct_a_private_temporary(umask, tmp_path):
    """What safetensors and ``tempfile`` do (a 0600 file, a 0700 folder) is undone."""
    with atomic_path(tmp_path / "a.bin") as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    with atomic_dir(tmp_path / "folder") as tmp:
        fd, _ = tempfile.mkstemp(dir=tmp)
        os.close(fd)
        tempfile.mkdtemp(dir=tmp)
    assert _wrong_modes(tmp_path) == []
