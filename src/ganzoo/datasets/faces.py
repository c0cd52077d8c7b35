"""Face alignment for folders of photographs: ``ganzoo prepare faces SRC DST``.

Stage 1B of docs/workflows/generator_evolution.md compares full images with MTCNN-aligned
faces, aligned once and cached to disk. MTCNN is Zhang, Zhang, Li & Qiao, "Joint Face
Detection and Alignment Using Multitask Cascaded Convolutional Networks", IEEE Signal
Processing Letters 2016
(arXiv:1604.02878), as ported to PyTorch by facenet-pytorch
(https://github.com/timesler/facenet-pytorch), whose wheel carries the P-, R- and O-Net
weights, so alignment runs offline. Per image:

1. detect faces and take the five landmarks (eyes, nose, mouth corners) of the most confident;
2. fit a similarity transform (rotation, uniform scale, translation; scikit-image's
   least-squares ``SimilarityTransform``) from them to fixed reference landmarks;
3. warp with bicubic interpolation (``order=3``) into a ``size`` x ``size`` crop and write it.

Departures from a plain MTCNN + ``SimilarityTransform`` alignment, all deliberate:

- The most confident face, not the largest: facenet-pytorch returns the largest first unless
  ``select_largest=False``, and a large blurry background face should not win over the subject.
- Warped values are rounded before the cast to uint8 (``astype`` alone truncates, darkening
  every pixel by half a level on average).
- For ``size`` other than 128 the reference is scaled about pixel centres,
  ``(p + 0.5) * size / 128 - 0.5``, so a 256 crop is the 128 crop at twice the resolution.
- EXIF orientation is applied before detection (phone photos are stored rotated).
- Images whose shorter side is under MTCNN's smallest face (20 px) count as face-less:
  facenet-pytorch raises on them instead.

A folder run keeps relative paths and file names (CelebA's lists name the files), writes JPEG
at quality 95 without chroma subsampling, and writes atomically, so an interrupted run leaves
only whole files. It resumes: an existing output is not redone; images without a face are
listed in ``DST/skipped.txt`` and never detected again; unreadable files are listed in
``DST/unreadable.txt`` and retried on every run (decoding fails fast, and a re-downloaded file
should then be picked up). ``DST/faces.json`` records the crop size, and a later run with
another ``--size`` is refused rather than mixing two geometries in one folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._io import atomic_path, atomic_write_text
from .._progress import interruptible, progress_bar
from .folders import _extensions

__all__ = ["REFERENCE_LANDMARKS", "INSTALL", "reference_landmarks", "fit_alignment",
           "align_face", "FaceDetector", "PrepareSummary", "prepare_faces"]

# Reference positions in a 128 x 128 crop, (x, y) in pixels (docs/workflows/generator_evolution.md,
# "Face alignment").
REFERENCE_LANDMARKS = np.array([
    [38.0, 51.0],  # left eye
    [90.0, 51.0],  # right eye
    [64.0, 71.0],  # nose tip
    [45.0, 95.0],  # left mouth corner
    [83.0, 95.0],  # right mouth corner
])
REFERENCE_SIZE = 128
INSTALL = "pip install 'ganzoo[faces]' && pip install --no-deps facenet-pytorch==2.6.0"
MIN_SIZE = 16
_JPEG = {"quality": 95, "subsampling": 0}


def reference_landmarks(size: int = REFERENCE_SIZE) -> np.ndarray:
    """The reference landmarks for a ``size`` x ``size`` crop, (5, 2) as (x, y)."""
    s = size / REFERENCE_SIZE
    return (REFERENCE_LANDMARKS + 0.5) * s - 0.5


def fit_alignment(landmarks, size: int = REFERENCE_SIZE):
    """The similarity transform taking ``landmarks`` (5, 2) to the reference, or ``None`` when
    the fit is degenerate (e.g. all five points coincide)."""
    from skimage.transform import SimilarityTransform

    src = np.asarray(landmarks, dtype=np.float64)
    dst = reference_landmarks(size)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
        return tform if tform else None
    tform = SimilarityTransform()
    return tform if tform.estimate(src, dst) else None


def align_face(image, landmarks, size: int = REFERENCE_SIZE) -> np.ndarray | None:
    """The aligned ``size`` x ``size`` x 3 uint8 crop of an RGB image (PIL or HWC uint8 array)
    whose face has ``landmarks``; ``None`` when no transform fits them."""
    from skimage.transform import warp

    tform = fit_alignment(landmarks, size)
    if tform is None:
        return None
    pixels = np.asarray(image)
    out = warp(pixels, tform.inverse, output_shape=(size, size), order=3, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _import_mtcnn():
    """facenet-pytorch's MTCNN, or an ImportError naming the install line."""
    missing = [name for name in ("facenet_pytorch", "skimage")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(f"prepare faces needs facenet-pytorch and scikit-image "
                          f"(missing: {', '.join(missing)}); install them with: {INSTALL}")
    try:
        from facenet_pytorch import MTCNN
    except ImportError as e:
        raise ImportError(f"facenet-pytorch is installed but cannot be imported ({e}); "
                          f"reinstall with: {INSTALL}") from e
    return MTCNN


class FaceDetector:
    """MTCNN returning the five landmarks of the most confident face in a PIL RGB image."""

    def __init__(self, device: str = "cpu"):
        MTCNN = _import_mtcnn()
        self.mtcnn = MTCNN(select_largest=False, device=device)

    def __call__(self, image) -> np.ndarray | None:
        if min(image.size) < self.mtcnn.min_face_size:
            return None
        boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        if boxes is None or len(boxes) == 0:
            return None
        best = int(np.argmax(np.asarray(probs, dtype=np.float64)))
        return np.asarray(points[best], dtype=np.float64)


@dataclass
class PrepareSummary:
    """What one ``prepare_faces`` run found and did."""

    src: Path
    dst: Path
    found: int  # images under SRC
    aligned: int  # written by this run
    done_before: int  # outputs that already existed
    no_face: int  # listed in skipped.txt (found by this run or an earlier one)
    unreadable: int  # failed to decode in this run
    detected: int  # images the detector ran on in this run
    seconds: float

    def line(self) -> str:
        rate = f", {self.seconds / self.detected:.2f} s/image" if self.detected else ""
        return (f"prepare faces: {self.found} images in {self.src}: {self.aligned} aligned, "
                f"{self.done_before} already aligned, {self.no_face} without a face"
                + (f" ({self.dst / 'skipped.txt'})" if self.no_face else "")
                + f", {self.unreadable} unreadable"
                + (f" ({self.dst / 'unreadable.txt'})" if self.unreadable else "")
                + f"; {self.seconds:.1f} s{rate}")


# -- one image -------------------------------------------------------------------------------

def _load_rgb(path: Path):
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return im.convert("RGB")


def _write(pixels: np.ndarray, out: Path) -> None:
    from PIL import Image

    fmt = Image.registered_extensions()[out.suffix.lower()]
    with atomic_path(out) as tmp:  # ".name.<pid>.tmp": not an image suffix, folders ignore it
        Image.fromarray(pixels).save(tmp, format=fmt, **(_JPEG if fmt == "JPEG" else {}))


def _align_file(path: Path, out: Path, detector, size: int) -> tuple[str, str]:
    """``("aligned" | "no_face" | "unreadable", message)`` for one file."""
    from PIL import Image

    try:
        image = _load_rgb(path)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        return "unreadable", f"{type(e).__name__}: {e}".splitlines()[0]
    landmarks = detector(image)
    pixels = None if landmarks is None else align_face(image, landmarks, size)
    if pixels is None:
        return "no_face", ""
    _write(pixels, out)
    return "aligned", ""


class _LazyDetector:
    """Builds MTCNN on the first image that decodes, so a run whose only remaining files are
    unreadable loads no model."""

    def __init__(self, device: str):
        self.device = device
        self.detector = None

    def __call__(self, image):
        if self.detector is None:
            self.detector = FaceDetector(self.device)
        return self.detector(image)


_WORKER: tuple | None = None


def _worker_init(device: str, size: int, threads: int) -> None:
    import signal

    import torch

    global _WORKER
    # Ctrl-C reaches the whole process group: the main process says what is done; each worker
    # would print a KeyboardInterrupt traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)  # workers x threads = the cores, not cores squared
    _WORKER = (_LazyDetector(device), size)


def _worker_task(task: tuple[str, Path, Path]) -> tuple[str, str, str]:
    rel, path, out = task
    detector, size = _WORKER
    return (rel, *_align_file(path, out, detector, size))


# -- a folder --------------------------------------------------------------------------------

def _output_path(dst: Path, rel: str) -> Path:
    from PIL import Image

    out = dst / rel
    fmt = Image.registered_extensions().get(out.suffix.lower())
    return out if fmt in Image.SAVE else out.with_name(out.name + ".png")


def _list_sources(src: Path, dst: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``src``, sorted, leaving out ``dst``."""
    exts = _extensions()
    try:  # a DST inside SRC: its crops are outputs, not photographs to align
        inner = dst.resolve().relative_to(src.resolve()).as_posix() + "/"
    except ValueError:
        inner = None
    found = []
    for p in src.rglob("*"):
        if p.suffix.lower() in exts and p.is_file():
            rel = p.relative_to(src).as_posix()
            if inner is None or not rel.startswith(inner):
                found.append(rel)
    return sorted(found)


def _read_list(path: Path) -> set[str]:
    return {line for line in path.read_text().splitlines() if line} if path.is_file() else set()


def _write_list(path: Path, names: set[str]) -> None:
    if not names:
        path.unlink(missing_ok=True)
        return
    text = "".join(f"{n}\n" for n in sorted(names))
    if path.is_file() and path.read_text() == text:
        return  # unchanged: a run with nothing new touches nothing
    atomic_write_text(path, text)


def _check_settings(dst: Path, size: int) -> None:
    """Refuse to add crops of another size to a folder; record the settings otherwise."""
    record = dst / "faces.json"
    if record.is_file():
        before = json.loads(record.read_text()).get("size")
        if before != size:
            raise ValueError(f"{dst} holds faces aligned at {before} px; pass --size {before} "
                             f"to resume it, or choose another DST for {size} px")
        return
    record.write_text(json.dumps({
        "size": size, "detector": "MTCNN (facenet-pytorch)", "face": "most confident",
        "reference_landmarks": reference_landmarks(size).round(4).tolist(),
        "interpolation": "bicubic (skimage.transform.warp, order=3)"}, indent=2) + "\n")


def _check_paths(src: Path, dst: Path) -> None:
    if not src.exists():
        raise FileNotFoundError(f"source folder {src} does not exist")
    if not src.is_dir():
        raise ValueError(f"source {src} is not a folder")
    if dst.exists() and not dst.is_dir():
        raise ValueError(f"destination {dst} is not a folder")
    if dst.resolve() == src.resolve():
        raise ValueError(f"destination must differ from the source ({src}): aligned faces "
                         f"would replace the photographs")


def _check_device(device: str) -> None:
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r} ({e})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} is not available: torch sees no CUDA device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} is not available: torch sees "
                         f"{torch.cuda.device_count()} CUDA devices")


def prepare_faces(src, dst, size: int = REFERENCE_SIZE, workers: int = 1, device: str = "cpu",
                  progress: bool | None = None, detector=None) -> PrepareSummary:
    """Align every face under ``src`` into ``dst`` (see the module docstring for the rules).

    ``progress=None`` shows a bar when stderr is a terminal. ``detector`` replaces MTCNN (a
    callable from a PIL RGB image to (5, 2) landmarks or ``None``) when ``workers == 1``.
    """
    start = time.perf_counter()
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    _check_paths(src, dst)
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} px, got {size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _check_device(device)
    names = _list_sources(src, dst)
    if not names:
        raise ValueError(f"source folder {src} holds no image files")
    dst.mkdir(parents=True, exist_ok=True)
    _check_settings(dst, size)

    known_no_face = _read_list(dst / "skipped.txt") & set(names)
    done_before, todo = 0, []
    for rel in names:
        out = _output_path(dst, rel)
        if out.exists():
            done_before += 1
        elif rel not in known_no_face:
            todo.append((rel, src / rel, out))

    no_face, unreadable = set(known_no_face), {}
    aligned = 0
    if todo:
        results = _run(todo, size, workers, device, detector)
        results = _progress(results, len(todo), progress)
        # Each crop is renamed into place as it is done: a second run skips it.
        with open(dst / "skipped.txt", "a") as log, \
                interruptible(lambda: done_before + aligned, len(names), dst):
            for rel, status, message in results:
                if status == "aligned":
                    aligned += 1
                elif status == "no_face":
                    no_face.add(rel)
                    log.write(f"{rel}\n")  # now, so an interrupted run need not re-detect it
                    log.flush()
                else:
                    unreadable[rel] = message
    _write_list(dst / "skipped.txt", no_face)
    _write_list(dst / "unreadable.txt", set(unreadable))
    if unreadable:
        first = next(iter(sorted(unreadable.items())))
        print(f"prepare faces: cannot decode {len(unreadable)} of {len(names)} files, e.g. "
              f"{first[0]} ({first[1]})", file=sys.stderr)
    return PrepareSummary(src, dst, len(names), aligned, done_before, len(no_face),
                          len(unreadable), len(todo) - len(unreadable),
                          time.perf_counter() - start)


def _run(todo, size: int, workers: int, device: str, detector):
    """Yield ``(rel, status, message)`` for each task, in this process or in ``workers``."""
    if workers == 1:
        detector = detector if detector is not None else _LazyDetector(device)
        for rel, path, out in todo:
            yield (rel, *_align_file(path, out, detector, size))
        return
    if detector is not None:
        raise ValueError("a custom detector runs in this process only (workers=1)")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    _import_mtcnn()  # fail here with one line, not in every worker
    threads = max(1, (os.cpu_count() or 1) // workers)
    # spawn, not fork: forking a process whose torch has started OpenMP or CUDA can hang. An
    # executor, not multiprocessing.Pool: a worker that dies breaks the run with an error
    # instead of being respawned forever.
    with ProcessPoolExecutor(workers, mp.get_context("spawn"), _worker_init,
                             (device, size, threads)) as pool:
        yield from pool.map(_worker_task, todo, chunksize=4)


def _progress(results, total: int, progress: bool | None):
    return progress_bar(results, total=total, unit="img", desc="aligning faces",
                        enabled=progress)
