"""``ganzoo prepare faces``: alignment on real photographs (scikit-image's ``astronaut()`` has a
frontal face, ``chelsea()`` is a cat, in which MTCNN's best candidate scores 0.09 against the
0.7 threshold), the folder rules (relative paths, face-less and corrupt files, resuming,
workers) and the command line.

Tests that run MTCNN need facenet-pytorch (``pip install --no-deps facenet-pytorch``, see
docs/data.md) and skip without it; the folder rules are also checked with a stand-in detector,
so they run everywhere.
"""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from ganzoo import cli
from ganzoo.datasets import faces
from ganzoo.datasets.faces import prepare_faces, reference_landmarks


def _mtcnn():
    pytest.importorskip("facenet_pytorch")
    return faces.FaceDetector("cpu")


def _photos(src):
    from skimage import data

    (src / "people" / "nasa").mkdir(parents=True)
    (src / "cats").mkdir()
    Image.fromarray(data.astronaut()).save(src / "people" / "nasa" / "astronaut.png")
    Image.fromarray(data.chelsea()).save(src / "cats" / "chelsea.jpg", quality=95)
    (src / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    (src / "notes.txt").write_text("not an image\n")
    return src


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    """The photographs aligned once with MTCNN: (src, dst, summary)."""
    pytest.importorskip("facenet_pytorch")
    tmp = tmp_path_factory.mktemp("faces")
    src = _photos(tmp / "src")
    summary = prepare_faces(src, tmp / "dst", progress=False)
    return src, tmp / "dst", summary


# -- alignment on real photographs -----------------------------------------------------------

def test_aligned_crop_keeps_its_relative_path_and_is_128(aligned):
    src, dst, summary = aligned
    crop = Image.open(dst / "people" / "nasa" / "astronaut.png")
    assert crop.size == (128, 128) and crop.mode == "RGB"
    assert (summary.found, summary.aligned, summary.no_face, summary.unreadable) == (3, 1, 1, 1)
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.*")) == [
        "faces.json", "people/nasa/astronaut.png", "skipped.txt", "unreadable.txt"]


def test_face_less_photo_is_listed_and_corrupt_file_counted(aligned):
    _, dst, summary = aligned
    assert (dst / "skipped.txt").read_text() == "cats/chelsea.jpg\n"
    assert (dst / "unreadable.txt").read_text() == "cats/broken.jpg\n"
    assert summary.detected == 2  # the astronaut and the cat; the broken file never decodes


def test_landmarks_of_the_aligned_face_sit_on_the_reference(aligned):
    src, dst, _ = aligned
    detector = _mtcnn()
    before = detector(Image.open(src / "people" / "nasa" / "astronaut.png").convert("RGB"))
    after = detector(Image.open(dst / "people" / "nasa" / "astronaut.png").convert("RGB"))
    assert after is not None
    ref = reference_landmarks(128)
    # Where the fitted transform sends the photo's landmarks: re-detection finds them there
    # (measured: at most 3.6 px off), so the warp's direction and coordinates are right.
    target = faces.fit_alignment(before, 128)(before)
    assert np.linalg.norm(after - target, axis=1).max() < 6.0
    # Five points, four degrees of freedom: the least-squares fit maps the landmarks' centroid
    # onto the reference's (measured 2.4 px after re-detection) but leaves each point a
    # residual set by the face (this one's nose sits 8 px below the plan's reference).
    assert np.linalg.norm(after.mean(0) - ref.mean(0)) < 4.0
    assert np.linalg.norm(after[:2] - ref[:2], axis=1).max() < 6.0  # eyes: 0.8 and 3.8 px


def test_second_run_does_no_work(aligned, monkeypatch):
    src, dst, _ = aligned
    stamps = _mtimes(dst)

    class NoDetector:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a finished folder must not load the detector")

    monkeypatch.setattr(faces, "FaceDetector", NoDetector)
    again = prepare_faces(src, dst, progress=False)
    assert (again.aligned, again.done_before, again.no_face, again.detected) == (0, 1, 1, 0)
    assert again.unreadable == 1  # retried (it fails at decoding) and still counted
    assert _mtimes(dst) == stamps


@pytest.mark.slow
def test_two_workers_write_the_same_crops(aligned, tmp_path):
    src, dst, _ = aligned
    summary = prepare_faces(src, tmp_path / "dst", workers=2, progress=False)
    assert (summary.aligned, summary.no_face, summary.unreadable) == (1, 1, 1)
    name = "people/nasa/astronaut.png"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "dst" / name)),
                          np.asarray(Image.open(dst / name)))
    assert (tmp_path / "dst" / "skipped.txt").read_text() == "cats/chelsea.jpg\n"


def test_cli_prepares_faces_at_another_size(aligned, tmp_path, capsys):
    src, _, _ = aligned
    rc = cli.main(["prepare", "faces", str(src), str(tmp_path / "out"), "--size", "64",
                   "--no-progress"])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(out) == 1
    assert out[0].startswith(f"prepare faces: 3 images in {src}: 1 aligned, 0 already aligned, "
                             f"1 without a face")
    assert Image.open(tmp_path / "out" / "people" / "nasa" / "astronaut.png").size == (64, 64)


# -- geometry and folder rules, with a stand-in detector --------------------------------------

