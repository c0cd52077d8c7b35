"""Writing a model's outputs to files: ``ganzoo sample --out-dir`` and ``--input``.

- :func:`sample_to_folder`: ``n`` unconditional samples as numbered PNGs (or one ``.npz``),
  the input of a FID service (Kaggle, clean-fid, a paper's protocol). Batch ``b`` is drawn
  from ``torch.Generator().manual_seed(seed * 1_000_003 + b)`` on the CPU, so a file's pixels
  depend only on (model, seed, batch size, its index), not on the device or on how often the
  run was interrupted: a second call skips every complete batch already on disk.
- :func:`generate_folder`: one output per input image for translate, reconstruct and
  transfer models (the CUT reference's ``test.py`` workflow), to a folder or a flat ``.zip``
  (the Kaggle "images.zip" format).

Both use the EMA weights unless ``model.use_ema`` is off (``--live`` on the command line), and
report which. Progress follows :mod:`ganzoo._progress`; Ctrl-C raises :class:`Interrupted`
(a ``KeyboardInterrupt``) saying how many outputs are complete.
"""

from __future__ import annotations

import json
import logging
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from ._io import atomic_path, atomic_write_json, to_uint8
from ._progress import Interrupted, interruptible, progress_bar
from ._factory import resolve_model
from .models.base import DONOR, INPUT

__all__ = ["sample_to_folder", "generate_folder", "Interrupted", "IMAGE_EXTENSIONS"]

logger = logging.getLogger("ganzoo.sampling")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANIFEST = "ganzoo_sampling.json"
BATCH_SEED_STRIDE = 1_000_003  # as ganzoo.evaluate: batch b of seed s uses s * stride + b


def _bar(total: int, desc: str, progress: bool | None, initial: int = 0):
    return progress_bar(total=total, initial=initial, desc=desc, unit="img", enabled=progress)


