"""The flags that give the CUT reference's training (docs/cut.md, "Departures from the
reference"): random B pairing, the per-epoch learning-rate staircase, no crop in the decay
phase. Each is checked in its official behaviour and in its default's unchanged behaviour."""

from __future__ import annotations

import json

import pytest
import torch

import ganzoo
from ganzoo.train import main, parse_run_config
from ganzoo.training.config import RunConfig
from ganzoo.training.data import ResumableSampler, SeededDataset, make_loader
from ganzoo.training.schedules import lr_at

import _train_helpers as helpers

from conftest import load_benchmark

N_A, N_B = 4, 6  # the dataset's length is max(N_A, N_B) = 6


def _domains(root):
    """trainA: asymmetric gradients (a crop and a flip change them); trainB: solid colours
    whose red value names the file (B index j has red 30 j + 10)."""
    from PIL import Image

    for d in ("trainA", "trainB"):
        (root / d).mkdir(parents=True)
    ramp = torch.linspace(0, 255, 24)
    for i in range(N_A):
        img = torch.stack([ramp[None, :].expand(24, 24), ramp[:, None].expand(24, 24) * 0.5,
                           torch.full((24, 24), 40.0 * i)], -1)
        img[2:6, 3:9] = 255  # a block off the centre, so a crop moves it
        Image.fromarray(img.round().byte().numpy()).save(root / "trainA" / f"{i}.png")
    for j in range(N_B):
        Image.new("RGB", (24, 24), (30 * j + 10, 90, 60)).save(root / "trainB" / f"{j}.png")
    return root


def _b_index(image_b: torch.Tensor) -> int:
    return round(((image_b[0].mean().item() + 1) * 127.5 - 10) / 30)


def _unpaired(root, **kw):
    return ganzoo.build_dataset("unpaired", root=str(root), resolution=16, **kw)


def _keys(positions: int, seed: int = 5, start: int = 0):
    return [k for _, k in zip(range(positions), ResumableSampler(N_B, seed=seed, start=start))]


# -- 1. pairing -----------------------------------------------------------------------------------
def test_fixed_pairing_is_the_seeded_permutation_every_epoch(tmp_path):
    ds = SeededDataset(_unpaired(_domains(tmp_path)))
    perm = torch.randperm(N_B, generator=torch.Generator().manual_seed(0)).tolist()
    for index, seed, epoch in _keys(3 * N_B):
        assert _b_index(ds[(index, seed, epoch)]["image_b"]) == perm[index]


def test_random_pairing_draws_b_per_load_with_replacement(tmp_path):
    ds = SeededDataset(_unpaired(_domains(tmp_path), pairing="random"))
    keys = _keys(10 * N_B)
    drawn = [_b_index(ds[k]["image_b"]) for k in keys]
    assert set(drawn) == set(range(N_B))  # every B can be drawn
    by_epoch = [drawn[e * N_B:(e + 1) * N_B] for e in range(10)]
    assert any(len(set(e)) < N_B for e in by_epoch)  # with replacement: repeats in an epoch
    partners = {}
    for (index, _, _), b in zip(keys, drawn):
        partners.setdefault(index, set()).add(b)
    assert all(len(p) > 1 for p in partners.values())  # a new draw every epoch
    # The A side is untouched: item i is A[i % N_A], as with the fixed pairing.
    fixed = SeededDataset(_unpaired(tmp_path))
    assert all(torch.equal(ds[k]["image_a"], fixed[k]["image_a"]) for k in keys[:N_B])


def test_random_pairing_resumes_exactly_and_ignores_workers(tmp_path):
    root = _domains(tmp_path)
    ds = _unpaired(root, pairing="random")
    full = _keys(4 * N_B)
    drawn = [_b_index(SeededDataset(ds)[k]["image_b"]) for k in full]
    resumed = [_b_index(SeededDataset(ds)[k]["image_b"]) for k in _keys(2 * N_B + 3,
                                                                       start=N_B + 3)]
    assert resumed == drawn[N_B + 3:]
    other_seed = [_b_index(SeededDataset(ds)[k]["image_b"]) for k in _keys(4 * N_B, seed=6)]
    assert other_seed != drawn  # the draws follow the run seed
    loader = iter(make_loader(ds, 2, seed=5, start=0, workers=2, pin_memory=False))
    batches = [next(loader) for _ in range(2 * N_B)]
    order = [k for k in full]  # batch b holds positions 2b, 2b + 1, seeded by 2b's seed
    with_workers = [_b_index(im) for b in batches for im in b["image_b"]]
    in_process = [_b_index(item["image_b"]) for b in range(2 * N_B)
                  for item in SeededDataset(ds).__getitems__(order[2 * b:2 * b + 2])]
    assert with_workers == in_process