def test_reference_scales_about_pixel_centres():
    assert np.allclose(reference_landmarks(128), faces.REFERENCE_LANDMARKS)
    # A 256 crop is the 128 crop at twice the resolution: pixel centre c maps to 2c + 0.5.
    assert np.allclose(reference_landmarks(256), 2 * faces.REFERENCE_LANDMARKS + 0.5)
    assert np.allclose(reference_landmarks(64), (faces.REFERENCE_LANDMARKS - 0.5) / 2)


def test_align_face_matches_skimage_and_rounds():
    from skimage import data
    from skimage.transform import SimilarityTransform, warp

    photo = data.astronaut()
    # Landmarks of a face turned by 10 degrees at 1.7x: the crop undoes exactly that.
    place = SimilarityTransform(scale=1.7, rotation=np.deg2rad(10), translation=(150, 40))
    landmarks = place(reference_landmarks(128))
    crop = faces.align_face(photo, landmarks, 128)
    expected = warp(photo, place, output_shape=(128, 128), order=3, preserve_range=True)
    assert crop.dtype == np.uint8 and crop.shape == (128, 128, 3)
    assert np.abs(crop.astype(float) - expected).max() <= 0.5 + 1e-6  # rounded, not floored
    assert faces.align_face(photo, np.zeros((5, 2)), 128) is None  # degenerate: no transform


class StandIn:
    """Finds a "face" (the reference layout, scaled) in images at least 64 px wide."""

    def __init__(self):
        self.calls = []

    def __call__(self, image):
        self.calls.append(image.size)
        return reference_landmarks(128) * image.size[0] / 128 if image.size[0] >= 64 else None


def _tree(src):
    (src / "a" / "b").mkdir(parents=True)
    Image.new("RGB", (96, 96), (200, 120, 90)).save(src / "a" / "b" / "face.jpg")
    Image.new("RGB", (80, 120), (20, 120, 90)).save(src / "a" / "face.png")
    Image.new("RGB", (40, 40), (9, 9, 9)).save(src / "small.png")  # no "face"
    return src


def test_folder_rules_with_a_stand_in_detector(tmp_path):
    src, dst = _tree(tmp_path / "src"), tmp_path / "dst"
    det = StandIn()
    first = prepare_faces(src, dst, size=32, progress=False, detector=det)
    assert (first.aligned, first.no_face, first.detected, len(det.calls)) == (2, 1, 3, 3)
    assert Image.open(dst / "a" / "b" / "face.jpg").size == (32, 32)
    assert (dst / "skipped.txt").read_text() == "small.png\n"
    assert not (dst / "unreadable.txt").exists()
    # Deleting one crop redoes that crop only; the face-less image is not detected again.
    (dst / "a" / "face.png").unlink()
    again = prepare_faces(src, dst, size=32, progress=False, detector=det)
    assert (again.aligned, again.done_before, again.no_face) == (1, 1, 1)
    assert det.calls[3:] == [(80, 120)]
    with pytest.raises(ValueError, match="aligned at 32 px; pass --size 32"):
        prepare_faces(src, dst, size=64, progress=False, detector=det)
    assert not list(dst.rglob("*.tmp"))


def test_destination_inside_the_source_is_not_read_back(tmp_path):
    src = _tree(tmp_path / "src")
    det = StandIn()
    prepare_faces(src, src / "aligned", size=32, progress=False, detector=det)
    second = prepare_faces(src, src / "aligned", size=32, progress=False, detector=det)
    assert second.found == 3 and len(det.calls) == 3
    with pytest.raises(ValueError, match="must differ from the source"):
        prepare_faces(src, src, progress=False, detector=det)


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    assert cli.main(["prepare", "faces", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"ganzoo prepare: error: source folder {tmp_path / 'nope'} does not exist"]
    (tmp_path / "empty").mkdir()
    assert cli.main(["prepare", "faces", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert "holds no image files" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["prepare", "faces", str(tmp_path), str(tmp_path / "o"), "--size", "0"])
    assert e.value.code == 2


def test_cli_without_facenet_names_the_extra(tmp_path, capsys, monkeypatch):
    src = _tree(tmp_path / "src")
    real = faces.importlib.util.find_spec
    monkeypatch.setattr(faces.importlib.util, "find_spec",
                        lambda name, *a: None if name == "facenet_pytorch" else real(name, *a))
    assert cli.main(["prepare", "faces", str(src), str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganzoo prepare: error: prepare faces needs")
    assert faces.INSTALL in err[0] and "--no-deps facenet-pytorch" in faces.INSTALL
    assert not list((tmp_path / "out").rglob("*.png"))


def test_detector_takes_the_most_confident_face_not_the_first():
    class Stub:  # facenet-pytorch's detect(): boxes largest first, then probs and landmarks
        min_face_size = 20

        def detect(self, image, landmarks):
            boxes = np.array([[0, 0, 90, 90], [10, 10, 40, 40]], dtype=float)
            points = np.stack([np.zeros((5, 2)), np.ones((5, 2))])
            return boxes, np.array([0.91, 0.99]), points

    detector = object.__new__(faces.FaceDetector)
    detector.mtcnn = Stub()
    assert np.array_equal(detector(Image.new("RGB", (100, 100))), np.ones((5, 2)))
    assert detector(Image.new("RGB", (19, 300))) is None  # below MTCNN's smallest face