def weights_in_use(model) -> str:
    """``"ema"`` when the task methods run on EMA copies, else ``"live"``."""
    return "ema" if model.use_ema and len(model.ema) else "live"


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8 on the CPU (:func:`ganzoo._io.to_uint8`)."""
    return to_uint8(images.detach().cpu()).permute(0, 2, 3, 1)


def _pil(array):
    """A PIL image of one (H, W, C) uint8 tensor."""
    from PIL import Image

    a = array.numpy()
    return Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)


# -- unconditional samples ---------------------------------------------------------------------
def sample_to_folder(model, out_dir, n: int, *, batch_size: int = 64, seed: int = 0,
                     fmt: Literal["png", "npz"] = "png", progress: bool | None = None,
                     **sample_kwargs: Any) -> dict[str, Any]:
    """Write ``n`` samples of ``model`` into ``out_dir``; resumable.

    ``fmt="png"``: ``000000.png``, ``000001.png``, ... (at least six digits). ``fmt="npz"``:
    ``samples.npz`` holding ``arr_0``, uint8 (N, H, W, C), the layout of OpenAI's
    guided-diffusion evaluation suite; batches are kept in ``.parts/`` until all are done.
    ``sample_kwargs`` are the model's sampling options (``model.sampling_options``; DDPM:
    ``sampler``, ``num_inference_steps``), passed to ``model.generate``.
    ``out_dir/ganzoo_sampling.json`` records the settings: a folder started with another
    seed, batch size, format or sampler options is refused rather than mixed.

    Returns ``{"written", "skipped", "total", "weights", "output"}``.
    """
    if model.takes_inputs:
        raise ValueError(f"'{model.preset}' is a '{model.task}' model: it has no unconditional "
                         f"samples; give it inputs (ganzoo sample MODEL --input DIR)")
    if n < 1 or batch_size < 1:
        raise ValueError(f"n and batch_size must be positive, got n={n}, batch_size={batch_size}")
    if fmt not in ("png", "npz"):
        raise ValueError(f"fmt must be 'png' or 'npz', got {fmt!r}")
    model.check_sampling_options(sample_kwargs)
    out = Path(out_dir)
    settings = {"model": model.preset, "seed": seed, "batch_size": batch_size, "format": fmt,
                "weights": weights_in_use(model),
                "sample_kwargs": json.loads(json.dumps(sample_kwargs, default=str))}
    _check_manifest(out, settings)
    digits = max(6, len(str(n - 1)))
    batches = [(b, s, min(s + batch_size, n)) for b, s in enumerate(range(0, n, batch_size))]
    final_npz = out / "samples.npz"

    def done(b, start, stop) -> bool:
        if fmt == "png":
            return all((out / f"{i:0{digits}d}.png").is_file() for i in range(start, stop))
        return _part(out, b, stop - start).is_file()

    if fmt == "npz" and final_npz.is_file() and _npz_len(final_npz) == n:
        todo = []
    else:
        todo = [bt for bt in batches if not done(*bt)]
    skipped = n - sum(stop - start for _, start, stop in todo)
    atomic_write_json(out / MANIFEST, {**settings, "n": n})
    complete = skipped
    with _bar(n, f"sampling {model.preset}", progress, initial=skipped) as bar, \
            interruptible(lambda: complete, n, out):
        for b, start, stop in todo:
            g = torch.Generator().manual_seed(seed * BATCH_SEED_STRIDE + b)
            images = _to_uint8(_main_output(model.generate(None, stop - start, g,
                                                           **sample_kwargs)))
            if fmt == "png":
                for i, img in zip(range(start, stop), images):
                    with atomic_path(out / f"{i:0{digits}d}.png") as tmp:
                        _pil(img).save(tmp, format="PNG")
            else:
                import numpy as np

                with atomic_path(_part(out, b, stop - start)) as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, images.numpy())
            complete += stop - start
            bar.update(stop - start)
    if fmt == "npz" and todo:
        _join_parts(out, batches, final_npz)
    weights = settings["weights"]
    logger.info("sampled %d images (%d already there) from %s with %s weights into %s",
                n - skipped, skipped, model.preset, weights.upper(), out)
    return {"written": n - skipped, "skipped": skipped, "total": n, "weights": weights,
            "output": str(final_npz if fmt == "npz" else out)}


def _check_manifest(out: Path, settings: dict) -> None:
    path = out / MANIFEST
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return  # cut by a kill before the rename could happen: nothing relies on it
    differ = [k for k in settings if old.get(k) != settings[k]]
    if differ:
        was = ", ".join(f"{k}={old.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={settings[k]!r}" for k in differ)
        raise ValueError(f"{out} holds samples written with {was}; this run asks for {now}. "
                         f"Use the same settings to resume, or another folder")


def _part(out: Path, b: int, size: int) -> Path:
    return out / ".parts" / f"{b:06d}_{size}.npy"


def _npz_len(path: Path) -> int:
    import numpy as np

    with np.load(path) as data:
        return len(data["arr_0"])


def _join_parts(out: Path, batches, final: Path) -> None:
    import numpy as np

    arrays = [np.load(_part(out, b, stop - start)) for b, start, stop in batches]
    with atomic_path(final) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, arr_0=np.concatenate(arrays))
    for b, start, stop in batches:
        _part(out, b, stop - start).unlink()
    (out / ".parts").rmdir()


# -- one output per input image ----------------------------------------------------------------
def _main_output(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The task's main output of ``model.generate`` (its first)."""
    return next(iter(outputs.values()))