def test_shapes_unpaired_pairing(tmp_path):
    kw = dict(resolution=16, size=8, seed=1)
    b_scenes = ganzoo.build_dataset("shapes_unpaired", domain="b", **kw)
    b_scenes = [b_scenes[j]["image"] for j in range(8)]

    def which(img):
        return next(j for j, b in enumerate(b_scenes) if torch.equal(img, b))

    fixed = SeededDataset(ganzoo.build_dataset("shapes_unpaired", **kw))
    rand = SeededDataset(ganzoo.build_dataset("shapes_unpaired", pairing="random", **kw))
    keys = [k for _, k in zip(range(32), ResumableSampler(8, seed=2))]
    assert all(which(fixed[k]["image_b"]) == k[0] for k in keys)  # today's: B scene i
    drawn = [which(rand[k]["image_b"]) for k in keys]
    assert sum(d != k[0] for d, k in zip(drawn, keys)) > 16
    assert drawn == [which(rand[k]["image_b"]) for k in keys]  # a pure function of the key


# -- 2. the learning-rate staircase ------------------------------------------------------------
def _official_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    # taesungp/contrastive-unpaired-translation models/networks.py get_scheduler, 'linear',
    # epoch_count = 1, at 0-based epoch `epoch` (the scheduler steps once per epoch).
    return 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1)


