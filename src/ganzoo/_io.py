"""Reading ``.pt`` files the one safe way, with one line of ours when that fails."""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any

__all__ = ["load_tensors"]


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
