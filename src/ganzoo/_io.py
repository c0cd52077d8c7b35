"""File helpers every part of ganzoo shares: atomic writes (files and folders), the one safe
``.pt`` reader, the one safetensors state-dict reader, the one "[-1, 1] images to a PNG
grid" writer, and the one [-1, 1] -> uint8 rounding (:func:`to_uint8`)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import stat
import zipfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_path", "atomic_dir", "atomic_write_text", "atomic_write_json", "current_umask",
           "shared_mode", "load_json", "load_tensors", "load_state_dict", "save_grid", "to_uint8"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed onto ``path`` on success.

    A crash or kill mid-write leaves the previous file (or none) under the final name, never
    a half-written one: ``os.replace`` is atomic within a file system. The temporary name
    holds the process id, so two processes saving the same file do not mix their bytes.
    The file gets the mode the user's umask gives a new file (:func:`shared_mode`), whatever
    the writer created the temporary with.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        _apply_umask(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; renamed onto ``path`` on success.

    A failure removes the temporary folder and leaves ``path`` as it was. An existing
    ``path`` is refused (FileExistsError) unless ``overwrite``, and then replaced only once the
    new folder is complete. Everything in it gets the modes the user's umask gives (as
    :func:`atomic_path`).
    """
    import shutil

    path = Path(path)
    if path.exists() and not overwrite and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) to "
                              f"replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    old = path.with_name(f".{path.name}.{os.getpid()}.old")
    try:
        yield tmp
        for sub in [tmp, *tmp.rglob("*")]:
            _apply_umask(sub)
        if path.exists():
            os.replace(path, old)  # kept until the new folder is in place
        try:
            os.replace(tmp, path)
        except OSError:
            if old.exists():
                os.replace(old, path)
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()


def current_umask() -> int:
    """The process's umask. Linux shows it in /proc/self/status (since 4.7), read without
    changing it; elsewhere it is set and restored at once (``os.umask`` has no getter)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shared_mode(is_dir: bool = False, executable: bool = False) -> int:
    """The mode ``open()`` / ``mkdir()`` give a new file or folder under the user's umask
    (0644 / 0755 under 022, 0664 / 0775 under 002)."""
    return (0o777 if is_dir or executable else 0o666) & ~current_umask()


def _apply_umask(path: Path) -> None:
    """Give ``path`` the mode a plain ``open()`` would have. Writers that go through a
    temporary file of their own (safetensors, ``tempfile.mkstemp``) leave 0600 behind, which
    locks other users out of a run folder shared on a cluster. Links are left alone."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return
    mode = shared_mode(stat.S_ISDIR(st.st_mode), bool(st.st_mode & stat.S_IXUSR))
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = False) -> Path:
    with atomic_path(path, fsync) as tmp:
        tmp.write_text(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, fsync: bool = False) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n", fsync)


def load_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON in ``path``; one-line errors for a missing or invalid file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def load_tensors(path: str | os.PathLike, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; ValueError with one line otherwise.

    torch's own message for a refused file ends in advice to retry with ``weights_only=False``,
    which would run whatever code the file holds: it is never passed on.
    """
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if zipfile.is_zipfile(path):
            reason = ("it holds Python objects other than tensors and plain containers; ganzoo "
                      "never unpickles those. Re-save the tensors with torch.save(state_dict)")
        else:
            reason = "it is not a PyTorch file (corrupt, truncated or another format)"
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        lines = str(e).strip().splitlines()
        reason = f"it is corrupt or truncated ({type(e).__name__}: {lines[0] if lines else ''})"
    raise ValueError(f"cannot read {what} {path}: {reason}")


def load_state_dict(path: str | os.PathLike, what: str = "weights file") -> dict:
    """The tensors of a ``.safetensors`` file on the CPU; one-line errors for a missing or
    corrupt file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"cannot read {what} {path}: it is corrupt or truncated ({e})") from e


def save_grid(images, path: str | os.PathLike, nrow: int = 8, padding: int = 2,
              pad_value: float = 0.0):
    """Save images in [-1, 1] (N, C, H, W) as one PNG grid, atomically; returns the grid in
    [0, 1]. Pixels are quantised as ``torchvision.utils.save_image`` does, the rounding
    ``ganzoo.evaluate`` applies to tensors, so a PNG scores as the tensor it came from."""
    from torchvision.utils import make_grid, save_image

    images = (images.detach().float().cpu().clamp(-1, 1) + 1) / 2
    grid = make_grid(images, nrow=max(1, nrow), padding=padding, pad_value=pad_value)
    with atomic_path(path) as tmp:
        save_image(grid, str(tmp), format="png")
    return grid


def to_uint8(images):
    """Images in [-1, 1] (any shape, any device) to uint8, rounded as
    ``torchvision.utils.save_image`` rounds (``x * 255 + 0.5`` on [0, 1], clamped): the pixels
    of the PNGs ganzoo writes, and what ``ganzoo.evaluate`` scores for a tensor, so a file
    scores as the tensor it came from. uint8 input is returned as it is."""
    import torch

    if images.dtype == torch.uint8:
        return images
    return ((images.float() + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