@pytest.mark.parametrize("k, n_epochs, n_decay", [(5, 3, 4), (1, 2, 6), (7, 1, 1)])
def test_lr_decay_every_is_the_official_staircase(k, n_epochs, n_decay):
    total, start = (n_epochs + n_decay) * k, n_epochs * k
    got = [lr_at(2e-4, s, kind="linear", total=total, decay_start=start, decay_every=k)
           for s in range(total)]
    want = [2e-4 * _official_factor(s // k, n_epochs, n_decay) for s in range(total)]
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    assert got[-1] == pytest.approx(2e-4 / (n_decay + 1))


def test_lr_without_decay_every_stays_per_step():
    got = [lr_at(1.0, s, kind="linear", total=35, decay_start=15) for s in range(35)]
    assert got == pytest.approx([1.0 if s < 15 else 1 - (s - 15) / 20 for s in range(35)])
    staircase = [lr_at(1.0, s, kind="linear", total=35, decay_start=15, decay_every=5)
                 for s in range(35)]
    assert staircase != pytest.approx(got)


@pytest.mark.parametrize("fields, needle", [
    ({"lr_schedule": "cosine"}, "needs --lr-schedule linear"),
    ({"lr_decay_every": 4}, "multiples of it"),
    ({"max_steps": 42}, "multiples of it"),
    ({"lr_decay_every": 0}, ">= 1"),
    ({"warmup_steps": 20}, "--warmup-steps"),
])
def test_lr_decay_every_checks(fields, needle):
    base = dict(model="m", output_dir="o", max_steps=40, lr_schedule="linear",
                lr_decay_start=10, lr_decay_every=5)
    RunConfig(**base).validate()
    with pytest.raises(ValueError, match=needle):
        RunConfig(**{**base, **fields}).validate()


def test_lr_decay_every_reaches_the_optimizer(tmp_path):
    unregister = helpers.register_toys()
    try:
        argv = ["--model", "toytrain_gan", "--dataset", "toytrain_images", "-o",
                str(tmp_path / "run"), "--no-progress", "--batch-size", "8", "--num-samples",
                "4", "--log-every", "1", "--max-steps", "12", "--lr-schedule", "linear",
                "--lr-decay-start", "4", "--lr-decay-every", "4", "--lr", "1e-3",
                "--sample-every", "0", "--save-every", "0"]
        assert parse_run_config(argv).lr_decay_every == 4
        assert main(argv) == 0
    finally:
        unregister()
    records = [json.loads(line)
               for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = {r["step"]: r["lr/generator"] for r in records if "lr/generator" in r}
    assert lrs, records[:2]
    for step, lr in lrs.items():  # the log's step counts finished iterations
        assert lr == pytest.approx(1e-3 * _official_factor((step - 1) // 4, 1, 2))


# -- 3. no crop in the decay phase -------------------------------------------------------------
def _uncropped(root) -> list[tuple[torch.Tensor, torch.Tensor]]:
    plain = _unpaired(root)
    return [(x, x.flip(-1)) for x in (plain[i]["image_a"] for i in range(N_A))]


def _is_uncropped(item, index, views) -> bool:
    return any(torch.equal(item["image_a"], v) for v in views[index % len(views)])


@pytest.mark.parametrize("name", ["unpaired", "shapes_unpaired"])
def test_crop_until_epoch_stops_the_crop_and_keeps_the_flip(tmp_path, name):
    if name == "unpaired":
        root = _domains(tmp_path)
        views = _uncropped(root)
        build = lambda **kw: _unpaired(root, augment="crop_flip", **kw)  # noqa: E731
    else:
        plain = ganzoo.build_dataset(name, resolution=16, size=N_B)
        views = [(x, x.flip(-1)) for x in (plain[i]["image_a"] for i in range(N_B))]
        build = lambda **kw: ganzoo.build_dataset(  # noqa: E731
            name, resolution=16, size=N_B, augment="crop_flip", **kw)
    official = SeededDataset(build(crop_until_epoch=2))
    default = SeededDataset(build())
    keys = _keys(5 * N_B)
    early = [k for k in keys if k[2] < 2]
    late = [k for k in keys if k[2] >= 2]
    assert not all(_is_uncropped(official[k], k[0], views) for k in early)  # cropped
    assert all(_is_uncropped(official[k], k[0], views) for k in late)  # resized, not cropped
    flipped = [torch.equal(official[k]["image_a"], views[k[0] % len(views)][1]) for k in late]
    assert any(flipped) and not all(flipped)  # the flip stays
    assert not all(_is_uncropped(default[k], k[0], views) for k in late)  # default: crops


def test_crop_until_epoch_in_workers_and_on_resume(tmp_path):
    root = _domains(tmp_path)
    views = _uncropped(root)
    ds = _unpaired(root, augment="crop_flip", crop_until_epoch=1, pairing="random")
    loader = iter(make_loader(ds, 1, seed=3, start=0, workers=2, pin_memory=False))
    keys = _keys(3 * N_B, seed=3)
    items = [next(loader) for _ in keys]
    assert all(_is_uncropped({"image_a": b["image_a"][0]}, k[0], views)
               for b, k in zip(items, keys) if k[2] >= 1)
    assert not all(_is_uncropped({"image_a": b["image_a"][0]}, k[0], views)
                   for b, k in zip(items, keys) if k[2] < 1)
    resumed = iter(make_loader(ds, 1, seed=3, start=N_B - 2, workers=0, pin_memory=False))
    for b in items[N_B - 2:]:
        again = next(resumed)
        assert torch.equal(again["image_a"], b["image_a"])
        assert torch.equal(again["image_b"], b["image_b"])


def test_keys_without_an_epoch_load_as_epoch_0(tmp_path):
    root = _domains(tmp_path)
    ds = SeededDataset(_unpaired(root, augment="crop_flip", crop_until_epoch=1))
    late = ds[(0, 11, 3)]  # sets the dataset's epoch to 3
    assert torch.equal(ds[(0, 11)]["image_a"], ds[(0, 11, 0)]["image_a"])
    assert not torch.equal(ds[(0, 11)]["image_a"], late["image_a"])


# -- bench_quality --cut-official-flags ----------------------------------------------------------
def _bench_quality():
    return load_benchmark("bench_quality")


@pytest.mark.parametrize("steps", [400, 1000, 4000])
def test_bench_official_flags_follow_the_official_run(steps):
    bench, epoch = _bench_quality(), 500
    n_epochs, n_decay = bench.official_cut_epochs(steps, epoch)
    flags = bench.ganzoo_official_flags(steps, epoch, "crop_flip")
    run = parse_run_config(["--model", "m", "--dataset", "unpaired", "-o", "o", "--max-steps",
                            str(steps), "--batch-size", "1", *flags]).validate()
    assert run.dataset_args == {"pairing": "random", "crop_until_epoch": str(n_epochs)}
    got = [lr_at(2e-4, s, kind=run.lr_schedule, total=run.max_steps,
                 decay_start=run.lr_decay_start, decay_every=run.lr_decay_every)
           for s in range(steps)]
    assert got == pytest.approx([2e-4 * _official_factor(s // epoch, n_epochs, n_decay)
                                 for s in range(steps)], rel=1e-12, abs=0)
    with pytest.raises(ValueError, match="whole number of epochs"):
        bench.ganzoo_official_flags(max(steps, epoch) + 200, epoch, "none")