def _task_fn(model, donor: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's image -> image task, through ``model.generate``: one output per input
    image (``donor``: an attribute-transfer model gives each input the donor's attribute)."""
    if not model.takes_inputs:
        raise ValueError(f"'{model.preset}' is a '{model.task}' model: it takes no input "
                         f"images; use ganzoo sample MODEL -n N --out-dir DIR")
    extra = {} if donor is None else {DONOR: donor}
    return lambda x: _main_output(model.generate({INPUT: x, **extra}, len(x)))


def _read(path: Path, size: tuple[int, int] | None, channels: int = 3) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB" if channels == 3 else "L")
        if size:
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        a = np.asarray(im).copy()
    t = torch.from_numpy(a[..., None] if a.ndim == 2 else a).permute(2, 0, 1)
    return t.float() / 127.5 - 1


def generate_folder(model, src_dir, out, *, batch_size: int = 8,
                    image_size: int | tuple[int, int] | None = None,
                    donor: str | Path | None = None, fmt: Literal["jpg", "png"] | None = None,
                    quality: int = 95, progress: bool | None = None) -> dict[str, Any]:
    """Apply the model's task to every image of ``src_dir`` (not recursive), one output per
    input with the same stem, into a folder or a path ending in ``.zip`` (flat).

    ``model``: a model or anything :func:`ganzoo._factory.resolve_model` takes. ``image_size``:
    the (H, W) or side inputs are resized to (bicubic; default the model's ``image_size``; 0
    keeps each image's size, which the network must accept). ``fmt``: ``"png"`` (default
    for a folder) or ``"jpg"`` (default for a ``.zip``, at ``quality``). ``donor``: for
    transfer models, an image whose attribute every input receives (without it, the
    attribute is removed).
    In a folder, outputs already written are skipped (resume); a ``.zip`` is written anew.

    Returns ``{"weights": "ema" | "live", "count", "skipped", "output"}``.
    """
    model = resolve_model(model)[0]
    _task_fn(model, None)  # a sampling model is refused before the folder is read
    src_dir, out = Path(src_dir), Path(out)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"input folder {src_dir} does not exist")
    files = sorted(p for p in src_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {src_dir}")
    to_zip = out.suffix.lower() == ".zip"
    fmt = fmt or ("jpg" if to_zip else "png")  # Kaggle's images.zip holds JPEGs
    if fmt not in ("jpg", "png"):
        raise ValueError(f"fmt must be 'jpg' or 'png', got {fmt!r}")
    size = tuple(model.image_size) if image_size is None else \
        ((image_size, image_size) if isinstance(image_size, int) else tuple(image_size))
    size = None if size in ((0, 0), (0,)) else size
    donor_t = None if donor is None else _read(Path(donor), size, model.channels)[None]
    fn = _task_fn(model, donor_t)
    names = [f"{p.stem}.{fmt}" for p in files]
    todo = list(range(len(files))) if to_zip else \
        [i for i, name in enumerate(names) if not (out / name).is_file()]
    weights = weights_in_use(model)
    logger.info("generate_folder: %s %d images from %s with the %s weights", model.task,
                len(todo), src_dir, weights.upper())
    archive = None
    if to_zip:
        out.parent.mkdir(parents=True, exist_ok=True)
        archive = zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED)
    else:
        out.mkdir(parents=True, exist_ok=True)
    save_kw = {"format": "JPEG", "quality": quality} if fmt == "jpg" else {"format": "PNG"}
    complete = len(files) - len(todo)
    try:
        with _bar(len(files), f"{model.task} {src_dir.name}", progress,
                  initial=len(files) - len(todo)) as bar, \
                interruptible(lambda: complete, len(files), out, resumable=not to_zip):
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                imgs = [_read(files[i], size, model.channels) for i in chunk]
                if len({tuple(t.shape) for t in imgs}) > 1:  # sizes kept and mixed
                    outs = [fn(t[None])[0] for t in imgs]
                else:
                    outs = list(fn(torch.stack(imgs)))
                for i, y in zip(chunk, [_to_uint8(o[None])[0] for o in outs]):
                    if archive is not None:
                        buf = BytesIO()
                        _pil(y).save(buf, **save_kw)
                        archive.writestr(names[i], buf.getvalue())
                    else:
                        with atomic_path(out / names[i]) as tmp:
                            _pil(y).save(tmp, **save_kw)
                    complete += 1
                bar.update(len(chunk))
    finally:
        if archive is not None:
            archive.close()
    return {"weights": weights, "count": len(files), "skipped": len(files) - len(todo),
            "output": str(out)}
