"""Every dataset: keys, shapes, value ranges, determinism; folder datasets on real files."""

from __future__ import annotations

import pytest
import torch

import ganzoo

EMBEDDED = {
    "shapes": {},
    "shapes_attr": {},
    "shapes_unpaired": {},
    "shapes_scenes": {},
    "digits": {},
}


def _check_item(ds, item, height, width):
    assert set(ds.keys) <= set(item), (ds.keys, item.keys())
    for k, v in item.items():
        if k.startswith("image"):
            assert v.shape == (3, height, width), (k, v.shape)
            assert v.dtype == torch.float32
            assert v.min() >= -1 and v.max() <= 1
            assert v.std() > 0.01  # not blank


@pytest.mark.parametrize("name", sorted(EMBEDDED))
@pytest.mark.parametrize("res", [32, 48])
def test_embedded_datasets_shapes_ranges_determinism(name, res):
    ds = ganzoo.build_dataset(name, resolution=res, size=20, seed=3)
    assert len(ds) == 20
    item = ds[5]
    _check_item(ds, item, res, res)
    again = ganzoo.build_dataset(name, resolution=res, size=20, seed=3)[5]
    for k in item:
        assert torch.equal(item[k], again[k]), k
    if name != "digits":  # digits is a fixed real set; the others depend on the seed
        other = ganzoo.build_dataset(name, resolution=res, size=20, seed=4)[5]
        k = next(k for k in item if k.startswith("image"))
        assert not torch.equal(item[k], other[k])


@pytest.mark.parametrize("name", ["shapes", "shapes_attr", "shapes_unpaired", "shapes_scenes"])
def test_synthetic_items_do_not_depend_on_batching(name):
    ds = ganzoo.build_dataset(name, resolution=32, size=40)
    batch = ds.__getitems__(list(range(3, 23)))
    for j, i in enumerate(range(3, 23)):
        single = ds[i]
        for k in single:
            assert torch.equal(batch[j][k], single[k]), (i, k)


def test_synthetic_sets_work_at_256():
    ds = ganzoo.build_dataset("shapes", resolution=256, size=2)
    assert ds[1]["image"].shape == (3, 256, 256)


def test_shapes_attr_views_and_attribute():
    pairs = ganzoo.build_dataset("shapes_attr", resolution=32, size=8)
    w = ganzoo.build_dataset("shapes_attr", resolution=32, size=8, subset="with")
    wo = ganzoo.build_dataset("shapes_attr", resolution=32, size=8, subset="without")
    assert torch.equal(pairs[2]["image_with"], w[2]["image"])
    assert torch.equal(pairs[2]["image_without"], wo[2]["image"])
    # The attribute marker is bright yellow: present with, absent without.
    yellow = lambda x: ((x[0] > 0.9) & (x[1] > 0.8) & (x[2] < -0.2)).float().mean()  # noqa
    assert all(yellow(w[i]["image"]) > 0.005 for i in range(8))
    assert yellow(torch.stack([wo[i]["image"] for i in range(8)]).permute(1, 0, 2, 3)) < 0.005
    assert w[0]["attrs"].item() == 1.0 and wo[0]["attrs"].item() == 0.0
    with pytest.raises(ValueError, match="subset"):
        ganzoo.build_dataset("shapes_attr", subset="maybe")


def test_shapes_unpaired_domains_differ():
    both = ganzoo.build_dataset("shapes_unpaired", resolution=32, size=16)
    a = ganzoo.build_dataset("shapes_unpaired", resolution=32, size=16, domain="a")
    b = ganzoo.build_dataset("shapes_unpaired", resolution=32, size=16, domain="b")
    assert torch.equal(both[1]["image_a"], a[1]["image"])
    assert torch.equal(both[1]["image_b"], b[1]["image"])
    assert set(b.keys) == {"image"}
    # "Paintings" carry brush-stroke texture: more high-frequency energy than "photos".
    hf = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean()  # noqa: E731
    ha = torch.stack([hf(a[i]["image"]) for i in range(16)]).mean()
    hb = torch.stack([hf(b[i]["image"]) for i in range(16)]).mean()
    assert hb > 1.2 * ha


