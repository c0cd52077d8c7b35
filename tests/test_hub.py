"""Weights round trips: local folders, a loopback Hub server, and the offline HF cache."""

from __future__ import annotations

import json
import os

import pytest
import torch

import ganzoo
from ganzoo.hub import load_weights

from conftest import PLUGINS, run_python
from hub_server import FakeHub


def _trained(model):
    """Perturb weights so a round trip cannot pass by re-initialising."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_save_and_load_folder_gives_identical_outputs(toy_plugin, tmp_path):
    model = _trained(ganzoo.build("toy_gan", hidden=8))
    model.update_ema(0.5)
    model.save_pretrained(tmp_path / "m", dataset="toy_noise", steps=3)
    names = sorted(os.listdir(tmp_path / "m"))
    assert names == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["preset"] == "toy_gan" and config["config"]["hidden"] == 8
    assert config["ganzoo_version"] == ganzoo.__version__
    card = (tmp_path / "m" / "README.md").read_text()
    assert "toy_noise" in card and "hidden" in card
    loaded = ganzoo.from_pretrained(tmp_path / "m")
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(model.sample(4, g1), loaded.sample(4, g2))
    # build(name, pretrained=folder) loads into the preset too.
    again = ganzoo.build("toy_gan", hidden=8, pretrained=str(tmp_path / "m"))
    assert torch.equal(again.generator[0].weight, model.generator[0].weight)


def test_ema_weights_are_saved_under_prefix(toy_plugin, tmp_path):
    from safetensors.torch import load_file

    model = ganzoo.build("toy_gan")
    model.save_pretrained(tmp_path)
    keys = load_file(str(tmp_path / "model.safetensors")).keys()
    assert any(k.startswith("ema.generator.") for k in keys)
    assert any(k.startswith("discriminator.") for k in keys)


def test_strict_load_lists_missing_and_unexpected_keys(toy_plugin, tmp_path):
    ganzoo.build("toy_gan").save_pretrained(tmp_path)
    other = ganzoo.build("toy_gan", hidden=32)
    with pytest.raises(ValueError, match="shape mismatches: .*generator.0.weight"):
        load_weights(other, tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(tmp_path / "model.safetensors"))
    state["bogus.weight"] = torch.zeros(1)
    del state["generator.0.bias"]
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: generator\.0\.bias.*unexpected keys: "
                                         r"bogus\.weight"):
        load_weights(ganzoo.build("toy_gan"), tmp_path)


def test_corrupt_or_truncated_weights_name_the_file(toy_plugin, tmp_path):
    ganzoo.build("toy_gan").save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.safetensors.*corrupt or truncated"):
        ganzoo.from_pretrained(tmp_path)


def test_unknown_preset_in_config_names_the_file(toy_plugin, tmp_path):
    ganzoo.build("toy_gan").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["preset"] = "toy_gann"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(KeyError, match=r"config.json.*toy_gann.*toy_gan"):
        ganzoo.from_pretrained(tmp_path)


def test_non_finite_weights_are_never_saved(toy_plugin, tmp_path):
    model = ganzoo.build("toy_gan")
    with torch.no_grad():
        model.generator[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite.*generator.0.weight"):
        model.save_pretrained(tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


def test_bad_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        ganzoo.from_pretrained(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        ganzoo.from_pretrained("not-a-repo-id")


def test_a_missing_path_is_no_such_folder_with_close_matches(tmp_path, monkeypatch):
    """``runs/typo`` (``runs/`` exists), ``./x``, ``~/x``, ``/x``: a path, never a Hub repo
    id (which said "not in the Hugging Face cache")."""
    from ganzoo.cli import main
    from ganzoo._factory import resolve_model
    from ganzoo.hub import looks_like_path

    monkeypatch.chdir(tmp_path)
    for name in ("dcgan_64", "dcgan_32", "vae_64"):
        (tmp_path / "runs" / name).mkdir(parents=True)
    (tmp_path / "runs" / "notes.txt").write_text("")
    assert looks_like_path("runs/typo") and looks_like_path("./x") and looks_like_path("~/x")
    assert not looks_like_path("org/name") and not looks_like_path("dcgan")
    with pytest.raises(FileNotFoundError) as err:
        resolve_model("runs/dcgan64")
    assert str(err.value) == ("runs/dcgan64: no such folder. Did you mean: runs/dcgan_64, "
                              "runs/dcgan_32?")
    with pytest.raises(FileNotFoundError, match=r"^\./runs/dcgn_32: no such folder\. Did you "
                                                r"mean: \./runs/dcgan_32"):
        resolve_model("./runs/dcgn_32")
    with pytest.raises(FileNotFoundError, match="no such folder .*does not exist either"):
        ganzoo.from_pretrained(str(tmp_path / "gone" / "run"))
    with pytest.raises(FileNotFoundError, match="notes.txt is a file"):
        resolve_model("runs/notes.txt")
    assert main(["sample", "runs/typo", "-n", "2"]) == 2
    with pytest.raises(FileNotFoundError, match="runs/zzz: no such folder"):
        resolve_model("runs/zzz")


def test_offline_download_failure_is_one_short_traceback(tmp_path):
    """``from_pretrained('org/repo')`` offline printed four chained tracebacks (96 lines)."""
    proc = run_python("import ganzoo; ganzoo.from_pretrained('org/repo')",
                      env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1
    assert proc.stderr.count("Traceback") == 1, proc.stderr
    assert "direct cause" not in proc.stderr and "during handling" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ganzoo.hub.HubError: 'org/repo' is not in the Hugging Face cache")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_push_then_pull_through_loopback_hub_and_offline_cache(tmp_path):
    """Real huggingface_hub client code against a server on 127.0.0.1, then offline."""
    env = {"PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
           "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test_token",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}
    push_and_pull = f"""
        import torch, ganzoo
        model = ganzoo.build("toy_gan", hidden=8)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        url = model.push_to_hub("ganzoo-test/toy", dataset="toy_noise")
        assert "ganzoo-test/toy" in url, url
        pulled = ganzoo.from_pretrained("ganzoo-test/toy")
        again = ganzoo.build("toy_gan", hidden=8, pretrained="hf-hub:ganzoo-test/toy")
        for k, v in model.state_dict().items():
            assert torch.equal(v, pulled.state_dict()[k]), k
            assert torch.equal(v, again.state_dict()[k]), k
        torch.save(model.sample(3, torch.Generator().manual_seed(1)), r"{tmp_path / 'ref.pt'}")
        print("pushed-and-pulled")
    """
    with FakeHub() as hub:
        proc = run_python(push_and_pull, env={**env, "HF_ENDPOINT": hub.url})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "pushed-and-pulled" in proc.stdout
        assert "ganzoo-test/toy" in hub.repos
        assert set(hub.repos["ganzoo-test/toy"].files) == {"model.safetensors", "config.json",
                                                           "README.md"}
        assert any(m == "POST" and p.endswith("/commit/main") for m, p in hub.requests)
    # The server is gone: the populated cache must serve the model with HF_HUB_OFFLINE=1.
    offline = f"""
        import torch, ganzoo
        model = ganzoo.from_pretrained("ganzoo-test/toy")
        ref = torch.load(r"{tmp_path / 'ref.pt'}", weights_only=True)
        assert torch.equal(model.sample(3, torch.Generator().manual_seed(1)), ref)
        print("offline-ok")
    """
    proc = run_python(offline, env={**env, "HF_HUB_OFFLINE": "1",
                                    "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "offline-ok" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hub_failures_are_one_ganzoo_error_each(tmp_path):
    """Offline and not cached, an unknown repo, a push without a token, no server at all:
    each is one HubError that says what happened and what to do, raised from None (one
    traceback, not huggingface_hub's chain) with the original kept as ``hub_exception``."""
    script = """
        import os, ganzoo
        from ganzoo.hub import HubError

        def fails(fn, needle):
            try:
                fn()
            except HubError as e:
                assert needle in str(e), str(e)
                assert e.__cause__ is None and e.__suppress_context__, repr(e)
                assert e.hub_exception is not None and "\\n" not in str(e), repr(e)
                print("ok:", needle)
            else:
                raise AssertionError("no HubError")

        model = ganzoo.build("toy_gan", hidden=8)
        fails(lambda: ganzoo.from_pretrained("ganzoo-test/missing"), "does not exist on the Hub")
        fails(lambda: model.push_to_hub("ganzoo-test/toy"), "not logged in")
    """
    env = {"PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
           "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""}
    with FakeHub() as hub:
        proc = run_python(script, env={**env, "HF_ENDPOINT": hub.url})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok:") == 2
    offline = """
        import ganzoo
        from ganzoo.hub import HubError
        for call in (lambda: ganzoo.from_pretrained("me/my-dcgan"),
                     lambda: ganzoo.build("toy_gan", hidden=8).push_to_hub("me/x", token="t")):
            try:
                call()
            except HubError as e:
                print("HubError:", e)
    """
    proc = run_python(offline, env={**env, "HF_HUB_OFFLINE": "1",
                                    "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is not in the Hugging Face cache" in proc.stdout
    assert "cannot upload 'me/x': offline mode is on" in proc.stdout
    assert proc.stdout.count("HubError:") == 2, proc.stdout


# -- model cards, ModelHubMixin signatures, resolvers -------------------------------------------
EVAL = {"metrics": {"fid": 41.5, "kid_mean": 0.021, "note": "text is not a score"},
        "protocol": {"step": 6, "n_fake": 500, "n_real": 1797, "feature_extractor":
                     "inception_v3", "resizer": "torch", "split": None,
                     "reference": "dataset:hf(path=org/faces, resolution=8)",
                     "dataset_kwargs": {"path": "org/faces", "resolution": 8}}}


def _grid(path):
    from PIL import Image

    Image.new("RGB", (10, 10), (200, 10, 10)).save(path)
    return path


def test_card_metadata_parses_with_the_hubs_own_loader(toy_plugin, tmp_path):
    from huggingface_hub import ModelCard

    model = ganzoo.build("toy_gan", hidden=8)
    older = {"metrics": {"fid": 80.0}, "protocol": {**EVAL["protocol"], "step": 3}}
    model.save_pretrained(tmp_path / "m", dataset="hf (path=org/faces)", datasets=["org/faces"],
                          steps=6, evaluations=[older, EVAL], license="mit", tags=["faces"],
                          sample_grid=_grid(tmp_path / "grid.png"), sample_grid_step=6)
    assert (tmp_path / "m" / "samples.png").read_bytes() == (tmp_path / "grid.png").read_bytes()
    card = ModelCard.load(tmp_path / "m" / "README.md")
    data = card.data
    assert (data.library_name, data.pipeline_tag, data.license) == \
        ("ganzoo", "unconditional-image-generation", "mit")
    assert data.datasets == ["org/faces"] and {"ganzoo", "faces"} <= set(data.tags)
    results = [(r.metric_type, r.metric_value, r.metric_args["step"]) for r in data.eval_results]
    assert results == [("fid", 41.5, 6), ("kid_mean", 0.021, 6), ("fid", 80.0, 3)]  # newest first
    first = data.eval_results[0]
    assert first.metric_args["n_fake"] == 500 and first.metric_args["n_real"] == 1797
    assert first.metric_config == "inception_v3" and first.dataset_type == "org/faces"
    assert first.dataset_name == EVAL["protocol"]["reference"]
    assert "![samples](samples.png)" in card.text and "at step 6" in card.text
    assert "| 6 | fid | 41.5 | 500 / 1797 | inception_v3 |" in card.text
    # Task families are image-to-image on the Hub.
    ae = ganzoo.build("test_vae")
    ae.save_pretrained(tmp_path / "ae")
    assert ModelCard.load(tmp_path / "ae" / "README.md").data.pipeline_tag == "image-to-image"


def test_mixin_signatures_and_run_folders(toy_plugin, tmp_path):
    model = _trained(ganzoo.build("toy_gan", hidden=8))
    model.save_pretrained(tmp_path / "run" / "final", model_card_kwargs={"steps": 4})
    (tmp_path / "run" / "config.json").write_text('{"model": "toy_gan"}')  # the run config
    with pytest.raises(TypeError, match="branch: push options need push_to_hub=True"):
        model.save_pretrained(tmp_path / "x", branch="dev")
    # A trainer run folder means its final/, for every resolver.
    run = tmp_path / "run"
    for loaded in (ganzoo.from_pretrained(run), ganzoo.build(f"local-dir:{run}"),
                   type(model).from_pretrained(run, local_files_only=True)):
        assert torch.equal(loaded.generator[0].weight, model.generator[0].weight)
    assert json.loads((run / "final" / "config.json").read_text())["card"]["steps"] == 4
    with pytest.raises(TypeError, match="not a DCGAN"):
        type(ganzoo.build("test_dcgan")).from_pretrained(run)
    with pytest.raises(ValueError, match="cannot replace them"):
        ganzoo.build(f"local-dir:{run}", pretrained=str(run))
    from ganzoo.hub import split_revision

    assert split_revision("org/name@v1") == ("org/name", "v1")
    assert split_revision("org/name", "main") == ("org/name", "main")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_train_push_pull_round_trip_with_card(tmp_path):
    """The trainer's --push-to-hub, then `ganzoo push` to a branch and as a pull request, and
    pulls of each revision, against the loopback Hub; the card is read back by the Hub
    library's own ModelCard.load."""
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test_token",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1"}
    run = tmp_path / "run"
    (tmp_path / "extra.json").write_text(json.dumps(EVAL))
    script = f"""
        import json, torch, ganzoo
        from huggingface_hub import ModelCard, hf_hub_download
        from ganzoo.cli import main as cli
        from ganzoo.train import main as train

        run = r"{run}"
        assert train(["--model", "test_dcgan", "--max-steps", "2", "--batch-size", "4",
                      "--num-samples", "4", "--eval-every", "2", "--eval-metric", "psnr",
                      "--eval-n", "4", "--no-progress", "--push-to-hub", "ganzoo-test/dc",
                      "-o", run]) == 0
        card = ModelCard.load("ganzoo-test/dc")
        d = card.data
        assert (d.library_name, d.pipeline_tag, d.license) == (
            "ganzoo", "unconditional-image-generation", "apache-2.0"), d
        [r] = d.eval_results  # the --eval-every result, with its protocol
        assert r.metric_type == "psnr" and r.metric_args["n_fake"] == 4, r
        assert r.metric_args["step"] == 2 and "shapes" in r.dataset_name, r
        assert 'ganzoo.from_pretrained("ganzoo-test/dc")' in card.text
        assert "![samples](samples.png)" in card.text
        local = ganzoo.from_pretrained(run)
        pulled = ganzoo.from_pretrained("ganzoo-test/dc")
        for k, v in local.state_dict().items():
            assert torch.equal(v, pulled.state_dict()[k]), k

        assert cli(["push", run, "ganzoo-test/dc", "--branch", "dev", "--license", "mit",
                    "--eval", r"{tmp_path / 'extra.json'}"]) == 0
        dev = ModelCard.load(hf_hub_download("ganzoo-test/dc", "README.md", revision="dev"))
        assert dev.data.license == "mit" and len(dev.data.eval_results) == 3, dev.data
        built = ganzoo.build("hf-hub:ganzoo-test/dc@dev")
        assert all(torch.equal(v, built.state_dict()[k]) for k, v in local.state_dict().items())
        assert cli(["push", run, "ganzoo-test/dc", "--create-pr"]) == 0
        assert ganzoo.from_pretrained("ganzoo-test/dc", revision="refs/pr/1").preset == \\
            "test_dcgan"
        assert cli(["push", run, "ganzoo-test/dc", "--create-pr", "--branch", "dev"]) == 2
        print("round-trip-ok")
    """
    with FakeHub() as hub:
        proc = run_python(script, env={**env, "HF_ENDPOINT": hub.url}, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "round-trip-ok" in proc.stdout
        repo = hub.repos["ganzoo-test/dc"]
        assert set(repo.files) == {"model.safetensors", "config.json", "README.md",
                                   "samples.png"}
        assert set(repo.refs) == {"main", "dev", "refs/pr/1"}
        assert repo.refs["dev"]["samples.png"] == (run / "final" / "samples.png").read_bytes()
    assert "pushed" in proc.stdout and "cannot be combined with branch 'dev'" in proc.stderr


@pytest.mark.parametrize("preset", ["test_dcgan", "test_cut", "test_vae"])
def test_the_model_states_its_hub_task_and_the_old_helper_warns(preset):
    """The card reads ``model.pipeline_tag``; ganzoo 0.1's ``modelcard.pipeline_tag(task)``
    still answers the same, with a DeprecationWarning, for a release."""
    from ganzoo import modelcard

    model = ganzoo.build(preset)
    want = "image-to-image" if model.takes_inputs else "unconditional-image-generation"
    assert model.pipeline_tag == want
    with pytest.warns(DeprecationWarning, match="pipeline_tag"):
        assert modelcard.pipeline_tag(model.task) == want
