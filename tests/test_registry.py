"""Registry rules, exercised through real installed distributions (``.dist-info`` on sys.path)."""

from __future__ import annotations

import sys
import warnings

import pytest

import ganzoo
from ganzoo.registry import DATASETS, MODELS, PluginWarning

from conftest import make_dist, run_python


def test_import_is_cheap():
    proc = run_python("""
        import sys
        import ganzoo
        heavy = [m for m in sys.modules if m.startswith(("torch", "ganzoo.models.",
                 "ganzoo.datasets.", "ganzoo.metrics.", "ganzoo.losses.", "diffusers", "timm"))]
        assert not heavy, heavy[:8]
        assert ganzoo.__version__
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ok" in proc.stdout


def test_listing_imports_no_family_and_building_loads_them():
    """`ganzoo list` reads built-in names from the source: no family module, no torch (it took
    ~2 s, the time to import torch and every family); the first build imports them."""
    proc = run_python("""
        import sys
        from ganzoo.cli import main
        for kind in ("models", "losses", "datasets", "metrics"):
            assert main(["list", kind]) == 0
        heavy = [m for m in sys.modules if m.startswith(("torch", "ganzoo.models.",
                 "ganzoo.datasets.", "ganzoo.metrics.", "ganzoo.losses.", "diffusers"))]
        assert not heavy, heavy[:8]
        import ganzoo
        ganzoo.build_dataset("shapes", resolution=8, size=1)
        assert "ganzoo.datasets.shapes" in sys.modules
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert {"dcgan", "hinge", "shapes", "fid", "ok"} <= set(proc.stdout.split())


@pytest.mark.parametrize("registry", ["MODELS", "LOSSES", "DATASETS", "METRICS"])
def test_names_read_from_source_are_those_registered_on_import(registry):
    import ganzoo.registry

    reg = getattr(ganzoo.registry, registry)
    reg._load_builtins()
    imported = {name: e.module for name, e in reg._builtins.items()
                if e.module.startswith(reg.package)}
    assert reg._scan_builtins() == imported


def test_plugin_listed_without_import_and_built(toy_plugin):
    assert "toy_gan" in ganzoo.list_models()
    assert "toy_noise" in ganzoo.list_datasets("toy_*")
    assert "ganzoo_toy" not in sys.modules  # listing reads names only
    model = ganzoo.build("toy_gan", latent_dim=3)
    assert "ganzoo_toy" in sys.modules
    assert model.config.latent_dim == 3
    info = ganzoo.model_info("toy_gan")
    assert info["distribution"] == "ganzoo-toy"
    assert info["family"] == "toy"
    assert info["config"]["latent_dim"] == 4
    assert info["module"] == "ganzoo_toy"


def test_build_loads_only_the_needed_entry_point(plugin_path, tmp_path):
    make_dist(tmp_path, "two-plugins", {"ganzoo.models": {"plug_one": "plug_one:make",
                                                          "plug_two": "plug_two:make"}},
              {"plug_one": "def make(**kw):\n    return ('one', kw)\n",
               "plug_two": "def make(**kw):\n    return ('two', kw)\n"})
    plugin_path(tmp_path)
    assert MODELS.build("plug_one", a=1) == ("one", {"a": 1})
    assert "plug_one" in sys.modules and "plug_two" not in sys.modules


def test_list_patterns_are_fnmatch_and_sorted():
    names = ganzoo.list_datasets("shapes*")
    assert names == sorted(names)
    assert names and all(n.startswith("shapes") for n in names)
    assert "celeba" not in names


def test_builtin_wins_a_clash_with_warning(plugin_path, tmp_path):
    make_dist(tmp_path, "evil-shapes", {"ganzoo.datasets": {"shapes": "evil:shapes"}},
              {"evil": "def shapes(**kw):\n    return 'evil'\n"})
    plugin_path(tmp_path)
    with pytest.warns(PluginWarning, match=r"evil-shapes.*ganzoo|ganzoo.*evil-shapes"):
        assert "shapes" in ganzoo.list_datasets()
    ds = ganzoo.build_dataset("shapes", resolution=16, size=2)
    assert ds != "evil" and len(ds) == 2


def test_two_plugins_clash_deterministically(plugin_path, tmp_path):
    for dist, word in (("zeta-plugin", "zeta"), ("alpha-plugin", "alpha")):
        make_dist(tmp_path / dist, dist, {"ganzoo.losses": {"dup_loss": f"{word}_mod:make"}},
                  {f"{word}_mod": f"def make(**kw):\n    return '{word}'\n"})
        plugin_path(tmp_path / dist)
    with pytest.warns(PluginWarning, match="alpha-plugin, zeta-plugin"):
        ganzoo.list_losses()
    assert ganzoo.build_loss("dup_loss") == "alpha"


def test_broken_plugin_warns_and_the_rest_works(plugin_path, tmp_path):
    make_dist(tmp_path, "broken-plugin",
              {"ganzoo.models": {"broken_model": "broken_mod:make",
                                 "ghost_model": "no_such_module_xyz:make"}},
              {"broken_mod": "raise RuntimeError('boom at import')\n"})
    plugin_path(tmp_path)
    with pytest.warns(PluginWarning, match="ghost_model"):
        names = ganzoo.list_models()
    assert "ghost_model" not in names
    with pytest.raises(ImportError, match="broken_model.*broken-plugin") as err:
        ganzoo.build("broken_model")
    assert isinstance(err.value.__cause__, RuntimeError)
    with pytest.warns(PluginWarning, match="broken_model"):
        names = ganzoo.list_models()
    assert "broken_model" not in names
    assert "shapes" in ganzoo.list_datasets()


def test_unknown_name_lists_close_matches():
    with pytest.raises(KeyError, match="shapes_attr"):
        ganzoo.build_dataset("shapes_atr")
    with pytest.raises(KeyError, match="Unknown ganzoo dataset"):
        DATASETS.get("zzzz")


def test_plugin_refresh_picks_up_new_install(plugin_path, tmp_path):
    assert "late_model" not in ganzoo.list_models()
    make_dist(tmp_path, "late-plugin", {"ganzoo.models": {"late_model": "late_mod:make"}},
              {"late_mod": "def make(**kw):\n    return 'late'\n"})
    plugin_path(tmp_path)  # refreshes, as registry.refresh() would after a pip install
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "late_model" in ganzoo.list_models()