def test_shapes_scenes_rectangular_and_labels():
    ds = ganzoo.build_dataset("shapes_scenes", resolution=32, aspect_ratio=2.0, size=64)
    item = ds[0]
    assert item["image"].shape == (3, 32, 64)
    labels = torch.stack([ds[i]["label"] for i in range(64)])
    assert set(labels.tolist()) == {0, 1}  # both answers occur


def test_augmentation_preset_keeps_shape_and_range():
    ds = ganzoo.build_dataset("shapes", resolution=32, size=4, augment="structure")
    x = ds[0]["image"]
    assert x.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1
    with pytest.raises(ValueError, match="augment"):
        ganzoo.build_dataset("shapes", augment="heavy")


def test_flip_preset_only_mirrors():
    """The generator plan's 1C baseline: each image is itself or its mirror, and both occur."""
    plain = ganzoo.build_dataset("shapes", resolution=16, size=32)
    flipped = ganzoo.build_dataset("shapes", resolution=16, size=32, augment="flip")
    torch.manual_seed(0)
    same = mirrored = 0
    for i in range(32):
        x, y = plain[i]["image"], flipped[i]["image"]
        same += torch.equal(x, y)
        mirrored += torch.equal(x.flip(-1), y) and not torch.equal(x, y)
    assert same + mirrored == 32 and same > 0 and mirrored > 0


def _windows(big: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """Every h x w window of ``big`` and its mirror."""
    out = []
    for top in range(big.shape[-2] - h + 1):
        for left in range(big.shape[-1] - w + 1):
            crop = big[..., top:top + h, left:left + w]
            out += [crop, crop.flip(-1)]
    return out


def test_crop_flip_is_a_random_crop_of_the_upsampled_image_maybe_mirrored():
    """pix2pix/CUT's resize_and_crop + flip on a tensor dataset: 32 px images are upsampled to
    36 px (286/256), and each item is one 32 px window of that or its mirror; the windows and
    the flips vary between draws."""
    from torchvision.transforms.v2 import functional as F

    plain = ganzoo.build_dataset("shapes", resolution=32, size=4)
    aug = ganzoo.build_dataset("shapes", resolution=32, size=4, augment="crop_flip")
    big = F.resize(plain[0]["image"], [36, 36], interpolation=F.InterpolationMode.BICUBIC,
                   antialias=True).clamp(-1, 1)
    windows = _windows(big, 32, 32)
    torch.manual_seed(0)
    draws = [aug[0]["image"] for _ in range(40)]
    for x in draws:
        assert x.shape == (3, 32, 32)
        assert any(torch.allclose(x, wdw, atol=1e-6) for wdw in windows)
    distinct = {tuple(x.flatten()[:64].tolist()) for x in draws}
    assert len(distinct) > 10
    assert any(torch.allclose(x, wdw.flip(-1), atol=1e-6) for x in draws for wdw in windows[::2])


def test_crop_flip_on_files_resizes_once_to_the_larger_size(tmp_path):
    """A folder dataset resizes the file straight to 286/256 of the training size (one
    resample, as the references resize to --load_size), then crops the training size."""
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(3, 64, 64, generator=g) * 255).to(torch.uint8)
    (tmp_path / "a").mkdir()
    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(tmp_path / "a" / "x.png")
    ds = ganzoo.build_dataset("image_folder", root=str(tmp_path / "a"), resolution=16,
                              augment="crop_flip")
    big = F.resize(pixels, [18, 18], interpolation=F.InterpolationMode.BICUBIC,
                   antialias=True).float().div(127.5).sub(1).clamp(-1, 1)
    torch.manual_seed(0)
    for _ in range(10):
        x = ds[0]["image"]
        assert x.shape == (3, 16, 16)
        assert any(torch.allclose(x, wdw, atol=1e-6) for wdw in _windows(big, 16, 16))
    with pytest.raises(ValueError, match="crop_flip"):
        ganzoo.build_dataset("shapes", augment="crop")


# -- folders -------------------------------------------------------------------------------

