"""Bulk outputs to files (ganzoo.sampling, ``ganzoo sample --out-dir / --input``): numbered
samples that resume, ``.npz`` for FID services, one output per input for image-to-image tasks."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

import ganzoo
from ganzoo.cli import main
from ganzoo.sampling import BATCH_SEED_STRIDE, generate_folder, sample_to_folder


def _perturbed(name: str, **kw):
    """A preset whose live weights differ from its EMA copy."""
    torch.manual_seed(0)
    model = ganzoo.build(name, **kw).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(0.05 * torch.randn_like(p))
    if len(model.ema):
        model.update_ema(0.0)
        with torch.no_grad():
            for net in model.ema_networks:
                for p in getattr(model, net).parameters():
                    p.add_(0.05 * torch.randn_like(p))
    return model


def _quantise(images: torch.Tensor) -> np.ndarray:
    """torchvision.utils.save_image's rounding, as (N, H, W, C) uint8."""
    x = (images.clamp(-1, 1) + 1) / 2
    return x.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def _read_pngs(paths) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p)) for p in paths])


# -- numbered samples --------------------------------------------------------------------------
def test_numbered_samples_are_the_models_samples_batch_by_batch(tmp_path):
    model = _perturbed("test_dcgan")
    info = sample_to_folder(model, tmp_path / "s", 10, batch_size=4, seed=3, progress=False)
    assert info == {"written": 10, "skipped": 0, "total": 10, "weights": "ema",
                    "output": str(tmp_path / "s")}
    files = sorted((tmp_path / "s").glob("*.png"))
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(10)]
    expected = np.concatenate([
        _quantise(model.sample(stop - start, generator=torch.Generator().manual_seed(
            3 * BATCH_SEED_STRIDE + b)))
        for b, (start, stop) in enumerate([(0, 4), (4, 8), (8, 10)])])
    np.testing.assert_array_equal(_read_pngs(files), expected)


def test_an_interrupted_folder_is_completed_with_the_same_pixels(tmp_path):
    model = _perturbed("test_dcgan")
    sample_to_folder(model, tmp_path / "a", 10, batch_size=4, progress=False)
    reference = _read_pngs(sorted((tmp_path / "a").glob("*.png")))
    for i in (5, 9):  # a kill mid-batch leaves batches 1 and 2 incomplete
        (tmp_path / "a" / f"{i:06d}.png").unlink()
    mtime = (tmp_path / "a" / "000000.png").stat().st_mtime_ns
    info = sample_to_folder(model, tmp_path / "a", 10, batch_size=4, progress=False)
    assert (info["written"], info["skipped"]) == (6, 4)
    assert (tmp_path / "a" / "000000.png").stat().st_mtime_ns == mtime  # not rewritten
    np.testing.assert_array_equal(_read_pngs(sorted((tmp_path / "a").glob("*.png"))), reference)
    again = sample_to_folder(model, tmp_path / "a", 10, batch_size=4, progress=False)
    assert again["written"] == 0
    with pytest.raises(ValueError, match="written with seed=0.*asks for seed=1"):
        sample_to_folder(model, tmp_path / "a", 10, batch_size=4, seed=1, progress=False)


def test_npz_holds_arr_0_like_the_png_files(tmp_path):
    model = _perturbed("test_dcgan")
    sample_to_folder(model, tmp_path / "png", 6, batch_size=4, progress=False)
    info = sample_to_folder(model, tmp_path / "npz", 6, batch_size=4, fmt="npz",
                            progress=False)
    with np.load(info["output"]) as data:
        arr = data["arr_0"]
    assert arr.shape == (6, 32, 32, 3) and arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, _read_pngs(sorted((tmp_path / "png").glob("*.png"))))
    assert not (tmp_path / "npz" / ".parts").exists()
    assert sample_to_folder(model, tmp_path / "npz", 6, batch_size=4, fmt="npz",
                            progress=False)["written"] == 0


def test_live_weights_are_one_switch_away(tmp_path):
    model = _perturbed("test_dcgan")
    model.use_ema = False
    info = sample_to_folder(model, tmp_path / "live", 2, batch_size=2, progress=False)
    assert info["weights"] == "live"
    live = model.sample(2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(_read_pngs(sorted((tmp_path / "live").glob("*.png"))),
                                  _quantise(live))


def test_ddpm_sampler_options_reach_the_sampler(tmp_path):
    model = _perturbed("test_ddpm")
    sample_to_folder(model, tmp_path / "d", 2, batch_size=2, progress=False,
                     sampler="ddim", num_inference_steps=2)
    direct = model.sample(2, generator=torch.Generator().manual_seed(0), sampler="ddim",
                          num_inference_steps=2)
    np.testing.assert_array_equal(_read_pngs(sorted((tmp_path / "d").glob("*.png"))),
                                  _quantise(direct))
    manifest = json.loads((tmp_path / "d" / "ganzoo_sampling.json").read_text())
    assert manifest["sample_kwargs"] == {"sampler": "ddim", "num_inference_steps": 2}


# -- one output per input ----------------------------------------------------------------------
def _inputs(folder, n=3, size=32):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
            folder / f"photo_{i}.png")
    (folder / "notes.txt").write_text("not an image")
    return torch.stack([torch.from_numpy(np.asarray(Image.open(folder / f"photo_{i}.png"))
                                         .copy()).permute(2, 0, 1) for i in range(n)]
                       ).float() / 127.5 - 1


