"""BlobGAN counterfactuals end to end on CPU: a toy decision model trained on shapes_scenes,
counterfactual optimisation (blob targeting, diverse counterfactuals), outputs and metadata."""

from __future__ import annotations

import json

import pytest
import torch

import ganzoo
from ganzoo.models.blobgan.counterfactual import (
    counterfactual, counterfactual_metrics, default_assignment, load_metadata,
    run_counterfactuals, save_metadata, train_decision_model)



@pytest.fixture(scope="module")
def decision_model():
    torch.set_num_threads(1)
    return train_decision_model("shapes_scenes", resolution=32, n_images=96, steps=60,
                                batch_size=32, width=8, seed=0)


@pytest.fixture(scope="module")
def scene():
    torch.manual_seed(0)
    model = ganzoo.build("test_blobgan").eval()
    layout = model.sample_layout(4, generator=torch.Generator().manual_seed(0))
    return model, layout


def test_counterfactual_flips_the_toy_decision(decision_model, scene):
    model, layout = scene
    with torch.no_grad():
        before = decision_model(model.render(layout, generator=torch.Generator().manual_seed(0))
                                .clamp(-1, 1)).argmax(-1)
    target = 1 - int(before[0])  # the class the first image does not have
    res = counterfactual(model, layout, decision_model, target, steps=25)
    flipped = (before != target) & (res.final_scores.argmax(-1) == target)
    assert flipped.any(), (before, res.final_scores)
    assert torch.equal(res.success, res.final_scores.argmax(-1) == target)
    metrics = counterfactual_metrics(res, layout)
    assert 0 < metrics["success_rate"] <= 1
    assert metrics["proximity_sizes"] > 0 and metrics["proximity_image_l1"] > 0


def test_sigmoid_decision_flips_an_attribute(decision_model, scene):
    model, layout = scene
    res = counterfactual(model, layout, decision_model, 0, steps=15, decision="sigmoid")
    before = res.initial_scores[:, 0] > 0.5
    after = res.final_scores[:, 0] > 0.5
    assert torch.equal(res.success, before != after)
    assert res.success.any()


def test_blob_targeting_changes_only_the_chosen_blobs(decision_model, scene):
    model, layout = scene
    res = counterfactual(model, layout, decision_model, 1, blobs=[2], steps=3,
                         params=("xs", "ys", "sizes", "features"))
    for key in ("xs", "ys"):
        changed = (res.layout[key] != layout[key]).any(0)
        assert changed.tolist() == [False, False, True, False], key
    for key in ("sizes", "features"):  # K + 1 entries: background first, untouched
        changed = (res.layout[key] != layout[key]).flatten(2).any(-1).any(0) \
            if res.layout[key].ndim == 3 else (res.layout[key] != layout[key]).any(0)
        assert changed.tolist() == [False, False, False, True, False], key
    assert torch.equal(res.layout["spatial_style"], layout["spatial_style"])  # not optimised


def test_diverse_counterfactuals_follow_the_assignment(decision_model, scene):
    model, layout = scene
    a = default_assignment(2, 4)
    assert a.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1]]
    res = counterfactual(model, layout, decision_model, 1, n_diverse=2, steps=3, lambda_div=1.0,
                         params=("xs",))
    assert res.images.shape == (8, 3, 32, 32) and res.assignment.shape == (2, 4)
    xs = res.layout["xs"].view(4, 2, 4)
    moved = xs != layout["xs"][:, None]
    assert not moved[:, 0, 1::2].any() and not moved[:, 1, 0::2].any()  # only assigned blobs
    assert moved[:, 0, 0::2].any() and moved[:, 1, 1::2].any()
    with pytest.raises(ValueError, match="assignment"):
        counterfactual(model, layout, decision_model, 1, n_diverse=2, steps=1,
                       assignment=torch.ones(3, 4))


def test_metadata_round_trips(tmp_path):
    meta = {"image_names": ["a.png", "b.png"], "init_scores": torch.rand(2, 2),
            "blob_optim": {"xs": torch.rand(2, 3), "sizes": torch.rand(2, 4)},
            "att_1": {"final_scores": torch.rand(2, 2), "success": torch.tensor([True, False]),
                      "blob_cf": {"xs": torch.rand(2, 3)}},
            "cf_kwargs": {"steps": 5, "params": ["xs", "ys"]}}
    st, js = save_metadata(meta, tmp_path / "metadata_0")
    assert st.suffix == ".safetensors" and js.suffix == ".json"
    json.loads(js.read_text())  # plain JSON, no pickle anywhere
    back = load_metadata(tmp_path / "metadata_0")
    assert back["image_names"] == meta["image_names"]
    assert back["cf_kwargs"] == meta["cf_kwargs"]
    assert torch.equal(back["init_scores"], meta["init_scores"])
    assert torch.equal(back["blob_optim"]["sizes"], meta["blob_optim"]["sizes"])
    assert torch.equal(back["att_1"]["success"], meta["att_1"]["success"])
    assert torch.equal(back["att_1"]["blob_cf"]["xs"], meta["att_1"]["blob_cf"]["xs"])


def test_metadata_of_ganzoo_01_reads_back_with_the_notes_names(tmp_path):
    """Files written with ganzoo 0.1's keys load under the BlobGAN notes' names."""
    old = {"image_names": ["a.png"], "initial_scores": torch.rand(1, 2),
           "inverted_blobs": {"xs": torch.rand(1, 3)},
           "target_0": {"final_scores": torch.rand(1, 2), "blobs": {"xs": torch.rand(1, 3)}}}
    save_metadata(old, tmp_path / "metadata_0")
    back = load_metadata(tmp_path / "metadata_0")
    assert sorted(back) == ["att_0", "blob_optim", "image_names", "init_scores"]
    assert sorted(back["att_0"]) == ["blob_cf", "final_scores"]
    assert torch.equal(back["att_0"]["blob_cf"]["xs"], old["target_0"]["blobs"]["xs"])


def test_run_counterfactuals_writes_snapshot_and_metadata(tmp_path, decision_model, scene):
    model, _ = scene
    enc = ganzoo.build("test_blobgan_encoder")
    enc.blobgan.ema.load_state_dict(model.ema.state_dict())
    images = ganzoo.build_dataset("shapes_scenes", resolution=32, size=3).render([0, 1, 2])["image"]
    out = run_counterfactuals(model, images, decision_model, targets=[0, 1], out_dir=tmp_path,
                              names=["s0", "s1", "s2"], encoder=enc.eval(), batch_size=2,
                              invert_steps=2, steps=2, n_diverse=1)
    assert len(out) == 2  # two batches
    from PIL import Image

    grid = Image.open(tmp_path / "snapshot_0.png")
    # rows: images, reconstructions, one per target; columns: the batch
    assert grid.size == (2 * 34 + 2, 4 * 34 + 2)
    back = load_metadata(tmp_path / "metadata_1")
    assert back["image_names"] == ["s2"]
    # the BlobGAN notes' metadata.pt keys
    assert set(back) >= {"image_names", "blob_optim", "init_scores", "att_0", "att_1"}
    assert back["att_1"]["blob_cf"]["xs"].shape == (1, model.config.n_blobs)
    assert back["att_0"]["final_scores"].shape == (1, 2)
    assert set(back["blob_optim"]) == {"xs", "ys", "covs", "sizes", "features",
                                       "spatial_style"}
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))