def _write_images(folder, n, size=(40, 30), start=0):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.new("RGB", size, (i * 20 % 256, 100, 50)).save(folder / f"img_{i:03d}.png")


def test_image_folder_recursive_resize_crop_and_corrupt_files(tmp_path):
    _write_images(tmp_path / "a", 3)
    _write_images(tmp_path / "a" / "sub", 2, start=3)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="skipped 1 of 6 files"):
        ds = ganzoo.build_dataset("image_folder", root=str(tmp_path / "a"), resolution=16)
    assert len(ds) == 5
    assert ds[4]["image"].shape == (3, 16, 16)
    assert ds[4]["image"].min() >= -1 and ds[4]["image"].max() <= 1
    with pytest.raises(ValueError, match="broken.jpg"):
        ganzoo.build_dataset("image_folder", root=str(tmp_path / "a"), on_error="raise")


def test_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        ganzoo.build_dataset("image_folder", root=str(tmp_path / "missing_dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*no readable images"):
        ganzoo.build_dataset("image_folder", root=str(tmp_path / "empty"))


def test_street_scenes_keep_aspect_ratio(tmp_path):
    _write_images(tmp_path / "bdd", 2, size=(128, 72))
    ds = ganzoo.build_dataset("street_scenes", root=str(tmp_path / "bdd"), resolution=32)
    assert ds[0]["image"].shape == (3, 32, 64)


def _fake_celeba(root, n=8):
    from PIL import Image

    (root / "img_align_celeba").mkdir(parents=True)
    names = ["5_o_Clock_Shadow", "Smiling", "Young"]
    attr_lines = [str(n), " ".join(names)]
    part_lines = []
    for i in range(n):
        name = f"{i:06d}.jpg"
        Image.new("RGB", (178, 218), (i * 30 % 256, 80, 160)).save(root / "img_align_celeba"
                                                                    / name)
        smiling = 1 if i % 2 == 0 else -1
        attr_lines.append(f"{name} -1 {smiling} 1")
        part_lines.append(f"{name} {0 if i < n - 2 else 1}")
    (root / "list_attr_celeba.txt").write_text("\n".join(attr_lines) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(part_lines) + "\n")


def test_celeba_split_by_attribute(tmp_path):
    _fake_celeba(tmp_path)
    pairs = ganzoo.build_dataset("celeba", root=str(tmp_path), resolution=16)
    assert len(pairs) == 3  # train split (6 images), Smiling on even indices
    item = pairs[0]
    assert item["image_with"].shape == (3, 16, 16) and item["attrs"].shape == (3,)
    assert item["attrs"][1] == 1.0
    val = ganzoo.build_dataset("celeba", root=str(tmp_path), split="val", subset="all",
                               resolution=16)
    assert len(val) == 2
    without = ganzoo.build_dataset("celeba", root=str(tmp_path), subset="without")
    assert all(without[i]["attrs"][1] == 0 for i in range(len(without)))
    with pytest.raises(KeyError, match="Smiling"):
        ganzoo.build_dataset("celeba", root=str(tmp_path), attribute="Smilling")
    with pytest.raises(FileNotFoundError, match="list_attr_celeba.txt"):
        ganzoo.build_dataset("celeba", root=str(tmp_path / "nope"))


def test_celeba_aligned_root_keeps_the_lists(tmp_path):
    from PIL import Image

    _fake_celeba(tmp_path)
    aligned = tmp_path / "aligned"  # as `ganzoo prepare faces` writes it: same names, square
    aligned.mkdir()
    for i in range(8):
        if i != 2:  # no face found in 000002.jpg: not written
            Image.new("RGB", (128, 128), (250, 10, 10)).save(aligned / f"{i:06d}.jpg")
    ds = ganzoo.build_dataset("celeba", root=str(tmp_path), aligned_root=str(aligned),
                              split="all", subset="all", resolution=16)
    assert len(ds) == 7 and ds.rows[2][0] == "000003.jpg"
    raw = ganzoo.build_dataset("celeba", root=str(tmp_path), split="all", subset="all",
                               resolution=16)
    assert torch.equal(ds[3]["attrs"], raw[4]["attrs"])  # the lists follow the names
    image = ds[0]["image"]
    assert image.shape == (3, 16, 16)
    # The whole square crop, not the 178 x 178 centre of CelebA's 178 x 218 (which would pad
    # a 128 px crop with black borders).
    assert image[0].min() > 0.9 and image[1].max() < -0.8
    pairs = ganzoo.build_dataset("celeba", root=str(tmp_path), aligned_root=str(aligned),
                                 resolution=16)
    assert len(pairs) == 3 - 1  # smiling train images 0, 2, 4: 2 has no aligned face
    # An aligned folder is also a plain image folder.
    assert len(ganzoo.build_dataset("image_folder", root=str(aligned), resolution=16)) == 7
    with pytest.raises(FileNotFoundError, match="aligned_root"):
        ganzoo.build_dataset("celeba", root=str(tmp_path), aligned_root=str(tmp_path / "x"))


# -- mix -----------------------------------------------------------------------------------

def _mix_roots(tmp_path):
    from PIL import Image

    for name, n, colour in (("aligned", 3, (250, 10, 10)), ("raw", 5, (10, 10, 250))):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.new("RGB", (40, 30), colour).save(tmp_path / name / f"{i}.png")
    return str(tmp_path / "aligned"), str(tmp_path / "raw")


def test_mix_follows_the_ratio_and_the_seed(tmp_path):
    from ganzoo.training.data import build_dataset, check_dataset_options

    a, b = _mix_roots(tmp_path)
    # As `--set data.sources=[...] --set data.ratio=[3,1]` gives them; the trainer adds the
    # model's resolution.
    ds = build_dataset("mix", check_dataset_options("mix", {"sources": f"[{a}, {b}]",
                                                            "ratio": "[3, 1]"}))
    # Every raw image once per epoch at a quarter of the items: 20 items, 15 aligned.
    assert len(ds) == 20 and ds.counts == [15, 5] and ds.keys == ("image",)
    assert torch.bincount(ds.source_index).tolist() == [15, 5]
    assert sorted(ds.local_index[ds.source_index == 1].tolist()) == [0, 1, 2, 3, 4]
    assert sorted(ds.local_index[ds.source_index == 0].tolist()) == [0] * 5 + [1] * 5 + [2] * 5
    red = [bool(ds[i]["image"][0].mean() > 0) for i in range(20)]
    assert red == (ds.source_index == 0).tolist()  # items are the sources' items
    assert ds[0]["image"].shape == (3, 64, 64)
    again = ganzoo.build_dataset("mix", sources=[a, b], ratio=[3, 1])
    other = ganzoo.build_dataset("mix", sources=[a, b], ratio=[3, 1], seed=1)
    assert torch.equal(again.source_index, ds.source_index)
    assert torch.equal(again.local_index, ds.local_index)
    assert not torch.equal(other.source_index, ds.source_index)
    assert torch.bincount(other.source_index).tolist() == [15, 5]
    # A fixed length keeps the ratio to one item (largest remainder: 5.25 + 1.75 = 7).
    assert ganzoo.build_dataset("mix", sources=[a, b], ratio=[3, 1], size=7).counts == [5, 2]
    assert ganzoo.build_dataset("mix", sources=[a, b]).counts == [5, 5]  # equal shares


def test_mix_sources_take_options_and_must_match(tmp_path):
    a, b = _mix_roots(tmp_path)
    ds = ganzoo.build_dataset("mix", resolution=16, augment="structure", sources=[
        {"dataset": "image_folder", "root": a, "augment": "none"}, b])

    def twice(source):  # the first item under two torch seeds
        torch.manual_seed(0)
        first = source[0]["image"]
        torch.manual_seed(1)
        return first, source[0]["image"]

    assert torch.equal(*twice(ds.sources[0]))  # its own augment="none" wins
    assert not torch.equal(*twice(ds.sources[1]))  # the mix's augment reached the other
    assert ds.sources[1].resolution == 16 and ds[0]["image"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="keys and shapes must match"):
        ganzoo.build_dataset("mix", resolution=16, sources=[
            {"dataset": "image_folder", "root": a, "resolution": 32}, b])
    with pytest.raises(KeyError, match=r"mix sources\[1\]: .* did you mean root"):
        ganzoo.build_dataset("mix", sources=[a, {"dataset": "image_folder", "rot": b}])
    with pytest.raises(ValueError, match="2 entries for 1 sources"):
        ganzoo.build_dataset("mix", sources=[a], ratio=[1, 1])
    with pytest.raises(ValueError, match="positive"):
        ganzoo.build_dataset("mix", sources=[a, b], ratio=[1, 0])
    with pytest.raises(ValueError, match="'dataset' key"):
        ganzoo.build_dataset("mix", sources=[a, {"root": b}])


@pytest.mark.slow
def test_mix_trains(tmp_path):
    from ganzoo.train import main

    a, b = _mix_roots(tmp_path)
    out = tmp_path / "run"
    code = main(["--model", "test_dcgan", "--dataset", "mix", "-o", str(out), "--no-progress",
                 "--set", f"data.sources=[{a}, {b}]", "--set", "data.ratio=[0.7, 0.3]",
                 "--max-steps", "2", "--batch-size", "4", "--sample-every", "0",
                 "--save-every", "0"])
    assert code == 0 and (out / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("layout", [("trainA", "trainB"), ("photo_jpg", "monet_jpg")])
def test_unpaired_folders(tmp_path, layout):
    _write_images(tmp_path / layout[0], 3)
    _write_images(tmp_path / layout[1], 5)
    ds = ganzoo.build_dataset("unpaired", root=str(tmp_path), resolution=16)
    assert len(ds) == 5 and set(ds[0]) == {"image_a", "image_b"}
    assert ds[4]["image_b"].shape == (3, 16, 16)
    b = ganzoo.build_dataset("unpaired", root=str(tmp_path), resolution=16, domain="b")
    assert len(b) == 5 and set(b[0]) == {"image"}
    with pytest.raises(FileNotFoundError, match="layouts"):
        ganzoo.build_dataset("unpaired", root=str(tmp_path / layout[0]))


# -- the generator plan's phase 1 -------------------------------------------------------------

def test_phase1_queue_file_and_documented_commands_are_the_same_runs():
    import dataclasses
    import shlex
    from pathlib import Path

    import yaml

    from ganzoo.experiments.queue import EXTRA_KEYS
    from ganzoo.train import _cli_layer, build_parser
    from ganzoo.training.config import resolve_run_config
    from ganzoo.training.data import check_dataset_options

    repo = Path(__file__).resolve().parents[1]
    queue = yaml.safe_load((repo / "src/ganzoo/queues/generator_plan_phase1.yaml").read_text())
    # The queue's own keys (name, eval, seeds, baseline, ...) are not run settings.
    defaults = {k: v for k, v in queue["defaults"].items() if k not in EXTRA_KEYS}
    from_queue = {}
    for exp in queue["experiments"]:
        exp = {k: v for k, v in exp.items() if k not in EXTRA_KEYS} | {
            "output_dir": f"{queue['output_root']}/{exp['name']}"}
        from_queue[exp["output_dir"]] = resolve_run_config(defaults, exp)
    from_docs = {}
    for line in (repo / "docs/data.md").read_text().splitlines():
        if line.startswith("ganzoo train") and "outputs/phase1/" in line:
            run = resolve_run_config(_cli_layer(build_parser().parse_args(shlex.split(line)[2:])))
            from_docs[run.output_dir] = run
    assert sorted(from_docs) == sorted(from_queue) and len(from_queue) == 6

    def parsed(options):  # flags arrive as text; configs parse text as YAML
        return {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in options.items()}

    for out, run in from_queue.items():
        doc = from_docs[out]
        assert check_dataset_options(run.dataset, run.dataset_args) == \
            check_dataset_options(doc.dataset, doc.dataset_args), out
        assert parsed(run.model_args) == parsed(doc.model_args), out
        assert run.model in ganzoo.list_models(), out
        blank = {"dataset_args": {}, "model_args": {}}
        assert dataclasses.replace(run, **blank) == dataclasses.replace(doc, **blank), out