def test_translation_folder_uses_the_ema_generator_and_resumes(tmp_path):
    model = _perturbed("test_cut")
    x = _inputs(tmp_path / "src")
    info = generate_folder(model, tmp_path / "src", tmp_path / "out", progress=False)
    assert info == {"weights": "ema", "count": 3, "skipped": 0, "output": str(tmp_path / "out")}
    got = _read_pngs([tmp_path / "out" / f"photo_{i}.png" for i in range(3)])
    np.testing.assert_array_equal(got, _quantise(model.translate(x)))
    with torch.no_grad():
        live = model.generator.eval()(x).clamp(-1, 1)
    assert not np.array_equal(got, _quantise(live))
    (tmp_path / "out" / "photo_1.png").unlink()
    assert generate_folder(model, tmp_path / "src", tmp_path / "out",
                           progress=False)["skipped"] == 2
    model.use_ema = False
    info = generate_folder(model, tmp_path / "src", tmp_path / "live", progress=False)
    assert info["weights"] == "live"
    np.testing.assert_array_equal(
        _read_pngs([tmp_path / "live" / f"photo_{i}.png" for i in range(3)]), _quantise(live))


def test_kaggle_zip_from_a_saved_folder(tmp_path):
    _perturbed("test_cut").save_pretrained(tmp_path / "saved")
    _inputs(tmp_path / "src", n=5)
    info = generate_folder(str(tmp_path / "saved"), tmp_path / "src", tmp_path / "images.zip",
                           batch_size=2, image_size=48, progress=False)
    assert info["count"] == 5 and info["weights"] == "ema"
    with zipfile.ZipFile(tmp_path / "images.zip") as zf:
        names = sorted(zf.namelist())
        assert names == [f"photo_{i}.jpg" for i in range(5)]
        with zf.open(names[0]) as f:
            im = Image.open(f)
            assert im.format == "JPEG" and im.size == (48, 48)


def test_reconstruction_and_attribute_transfer_folders(tmp_path):
    x = _inputs(tmp_path / "src")
    vae = _perturbed("test_vae")
    generate_folder(vae, tmp_path / "src", tmp_path / "rec", progress=False)
    np.testing.assert_array_equal(
        _read_pngs([tmp_path / "rec" / f"photo_{i}.png" for i in range(3)]),
        _quantise(vae.reconstruct(x)))
    gene = _perturbed("test_genegan")
    generate_folder(gene, tmp_path / "src", tmp_path / "a0", progress=False)
    removed = gene.transfer(x, x)[0]
    np.testing.assert_array_equal(
        _read_pngs([tmp_path / "a0" / f"photo_{i}.png" for i in range(3)]), _quantise(removed))
    generate_folder(gene, tmp_path / "src", tmp_path / "bu", donor=tmp_path / "src" /
                    "photo_0.png", progress=False)
    given = gene.transfer(x[:1].expand(3, -1, -1, -1), x)[1]
    np.testing.assert_array_equal(
        _read_pngs([tmp_path / "bu" / f"photo_{i}.png" for i in range(3)]), _quantise(given))


def test_folder_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        generate_folder(ganzoo.build("test_cut"), tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        generate_folder(ganzoo.build("test_cut"), tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="takes no input images"):
        generate_folder(ganzoo.build("test_dcgan"), tmp_path / "empty", tmp_path / "out")
    with pytest.raises(ValueError, match="no unconditional samples"):
        sample_to_folder(ganzoo.build("test_cut"), tmp_path / "x", 2)


# -- the command line --------------------------------------------------------------------------
def test_cli_out_dir_input_and_refusals(tmp_path, capsys):
    model = _perturbed("test_dcgan")
    model.save_pretrained(tmp_path / "m")
    assert main(["sample", str(tmp_path / "m"), "-n", "5", "--batch-size", "2", "--out-dir",
                 str(tmp_path / "s"), "--no-progress"]) == 0
    assert "wrote 5 images (0 already there)" in capsys.readouterr().out
    assert len(list((tmp_path / "s").glob("*.png"))) == 5
    assert main(["sample", str(tmp_path / "m"), "-n", "5", "--batch-size", "2", "--out-dir",
                 str(tmp_path / "s"), "--no-progress"]) == 0
    assert "wrote 0 images (5 already there)" in capsys.readouterr().out
    assert main(["sample", str(tmp_path / "m"), "--steps", "3", "--out-dir",
                 str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "--steps: " in err and "takes no such sampling option" in err
    assert main(["sample", "test_dcgan", "--out-dir", str(tmp_path / "u")]) == 2
    assert "--untrained" in capsys.readouterr().err
    _perturbed("test_cut").save_pretrained(tmp_path / "cut")
    _inputs(tmp_path / "src")
    assert main(["sample", str(tmp_path / "cut"), "--input", str(tmp_path / "src"),
                 "--out-dir", str(tmp_path / "tr"), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "tr").iterdir()) == [
        f"photo_{i}.png" for i in range(3)]
    assert main(["sample", str(tmp_path / "cut"), "--input", str(tmp_path / "src"),
                 "--out-dir", str(tmp_path / "npz"), "--format", "npz"]) == 2
    assert "--format npz" in capsys.readouterr().err
